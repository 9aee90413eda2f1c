"""Every figure of the companion, drawn from the tidy result frames (SPEC 9); their look and saving live in
``paperlib.figstyle`` (``plots.show_figure`` and ``plots.save_figure`` are those, for the notebooks).

Each plotting function takes DataFrames with the on-disk schemas and returns a matplotlib Figure:

- ``curves.parquet``: strategy, seed, step, removed, kept, val_acc, test_acc, n_params, bytes
- ``signals.parquet``: strategy, seed, step, layer + the 12 signal columns
- ``distill.parquet``: dataset, strategy, depth, n_layers, kept, mode ('kd', 'ce', 'none'), alpha,
  val_acc, test_acc, n_params, bytes, ats, best_depth

Curves that coincide exactly are drawn side by side with a small horizontal offset and say so in the legend
("= Other")."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .errors import PaperlibError
from .figstyle import (  # noqa: F401  (show_figure, save_figure: the notebooks call them as plots.*)
    DODGE,
    MAX_DODGE,
    MODE_LABELS,
    MODE_STYLES,
    RANDOM,
    TOL,
    _require,
    minus,
    save_figure,
    show_figure,
    strategy_style,
    styled,
)
from .strategies import SIGNALS, display_order, zscore

# ---------------------------------------------------------------- the pipeline and M_0

PIPELINE = (
    ("01", "fine-tune", "M₀ on the train split;\nTF-IDF + LR beside it"),
    ("02", "signals", "12 numbers per layer\nfrom one calibration pass"),
    ("03", "prune", "remove one layer at a time:\n12 rules, Random, Oracle"),
    ("04", "fuse", "LR and RF learn which\nlayer to remove next"),
    ("05", "distil", "retrain the RF-pruned model\nwith and without a teacher"),
    ("06", "compare", "nine datasets: Table 1,\npaired bootstrap, claims"),
)


@styled
def pipeline_diagram(stages=PIPELINE, title: str | None = None):
    """The study as boxes and arrows: one box per notebook (number, stage, what it does)."""
    from matplotlib.patches import FancyBboxPatch

    fig, ax = plt.subplots(figsize=(2.05 * len(stages), 1.9))
    ax.set_xlim(0, len(stages))
    ax.set_ylim(0, 1)
    ax.axis("off")
    colours = [TOL["blue"], TOL["teal"], TOL["orange"], TOL["red"], TOL["magenta"], TOL["dark grey"]]
    for i, (number, stage, what) in enumerate(stages):
        ax.add_patch(
            FancyBboxPatch(
                (i + 0.06, 0.08),
                0.82,
                0.84,
                boxstyle="round,pad=0.0,rounding_size=0.06",
                fc="white",
                ec=colours[i % len(colours)],
                lw=2,
            )
        )
        ax.text(
            i + 0.47,
            0.72,
            f"{number} · {stage}",
            ha="center",
            va="center",
            fontsize=10,
            weight="bold",
            color=colours[i % len(colours)],
        )
        ax.text(i + 0.47, 0.38, what, ha="center", va="center", fontsize=7.5, linespacing=1.4)
        if i + 1 < len(stages):
            ax.annotate(
                "",
                xy=(i + 1.06, 0.5),
                xytext=(i + 0.88, 0.5),
                arrowprops=dict(arrowstyle="-|>", color=TOL["dark grey"], lw=1.4),
            )
    ax.set_title(title or "One dataset flows through notebooks 01–05; 06 compares the datasets", loc="left")
    fig.tight_layout()
    return fig


@styled
def finetune_plot(
    counts: pd.DataFrame,
    val_acc_by_epoch,
    best_epoch: int | None = None,
    reference_val: float | None = None,
    title: str | None = None,
):
    """Left: examples per class in each split (``counts``: classes x splits). Right: M_0's validation
    accuracy after each fine-tuning epoch, the kept (best) epoch starred, and the TF-IDF + LR
    reference's validation accuracy as a line (``reference_val``)."""
    if counts.empty or not len(val_acc_by_epoch):
        raise PaperlibError("finetune_plot needs class counts and at least one epoch's validation accuracy")
    if best_epoch is not None and not 1 <= best_epoch <= len(val_acc_by_epoch):
        raise PaperlibError(f"best_epoch {best_epoch} is not one of the {len(val_acc_by_epoch)} epochs (1-based)")
    width = min(14.0, 6.5 + 0.28 * len(counts))
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(width + 2.0, 3.8), gridspec_kw={"width_ratios": [max(1.2, len(counts) / 6), 1]}
    )
    split_colours = [TOL["blue"], TOL["orange"], TOL["teal"]]
    n_splits = len(counts.columns)
    bar = 0.8 / n_splits
    x = np.arange(len(counts))
    for j, split in enumerate(counts.columns):
        left.bar(
            x + (j - (n_splits - 1) / 2) * bar,
            counts[split].to_numpy(),
            bar,
            label=split,
            color=split_colours[j % len(split_colours)],
        )
    names = [str(c) for c in counts.index]
    slanted = len(names) > 8 or max(len(n) for n in names) * len(names) > 40
    left.set_xticks(x, names, rotation=40 if slanted else 0, ha="right" if slanted else "center")
    left.set_ylabel("examples")
    left.set_title("examples per class and split")
    left.legend(frameon=False)
    left.grid(axis="y", alpha=0.3)
    epochs = np.arange(1, len(val_acc_by_epoch) + 1)
    right.plot(epochs, val_acc_by_epoch, color=TOL["red"], marker="o", lw=2, label="M₀ (validation)")
    if best_epoch is not None:
        right.plot(
            [best_epoch],
            [val_acc_by_epoch[best_epoch - 1]],
            marker="*",
            ms=15,
            color=TOL["red"],
            ls="",
            label=f"kept: epoch {best_epoch} (best on validation)",
        )
    if reference_val is not None:
        right.axhline(reference_val, color=TOL["dark grey"], ls="-.", lw=1.2, label="TF-IDF + LR (validation)")
    right.set_xticks(epochs)
    right.set_xlabel("fine-tuning epoch")
    right.set_ylabel("validation accuracy")
    right.set_title("fine-tuning M₀")
    right.grid(alpha=0.3)
    right.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- signals


