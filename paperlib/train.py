"""One training loop and one evaluation loop, shared by fine-tuning and distillation.

AdamW (fused) with linear warm-up then linear decay, seeded.  Matrix products run under bf16 autocast
wherever the hardware has bf16 arithmetic: CUDA GPUs, and CPUs with AVX512-BF16 or AMX (there it
halves the time of a training step or a calibration pass); elsewhere everything is fp32.
``$PAPERLIB_PRECISION`` (``auto``, ``bf16``, ``fp32``) overrides the choice; ``precision(device)``
says what a run uses.  SDPA attention is the model's default.  Under ``torchrun`` (WORLD_SIZE > 1) the process
group is initialised on first use, each rank trains on cuda:LOCAL_RANK inside DistributedDataParallel
and takes every world-size-th batch (the same number of steps on every rank), so one code path serves
any GPU count.  An epoch's batches are gathered on the device before its first step: the steps
themselves copy nothing from the host and read no value back (the loss is read every 10 steps only
when a progress bar shows it).

Compilation (``compile``, ``$PAPERLIB_COMPILE``; ``compile_mode`` says what a run uses): the encoder layers,
not the whole model, go through one ``torch.compile``'d call shared by every layer and every model of the
process (same code, same shapes: traced once per padded width, whatever the depth), for the training steps
only; the embeddings, the head, the loss and evaluation stay eager.  Widths are then padded to multiples
of ``COMPILE_MULTIPLE_OF`` (padding is masked) and an epoch's one short batch runs eager, so a training
meets at most max_length / 32 shapes.  A compilation that fails falls back to eager with one warning."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import ENV, runtime
from .errors import PaperlibError
from .models import get_layers
from .tokens import Encoded, length_batches


def default_device() -> torch.device:
    """cuda (cuda:LOCAL_RANK under torchrun) if available, else cpu."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device("cuda")


def init_distributed() -> tuple[int, int]:
    """Start the process group when launched by ``torchrun`` with WORLD_SIZE > 1; return (rank, world)."""
    dist = torch.distributed
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return _dist()


def is_main_process() -> bool:
    """True on rank 0 (or without torch.distributed): the process that writes files and prints."""
    return _dist()[0] == 0


def progress_enabled(flag: bool | None = None) -> bool:
    """Progress bars on unless ``flag`` is False or ``PAPERLIB_QUIET`` is set (tests set it)."""
    if flag is not None:
        return flag
    return not runtime().quiet


def tqdm(*args, **kwargs):
    """A progress bar: tqdm's notebook bar where ipywidgets exist, its text bar elsewhere; under
    ``paperlib reproduce`` (``$PAPERLIB_PROGRESS_FILE`` set) a bar that reports to the runner
    instead of drawing (``paperlib.progress``), whatever ``disable`` says."""
    from .progress import ReportingBar, reporting

    if reporting():
        kwargs.pop("disable", None)
        return ReportingBar(*args, **kwargs)
    try:
        import ipywidgets  # noqa: F401  (without it tqdm.auto warns "IProgress not found")
        from tqdm.auto import tqdm as _tqdm
    except ImportError:
        from tqdm.std import tqdm as _tqdm

    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return _tqdm(*args, **kwargs)


def barrier() -> None:
    """Wait for every rank (no-op without torch.distributed)."""
    if _dist()[1] > 1:
        torch.distributed.barrier()


def _dist():
    """(rank, world size) when torch.distributed is initialised (torchrun), else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


PRECISION_ENV = ENV["precision"]


@functools.cache  # asked on every step and batch; the hardware does not change
def _has_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        return any(
            bool(getattr(cpu, f, lambda: False)()) for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        )
    return False


def precision(device: torch.device | str) -> str:
    """'bf16' or 'fp32': what ``autocast(device)`` runs matrix products in.

    ``$PAPERLIB_PRECISION=auto`` (the default) picks bf16 where the device computes in bf16 natively
    (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX) and fp32 elsewhere; ``bf16``/``fp32`` force it.
    Parameters, optimiser state, losses and the signals' statistics stay fp32 either way."""
    device = torch.device(device)
    choice = runtime().precision  # checked there: auto, bf16 or fp32
    if choice == "auto":
        return "bf16" if _has_bf16(device) else "fp32"
    return choice


