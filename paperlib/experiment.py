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
from .baselines import baseline_run, start_beside
from .config import Preset
from .data import REGISTRY, Encoded, Splits, dataset_name, dataset_ref, encode_splits, load_splits
from .errors import PaperlibError
from .io import atomic_dir, read_json, write_json
from .models import count_parameters, fp32_bytes, load_model
from .train import barrier, default_device, evaluate, is_main_process, precision, progress_enabled, train


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


def _run_config(dataset: str, model: str, preset: Preset, splits: Splits, device: torch.device, data_dir=None) -> dict:
    """What was run; data recorded as names and hashes, never machine paths (a shared run folder leaks none)."""
    return {
        "dataset": splits.name,
        "dataset_arg": dataset_ref(dataset, data_dir),
        "model": _model_ref(model),
        "source": splits.source,
        "device": device.type,
        "precision": precision(device),
        "class_names": splits.class_names,
        "data_fingerprint": splits.fingerprint(),
        "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "preset": preset.to_dict(),
    }


def _model_ref(model: str) -> str:
    """A model name as is; a checkpoint folder given by an absolute (or ~) path by its folder name only."""
    path = Path(model).expanduser()
    return path.name if path.is_absolute() else model


LATER_STAGE_FIELDS = ("distill_depths", "kd_patience")  # preset fields M_0 does not depend on, added later


def _compare(old: dict, new: dict, folder: Path) -> None:
    """Every stage resumes from the folder's files, so a folder holds one config: dataset, model, data,
    preset, device type and precision.  A key or preset field that an older config.json lacks is taken
    at its default (device and precision: unknown, so not compared)."""
    old_preset = old.get("preset", {})  # distillation-only fields an older config lacks: no difference
    new = {**new, "preset": {k: v for k, v in new["preset"].items() if k in old_preset or k not in LATER_STAGE_FIELDS}}
    defaults = {f.name: f.default for f in dataclasses.fields(Preset)}
    old = {**old, "preset": {k: old_preset.get(k, defaults.get(k)) for k in new["preset"]}}
    keys = ("dataset", "model", "data_fingerprint", "preset") + tuple(k for k in ("device", "precision") if k in old)
    diff = [k for k in keys if old.get(k) != new.get(k)]
    if diff:
        detail = ", ".join(diff)
        if "preset" in diff:
            detail += (
                " (" + ", ".join(k for k in new["preset"] if old.get("preset", {}).get(k) != new["preset"][k]) + ")"
            )
        raise PaperlibError(
            f"run folder {str(folder)!r} holds a run with a different config (differs in {detail}); "
            f"use another --out or delete that folder"
        )


def prepare(
    dataset: str,
    model: str | None,
    preset: Preset,
    out: str | Path,
    data_dir=None,
    device=None,
    progress: bool | None = None,
) -> Run:
    """Load data and fine-tune ``model`` on it unless the run folder already holds M_0 for this config."""
    model = model or preset.model
    splits = load_splits(dataset, preset, data_dir)
    folder = run_folder(out, dataset)
    device = torch.device(device) if device is not None else default_device()
    config = _run_config(dataset, model, preset, splits, device, data_dir)
    config_path, model_dir = folder / "config.json", folder / "model"
    if config_path.is_file():
        _compare(read_json(config_path), config, folder)
    if model_dir.is_dir() and (folder / "metrics.json").is_file():
        m, tok = load_model(str(model_dir))
        m.to(device).eval()
        encoded = encode_splits(splits, tok, preset.max_length)
        run = Run(folder, preset, splits, encoded, m, tok, read_json(folder / "metrics.json"))
        if is_main_process():
            baseline_run(run)  # the classical reference beside M_0 (seconds; read back when present)
        return run
    m, tok = load_model(model, class_names=splits.class_names)  # a bad model name fails before anything is written
    encoded = encode_splits(splits, tok, preset.max_length)
    beside = start_beside(folder, splits, preset.seed, device) if is_main_process() else None  # TF-IDF + LR meanwhile
    t0 = time.perf_counter()
    select = _EpochSelection(m, encoded["val"], preset.eval_batch_size, device)
    info = train(
        m,
        encoded["train"],
        epochs=preset.finetune_epochs,
        lr=preset.lr,
        batch_size=preset.batch_size,
        seed=preset.seed,
        warmup_ratio=preset.warmup_ratio,
        weight_decay=preset.weight_decay,
        device=device,
        progress=progress,
        desc=f"fine-tune {splits.name}",
        on_epoch_end=select,
    )
    select.restore_best()
    seconds = time.perf_counter() - t0
    val = evaluate(m, encoded["val"], preset.eval_batch_size, device)
    test = evaluate(m, encoded["test"], preset.eval_batch_size, device)
    metrics = {
        "val_acc": val["accuracy"],
        "val_loss": val["loss"],
        "test_acc": test["accuracy"],
        "test_loss": test["loss"],
        "n_params": count_parameters(m),
        "bytes": fp32_bytes(m),
        "n_layers": len(m.config.kept_layers),
        "train_seconds": round(seconds, 2),
        "train_steps": info["steps"],
        "best_epoch": select.best_epoch + 1,
        "val_acc_by_epoch": select.history,
        "device": str(device),
        "precision": precision(device),
        "torch": torch.__version__,
        "paperlib": __version__,
    }
    if is_main_process():  # under torchrun every rank trained the same weights; one writes them
        _save_run(folder, m, tok, config, metrics, progress)
    run = Run(folder, preset, splits, encoded, m, tok, metrics)
    if is_main_process():
        baseline_run(run, beside=beside)
    barrier()
    return run


