"""Every figure of the companion, drawn from the tidy result frames (SPEC 9) and saved by one function.

Each plotting function takes DataFrames with the on-disk schemas and returns a matplotlib Figure:

- ``curves.parquet``: strategy, seed, step, removed, kept, val_acc, test_acc, n_params, bytes
- ``signals.parquet``: strategy, seed, step, layer + the 12 signal columns
- ``distill.parquet``: dataset, strategy, depth, n_layers, kept, mode ('kd', 'ce', 'none'), alpha,
  val_acc, test_acc, n_params, bytes, ats, best_depth

``save_figure(fig, folder, name)`` writes ``name.png`` and ``name.pdf`` atomically.  Headless
processes (no display, no Jupyter backend chosen) draw with Agg."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

if not os.environ.get("MPLBACKEND") and not os.environ.get("DISPLAY"):
    matplotlib.use("Agg")  # inside Jupyter MPLBACKEND is set to the inline backend and left alone

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .errors import PaperlibError  # noqa: E402
from .io import atomic_path  # noqa: E402
from .strategies import CATEGORY, FUSION_NAMES, SIGNALS, zscore  # noqa: E402

RANDOM = "Random"
# one hue per signal category; fusion and baselines stand out
CATEGORY_COLOURS = {"activation": "Oranges", "mutual information": "Purples", "gradient": "Greens",
                    "weight": "Blues", "attention": "RdPu"}
FIXED_STYLE = {
    "Random-Forest": dict(color="#d62728", lw=2.6, ls="-", zorder=5),
    "Linear-Regression": dict(color="#1f77b4", lw=2.6, ls="-", zorder=5),
    "Oracle": dict(color="black", lw=1.8, ls=":", zorder=4),
    "Block-Influence": dict(color="#8c564b", lw=1.4, ls="-."),
    "Top-Drop": dict(color="#7f7f7f", lw=1.4, ls="-."),
    RANDOM: dict(color="#555555", lw=1.4, ls="--"),
}
MODE_LABELS = {"kd": "KD (alpha = 0.5)", "ce": "alpha = 0 (fine-tune, no teacher)", "none": "no KD (pruned as is)"}
MODE_COLOURS = {"kd": "#d62728", "ce": "#1f77b4", "none": "#7f7f7f"}


def strategy_style(name: str) -> dict:
    """Line style for a strategy: fusion bold, baselines dashed, single signals shaded by category."""
    if name in FIXED_STYLE:
        return dict(FIXED_STYLE[name])
    if name.endswith(" (transfer)") and name.split(" (")[0] in FIXED_STYLE:  # fusion trained on other datasets
        return dict(FIXED_STYLE[name.split(" (")[0]], ls="--", lw=2.0)
    if name in CATEGORY:
        members = [s for s in SIGNALS if CATEGORY[s] == CATEGORY[name]]
        shade = 0.45 + 0.4 * members.index(name) / max(1, len(members) - 1)
        return dict(color=plt.get_cmap(CATEGORY_COLOURS[CATEGORY[name]])(shade), lw=1.2, ls="-")
    return dict(lw=1.2, ls="-")


def strategy_order(names) -> list[str]:
    """Fusion first, then the twelve signals in SPEC order, then baselines and anything else."""
    names = list(dict.fromkeys(names))
    transfer = tuple(f"{n} (transfer)" for n in FUSION_NAMES)
    rank = {n: i for i, n in enumerate((*FUSION_NAMES, *transfer, *SIGNALS, "Oracle", RANDOM, "Block-Influence", "Top-Drop"))}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def save_figure(fig, folder: str | os.PathLike, name: str, dpi: int = 150) -> list[Path]:
    """Write ``folder/name.png`` and ``folder/name.pdf`` (each to a temporary name, then renamed)."""
    folder = Path(folder)
    paths = []
    for fmt in ("png", "pdf"):
        path = folder / f"{name}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    return paths


def _require(df: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise PaperlibError(f"{what} lacks column(s) {missing}; it has {list(df.columns)}")
    if df.empty:
        raise PaperlibError(f"{what} is empty; run the stage that writes it first")


# ---------------------------------------------------------------- signals

def first_step_signals(signals: pd.DataFrame) -> pd.DataFrame:
    """The signals of the full fine-tuned model: the rows of the first step, averaged per layer
    (a frame without ``step``, e.g. one ``compute_signals`` result, is taken as it is).

    Every strategy's first step is measured on the same M_0, so their rows agree up to noise."""
    _require(signals, ["layer", *SIGNALS], "signals frame")
    first = signals[signals["step"] == signals["step"].min()] if "step" in signals else signals
    return first.groupby("layer", as_index=False)[list(SIGNALS)].mean().sort_values("layer").reset_index(drop=True)


