"""A run folder (SPEC 9): its config, its data splits and the fine-tuned model M_0.

``<runs>/seed-<S>/<dataset>/`` (one folder per pipeline seed S, ``paths.seed_root``) holds ``config.json`` (what
was run), ``model/`` (the fine-tuned classifier with its tokenizer, loadable by plain transformers) and
``metrics.json``; later stages add their parquet files beside them.  Each seed is a whole pipeline: M_0 is
fine-tuned from the pretrained weights with that seed, and the data splits (``preset.split_seed``) are the same
for every seed."""

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
from .data import REGISTRY, dataset_name, dataset_ref, load_splits
from .errors import PaperlibError
from .io import (
    M0_SCHEMAS,
    RUN_FILES,
    atomic_dir,
    check_run_files,
    check_writable,
    damaged_advice,
    read_json,
    run_lock,
    write_json,
)
from .models import check_max_length, check_weights, count_parameters, fp32_bytes, load_model
from .paths import seed_root, seed_roots
from .splits import Splits
from .tokens import Encoded, encode_splits
from .train import (
    TrainSettings,
    barrier,
    default_device,
    evaluate,
    is_main_process,
    precision,
    progress_enabled,
    train,
)


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


def run_folder(out: str | Path, dataset: str, seed: int = 0) -> Path:
    """The run folder of ``dataset`` and pipeline seed ``seed`` in the runs folder ``out``: ``out/seed-<S>/<name>``."""
    return seed_root(out, seed) / dataset_name(dataset)


def _run_config(dataset: str, model: str, preset: Preset, splits: Splits, device: torch.device, data_dir=None) -> dict:
    """What was run; data recorded as names and hashes, never machine paths (a shared run folder leaks none).
    The preset is recorded with the model actually used (``--model`` or the preset's) and the run's seed."""
    return {
        "dataset": splits.name,
        "dataset_arg": dataset_ref(dataset, data_dir),
        "model": _model_ref(model),
        "seed": preset.seed,
        "split_seed": preset.split_seed,
        "source": splits.source,
        "device": device.type,
        "precision": precision(device),
        "class_names": splits.class_names,
        "data_fingerprint": splits.fingerprint(),
        "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "preset": {**preset.to_dict(), "model": _model_ref(model)},
    }


def _model_ref(model: str) -> str:
    """A model name as is; a checkpoint folder given by an absolute (or ~) path by its folder name only."""
    path = Path(model).expanduser()
    return path.name if path.is_absolute() else model


LATER_STAGE_FIELDS = ("distill_depths", "kd_patience")  # preset fields M_0 does not depend on, added later


def _compare(old: dict, new: dict, folder: Path) -> None:
    """Every stage resumes from the folder's files, so a folder holds one config: dataset, model, data,
    preset, device type and precision.  A key or preset field that the old record lacks is taken at its
    default (a key without a default, such as device and precision in an old config.json: not compared)."""
    old_preset = old.get("preset", {})  # distillation-only fields an older config lacks: no difference
    # preset.model is the top-level model (configs before seeds recorded the preset's default there)
    new = {
        **new,
        "preset": {
            k: v for k, v in new["preset"].items() if k != "model" and (k in old_preset or k not in LATER_STAGE_FIELDS)
        },
    }
    defaults = {f.name: f.default for f in dataclasses.fields(Preset)}
    old = {**old, "preset": {k: old_preset.get(k, defaults.get(k)) for k in new["preset"]}} if old_preset else old
    keys = [k for k in ("dataset", "model", "data_fingerprint", "preset", "device", "precision") if k in old]
    diff = [k for k in keys if old.get(k) != new.get(k)]
    if diff:
        detail = ", ".join(
            f"{k} ({old[k]!r} vs {new[k]!r} now)" if k in ("model", "device", "precision") else k for k in diff
        )
        if "preset" in diff:
            detail += (
                " (" + ", ".join(k for k in new["preset"] if old.get("preset", {}).get(k) != new["preset"][k]) + ")"
            )
        raise PaperlibError(
            f"run folder {str(folder)!r} holds a run with a different config (differs in {detail}); "
            f"use another --out or delete that folder"
        )


