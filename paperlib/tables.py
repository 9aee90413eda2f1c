"""Tables (SPEC 7): the selection-free Table 1 with seed-aggregated intervals, the paper's Table 1 as a secondary
view, accuracy-to-size factors, the distillation summary and the pruning orders that coincide.

Everything here works on DataFrames and arrays read from the run folders (``paperlib.results``), so it can be
checked by hand.

* Table 1 (``comparison_table``): per dataset and strategy, TEST accuracy at k = L/4, L/2, 3L/4 and the curve
  mean over k = 1..L-1 (no k is chosen on test), each the mean over the pipeline seeds, with a 95 % interval of
  its difference against the reference (the best single-signal strategy chosen on VALIDATION, its validation
  curve mean averaged over seeds): the two-level bootstrap (``stats``) over seeds and test examples, which is
  the paired bootstrap over test examples when the run has one seed.  A win only when the interval excludes 0
  and the sign holds on a majority of seeds.  Also the accuracy at the k chosen on validation and, as a labelled
  secondary view, the paper's maximum over k of test accuracy (``table1``: selected on test).
* ATS = test accuracy (%) / size (MB), with MB = 10^6 bytes of the fp32 state dict.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .errors import PaperlibError
from .models import ats  # the one definition, beside the size it divides by
from .results import CONTROL, SEED_COLUMN, DatasetResults, dataset_order
from .stats import BOOTSTRAP_SEED, CI_LEVEL, DEFAULT_RESAMPLES, ResampleMeans, seed_call
from .strategies import CATEGORY, FLIPPED, FUSION_NAMES, SIGNALS, display_order

COMPETITORS: tuple[str, ...] = SIGNALS + FUSION_NAMES
VIEWS = ("L/4", "L/2", "3L/4", "mean")  # the selection-free views of Table 1 that get intervals
FRACTIONS = {"L/4": 0.25, "L/2": 0.5, "3L/4": 0.75}
F2_VIEWS = ("L/4", "3L/4")  # F2's depths: Table 1's light and heavy cut (every depth policy but three/best has both)
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


def _with_seed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a pipeline_seed column (0 where a frame from one run folder has none)."""
    return frame if SEED_COLUMN in frame.columns else frame.assign(**{SEED_COLUMN: 0})


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    dorder = {d: i for i, d in enumerate(dataset_order(table["dataset"]))}
    sorder = {s: i for i, s in enumerate(display_order(table["strategy"]))}
    table = table.assign(_d=table["dataset"].map(dorder), _s=table["strategy"].map(sorder))
    return table.sort_values(["_d", "_s"]).drop(columns=["_d", "_s"]).reset_index(drop=True)


# ------------------------------------------------ Table 1 as in the paper (maximum over k: selected on test)


def _curve_stats(curve: pd.DataFrame) -> tuple[float, int, float]:
    """(max test acc, first k reaching it, mean test acc over k) of one curve."""
    curve = curve.sort_values("step")
    acc = curve["test_acc"].to_numpy(dtype=float)
    i = int(np.argmax(acc))  # first maximum: the smallest k on ties
    return float(acc[i]), int(curve["step"].iloc[i]), float(acc.mean())


TABLE1_COLUMNS = [
    "dataset",
    "strategy",
    "category",
    "n_seeds",
    "n_curves",
    "max_test_acc",
    "max_test_acc_sd",
    "best_k",
    "mean_test_acc",
    "mean_test_acc_sd",
    "original_test_acc",
]