def autocast(device: torch.device | str):
    """The autocast context of the precision policy (``precision``) for ``device``."""
    device = torch.device(device)
    if precision(device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


COMPILE_ENV = ENV["compile"]
# what compile="auto" (the default) means on a CUDA device: CUDA graphs of the layers' plain ATen kernels (a training
# step is host-bound: ~3 ms of Python and launches per layer against ~0.1 ms of matmuls, issue 23), traced without
# Inductor so a process pays seconds, not minutes, of compilation.  None: eager.  On a CPU auto is always eager.
CUDA_COMPILE: str | None = "cudagraphs"
COMPILE_MULTIPLE_OF = 32  # padded widths under compilation: at most max_length / 32 shapes
INDUCTOR_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
GRAPH_MODES = ("cudagraphs", "reduce-overhead", "max-autotune")  # those that replay CUDA graphs


def compile_mode(compile: bool | str | Callable | None, device: torch.device | str) -> str | Callable | None:
    """What ``train`` compiles the encoder layers with: None (eager), an Inductor mode (``default``,
    ``reduce-overhead`` = Inductor + CUDA graphs, ...) or a torch.compile backend (``cudagraphs`` = CUDA graphs
    of the plain ATen kernels, ``aot_eager``, a callable).

    ``compile`` None reads ``$PAPERLIB_COMPILE`` (default ``auto``); ``auto`` is ``CUDA_COMPILE`` on a CUDA
    device and eager elsewhere; False or ``none`` is eager; True is Inductor's ``default``."""
    if compile is None:
        compile = runtime().compile
    if callable(compile):
        return compile
    if compile is True:
        return "default"
    if compile is False or compile == "none":
        return None
    if compile == "auto":
        return CUDA_COMPILE if torch.device(device).type == "cuda" else None
    if compile in INDUCTOR_MODES or compile in torch._dynamo.list_backends(exclude_tags=()):
        return compile
    raise PaperlibError(
        f"compile must be auto, none, an Inductor mode ({', '.join(INDUCTOR_MODES)}) or a torch.compile "
        f"backend ({', '.join(torch._dynamo.list_backends())}), got {compile!r} (check ${COMPILE_ENV})"
    )


def _layer_call(layer: nn.Module, *args, **kwargs):
    return layer._call_impl(*args, **kwargs)


@functools.cache  # one compiled call per mode and process: its graphs serve every layer of every model
def _compiled_layer_call(how):
    if how in INDUCTOR_MODES:
        return torch.compile(_layer_call, mode=None if how == "default" else how, dynamic=False)
    return torch.compile(_layer_call, backend=how, dynamic=False)


class _CompiledLayers:
    """Routes the encoder layers of ``model`` through ``_compiled_layer_call(how)`` while switched on.

    Uses ``nn.Module._compiled_call_impl``, the hook ``Module.compile()`` sets, so that switching off restores
    the plain module exactly (later stages hook the layers of the same model)."""

    def __init__(self, model: nn.Module, how):
        self.layers, self.fn, self.active = list(get_layers(model)), _compiled_layer_call(how), False
        self.failed = False
        # one code object serves every mode, width, grad/autocast state and padding-mask kind: more than 8 graphs
        config = torch._dynamo.config
        name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.6
        setattr(config, name, max(getattr(config, name), 64))

    def switch(self, on: bool) -> None:
        on = on and not self.failed
        if on != self.active:
            for layer in self.layers:
                layer._compiled_call_impl = functools.partial(self.fn, layer) if on else None
            self.active = on

    def fail(self, exc: Exception) -> None:
        import warnings

        detail = " ".join(str(exc).split())[:300]
        warnings.warn(
            f"torch.compile of the encoder layers failed ({type(exc).__name__}: {detail}); training eagerly",
            stacklevel=3,
        )
        self.switch(False)
        self.failed = True


def _name(how) -> str:
    return how if isinstance(how, str) else getattr(how, "__name__", type(how).__name__)


LossFn = Callable[[torch.Tensor, dict, torch.Tensor], torch.Tensor]


def cross_entropy_loss(logits: torch.Tensor, batch: dict, index: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), batch["labels"])


