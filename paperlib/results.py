"""One loader for a runs folder: every dataset's curves, metrics, distillation rows and per-example
correctness, read back from the run folders (SPEC 9) for the tables and claims.

``load_results(runs)`` -> a list of ``DatasetResults`` in the paper's dataset order; ``load_runs(runs)`` ->
the same data as three plain frames (curves with a ``dataset`` column, metrics by dataset, distill rows), for
notebooks and plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import PAPER_DATASETS
from .errors import PaperlibError
from .io import read_json, read_parquet


def dataset_order(names) -> list[str]:
    return [d for d in PAPER_DATASETS if d in set(names)] + sorted(set(names) - set(PAPER_DATASETS))


@dataclass
class DatasetResults:
    """One run folder's results, read back for the tables (``load_results``).

    ``scores[(strategy, split)]``: (L-1, n) per-example correctness of each step k = 1..L-1 (mean over
    seeds for Random); ``original[split]``: M_0's (n,) correctness; ``distill_scores[(strategy, depth,
    mode, split)]``: a distilled student's.  Empty when the folder holds no predictions."""

    name: str
    n_layers: int
    metrics: dict
    tolerance: float
    curves: pd.DataFrame
    distill: pd.DataFrame
    scores: dict = field(default_factory=dict, repr=False)
    original: dict = field(default_factory=dict, repr=False)
    distill_scores: dict = field(default_factory=dict, repr=False)

    @property
    def has_predictions(self) -> bool:
        return bool(self.scores) and "test" in self.original


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


def _read_scores(folder: Path, res: DatasetResults) -> None:
    from .pruning import LABELS_FILE, ORIGINAL, SPLITS, read_predictions

    preds = read_predictions(folder) if (folder / LABELS_FILE).is_file() else None  # the file and its parts
    if preds is None:
        return
    labels = read_parquet(folder / LABELS_FILE)
    dpath = folder / "distill_predictions.parquet"
    dpreds = read_parquet(dpath) if dpath.is_file() else None
    steps = np.arange(1, res.n_layers)
    for split in SPLITS:
        y = labels[labels["split"] == split].sort_values("example")["label"].to_numpy()
        blocks = _correct_blocks(preds[preds["split"] == split], y, ["strategy", "seed", "step"])
        by_strategy: dict[str, dict[int, list]] = {}
        for (strategy, _seed, step), c in blocks.items():
            if strategy == ORIGINAL:
                res.original[split] = c.astype(np.float64)
            else:
                by_strategy.setdefault(strategy, {}).setdefault(int(step), []).append(c)
        for strategy, per_step in by_strategy.items():
            if set(per_step) >= set(steps.tolist()):
                res.scores[(strategy, split)] = np.stack([np.mean(per_step[k], axis=0) for k in steps])
        if dpreds is not None and len(dpreds):
            for (strategy, depth, mode), c in _correct_blocks(
                dpreds[dpreds["split"] == split], y, ["strategy", "depth", "mode"]
            ).items():
                res.distill_scores[(strategy, int(depth), mode, split)] = c.astype(np.float64)


def load_results(runs_root: str | Path, scores: bool = True) -> list[DatasetResults]:
    """Every ``<dataset>/`` run folder under ``runs_root`` with curves.parquet and metrics.json, in the paper's
    dataset order, with its per-example correctness when predictions.parquet is there (``scores``; False skips
    reading the predictions).  The tolerance of the validation-chosen k comes from the run's preset
    (``val_tolerance``; ``config.Preset``'s default when absent)."""
    from .config import Preset

    root = Path(runs_root)
    if not root.is_dir():
        raise PaperlibError(f"runs folder {str(root)!r} does not exist; run `paperlib prune` first or pass --runs")
    default_tol = Preset.__dataclass_fields__["val_tolerance"].default
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if not ((folder / "curves.parquet").is_file() and (folder / "metrics.json").is_file()):
            continue
        metrics = read_json(folder / "metrics.json")
        curves = read_parquet(folder / "curves.parquet").assign(dataset=folder.name)
        n_layers = int(metrics.get("n_layers") or curves["step"].max() + 1)
        config = read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
        tol = float(config.get("preset", {}).get("val_tolerance", default_tol))
        dpath = folder / "distill.parquet"
        distill = read_parquet(dpath).assign(dataset=folder.name) if dpath.is_file() else pd.DataFrame()
        res = DatasetResults(folder.name, n_layers, metrics, tol, curves, distill)
        if scores:
            _read_scores(folder, res)
        out.append(res)
    if not out:
        raise PaperlibError(
            f"no run folder with curves.parquet and metrics.json under {str(root)!r}; "
            f"run `paperlib prune` first (or check --runs)"
        )
    order = {d: i for i, d in enumerate(dataset_order([r.name for r in out]))}
    return sorted(out, key=lambda r: order[r.name])


def load_runs(runs_root: str | Path) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """The same run folders as ``load_results`` as three plain frames: (curves with a 'dataset' column,
    {dataset: metrics.json}, distill rows with a 'dataset' column), without the per-example scores."""
    results = load_results(runs_root, scores=False)
    distill = [r.distill for r in results if not r.distill.empty]
    return (
        pd.concat([r.curves for r in results], ignore_index=True),
        {r.name: r.metrics for r in results},
        pd.concat(distill, ignore_index=True) if distill else pd.DataFrame(),
    )


def classical_reference(runs_root: str | Path) -> dict:
    """{dataset: test accuracy of TF-IDF + logistic regression} from each run folder's baseline.json
    (``paperlib.baselines``); folders without one are left out."""
    from .baselines import read_baseline

    root = Path(runs_root)
    found = {p.name: read_baseline(p) for p in sorted(root.iterdir()) if p.is_dir()} if root.is_dir() else {}
    return {name: info["test_acc"] for name, info in found.items() if info}
