"""Metrics and tables (SPEC 7): the selection-free Table 1 with paired intervals, accuracy-to-size
factors, the claims check and the direction check.

Everything here works on DataFrames and arrays read from the run folders, so it can be checked by hand.

* Table 1 (``comparison_table``): per dataset and strategy, TEST accuracy at k = L/4, L/2, 3L/4 and
  the curve mean over k = 1..L-1 (no k is chosen on test), each with a paired-bootstrap 95 % interval
  of its difference against the best single-signal strategy chosen on VALIDATION; a win only when the
  interval excludes 0.  Also the accuracy at the k chosen on validation (the most layers removed with
  validation accuracy within the preset's ``val_tolerance`` of M_0's) and, as a labelled secondary
  view, the paper's maximum over k of test accuracy (``table1``: selected on test).
* Bootstrap (``paired_bootstrap``): over test examples, 2,000 resamples, seed 0, percentile interval;
  vectorised as one matrix product of the per-example differences with the resampling weights.
* ATS = test accuracy (%) / size (MB), with MB = 10^6 bytes of the fp32 state dict.
* Claims (``claims_check``): a point-estimate count (the paper's reading) and a significant count
  (ours) per claim; the rules are ``VERDICT_RULES``, printed under the table.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import PAPER_DATASETS
from .errors import PaperlibError
from .io import read_json, read_parquet, write_csv
from .strategies import (
    CATEGORY,
    FLIPPED,
    FUSION_NAMES,
    REFERENCE_SIGNALS,
    SIGNALS,
    display_order,
    fusion_names,
)

COMPETITORS: tuple[str, ...] = SIGNALS + FUSION_NAMES
NEAR_OPTIMAL_PP = 1.0  # "near-optimal" = within 1 percentage point of the best (our reading)
PAPER_ATS_FACTOR = 18.84


def pct(acc) -> float | np.ndarray:
    """Accuracy as a percent rounded to two decimals: the precision at which Table 1 ties are decided."""
    return np.round(100 * np.asarray(acc, dtype=float), 2)


def _category(strategy: str) -> str:
    if strategy in CATEGORY:
        return CATEGORY[strategy]
    if strategy.startswith(FUSION_NAMES):
        return "fusion"
    return "baseline" if strategy in ("Random", "Oracle") else "reference"


def _dataset_order(names) -> list[str]:
    return [d for d in PAPER_DATASETS if d in set(names)] + sorted(set(names) - set(PAPER_DATASETS))


# ---------------------------------------------------------------- Table 1


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
    dorder = {d: i for i, d in enumerate(_dataset_order(table["dataset"]))}
    sorder = {s: i for i, s in enumerate(display_order(table["strategy"]))}
    table = table.assign(_d=table["dataset"].map(dorder), _s=table["strategy"].map(sorder))
    return table.sort_values(["_d", "_s"]).drop(columns=["_d", "_s"]).reset_index(drop=True)


def table1_wide(table: pd.DataFrame, value: str = "max_test_acc", marked: bool = False) -> pd.DataFrame:
    """Datasets x strategies, as in the paper, plus an ``Original`` column.

    ``marked=False``: the numbers of column ``value`` (fractions).  ``marked=True``: strings in percent
    with two decimals, '*' after each best (ties all marked), Random as 'mean±sd' over seeds."""
    wide = table.pivot(index="dataset", columns="strategy", values=value)
    wide = wide.reindex(index=_dataset_order(wide.index), columns=display_order(wide.columns))
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
    for dataset in _dataset_order(distill["dataset"].unique()):
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


# ---------------------------------------------------------------- per-example scores

DEFAULT_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
VIEWS = ("L/4", "L/2", "3L/4", "mean")  # the selection-free views of Table 1 that get intervals
FRACTIONS = {"L/4": 0.25, "L/2": 0.5, "3L/4": 0.75}


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


@functools.lru_cache(maxsize=4)
def bootstrap_weights(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(resamples x n) resampling weights: W[r, i] = (times example i is drawn in resample r) / n, the draws
    being ``numpy.random.default_rng(seed).integers(0, n, size=(resamples, n))``; W @ x is the resample mean.
    Cached (read-only): every comparison on n examples sees the same resamples."""
    if n < 1:
        raise PaperlibError("the bootstrap needs at least one test example")
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    counts = np.bincount((draws + n * np.arange(resamples)[:, None]).ravel(), minlength=resamples * n)
    weights = counts.reshape(resamples, n).astype(np.float64) / n
    weights.setflags(write=False)
    return weights


