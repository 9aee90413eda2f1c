"""Hand-made results for the tables, claims and verdict-stability tests: correctness vectors with a known mean,
``SeedRun`` / ``DatasetResults`` built from them, and run folders written from those (one seed flat, several as
``seed-<S>/`` roots), so every number a test checks can be computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from paperlib.io import write_json
from paperlib.paths import seed_root
from paperlib.results import DatasetResults, SeedRun

N = 200  # test (and validation) examples


def scores(acc: float, n: int = N, shift: int = 0) -> np.ndarray:
    """A correctness vector with round(acc*n) ones placed from position ``shift`` (cyclically)."""
    c = np.zeros(n)
    c[(np.arange(round(acc * n)) + shift) % n] = 1.0
    return c


def flat(val: float, test: float, shift: int = 0, steps: int = 3) -> list:
    """A curve whose every step has validation accuracy ``val`` and test accuracy ``test``."""
    return [(scores(val), scores(test, shift=shift))] * steps


def make_run(spec: dict, name: str = "a", n_layers: int = 4, original=(0.9, 0.9), tolerance=0.01, seed=0) -> SeedRun:
    """``spec``: strategy -> list over k = 1..L-1 of (val scores, test scores), or a list of such lists (one per
    Random replicate).  Curves, scores (replicate means) and M_0's scores of one pipeline seed."""
    rows, by_split, replicates = [], {}, {}
    for strategy, per_replicate in spec.items():
        per_replicate = per_replicate if isinstance(per_replicate[0], list) else [per_replicate]
        for replicate, steps in enumerate(per_replicate):
            for k, (v, t) in enumerate(steps, start=1):
                rows.append(
                    {
                        "dataset": name,
                        "strategy": strategy,
                        "seed": replicate,
                        "step": k,
                        "removed": 0,
                        "kept": "",
                        "val_acc": float(np.mean(v)),
                        "test_acc": float(np.mean(t)),
                        "n_params": 1,
                        "bytes": 4,
                    }
                )
        for split, j in (("val", 0), ("test", 1)):
            replicates[(strategy, split)] = [np.array([step[j] for step in steps]) for steps in per_replicate]
            by_split[(strategy, split)] = np.mean(replicates[(strategy, split)], axis=0)
    metrics = {"val_acc": original[0], "test_acc": original[1], "n_layers": n_layers, "bytes": 100e6}
    labels = {split: np.arange(N) % 3 for split in ("val", "test")}
    run = SeedRun(
        seed,
        n_layers,
        metrics,
        tolerance,
        pd.DataFrame(rows),
        pd.DataFrame(),
        by_split,
        {"val": scores(original[0]), "test": scores(original[1])},
        {},
        labels,
    )
    run.replicates = replicates  # what write_run writes: each Random replicate's own predictions
    return run


def make_results(name: str, spec: dict, n_layers: int = 4, original=(0.9, 0.9), tolerance=0.01) -> DatasetResults:
    """One dataset, one pipeline seed (0)."""
    return DatasetResults(name, {0: make_run(spec, name, n_layers, original, tolerance)})


def make_seeded(name: str, specs: dict, n_layers: int = 4, originals: dict | None = None) -> DatasetResults:
    """One dataset over several pipeline seeds: ``specs`` = {seed: spec}, ``originals`` = {seed: (val, test)}."""
    originals = originals or {}
    return DatasetResults(
        name, {s: make_run(spec, name, n_layers, originals.get(s, (0.9, 0.9)), seed=s) for s, spec in specs.items()}
    )


