"""Presets (SPEC section 8), the settings every stage shares, and the process's runtime settings.

``runtime()`` is the one reader of the ``PAPERLIB_*`` environment variables: a frozen ``Runtime``
(precision, quiet, debug, repository root, cache and data folders, ...) that the modules ask instead of
``os.environ``.  The CLI's flags override it for the code below (``overridden``) without writing the
environment; only a child process that must inherit the settings (a papermill kernel) gets them as
variables (``Runtime.environ``)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PaperlibError

# the environment variables runtime() reads, by Runtime field
ENV = {
    "precision": "PAPERLIB_PRECISION",
    "quiet": "PAPERLIB_QUIET",
    "debug": "PAPERLIB_DEBUG",
    "root": "PAPERLIB_ROOT",
    "cache_dir": "PAPERLIB_CACHE_DIR",
    "data_dir": "PAPERLIB_DATA_DIR",
    "progress_file": "PAPERLIB_PROGRESS_FILE",
    "minilm_dir": "PAPERLIB_MINILM_DIR",
    "mpnet_sdpa": "PAPERLIB_MPNET_SDPA",
    "compile": "PAPERLIB_COMPILE",
    "scheduler": "PAPERLIB_DASK_SCHEDULER",
}
DATA_DIR_ENV = ENV["data_dir"]
CACHE_DIR_ENV = ENV["cache_dir"]
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class Runtime:
    """How this process runs, from the ``PAPERLIB_*`` variables (``ENV``) and the CLI's flags.

    ``precision``: auto, bf16 or fp32 (``train.precision`` resolves auto per device); ``quiet``: no progress
    bars; ``debug``: tracebacks instead of one error line; ``root``: the repository root (None: the
    checkout); ``cache_dir``: tokenised tensors and hub splits; ``data_dir``: the default ``--data-dir``
    (unchecked here: ``data_dir()`` checks it); ``progress_file``: where bars report under ``paperlib
    reproduce``; ``minilm_dir``: a copy of the embedded MiniLM; ``mpnet_sdpa``: paperlib's SDPA path for MPNet;
    ``compile``: how training compiles the encoder layers (checked by ``train.compile_mode``); ``scheduler``: the
    Dask scheduler ``paperlib reproduce`` uses (None: a local cluster)."""

    precision: str = "auto"
    quiet: bool = False
    debug: bool = False
    root: Path | None = None
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "paperlib")
    data_dir: Path | None = None
    progress_file: Path | None = None
    minilm_dir: Path | None = None
    mpnet_sdpa: bool = True
    compile: str = "auto"
    scheduler: str | None = None

    @classmethod
    def from_environ(cls, environ, overrides: dict | None = None) -> Runtime:
        """Parse the variables of ``environ`` (a mapping); ``overrides`` (field -> value) win over them."""

        def value(name):
            raw = environ.get(ENV[name])
            return None if raw is None or raw.strip() == "" else raw.strip()

        def path(name):
            raw = value(name)
            return Path(raw).expanduser() if raw is not None else None

        def flag(name, default):
            raw = value(name)
            return default if raw is None else raw.upper() not in ("0", "OFF", "NO", "FALSE")

        precision = (value("precision") or "auto").lower()
        changes = dict(overrides or {})
        if "precision" not in changes and precision not in PRECISIONS:
            raise PaperlibError(f"${ENV['precision']} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        settings = {
            "precision": precision,
            "quiet": flag("quiet", False),
            "debug": flag("debug", False),
            "root": path("root").resolve() if path("root") else None,
            "cache_dir": path("cache_dir") or Path.home() / ".cache" / "paperlib",
            "data_dir": path("data_dir"),
            "progress_file": path("progress_file"),
            "minilm_dir": path("minilm_dir"),
            "mpnet_sdpa": flag("mpnet_sdpa", True),
            "compile": (value("compile") or "auto").lower(),
            "scheduler": value("scheduler"),
        }
        return cls(**{**settings, **changes})

    def environ(self, *names: str) -> dict[str, str]:
        """The variables a child process needs to see these settings (``names``: those fields only)."""
        out = {}
        for name in names or tuple(ENV):
            v = getattr(self, name)
            if isinstance(v, bool):
                out[ENV[name]] = "1" if v else "0"
            elif v is not None:
                out[ENV[name]] = str(v)
        return out


_OVERRIDES: dict = {}
_CACHE: list = [None, None]  # (key, Runtime)


def runtime(refresh: bool = False) -> Runtime:
    """The process's ``Runtime``: the ``PAPERLIB_*`` variables read once, and read again whenever one of them
    (or an override) changed since, so a test's ``monkeypatch.setenv`` is seen; ``refresh`` re-reads anyway.
    A bad value (``$PAPERLIB_PRECISION=half``) is a PaperlibError naming the variable."""
    key = (tuple(os.environ.get(v) for v in ENV.values()), tuple(sorted(_OVERRIDES.items())))
    if refresh or _CACHE[0] != key:
        _CACHE[:] = [key, Runtime.from_environ(os.environ, _OVERRIDES)]
    return _CACHE[1]


@contextlib.contextmanager
def overridden(**changes):
    """Inside the block ``runtime()`` gives these fields (None values are ignored): how the CLI's flags
    (``--quiet``, ``--precision``, ``--debug``) reach the stages without writing the environment."""
    unknown = sorted(set(changes) - set(ENV))
    if unknown:
        raise PaperlibError(f"unknown runtime setting(s) {unknown}; known: {sorted(ENV)}")
    changes = {k: v for k, v in changes.items() if v is not None}
    if "precision" in changes and changes["precision"] not in PRECISIONS:
        raise PaperlibError(f"precision must be one of {', '.join(PRECISIONS)}, got {changes['precision']!r}")
    saved = dict(_OVERRIDES)
    _OVERRIDES.update(changes)
    try:
        yield runtime()
    finally:
        _OVERRIDES.clear()
        _OVERRIDES.update(saved)


@contextlib.contextmanager
def environment(values: dict[str, str | None]):
    """Inside the block ``os.environ`` holds ``values`` (None: the variable unset); restored afterwards."""
    saved = {k: os.environ.get(k) for k in values}

    def apply(changes):
        for k, v in changes.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    apply(values)
    try:
        yield values
    finally:
        apply(saved)


@contextlib.contextmanager
def exported(*names: str):
    """Inside the block the environment holds the runtime's ``names`` fields (for child processes that
    must inherit them: papermill kernels); restored afterwards."""
    with environment(runtime().environ(*names)) as wanted:
        yield wanted


def seed_list(first: int, n: int) -> list[int]:
    """The pipeline seeds first .. first + n - 1 (``--seed``, ``--seeds``)."""
    if n < 1 or first < 0:
        raise PaperlibError(f"--seeds must be at least 1 and --seed at least 0, got --seed {first} --seeds {n}")
    return list(range(first, first + n))


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
    finetune_epochs: int  # the most fine-tuning epochs; with finetune_patience, early stopping may end sooner
    kd_epochs: int
    random_seeds: int
    batch_size: int = 32
    lr: float = 5e-5
    # lr holds for models of hidden size lr_width; other widths take lr * lr_width / hidden (0: lr for every model)
    lr_width: int = 0
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
    finetune_patience: int = 0  # fine-tuning stops after this many epochs without a new best val accuracy; 0: off
    seed: int = 0  # the pipeline seed (fine-tuning, calibration sample, Random, RF, distillation); --seed overrides
    split_seed: int = 0  # seeds the data splits only, so that every pipeline seed is scored on the same examples
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
    # eval batch 512: evaluation of pruned variants dominates the prune stage; larger batches fill a GPU.
    # A converged M_0 (SPEC 8, issue 19): at most 10 epochs, stopped after 3 without a new best validation
    # accuracy, 256 tokens; lr 5e-5 at hidden 768 (BERT-base, MPNet-base), 1e-4 for MiniLM's 384
    "paper": Preset(
        "paper",
        "bert-base-uncased",
        PAPER_DATASETS,
        256,
        8000,
        1000,
        2000,
        512,
        10,
        3,
        5,
        lr=5e-5,
        lr_width=768,
        finetune_patience=3,
        eval_batch_size=512,
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
    if not 0 <= preset.seed < 2**32:  # what numpy and torch seed generators accept
        raise PaperlibError(f"seed must be a whole number from 0 to 2**32 - 1 (--seed), got {preset.seed}")
    check_depths(preset.distill_depths)
    for name in ("kd_patience", "finetune_patience"):
        if getattr(preset, name) < 0:
            raise PaperlibError(f"{name} must be 0 (off) or a number of epochs, got {getattr(preset, name)}")
    if preset.finetune_epochs < 1:
        raise PaperlibError(f"finetune_epochs must be at least 1, got {preset.finetune_epochs}")
    if preset.seed < 0 or preset.split_seed < 0:
        raise PaperlibError(f"seeds must be 0 or more, got seed={preset.seed}, split_seed={preset.split_seed}")
    return preset


# preset fields that are not part of the recipe: the name, the datasets it lists, the evaluation batch size,
# which distillation depths are run (not how), and the pipeline seed (a draw, not a way of running: seeds are
# kept apart by their seed-<S> folders and pooled by the seed statistics); every other field is
NEUTRAL_FIELDS = ("name", "datasets", "eval_batch_size", "distill_depths", "seed")


def result_config(run_config: dict, metrics: dict | None = None) -> dict:
    """What two run folders must share for their results to be pooled (transfer fusion, ``paperlib table``):
    the model, the precision (metrics.json's where an older config.json lacks it) and the recipe (the preset
    without ``NEUTRAL_FIELDS``; a field an older config lacks at its default).  Keys ``model``,
    ``precision``, ``preset.<field>``."""
    defaults = {f.name: f.default for f in dataclasses.fields(Preset) if f.name != "extra"}
    preset = {**defaults, **run_config.get("preset", {})}
    return {
        "model": run_config.get("model"),
        "precision": run_config.get("precision") or (metrics or {}).get("precision"),
        **{f"preset.{k}": v for k, v in sorted(preset.items()) if k not in NEUTRAL_FIELDS},
    }


def config_differences(a: dict, b: dict) -> list[str]:
    """The keys of two ``result_config`` dicts whose values differ, as 'key (a vs b)'."""
    return [f"{k} ({a.get(k)!r} vs {b.get(k)!r})" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


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
    value = explicit if explicit not in (None, "") else runtime().data_dir
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise PaperlibError(f"data dir {str(path)!r} is not a folder (check --data-dir or ${DATA_DIR_ENV})")
    return path


def cache_dir() -> Path:
    """Where tokenised tensors are cached (``$PAPERLIB_CACHE_DIR`` or ``~/.cache/paperlib``)."""
    return runtime().cache_dir
