"""Compare a run folder with the same folder at an earlier git revision: which files repeat exactly, how far M_0
and each strategy's test curve mean moved.  What the README's "rerun check" paragraphs cite.

    python tools/compare_runs.py results/mpnet-paper --rev cbf58a3

Parquet files are compared as tables (rows sorted by their keys; timing columns ignored; rows of strategies the
old run lacked, such as the flipped rules, left out); JSON files as objects without their timings."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

FILES = (
    "curves.parquet",
    "signals.parquet",
    "predictions.parquet",
    "distill.parquet",
    "baseline.json",
    "fusion_within.json",
    "fusion_transfer.json",
    "metrics.json",
)
KEYS = ("strategy", "seed", "step", "split", "depth", "mode", "kept", "layer", "index")
TIMINGS = ("seconds", "train_seconds")


def old_bytes(rev: str, path: Path) -> bytes | None:
    done = subprocess.run(["git", "show", f"{rev}:{path.as_posix()}"], capture_output=True)
    return done.stdout if done.returncode == 0 else None


def same_table(old: pd.DataFrame, new: pd.DataFrame) -> bool:
    if "strategy" in new:
        new = new[new["strategy"].isin(set(old["strategy"]))]
    if set(old.columns) != set(new.columns) or len(old) != len(new):
        return False
    keys = [k for k in KEYS if k in old.columns]
    cols = [c for c in old.columns if c not in TIMINGS]
    old = old.sort_values(keys).reset_index(drop=True)[cols]
    new = new.sort_values(keys).reset_index(drop=True)[cols]
    return old.equals(new)


def same_json(old: dict, new: dict) -> bool:
    return {k: v for k, v in old.items() if k not in TIMINGS} == {k: v for k, v in new.items() if k not in TIMINGS}


def curve_means(curves: pd.DataFrame) -> pd.Series:
    return curves.groupby("strategy")["test_acc"].mean() * 100


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a committed run folder, e.g. results/mpnet-paper")
    ap.add_argument("--rev", required=True, help="the git revision holding the earlier run")
    ap.add_argument("--top", type=int, default=8, help="largest curve-mean moves to list")
    args = ap.parse_args(argv)
    run = Path(args.run)
    equal, differ, moves, m0 = [], [], [], []
    for folder in sorted(p for p in run.iterdir() if (p / "metrics.json").is_file()):
        for name in FILES:
            old = old_bytes(args.rev, folder / name)
            if old is None or not (folder / name).is_file():
                continue
            if name.endswith(".parquet"):
                a, b = pd.read_parquet(io.BytesIO(old)), pd.read_parquet(folder / name)
                ok = same_table(a, b)
                if name == "curves.parquet":
                    d = (curve_means(b) - curve_means(a)).dropna()
                    moves += [(folder.name, s, curve_means(a)[s], curve_means(b)[s], v) for s, v in d.items()]
                if name == "distill.parquet" and not ok:
                    on = ["strategy", "depth", "mode", "kept"]
                    m = a.merge(b, on=on, suffixes=("_old", "_new"))
                    changed = m[m["test_acc_old"] != m["test_acc_new"]]
                    k_star = int(b.loc[b["best_depth"].astype(bool), "depth"].iloc[0])
                    differ.append(
                        f"{folder.name}/{name}: {len(changed)} of {len(m)} rows (depths "
                        f"{sorted(set(changed['depth'].astype(int)))}; k* = {k_star}), "
                        f"test accuracy moved at most "
                        f"{100 * (changed['test_acc_new'] - changed['test_acc_old']).abs().max():.2f} points"
                    )
                    continue
            else:
                a, b = json.loads(old), json.loads((folder / name).read_text())
                ok = same_json(a, b)
                if name == "metrics.json":
                    m0.append((folder.name, 100 * a["test_acc"], 100 * b["test_acc"]))
            (equal if ok else differ).append(f"{folder.name}/{name}")
    print(f"{run}: {len(equal)} of {len(equal) + len(differ)} files equal to {args.rev}'s (timings ignored)")
    for line in differ:
        print("  differs:", line)
    print("M_0 test accuracy (%), old -> new:", ", ".join(f"{d} {a:.2f} -> {b:.2f}" for d, a, b in m0))
    if moves:
        df = pd.DataFrame(moves, columns=["dataset", "strategy", "old", "new", "moved"])
        df["abs"] = df["moved"].abs()
        print(
            f"curve means (test %, mean over k): {int((df['abs'] == 0).sum())} of {len(df)} unchanged; "
            f"median move {df['abs'].median():.2f} points; largest:"
        )
        print(df.nlargest(args.top, "abs").drop(columns="abs").round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
