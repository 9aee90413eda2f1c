"""How long the verdicts take over pipeline seeds: the seed-aggregated Table 1 with two-level bootstrap
intervals, the claims check in aggregate (``paperlib.tables.comparison_table`` + ``claims.claims_check``) and
each seed judged alone (``claims.seed_claims``) on synthetic predictions.

Nine datasets, 12-layer curves (k = 1..11), 2,000 test and 1,000 validation examples each, 3 pipeline seeds;
20 strategies (the 12 single signals, LR and RF within and transfer, Random with 5 replicates, Oracle,
Block-Influence, Top-Drop), each example right with the strategy's accuracy at that k (a per-seed offset is the
training noise).  The intervals use 2,000 resamples.  Built in memory (no files), so the time is the
statistics', not parquet reading.
Usage: ``python benchmarks/bench_bootstrap.py [--seeds 3] [--resamples 2000] [--repeat 3]``; prints the wall-clock
timings and the process's CPU time (less sensitive to other jobs on a shared machine).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_name  # noqa: E402

from paperlib.claims import claims_check, seed_claims  # noqa: E402
from paperlib.results import DatasetResults, SeedRun  # noqa: E402
from paperlib.strategies import SIGNALS  # noqa: E402
from paperlib.tables import comparison_table  # noqa: E402

STRATEGIES = (
    *SIGNALS,
    "Linear-Regression",
    "Random-Forest",
    "Linear-Regression (transfer)",
    "Random-Forest (transfer)",
    "Oracle",
    "Block-Influence",
    "Top-Drop",
)


def synthetic_run(
    name: str,
    seed: int,
    rng: np.random.Generator,
    n_layers: int = 12,
    n_test: int = 2000,
    n_val: int = 1000,
    replicates: int = 5,
) -> SeedRun:
    """One pipeline seed: curves falling from ~0.9 to ~0.4 with a per-strategy offset; correctness drawn per
    example."""
    rows = []
    steps = np.arange(1, n_layers)
    jobs = [(s, 0) for s in STRATEGIES] + [("Random", r) for r in range(replicates)]
    per_strategy: dict[tuple[str, str], list[np.ndarray]] = {}
    for strategy, replicate in jobs:
        acc = np.clip(0.9 - 0.5 * steps / n_layers + rng.normal(0, 0.02) + rng.normal(0, 0.01, len(steps)), 0.05, 0.99)
        correct = {split: rng.random((len(steps), n)) < acc[:, None] for split, n in (("val", n_val), ("test", n_test))}
        for k, v, t in zip(steps, correct["val"].mean(1), correct["test"].mean(1)):
            rows.append(
                {
                    "dataset": name,
                    "strategy": strategy,
                    "seed": replicate,
                    "step": int(k),
                    "removed": 0,
                    "kept": "",
                    "val_acc": float(v),
                    "test_acc": float(t),
                    "n_params": 1,
                    "bytes": 4,
                }
            )
        for split, c in correct.items():
            per_strategy.setdefault((strategy, split), []).append(c.astype(np.float64))
    scores = {key: np.mean(parts, axis=0) for key, parts in per_strategy.items()}
    original = {"val": (rng.random(n_val) < 0.9).astype(float), "test": (rng.random(n_test) < 0.9).astype(float)}
    metrics = {"val_acc": original["val"].mean(), "test_acc": original["test"].mean(), "n_layers": n_layers}
    labels = {"val": np.zeros(n_val, dtype=int), "test": np.zeros(n_test, dtype=int)}
    return SeedRun(
        seed, n_layers, metrics | {"bytes": 4e8}, 0.01, pd.DataFrame(rows), pd.DataFrame(), scores, original, {}, labels
    )


def synthetic_dataset(name: str, rng: np.random.Generator, seeds: int = 3) -> DatasetResults:
    return DatasetResults(name, {s: synthetic_run(name, s, rng) for s in range(seeds)})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--datasets", type=int, default=9)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    results = [synthetic_dataset(f"d{i}", rng, args.seeds) for i in range(args.datasets)]
    times = []
    for _ in range(args.repeat):
        for res in results:
            res.cache.clear()  # each repeat resamples anew (the weights stay drawn: cached per size)
        t0, c0 = time.perf_counter(), time.process_time()
        table = comparison_table(results, resamples=args.resamples)
        t1 = time.perf_counter()
        claims_check(results, table, None, resamples=args.resamples)
        t2 = time.perf_counter()
        if args.seeds > 1:
            seed_claims(results, resamples=args.resamples)
        times.append((t1 - t0, t2 - t1, time.perf_counter() - t2, time.process_time() - c0))
    n_ci = int(table["diff"].notna().sum())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{datetime.datetime.now().isoformat(timespec='seconds')} | {cpu_name()}, {os.cpu_count()} threads, "
        f"load avg {load:.1f} | numpy {np.__version__}, Python {platform.python_version()}"
    )
    print(
        f"{args.datasets} datasets x {len(STRATEGIES) + 1} strategies (Random: 5 replicates) x 11 k x {args.seeds} "
        f"seeds, 2000 test examples, {args.resamples} resamples: {n_ci} two-level intervals in Table 1"
    )
    for i, (t_table, t_claims, t_seeds, cpu) in enumerate(times):
        print(
            f"run {i + 1}: comparison_table {t_table:.2f} s, claims_check {t_claims:.2f} s, "
            f"seed_claims {t_seeds:.2f} s, total {t_table + t_claims + t_seeds:.2f} s (CPU time {cpu:.2f} s)"
        )


if __name__ == "__main__":
    main()
