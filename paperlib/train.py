"""One training loop and one evaluation loop, shared by fine-tuning and distillation.

AdamW with linear warm-up then linear decay, seeded.  On CUDA: bf16 autocast (SDPA attention is the
model's default) and fused AdamW; on CPU: plain fp32.  Under ``torchrun`` the model is wrapped in
DistributedDataParallel and each rank takes every world-size-th batch, so one code path serves any
GPU count."""

from __future__ import annotations

import math
import os
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data import Encoded, length_batches


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def progress_enabled(flag: bool | None = None) -> bool:
    """Progress bars on unless ``flag`` is False or ``PAPERLIB_QUIET`` is set (tests set it)."""
    if flag is not None:
        return flag
    return os.environ.get("PAPERLIB_QUIET", "") in ("", "0")


def tqdm(*args, **kwargs):
    from tqdm.auto import tqdm as _tqdm

    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return _tqdm(*args, **kwargs)


def _dist():
    """(rank, world size) when torch.distributed is initialised (torchrun), else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


LossFn = Callable[[torch.Tensor, dict, torch.Tensor], torch.Tensor]


def cross_entropy_loss(logits: torch.Tensor, batch: dict, index: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), batch["labels"])


def train(model: nn.Module, data: Encoded, *, epochs: int, lr: float, batch_size: int = 32, seed: int = 0,
          warmup_ratio: float = 0.1, weight_decay: float = 0.01, loss_fn: LossFn = cross_entropy_loss,
          device: torch.device | str | None = None, progress: bool | None = None, compile: bool = False,
          multiple_of: int = 1, desc: str = "train") -> dict:
    """Train ``model`` in place on ``data``; return {'steps', 'final_loss', 'examples'}.

    ``loss_fn(logits, batch, index)`` gets the batch tensors and the examples' indices into ``data``
    (distillation uses them to look up cached teacher logits)."""
    device = torch.device(device) if device is not None else default_device()
    rank, world = _dist()
    torch.manual_seed(seed)
    model.to(device).train()
    data = data.to(device)
    forward = model
    if world > 1:
        forward = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        forward = torch.compile(forward, dynamic=False)
    batches_per_epoch = math.ceil(len(data) / batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / world)
    total = max(1, steps_per_epoch * epochs)
    warmup = int(warmup_ratio * total)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, fused=device.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    step, loss_value = 0, float("nan")
    bar = tqdm(total=total, desc=desc, disable=not progress_enabled(progress) or rank != 0)
    for epoch in range(epochs):
        batches = list(length_batches(data, batch_size, shuffle=True, seed=seed * 1000 + epoch, multiple_of=multiple_of))
        batches = batches[rank::world][:steps_per_epoch]
        for index, batch in batches:
            with _autocast(device):
                logits = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = loss_fn(logits, batch, index)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 10 == 0 or step == total:
                loss_value = float(loss.detach())
                bar.set_postfix(loss=f"{loss_value:.3f}")
            bar.update(1)
    bar.close()
    model.eval()
    return {"steps": step, "final_loss": loss_value, "examples": step * batch_size * world}


@torch.inference_mode()
def predict_logits(model: nn.Module, data: Encoded, batch_size: int = 128, device=None, progress: bool | None = False) -> torch.Tensor:
    """Logits for every example of ``data``, in ``data``'s order (float32, on ``device``)."""
    device = torch.device(device) if device is not None else default_device()
    was_training = model.training
    model.eval()
    model.to(device)
    data = data.to(device)
    out = None
    for index, batch in tqdm(list(length_batches(data, batch_size)), desc="eval", disable=not progress_enabled(progress)):
        with _autocast(device):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        if out is None:
            out = torch.empty(len(data), logits.shape[-1], device=device)
        out[index.to(device)] = logits
    model.train(was_training)
    return out


def evaluate(model: nn.Module, data: Encoded, batch_size: int = 128, device=None, progress: bool | None = False) -> dict:
    """Accuracy and mean cross-entropy of ``model`` on ``data`` (the model is used as is, never copied)."""
    device = torch.device(device) if device is not None else default_device()
    logits = predict_logits(model, data, batch_size, device, progress)
    labels = data.labels.to(logits.device)
    return {"accuracy": float((logits.argmax(-1) == labels).float().mean()),
            "loss": float(F.cross_entropy(logits, labels))}