@dataclass(frozen=True)
class TrainSettings:
    """What one training run takes from the preset: epochs, AdamW's learning rate and weight decay, batch size,
    warm-up share and seed.  The schedule is linear warm-up over ``warmup_ratio`` of ``epochs`` x steps per epoch,
    then linear decay to 0 at the end of ``epochs`` (early stopping ends training sooner, never reshapes it)."""

    epochs: int
    lr: float
    batch_size: int = 32
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0

    @classmethod
    def finetune(cls, preset, hidden_size: int | None = None) -> TrainSettings:
        """Fine-tuning M_0: ``preset.finetune_epochs`` (the most; ``finetune_patience`` may stop sooner) at
        ``preset.lr``, scaled by ``preset.lr_width / hidden_size`` when the preset sets ``lr_width`` (ours, SPEC 8:
        5e-5 at hidden 768 gives MiniLM's 384 1e-4)."""
        lr = preset.lr * preset.lr_width / hidden_size if preset.lr_width and hidden_size else preset.lr
        return cls(preset.finetune_epochs, lr, preset.batch_size, preset.warmup_ratio, preset.weight_decay, preset.seed)

    @classmethod
    def recovery(cls, preset, n_layers: int, n_kept: int) -> TrainSettings:
        """Re-training a model that kept ``n_kept`` of ``n_layers`` layers (distillation, its alpha = 0 control and
        M_0 continued, n_kept = n_layers): ``preset.kd_epochs`` at ``recovery_lr(preset.kd_lr, n_layers, n_kept)``."""
        lr = recovery_lr(preset.kd_lr, n_layers, n_kept)
        return cls(preset.kd_epochs, lr, preset.batch_size, preset.warmup_ratio, preset.weight_decay, preset.seed)

    def replace(self, **changes) -> TrainSettings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def train(
    model: nn.Module,
    data: Encoded,
    settings: TrainSettings,
    *,
    loss_fn: LossFn = cross_entropy_loss,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    compile: bool | str | None = None,
    multiple_of: int = 1,
    desc: str = "train",
    on_epoch_end: Callable[[int], bool] | None = None,
) -> dict:
    """Train ``model`` in place on ``data`` with ``settings``; return {'steps', 'final_loss', 'examples',
    'epoch_seconds', 'compile'} ('compile': how the layers ran: none, the mode or backend, or 'failed: eager').

    ``loss_fn(logits, batch, index)`` gets the batch tensors and the examples' indices into ``data``
    (on the training device; distillation uses them to look up cached teacher logits).
    ``compile``: how the encoder layers are compiled for the steps (``compile_mode``; None: the
    ``$PAPERLIB_COMPILE`` policy); compiled steps pad widths to multiples of at least ``COMPILE_MULTIPLE_OF``,
    eager ones to ``multiple_of``.  ``on_epoch_end(epoch)`` (0-based) runs after each epoch on every rank
    (eagerly); when it returns True training stops there (early stopping)."""
    epochs, lr, batch_size, seed = settings.epochs, settings.lr, settings.batch_size, settings.seed
    warmup_ratio, weight_decay = settings.warmup_ratio, settings.weight_decay
    rank, world = init_distributed()
    device = torch.device(device) if device is not None else default_device()
    torch.manual_seed(seed)
    model.to(device).train()
    host_data, data = data.to("cpu"), data.to(device)
    forward = model
    if world > 1:
        forward = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, gradient_as_bucket_view=True
        )
    how = compile_mode(compile, device)
    compiled = _CompiledLayers(model, how) if how is not None else None
    if compiled is not None:
        multiple_of = max(multiple_of, COMPILE_MULTIPLE_OF)
    graphs = how in GRAPH_MODES and device.type == "cuda"
    batches_per_epoch = math.ceil(len(data) / batch_size)
    # every rank must take the same number of steps (DDP all-reduces each one): the last
    # batches_per_epoch % world batches of an epoch are left out when the ranks cannot share them
    steps_per_epoch = max(1, batches_per_epoch // world) if world > 1 else batches_per_epoch
    total = max(1, steps_per_epoch * epochs)
    warmup = int(warmup_ratio * total)
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        fused=device.type in ("cuda", "cpu"),
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )
    step, loss = 0, None
    show = progress_enabled(progress) and rank == 0
    bar = tqdm(total=total, desc=desc, disable=not show)
    epoch_seconds = []

    def gradients(index, batch) -> torch.Tensor:
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with autocast(device):
            logits = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = loss_fn(logits, batch, index)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        return loss

    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            batches = _device_batches(host_data, data, batch_size, seed * 1000 + epoch, multiple_of)
            batches = batches[rank::world][:steps_per_epoch]
            for index, batch in batches:
                if compiled is None:
                    loss = gradients(index, batch)
                else:
                    compiled.switch(len(index) == batch_size)  # the epoch's short batch: eager, no graph for it
                    try:
                        loss = gradients(index, batch)
                    except Exception as exc:  # noqa: BLE001 -- a compiler failure: redo this step eagerly
                        if not compiled.active:
                            raise
                        compiled.fail(exc)
                        loss = gradients(index, batch)
                opt.step()
                sched.step()
                step += 1
                if show and (step % 10 == 0 or step == total):
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
                bar.update(1)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            epoch_seconds.append(time.perf_counter() - t0)
            if compiled is not None:
                compiled.switch(False)  # evaluation in on_epoch_end runs the plain layers
            if on_epoch_end is not None and on_epoch_end(epoch):
                break
    finally:
        if compiled is not None:
            compiled.switch(False)
    bar.close()
    model.eval()
    return {
        "steps": step,
        "final_loss": float(loss.detach()) if loss is not None else float("nan"),
        "examples": step * batch_size * world,
        "epoch_seconds": epoch_seconds,
        "compile": "none" if how is None else "failed: eager" if compiled.failed else _name(how),
    }