def table1(curves: pd.DataFrame, metrics_by_dataset: dict | None = None) -> pd.DataFrame:
    """The paper-style Table 1 (a SECONDARY view: its maximum is selected on test): one row per
    (dataset, strategy).

    Columns: dataset, strategy, category, n_seeds (pipeline seeds), n_curves, max_test_acc, max_test_acc_sd,
    best_k, mean_test_acc, mean_test_acc_sd, original_test_acc, competitor, best, gap_pp.

    A curve is one (pipeline seed, replicate): deterministic strategies have one per pipeline seed, Random one
    per replicate and seed.  Each curve's max and mean are computed first, then ``max_test_acc`` /
    ``mean_test_acc`` are their mean over curves and the ``_sd`` columns their sample standard deviation
    (ddof=1); ``best_k`` is where the mean curve peaks.  ``best`` marks the competitors (the 14 paper
    strategies) whose rounded percent equals the dataset's best; ``gap_pp`` is the best minus this strategy, in
    rounded percentage points.  Only steps k >= 1 count (the unpruned model is ``original_test_acc``)."""
    metrics_by_dataset = metrics_by_dataset or {}
    if "dataset" not in curves.columns:
        raise PaperlibError("curves need a 'dataset' column (use load_runs, or add it before calling table1)")
    curves = _with_seed(curves[curves["step"] >= 1])
    rows = []
    for (dataset, strategy), g in curves.groupby(["dataset", "strategy"], sort=False):
        per_curve = [_curve_stats(c) for _, c in g.groupby([SEED_COLUMN, "seed"])]
        maxes, ks, means = (np.array(v, dtype=float) for v in zip(*per_curve))
        many = len(per_curve) > 1
        best_k = _curve_stats(g.groupby("step", as_index=False)["test_acc"].mean())[1] if many else int(ks[0])
        sd = (lambda v: float(np.std(v, ddof=1))) if many else (lambda v: np.nan)
        rows.append(
            {
                "dataset": dataset,
                "strategy": strategy,
                "category": _category(strategy),
                "n_seeds": int(g[SEED_COLUMN].nunique()),
                "n_curves": len(per_curve),
                "max_test_acc": float(maxes.mean()),
                "max_test_acc_sd": sd(maxes),
                "best_k": best_k,
                "mean_test_acc": float(means.mean()),
                "mean_test_acc_sd": sd(means),
                "original_test_acc": float(metrics_by_dataset.get(dataset, {}).get("test_acc", np.nan)),
            }
        )
    table = pd.DataFrame(rows, columns=TABLE1_COLUMNS)
    table["competitor"] = table["strategy"].isin(COMPETITORS)
    rounded = pd.Series(pct(table["max_test_acc"]), index=table.index)
    top = rounded.where(table["competitor"]).groupby(table["dataset"]).transform("max")
    table["best"] = table["competitor"] & (rounded == top)
    table["gap_pp"] = np.round(top - rounded, 2)
    return _sorted(table)


def table1_wide(table: pd.DataFrame, value: str = "max_test_acc", marked: bool = False) -> pd.DataFrame:
    """Datasets x strategies, as in the paper, plus an ``Original`` column.

    ``marked=False``: the numbers of column ``value`` (fractions).  ``marked=True``: strings in percent
    with two decimals, '*' after each best (ties all marked), 'mean±sd' over curves where there are several."""
    wide = table.pivot(index="dataset", columns="strategy", values=value)
    wide = wide.reindex(index=dataset_order(wide.index), columns=display_order(wide.columns))
    original = table.groupby("dataset")["original_test_acc"].first()
    wide["Original"] = original.reindex(wide.index)
    wide.columns.name = None
    if not marked:
        return wide
    text = wide.map(lambda v: "" if pd.isna(v) else f"{100 * v:.2f}")
    sd_column = f"{value}_sd"
    n_column = "n_curves" if "n_curves" in table.columns else "n_seeds"
    for _, r in table.iterrows():
        cell = text.at[r["dataset"], r["strategy"]]
        if sd_column in table.columns and r[n_column] > 1 and pd.notna(r[sd_column]):
            cell += f"±{100 * r[sd_column]:.2f}"
        if value == "max_test_acc" and r["best"]:
            cell += "*"
        text.at[r["dataset"], r["strategy"]] = cell
    return text


# ---------------------------------------------------------------- accuracy-to-size


def _rf_rows(distill: pd.DataFrame) -> pd.DataFrame:
    """The RF-pruned rows of a distill frame (all rows but M_0 continued when it names no 'Random-Forest')."""
    if "strategy" in distill.columns and (distill["strategy"] == "Random-Forest").any():
        return distill[distill["strategy"] == "Random-Forest"]
    return distill[distill["strategy"] != CONTROL[0]] if "strategy" in distill.columns else distill


def _by_depth(distill: pd.DataFrame, mode: str) -> pd.DataFrame:
    rows = distill[distill["mode"] == mode].sort_values("depth", kind="stable")
    return rows.drop_duplicates("depth").set_index("depth")


