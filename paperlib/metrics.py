"""Metrics and tables (SPEC 7): Table 1, accuracy-to-size factors, and the claims check.

Everything here works on DataFrames (curves, metrics, distill rows), so it can be checked by hand.

* Table 1: per dataset and strategy, the maximum test accuracy over k = 1..L-1, the first k reaching
  it, and the curve mean over k.  "Best" per dataset is decided among the 14 paper strategies (the 12
  single signals, Linear-Regression, Random-Forest) on round(100*acc, 2), so ties count for each tied
  strategy.  Random, Oracle, Block-Influence, Top-Drop, transfer-protocol fusion and the original
  model are shown beside them but do not compete.
* ATS = test accuracy (%) / size (MB), with MB = 10^6 bytes of the fp32 state dict.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .config import PAPER_DATASETS
from .errors import PaperlibError
from .io import read_json, read_parquet, write_csv
from .strategies import CATEGORY, FUSION_NAMES, SIGNALS

COMPETITORS: tuple[str, ...] = SIGNALS + FUSION_NAMES
REFERENCES: tuple[str, ...] = ("Random", "Oracle", "Block-Influence", "Top-Drop")
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


def _strategy_order(names) -> list[str]:
    fixed = list(COMPETITORS) + [f"{n} (transfer)" for n in FUSION_NAMES] + list(REFERENCES)
    return [n for n in fixed if n in set(names)] + sorted(set(names) - set(fixed))


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
    """Tidy Table 1: one row per (dataset, strategy).

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
        rows.append({"dataset": dataset, "strategy": strategy, "category": _category(strategy),
                     "n_seeds": len(per_seed), "max_test_acc": float(maxes.mean()), "max_test_acc_sd": sd(maxes),
                     "best_k": best_k, "mean_test_acc": float(means.mean()), "mean_test_acc_sd": sd(means),
                     "original_test_acc": float(metrics_by_dataset.get(dataset, {}).get("test_acc", np.nan))})
    table = pd.DataFrame(rows, columns=["dataset", "strategy", "category", "n_seeds", "max_test_acc",
                                        "max_test_acc_sd", "best_k", "mean_test_acc", "mean_test_acc_sd",
                                        "original_test_acc"])
    table["competitor"] = table["strategy"].isin(COMPETITORS)
    rounded = pd.Series(pct(table["max_test_acc"]), index=table.index)
    top = rounded.where(table["competitor"]).groupby(table["dataset"]).transform("max")
    table["best"] = table["competitor"] & (rounded == top)
    table["gap_pp"] = np.round(top - rounded, 2)
    dorder = {d: i for i, d in enumerate(_dataset_order(table["dataset"]))}
    sorder = {s: i for i, s in enumerate(_strategy_order(table["strategy"]))}
    table = table.assign(_d=table["dataset"].map(dorder), _s=table["strategy"].map(sorder))
    return table.sort_values(["_d", "_s"]).drop(columns=["_d", "_s"]).reset_index(drop=True)


def table1_wide(table: pd.DataFrame, value: str = "max_test_acc", marked: bool = False) -> pd.DataFrame:
    """Datasets x strategies, as in the paper, plus an ``Original`` column.

    ``marked=False``: the numbers of column ``value`` (fractions).  ``marked=True``: strings in percent
    with two decimals, '*' after each best (ties all marked), Random as 'mean±sd' over seeds."""
    wide = table.pivot(index="dataset", columns="strategy", values=value)
    wide = wide.reindex(index=_dataset_order(wide.index), columns=_strategy_order(wide.columns))
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


def ats_factors(distill_df: pd.DataFrame, original_test_acc: float, original_bytes: float,
                baseline: str = "none") -> dict:
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
    """One row per dataset: k*, original / pruned (no KD) / distilled test accuracy at k*, sizes, ATS, F1-F3,
    and whether the distilled model beats the original or narrows the drop.

    beats_original: round(100*acc_KD(k*), 2) > round(100*acc_original, 2).
    narrows_drop: not beats_original and acc_KD(k*) > acc_noKD(k*) (rounded the same way): distillation
    recovers part of what pruning lost."""
    out = []
    for dataset in _dataset_order(distill["dataset"].unique()):
        m = metrics_by_dataset.get(dataset, {})
        rows = _rf_rows(distill[distill["dataset"] == dataset])
        f = ats_factors(rows, m.get("test_acc", np.nan), m.get("bytes", np.nan))
        at = rows[rows["depth"] == f["k_star"]] if f["k_star"] is not None else rows.iloc[:0]
        pick = lambda mode, col: float(at.loc[at["mode"] == mode, col].iloc[0]) if (at["mode"] == mode).any() else np.nan
        kd_acc, none_acc = pick("kd", "test_acc"), pick("none", "test_acc")
        orig = float(m.get("test_acc", np.nan))
        beats = bool(pct(kd_acc) > pct(orig))
        out.append({"dataset": dataset, "k_star": f["k_star"], "original_test_acc": orig,
                    "pruned_test_acc": none_acc, "ce_test_acc": pick("ce", "test_acc"), "kd_test_acc": kd_acc,
                    "original_bytes": m.get("bytes", np.nan), "kd_bytes": pick("kd", "bytes"),
                    "ats_original": f["ats_original"], "ats_kd": float(ats(kd_acc, pick("kd", "bytes"))),
                    "F1": f["F1"], "F2": f["F2"], "F3": f["F3"], "beats_original": beats,
                    "narrows_drop": bool(not beats and pct(kd_acc) > pct(none_acc))})
    return pd.DataFrame(out)