def signal_heatmap(signals: pd.DataFrame, title: str | None = None):
    """Layer x signal heatmap of M_0's signals, each column z-scored across layers: z = (s - mean) / sd.

    Colour shows where a layer stands among the layers on that signal; the annotation is z."""
    import seaborn as sns

    per_layer = first_step_signals(signals)
    z = zscore(per_layer).set_axis(per_layer["layer"].to_numpy(), axis=0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(SIGNALS), 1.2 + 0.45 * len(z)))
    sns.heatmap(z, ax=ax, cmap="vlag", center=0, annot=True, fmt=".1f", cbar_kws={"label": "z-score across layers"})
    ax.set_xlabel("signal")
    ax.set_ylabel("layer (original index)")
    ax.set_title(title or "Signals of the fine-tuned model, z-scored per signal")
    ax.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    return fig


def signal_correlation(signals: pd.DataFrame, title: str | None = None):
    """Pooled within-step Spearman correlation of the twelve signals.

    Signals are ranked among the layers of each (run, step), the ranks centred per step, and
    Pearson's r taken over all rows: a weighted mean of the per-step Spearman correlations.  So the
    matrix shows which signals order the *remaining layers* alike (what a pruning rule uses), not
    how the signals drift together as the model shrinks."""
    import seaborn as sns

    _require(signals, ["step", "layer", *SIGNALS], "signals frame")
    keys = [c for c in ("strategy", "seed", "step") if c in signals.columns]
    ranks = signals.groupby(keys)[list(SIGNALS)].rank()
    centred = ranks - ranks.groupby([signals[k] for k in keys]).transform("mean")
    corr = centred.corr()
    fig, ax = plt.subplots(figsize=(9, 7.5))
    sns.heatmap(corr, ax=ax, cmap="vlag", vmin=-1, vmax=1, annot=True, fmt=".2f", annot_kws={"size": 7},
                square=True, cbar_kws={"label": "Spearman rho"})
    ax.set_title(title or "How alike the signals rank layers")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- pruning curves

