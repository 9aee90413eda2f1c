"""Tables (SPEC 7): the selection-free Table 1 with paired intervals, the paper's Table 1 as a secondary
view, accuracy-to-size factors and the distillation summary.

Everything here works on DataFrames and arrays read from the run folders (``paperlib.results``), so it can be
checked by hand.

* Table 1 (``comparison_table``): per dataset and strategy, TEST accuracy at k = L/4, L/2, 3L/4 and the curve
  mean over k = 1..L-1 (no k is chosen on test), each with a paired-bootstrap 95 % interval of its difference
  against the best single-signal strategy chosen on VALIDATION; a win only when the interval excludes 0.  Also
  the accuracy at the k chosen on validation (the most layers removed with validation accuracy within the
  preset's ``val_tolerance`` of M_0's) and, as a labelled secondary view, the paper's maximum over k of test
  accuracy (``table1``: selected on test).
* ATS = test accuracy (%) / size (MB), with MB = 10^6 bytes of the fp32 state dict.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .errors import PaperlibError
from .results import DatasetResults, dataset_order
from .stats import BOOTSTRAP_SEED, CI_LEVEL, DEFAULT_RESAMPLES, bootstrap_weights, call, paired_bootstrap
from .strategies import CATEGORY, FLIPPED, FUSION_NAMES, SIGNALS, display_order

COMPETITORS: tuple[str, ...] = SIGNALS + FUSION_NAMES
VIEWS = ("L/4", "L/2", "3L/4", "mean")  # the selection-free views of Table 1 that get intervals
FRACTIONS = {"L/4": 0.25, "L/2": 0.5, "3L/4": 0.75}
BASELINE_ROW = "TF-IDF+LR (classical reference)"


def pct(acc) -> float | np.ndarray:
    """Accuracy as a percent rounded to two decimals: the precision at which Table 1 ties are decided."""
    return np.round(100 * np.asarray(acc, dtype=float), 2)


def _category(strategy: str) -> str:
    if strategy in CATEGORY:
        return CATEGORY[strategy]
    if strategy.startswith(FUSION_NAMES):
        return "fusion"
    return "baseline" if strategy in ("Random", "Oracle") else "reference"


# ------------------------------------------------ Table 1 as in the paper (maximum over k: selected on test)


def _curve_stats(curve: pd.DataFrame) -> tuple[float, int, float]:
    """(max test acc, first k reaching it, mean test acc over k) of one curve."""
    curve = curve.sort_values("step")
    acc = curve["test_acc"].to_numpy(dtype=float)
    i = int(np.argmax(acc))  # first maximum: the smallest k on ties
    return float(acc[i]), int(curve["step"].iloc[i]), float(acc.mean())


def table1(curves: pd.DataFrame, metrics_by_dataset: dict | None = None) -> pd.DataFrame:
    """The paper-style Table 1 (a SECONDARY view: its maximum is selected on test): one row per
    (dataset, strategy).

    Columns: dataset, strategy, category, n_seeds, max_test_acc, max_test_acc_sd, best_k,
    mean_test_acc, mean_test_acc_sd, original_test_acc, competitor, best, gap_pp.

    Deterministic strategies have one curve.  Random (several seeds): each seed's max and mean are
    computed first, then ``max_test_acc`` / ``mean_test_acc`` are their mean across seeds and the
    ``_sd`` columns their sample standard deviation (ddof=1); its ``best_k`` is where the seed-mean
    curve peaks.  ``best`` marks the competitors (the 14 paper strategies) whose rounded percent equals
    the dataset's best; ``gap_pp`` is the best minus this strategy, in rounded percentage points.
    Only steps k >= 1 count (the unpruned model is ``original_test_acc``)."""
    metrics_by_dataset = metrics_by_dataset or {}
    curves = curves[curves["step"] >= 1]
    if "dataset" not in curves.columns:
        raise PaperlibError("curves need a 'dataset' column (use load_runs, or add it before calling table1)")
    rows = []
    for (dataset, strategy), g in curves.groupby(["dataset", "strategy"], sort=False):
        per_seed = [_curve_stats(c) for _, c in g.groupby("seed")]
        maxes, ks, means = (np.array(v, dtype=float) for v in zip(*per_seed))
        if len(per_seed) > 1:
            _, best_k, _ = _curve_stats(g.groupby("step", as_index=False)["test_acc"].mean())
        else:
            best_k = int(ks[0])
        sd = (lambda v: float(np.std(v, ddof=1))) if len(per_seed) > 1 else (lambda v: np.nan)
        rows.append(
            {
                "dataset": dataset,
                "strategy": strategy,
                "category": _category(strategy),
                "n_seeds": len(per_seed),
                "max_test_acc": float(maxes.mean()),
                "max_test_acc_sd": sd(maxes),
                "best_k": best_k,
                "mean_test_acc": float(means.mean()),
                "mean_test_acc_sd": sd(means),
                "original_test_acc": float(metrics_by_dataset.get(dataset, {}).get("test_acc", np.nan)),
            }
        )
    table = pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "strategy",
            "category",
            "n_seeds",
            "max_test_acc",
            "max_test_acc_sd",
            "best_k",
            "mean_test_acc",
            "mean_test_acc_sd",
            "original_test_acc",
        ],
    )
    table["competitor"] = table["strategy"].isin(COMPETITORS)
    rounded = pd.Series(pct(table["max_test_acc"]), index=table.index)
    top = rounded.where(table["competitor"]).groupby(table["dataset"]).transform("max")
    table["best"] = table["competitor"] & (rounded == top)
    table["gap_pp"] = np.round(top - rounded, 2)
    dorder = {d: i for i, d in enumerate(dataset_order(table["dataset"]))}
    sorder = {s: i for i, s in enumerate(display_order(table["strategy"]))}
    table = table.assign(_d=table["dataset"].map(dorder), _s=table["strategy"].map(sorder))
    return table.sort_values(["_d", "_s"]).drop(columns=["_d", "_s"]).reset_index(drop=True)


def table1_wide(table: pd.DataFrame, value: str = "max_test_acc", marked: bool = False) -> pd.DataFrame:
    """Datasets x strategies, as in the paper, plus an ``Original`` column.

    ``marked=False``: the numbers of column ``value`` (fractions).  ``marked=True``: strings in percent
    with two decimals, '*' after each best (ties all marked), Random as 'mean±sd' over seeds."""
    wide = table.pivot(index="dataset", columns="strategy", values=value)
    wide = wide.reindex(index=dataset_order(wide.index), columns=display_order(wide.columns))
    original = table.groupby("dataset")["original_test_acc"].first()
    wide["Original"] = original.reindex(wide.index)
    wide.columns.name = None
    if not marked:
        return wide
    text = wide.map(lambda v: "" if pd.isna(v) else f"{100 * v:.2f}")
    sd_column = f"{value}_sd"
    for _, r in table.iterrows():
        cell = text.at[r["dataset"], r["strategy"]]
        if sd_column in table.columns and r["n_seeds"] > 1 and pd.notna(r[sd_column]):
            cell += f"±{100 * r[sd_column]:.2f}"
        if value == "max_test_acc" and r["best"]:
            cell += "*"
        text.at[r["dataset"], r["strategy"]] = cell
    return text


# ---------------------------------------------------------------- accuracy-to-size


def ats(test_acc, n_bytes):
    """Accuracy-to-size ratio: 100 * accuracy / (bytes / 10^6), i.e. percent per MB with MB = 10^6 bytes."""
    return 100 * np.asarray(test_acc, dtype=float) / (np.asarray(n_bytes, dtype=float) / 1e6)


def _rf_rows(distill: pd.DataFrame) -> pd.DataFrame:
    """The RF-pruned rows of a distill frame (all rows when it names no 'Random-Forest' strategy)."""
    if "strategy" in distill.columns and (distill["strategy"] == "Random-Forest").any():
        return distill[distill["strategy"] == "Random-Forest"]
    return distill


def _by_depth(distill: pd.DataFrame, mode: str) -> pd.DataFrame:
    rows = distill[distill["mode"] == mode].sort_values("depth", kind="stable")
    return rows.drop_duplicates("depth").set_index("depth")


def ats_factors(
    distill_df: pd.DataFrame, original_test_acc: float, original_bytes: float, baseline: str = "none"
) -> dict:
    """The three improvement factors of SPEC 7 for one dataset's distill rows (RF-pruned students).

    F1 = ATS(distilled RF at k*) / ATS(original), k* = the depth flagged ``best_depth``;
    F2 = mean over the depths present in both modes of acc_KD(k) / acc_noKD(k), where "noKD" is mode
         ``baseline`` ('none' = the pruned model without training, default; 'ce' = the alpha=0 control);
    F3 = ATS(distilled RF at depth L-1, the one-layer model) / ATS(original).
    A factor whose rows are absent is NaN.  Test accuracy throughout."""
    rows = _rf_rows(distill_df)
    kd = _by_depth(rows, "kd")
    base = ats(original_test_acc, original_bytes)
    star = rows[(rows["mode"] == "kd") & rows["best_depth"].astype(bool)] if "best_depth" in rows else rows.iloc[:0]
    k_star = int(star["depth"].iloc[0]) if len(star) else None
    f1 = float(ats(star["test_acc"].iloc[0], star["bytes"].iloc[0]) / base) if len(star) else np.nan
    no_kd = _by_depth(rows, baseline)
    common = kd.index.intersection(no_kd.index)
    f2 = float(np.mean(kd.loc[common, "test_acc"] / no_kd.loc[common, "test_acc"])) if len(common) else np.nan
    if "n_layers" in kd.columns and (kd["n_layers"] == 1).any():
        deepest = kd[kd["n_layers"] == 1].iloc[0]
    else:
        deepest = None  # without n_layers we cannot tell that the largest depth present is L-1
    f3 = float(ats(deepest["test_acc"], deepest["bytes"]) / base) if deepest is not None else np.nan
    return {"k_star": k_star, "ats_original": float(base), "F1": f1, "F2": f2, "F3": f3}


def distill_summary(distill: pd.DataFrame, metrics_by_dataset: dict) -> pd.DataFrame:
    """One row per dataset: k*, original / pruned (no KD) / distilled test accuracy at k*, sizes, ATS, F1-F3
    (and F2-control: F2 against the alpha = 0 control), and whether the distilled model beats the original or
    narrows the drop.

    beats_original: round(100*acc_KD(k*), 2) > round(100*acc_original, 2).
    narrows_drop: not beats_original and acc_KD(k*) > acc_noKD(k*) (rounded the same way): distillation
    recovers part of what pruning lost."""
    out = []
    for dataset in dataset_order(distill["dataset"].unique()):
        m = metrics_by_dataset.get(dataset, {})
        rows = _rf_rows(distill[distill["dataset"] == dataset])
        f = ats_factors(rows, m.get("test_acc", np.nan), m.get("bytes", np.nan))
        f_control = ats_factors(rows, m.get("test_acc", np.nan), m.get("bytes", np.nan), baseline="ce")["F2"]
        at = rows[rows["depth"] == f["k_star"]] if f["k_star"] is not None else rows.iloc[:0]

        def pick(mode, col, at=at):
            return float(at.loc[at["mode"] == mode, col].iloc[0]) if (at["mode"] == mode).any() else np.nan

        kd_acc, none_acc = pick("kd", "test_acc"), pick("none", "test_acc")
        orig = float(m.get("test_acc", np.nan))
        beats = bool(pct(kd_acc) > pct(orig))
        out.append(
            {
                "dataset": dataset,
                "k_star": f["k_star"],
                "original_test_acc": orig,
                "pruned_test_acc": none_acc,
                "ce_test_acc": pick("ce", "test_acc"),
                "kd_test_acc": kd_acc,
                "original_bytes": m.get("bytes", np.nan),
                "kd_bytes": pick("kd", "bytes"),
                "ats_original": f["ats_original"],
                "ats_kd": float(ats(kd_acc, pick("kd", "bytes"))),
                "F1": f["F1"],
                "F2": f["F2"],
                "F2-control": f_control,
                "F3": f["F3"],
                "beats_original": beats,
                "narrows_drop": bool(not beats and pct(kd_acc) > pct(none_acc)),
            }
        )
    return pd.DataFrame(out)


# ---------------------------------------------------------------- selection-free Table 1


def fraction_steps(n_layers: int) -> dict[str, int]:
    """k = L/4, L/2, 3L/4 rounded half up, kept in 1..L-1: {'L/4': 3, 'L/2': 6, '3L/4': 9} for L = 12."""
    return {name: int(min(max(math.floor(f * n_layers + 0.5), 1), n_layers - 1)) for name, f in FRACTIONS.items()}


def val_chosen_k(val_acc_by_k, original_val_acc: float, tolerance: float) -> int:
    """The most layers removed whose validation accuracy is within ``tolerance`` (a fraction: 0.01 = 1 point)
    of M_0's: max {k : val_acc(k) >= val_acc(0) - tolerance}, or 0 (M_0 itself) when no k qualifies.
    ``val_acc_by_k``: a Series indexed by k (or a dict).  Nothing but validation accuracy is read."""
    accs = pd.Series(val_acc_by_k, dtype=float)
    ok = accs.index[accs.to_numpy() >= float(original_val_acc) - tolerance - 1e-12]
    return int(max(ok)) if len(ok) else 0


def _seed_mean(curves: pd.DataFrame, column: str) -> pd.DataFrame:
    """strategy x k table of ``column`` averaged over seeds (k = 1..L-1)."""
    return curves[curves["step"] >= 1].pivot_table(index="strategy", columns="step", values=column, aggfunc="mean")


def reference_strategy(curves: pd.DataFrame) -> str | None:
    """The best single-signal strategy, chosen on VALIDATION: the highest validation curve mean over
    k = 1..L-1 among the 12 signals (ties: SPEC 3's order).  None when no single-signal curve exists."""
    val = _seed_mean(curves, "val_acc").mean(axis=1)
    candidates = [s for s in SIGNALS if s in val.index]
    if not candidates:
        return None
    return max(candidates, key=lambda s: (round(float(val[s]), 12), -SIGNALS.index(s)))


def _in_table(name: str) -> bool:
    return not name.endswith(FLIPPED)


def comparison_table(
    results: list[DatasetResults],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> pd.DataFrame:
    """The selection-free Table 1, tidy: one row per (dataset, strategy, view).

    Views: 'L/4', 'L/2', '3L/4' (test accuracy at that k, rounded half up), 'mean' (the curve mean over
    k = 1..L-1, the area under the curve), 'val-k' (at the k chosen on validation: the most layers removed
    with validation accuracy within the preset's tolerance of M_0's; ``val_chosen_k``) and 'max' (the
    paper's maximum over k of TEST accuracy: a test-selected secondary view).  For the first four,
    ``diff``/``ci_low``/``ci_high`` are the paired-bootstrap difference against ``reference`` (the best
    single-signal strategy, chosen on validation) at the same k, and ``call`` is win / loss / tie
    (``call``); NaN and '' without predictions.  Random's accuracy and scores are means over its seeds.
    Columns: dataset, strategy, category, n_seeds, reference, view, k, test_acc, diff, ci_low, ci_high, call."""
    rows = []
    for res in results:
        curves = res.curves[res.curves["strategy"].map(_in_table)]
        test, val = _seed_mean(curves, "test_acc"), _seed_mean(curves, "val_acc")
        seeds = curves.groupby("strategy")["seed"].nunique()
        ref = reference_strategy(curves)
        ks = fraction_steps(res.n_layers)
        weights = bootstrap_weights(len(res.original["test"]), resamples, seed) if res.has_predictions else None
        ref_scores = res.scores.get((ref, "test")) if weights is not None else None
        names = display_order(test.index)
        pairs, where = [], []  # (strategy scores, reference scores) of every interval, and its row
        for strategy in names:
            acc = test.loc[strategy].dropna()
            base = {
                "dataset": res.name,
                "strategy": strategy,
                "category": _category(strategy),
                "n_seeds": int(seeds[strategy]),
                "reference": ref,
            }
            scores = res.scores.get((strategy, "test")) if ref_scores is not None else None
            views = [(v, k, acc.get(k, np.nan)) for v, k in ks.items()] + [("mean", np.nan, acc.mean())]
            for view, k, a in views:
                if scores is not None:
                    pairs.append(
                        (scores[k - 1], ref_scores[k - 1]) if view != "mean" else (scores.mean(0), ref_scores.mean(0))
                    )
                    where.append(len(rows))
                rows.append(
                    {
                        **base,
                        "view": view,
                        "k": k,
                        "test_acc": float(a),
                        "diff": np.nan,
                        "ci_low": np.nan,
                        "ci_high": np.nan,
                        "call": "ref" if strategy == ref else "",
                    }
                )
            k_val = val_chosen_k(val.loc[strategy].dropna(), res.metrics.get("val_acc", np.nan), res.tolerance)
            rows.append(
                {
                    **base,
                    "view": "val-k",
                    "k": k_val,
                    "test_acc": float(acc.get(k_val, res.metrics.get("test_acc", np.nan))),
                    "diff": np.nan,
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "call": "",
                }
            )
            k_max = int(acc.idxmax())  # first maximum: the smallest k on ties
            rows.append(
                {
                    **base,
                    "view": "max",
                    "k": k_max,
                    "test_acc": float(acc.max()),
                    "diff": np.nan,
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "call": "",
                }
            )
        if pairs:  # one product for the whole dataset: every interval sees the same resamples
            ci = paired_bootstrap(
                np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), level=level, weights=weights
            )
            for i, (d, lo, hi) in zip(where, ci.itertuples(index=False, name=None)):
                rows[i].update({"diff": d, "ci_low": lo, "ci_high": hi})
                if rows[i]["call"] != "ref":
                    rows[i]["call"] = call(lo, hi)
    table = pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "strategy",
            "category",
            "n_seeds",
            "reference",
            "view",
            "k",
            "test_acc",
            "diff",
            "ci_low",
            "ci_high",
            "call",
        ],
    )
    return table.astype({"k": "float64"})