def paired_bootstrap(
    a,
    b,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """Paired bootstrap over examples of the accuracy difference of ``a`` minus ``b``.

    ``a``: (m, n) per-example scores of m models (1 = correct, 0 = wrong; a seed mean for Random), ``b``:
    (n,) or (m, n), the same examples in the same order.  Every row uses the same resamples (all
    comparisons of a dataset see the same draws).  Returns, per row: diff = mean(a - b), ci_low and
    ci_high = the (1-level)/2 and (1+level)/2 percentiles of the resampled mean differences (numpy's
    linear interpolation).  Vectorised: one (m x n) @ (n x resamples) product."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    d = a - np.asarray(b, dtype=np.float64)
    w = bootstrap_weights(d.shape[1], resamples, seed) if weights is None else weights
    boot = d @ w.T  # (m, resamples)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2], axis=1)
    return pd.DataFrame({"diff": d.mean(1), "ci_low": lo, "ci_high": hi})


def call(ci_low: float, ci_high: float) -> str:
    """'win' when the interval lies above 0, 'loss' when below, 'tie' when it holds 0; '' without one."""
    if pd.isna(ci_low) or pd.isna(ci_high):
        return ""
    return "win" if ci_low > 0 else "loss" if ci_high < 0 else "tie"


@dataclass
class DatasetResults:
    """One run folder's results, read back for the tables (``load_results``).

    ``scores[(strategy, split)]``: (L-1, n) per-example correctness of each step k = 1..L-1 (mean over
    seeds for Random); ``original[split]``: M_0's (n,) correctness; ``distill_scores[(strategy, depth,
    mode, split)]``: a distilled student's.  Empty when the folder holds no predictions."""

    name: str
    n_layers: int
    metrics: dict
    tolerance: float
    curves: pd.DataFrame
    distill: pd.DataFrame
    scores: dict = field(default_factory=dict, repr=False)
    original: dict = field(default_factory=dict, repr=False)
    distill_scores: dict = field(default_factory=dict, repr=False)

    @property
    def has_predictions(self) -> bool:
        return bool(self.scores) and "test" in self.original


def _correct_blocks(preds: pd.DataFrame, labels: np.ndarray, keys: list[str]) -> dict:
    """{key tuple: (n,) bool correctness} from prediction rows of one split (each model: examples 0..n-1)."""
    n = len(labels)
    preds = preds.sort_values([*keys, "example"], kind="stable")
    if len(preds) % n or not (preds["example"].to_numpy().reshape(-1, n) == np.arange(n)).all():
        raise PaperlibError(
            f"predictions do not cover examples 0..{n - 1} once per model; rerun the stage that wrote them"
        )
    correct = preds["pred"].to_numpy().reshape(-1, n) == labels
    heads = preds[keys].iloc[::n]
    return {tuple(k): c for k, c in zip(heads.itertuples(index=False, name=None), correct)}


def _read_scores(folder: Path, res: DatasetResults) -> None:
    from .pruning import LABELS_FILE, ORIGINAL, PREDICTIONS_FILE, SPLITS

    if not ((folder / PREDICTIONS_FILE).is_file() and (folder / LABELS_FILE).is_file()):
        return
    labels = read_parquet(folder / LABELS_FILE)
    preds = read_parquet(folder / PREDICTIONS_FILE)
    dpath = folder / "distill_predictions.parquet"
    dpreds = read_parquet(dpath) if dpath.is_file() else None
    steps = np.arange(1, res.n_layers)
    for split in SPLITS:
        y = labels[labels["split"] == split].sort_values("example")["label"].to_numpy()
        blocks = _correct_blocks(preds[preds["split"] == split], y, ["strategy", "seed", "step"])
        by_strategy: dict[str, dict[int, list]] = {}
        for (strategy, _seed, step), c in blocks.items():
            if strategy == ORIGINAL:
                res.original[split] = c.astype(np.float64)
            else:
                by_strategy.setdefault(strategy, {}).setdefault(int(step), []).append(c)
        for strategy, per_step in by_strategy.items():
            if set(per_step) >= set(steps.tolist()):
                res.scores[(strategy, split)] = np.stack([np.mean(per_step[k], axis=0) for k in steps])
        if dpreds is not None and len(dpreds):
            for (strategy, depth, mode), c in _correct_blocks(
                dpreds[dpreds["split"] == split], y, ["strategy", "depth", "mode"]
            ).items():
                res.distill_scores[(strategy, int(depth), mode, split)] = c.astype(np.float64)