def _n_layers(rows: pd.DataFrame) -> int | None:
    """L of M_0 from distill rows: depth + layers left (None without an n_layers column)."""
    if "n_layers" not in rows.columns or rows.empty:
        return None
    return int((rows["depth"] + rows["n_layers"]).iloc[0])


def f2_depths(n_layers: int) -> tuple[int, ...]:
    """The depths F2 is read at: k = L/4 and 3L/4 rounded half up (``fraction_steps``): (3, 9) for L = 12,
    (2, 5) for L = 6; the same fractions of the model on every dataset and run."""
    steps = fraction_steps(n_layers)
    return tuple(sorted({steps[v] for v in F2_VIEWS}))


def ats_factors(
    distill_df: pd.DataFrame,
    original_test_acc: float,
    original_bytes: float,
    baseline: str = "none",
    n_layers: int | None = None,
) -> dict:
    """The improvement factors of SPEC 7 for one dataset's (one seed's) distill rows (RF-pruned students).

    F1 = ATS(distilled RF at k*) / ATS(original), k* = the depth flagged ``best_depth``;
    F2 = sum_k acc_KD(k) / sum_k acc_noKD(k) over k in ``f2_depths(L)`` (a ratio of means: near-chance pruned
         models cannot blow it up), "noKD" being mode ``baseline`` ('none' = the pruned model without training,
         default; 'ce' = the alpha=0 control); NaN when a run lacks one of those depths (``F2_missing``);
    F3 = ATS(distilled RF at depth L-1, the one-layer model) / ATS(original), beside its ceiling
         F3_ceiling = bytes(M_0) / bytes(one-layer student): F3 = F3_ceiling * acc_KD(L-1) / acc(M_0).
    L comes from the rows (depth + n_layers) or ``n_layers``.  A factor whose rows are absent is NaN."""
    rows = _rf_rows(distill_df)
    kd = _by_depth(rows, "kd")
    base = ats(original_test_acc, original_bytes)
    star = rows[(rows["mode"] == "kd") & rows["best_depth"].astype(bool)] if "best_depth" in rows else rows.iloc[:0]
    k_star = int(star["depth"].iloc[0]) if len(star) else None
    f1 = float(ats(star["test_acc"].iloc[0], star["bytes"].iloc[0]) / base) if len(star) else np.nan
    no_kd, n_layers = _by_depth(rows, baseline), n_layers or _n_layers(rows)
    depths = f2_depths(n_layers) if n_layers and n_layers >= 2 else ()
    missing = [k for k in depths if k not in kd.index or k not in no_kd.index]
    f2 = np.nan
    if depths and not missing:
        f2 = float(kd.loc[list(depths), "test_acc"].sum() / no_kd.loc[list(depths), "test_acc"].sum())
    one = kd[kd["n_layers"] == 1] if "n_layers" in kd.columns else kd.iloc[:0]  # L-1 only when n_layers says so
    f3 = float(ats(one["test_acc"].iloc[0], one["bytes"].iloc[0]) / base) if len(one) else np.nan
    ceiling = float(original_bytes / one["bytes"].iloc[0]) if len(one) else np.nan
    return {
        "k_star": k_star,
        "ats_original": float(base),
        "F1": f1,
        "F2": f2,
        "F2_depths": depths,
        "F2_missing": missing,
        "F3": f3,
        "F3_ceiling": ceiling,
    }


def _summary_row(rows: pd.DataFrame, m: dict) -> dict:
    """One (dataset, seed)'s distillation summary (``distill_summary``)."""
    control = rows[(rows["strategy"] == CONTROL[0]) & (rows["depth"] == CONTROL[1]) & (rows["mode"] == CONTROL[2])]
    rows = _rf_rows(rows)
    orig, size = float(m.get("test_acc", np.nan)), m.get("bytes", np.nan)
    f = ats_factors(rows, orig, size)
    f_control = ats_factors(rows, orig, size, baseline="ce")["F2"]
    at = rows[rows["depth"] == f["k_star"]] if f["k_star"] is not None else rows.iloc[:0]

    def pick(mode, col):
        return float(at.loc[at["mode"] == mode, col].iloc[0]) if (at["mode"] == mode).any() else np.nan

    kd_acc, none_acc = pick("kd", "test_acc"), pick("none", "test_acc")
    beats = bool(pct(kd_acc) > pct(orig))
    return {
        "k_star": f["k_star"],
        "original_test_acc": orig,
        "continued_test_acc": float(control["test_acc"].iloc[0]) if len(control) else np.nan,
        "pruned_test_acc": none_acc,
        "ce_test_acc": pick("ce", "test_acc"),
        "kd_test_acc": kd_acc,
        "original_bytes": size,
        "kd_bytes": pick("kd", "bytes"),
        "ats_original": f["ats_original"],
        "ats_kd": float(ats(kd_acc, pick("kd", "bytes"))),
        "F1": f["F1"],
        "F2": f["F2"],
        "F2-control": f_control,
        "F2_depths": ",".join(map(str, f["F2_depths"])),
        "F3": f["F3"],
        "F3_ceiling": f["F3_ceiling"],
        "beats_original": beats,
        "narrows_drop": bool(not beats and pct(kd_acc) > pct(none_acc)),
    }