def first_step_signals(signals: pd.DataFrame) -> pd.DataFrame:
    """The signals of the full fine-tuned model: the rows of the first step, averaged per layer
    (a frame without ``step``, e.g. one ``compute_signals`` result, is taken as it is).

    Every strategy's first step is measured on the same M_0, so their rows agree up to noise."""
    _require(signals, ["layer", *SIGNALS], "signals frame")
    first = signals[signals["step"] == signals["step"].min()] if "step" in signals else signals
    return first.groupby("layer", as_index=False)[list(SIGNALS)].mean().sort_values("layer").reset_index(drop=True)


@styled
def signal_heatmap(signals: pd.DataFrame, title: str | None = None):
    """Layer x signal heatmap of M_0's signals, each column z-scored across layers: z = (s - mean) / sd.

    Colour shows where a layer stands among the layers on that signal; the annotation is z."""
    import seaborn as sns

    per_layer = first_step_signals(signals)
    z = zscore(per_layer).set_axis(per_layer["layer"].to_numpy(), axis=0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * len(SIGNALS), 1.4 + 0.4 * len(z)))
    sns.heatmap(
        z,
        ax=ax,
        cmap="vlag",
        center=0,
        annot=z.map(lambda v: minus(f"{v:.1f}")).to_numpy(),
        fmt="",
        annot_kws={"size": 7},
        cbar_kws={"label": "z-score across layers"},
    )
    ax.set_xlabel("signal")
    ax.set_ylabel("layer (original index)")
    ax.set_title(title or "Signals of the fine-tuned model, z-scored per signal")
    ax.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    return fig