def comparison_wide(
    table: pd.DataFrame, view: str = "mean", original: dict | None = None, baseline: dict | None = None
) -> pd.DataFrame:
    """Strategies x datasets of one view, as text: percent with two decimals; '+' = significant win
    over the reference, '-' = significant loss, 'R' = the reference itself; 'val-k' and 'max' cells add
    '(k=..)'.  ``original``: {dataset: M_0 test acc} adds an 'Original' row; ``baseline``: {dataset: test
    acc of the classical reference} adds a 'TF-IDF+LR' row (the floor a pruned transformer should clear)."""
    sub = table[table["view"] == view]

    def cell(r):
        text = f"{100 * r['test_acc']:.2f}"
        mark = {"win": "+", "loss": "-", "ref": "R"}.get(r["call"], "")
        if view in ("val-k", "max"):
            text += f" (k={int(r['k'])})"
        return text + mark

    wide = sub.assign(cell=sub.apply(cell, axis=1) if len(sub) else []).pivot(
        index="strategy", columns="dataset", values="cell"
    )
    wide = wide.reindex(index=display_order(wide.index), columns=dataset_order(wide.columns)).fillna("")
    if original:
        wide.loc["Original"] = [f"{100 * original.get(d, np.nan):.2f}" for d in wide.columns]
    if baseline:
        wide.loc[BASELINE_ROW] = [f"{100 * baseline[d]:.2f}" if d in baseline else "" for d in wide.columns]
    wide.columns.name = None
    return wide


def ci_wide(table: pd.DataFrame, view: str = "mean") -> pd.DataFrame:
    """Strategies x datasets: the difference against the reference in points with its 95 % interval."""
    sub = table[(table["view"] == view) & table["diff"].notna()]
    if sub.empty:
        return pd.DataFrame()
    text = [
        f"{100 * d:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]"
        for d, lo, hi in zip(sub["diff"], sub["ci_low"], sub["ci_high"])
    ]
    wide = sub.assign(cell=text).pivot(index="strategy", columns="dataset", values="cell")
    wide = wide.reindex(index=display_order(wide.index), columns=dataset_order(wide.columns)).fillna("")
    wide.columns.name = None
    return wide
