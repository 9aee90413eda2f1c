"""The claims check (SPEC 7): each claim of the paper with a point-estimate count (the paper's reading) and
a significant count (ours), the direction check of SPEC 3's directions, and ``verdicts``: everything
``paperlib table`` shows, computed from a runs folder.  The rules are ``VERDICT_RULES``, printed under the
table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .results import DatasetResults, load_results
from .stats import BOOTSTRAP_SEED, CI_LEVEL, DEFAULT_RESAMPLES, call, paired_bootstrap
from .strategies import FLIPPED, REFERENCE_SIGNALS, SIGNALS, fusion_names
from .tables import (
    _in_table,
    _seed_mean,
    comparison_table,
    dataset_order,
    distill_summary,
    fraction_steps,
    pct,
    reference_strategy,
    table1,
)

NEAR_OPTIMAL_PP = 1.0  # "near-optimal" = within 1 percentage point of the best (our reading)
PAPER_ATS_FACTOR = 18.84


VERDICT_RULES = """\
Verdict rules (paperlib.claims.VERDICT_RULES):
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
        index=[s for s in (*SIGNALS, *REFERENCE_SIGNALS) if s in wide.index], columns=dataset_order(wide.columns)
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


# ---------------------------------------------------------------- everything `paperlib table` shows


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
