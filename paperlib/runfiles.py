"""The run folder's pruning files (SPEC 9): their columns, typed readers and writers, the prediction parts.

Files (written atomically after each finished strategy; a rerun skips what is there):
``curves.parquet``  strategy, seed, step, removed, kept, val_acc, test_acc, n_params, bytes
``signals.parquet`` strategy, seed, step, layer, the 12 SIGNALS, Block-Influence -- the signals of
                    M_(step-1), from which step ``step`` chose (only strategies that read signals).
``predictions.parquet`` strategy, seed, step, split, example, pred -- the predicted label (int16) of
                    every validation and test example for every curve row, and M_0's as strategy
                    "M_0", seed 0, step 0; ``example`` is the row of the split (``run.encoded[split]``,
                    the order of ``run.splits.val``/``test``), so any two models pair by example.
``labels.parquet``  split, example, label (int16): the true labels those predictions are scored against.
While a stage runs, each finished (strategy, seed) adds its predictions as one part file,
``predictions/<strategy>-<seed>-<hash>.parquet``, instead of rewriting the whole table (which grew to
a second a write); the stage folds the parts into ``predictions.parquet`` once at its end, and every
reader (``read_predictions``) takes the file and any parts an interrupted stage left.
``kept`` is a string of original indices, ``"0,2,5"``: hashable, so pandas can group, merge and
de-duplicate on it (a list column cannot); ``parse_kept`` turns it back into a tuple.
The engine that writes them is ``pruning``; ``drop_strategies`` deletes stale curves.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import PaperlibError
from .io import (
    fold_parts,
    part_name,
    parts_dir,
    read_parquet,
    read_parted,
    run_lock,
    write_parquet,
    write_part,
)
from .strategies import REFERENCE_SIGNALS, SIGNALS

CURVE_COLUMNS = ["strategy", "seed", "step", "removed", "kept", "val_acc", "test_acc", "n_params", "bytes"]
SIGNAL_COLUMNS = ["strategy", "seed", "step", "layer", *SIGNALS, *REFERENCE_SIGNALS]
PREDICTION_COLUMNS = ["strategy", "seed", "step", "split", "example", "pred"]
PREDICTION_KEY = ["strategy", "seed"]  # a part file holds one such pair; it replaces the file's rows of the pair
LABEL_COLUMNS = ["split", "example", "label"]
CURVES_FILE = "curves.parquet"
SIGNALS_FILE = "signals.parquet"
PREDICTIONS_FILE = "predictions.parquet"
LABELS_FILE = "labels.parquet"
SPLITS = ("val", "test")
ORIGINAL = "M_0"  # the strategy name of the unpruned model's predictions (step 0)


def format_kept(kept: Iterable[int]) -> str:
    """(0, 2, 5) -> "0,2,5" (sorted original indices)."""
    return ",".join(str(int(i)) for i in sorted(kept))


def parse_kept(kept) -> tuple[int, ...]:
    """ "0,2,5" -> (0, 2, 5); also reads "[0, 2, 5]" and a list or array of indices."""
    if isinstance(kept, str):
        kept = kept.strip().strip("[]()").split(",")
    return tuple(int(i) for i in kept if str(i).strip() != "")


def prediction_rows(pred: np.ndarray, strategy: str, seed: int, step: int, split: str) -> pd.DataFrame:
    """One model's predictions on one split as ``predictions.parquet`` rows (example = row of the split)."""
    n = len(pred)
    return pd.DataFrame(
        {
            "strategy": [strategy] * n,
            "seed": seed,
            "step": step,
            "split": split,
            "example": np.arange(n),
            "pred": np.asarray(pred),
        }
    )


def _typed_curves(df: pd.DataFrame) -> pd.DataFrame:
    df = df.reindex(columns=CURVE_COLUMNS)
    types = {
        "strategy": str,
        "seed": "int64",
        "step": "int64",
        "removed": "int64",
        "kept": str,
        "val_acc": "float64",
        "test_acc": "float64",
        "n_params": "int64",
        "bytes": "int64",
    }
    return df.astype(types).sort_values(["strategy", "seed", "step"], kind="stable").reset_index(drop=True)


def _typed_signals(df: pd.DataFrame) -> pd.DataFrame:
    df = df.reindex(columns=SIGNAL_COLUMNS)
    types = {"strategy": str, "seed": "int64", "step": "int64", "layer": "int64"}
    types |= {c: "float64" for c in (*SIGNALS, *REFERENCE_SIGNALS)}
    return df.astype(types).sort_values(["strategy", "seed", "step", "layer"], kind="stable").reset_index(drop=True)


def _typed_predictions(df: pd.DataFrame) -> pd.DataFrame:
    df = df.reindex(columns=PREDICTION_COLUMNS)
    types = {"strategy": str, "seed": "int16", "step": "int16", "split": str, "example": "int32", "pred": "int16"}
    return (
        df.astype(types)
        .sort_values(["strategy", "seed", "step", "split", "example"], kind="stable")
        .reset_index(drop=True)
    )


