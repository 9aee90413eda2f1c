"""Benchmark: writing the prune stage's predictions, one read-modify-write of predictions.parquet per finished
(strategy, seed) (the code before issue 23) against one part file per job folded once at the stage's end.

The rows are those of a 12-layer paper-preset prune stage (``all,flipped``: 12 signals, their 12 flipped twins,
Block-Influence, Oracle, Top-Drop, Random x 5 seeds, and M_0), 11 steps per curve, ``--val`` + ``--test``
examples per step (agnews at the paper caps: 638 + 2000), random labels; then the fuse stage's two curves.
Both paths write through paperlib (``io.update_parquet`` and ``runfiles.merge_predictions`` +
``runfiles.fold_predictions``) and must leave byte-identical files.

    python benchmarks/bench_prediction_writes.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from paperlib import runfiles  # noqa: E402
from paperlib.io import update_parquet  # noqa: E402
from paperlib.strategies import REFERENCES, SIGNALS  # noqa: E402


def jobs(random_seeds: int) -> list[tuple[str, int]]:
    names = [*SIGNALS, *(s + " (flipped)" for s in SIGNALS), *(r for r in REFERENCES if r != "Random")]
    return [("M_0", 0)] + [(n, 0) for n in names] + [("Random", s) for s in range(random_seeds)]


def rows(strategy: str, seed: int, steps: int, n_val: int, n_test: int, rng) -> pd.DataFrame:
    parts = [
        runfiles.prediction_rows(rng.integers(0, 4, n).astype(np.int16), strategy, seed, step, split)
        for step in ([0] if strategy == "M_0" else range(1, steps + 1))
        for split, n in (("val", n_val), ("test", n_test))
    ]
    return runfiles._typed_predictions(pd.concat(parts, ignore_index=True))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--val", type=int, default=638)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--random-seeds", type=int, default=5)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    prune = [rows(s, seed, args.layers - 1, args.val, args.test, rng) for s, seed in jobs(args.random_seeds)]
    fuse = [rows(s, 0, args.layers - 1, args.val, args.test, rng) for s in ("Linear-Regression", "Random-Forest")]
    typed = runfiles._typed_predictions
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        old, new = Path(tmp) / "old", Path(tmp) / "new"
        for label, stage in (("prune", prune), ("fuse", fuse)):
            t0 = time.perf_counter()
            for df in stage:
                update_parquet(old / "predictions.parquet", df, ["strategy", "seed"], typed)
            t1 = time.perf_counter()
            for df in stage:
                runfiles.merge_predictions(new, df)
            runfiles.fold_predictions(new)
            t2 = time.perf_counter()
            timings[label] = (len(stage), t1 - t0, t2 - t1)
        same = (old / "predictions.parquet").read_bytes() == (new / "predictions.parquet").read_bytes()
        n_rows = len(pd.read_parquet(new / "predictions.parquet"))
    print(f"{n_rows} rows at the end; files byte-identical: {same}; load avg {os.getloadavg()[0]:.1f}")
    print("| stage | jobs | rewrite per job (s) | part per job + one fold (s) |\n|---|---|---|---|")
    for label, (n, a, b) in timings.items():
        print(f"| {label} | {n} | {a:.2f} | {b:.2f} |")


if __name__ == "__main__":
    main()