def distill_summary(distill: pd.DataFrame, metrics_by_dataset: dict, by_seed: bool = False) -> pd.DataFrame:
    """The distillation summary: k*, original / M_0 continued / pruned (no KD) / alpha = 0 control / distilled
    test accuracy at k*, sizes, ATS, F1-F3 (F2-control: F2 against the alpha = 0 control; F3 beside its
    ceiling), and whether the distilled model beats the original or narrows the drop.

    Computed per (dataset, pipeline seed) (``metrics_by_dataset[(dataset, seed)]``, else
    ``metrics_by_dataset[dataset]``); ``by_seed`` returns those rows, else one row per dataset: the mean over
    seeds of every number, n_seeds, ``k_stars`` (each seed's k*, "1/1/2") and k_star where the seeds agree.
    beats_original: round(100*acc_KD(k*), 2) > round(100*acc_original, 2) (on the seed means);
    narrows_drop: not beats_original and acc_KD(k*) > acc_noKD(k*) (rounded the same way): distillation
    recovers part of what pruning lost."""
    distill = _with_seed(distill)
    out = []
    for dataset in dataset_order(distill["dataset"].unique()):
        for seed, rows in distill[distill["dataset"] == dataset].groupby(SEED_COLUMN, sort=True):
            m = metrics_by_dataset.get((dataset, seed), metrics_by_dataset.get(dataset, {}))
            out.append({"dataset": dataset, SEED_COLUMN: int(seed), **_summary_row(rows, m)})
    per_seed = pd.DataFrame(out)
    return per_seed if by_seed or per_seed.empty else seed_mean_summary(per_seed)


def seed_mean_summary(per_seed: pd.DataFrame) -> pd.DataFrame:
    """``distill_summary``'s per-seed rows -> one row per dataset (see there)."""
    rows = []
    for dataset, g in per_seed.groupby("dataset", sort=False):
        means = g.drop(columns=["dataset", SEED_COLUMN, "k_star", "F2_depths", "beats_original", "narrows_drop"])
        # a seed mean is over every seed: a value some seeds lack (F2 where k = L/4 was not distilled) stays NaN
        row = {"dataset": dataset, "n_seeds": len(g), **means.astype(float).mean(skipna=False).to_dict()}
        ks = g["k_star"].tolist()
        row["k_star"] = ks[0] if len(set(ks)) == 1 else np.nan
        row["k_stars"] = "/".join("" if pd.isna(k) else str(int(k)) for k in ks)
        row["F2_depths"] = g["F2_depths"].iloc[0]
        row["beats_original"] = bool(pct(row["kd_test_acc"]) > pct(row["original_test_acc"]))
        row["narrows_drop"] = bool(not row["beats_original"] and pct(row["kd_test_acc"]) > pct(row["pruned_test_acc"]))
        rows.append(row)
    first = ["dataset", "n_seeds", "k_star", "k_stars"]
    out = pd.DataFrame(rows)
    return out[first + [c for c in per_seed.columns if c not in (*first, SEED_COLUMN)]]


# ---------------------------------------------------------------- selection-free Table 1


def fraction_steps(n_layers: int) -> dict[str, int]:
    """k = L/4, L/2, 3L/4 rounded half up, kept in 1..L-1: {'L/4': 3, 'L/2': 6, '3L/4': 9} for L = 12."""
    return {name: int(min(max(math.floor(f * n_layers + 0.5), 1), n_layers - 1)) for name, f in FRACTIONS.items()}