@styled
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
    fig, ax = plt.subplots(figsize=(8, 6.8))
    labels = corr.map(lambda v: "" if np.isnan(v) else minus(f"{v:.2f}")).to_numpy()
    sns.heatmap(
        corr,
        ax=ax,
        cmap="vlag",
        vmin=-1,
        vmax=1,
        annot=labels,
        fmt="",
        annot_kws={"size": 6.5},
        square=True,
        cbar_kws={"label": "Spearman \u03c1", "shrink": 0.8},
    )
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


def strategy_series(curves: pd.DataFrame, metric: str = "test_acc", strategies=None) -> dict[str, pd.Series]:
    """Each strategy's curve, step -> metric (Random: the mean over seeds; others: their first seed)."""
    out = {}
    for name in display_order(strategies or curves["strategy"].unique()):
        rows = curves[curves["strategy"] == name]
        if rows.empty:
            continue
        if name == RANDOM:
            band = random_band(curves, metric)
            out[name] = pd.Series(band["mean"].to_numpy(), index=band["step"].to_numpy())
        else:
            seed0 = rows[rows["seed"] == rows["seed"].min()] if "seed" in rows else rows
            out[name] = seed0.groupby("step")[metric].mean()
    return out


def coinciding(series: dict[str, pd.Series], decimals: int = 6) -> dict[str, str]:
    """Strategies whose curve equals an earlier one's at every step: {name: first name with that curve}."""
    seen, same = {}, {}
    for name, values in series.items():
        key = tuple(np.round(values.to_numpy(dtype=float), decimals)) + tuple(values.index)
        if key in seen:
            same[name] = seen[key]
        else:
            seen[key] = name
    return same


def _draw_curves(ax, curves: pd.DataFrame, metric: str, original: float | None, strategies=None, legend=True):
    """One line per strategy; curves identical to an earlier one are offset by ``DODGE`` steps each
    and labelled "= <earlier>", so that every strategy stays visible."""
    series = strategy_series(curves, metric, strategies)
    same = coinciding(series)
    offsets: dict[str, int] = {}
    twins = pd.Series(list(same.values()), dtype=object).value_counts().to_dict()  # first name -> number of twins
    # at most MAX_DODGE steps between a curve and its last twin, however many coincide
    gap = {first: min(DODGE, MAX_DODGE / n) for first, n in twins.items()}
    for name, values in series.items():
        style = strategy_style(name)
        style.setdefault("markersize", 3.5 if style.get("lw", 1.2) < 2 else 4.5)
        label = name
        if name in same:
            first = same[name]
            offsets[first] = offsets.get(first, 0) + 1
            values = values.set_axis(values.index + gap[first] * offsets[first])
            label = f"{name} (= {first})"
        if name == RANDOM:
            band = random_band(curves, metric)
            ax.fill_between(
                band["step"],
                band["mean"] - band["std"],
                band["mean"] + band["std"],
                color=TOL["grey"],
                alpha=0.35,
                lw=0,
            )
            label = f"{RANDOM} (mean \u00b1 sd, {int(band['count'].max())} seeds)"
        ax.plot(values.index, values.to_numpy(), label=label, **style)
    if original is not None:
        ax.axhline(original, color="black", ls="--", lw=1, label="original (unpruned)")
    ax.set_xlabel("layers pruned")
    ax.set_ylabel(metric.replace("_acc", " accuracy"))
    steps = np.sort(curves["step"].unique())
    ax.set_xticks(steps)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, borderaxespad=0)


@styled
def pruning_curves(
    curves: pd.DataFrame,
    original_acc: float | None = None,
    metric: str = "test_acc",
    strategies=None,
    title: str | None = None,
):
    """Accuracy vs layers pruned: one line per strategy, Random as its mean ± sd band, the
    original model's accuracy dashed (Figure 1 of the paper for one dataset).  The legend sits to
    the right of the axes; coinciding curves are offset and named in it."""
    _require(curves, ["strategy", "step", metric], "curves frame")
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    _draw_curves(ax, curves, metric, original_acc, strategies)
    ax.set_title(title or "Accuracy while pruning layers one at a time")
    fig.tight_layout()
    return fig