class _EpochSelection:
    """Validation-based model selection for fine-tuning: after each epoch the validation accuracy is measured
    and the weights of the best epoch so far are kept (a copy on the model's device); ties keep the earlier
    epoch.  ``restore_best`` loads them back.  The test split is never looked at."""

    def __init__(self, model, val, batch_size, device):
        self.model, self.val, self.batch_size, self.device = model, val, batch_size, device
        self.best_epoch, self.best_acc, self.best_state, self.history = -1, -1.0, None, []

    def __call__(self, epoch: int) -> None:
        acc = evaluate(self.model, self.val, self.batch_size, self.device)["accuracy"]
        self.history.append(round(acc, 6))
        if acc > self.best_acc:
            self.best_epoch, self.best_acc = epoch, acc
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def restore_best(self) -> None:
        if self.best_state is not None and self.best_epoch != len(self.history) - 1:
            self.model.load_state_dict(self.best_state)
        self.best_state = None


def preset_of(folder: str | Path) -> Preset:
    """The preset a run folder was made with, rebuilt from its config.json (fields added since take their defaults)."""
    import dataclasses

    config = _finished_config(Path(folder))
    known = {f.name for f in dataclasses.fields(Preset)}
    saved = {k: v for k, v in config["preset"].items() if k in known}
    return Preset(**{**saved, "datasets": tuple(saved["datasets"])})


def _finished_config(folder: Path) -> dict:
    if (
        not (folder / "config.json").is_file()
        or not (folder / "metrics.json").is_file()
        or not (folder / "model").is_dir()
    ):
        raise PaperlibError(
            f"{str(folder)!r} holds no fine-tuned M_0 (config.json, metrics.json, model/): "
            f"run `paperlib finetune` or notebook 01 for this dataset first"
        )
    return read_json(folder / "config.json")


def load_run(runs: str | Path, dataset: str, data_dir=None, device=None) -> Run:
    """The saved run ``runs/<dataset>``: its M_0, splits and tokenised tensors, with the preset and model
    its config.json records; never trains (a folder without M_0 is an error saying what to run).

    ``dataset`` as given to ``prepare`` (a registry name or a data folder); a bare run-folder name falls
    back to the config's ``dataset_arg``, which is relative to the data dir (configs hold no machine paths).

    What a later notebook needs without repeating notebook 01's arguments.  Tokenised tensors come
    from the token cache (``data.encode``: memory, then ``$PAPERLIB_CACHE_DIR``), and a second call in the
    same process for the same finished folder returns the same ``Run`` (its model is shared, not reloaded)."""
    folder = run_folder(runs, dataset)
    config = _finished_config(folder)
    key = (str(folder.resolve()), (folder / "metrics.json").stat().st_mtime_ns, str(data_dir), str(device))
    if key not in _LOADED:
        _LOADED.clear()  # one run per process at a time: a model is tens of MB and up
        source = dataset if Path(dataset).expanduser().is_dir() or dataset in REGISTRY else config["dataset_arg"]
        _LOADED[key] = prepare(
            source, config["model"], preset_of(folder), folder.parent, data_dir, device=device, progress=False
        )
    return _LOADED[key]


_LOADED: dict[tuple, Run] = {}


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
