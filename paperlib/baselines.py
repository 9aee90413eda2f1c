"""The classical reference (SPEC 7): TF-IDF over word 1-2 grams + logistic regression, on the run's own splits.

It is the floor a pruned (or distilled) transformer should clear: seconds per dataset on a CPU.  Features:
``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=200_000)`` fitted on train;
classifier: multinomial ``LogisticRegression`` with the inverse regularisation C chosen on the validation split
from ``C_GRID`` (the test split is never used for a choice), then scored once on test.  Written to the run folder
as ``baseline.json`` (accuracies, C, seconds) and ``baseline_predictions.parquet`` (one row per test example, in
the order of the run's test split: ``index``, ``label``, ``pred``, ``correct``) for paired comparisons."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .io import read_json, write_json, write_parquet

C_GRID = (1.0, 10.0, 100.0)
NAME = "TF-IDF+LR"
JSON_NAME, PREDICTIONS_NAME = "baseline.json", "baseline_predictions.parquet"


def tfidf_lr(
    train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, c_grid=C_GRID, seed: int = 0
) -> tuple[dict, np.ndarray]:
    """Fit TF-IDF + LR on ``train``, pick C by validation accuracy (ties: smaller C), score on ``test``.

    Returns ({'val_acc', 'test_acc', 'C', 'seconds', 'n_features'}, test predictions)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=200_000)
    x_train = vec.fit_transform(train["text"].astype(str))
    x_val, x_test = vec.transform(val["text"].astype(str)), vec.transform(test["text"].astype(str))
    y_train, y_val, y_test = (d["label"].to_numpy() for d in (train, val, test))
    best = None
    for c in c_grid:
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x_train, y_train)
        acc = float((clf.predict(x_val) == y_val).mean())
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    val_acc, c, clf = best
    pred = clf.predict(x_test)
    info = {
        "method": NAME,
        "val_acc": val_acc,
        "test_acc": float((pred == y_test).mean()),
        "C": c,
        "c_grid": list(c_grid),
        "n_features": int(x_train.shape[1]),
        "seconds": round(time.perf_counter() - t0, 2),
        "sizes": {"train": len(train), "val": len(val), "test": len(test)},
    }
    return info, pred


def baseline_run(run, force: bool = False) -> dict:
    """Compute (or read back) the classical reference of a run folder; writes the two files beside M_0."""
    path = Path(run.folder) / JSON_NAME
    if path.is_file() and (Path(run.folder) / PREDICTIONS_NAME).is_file() and not force:  # both files, or redo
        return read_json(path)
    splits = run.splits
    info, pred = tfidf_lr(splits.train, splits.val, splits.test, seed=run.preset.seed)
    labels = splits.test["label"].to_numpy()
    write_parquet(
        pd.DataFrame({"index": np.arange(len(labels)), "label": labels, "pred": pred, "correct": pred == labels}),
        Path(run.folder) / PREDICTIONS_NAME,
    )
    write_json(info, path)
    return info


def read_baseline(folder) -> dict | None:
    """The run folder's ``baseline.json``, or None when the baseline was not computed."""
    path = Path(folder) / JSON_NAME
    return read_json(path) if path.is_file() else None