def pruning_order(curves: pd.DataFrame) -> pd.DataFrame:
    """Strategy x step table of the removed original layer (first seed of each strategy)."""
    _require(curves, ["strategy", "step", "removed"], "curves frame")
    first = (
        curves[curves["seed"] == curves.groupby("strategy")["seed"].transform("min")] if "seed" in curves else curves
    )
    table = first.pivot_table(index="strategy", columns="step", values="removed", aggfunc="first")
    return table.reindex(display_order(table.index))


@styled
def pruning_order_grid(curves: pd.DataFrame, title: str | None = None):
    """Which layer each strategy removes at each step, as an annotated grid (colour = layer index)."""
    import seaborn as sns

    table = pruning_order(curves)
    fig, ax = plt.subplots(figsize=(max(5.0, 2.8 + 0.55 * table.shape[1]), 1.0 + 0.3 * table.shape[0]))
    sns.heatmap(table, ax=ax, annot=True, fmt=".0f", cmap="viridis", cbar=False)  # the numbers are the legend
    ax.set_xlabel("step (k-th removal)")
    ax.set_ylabel("")
    ax.set_title(title or "Pruning order: the original layer removed at each step (Random: first seed)")
    fig.tight_layout()
    return fig


@styled
def direction_check_plot(
    check: pd.DataFrame,
    rule: str = "rule mean",
    flipped: str = "flipped mean",
    title: str | None = None,
    what: str = "curve mean over k",
    low: str | None = None,
    high: str | None = None,
):
    """Direction check: per signal (index), the rule's ``what`` minus its flipped twin's, in points,
    d = 100 (rule - flipped): blue where SPEC's direction wins, orange where the flip wins.  With
    ``low``/``high`` (columns of a confidence interval of the difference, as fractions) the interval
    is drawn as an error bar."""
    _require(check, [rule, flipped], "direction check frame")
    diff = 100 * (check[rule] - check[flipped]).to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.32 * len(check)))
    y = np.arange(len(check))[::-1]
    colours = [TOL["blue"] if d > 0 else TOL["orange"] if d < 0 else TOL["grey"] for d in diff]
    ax.barh(y, diff, color=colours, height=0.6)
    if low in check and high in check:
        lo, hi = 100 * check[low].to_numpy(dtype=float), 100 * check[high].to_numpy(dtype=float)
        ax.errorbar(
            diff, y, xerr=np.vstack([diff - lo, hi - diff]), fmt="none", ecolor="black", elinewidth=1, capsize=2
        )
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, list(check.index))
    ax.set_xlabel(f"{what}: rule as in SPEC \u2212 flipped rule (points); right of 0: SPEC's direction is better")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or "Direction check: each rule against its flipped twin")
    fig.tight_layout()
    return fig


