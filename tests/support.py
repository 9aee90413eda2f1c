"""Helpers shared by the tests (a module of its own: ``notebooks/conftest.py`` is also a module named
``conftest`` in the same session, so test files import these from here, never ``from conftest import``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]

WORDS = {0: "apple banana cherry grape melon", 1: "engine wheel brake tyre gear", 2: "goal match team score league"}


def write_synthetic(folder: Path, n_per_class: int = 60, classes: int = 3, seed: int = 0, layout: str = "all") -> Path:
    """A small dataset whose label is given away by its words (learnable by a tiny model)."""
    rng = np.random.default_rng(seed)
    filler = "the a of and to in is it that on".split()
    rows = []
    for label in range(classes):
        vocab = WORDS[label % len(WORDS)].split()
        for _ in range(n_per_class):
            n = int(rng.integers(4, 20))
            words = [rng.choice(vocab) if rng.random() < 0.5 else rng.choice(filler) for _ in range(n)]
            rows.append((" ".join(words), label))
    df = pd.DataFrame(rows, columns=["text", "label"]).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "all":
        df.to_csv(folder / "all.csv", index=False)
    else:
        cut = int(0.75 * len(df))
        df.iloc[:cut].to_csv(folder / "train.csv", index=False)
        df.iloc[cut:].to_csv(folder / "test.csv", index=False)
    return folder


def copy_run(folder: Path, out: Path) -> Path:
    """A copy of a run folder's M_0 (model/, config.json, metrics.json) under ``out``; returns ``out``."""
    import shutil

    target = out / folder.name
    shutil.copytree(folder / "model", target / "model")
    for name in ("config.json", "metrics.json"):
        shutil.copy2(folder / name, target / name)
    return out


def rf_curve(strategy="Random-Forest", val=(0.5, 0.9, 0.9), kept=([0, 2, 3], [0, 3], [3]), seed=0) -> pd.DataFrame:
    """A pruning curve of a 4-layer model in curves.parquet's columns (k = 1..len(val); test_acc = val_acc)."""
    return pd.DataFrame(
        {
            "strategy": strategy,
            "seed": seed,
            "step": range(1, len(val) + 1),
            "removed": [1, 2, 0][: len(val)],
            "kept": list(kept),
            "val_acc": list(val),
            "test_acc": list(val),
            "n_params": 0,
            "bytes": 0,
        }
    )