def _recorded_config(folder: Path) -> dict | None:
    """The config the folder's M_0 was made with: config.json, else the copy metrics.json keeps (``run_config``),
    else what metrics.json itself records (device and precision); precision from metrics.json where an older
    config.json lacks it.  None for a folder without either file."""
    config_path, metrics_path = folder / "config.json", folder / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.is_file() else None
    if config_path.is_file():
        old = read_json(config_path)
    elif metrics is not None:
        old = metrics.get("run_config") or {}
    else:
        return None
    if metrics is not None:
        old = {
            "device": str(metrics.get("device", "")).split(":")[0] or None,
            "precision": metrics.get("precision"),
            **old,
        }
        old = {k: v for k, v in old.items() if v is not None}
    return old


def check_device(device) -> torch.device:
    """``--device`` as a torch device that this machine has (None: ``default_device()``), before any work."""
    if device is None or device == "":
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise PaperlibError(f"--device {device!r} is not a torch device; use cpu, cuda, cuda:<n> or mps") from None
    if dev.type == "cuda":
        if torch.version.cuda is None and not torch.cuda.is_available():
            raise PaperlibError(
                f"--device {device!r}: this torch {torch.__version__} is a CPU build; install a CUDA build of "
                f"torch or use --device cpu"
            )
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise PaperlibError(f"--device {device!r}: no CUDA GPU is visible (check CUDA_VISIBLE_DEVICES); use cpu")
        if dev.index is not None and dev.index >= count:
            raise PaperlibError(f"--device {device!r}: only {count} GPU(s) visible (cuda:0..cuda:{count - 1})")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise PaperlibError(f"--device {device!r}: MPS is not available on this machine; use cpu")
    elif dev.type != "cpu":
        raise PaperlibError(f"--device {device!r}: paperlib runs on cpu, cuda or mps, not {dev.type}")
    return dev


LATER_FILES = tuple(name for name, schema in RUN_FILES.items() if schema.stage != "finetune")


def _check_inputs(folder: Path, model: str, preset: Preset, device) -> torch.device:
    """Every check a stage can make before loading data or a model: the device, the run folder (and the runs
    folder beside it, which holds its lock) writable, ``max_length`` within the model's positions, and the
    files M_0's config is read from whole."""
    device = check_device(device)
    check_writable(folder, "run folder", "--out")
    if folder.exists():
        check_writable(folder.parent, "runs folder", "--out")
    check_run_files(folder, tuple(M0_SCHEMAS), M0_SCHEMAS)
    resume = (folder / "model").is_dir() and (folder / "metrics.json").is_file()
    if resume:
        check_weights(folder / "model")
    check_max_length(str(folder / "model") if resume else model, preset.max_length)
    if not resume:
        later = [name for name in LATER_FILES if (folder / name).exists()]
        if later:
            raise PaperlibError(
                f"run folder {str(folder)!r} holds {later} but no complete M_0 (model/ and metrics.json): those "
                f"files came from an M_0 that is gone; delete that folder (or move those files away) and rerun"
            )
    return device


def prepare(
    dataset: str,
    model: str | None,
    preset: Preset,
    out: str | Path,
    data_dir=None,
    device=None,
    progress: bool | None = None,
    seed: int | None = None,
) -> Run:
    """Load data and fine-tune ``model`` on it unless the run folder already holds M_0 for this config.

    ``out`` is the runs folder; the run folder is ``run_folder(out, dataset, seed)``, and ``seed`` (default:
    ``preset.seed``) becomes the preset's seed, the pipeline seed of every later stage on this run."""
    preset = preset.replace(seed=seed)
    return _prepare(dataset, model, preset, run_folder(out, dataset, preset.seed), data_dir, device, progress)