@styled
def figure1_grid(
    curves: pd.DataFrame, originals: dict | None = None, metric: str = "test_acc", strategies=None, ncols: int = 3
):
    """Figure 1 over datasets: small multiples of accuracy vs layers pruned, one panel per dataset.

    ``curves`` holds every dataset's curves with a ``dataset`` column; ``originals`` maps dataset to
    the unpruned accuracy.  One legend for all panels: beside a single panel, below a grid, with as
    many columns as fit the figure's width."""
    _require(curves, ["dataset", "strategy", "step", metric], "curves frame")
    datasets = list(dict.fromkeys(curves["dataset"]))
    ncols = min(ncols, len(datasets))
    nrows = int(np.ceil(len(datasets) / ncols))
    single = len(datasets) == 1
    size = (9.5, 5.2) if single else (4.2 * ncols, 3.3 * nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    for ax, name in zip(axes.flat, datasets):
        _draw_curves(
            ax, curves[curves["dataset"] == name], metric, (originals or {}).get(name), strategies, legend=single
        )
        ax.set_title(name)
    for ax in axes.flat[len(datasets) :]:
        ax.set_visible(False)
    if single:
        fig.tight_layout()
        return fig
    # one legend for the grid: every strategy drawn in any panel, without the per-panel "(= ...)" notes
    entries = {}
    for ax in axes.flat[: len(datasets)]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label.split(" (= ")[0], handle)
    ncol = max(1, min(len(entries), int(size[0] // 2.1)))
    rows = int(np.ceil(len(entries) / ncol))
    fig.legend(
        list(entries.values()), list(entries), loc="lower center", ncol=ncol, frameon=False, bbox_to_anchor=(0.5, 0.0)
    )
    fig.tight_layout(rect=(0, min(0.4, (0.17 * rows + 0.1) / size[1]), 1, 1))
    return fig


# ---------------------------------------------------------------- fusion

WEIGHT_COLUMNS = {
    "lr_coefficient": "LR coefficient (per sd of the z-scored signal)",
    "rf_importance": "RF importance (impurity decrease, sums to 1)",
}


@styled
def fusion_weights_plot(weights: pd.DataFrame, title: str | None = None):
    """Which signals the fusion trusts: LR coefficients (signed, per standard deviation of the feature)
    beside RF impurity importances.  ``weights`` as ``fusion.fusion_weights`` gives it: signal,
    lr_coefficient, rf_importance (rows of several datasets/protocols are averaged per signal)."""
    _require(weights, ["signal", *WEIGHT_COLUMNS], "fusion weights frame")
    per_signal = (
        weights.groupby("signal")[list(WEIGHT_COLUMNS)]
        .mean()
        .reindex([s for s in SIGNALS if s in set(weights["signal"])])
    )
    fig, axes = plt.subplots(1, len(WEIGHT_COLUMNS), figsize=(10, 4.4), sharey=True)
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


@styled
def distillation_plot(
    distill: pd.DataFrame,
    original_acc: float | None = None,
    metric: str = "test_acc",
    title: str | None = None,
    floor_acc: float | None = None,
):
    """KD vs alpha = 0 vs no KD, accuracy per depth k (layers removed) of the RF-pruned student;
    ``floor_acc`` draws the classical reference (TF-IDF + LR), the floor any pruned model should clear.

    The modes are drawn side by side (offset by ``DODGE``), KD filled and the alpha = 0 control
    hollow, so both stay visible where they reach the same accuracy; the legend says when they do."""
    _require(distill, ["depth", "mode", metric], "distill frame")
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    modes = [m for m in ("kd", "ce", "none") if m in set(distill["mode"])]
    series = {m: distill[distill["mode"] == m].groupby("depth")[metric].mean() for m in modes}
    same = coinciding(series)
    for i, mode in enumerate(modes):
        values = series[mode]
        label = MODE_LABELS[mode] + (f"; identical to {MODE_LABELS[same[mode]].split(' (')[0]}" if mode in same else "")
        ax.plot(values.index + DODGE * (i - (len(modes) - 1) / 2), values.to_numpy(), label=label, **MODE_STYLES[mode])
    if "best_depth" in distill and distill["best_depth"].notna().any():
        best = (
            distill.loc[distill["best_depth"].astype(bool), "depth"]
            if distill["best_depth"].dtype == bool
            else distill["best_depth"].dropna()
        )
        if len(best):
            ax.axvline(int(best.iloc[0]), color=TOL["teal"], ls=":", lw=1.2, label="k* (RF peak on validation)")
    if original_acc is not None:
        ax.axhline(original_acc, color="black", ls="--", lw=1, label="original (unpruned)")
    if floor_acc is not None:
        ax.axhline(floor_acc, color=TOL["dark grey"], ls="-.", lw=1.2, label="TF-IDF + LR (classical reference)")
    ax.set_xticks(np.sort(distill["depth"].unique()))
    ax.set_xlabel("layers removed (k)")
    ax.set_ylabel(metric.replace("_acc", " accuracy"))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, borderaxespad=0)
    ax.set_title(title or "Knowledge distillation of the RF-pruned student")
    fig.tight_layout()
    return fig


@styled
def ats_bars(ats: pd.DataFrame, value: str = "ats", label: str = "model", title: str | None = None):
    """Accuracy-to-size ratio ATS = test accuracy (%) / size (MB) as bars, one per ``label``
    (hued by ``dataset`` when that column is present), each bar labelled with its value."""
    import seaborn as sns

    _require(ats, [label, value], "ATS frame")
    hue = "dataset" if "dataset" in ats.columns and ats["dataset"].nunique() > 1 else None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * ats[label].nunique() * (1 + 0.3 * bool(hue))), 4.2))
    palette = [TOL[c] for c in ("blue", "red", "teal", "orange", "cyan", "magenta", "ochre", "dark grey", "grey")]
    if hue:
        sns.barplot(data=ats, x=label, y=value, hue=hue, ax=ax, errorbar=None, palette=palette[: ats[hue].nunique()])
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, borderaxespad=0, title=hue)
    else:
        sns.barplot(data=ats, x=label, y=value, ax=ax, errorbar=None, color=TOL["blue"])
        for container in ax.containers:
            ax.bar_label(container, fmt="%.2f", fontsize=7.5)
    ax.set_ylabel("ATS = test accuracy (%) / size (MB)")
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=20)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "Accuracy-to-size ratio")
    fig.tight_layout()
    return fig