def recovery_lr(lr: float, n_layers_full: int, n_layers_kept: int) -> float:
    """Learning rate for re-training a pruned model: lr * L / n_kept (our choice, SPEC 6).

    A student that kept n of L layers must move its remaining layers further than a full model's fine-tuning
    does (its head now reads features the removed layers used to build); at the fine-tuning rate a one-layer
    student barely moves off its start (bbc_news, minilm: chance accuracy at 3e-5; benchmarks/RESULTS.md)."""
    return lr * n_layers_full / max(1, n_layers_kept)


def _device_batches(host_data: Encoded, data: Encoded, batch_size: int, seed: int, multiple_of: int) -> list:
    """One epoch of shuffled length-bucketed batches, gathered on ``data``'s device up front.

    Batch composition and widths come from the host copy (no device reads); the indices go to the
    device in one copy, and each batch's ``index`` (for ``loss_fn``) already lives there."""
    plan = [
        (idx, b["input_ids"].shape[1])
        for idx, b in length_batches(host_data, batch_size, shuffle=True, seed=seed, multiple_of=multiple_of)
    ]
    if not plan:
        return []
    all_idx = torch.cat([idx for idx, _ in plan]).to(data.input_ids.device, non_blocking=True)
    out = []
    for dev_idx, (_, width) in zip(torch.split(all_idx, [len(idx) for idx, _ in plan]), plan):
        out.append(
            (
                dev_idx,
                {
                    "input_ids": data.input_ids[dev_idx, :width],
                    "attention_mask": data.attention_mask[dev_idx, :width],
                    "labels": data.labels[dev_idx],
                },
            )
        )
    return out


@torch.inference_mode()
def predict_logits(
    model: nn.Module, data: Encoded, batch_size: int = 128, device=None, progress: bool | None = False
) -> torch.Tensor:
    """Logits for every example of ``data``, in ``data``'s order (float32, on ``device``)."""
    device = torch.device(device) if device is not None else default_device()
    was_training = model.training
    model.eval()
    model.to(device)
    data = data.to(device)
    out = None
    for index, batch in tqdm(
        list(length_batches(data, batch_size)), desc="eval", disable=not progress_enabled(progress)
    ):
        with autocast(device):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        if out is None:
            out = torch.empty(len(data), logits.shape[-1], device=device)
        out[index.to(device)] = logits
    model.train(was_training)
    return out


def evaluate(
    model: nn.Module, data: Encoded, batch_size: int = 128, device=None, progress: bool | None = False
) -> dict:
    """Accuracy and mean cross-entropy of ``model`` on ``data`` (the model is used as is, never copied)."""
    device = torch.device(device) if device is not None else default_device()
    logits = predict_logits(model, data, batch_size, device, progress)
    labels = data.labels.to(logits.device)
    return {
        "accuracy": float((logits.argmax(-1) == labels).float().mean()),
        "loss": float(F.cross_entropy(logits, labels)),
    }
