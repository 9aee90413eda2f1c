"""Figures of a finished runs folder (e.g. the reference run in results/paper) without re-running anything.

    python tools/reference_figures.py results/paper figures

Notebook 06 draws the same figures; this script only reads the parquet/json files, so it works on a runs
folder whose models were left on the GPU machine."""

import sys
from pathlib import Path

import pandas as pd

from paperlib import plots
from paperlib.metrics import distill_summary, load_runs
from paperlib.strategies import FUSION_NAMES, PRUNE_ALL


def main(runs: str, out: str) -> None:
    curves, metrics, distill = load_runs(runs)
    originals = {d: m["test_acc"] for d, m in metrics.items()}
    fig = plots.figure1_grid(curves, originals, strategies=[*FUSION_NAMES, *PRUNE_ALL])
    for folder in (Path(out), Path(runs) / "summary" / "figures"):
        plots.save_figure(fig, folder, "figure1_grid")
    summary = distill_summary(distill, metrics)
    bars = pd.concat([summary.assign(model="original", ats=summary["ats_original"]),
                      summary.assign(model="KD at k*", ats=summary["ats_kd"])])[["dataset", "model", "ats"]]
    fig = plots.ats_bars(bars, title="Accuracy-to-size: original vs distilled RF model at k*")
    for folder in (Path(out), Path(runs) / "summary" / "figures"):
        plots.save_figure(fig, folder, "ats")
    kd = distill.groupby(["mode", "depth"], as_index=False)["test_acc"].mean()
    fig = plots.distillation_plot(kd, None, title="KD vs alpha = 0 vs no KD, mean over datasets")
    for folder in (Path(out), Path(runs) / "summary" / "figures"):
        plots.save_figure(fig, folder, "distillation")


if __name__ == "__main__":
    main(*sys.argv[1:3])