def val_chosen_k(val_acc_by_k, original_val_acc: float, tolerance: float) -> int:
    """The most layers removed whose validation accuracy is within ``tolerance`` (a fraction: 0.01 = 1 point)
    of M_0's: max {k : val_acc(k) >= val_acc(0) - tolerance}, or 0 (M_0 itself) when no k qualifies.
    ``val_acc_by_k``: a Series indexed by k (or a dict).  Nothing but validation accuracy is read."""
    floor = float(original_val_acc) - tolerance - 1e-12
    ok = [int(k) for k, acc in dict(val_acc_by_k).items() if float(acc) >= floor]
    return max(ok) if ok else 0


def curve_mean(curves: pd.DataFrame, column: str) -> pd.DataFrame:
    """strategy x k table of ``column`` (k = 1..L-1): the mean over Random's replicates within each pipeline
    seed, then the mean over seeds (each seed weighs the same)."""
    c = _with_seed(curves[curves["step"] >= 1])
    per_seed = c.groupby(["strategy", SEED_COLUMN, "step"])[column].mean()
    return per_seed.groupby(["strategy", "step"]).mean().unstack("step")


def dataset_curve_mean(res: DatasetResults, column: str) -> pd.DataFrame:
    """``curve_mean`` of all of a dataset's curves, cached on it (the tables and claims read it several times)."""
    key = ("curve_mean", column)
    if key not in res.cache:
        res.cache[key] = curve_mean(res.curves, column)
    return res.cache[key]


def _best_signal(val_mean: pd.Series) -> str | None:
    candidates = [s for s in SIGNALS if s in val_mean.index]
    if not candidates:
        return None
    return max(candidates, key=lambda s: (round(float(val_mean[s]), 12), -SIGNALS.index(s)))


def reference_strategy(curves: pd.DataFrame) -> str | None:
    """The best single-signal strategy, chosen on VALIDATION: the highest validation curve mean over
    k = 1..L-1, averaged over the pipeline seeds, among the 12 signals (ties: SPEC 3's order).  None when no
    single-signal curve exists."""
    return _best_signal(curve_mean(curves, "val_acc").mean(axis=1))


def _in_table(name: str) -> bool:
    return not name.endswith(FLIPPED)


TABLE_COLUMNS = [
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
    "agree",
    "call",
]


def view_scores(res: DatasetResults, strategy: str, view, split: str = "test") -> dict:
    """{seed: (n,) scores} of one view of a strategy's curve: 'mean' = the mean over k = 1..L-1, an int k = step k."""
    per_seed = res.seed_scores(strategy, split)
    return {s: sc.mean(0) if view == "mean" else sc[int(view) - 1] for s, sc in per_seed.items()}


