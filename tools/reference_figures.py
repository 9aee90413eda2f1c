"""Figures of a finished runs folder (e.g. the reference run in results/mpnet-paper) without re-running anything.

    python tools/reference_figures.py results/mpnet-paper figures

Notebook 06 draws the same figures; this script only reads the parquet/json files, so it works on a runs
folder whose models were left on the GPU machine."""

import sys
from pathlib import Path

import pandas as pd

from paperlib import plots
from paperlib.results import classical_reference, load_runs
from paperlib.strategies import FUSION_NAMES, PRUNE_ALL
from paperlib.tables import distill_summary


def main(runs: str, out: str) -> None:
    curves, metrics, distill = load_runs(runs)
    originals = {d: m["test_acc"] for d, m in metrics.items()}
    fig = plots.figure1_grid(curves, originals, strategies=[*FUSION_NAMES, *PRUNE_ALL])
    for folder in (Path(out), Path(runs) / "summary" / "figures"):
        plots.save_figure(fig, folder, "figure1_grid")
    summary = distill_summary(distill, metrics)
    bars = pd.concat(
        [
            summary.assign(model="original", ats=summary["ats_original"]),
            summary.assign(model="KD at k*", ats=summary["ats_kd"]),
        ]
    )[["dataset", "model", "ats"]]
    fig = plots.ats_bars(bars, title="Accuracy-to-size: original vs distilled RF model at k*")
    for folder in (Path(out), Path(runs) / "summary" / "figures"):
        plots.save_figure(fig, folder, "ats")
    # a mean over datasets only at depths distilled on every dataset (k* differs between datasets: a depth
    # that only some distilled would average another set of datasets)
    n_datasets = distill["dataset"].nunique()
    kd = distill.groupby(["mode", "depth"], as_index=False).agg(test_acc=("test_acc", "mean"), n=("dataset", "nunique"))
    kd = kd[kd["n"] == n_datasets].drop(columns="n")
    floors = classical_reference(runs)  # the TF-IDF + LR floor and M_0, each averaged over the same datasets
    fig = plots.distillation_plot(
        kd,
        sum(originals.values()) / len(originals),
        floor_acc=sum(floors.values()) / len(floors) if len(floors) == len(originals) else None,
        title="KD vs alpha = 0 vs no KD, mean over datasets",
    )
    for folder in (Path(out), Path(runs) / "summary" / "figures"):
        plots.save_figure(fig, folder, "distillation")


if __name__ == "__main__":
    main(*sys.argv[1:3])
