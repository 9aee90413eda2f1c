"""A run folder (SPEC 9): its config, its data splits and the fine-tuned model M_0.

``runs/<preset>/<dataset>/`` holds ``config.json`` (what was run), ``model/`` (the fine-tuned
classifier with its tokenizer, loadable by plain transformers) and ``metrics.json``; later stages
add their parquet files beside them."""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .config import Preset
from .data import Encoded, Splits, dataset_name, encode_splits, load_splits
from .errors import PaperlibError
from .io import atomic_dir, read_json, write_json
from .models import count_parameters, fp32_bytes, load_model
from .train import barrier, is_main_process, default_device, evaluate, precision, progress_enabled, train


@dataclass
class Run:
    """Everything a stage needs: folder, preset, splits, tokenised tensors, fine-tuned model."""

    folder: Path
    preset: Preset
    splits: Splits
    encoded: dict[str, Encoded]
    model: torch.nn.Module
    tokenizer: object
    metrics: dict

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def run_folder(out: str | Path, dataset: str) -> Path:
    return Path(out) / dataset_name(dataset)


def _run_config(dataset: str, model: str, preset: Preset, splits: Splits, device: torch.device) -> dict:
    return {"dataset": splits.name, "dataset_arg": str(dataset), "model": model, "source": splits.source,
            "device": device.type, "precision": precision(device),
            "class_names": splits.class_names, "data_fingerprint": splits.fingerprint(),
            "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
            "preset": preset.to_dict()}


def _compare(old: dict, new: dict, folder: Path) -> None:
    """Every stage resumes from the folder's files, so a folder holds one config: dataset, model, data,
    preset, device type and precision.  A key or preset field that an older config.json lacks is taken
    at its default (device and precision: unknown, so not compared)."""
    defaults = {f.name: f.default for f in dataclasses.fields(Preset)}
    old = {**old, "preset": {k: old.get("preset", {}).get(k, defaults.get(k)) for k in new["preset"]}}
    keys = ("dataset", "model", "data_fingerprint", "preset") + tuple(k for k in ("device", "precision") if k in old)
    diff = [k for k in keys if old.get(k) != new.get(k)]
    if diff:
        detail = ", ".join(diff)
        if "preset" in diff:
            detail += " (" + ", ".join(k for k in new["preset"] if old.get("preset", {}).get(k) != new["preset"][k]) + ")"
        raise PaperlibError(f"run folder {str(folder)!r} holds a run with a different config (differs in {detail}); "
                            f"use another --out or delete that folder")


def prepare(dataset: str, model: str | None, preset: Preset, out: str | Path, data_dir=None,
            device=None, progress: bool | None = None) -> Run:
    """Load data and fine-tune ``model`` on it unless the run folder already holds M_0 for this config."""
    model = model or preset.model
    splits = load_splits(dataset, preset, data_dir)
    folder = run_folder(out, dataset)
    device = torch.device(device) if device is not None else default_device()
    config = _run_config(dataset, model, preset, splits, device)
    config_path, model_dir = folder / "config.json", folder / "model"
    if config_path.is_file():
        _compare(read_json(config_path), config, folder)
    if model_dir.is_dir() and (folder / "metrics.json").is_file():
        m, tok = load_model(str(model_dir))
        m.to(device).eval()
        encoded = encode_splits(splits, tok, preset.max_length)
        return Run(folder, preset, splits, encoded, m, tok, read_json(folder / "metrics.json"))
    m, tok = load_model(model, class_names=splits.class_names)  # a bad model name fails before anything is written
    encoded = encode_splits(splits, tok, preset.max_length)
    t0 = time.perf_counter()
    info = train(m, encoded["train"], epochs=preset.finetune_epochs, lr=preset.lr, batch_size=preset.batch_size,
                 seed=preset.seed, warmup_ratio=preset.warmup_ratio, weight_decay=preset.weight_decay,
                 device=device, progress=progress, desc=f"fine-tune {splits.name}")
    seconds = time.perf_counter() - t0
    val = evaluate(m, encoded["val"], preset.eval_batch_size, device)
    test = evaluate(m, encoded["test"], preset.eval_batch_size, device)
    metrics = {"val_acc": val["accuracy"], "val_loss": val["loss"], "test_acc": test["accuracy"],
               "test_loss": test["loss"], "n_params": count_parameters(m), "bytes": fp32_bytes(m),
               "n_layers": len(m.config.kept_layers), "train_seconds": round(seconds, 2), "train_steps": info["steps"],
               "device": str(device), "precision": precision(device), "torch": torch.__version__, "paperlib": __version__}
    if is_main_process():  # under torchrun every rank trained the same weights; one writes them
        _save_run(folder, m, tok, config, metrics, progress)
    barrier()
    return Run(folder, preset, splits, encoded, m, tok, metrics)


def _save_run(folder: Path, model, tokenizer, config: dict, metrics: dict, progress: bool | None = None) -> None:
    """Write model/, config.json, then metrics.json (the mark of a complete M_0).

    Nothing is written before training ends; if saving fails or is interrupted, a folder this call
    created is removed again, so no half-written run folder is left behind."""
    from transformers.utils import logging as hf_logging

    created = not folder.exists()
    bars = hf_logging.is_progress_bar_enabled()
    if not progress_enabled(progress):
        hf_logging.disable_progress_bar()  # "Writing model shards" bar
    try:
        with atomic_dir(folder / "model") as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        write_json(config, folder / "config.json")
        write_json(metrics, folder / "metrics.json")
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        if bars:
            hf_logging.enable_progress_bar()