@styled
def accuracy_speed_plot(
    distill: pd.DataFrame,
    latency: pd.DataFrame,
    original_acc: float,
    original_bytes: int,
    device: str = "cpu",
    floor_acc: float | None = None,
    title: str | None = None,
):
    """The deployer's trade-off, two panels: test accuracy against size (MB = 10^6 bytes of the fp32 state
    dict) and against measured time per forward (``latency.parquet``, ms on ``device``; CPU: batch 1), one
    line per mode (KD, alpha = 0, no KD) through the distilled depths, the unpruned M_0 as a black star.

    Latency is joined by depth and kept layers, so each point is the student whose accuracy it shows."""
    _require(distill, ["depth", "kept", "mode", "test_acc", "bytes"], "distill frame")
    _require(latency, ["depth", "kept", "device", "median_ms"], "latency frame")
    speed = latency[latency["device"] == device]
    if speed.empty:
        raise PaperlibError(f"the latency frame has no {device!r} rows (devices: {sorted(set(latency['device']))})")
    m0 = speed[speed["depth"] == 0]
    rows = distill.merge(speed[["depth", "kept", "median_ms", "batch"]], on=["depth", "kept"], how="inner")
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2), sharey=True)
    for ax, x, label in (
        (axes[0], "MB", "size (MB, fp32)"),
        (axes[1], "median_ms", f"time per forward on {device}, batch {int(speed['batch'].iloc[0])} (ms, median)"),
    ):
        data = rows.assign(MB=rows["bytes"] / 1e6)
        for mode in [m for m in ("kd", "ce", "none") if m in set(data["mode"])]:
            line = data[data["mode"] == mode].sort_values(x)
            ax.plot(line[x], line["test_acc"], label=MODE_LABELS[mode], **MODE_STYLES[mode])
        m0_x = original_bytes / 1e6 if x == "MB" else (float(m0["median_ms"].iloc[0]) if len(m0) else None)
        if m0_x is not None:
            ax.plot([m0_x], [original_acc], marker="*", ms=13, color="black", ls="", label="original (unpruned)")
        if floor_acc is not None:
            ax.axhline(floor_acc, color=TOL["dark grey"], ls="-.", lw=1.2, label="TF-IDF + LR (classical reference)")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, borderaxespad=0)
    fig.suptitle(title or "Accuracy against size and against measured speed")
    fig.tight_layout()
    return fig