def _typed_labels(df: pd.DataFrame) -> pd.DataFrame:
    df = df.reindex(columns=LABEL_COLUMNS)
    return (
        df.astype({"split": str, "example": "int32", "label": "int16"})
        .sort_values(["split", "example"], kind="stable")
        .reset_index(drop=True)
    )


def _folder(folder) -> Path:
    return Path(getattr(folder, "folder", folder))


def _read(path: Path, columns: list[str], typed) -> pd.DataFrame:
    return typed(read_parquet(path)) if path.is_file() else typed(pd.DataFrame(columns=columns))


def _load(folder, name: str, columns: list[str], typed) -> pd.DataFrame:
    path = _folder(folder) / name
    if not path.is_file():
        raise PaperlibError(f"no {name} in {str(path.parent)!r}: run `paperlib prune` (or run_pruning) first")
    return _read(path, columns, typed)


def load_curves(folder) -> pd.DataFrame:
    """curves.parquet of a run folder (or a Run), one row per (strategy, seed, step)."""
    return _load(folder, CURVES_FILE, CURVE_COLUMNS, _typed_curves)


def load_signals(folder) -> pd.DataFrame:
    """signals.parquet of a run folder (or a Run), one row per (strategy, seed, step, layer)."""
    return _load(folder, SIGNALS_FILE, SIGNAL_COLUMNS, _typed_signals)


def load_predictions(folder) -> pd.DataFrame:
    """The predictions of a run folder (or a Run), one row per (strategy, seed, step, split, example):
    predictions.parquet with the parts a stage has added since (``read_predictions``)."""
    preds = read_predictions(folder)
    if preds is None:
        path = _folder(folder) / PREDICTIONS_FILE
        raise PaperlibError(
            f"no {PREDICTIONS_FILE} in {str(path.parent)!r}: run `paperlib prune` (or run_pruning) first"
        )
    return _typed_predictions(preds)


def read_predictions(folder, columns: list[str] | None = None) -> pd.DataFrame | None:
    """predictions.parquet and its parts (``predictions/<strategy>-<seed>-<hash>.parquet``, one per finished
    (strategy, seed), written while a stage runs and folded into the file when it ends): every part's rows
    and the file's rows of the (strategy, seed) pairs no part holds.  Untyped, unsorted; None when absent."""
    return read_parted(_folder(folder) / PREDICTIONS_FILE, PREDICTION_KEY, columns)


def load_labels(folder) -> pd.DataFrame:
    """labels.parquet of a run folder (or a Run): the true label of every validation and test example."""
    return _load(folder, LABELS_FILE, LABEL_COLUMNS, _typed_labels)


def merge_predictions(folder, new: pd.DataFrame) -> None:
    """Replace the rows of each (strategy, seed) present in ``new`` in the folder's predictions by ``new``:
    one part file per pair (atomic, under the run folder's lock), so the cost is that of ``new`` only and
    rows another stage wrote meanwhile are kept.  ``fold_predictions`` merges the parts into the file."""
    path = _folder(folder) / PREDICTIONS_FILE
    for (strategy, seed), rows in _typed_predictions(new).groupby(PREDICTION_KEY, sort=False):
        write_part(path, part_name(strategy, int(seed)), rows)


def fold_predictions(folder) -> bool:
    """Fold the folder's prediction parts into predictions.parquet (one write; the parts are then deleted)."""
    return fold_parts(_folder(folder) / PREDICTIONS_FILE, PREDICTION_KEY, _typed_predictions)


def drop_strategies(folder, names) -> int:
    """Delete every row of these strategies from curves.parquet (first: it marks a curve done),
    signals.parquet and predictions.parquet; return how many curve rows went.  For stale curves
    (e.g. fusion curves whose models were refitted on other rows)."""
    folder, names = _folder(folder), set(names)
    dropped = 0
    with run_lock(folder):
        for part in sorted(parts_dir(folder / PREDICTIONS_FILE).glob("*.parquet")):
            if read_parquet(part, columns=["strategy"])["strategy"].isin(names).any():
                part.unlink()
        for name, columns, typed in (
            (CURVES_FILE, CURVE_COLUMNS, _typed_curves),
            (SIGNALS_FILE, SIGNAL_COLUMNS, _typed_signals),
            (PREDICTIONS_FILE, PREDICTION_COLUMNS, _typed_predictions),
        ):
            if not (folder / name).is_file():
                continue
            old = _read(folder / name, columns, typed)
            stale = old["strategy"].isin(names)
            if stale.any():
                write_parquet(old[~stale], folder / name)
            dropped += int(stale.sum()) if name == CURVES_FILE else 0
    return dropped