def distill_rows(name: str, kd: float, ce: float, none: float, continued: float | None = None) -> pd.DataFrame:
    """RF students at depths 1 (k*, 3 layers left) and 3 (one layer left) of a 4-layer M_0, each mode at one
    accuracy, and M_0 continued (strategy 'M_0', depth 0, mode 'ce') when given."""
    rows = []
    for mode, acc in (("kd", kd), ("ce", ce), ("none", none)):
        for depth, n_layers in ((1, 3), (3, 1)):
            rows.append(
                {
                    "dataset": name,
                    "strategy": "Random-Forest",
                    "depth": depth,
                    "n_layers": n_layers,
                    "kept": "",
                    "mode": mode,
                    "alpha": 0.5,
                    "val_acc": acc,
                    "test_acc": acc,
                    "n_params": 1,
                    "bytes": 50e6 if depth == 1 else 10e6,
                    "ats": np.nan,
                    "best_depth": depth == 1,
                }
            )
    if continued is not None:
        rows.append({**rows[0], "strategy": "M_0", "depth": 0, "n_layers": 4, "mode": "ce", "bytes": 100e6})
        rows[-1] |= {"val_acc": continued, "test_acc": continued, "best_depth": False}
    return pd.DataFrame(rows)


def with_distill(run: SeedRun, kd: float, ce: float, none: float, continued: float | None = None) -> SeedRun:
    """``run`` with ``distill_rows`` and the matching per-example scores (every student at depth 1)."""
    run.distill = distill_rows(run.curves["dataset"].iloc[0], kd, ce, none, continued)
    run.distill_scores = {
        ("Random-Forest", 1, m, "test"): scores(a) for m, a in (("kd", kd), ("ce", ce), ("none", none))
    }
    if continued is not None:
        run.distill_scores[("M_0", 0, "ce", "test")] = scores(continued)
    return run


def _predictions(c: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(c == 1, y, (y + 1) % 3)


def write_run(folder, run: SeedRun, with_predictions: bool = True):
    """``run`` as a run folder (curves, metrics, config; predictions, labels and distillation when asked)."""
    from paperlib.runfiles import prediction_rows

    folder.mkdir(parents=True)
    run.curves.drop(columns="dataset").to_parquet(folder / "curves.parquet")
    write_json(run.metrics, folder / "metrics.json")
    write_json({"preset": {"val_tolerance": run.tolerance, "seed": run.seed}}, folder / "config.json")
    if len(run.distill):
        run.distill.drop(columns="dataset").to_parquet(folder / "distill.parquet")
    if not with_predictions:
        return folder
    parts = []
    replicates = getattr(run, "replicates", {})
    for (strategy, split), sc in run.scores.items():
        for r, steps in enumerate(replicates.get((strategy, split), [sc])):
            for k, row in enumerate(steps, start=1):
                parts.append(prediction_rows(_predictions(row, run.labels[split]), strategy, r, k, split))
    for split, sc in run.original.items():
        parts.append(prediction_rows(_predictions(sc, run.labels[split]), "M_0", 0, 0, split))
    pd.concat(parts).to_parquet(folder / "predictions.parquet")
    pd.DataFrame(
        [(s, i, label) for s, y in run.labels.items() for i, label in enumerate(y)],
        columns=["split", "example", "label"],
    ).to_parquet(folder / "labels.parquet")
    if run.distill_scores:
        kept = dict(zip(zip(run.distill["strategy"], run.distill["depth"]), run.distill["kept"]))
        rows = [
            pd.DataFrame(
                {
                    "strategy": strategy,
                    "depth": depth,
                    "kept": kept.get((strategy, depth), ""),
                    "mode": mode,
                    "split": split,
                    "example": np.arange(len(sc)),
                    "pred": _predictions(sc, run.labels[split]),
                }
            )
            for (strategy, depth, mode, split), sc in run.distill_scores.items()
        ]
        pd.concat(rows).to_parquet(folder / "distill_predictions.parquet")
    return folder


def write_results(root, res: DatasetResults, with_predictions: bool = True, flat_layout: bool | None = None):
    """Every seed of ``res`` under ``root``: ``root/<dataset>`` for one seed (the layout before seeds, unless
    ``flat_layout`` is False), else ``root/seed-<S>/<dataset>``."""
    flat_layout = len(res.runs) == 1 if flat_layout is None else flat_layout
    for s, run in res.runs.items():
        write_run((root if flat_layout else seed_root(root, s)) / res.name, run, with_predictions)