# ---------------------------------------------------------------- claims

def _fraction_verdict(k: int, n: int, paper_k: int, paper_n: int = 9) -> tuple[str, int]:
    """Scale "paper_k of paper_n" to n datasets: need = ceil(paper_k/paper_n * n).

    reproduced: k >= need; partly: k >= max(1, ceil(need/2)); else not reproduced; n = 0: not measured."""
    if n == 0:
        return "not measured", 0
    need = math.ceil(paper_k / paper_n * n - 1e-9)
    if k >= need:
        return "reproduced", need
    return ("partly" if k >= max(1, math.ceil(need / 2)) else "not reproduced"), need


def _claim(claim, paper, measured, verdict, rule) -> dict:
    return {"claim": claim, "paper": paper, "measured": measured, "verdict": verdict, "rule": rule}


def claims_check(table: pd.DataFrame, distill_summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each claim of SPEC 0 beside the value measured and a verdict.

    Counts over the n datasets present are scaled from the paper's 9: a claim "p of 9" needs
    ceil(p/9*n) datasets to be *reproduced*; at least half of that (and >= 1) is *partly*; fewer is
    *not reproduced*; a claim whose strategy or stage was not run is *not measured*.  Best = Table 1's
    ``best`` flag (ties at two decimals count); near-optimal = within 1 percentage point of the best
    (our definition); "fusion reaches a strategy's best" = max(LR, RF) >= that strategy's maximum, in
    rounded percent.  Ties count as best, so on saturated curves (every strategy at the same accuracy)
    a "best" claim is hollow: the measured text adds on how many datasets the best is unshared.  ATS factor: *reproduced* when the closest of F1/F2/F3 (mean over datasets) is within
    25 % of 18.84, *partly* within a factor of 2, else *not reproduced*."""
    t = table.set_index(["dataset", "strategy"])
    datasets = _dataset_order(table["dataset"].unique())
    have = lambda name: [d for d in datasets if (d, name) in t.index]
    rule_frac = "scaled from 9: reproduced if >= ceil(p/9*n), partly if >= half of that"
    out = []

    n_best = table[table["best"]].groupby("dataset").size()
    sole = lambda names: f"; sole best on {sum(n_best.get(d, 0) == 1 for d in names)}" if names else ""

    rf = have("Random-Forest")
    rf_best = [d for d in rf if t.at[(d, "Random-Forest"), "best"]]
    verdict, need = _fraction_verdict(len(rf_best), len(rf), 7)
    out.append(_claim("Random-Forest fusion is best", "7 of 9", f"{len(rf_best)} of {len(rf)} (need {need}): "
                      f"{', '.join(rf_best) or 'none'}{sole(rf_best)}", verdict, rule_frac))
    near = [d for d in rf if d not in rf_best and t.at[(d, "Random-Forest"), "gap_pp"] <= NEAR_OPTIMAL_PP]
    rest = len(rf) - len(rf_best)
    verdict, need = _fraction_verdict(len(rf_best) + len(near), len(rf), 9)
    out.append(_claim("Random-Forest fusion is near-optimal (within 1 point of the best) where not best",
                      "2 of 2 (best or near-optimal on 9 of 9)",
                      f"{len(near)} of {rest} (best or near-optimal on {len(rf_best) + len(near)} of {len(rf)})",
                      verdict, "best or within 1.00 pp on every dataset (9 of 9 scaled)"))

    lr = have("Linear-Regression")
    lr_best = [d for d in lr if t.at[(d, "Linear-Regression"), "best"]]
    verdict, need = _fraction_verdict(len(lr_best), len(lr), 5)
    out.append(_claim("Linear-Regression fusion leads (is best)", "5 of 9",
                      f"{len(lr_best)} of {len(lr)} (need {need}): {', '.join(lr_best) or 'none'}{sole(lr_best)}",
                      verdict, rule_frac))

    fused = [d for d in datasets if (d, "Random-Forest") in t.index or (d, "Linear-Regression") in t.index]
    short = {}
    for d in fused:
        fusion_best = max(pct(t.at[(d, n), "max_test_acc"]) for n in FUSION_NAMES if (d, n) in t.index)
        missed = [s for s in SIGNALS if (d, s) in t.index and pct(t.at[(d, s), "max_test_acc"]) > fusion_best]
        if missed:
            short[d] = missed
    reached = len(fused) - len(short)
    verdict, need = _fraction_verdict(reached, len(fused), 8)
    detail = "; ".join(f"{d}: short of {', '.join(s)}" for d, s in short.items()) or "no shortfall"
    out.append(_claim("Fusion (best of LR, RF) reaches every single-signal strategy's best",
                      "on 8 of 9 (short of Gradient-Fisher on one)",
                      f"on {reached} of {len(fused)} (need {need}); {detail}", verdict, rule_frac))

    s = distill_summary if distill_summary is not None else pd.DataFrame()
    s = s[s["kd_test_acc"].notna()] if not s.empty else s
    if s.empty:
        for claim, paper in (("Distilled RF model beats the original accuracy", "6 of 9"),
                             ("Distilled RF model narrows the drop where it does not beat the original", "3 of 3"),
                             ("Average accuracy-to-size improvement factor", f"{PAPER_ATS_FACTOR}")):
            out.append(_claim(claim, paper, "no distill.parquet", "not measured", "run `paperlib distill`"))
        return pd.DataFrame(out)
    n = len(s)
    beats = s.loc[s["beats_original"], "dataset"].tolist()
    verdict, need = _fraction_verdict(len(beats), n, 6)
    out.append(_claim("Distilled RF model (at k*) beats the original accuracy", "6 of 9",
                      f"{len(beats)} of {n} (need {need}): {', '.join(beats) or 'none'}", verdict, rule_frac))
    narrows = s.loc[s["narrows_drop"], "dataset"].tolist()
    verdict, need = _fraction_verdict(len(beats) + len(narrows), n, 9)
    out.append(_claim("Distilled RF model narrows the drop where it does not beat the original",
                      "3 of 3 (beats or narrows on 9 of 9)",
                      f"{len(narrows)} of {n - len(beats)} (beats or narrows on {len(beats) + len(narrows)} of {n})",
                      verdict, "beats or narrows on every dataset (9 of 9 scaled)"))
    factors = {f: float(s[f].mean()) for f in ("F1", "F2", "F3") if s[f].notna().any()}
    if not factors:
        out.append(_claim("Average accuracy-to-size improvement factor", f"{PAPER_ATS_FACTOR}",
                          "no factor computable", "not measured", "F1/F2/F3 need kd rows at k* and L-1"))
        return pd.DataFrame(out)
    closest = min(factors, key=lambda f: abs(math.log(factors[f] / PAPER_ATS_FACTOR)) if factors[f] > 0 else math.inf)
    ratio = factors[closest] / PAPER_ATS_FACTOR
    verdict = ("reproduced" if 0.75 <= ratio <= 1 / 0.75 else "partly" if 0.5 <= ratio <= 2 else "not reproduced")
    out.append(_claim("Average accuracy-to-size improvement factor", f"{PAPER_ATS_FACTOR}",
                      ", ".join(f"{f} {v:.2f}" for f, v in factors.items()) + f" (mean over {n}); closest: {closest}",
                      verdict, "closest factor within 25 %: reproduced; within x2: partly"))
    return pd.DataFrame(out)


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
    return (pd.concat(curves, ignore_index=True), metrics,
            pd.concat(distill, ignore_index=True) if distill else pd.DataFrame())


def table_command(runs_root: str | Path, out: str | Path | None = None) -> dict:
    """``paperlib table``: print Table 1 (percent, best marked '*'), distillation/ATS and the claims check;
    with ``out``, also write table1.csv (tidy), table1_wide.csv, distill_summary.csv and claims.csv."""
    curves, metrics, distill = load_runs(runs_root)
    table = table1(curves, metrics)
    summary = distill_summary(distill, metrics) if not distill.empty else None
    claims = claims_check(table, summary)
    wide = table1_wide(table, marked=True)
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_colwidth", 120):
        print("Table 1: maximum test accuracy (%) over k = 1..L-1 (* = best of the 14 paper strategies; "
              "Random = mean±sd over seeds)")
        print(wide.T.to_string())
        if summary is not None:
            print("\nDistillation of the RF-pruned model at k* (accuracy-to-size in %/MB, MB = 10^6 bytes)")
            shown = summary.assign(original_MB=summary["original_bytes"] / 1e6, kd_MB=summary["kd_bytes"] / 1e6)
            shown = shown.drop(columns=["original_bytes", "kd_bytes"])
            print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print("\nClaims check")
        print(claims.drop(columns="rule").to_string(index=False))
    if out is not None:
        out = Path(out)
        write_csv(table, out / "table1.csv")
        write_csv(table1_wide(table).reset_index(), out / "table1_wide.csv")
        if summary is not None:
            write_csv(summary, out / "distill_summary.csv")
        write_csv(claims, out / "claims.csv")
    return {"table1": table, "distill_summary": summary, "claims": claims}