def load_results(runs_root: str | Path) -> list[DatasetResults]:
    """Every ``<dataset>/`` run folder under ``runs_root`` with curves.parquet and metrics.json, with its
    per-example correctness when predictions.parquet is there.  The tolerance of the validation-chosen
    k comes from the run's preset (``val_tolerance``; ``config.Preset``'s default when absent)."""
    from .config import Preset

    root = Path(runs_root)
    if not root.is_dir():
        raise PaperlibError(f"runs folder {str(root)!r} does not exist; run `paperlib prune` first or pass --runs")
    default_tol = Preset.__dataclass_fields__["val_tolerance"].default
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if not ((folder / "curves.parquet").is_file() and (folder / "metrics.json").is_file()):
            continue
        metrics = read_json(folder / "metrics.json")
        curves = read_parquet(folder / "curves.parquet").assign(dataset=folder.name)
        n_layers = int(metrics.get("n_layers") or curves["step"].max() + 1)
        config = read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
        tol = float(config.get("preset", {}).get("val_tolerance", default_tol))
        dpath = folder / "distill.parquet"
        distill = read_parquet(dpath).assign(dataset=folder.name) if dpath.is_file() else pd.DataFrame()
        res = DatasetResults(folder.name, n_layers, metrics, tol, curves, distill)
        _read_scores(folder, res)
        out.append(res)
    if not out:
        raise PaperlibError(
            f"no run folder with curves.parquet and metrics.json under {str(root)!r}; "
            f"run `paperlib prune` first (or check --runs)"
        )
    order = {d: i for i, d in enumerate(_dataset_order([r.name for r in out]))}
    return sorted(out, key=lambda r: order[r.name])


# ---------------------------------------------------------------- selection-free Table 1


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
    wide = wide.reindex(index=display_order(wide.index), columns=_dataset_order(wide.columns)).fillna("")
    if original:
        wide.loc["Original"] = [f"{100 * original.get(d, np.nan):.2f}" for d in wide.columns]
    if baseline:
        wide.loc[BASELINE_ROW] = [f"{100 * baseline[d]:.2f}" if d in baseline else "" for d in wide.columns]
    wide.columns.name = None
    return wide


# ---------------------------------------------------------------- direction check