def compare_pairs(
    res: DatasetResults,
    pairs: list,
    split: str = "test",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> list[dict | None]:
    """Two-level comparisons of one dataset: ``pairs`` = [((key_a, {seed: (n,)}), (key_b, {seed: (n,)}))] -> for
    each, on the seeds both hold, {diff, ci_low, ci_high, n_seeds, agree, call} (``stats.seed_call``), or None
    without a common seed.  Pairs on the same seeds share the dataset's cached ``stats.ResampleMeans`` (one per
    split, seeds and resampling): one product for the vectors not seen before, so every comparison of a dataset,
    in the tables and in the claims, sees the same resamples.  A key must name its vector (e.g. (strategy, view))."""
    groups: dict[tuple, list[int]] = {}
    for i, ((_, a), (_, b)) in enumerate(pairs):
        seeds = tuple(sorted(set(a) & set(b)))
        if seeds:
            groups.setdefault(seeds, []).append(i)
    out: list[dict | None] = [None] * len(pairs)
    for seeds, idx in groups.items():
        n = len(pairs[idx[0]][0][1][seeds[0]])
        cache_key = (split, seeds, resamples, seed, level)
        if cache_key not in res.cache:
            res.cache[cache_key] = ResampleMeans(len(seeds), n, resamples, seed, level)
        means = res.cache[cache_key]
        means.add({key: np.stack([d[s] for s in seeds]) for i in idx for key, d in pairs[i]})
        for i, c in zip(idx, means.compare([(pairs[i][0][0], pairs[i][1][0]) for i in idx])):
            out[i] = c | {"call": seed_call(c["ci_low"], c["ci_high"], c["agree"], c["n_seeds"])}
    return out


def _strategy_rows(res: DatasetResults, metrics: dict, acc: dict, val: dict, base: dict) -> list[dict]:
    """The six view rows of one strategy (intervals still empty); ``acc`` / ``val``: {k: seed-mean accuracy}."""
    empty = {"diff": np.nan, "ci_low": np.nan, "ci_high": np.nan, "agree": np.nan}
    first = "ref" if base["strategy"] == base["reference"] else ""
    rows = [
        {**base, "view": v, "k": k, "test_acc": float(acc.get(k, np.nan)), **empty, "call": first}
        for v, k in fraction_steps(res.n_layers).items()
    ]
    rows.append(
        {**base, "view": "mean", "k": np.nan, "test_acc": float(np.mean(list(acc.values()))), **empty, "call": first}
    )
    k_val = val_chosen_k(val, metrics.get("val_acc", np.nan), res.tolerance)
    at_val = float(acc.get(k_val, metrics.get("test_acc", np.nan)))
    rows.append({**base, "view": "val-k", "k": k_val, "test_acc": at_val, **empty, "call": ""})
    k_max = max(acc, key=lambda k: (acc[k], -k))  # first maximum: the smallest k on ties
    rows.append({**base, "view": "max", "k": k_max, "test_acc": float(acc[k_max]), **empty, "call": ""})
    return rows


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
    paper's maximum over k of TEST accuracy: a test-selected secondary view).  Every accuracy is the mean over
    the pipeline seeds (Random: of its replicate mean within each seed).  For the first four,
    ``diff``/``ci_low``/``ci_high`` are the two-level bootstrap (seeds and test examples, paired) of the
    difference against ``reference`` (the best single-signal strategy, chosen on validation) at the same k,
    ``agree`` the seeds whose own difference has the aggregate's sign and ``call`` win / loss / tie
    (``stats.seed_call``: the interval excludes 0 and agree is a majority); NaN and '' without predictions.
    Columns: dataset, strategy, category, n_seeds, reference, view, k, test_acc, diff, ci_low, ci_high, agree,
    call."""
    rows = []
    for res in results:
        test, val = (dataset_curve_mean(res, c) for c in ("test_acc", "val_acc"))
        test, val = (t.loc[[s for s in t.index if _in_table(s)]] for t in (test, val))
        n_seeds = res.curves.groupby("strategy")[SEED_COLUMN].nunique()
        ref = _best_signal(val.mean(axis=1))
        ks, metrics = fraction_steps(res.n_layers), res.metrics
        with_scores = ref is not None and res.has_predictions
        pairs, where = [], []
        for strategy in display_order(test.index):
            base = {
                "dataset": res.name,
                "strategy": strategy,
                "category": _category(strategy),
                "n_seeds": int(n_seeds[strategy]),
                "reference": ref,
            }
            acc, v = (t.loc[strategy].dropna().to_dict() for t in (test, val))
            block = _strategy_rows(res, metrics, acc, v, base)
            for i, r in enumerate(block[: len(VIEWS)] if with_scores else []):
                view = "mean" if r["view"] == "mean" else ks[r["view"]]
                pairs.append(
                    (((strategy, view), view_scores(res, strategy, view)), ((ref, view), view_scores(res, ref, view)))
                )
                where.append(len(rows) + i)
            rows += block
        for i, c in zip(where, compare_pairs(res, pairs, "test", resamples, seed, level)):
            if c is not None:
                rows[i] |= {k: c[k] for k in ("diff", "ci_low", "ci_high", "n_seeds", "agree")}
                rows[i]["call"] = rows[i]["call"] or c["call"]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS).astype({"k": "float64", "agree": "float64"})


def _agreement(r) -> str:
    """' 2/3' after a cell of a several-seed comparison; '' otherwise."""
    if r["call"] == "ref" or pd.isna(r.get("agree", np.nan)) or r["n_seeds"] <= 1:
        return ""
    return f" {int(r['agree'])}/{int(r['n_seeds'])}"


def comparison_wide(
    table: pd.DataFrame, view: str = "mean", original: dict | None = None, baseline: dict | None = None
) -> pd.DataFrame:
    """Strategies x datasets of one view, as text: percent with two decimals; '+' = significant win
    over the reference, '-' = significant loss, 'R' = the reference itself; with several seeds, the seeds
    agreeing in sign ('3/3'); 'val-k' and 'max' cells add '(k=..)'.  ``original``: {dataset: M_0 test acc} adds
    an 'Original' row; ``baseline``: {dataset: test acc of the classical reference} adds a 'TF-IDF+LR' row (the
    floor a pruned transformer should clear)."""
    sub = table[table["view"] == view]

    def cell(r):
        text = f"{100 * r['test_acc']:.2f}"
        mark = {"win": "+", "loss": "-", "ref": "R"}.get(r["call"], "")
        if view in ("val-k", "max"):
            text += f" (k={int(r['k'])})"
        return text + mark + _agreement(r)

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
    """Strategies x datasets: the difference against the reference in points with its 95 % interval (and, with
    several seeds, the seeds agreeing in sign)."""
    sub = table[(table["view"] == view) & table["diff"].notna()]
    if sub.empty:
        return pd.DataFrame()
    text = [
        f"{100 * r['diff']:+.2f} [{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}]{_agreement(r)}"
        for _, r in sub.iterrows()
    ]
    wide = sub.assign(cell=text).pivot(index="strategy", columns="dataset", values="cell")
    wide = wide.reindex(index=display_order(wide.index), columns=dataset_order(wide.columns)).fillna("")
    wide.columns.name = None
    return wide


# ---------------------------------------------------------------- what coincides


def pruning_orders(results: list[DatasetResults]) -> pd.DataFrame:
    """Which strategies prune in the same order: per dataset and pipeline seed, the strategies of Table 1 with a
    complete deterministic curve (all but Random) grouped by their removal order (the original layer removed at
    k = 1..L-1).  Columns: dataset, pipeline_seed, n_strategies, n_orders (distinct orders), shared (the groups
    of two or more, 'A = B; C = D'), groups (a list of tuples: every group, singletons included)."""
    rows = []
    for res in results:
        for seed, run in sorted(res.runs.items()):
            c = run.curves[run.curves["strategy"].map(_in_table) & (run.curves["strategy"] != "Random")]
            orders = {}
            for strategy, g in c.groupby("strategy"):
                g = g[g["seed"] == g["seed"].min()].sort_values("step")
                if g["step"].tolist() == list(range(1, res.n_layers)):
                    orders[strategy] = tuple(int(x) for x in g["removed"])
            by_order: dict[tuple, list] = {}
            for strategy in display_order(orders):
                by_order.setdefault(orders[strategy], []).append(strategy)
            groups = [tuple(g) for g in by_order.values()]
            rows.append(
                {
                    "dataset": res.name,
                    SEED_COLUMN: seed,
                    "n_strategies": len(orders),
                    "n_orders": len(groups),
                    "shared": "; ".join(" = ".join(g) for g in groups if len(g) > 1),
                    "groups": groups,
                }
            )
    return pd.DataFrame(rows, columns=["dataset", SEED_COLUMN, "n_strategies", "n_orders", "shared", "groups"])


def orders_summary(orders: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset of ``pruning_orders``: distinct orders per seed ('15/16/15 of 19') and the groups of
    strategies that share an order in every seed (two strategies are grouped when they coincide in each seed)."""
    rows = []
    for dataset, g in orders.groupby("dataset", sort=False):
        ids = [{s: i for i, group in enumerate(groups) for s in group} for groups in g["groups"]]
        names = [s for group in g["groups"].iloc[0] for s in group if all(s in seed_ids for seed_ids in ids)]
        together: dict[tuple, list] = {}
        for s in names:  # first seed's display order
            together.setdefault(tuple(seed_ids[s] for seed_ids in ids), []).append(s)
        shared = [" = ".join(group) for group in together.values() if len(group) > 1]
        rows.append(
            {
                "dataset": dataset,
                "seeds": "/".join(str(s) for s in g[SEED_COLUMN]),
                "distinct_orders": "/".join(str(n) for n in g["n_orders"]) + f" of {g['n_strategies'].max()}",
                "shared_in_every_seed": "; ".join(shared) or "none",
            }
        )
    return pd.DataFrame(rows, columns=["dataset", "seeds", "distinct_orders", "shared_in_every_seed"])