def _prepare(dataset: str, model: str | None, preset: Preset, folder: Path, data_dir, device, progress) -> Run:
    model = model or preset.model
    preset = preset.replace(model=model)  # the run's preset names the model actually used
    device = _check_inputs(folder, model, preset, device)
    splits = load_splits(dataset, preset, data_dir)
    config = _run_config(dataset, model, preset, splits, device, data_dir)
    _check_folder(folder, config)
    if (folder / "model").is_dir() and (folder / "metrics.json").is_file():
        return _reuse(folder, preset, splits, config, device)
    # a bad model name fails before anything is written; the new head is initialised with the run's seed
    m, tok = load_model(model, class_names=splits.class_names, seed=preset.seed)
    encoded = encode_splits(splits, tok, preset.max_length)
    settings = TrainSettings.finetune(preset, getattr(m.config, "hidden_size", None))
    config["finetune"] = settings.to_dict()  # the learning rate actually used (preset.lr_width scales it)
    beside = start_beside(folder, splits, preset.seed, device) if is_main_process() else None  # TF-IDF + LR meanwhile
    t0 = time.perf_counter()
    select = _EpochSelection(m, encoded["val"], preset.eval_batch_size, device, preset.finetune_patience)
    info = train(
        m,
        encoded["train"],
        settings,
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
        "epochs_run": len(select.history),  # of settings.epochs at most (finetune_patience may stop sooner)
        "best_epoch": select.best_epoch + 1,
        "val_acc_by_epoch": select.history,
        "device": str(device),
        "precision": precision(device),
        "torch": torch.__version__,
        "paperlib": __version__,
        "run_config": config,  # a copy: a deleted (damaged) config.json is checked against it and written again
    }
    if is_main_process():  # under torchrun every rank trained the same weights; one writes them
        _save_run(folder, m, tok, config, metrics, progress)
    run = Run(folder, preset, splits, encoded, m, tok, metrics)
    if is_main_process():
        baseline_run(run, beside=beside)
    barrier()
    return run


def _check_folder(folder: Path, config: dict) -> None:
    """The folder holds this config's run (or none yet); then what a killed run left there is removed."""
    recorded = _recorded_config(folder)
    if recorded is not None:
        _compare(recorded, config, folder)
    if folder.is_dir():
        with run_lock(folder):  # taking the lock removes a killed run's leftovers (a half-saved model/)
            pass


def _reuse(folder: Path, preset: Preset, splits: Splits, config: dict, device) -> Run:
    """The folder's saved M_0 as a Run; a config.json deleted as the damaged-file advice says is written again
    (``_check_folder`` compared this config with metrics.json's record first)."""
    if not (folder / "config.json").is_file() and is_main_process():
        recorded = read_json(folder / "metrics.json").get("run_config")  # the very file training wrote
        write_json(recorded if isinstance(recorded, dict) else config, folder / "config.json")
    m, tok = load_model(str(folder / "model"))
    m.to(device).eval()
    encoded = encode_splits(splits, tok, preset.max_length)
    run = Run(folder, preset, splits, encoded, m, tok, read_json(folder / "metrics.json"))
    if is_main_process():
        baseline_run(run)  # the classical reference beside M_0 (seconds; read back when present)
    return run


class _EpochSelection:
    """Validation-based model selection and early stopping for fine-tuning (``train``'s ``on_epoch_end``): after
    each epoch the validation accuracy is measured and the weights of the best epoch so far are kept (a copy on
    the model's device); ties keep the earlier epoch.  With ``patience`` > 0 it asks training to stop once
    ``patience`` epochs in a row brought no new best.  ``restore_best`` loads the best weights back.  The test
    split is never looked at."""

    def __init__(self, model, val, batch_size, device, patience: int = 0):
        self.model, self.val, self.batch_size, self.device = model, val, batch_size, device
        self.patience = patience
        self.best_epoch, self.best_acc, self.best_state, self.history = -1, -1.0, None, []

    def __call__(self, epoch: int) -> bool:
        acc = evaluate(self.model, self.val, self.batch_size, self.device)["accuracy"]
        self.history.append(round(acc, 6))
        if acc > self.best_acc:
            self.best_epoch, self.best_acc = epoch, acc
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return self.patience > 0 and epoch - self.best_epoch >= self.patience

    def restore_best(self) -> None:
        if self.best_state is not None and self.best_epoch != len(self.history) - 1:
            self.model.load_state_dict(self.best_state)
        self.best_state = None


