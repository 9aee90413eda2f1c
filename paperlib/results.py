"""One loader for a runs folder: every dataset's curves, metrics, distillation rows and per-example correctness,
seed by seed, read back from the run folders (SPEC 9) for the tables and claims.

A runs folder holds one seed root per pipeline seed (``<runs>/seed-<S>/<dataset>/``) or, written before seeds,
the ``<dataset>/`` folders themselves (one seed; ``paths.seed_roots``).  ``load_results(runs)`` -> a list of
``DatasetResults`` in the paper's dataset order, each holding one ``SeedRun`` per seed; ``load_runs(runs)`` -> the
same data as three plain frames (curves and distill rows with ``dataset`` and ``pipeline_seed`` columns, metrics
averaged over seeds), for notebooks and plots.

The splits do not depend on the pipeline seed, so example i of a split is the same text in every seed; the loader
checks it (the labels must agree) before anything pairs examples across seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import PAPER_DATASETS
from .errors import PaperlibError
from .io import read_json, read_parquet
from .paths import seed_roots

SEED_COLUMN = "pipeline_seed"  # the pipeline seed of a row (curves' own 'seed' column is Random's replicate)
CONTROL = ("M_0", 0, "ce")  # the distill rows of "M_0 continued": (strategy, depth, mode)


def dataset_order(names) -> list[str]:
    return [d for d in PAPER_DATASETS if d in set(names)] + sorted(set(names) - set(PAPER_DATASETS))


@dataclass
class SeedRun:
    """One run folder: one dataset under one pipeline seed.

    ``scores[(strategy, split)]``: (L-1, n) per-example correctness of each step k = 1..L-1 (mean over its
    replicates for Random); ``original[split]``: M_0's (n,) correctness; ``distill_scores[(strategy, depth, mode,
    split)]``: a distilled student's (and "M_0 continued", ``CONTROL``); ``labels[split]``: the true labels.
    The score dicts are empty when the folder holds no predictions."""

    seed: int
    n_layers: int
    metrics: dict
    tolerance: float
    curves: pd.DataFrame
    distill: pd.DataFrame
    scores: dict = field(default_factory=dict, repr=False)
    original: dict = field(default_factory=dict, repr=False)
    distill_scores: dict = field(default_factory=dict, repr=False)
    labels: dict = field(default_factory=dict, repr=False)

    @property
    def has_predictions(self) -> bool:
        return bool(self.scores) and "test" in self.original


@dataclass
class DatasetResults:
    """One dataset's results over its pipeline seeds: ``runs`` = {seed: SeedRun}.

    ``curves`` and ``distill`` are every seed's rows with a ``pipeline_seed`` column; ``metrics`` is M_0's
    metrics averaged over seeds (numbers; other values from the first seed); ``seed_scores(strategy, split)``
    gives {seed: (L-1, n)} for pairing across seeds (``stack``)."""

    name: str
    runs: dict
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # resample means (tables.compare_pairs)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(sorted(self.runs))

    @property
    def n_layers(self) -> int:
        return self.runs[self.seeds[0]].n_layers

    @property
    def tolerance(self) -> float:
        return self.runs[self.seeds[0]].tolerance

    @property
    def has_predictions(self) -> bool:
        return all(run.has_predictions for run in self.runs.values())

    @property
    def metrics(self) -> dict:
        per_seed = [self.runs[s].metrics for s in self.seeds]
        out = dict(per_seed[0])
        for key in per_seed[0]:
            values = [m.get(key) for m in per_seed]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                out[key] = float(np.mean(values))
        return out

    def _frames(self, attr: str) -> pd.DataFrame:
        parts = [getattr(self.runs[s], attr).assign(**{SEED_COLUMN: s}) for s in self.seeds]
        parts = [p for p in parts if len(p)]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    @property
    def curves(self) -> pd.DataFrame:
        return self._frames("curves")

    @property
    def distill(self) -> pd.DataFrame:
        return self._frames("distill")

    def seed_scores(self, strategy: str, split: str = "test") -> dict:
        """{seed: (L-1, n) scores} of ``strategy`` over the seeds that hold them."""
        return {s: r.scores[(strategy, split)] for s, r in sorted(self.runs.items()) if (strategy, split) in r.scores}

    def seed_original(self, split: str = "test") -> dict:
        return {s: r.original[split] for s, r in sorted(self.runs.items()) if split in r.original}

    def seed_distill(self, key: tuple) -> dict:
        """{seed: (n,) scores} of the distilled model ``key`` = (strategy, depth, mode, split)."""
        return {s: r.distill_scores[key] for s, r in sorted(self.runs.items()) if key in r.distill_scores}

    def only(self, seeds) -> DatasetResults:
        """The same dataset restricted to ``seeds`` (those it has)."""
        return DatasetResults(self.name, {s: self.runs[s] for s in seeds if s in self.runs})


def stack(*per_seed: dict) -> tuple[tuple[int, ...], list[np.ndarray]]:
    """The seeds common to every {seed: array} given, and each stacked over them (seed first): the pairing of a
    comparison across seeds.  No common seed: ((), [])."""
    common = sorted(set.intersection(*(set(d) for d in per_seed))) if per_seed else []
    if not common:
        return (), []
    return tuple(common), [np.stack([d[s] for s in common]) for d in per_seed]


def _correct_blocks(preds: pd.DataFrame, labels: np.ndarray, keys: list[str]) -> dict:
    """{key tuple: (n,) bool correctness} from prediction rows of one split (each model: examples 0..n-1)."""
    n = len(labels)
    preds = preds.sort_values([*keys, "example"], kind="stable")
    if len(preds) % n or not (preds["example"].to_numpy().reshape(-1, n) == np.arange(n)).all():
        raise PaperlibError(
            f"predictions do not cover examples 0..{n - 1} once per model; rerun the stage that wrote them"
        )
    correct = preds["pred"].to_numpy().reshape(-1, n) == labels
    heads = preds[keys].iloc[::n]
    return {tuple(k): c for k, c in zip(heads.itertuples(index=False, name=None), correct)}


def _read_scores(folder: Path, run: SeedRun) -> None:
    from .runfiles import LABELS_FILE, ORIGINAL, SPLITS, read_predictions

    preds = read_predictions(folder) if (folder / LABELS_FILE).is_file() else None  # the file and its parts
    if preds is None:
        return
    labels = read_parquet(folder / LABELS_FILE)
    dpath = folder / "distill_predictions.parquet"
    dpreds = read_parquet(dpath) if dpath.is_file() else None
    steps = np.arange(1, run.n_layers)
    for split in SPLITS:
        y = labels[labels["split"] == split].sort_values("example")["label"].to_numpy()
        run.labels[split] = y
        blocks = _correct_blocks(preds[preds["split"] == split], y, ["strategy", "seed", "step"])
        by_strategy: dict[str, dict[int, list]] = {}
        for (strategy, _replicate, step), c in blocks.items():
            if strategy == ORIGINAL:
                run.original[split] = c.astype(np.float64)
            else:
                by_strategy.setdefault(strategy, {}).setdefault(int(step), []).append(c)
        for strategy, per_step in by_strategy.items():
            if set(per_step) >= set(steps.tolist()):
                run.scores[(strategy, split)] = np.stack([np.mean(per_step[k], axis=0) for k in steps])
        if dpreds is not None and len(dpreds):
            for (strategy, depth, mode), c in _correct_blocks(
                dpreds[dpreds["split"] == split], y, ["strategy", "depth", "mode"]
            ).items():
                run.distill_scores[(strategy, int(depth), mode, split)] = c.astype(np.float64)


def _read_run(folder: Path, seed: int, scores: bool, default_tol: float) -> SeedRun:
    metrics = read_json(folder / "metrics.json")
    curves = read_parquet(folder / "curves.parquet").assign(dataset=folder.name)
    n_layers = int(metrics.get("n_layers") or curves["step"].max() + 1)
    config = read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
    tol = float(config.get("preset", {}).get("val_tolerance", default_tol))
    dpath = folder / "distill.parquet"
    distill = read_parquet(dpath).assign(dataset=folder.name) if dpath.is_file() else pd.DataFrame()
    run = SeedRun(seed, n_layers, metrics, tol, curves, distill)
    if scores:
        _read_scores(folder, run)
    return run


def _check_pairing(res: DatasetResults) -> None:
    """Every seed of a dataset must have the same L and, where predictions exist, the same labels in the same
    order: example i is then the same text in every seed, which the two-level bootstrap pairs on."""
    first = res.runs[res.seeds[0]]
    for s in res.seeds[1:]:
        run = res.runs[s]
        if run.n_layers != first.n_layers:
            raise PaperlibError(
                f"{res.name}: seed {s} has {run.n_layers} layers, seed {res.seeds[0]} {first.n_layers}; "
                f"the seeds of one runs folder must prune the same model"
            )
        for split in set(run.labels) & set(first.labels):
            a, b = first.labels[split], run.labels[split]
            if len(a) != len(b) or not np.array_equal(a, b):
                raise PaperlibError(
                    f"{res.name}: the {split} labels of seed {s} differ from seed {res.seeds[0]}'s "
                    f"({len(b)} vs {len(a)} examples); the seeds were not scored on the same examples, so they "
                    f"cannot be paired (the splits must not depend on the seed: preset split_seed)"
                )


def load_results(runs_root: str | Path, scores: bool = True, seeds=None, datasets=None) -> list[DatasetResults]:
    """Every dataset run under ``runs_root``, over every seed root (``paths.seed_roots``; only ``seeds`` when
    given; only the run folders named in ``datasets`` when given), in the paper's dataset order.

    A run folder counts when it holds curves.parquet and metrics.json; its per-example correctness is read when
    predictions.parquet is there (``scores``; False skips reading the predictions).  The tolerance of the
    validation-chosen k comes from the run's preset (``val_tolerance``; ``config.Preset``'s default when
    absent).  The seeds of a dataset must pair (``_check_pairing``); else a PaperlibError."""
    from .config import Preset

    root = check_runs_root(runs_root)
    roots = seed_roots(root) or {0: root}
    if seeds is not None:
        missing = sorted(set(seeds) - set(roots))
        if missing:
            raise PaperlibError(f"no seed {missing} under {str(root)!r}; it holds seeds {sorted(roots)}")
        roots = {s: roots[s] for s in sorted(seeds)}
    default_tol = Preset.__dataclass_fields__["val_tolerance"].default
    by_dataset: dict[str, dict[int, SeedRun]] = {}
    folders: list[Path] = []
    for seed, seed_root in roots.items():
        for folder in sorted(p for p in seed_root.iterdir() if p.is_dir()):
            if datasets is not None and folder.name not in set(datasets):
                continue
            if (folder / "curves.parquet").is_file() and (folder / "metrics.json").is_file():
                by_dataset.setdefault(folder.name, {})[seed] = _read_run(folder, seed, scores, default_tol)
                folders.append(folder)
    if not by_dataset:
        raise PaperlibError(
            f"no run folder with curves.parquet and metrics.json under {str(root)!r}; "
            f"run `paperlib prune` first (or check --runs)"
        )
    check_same_config(root, folders)
    out = [DatasetResults(name, by_dataset[name]) for name in dataset_order(by_dataset)]
    for res in out:
        _check_pairing(res)
    return out


def check_same_config(root: Path, folders: list[Path]) -> None:
    """One table pools run folders made one way: the same model, precision and recipe (``config.result_config``;
    the pipeline seed may differ); a runs folder mixing them is refused, naming how the run folders differ."""
    from .config import config_differences, result_config

    configs = {}
    for folder in folders:
        if (folder / "config.json").is_file():
            metrics = read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else None
            configs[folder] = result_config(read_json(folder / "config.json"), metrics)
    if not configs:
        return
    first, like = next(iter(configs.items()))
    for folder, config in configs.items():
        diff = config_differences(like, config)
        if diff:
            shown = [f.relative_to(root).as_posix() if f.is_relative_to(root) else f.name for f in (first, folder)]
            raise PaperlibError(
                f"runs folder {str(root)!r} mixes runs made differently: {shown[0]} and {shown[1]} differ in "
                f"{'; '.join(diff[:4])}; put each way of running in its own runs folder (--out) and tabulate them apart"
            )


def check_runs_root(runs_root: str | Path) -> Path:
    """``runs_root`` as a Path when it is a folder; else a PaperlibError that says what to pass."""
    root = Path(runs_root)
    if root.exists() and not root.is_dir():
        raise PaperlibError(f"runs folder {str(root)!r} is a file, not a folder; pass the folder that holds <dataset>/")
    if not root.is_dir():
        raise PaperlibError(f"runs folder {str(root)!r} does not exist; run `paperlib prune` first or pass --runs")
    return root


def load_runs(runs_root: str | Path, seeds=None, datasets=None) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """The same run folders as ``load_results`` as three plain frames: (curves with 'dataset' and
    'pipeline_seed' columns, {dataset: metrics.json averaged over seeds}, distill rows with both columns),
    without the per-example scores."""
    results = load_results(runs_root, scores=False, seeds=seeds, datasets=datasets)
    distill = [r.distill for r in results if not r.distill.empty]
    return (
        pd.concat([r.curves for r in results], ignore_index=True),
        {r.name: r.metrics for r in results},
        pd.concat(distill, ignore_index=True) if distill else pd.DataFrame(),
    )


def classical_reference(runs_root: str | Path) -> dict:
    """{dataset: test accuracy of TF-IDF + logistic regression} from the run folders' baseline.json
    (``paperlib.baselines``), averaged over the seed roots that hold one; datasets without one are left out.
    (The classical reference sees only the splits, which no pipeline seed changes.)"""
    from .baselines import read_baseline

    found: dict[str, list[float]] = {}
    root = Path(runs_root)
    for seed_root in (seed_roots(root) or {0: root}).values() if root.is_dir() else []:
        for folder in sorted(p for p in seed_root.iterdir() if p.is_dir()):
            info = read_baseline(folder)
            if info:
                found.setdefault(folder.name, []).append(info["test_acc"])
    return {name: float(np.mean(accs)) for name, accs in found.items()}