def random_band(curves: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Random pruning per step: mean and standard deviation (ddof = 1; 0 with one seed) over seeds."""
    rnd = curves[curves["strategy"] == RANDOM]
    out = rnd.groupby("step")[metric].agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def _draw_curves(ax, curves: pd.DataFrame, metric: str, original: float | None, strategies=None, legend=True):
    names = strategy_order(strategies or curves["strategy"].unique())
    for name in names:
        rows = curves[curves["strategy"] == name]
        if rows.empty:
            continue
        style = strategy_style(name)
        if name == RANDOM:
            band = random_band(curves, metric)
            ax.fill_between(band["step"], band["mean"] - band["std"], band["mean"] + band["std"],
                            color=style["color"], alpha=0.18, lw=0)
            ax.plot(band["step"], band["mean"], label=f"{RANDOM} (mean +- sd, {int(band['count'].max())} seeds)", **style)
        else:
            seed0 = rows[rows["seed"] == rows["seed"].min()] if "seed" in rows else rows
            mean = seed0.groupby("step")[metric].mean()
            ax.plot(mean.index, mean.to_numpy(), label=name, **style)
    if original is not None:
        ax.axhline(original, color="black", ls="--", lw=1, label="original (unpruned)")
    ax.set_xlabel("layers pruned")
    ax.set_ylabel(metric.replace("_acc", " accuracy"))
    steps = np.sort(curves["step"].unique())
    ax.set_xticks(steps)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7, ncol=2, loc="lower left", frameon=False)


def pruning_curves(curves: pd.DataFrame, original_acc: float | None = None, metric: str = "test_acc",
                   strategies=None, title: str | None = None):
    """Accuracy vs layers pruned: one line per strategy, Random as its mean +- sd band, the
    original model's accuracy dashed (Figure 1 of the paper for one dataset)."""
    _require(curves, ["strategy", "step", metric], "curves frame")
    fig, ax = plt.subplots(figsize=(9, 6))
    _draw_curves(ax, curves, metric, original_acc, strategies)
    ax.set_title(title or "Accuracy while pruning layers one at a time")
    fig.tight_layout()
    return fig


def pruning_order(curves: pd.DataFrame) -> pd.DataFrame:
    """Strategy x step table of the removed original layer (first seed of each strategy)."""
    _require(curves, ["strategy", "step", "removed"], "curves frame")
    first = curves[curves["seed"] == curves.groupby("strategy")["seed"].transform("min")] if "seed" in curves else curves
    table = first.pivot_table(index="strategy", columns="step", values="removed", aggfunc="first")
    return table.reindex(strategy_order(table.index))


def pruning_order_grid(curves: pd.DataFrame, title: str | None = None):
    """Which layer each strategy removes at each step, as an annotated grid (colour = layer index)."""
    import seaborn as sns

    table = pruning_order(curves)
    fig, ax = plt.subplots(figsize=(max(5.0, 2.5 + 0.55 * table.shape[1]), 1.0 + 0.35 * table.shape[0]))
    sns.heatmap(table, ax=ax, annot=True, fmt=".0f", cmap="viridis", cbar=False)  # the numbers are the legend
    ax.set_xlabel("step (k-th removal)")
    ax.set_ylabel("")
    ax.set_title(title or "Pruning order: the original layer removed at each step (Random: first seed)")
    fig.tight_layout()
    return fig


def figure1_grid(curves: pd.DataFrame, originals: dict | None = None, metric: str = "test_acc",
                 strategies=None, ncols: int = 3):
    """Figure 1 over datasets: small multiples of accuracy vs layers pruned, one panel per dataset.

    ``curves`` holds every dataset's curves with a ``dataset`` column; ``originals`` maps dataset to
    the unpruned accuracy.  One legend for all panels."""
    _require(curves, ["dataset", "strategy", "step", metric], "curves frame")
    datasets = list(dict.fromkeys(curves["dataset"]))
    ncols = min(ncols, len(datasets))
    nrows = int(np.ceil(len(datasets) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, datasets):
        _draw_curves(ax, curves[curves["dataset"] == name], metric, (originals or {}).get(name), strategies, legend=False)
        ax.set_title(name)
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.08 + 0.02 * (len(labels) // 6), 1, 1))
    return fig


# ---------------------------------------------------------------- fusion

WEIGHT_COLUMNS = {"lr_coefficient": "LR coefficient (per sd of the z-scored signal)",
                  "rf_importance": "RF importance (impurity decrease, sums to 1)"}


def fusion_weights_plot(weights: pd.DataFrame, title: str | None = None):
    """Which signals the fusion trusts: LR coefficients (signed, per standard deviation of the feature)
    beside RF impurity importances.  ``weights`` as ``fusion.fusion_weights`` gives it: signal,
    lr_coefficient, rf_importance (rows of several datasets/protocols are averaged per signal)."""
    _require(weights, ["signal", *WEIGHT_COLUMNS], "fusion weights frame")
    per_signal = weights.groupby("signal")[list(WEIGHT_COLUMNS)].mean().reindex(
        [s for s in SIGNALS if s in set(weights["signal"])])
    fig, axes = plt.subplots(1, len(WEIGHT_COLUMNS), figsize=(11, 4.8), sharey=True)
    colours = [strategy_style(s)["color"] for s in per_signal.index]
    for ax, (column, label) in zip(axes, WEIGHT_COLUMNS.items()):
        ax.barh(per_signal.index[::-1], per_signal[column].to_numpy()[::-1], color=colours[::-1])
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_title("Linear-Regression")
    axes[1].set_title("Random-Forest")
    fig.suptitle(title or "Strategic fusion: which signals each model trusts")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- distillation and size

def distillation_plot(distill: pd.DataFrame, original_acc: float | None = None, metric: str = "test_acc",
                      title: str | None = None):
    """KD vs alpha = 0 vs no KD, accuracy per depth k (layers removed) of the RF-pruned student."""
    _require(distill, ["depth", "mode", metric], "distill frame")
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for mode in [m for m in ("kd", "ce", "none") if m in set(distill["mode"])]:
        rows = distill[distill["mode"] == mode].groupby("depth")[metric].mean()
        ax.plot(rows.index, rows.to_numpy(), marker="o", label=MODE_LABELS[mode], color=MODE_COLOURS[mode])
    if "best_depth" in distill and distill["best_depth"].notna().any():
        flag = distill["best_depth"].dropna()  # distill.parquet: a bool per row (True at k*); or k* itself
        k_star = distill.loc[flag.index[flag.astype(bool)], "depth"] if flag.dtype == bool else flag
        if len(k_star):
            ax.axvline(int(k_star.iloc[0]), color="#2ca02c", ls=":", lw=1.2, label="k* (RF peak on val)")
    if original_acc is not None:
        ax.axhline(original_acc, color="black", ls="--", lw=1, label="original (unpruned)")
    ax.set_xticks(np.sort(distill["depth"].unique()))
    ax.set_xlabel("layers removed (k)")
    ax.set_ylabel(metric.replace("_acc", " accuracy"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title or "Knowledge distillation of the RF-pruned student")
    fig.tight_layout()
    return fig


def ats_bars(ats: pd.DataFrame, value: str = "ats", label: str = "model", title: str | None = None):
    """Accuracy-to-size ratio ATS = test accuracy (%) / size (MB) as bars, one per ``label``
    (hued by ``dataset`` when that column is present)."""
    import seaborn as sns

    _require(ats, [label, value], "ATS frame")
    hue = "dataset" if "dataset" in ats.columns and ats["dataset"].nunique() > 1 else None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * ats[label].nunique() * (1 + 0.3 * bool(hue))), 4.5))
    sns.barplot(data=ats, x=label, y=value, hue=hue, ax=ax, errorbar=None)
    ax.set_ylabel("ATS = test accuracy (%) / size (MB)")
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=20)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "Accuracy-to-size ratio")
    fig.tight_layout()
    return fig