def direction_check(
    results: list[DatasetResults],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> pd.DataFrame:
    """Does SPEC 3's direction beat its flip?  Per (signal, dataset) with both curves: the VALIDATION
    curve mean of '<signal>' and of '<signal> (flipped)' (``paperlib prune --strategies flipped``), their
    difference, its paired-bootstrap interval over validation examples and a verdict: 'SPEC' (the
    interval lies above 0), 'flip' (below), 'tie'; without predictions the sign of the point estimate
    decides, in parentheses.  Signals without a flipped run are left out.
    Columns: signal, dataset, spec_val_mean, flipped_val_mean, diff, ci_low, ci_high, verdict."""
    rows = []
    for res in results:
        val = _seed_mean(res.curves, "val_acc")
        for signal in (*SIGNALS, *REFERENCE_SIGNALS):
            flipped = signal + FLIPPED
            if signal not in val.index or flipped not in val.index:
                continue
            a, b = res.scores.get((signal, "val")), res.scores.get((flipped, "val"))
            spec, flip = float(val.loc[signal].mean()), float(val.loc[flipped].mean())
            if a is not None and b is not None:
                ci = paired_bootstrap(a.mean(0)[None], b.mean(0), resamples, seed, level).iloc[0]
                lo, hi = ci["ci_low"], ci["ci_high"]
                verdict = {"win": "SPEC", "loss": "flip", "tie": "tie"}[call(lo, hi)]
            else:
                lo = hi = np.nan
                verdict = "(SPEC)" if spec > flip else "(flip)" if flip > spec else "(tie)"
            rows.append(
                {
                    "signal": signal,
                    "dataset": res.name,
                    "spec_val_mean": spec,
                    "flipped_val_mean": flip,
                    "diff": spec - flip,
                    "ci_low": lo,
                    "ci_high": hi,
                    "verdict": verdict,
                }
            )
    return pd.DataFrame(
        rows, columns=["signal", "dataset", "spec_val_mean", "flipped_val_mean", "diff", "ci_low", "ci_high", "verdict"]
    )


def direction_wide(check: pd.DataFrame) -> pd.DataFrame:
    """Signals x datasets: 'SPEC' / 'flip' / 'tie' with the difference in points, plus a count column."""
    if check.empty:
        return pd.DataFrame()
    cells = check.assign(cell=[f"{v} {100 * d:+.2f}" for v, d in zip(check["verdict"], check["diff"])])
    wide = cells.pivot(index="signal", columns="dataset", values="cell")
    wide = wide.reindex(
        index=[s for s in (*SIGNALS, *REFERENCE_SIGNALS) if s in wide.index], columns=_dataset_order(wide.columns)
    ).fillna("")
    counts = check.groupby("signal")["verdict"].agg(
        lambda v: (
            f"SPEC {sum(x.strip('()') == 'SPEC' for x in v)}, "
            f"flip {sum(x.strip('()') == 'flip' for x in v)} of {len(v)}"
        )
    )
    wide["SPEC better / flip better"] = counts.reindex(wide.index)
    wide.columns.name = None
    return wide


# ---------------------------------------------------------------- claims

VERDICT_RULES = """\
Verdict rules (paperlib.metrics.VERDICT_RULES):
- Counts over the n datasets measured are scaled from the paper's 9: a claim "p of 9" is reproduced when
  the count reaches need = ceil(p/9 * n), partly when it reaches max(1, ceil(need/2)), else not reproduced;
  a claim whose strategy or stage was not run is not measured.
- point count (the paper's reading): Table 1's maximum over k of TEST accuracy (selected on test), ties at
  two decimals of a percent counting for every tied strategy; "near-optimal" = within 1 point of the best;
  distillation: rounded test accuracies at k* compared as points.
- significant count (ours): paired bootstrap over test examples (2,000 resamples, seed 0, 95 % percentile
  interval) of the difference in test accuracy on the curve mean over k = 1..L-1 (no k chosen on test);
  a win only when the interval excludes 0.  "Best" = significantly above the best single-signal strategy
  chosen on VALIDATION (its validation curve mean); "near-optimal" = not significantly below it;
  "reaches every signal's best" = the fusion model with the higher validation curve mean is significantly
  below no single signal.  Distillation: the interval of the paired difference at k*.
- within = fusion fitted on the dataset's own validation rows; transfer = fitted on the other datasets
  only (leave-one-dataset-out): the out-of-sample test.  Each gets its own rows.
- Accuracy-to-size: F1, F2, F3 (SPEC 7; F2 against the untrained pruned model, F2-control against the
  alpha = 0 control) each set against 18.84 (mean over datasets): reproduced within 25 %, partly within a
  factor of 2, else not reproduced.  No factor is picked for being closest.
- The overall verdict column is the significant count's; verdict_point is the paper's reading."""


def _fraction_verdict(k: int, n: int, paper_k: int, paper_n: int = 9) -> tuple[str, int]:
    """Scale "paper_k of paper_n" to n datasets: need = ceil(paper_k/paper_n * n).

    reproduced: k >= need; partly: k >= max(1, ceil(need/2)); else not reproduced; n = 0: not measured."""
    if n == 0:
        return "not measured", 0
    need = math.ceil(paper_k / paper_n * n - 1e-9)
    if k >= need:
        return "reproduced", need
    return ("partly" if k >= max(1, math.ceil(need / 2)) else "not reproduced"), need


def _claim(claim, protocol, paper, point, significant, n, paper_k, detail="", paper_n: int = 9) -> dict:
    """One claims row; ``point``/``significant``: lists of the datasets counted (None: not measured)."""
    if n == 0 or point is None:
        return {
            "claim": claim,
            "protocol": protocol,
            "paper": paper,
            "n": n,
            "need": np.nan,
            "point_count": np.nan,
            "significant_count": np.nan,
            "verdict_point": "not measured",
            "verdict": "not measured",
            "detail": detail or "not run",
        }
    vp, need = _fraction_verdict(len(point), n, paper_k, paper_n)
    vs, _ = _fraction_verdict(len(significant), n, paper_k, paper_n)
    text = f"point: {', '.join(point) or 'none'}; significant: {', '.join(significant) or 'none'}"
    return {
        "claim": claim,
        "protocol": protocol,
        "paper": paper,
        "n": n,
        "need": need,
        "point_count": len(point),
        "significant_count": len(significant),
        "verdict_point": vp,
        "verdict": vs,
        "detail": text + (f"; {detail}" if detail else ""),
    }


def _factor_claim(name: str, value: float, n: int, note: str) -> dict:
    if not np.isfinite(value):
        return {
            "claim": f"Accuracy-to-size factor {name} reaches 18.84",
            "protocol": "",
            "paper": f"{PAPER_ATS_FACTOR}",
            "n": n,
            "need": np.nan,
            "point_count": np.nan,
            "significant_count": np.nan,
            "verdict_point": "not measured",
            "verdict": "not measured",
            "detail": f"{note}; not computable",
        }
    ratio = value / PAPER_ATS_FACTOR
    verdict = "reproduced" if 0.75 <= ratio <= 1 / 0.75 else "partly" if 0.5 <= ratio <= 2 else "not reproduced"
    return {
        "claim": f"Accuracy-to-size factor {name} reaches 18.84",
        "protocol": "",
        "paper": f"{PAPER_ATS_FACTOR}",
        "n": n,
        "need": np.nan,
        "point_count": np.nan,
        "significant_count": np.nan,
        "verdict_point": verdict,
        "verdict": verdict,
        "detail": f"{name} = {value:.2f} (mean over {n}); {note}",
    }


def fusion_claims(
    results: list[DatasetResults],
    table: pd.DataFrame,
    protocol: str,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> list[dict]:
    """The four fusion claims of SPEC 0 for one protocol (see ``VERDICT_RULES``)."""
    lr, rf = fusion_names(protocol)
    competitors = (*SIGNALS, lr, rf)
    t = table.set_index(["dataset", "strategy", "view"])
    out = []
    point_best, sig_best, near_point, near_sig, n_of = {lr: [], rf: []}, {lr: [], rf: []}, [], [], {lr: 0, rf: 0}
    reach_point, reach_sig, fused, short = [], [], [], {}
    sig_measured = True
    for res in results:
        d = res.name
        mx = table[(table["dataset"] == d) & (table["view"] == "max") & table["strategy"].isin(competitors)]
        if mx.empty:
            continue
        acc = mx.set_index("strategy")["test_acc"]
        rounded = pd.Series(pct(acc), index=acc.index)
        top = rounded.max()
        for name in (lr, rf):
            if (d, name, "mean") not in t.index:
                continue
            n_of[name] += 1
            call_ = t.at[(d, name, "mean"), "call"]
            sig_measured &= call_ != ""
            if rounded[name] == top:
                point_best[name].append(d)
            if call_ == "win":
                sig_best[name].append(d)
            if name == rf:
                if rounded[name] >= top - NEAR_OPTIMAL_PP:
                    near_point.append(d)
                if call_ in ("win", "tie"):
                    near_sig.append(d)
        names = [n for n in (lr, rf) if (d, n, "mean") in t.index]
        if not names:
            continue
        fused.append(d)
        singles = [s for s in SIGNALS if s in rounded.index]
        if max(rounded[n] for n in names) >= max(rounded[s] for s in singles):
            reach_point.append(d)
        val = _seed_mean(res.curves, "val_acc").mean(axis=1)
        chosen = max(names, key=lambda n: (float(val[n]), -names.index(n)))  # chosen on validation
        a = res.scores.get((chosen, "test"))
        refs = [s for s in singles if (s, "test") in res.scores]
        if a is not None and refs:
            ci = paired_bootstrap(
                np.repeat(a.mean(0)[None], len(refs), 0),
                np.stack([res.scores[(s, "test")].mean(0) for s in refs]),
                resamples,
                seed,
                level,
            )
            below = [s for s, hi in zip(refs, ci["ci_high"]) if hi < 0]
            if not below:
                reach_sig.append(d)
            else:
                short[d] = f"{chosen} below {', '.join(below)}"
    tag = f" ({protocol})"
    if not sig_measured:
        sig = lambda v: []  # no predictions: no significant count
    else:
        sig = lambda v: v
    out.append(
        _claim("Random-Forest fusion is best" + tag, protocol, "7 of 9", point_best[rf], sig(sig_best[rf]), n_of[rf], 7)
    )
    out.append(
        _claim(
            "Random-Forest fusion is best or near-optimal" + tag,
            protocol,
            "9 of 9 (best on 7, near-optimal on 2)",
            near_point,
            sig(near_sig),
            n_of[rf],
            9,
        )
    )
    out.append(
        _claim(
            "Linear-Regression fusion leads (is best)" + tag,
            protocol,
            "5 of 9",
            point_best[lr],
            sig(sig_best[lr]),
            n_of[lr],
            5,
        )
    )
    out.append(
        _claim(
            "Fusion reaches every single-signal strategy's best" + tag,
            protocol,
            "8 of 9 (short of Gradient-Fisher on one)",
            reach_point,
            sig(reach_sig),
            len(fused),
            8,
            "; ".join(f"{d}: {s}" for d, s in short.items()),
        )
    )
    if not sig_measured:
        for row in out[-4:]:
            if row["n"]:
                row["verdict"], row["significant_count"] = "not measured", np.nan
                row["detail"] += "; no predictions.parquet: no intervals"
    return out


def distill_claims(
    results: list[DatasetResults],
    summary: pd.DataFrame | None,
    strategy: str = "Random-Forest",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> tuple[list[dict], pd.DataFrame]:
    """The distillation claims, split (see ``VERDICT_RULES``), and a per-dataset frame of the paired
    differences at k*: kd - M_0, ce - M_0, kd - none, kd - ce (diff, ci_low, ci_high each)."""
    names = [
        "Pruned + distilled (KD) at k* beats the original M_0",
        "Pruned + distilled narrows the drop where it does not beat M_0",
        "The teacher adds accuracy over the alpha = 0 control (KD vs control at k*)",
    ]
    papers = ["6 of 9", "3 of 3 (beats or narrows on 9 of 9)", "credited on 6 of 9 (the paper has no control)"]
    if summary is None or summary.empty:
        return [
            _claim(c, "", p, None, None, 0, 0, "no distill.parquet: run `paperlib distill`")
            for c, p in zip(names, papers)
        ], pd.DataFrame()
    s = summary[summary["kd_test_acc"].notna()].set_index("dataset")
    pairs, rows = {"kd-M_0": ("kd", None), "ce-M_0": ("ce", None), "kd-none": ("kd", "none"), "kd-ce": ("kd", "ce")}, []
    for res in results:
        if res.name not in s.index or pd.isna(s.at[res.name, "k_star"]):
            continue
        k = int(s.at[res.name, "k_star"])
        row = {"dataset": res.name, "k_star": k}
        for label, (a, b) in pairs.items():
            sa = res.distill_scores.get((strategy, k, a, "test"))
            sb = res.original.get("test") if b is None else res.distill_scores.get((strategy, k, b, "test"))
            if sa is None or sb is None:
                row |= {f"{label}_diff": np.nan, f"{label}_ci_low": np.nan, f"{label}_ci_high": np.nan}
                continue
            ci = paired_bootstrap(sa[None], sb, resamples, seed, level).iloc[0]
            row |= {f"{label}_diff": ci["diff"], f"{label}_ci_low": ci["ci_low"], f"{label}_ci_high": ci["ci_high"]}
        rows.append(row)
    pairs_df = pd.DataFrame(rows)
    win = lambda d, label: (
        not pairs_df.empty
        and label + "_ci_low" in pairs_df
        and bool(pairs_df.set_index("dataset").at[d, label + "_ci_low"] > 0)
    )
    measured = not pairs_df.empty and pairs_df.filter(like="_ci_low").notna().any().any()
    data = list(s.index)
    orig, kd, none, ce = (
        pd.Series(pct(s[c]), index=s.index)
        for c in ("original_test_acc", "kd_test_acc", "pruned_test_acc", "ce_test_acc")
    )
    beats_p = [d for d in data if kd[d] > orig[d]]
    beats_s = [d for d in data if win(d, "kd-M_0")]
    ce_p = [d for d in data if ce[d] > orig[d]]
    ce_s = [d for d in data if win(d, "ce-M_0")]
    narrows_p = beats_p + [d for d in data if d not in beats_p and kd[d] > none[d]]
    narrows_s = beats_s + [d for d in data if d not in beats_s and win(d, "kd-none")]
    teacher_p = [d for d in data if kd[d] > ce[d]]
    teacher_s = [d for d in data if win(d, "kd-ce")]
    ctrl = (
        f"alpha = 0 control beats M_0: point {len(ce_p)}, significant {len(ce_s) if measured else 'n/a'} of {len(data)}"
    )
    out = [
        _claim(names[0], "", papers[0], beats_p, beats_s, len(data), 6, ctrl),
        _claim(names[1], "", papers[1], narrows_p, narrows_s, len(data), 9),
        _claim(names[2], "", papers[2], teacher_p, teacher_s, len(data), 6),
    ]
    if not measured:
        for row in out:
            row["verdict"], row["significant_count"] = "not measured", np.nan
            row["detail"] += "; no distill_predictions.parquet: no intervals"
    return out, pairs_df


def claims_check(
    results: list[DatasetResults],
    table: pd.DataFrame,
    summary: pd.DataFrame | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> pd.DataFrame:
    """Every claim of SPEC 0 with a point-estimate count (the paper's reading) and a significant count
    (ours), fusion claims for the within and the transfer protocol separately, the distillation claim
    split in two (beats M_0; the teacher adds over the alpha = 0 control) and F1, F2, F3 (and F2 against
    the control) each against 18.84.  The rules are ``VERDICT_RULES``.  Columns: claim, protocol, paper, n,
    need, point_count, significant_count, verdict_point, verdict, detail."""
    rows = []
    for protocol in ("within", "transfer"):
        rows += fusion_claims(results, table, protocol, resamples, seed, level)
    rows += distill_claims(results, summary, resamples=resamples, seed=seed, level=level)[0]
    s = summary[summary["kd_test_acc"].notna()] if summary is not None and not summary.empty else pd.DataFrame()
    n = len(s)
    notes = {
        "F1": "ATS(KD at k*) / ATS(M_0)",
        "F2": "mean over k of acc_KD / acc_pruned (untrained)",
        "F2-control": "mean over k of acc_KD / acc_alpha=0 control",
        "F3": "ATS(KD at L-1) / ATS(M_0)",
    }
    for name, note in notes.items():
        value = float(s[name].mean()) if n and name in s and s[name].notna().any() else np.nan
        rows.append(_factor_claim(name, value, n, note))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- loading and the CLI


def load_runs(runs_root: str | Path) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """(curves with a 'dataset' column, {dataset: metrics.json}, distill rows) of every ``<dataset>/``
    folder under ``runs_root`` (the dataset name is the folder name; folders without results are skipped)."""
    root = Path(runs_root)
    if not root.is_dir():
        raise PaperlibError(f"runs folder {str(root)!r} does not exist; run `paperlib prune` first or pass --runs")
    curves, metrics, distill = [], {}, []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        name = folder.name
        if (folder / "metrics.json").is_file():
            metrics[name] = read_json(folder / "metrics.json")
        if (folder / "curves.parquet").is_file():
            curves.append(read_parquet(folder / "curves.parquet").assign(dataset=name))
        if (folder / "distill.parquet").is_file():
            distill.append(read_parquet(folder / "distill.parquet").assign(dataset=name))
    if not curves:
        raise PaperlibError(f"no curves.parquet under {str(root)!r}; run `paperlib prune` first (or check --runs)")
    return (
        pd.concat(curves, ignore_index=True),
        metrics,
        pd.concat(distill, ignore_index=True) if distill else pd.DataFrame(),
    )


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
    wide = wide.reindex(index=display_order(wide.index), columns=_dataset_order(wide.columns)).fillna("")
    wide.columns.name = None
    return wide


def verdicts(runs_root: str | Path, resamples: int = DEFAULT_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict:
    """Everything ``paperlib table`` prints, as DataFrames: 'table' (``comparison_table``), 'table1_max'
    (the paper-style ``table1``), 'references', 'distill_summary', 'distill_pairs', 'claims', 'direction'."""
    results = load_results(runs_root)
    table = comparison_table(results, resamples, seed)
    metrics = {r.name: r.metrics for r in results}
    curves = pd.concat([r.curves for r in results], ignore_index=True)
    distill = [r.distill for r in results if not r.distill.empty]
    summary = distill_summary(pd.concat(distill, ignore_index=True), metrics) if distill else None
    pairs = distill_claims(results, summary, resamples=resamples, seed=seed)[1]
    references = pd.DataFrame(
        [
            {
                "dataset": r.name,
                "reference": reference_strategy(r.curves),
                "n_layers": r.n_layers,
                "ks": fraction_steps(r.n_layers),
                "val_tolerance": r.tolerance,
                "n_test": len(r.original.get("test", [])),
                "predictions": r.has_predictions,
            }
            for r in results
        ]
    )
    return {
        "results": results,
        "table": table,
        "table1_max": table1(curves[curves["strategy"].map(_in_table)], metrics),
        "references": references,
        "distill_summary": summary,
        "distill_pairs": pairs,
        "claims": claims_check(results, table, summary, resamples, seed),
        "direction": direction_check(results, resamples, seed),
    }


BASELINE_ROW = "TF-IDF+LR (classical reference)"


def classical_reference(runs_root: str | Path) -> dict:
    """{dataset: test accuracy of TF-IDF + logistic regression} from each run folder's baseline.json
    (``paperlib.baselines``); folders without one are left out."""
    from .baselines import read_baseline

    root = Path(runs_root)
    found = {p.name: read_baseline(p) for p in sorted(root.iterdir()) if p.is_dir()} if root.is_dir() else {}
    return {name: info["test_acc"] for name, info in found.items() if info}


def table_command(runs_root: str | Path, out: str | Path | None = None) -> dict:
    """``paperlib table``: print the selection-free Table 1 with intervals, the secondary views, the
    distillation summary, the claims check with its rules and (when flipped runs exist) the direction
    check; with ``out``, also write them as CSV (table1.csv tidy, table1_<view>.csv wide, table1_max.csv,
    distill_summary.csv, distill_pairs.csv, claims.csv, direction.csv)."""
    v = verdicts(runs_root)
    table, references, claims = v["table"], v["references"], v["claims"]
    original = {r.name: r.metrics.get("test_acc", np.nan) for r in v["results"]}
    baseline = classical_reference(runs_root)
    ks = "; ".join(
        f"{r.dataset}: L={r.n_layers}, k={'/'.join(str(k) for k in r.ks.values())}, reference {r.reference}"
        f"{'' if r.predictions else ' (no predictions.parquet: no intervals)'}"
        for r in references.itertuples()
    )
    views = {
        "mean": "test accuracy (%) averaged over k = 1..L-1 (area under the curve)",
        "L/4": "test accuracy (%) at k = L/4",
        "L/2": "test accuracy (%) at k = L/2",
        "3L/4": "test accuracy (%) at k = 3L/4",
        "val-k": "test accuracy (%) at the k chosen on validation (most layers removed with validation "
        "accuracy within the preset's tolerance of M_0's; k=0 is M_0)",
        "max": "SECONDARY, selected on test (the paper's Table 1): maximum over k of test accuracy",
    }
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_colwidth", 200):
        print(
            "Table 1 (selection-free). R = reference: the best single-signal strategy chosen on validation "
            "(validation curve mean); + / - = the paired-bootstrap 95 % interval of the difference to R at the "
            "same k excludes 0 (2,000 resamples of the test examples); no mark = tie."
        )
        print(ks)
        for view, title in views.items():
            print(f"\n{title}")
            print(comparison_wide(table, view, *((original, baseline) if view == "mean" else ())).to_string())
            if view == "mean":
                print("\ndifference to R on the curve mean, points [95 % interval]")
                intervals = ci_wide(table, "mean")
                print(intervals.to_string() if not intervals.empty else "(no predictions.parquet: no intervals)")
        if v["distill_summary"] is not None:
            s = v["distill_summary"]
            print("\nDistillation of the RF-pruned model at k* (accuracy-to-size in %/MB, MB = 10^6 bytes)")
            shown = s.assign(original_MB=s["original_bytes"] / 1e6, kd_MB=s["kd_bytes"] / 1e6)
            print(
                shown.drop(columns=["original_bytes", "kd_bytes"]).to_string(
                    index=False, float_format=lambda x: f"{x:.4f}"
                )
            )
            if not v["distill_pairs"].empty:
                print(
                    "\nPaired differences at k* (points, 95 % interval): "
                    "KD vs M_0, control vs M_0, KD vs untrained, KD vs control"
                )
                print(_pairs_text(v["distill_pairs"]).to_string(index=False))
        print("\nClaims check (verdict_point: the paper's reading; verdict: ours, significant count)")
        print(claims.drop(columns=["detail"]).to_string(index=False))
        print("\nDetails")
        for r in claims.itertuples():
            print(f"- {r.claim}: {r.detail}")
        print("\n" + VERDICT_RULES)
        if not v["direction"].empty:
            print("\nDirection check: does SPEC 3's direction beat its flip on the VALIDATION curve mean? (points)")
            print(direction_wide(v["direction"]).to_string())
    if out is not None:
        out = Path(out)
        write_csv(table, out / "table1.csv")
        for view in views:
            write_csv(
                comparison_wide(table, view).reset_index(names="strategy"), out / f"table1_{view.replace('/', '_')}.csv"
            )
        write_csv(v["table1_max"], out / "table1_max.csv")
        if v["distill_summary"] is not None:
            write_csv(v["distill_summary"], out / "distill_summary.csv")
            write_csv(v["distill_pairs"], out / "distill_pairs.csv")
        write_csv(claims, out / "claims.csv")
        write_csv(v["direction"], out / "direction.csv")
    return v


def _pairs_text(pairs: pd.DataFrame) -> pd.DataFrame:
    out = pairs[["dataset", "k_star"]].copy()
    for label in ("kd-M_0", "ce-M_0", "kd-none", "kd-ce"):
        out[label] = [
            ("" if pd.isna(d) else f"{100 * d:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]")
            for d, lo, hi in zip(pairs[f"{label}_diff"], pairs[f"{label}_ci_low"], pairs[f"{label}_ci_high"])
        ]
    return out
