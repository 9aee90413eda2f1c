"""Presets (SPEC section 8) and the settings every stage shares."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PaperlibError

DATA_DIR_ENV = "PAPERLIB_DATA_DIR"
CACHE_DIR_ENV = "PAPERLIB_CACHE_DIR"


@dataclass(frozen=True)
class Preset:
    """Every number a run depends on.  ``paper`` follows SPEC 8; ``quick`` is the CPU default."""

    name: str
    model: str
    datasets: tuple[str, ...]
    max_length: int
    train_cap: int
    val_cap: int
    test_cap: int
    n_calib: int
    finetune_epochs: int
    kd_epochs: int
    random_seeds: int
    batch_size: int = 32
    lr: float = 5e-5
    kd_lr: float = 3e-5
    kd_alpha: float = 0.5
    kd_temperature: float = 2.0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    finetune_between: int = 0
    eval_batch_size: int = 128
    # calibration examples per forward+backward of the signal pass (whole gradient batches of batch_size); a speed
    # setting, the signals do not depend on it (SPEC 3); 0: signals.AUTO_CHUNK for the device
    signal_chunk: int = 0
    distill_depths: str = "all"  # which depths k to distil: a policy of distill.parse_depths or a comma list
    kd_patience: int = 0  # early stopping of distillation on val accuracy after this many epochs without a best; 0: off
    seed: int = 0
    # Table 1's validation-chosen depth: the most layers removed with val acc >= M_0's minus this (1 point)
    val_tolerance: float = 0.01
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def replace(self, **changes) -> Preset:
        """A copy with some fields changed (``None`` values are ignored)."""
        known = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(changes) - known)
        if bad:
            raise PaperlibError(f"unknown preset field(s) {bad}; known: {sorted(known)}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("extra")
        d["datasets"] = list(self.datasets)
        return d


PAPER_DATASETS = ("newsgroup", "dbpedia", "arxiv", "patent", "yahoo", "yelp", "agnews", "imdb", "amazon")

PRESETS: dict[str, Preset] = {
    # lr 1e-4: MiniLM is small and two epochs over 800 texts are few steps (our choice, SPEC is silent).
    # trimmed so the main job ends within 4 min on 2 CPU cores in fp32 (SPEC 8, issue 14): 32 tokens (the
    # length section 0 of SPEC reports), 64 calibration texts, one distillation epoch at k*, the middle and the
    # deepest depth
    "quick": Preset(
        "quick", "minilm", ("bbc_news",), 32, 800, 200, 400, 64, 2, 1, 3, lr=1e-4, kd_lr=1e-4, distill_depths="three"
    ),
    # eval batch 512: evaluation of pruned variants dominates the prune stage; larger batches fill a GPU
    "paper": Preset(
        "paper", "bert-base-uncased", PAPER_DATASETS, 128, 8000, 1000, 2000, 512, 3, 3, 5, lr=3e-5, eval_batch_size=512
    ),
    # for tests and smoke runs: a few dozen examples, seconds per stage
    "tiny": Preset("tiny", "random:tiny", ("bbc_news",), 32, 80, 40, 40, 16, 1, 1, 2, batch_size=16, lr=1e-3),
}


def get_preset(name: str, **overrides) -> Preset:
    """Look up a preset by name and apply overrides such as ``max_length=32``."""
    if name not in PRESETS:
        raise PaperlibError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    preset = PRESETS[name].replace(**overrides)
    if preset.max_length < 8:
        raise PaperlibError(f"max_length must be at least 8 tokens, got {preset.max_length}")
    check_depths(preset.distill_depths)
    if preset.kd_patience < 0:
        raise PaperlibError(f"kd_patience must be 0 (off) or a number of epochs, got {preset.kd_patience}")
    return preset


DEPTH_POLICIES = ("all", "every_other", "three", "best")  # distill.parse_depths implements them


def check_depths(depths, name: str = "distill_depths") -> None:
    """A depth policy name or a comma list of layer counts k >= 1 (checked against the curve when
    distilling); raises PaperlibError naming ``name`` (the preset field or ``--depths``) and the choices."""
    if depths in DEPTH_POLICIES:
        return
    parts = [p.strip() for p in str(depths).split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise PaperlibError(
            f"{name} must be one of {', '.join(DEPTH_POLICIES)} or a comma list of layer counts "
            f"k >= 1 (e.g. 2,4,6), got {depths!r}"
        )


def data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The local data folder: ``--data-dir`` if given, else ``$PAPERLIB_DATA_DIR``, else none."""
    value = explicit if explicit not in (None, "") else os.environ.get(DATA_DIR_ENV) or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise PaperlibError(f"data dir {str(path)!r} is not a folder (check --data-dir or ${DATA_DIR_ENV})")
    return path


def cache_dir() -> Path:
    """Where tokenised tensors are cached (``$PAPERLIB_CACHE_DIR`` or ``~/.cache/paperlib``)."""
    path = Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "paperlib")
    return path
