"""The work of a run's prune stage, counted from its run files: distinct sub-models evaluated (validation and
test), Oracle's validation-only candidates, and signal passes (distinct models whose signals were read), each in
layer-example forward equivalents (a signal pass: 512 calibration texts, forward and backward = 3 forwards).
Token lengths and the signal statistics' own cost are left out: this says where the matmuls go, not the time.
``prefix_share``: the layer evaluations left if every sub-model's test evaluation waited for the stage's end and
shared the layers of its first kept layers with the others (a sub-model keeping l_1 < ... < l_m runs l_p on the
output of l_1 .. l_(p-1): one run per distinct prefix), as a share of one run per sub-model and layer.

    python tools/prune_work.py results/mpnet-first-wave/seed-0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

SIGNAL_PASS_FORWARDS = 3  # forward + backward


def _kept(text) -> frozenset:
    return frozenset(int(i) for i in str(text).split(",") if i != "")


def prune_work(folder: Path) -> dict:
    curves = pd.read_parquet(folder / "curves.parquet")
    signals = pd.read_parquet(folder / "signals.parquet")
    config = json.loads((folder / "config.json").read_text())
    n_layers = json.loads((folder / "metrics.json").read_text())["n_layers"]
    n_val, n_test = config["sizes"]["val"], config["sizes"]["test"]
    n_calib = int(config.get("preset", {}).get("n_calib", 512))
    full = frozenset(range(n_layers))
    evaluated = {_kept(k) for k in curves["kept"]} | {full}
    candidates, kept = set(), full  # Oracle scores every next step of its current model on validation
    for row in curves[curves["strategy"] == "Oracle"].sort_values("step").itertuples():
        candidates |= {kept - {layer} for layer in kept}
        kept = _kept(row.kept)
    val_only = candidates - evaluated
    prefixes = {tuple(sorted(m))[:p] for m in evaluated for p in range(1, len(m) + 1)}
    passes = {frozenset(int(i) for i in g["layer"]) for _, g in signals.groupby(["strategy", "step"])}
    work = {
        "eval_val": (sum(map(len, evaluated)) + sum(map(len, val_only))) * n_val,
        "eval_test": sum(map(len, evaluated)) * n_test,
        "signal": sum(map(len, passes)) * n_calib * SIGNAL_PASS_FORWARDS,
    }
    total = sum(work.values())
    return {
        "dataset": folder.name,
        "val": n_val,
        "test": n_test,
        "evaluated": len(evaluated),
        "oracle_val_only": len(val_only),
        "signal_passes": len(passes),
        **{f"share_{k}": round(v / total, 2) for k, v in work.items()},
        "prefix_share": round(len(prefixes) / sum(map(len, evaluated)), 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="a seed folder of a runs folder (holding <dataset>/curves.parquet)")
    args = parser.parse_args(argv)
    folders = sorted(p for p in Path(args.root).glob("*") if (p / "curves.parquet").is_file())
    if not folders:
        print(f"error: no run folder with curves.parquet under {args.root!r}", file=sys.stderr)
        return 2
    print(pd.DataFrame([prune_work(f) for f in folders]).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