def preset_of(folder: str | Path) -> Preset:
    """The preset a run folder was made with, rebuilt from its config.json (fields added since take their defaults)."""
    config = _finished_config(Path(folder))
    known = {f.name for f in dataclasses.fields(Preset)}
    if "preset" not in config:
        path = Path(folder) / "config.json"
        raise PaperlibError(f"{str(path)!r} records no preset; {damaged_advice(path)}")
    saved = {k: v for k, v in config["preset"].items() if k in known}
    return Preset(**{**saved, "datasets": tuple(saved["datasets"])})


def holds_m0(folder: str | Path) -> bool:
    """Whether ``folder`` holds a fine-tuned M_0: config.json, metrics.json and model/ (what notebook 01 writes)."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and (folder / "metrics.json").is_file() and (folder / "model").is_dir()


def _finished_config(folder: Path) -> dict:
    if not holds_m0(folder):
        raise PaperlibError(
            f"{str(folder)!r} holds no fine-tuned M_0 (config.json, metrics.json, model/): "
            f"run `paperlib finetune` or notebook 01 for this dataset first"
        )
    return read_json(folder / "config.json")


def load_run(runs: str | Path, dataset: str, data_dir=None, device=None, seed: int | None = None) -> Run:
    """The saved run of ``dataset`` and pipeline seed ``seed`` in the runs folder ``runs``
    (``runs/seed-<seed>/<dataset>``; a runs folder from before seeds, holding ``<dataset>/`` directly, is read as
    the seed its configs record, ``paths.seed_roots``): its M_0, splits and tokenised tensors, with the preset and
    model its config.json records; never trains (a folder without M_0 is an error saying what to run).
    ``seed`` None: the lowest seed under ``runs``.

    ``dataset`` as given to ``prepare`` (a registry name or a data folder); a bare run-folder name falls
    back to the config's ``dataset_arg``, which is relative to the data dir (configs hold no machine paths).

    What a later notebook needs without repeating notebook 01's arguments.  Tokenised tensors come
    from the token cache (``tokens.encode``: memory, then ``$PAPERLIB_CACHE_DIR``), and a second call in the
    same process for the same finished folder returns the same ``Run`` (its model is shared, not reloaded)."""
    roots = seed_roots(runs)
    seed = min(roots, default=0) if seed is None else int(seed)
    folder = roots.get(seed, seed_root(runs, seed)) / dataset_name(dataset)
    config = _finished_config(folder)
    key = (str(folder.resolve()), (folder / "metrics.json").stat().st_mtime_ns, str(data_dir), str(device))
    if key not in _LOADED:
        _LOADED.clear()  # one run per process at a time: a model is tens of MB and up
        source = dataset if Path(dataset).expanduser().is_dir() or dataset in REGISTRY else config["dataset_arg"]
        _LOADED[key] = _prepare(source, config["model"], preset_of(folder), folder, data_dir, device, False)
    return _LOADED[key]


_LOADED: dict[tuple, Run] = {}


def _save_run(folder: Path, model, tokenizer, config: dict, metrics: dict, progress: bool | None = None) -> None:
    """Write model/, config.json, then metrics.json (the mark of a complete M_0).

    Nothing is written before training ends; if saving fails or is interrupted, the folders this call
    created (the run folder, and the runs folder when it was new) are removed again, so no half-written run
    folder is left behind."""
    from transformers.utils import logging as hf_logging

    created = folder  # the outermost folder this call makes (the runs folder too, when it is new)
    while not created.parent.exists() and created.parent != created.parent.parent:
        created = created.parent
    created = created if not created.exists() else None
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
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    finally:
        if bars:
            hf_logging.enable_progress_bar()
