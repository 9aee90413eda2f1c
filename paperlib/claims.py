"""The claims check (SPEC 7): each claim of the paper with a point-estimate count (the paper's reading) and a
significant count (ours), in aggregate over the pipeline seeds and seed by seed, and ``verdicts``: everything
``paperlib table`` shows (with ``direction``'s check of SPEC 3's directions), computed from a runs folder.
The rules are ``VERDICT_RULES``, printed under the table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .direction import direction_check
from .results import CONTROL, SEED_COLUMN, DatasetResults, load_results
from .stats import BOOTSTRAP_SEED, CI_LEVEL, DEFAULT_RESAMPLES
from .strategies import SIGNALS, fusion_names
from .tables import (
    _in_table,
    compare_pairs,
    comparison_table,
    dataset_curve_mean,
    distill_summary,
    fraction_steps,
    pct,
    pruning_orders,
    reference_strategy,
    seed_mean_summary,
    table1,
    view_scores,
)

NEAR_OPTIMAL_PP = 1.0  # "near-optimal" = within 1 percentage point of the best (our reading)
PAPER_ATS_FACTOR = 18.84


VERDICT_RULES = """\
Verdict rules (paperlib.claims.VERDICT_RULES):
- Counts over the n datasets measured are scaled from the paper's 9: a claim "p of 9" is reproduced when
  the count reaches need = ceil(p/9 * n), partly when it reaches max(1, ceil(need/2)), else not reproduced;
  a claim whose strategy or stage was not run is not measured.
- Seeds: every accuracy is the mean over the pipeline seeds (each seed re-trains M_0 and everything after it
  on the same splits); Random is its replicate mean within each seed.  The reference and k* are chosen on
  VALIDATION (the reference on its validation curve mean averaged over seeds; k* per seed, as distilled).
- point count (the paper's reading): Table 1's maximum over k of TEST accuracy (selected on test) of the
  seed-mean curves, ties at two decimals of a percent counting for every tied strategy; "near-optimal" =
  within 1 point of the best; distillation: seed-mean test accuracies at k*, rounded, compared as points.
- significant count (ours): the two-level bootstrap (2,000 resamples, seed 0: draw seeds with replacement and
  test examples with replacement, one example draw shared by every drawn seed and both arms, as the examples
  are the same texts in every seed; 95 % percentile interval) of the difference in test accuracy on the curve
  mean over k = 1..L-1 (no k chosen on test).  A dataset counts only where that interval excludes 0 AND the
  difference has the same sign on a majority of seeds (shown "2/3").  With one seed this is the paired
  bootstrap over test examples: it covers test-set noise only.  "Best" = significantly above the reference;
  "near-optimal" = not significantly below it; "reaches every signal's best" = the fusion model with the
  higher validation curve mean is significantly below no single signal.  Distillation: the interval of the
  paired difference at each seed's k*.
- per seed: each seed judged alone (its own reference, its own k*, the paired bootstrap of that seed), the
  significant count per seed beside the aggregate's: how much a one-seed run could have said otherwise.
- comparisons: the intervals a count is drawn from.  Each is a 95 % interval on its own; no multiplicity
  correction is made, so among c comparisons with no true difference about 0.025 c false wins are expected.
- within = fusion fitted on the dataset's own validation rows; transfer = fitted on the other datasets
  only (leave-one-dataset-out): the out-of-sample test.  Each gets its own rows.
- Distillation is judged against M_0 and against "M_0 continued" (M_0 trained on with the students' budget:
  epochs, batch, schedule, learning rate), so extra training alone cannot pass for pruning + distillation;
  the teacher's contribution is KD against the alpha = 0 control (the same student and budget, no teacher).
- Accuracy-to-size: F1, F2, F3 (SPEC 7; F2 = ratio of mean accuracies at k = L/4 and 3L/4 against the
  untrained pruned model, F2-control against the alpha = 0 control; F3 beside its ceiling bytes(M_0) /
  bytes(one-layer student)), each the mean over datasets of the seed mean, set against 18.84: reproduced
  within 25 %, partly within a factor of 2, else not reproduced.  No factor is picked for being closest.
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


CLAIM_COLUMNS = [
    "claim",
    "protocol",
    "paper",
    "n",
    "need",
    "point_count",
    "significant_count",
    "comparisons",
    "verdict_point",
    "verdict",
    "detail",
]


def _claim(claim, protocol, paper, point, significant, n, paper_k, detail="", comparisons=None) -> dict:
    """One claims row; ``point``/``significant``: lists of the datasets counted (None: not measured)."""
    if n == 0 or point is None:
        return {
            **dict.fromkeys(CLAIM_COLUMNS, np.nan),
            "claim": claim,
            "protocol": protocol,
            "paper": paper,
            "n": n,
            "verdict_point": "not measured",
            "verdict": "not measured",
            "detail": detail or "not run",
        }
    vp, need = _fraction_verdict(len(point), n, paper_k)
    vs, _ = _fraction_verdict(len(significant), n, paper_k)
    text = f"point: {', '.join(point) or 'none'}; significant: {', '.join(significant) or 'none'}"
    return {
        "claim": claim,
        "protocol": protocol,
        "paper": paper,
        "n": n,
        "need": need,
        "point_count": len(point),
        "significant_count": len(significant),
        "comparisons": n if comparisons is None else comparisons,
        "verdict_point": vp,
        "verdict": vs,
        "detail": text + (f"; {detail}" if detail else ""),
    }


def _unmeasured(rows: list[dict], why: str) -> None:
    for row in rows:
        if row["n"]:
            row["verdict"], row["significant_count"] = "not measured", np.nan
            row["detail"] += f"; {why}"


def _factor_claim(name: str, value: float, n: int, note: str) -> dict:
    row = {**dict.fromkeys(CLAIM_COLUMNS, np.nan), "claim": f"Accuracy-to-size factor {name} reaches 18.84"}
    row |= {"protocol": "", "paper": f"{PAPER_ATS_FACTOR}", "n": n}
    if not np.isfinite(value):
        return row | {"verdict_point": "not measured", "verdict": "not measured", "detail": f"{note}; not computable"}
    ratio = value / PAPER_ATS_FACTOR
    verdict = "reproduced" if 0.75 <= ratio <= 1 / 0.75 else "partly" if 0.5 <= ratio <= 2 else "not reproduced"
    return row | {
        "verdict_point": verdict,
        "verdict": verdict,
        "detail": f"{name} = {value:.2f} (mean over {n}); {note}",
    }


def _agreed(d: str, t: pd.DataFrame, name: str) -> str:
    """'patent (3/3)': a dataset counted, with the seeds agreeing in sign where there are several."""
    r = t.loc[(d, name, "mean")]
    return f"{d} ({int(r['agree'])}/{int(r['n_seeds'])})" if r["n_seeds"] > 1 and pd.notna(r["agree"]) else d


def _below_every(res: DatasetResults, chosen: str, singles: list[str], resamples, seed, level) -> list[str] | None:
    """The single signals the chosen fusion model is significantly below on the curve mean (two-level, majority
    of seeds); None without predictions."""
    mine = ((chosen, "mean"), view_scores(res, chosen, "mean"))
    found = compare_pairs(
        res, [(mine, ((s, "mean"), view_scores(res, s, "mean"))) for s in singles], "test", resamples, seed, level
    )
    if all(c is None for c in found):
        return None
    return [s for s, c in zip(singles, found) if c is not None and c["call"] == "loss"]


FUSION_CLAIMS = (  # (claim, the paper's count, its p of 9)
    ("Random-Forest fusion is best", "7 of 9", 7),
    ("Random-Forest fusion is best or near-optimal", "9 of 9 (best on 7, near-optimal on 2)", 9),
    ("Linear-Regression fusion leads (is best)", "5 of 9", 5),
    ("Fusion reaches every single-signal strategy's best", "8 of 9 (short of Gradient-Fisher on one)", 8),
)


def _reaches_every(res: DatasetResults, names: list[str], rounded: pd.Series, resamples, seed, level) -> tuple:
    """'Fusion reaches every single-signal strategy's best' on one dataset: (point reading, significant reading
    (None without predictions), why it falls short, intervals compared)."""
    singles = [s for s in SIGNALS if s in rounded.index]
    point = max(rounded[n] for n in names) >= max(rounded[s] for s in singles)
    val = dataset_curve_mean(res, "val_acc").mean(axis=1)
    chosen = max(names, key=lambda n: (float(val[n]), -names.index(n)))  # chosen on validation
    below = _below_every(res, chosen, singles, resamples, seed, level)
    if below is None:
        return point, None, "", 0
    return point, not below, f"{chosen} below {', '.join(below)}" if below else "", len(singles)


def fusion_claims(
    results: list[DatasetResults],
    table: pd.DataFrame,
    protocol: str,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> list[dict]:
    """The four fusion claims of SPEC 0 for one protocol (``FUSION_CLAIMS``; see ``VERDICT_RULES``)."""
    lr, rf = fusion_names(protocol)
    t = table.set_index(["dataset", "strategy", "view"])
    point, sig, n, comparisons = [[] for _ in range(4)], [[] for _ in range(4)], [0] * 4, [None, None, None, 0]
    short, measured = {}, True
    for res in results:
        d = res.name
        mx = table[(table["dataset"] == d) & (table["view"] == "max") & table["strategy"].isin((*SIGNALS, lr, rf))]
        names = [name for name in (lr, rf) if (d, name, "mean") in t.index]
        if mx.empty or not names:
            continue
        rounded = pd.Series(pct(mx["test_acc"]), index=mx["strategy"].to_numpy())
        top = rounded.max()
        for i, name in ((0, rf), (2, lr)):
            if name not in names:
                continue
            call_ = t.at[(d, name, "mean"), "call"]
            measured &= call_ != ""
            n[i] += 1
            point[i] += [d] if rounded[name] == top else []
            sig[i] += [_agreed(d, t, name)] if call_ == "win" else []
            if name == rf:  # best or near-optimal
                n[1] += 1
                point[1] += [d] if rounded[name] >= top - NEAR_OPTIMAL_PP else []
                sig[1] += [d] if call_ in ("win", "tie") else []
        n[3] += 1
        reached, significant, why, k = _reaches_every(res, names, rounded, resamples, seed, level)
        point[3] += [d] if reached else []
        sig[3] += [d] if significant else []
        short |= {d: why} if why else {}
        comparisons[3] += k
    out = [
        _claim(
            f"{claim} ({protocol})",
            protocol,
            paper,
            point[i],
            sig[i] if measured else [],
            n[i],
            paper_k,
            "; ".join(f"{d}: {why}" for d, why in short.items()) if i == 3 else "",
            comparisons=comparisons[i],
        )
        for i, (claim, paper, paper_k) in enumerate(FUSION_CLAIMS)
    ]
    if not measured:
        _unmeasured(out, "no predictions.parquet: no intervals")
    return out


# ---------------------------------------------------------------- distillation

ARMS = {"M_0": "the original M_0", "M_0c": "M_0 continued", "kd": "KD", "ce": "alpha = 0 control", "none": "untrained"}
PAIRS = {
    "kd-M_0": ("kd", "M_0"),
    "ce-M_0": ("ce", "M_0"),
    "kd-none": ("kd", "none"),
    "kd-ce": ("kd", "ce"),
    "kd-M_0c": ("kd", "M_0c"),
    "ce-M_0c": ("ce", "M_0c"),
    "M_0c-M_0": ("M_0c", "M_0"),
}


def _arm(res: DatasetResults, arm: str, k_stars: dict, strategy: str) -> dict:
    """{seed: (n,) test scores} of one arm of a distillation comparison (students at each seed's k*)."""
    if arm == "M_0":
        return res.seed_original("test")
    if arm == "M_0c":
        return res.seed_distill((*CONTROL, "test"))
    return {
        s: sc for s, k in k_stars.items() if (sc := res.seed_distill((strategy, k, arm, "test")).get(s)) is not None
    }


def distill_pairs(
    results: list[DatasetResults],
    summary_by_seed: pd.DataFrame | None,
    strategy: str = "Random-Forest",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> pd.DataFrame:
    """Per dataset, the paired differences of ``PAIRS`` (KD - M_0, control - M_0, KD - untrained, KD - control,
    KD - M_0 continued, control - M_0 continued, M_0 continued - M_0), each student at its seed's k*: the
    two-level bootstrap over the seeds holding both arms.  Columns: dataset, k_stars, n_seeds, then per pair
    <pair>_diff, _ci_low, _ci_high, _agree, _call."""
    if summary_by_seed is None or summary_by_seed.empty:
        return pd.DataFrame()
    rows = []
    for res in results:
        s = summary_by_seed[(summary_by_seed["dataset"] == res.name) & summary_by_seed["k_star"].notna()]
        if s.empty:
            continue
        seeds_col = s[SEED_COLUMN] if SEED_COLUMN in s else pd.Series([res.seeds[0]] * len(s))
        k_stars = {int(a): int(k) for a, k in zip(seeds_col, s["k_star"])}
        row = {"dataset": res.name, "k_stars": "/".join(str(k) for k in k_stars.values()), "n_seeds": len(k_stars)}
        arms = {arm: (("distill", strategy, arm), _arm(res, arm, k_stars, strategy)) for arm in ARMS}
        found = compare_pairs(res, [(arms[a], arms[b]) for a, b in PAIRS.values()], "test", resamples, seed, level)
        for label, c in zip(PAIRS, found):
            c = c or {"diff": np.nan, "ci_low": np.nan, "ci_high": np.nan, "agree": np.nan, "call": ""}
            row |= {f"{label}_{k}": c[k] for k in ("diff", "ci_low", "ci_high", "agree", "call")}
        rows.append(row)
    return pd.DataFrame(rows)


DISTILL_CLAIMS = (
    ("Pruned + distilled (KD) at k* beats the original M_0", "6 of 9", 6),
    (
        "Pruned + distilled (KD) at k* beats M_0 continued (the same extra training, unpruned)",
        "6 of 9 (no such control)",
        6,
    ),
    ("Pruned + distilled narrows the drop where it does not beat M_0", "3 of 3 (beats or narrows on 9 of 9)", 9),
    (
        "The teacher adds accuracy over the alpha = 0 control (KD vs control at k*)",
        "credited on 6 of 9 (no control)",
        6,
    ),
)


def distill_claims(
    results: list[DatasetResults],
    summary_by_seed: pd.DataFrame | None,
    strategy: str = "Random-Forest",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> tuple[list[dict], pd.DataFrame]:
    """The distillation claims (see ``VERDICT_RULES``) and ``distill_pairs``' frame."""
    names = [c[0] for c in DISTILL_CLAIMS]
    if summary_by_seed is None or summary_by_seed.empty:
        why = "no distill.parquet: run `paperlib distill`"
        return [_claim(c, "", p, None, None, 0, 0, why) for c, p, _ in DISTILL_CLAIMS], pd.DataFrame()
    pairs = distill_pairs(results, summary_by_seed, strategy, resamples, seed, level)
    s = seed_mean_summary(summary_by_seed)
    s = s[s["kd_test_acc"].notna()].set_index("dataset")
    p = pairs.set_index("dataset") if len(pairs) else pd.DataFrame()

    def sig(label):
        return [d for d in s.index if d in p.index and p.at[d, f"{label}_call"] == "win"]

    def point(a, b):
        return [d for d in s.index if pct(s.at[d, a]) > pct(s.at[d, b])]

    data = list(s.index)
    continued = [d for d in data if pd.notna(s.at[d, "continued_test_acc"])]
    beats_p, beats_s = point("kd_test_acc", "original_test_acc"), sig("kd-M_0")
    narrows_p = beats_p + [d for d in point("kd_test_acc", "pruned_test_acc") if d not in beats_p]
    narrows_s = beats_s + [d for d in sig("kd-none") if d not in beats_s]
    measured = not p.empty and p.filter(like="_ci_low").notna().any().any()
    n_sig = lambda label: len(sig(label)) if measured else "n/a"  # noqa: E731
    ce_line = f"alpha = 0 control beats M_0: point {len(point('ce_test_acc', 'original_test_acc'))}, significant "
    ce_line += f"{n_sig('ce-M_0')} of {len(data)}"
    c_point = [d for d in point("kd_test_acc", "continued_test_acc") if d in continued]
    c_line = (
        f"alpha = 0 control beats M_0 continued: significant {n_sig('ce-M_0c')}; M_0 continued beats M_0: point "
        f"{len([d for d in point('continued_test_acc', 'original_test_acc') if d in continued])}, significant "
        f"{n_sig('M_0c-M_0')} of {len(continued)}"
    )
    out = [
        _claim(names[0], "", DISTILL_CLAIMS[0][1], beats_p, beats_s, len(data), 6, ce_line),
        _claim(names[1], "", DISTILL_CLAIMS[1][1], c_point, sig("kd-M_0c"), len(continued), 6, c_line),
        _claim(names[2], "", DISTILL_CLAIMS[2][1], narrows_p, narrows_s, len(data), 9, comparisons=2 * len(data)),
        _claim(names[3], "", DISTILL_CLAIMS[3][1], point("kd_test_acc", "ce_test_acc"), sig("kd-ce"), len(data), 6),
    ]
    if not continued:
        out[1] = _claim(
            names[1], "", DISTILL_CLAIMS[1][1], None, None, 0, 0,
            "no M_0-continued rows (strategy 'M_0', depth 0, mode 'ce' in distill.parquet): rerun `paperlib distill`",
        )  # fmt: skip
    if not measured:
        _unmeasured(out, "no distill_predictions.parquet: no intervals")
    return out, pairs


FACTOR_NOTES = {
    "F1": "ATS(KD at k*) / ATS(M_0)",
    "F2": "ratio of mean accuracies, KD / untrained pruned, at k = L/4 and 3L/4",
    "F2-control": "ratio of mean accuracies, KD / alpha = 0 control, at k = L/4 and 3L/4",
    "F3": "ATS(KD at L-1) / ATS(M_0)",
}


def claims_check(
    results: list[DatasetResults],
    table: pd.DataFrame,
    summary_by_seed: pd.DataFrame | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> pd.DataFrame:
    """Every claim of SPEC 0 with a point-estimate count (the paper's reading) and a significant count (ours),
    over the seeds in ``results``: fusion claims for the within and the transfer protocol separately, the
    distillation claims (beats M_0; beats M_0 continued; narrows the drop; the teacher adds over the alpha = 0
    control) and F1, F2, F3 (and F2 against the control) each against 18.84.  ``summary_by_seed``:
    ``distill_summary(..., by_seed=True)``.  The rules are ``VERDICT_RULES``.  Columns: ``CLAIM_COLUMNS``."""
    rows = []
    for protocol in ("within", "transfer"):
        rows += fusion_claims(results, table, protocol, resamples, seed, level)
    rows += distill_claims(results, summary_by_seed, resamples=resamples, seed=seed, level=level)[0]
    s = seed_mean_summary(summary_by_seed) if summary_by_seed is not None and len(summary_by_seed) else None
    s = s[s["kd_test_acc"].notna()] if s is not None else pd.DataFrame()
    by_seed = summary_by_seed[summary_by_seed["kd_test_acc"].notna()] if len(s) else s
    for name, note in FACTOR_NOTES.items():
        # a factor is a mean over every (dataset, seed): one missing on some (its depths not distilled there) is
        # not measured, rather than the mean of the few that have it standing for all
        have = by_seed[name].notna() if len(by_seed) else pd.Series(dtype=bool)
        value = float(s[name].mean()) if len(have) and have.all() else np.nan
        if len(have) and have.any() and not have.all():
            note += f"; its depths were distilled on only {int(have.sum())} of {len(have)} (dataset, seed) runs"
        if name == "F3" and len(s) and s["F3_ceiling"].notna().any():
            note += f"; its ceiling bytes(M_0) / bytes(one-layer student) = {s['F3_ceiling'].mean():.2f}"
        rows.append(_factor_claim(name, value, len(s), note))
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def seed_claims(
    results: list[DatasetResults], resamples: int = DEFAULT_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each pipeline seed judged alone, as a one-seed run would be: (claims, Table 1) of every seed, stacked
    with a ``pipeline_seed`` column."""
    claims, tables = [], []
    for s in sorted(set().union(*(r.seeds for r in results))):
        alone = [r.only([s]) for r in results if s in r.runs]
        table = comparison_table(alone, resamples, seed)
        claims.append(claims_check(alone, table, _summary_by_seed(alone), resamples, seed).assign(**{SEED_COLUMN: s}))
        tables.append(table.assign(**{SEED_COLUMN: s}))
    return pd.concat(claims, ignore_index=True), pd.concat(tables, ignore_index=True)


def _summary_by_seed(results: list[DatasetResults]) -> pd.DataFrame | None:
    distill = [r.distill for r in results if not r.distill.empty]
    if not distill:
        return None
    metrics = {(r.name, s): run.metrics for r in results for s, run in r.runs.items()}
    return distill_summary(pd.concat(distill, ignore_index=True), metrics, by_seed=True)


# ---------------------------------------------------------------- everything `paperlib table` shows


def seed_note(seeds) -> str:
    """What the intervals cover, for the header of every table: one seed = test-set noise only."""
    seeds = sorted(seeds)
    if len(seeds) == 1:
        return (
            f"One pipeline seed (seed {seeds[0]}): every interval is the paired bootstrap over test examples and "
            f"covers test-set noise only, not training noise (a run with --seeds 3 covers both)."
        )
    return (
        f"{len(seeds)} pipeline seeds ({', '.join(map(str, seeds))}): each number is the mean over seeds; each "
        f"interval is the two-level bootstrap (seeds and test examples, one example draw for every seed, paired) "
        f"and covers training and test-set noise; a mark also needs the sign on a majority of seeds (shown as "
        f"agreeing/seeds, e.g. 3/3)."
    )


def _per_seed_counts(claims: pd.DataFrame, by_seed: pd.DataFrame) -> list[str]:
    """'1/0/2': each seed's significant count of each claim (by claim name), in seed order."""
    out = []
    for claim in claims["claim"]:
        g = by_seed[by_seed["claim"] == claim].sort_values(SEED_COLUMN)
        counts = g["significant_count"]
        out.append("" if counts.isna().all() else "/".join("-" if pd.isna(v) else str(int(v)) for v in counts))
    return out


def verdicts(
    runs_root: str | Path, resamples: int = DEFAULT_RESAMPLES, seed: int = BOOTSTRAP_SEED, seeds=None, datasets=None
) -> dict:
    """Everything ``paperlib table`` prints, as DataFrames: 'table' (``comparison_table``, seed-aggregated),
    'table_by_seed' and 'claims_by_seed' (each seed alone, ``seed_claims``), 'table1_max' (the paper-style
    ``table1``), 'references', 'distill_summary' (seed means), 'distill_summary_by_seed', 'distill_pairs',
    'claims' (aggregate, with each seed's significant count in 'per_seed'), 'direction', 'orders'
    (``pruning_orders``), 'seeds' and 'note' (``seed_note``).  ``seeds`` / ``datasets``: only those pipeline
    seeds / run folders."""
    results = load_results(runs_root, seeds=seeds, datasets=datasets)
    all_seeds = sorted(set().union(*(r.seeds for r in results)))
    table = comparison_table(results, resamples, seed)
    summary_by_seed = _summary_by_seed(results)
    claims = claims_check(results, table, summary_by_seed, resamples, seed)
    if len(all_seeds) > 1:
        claims_by_seed, table_by_seed = seed_claims(results, resamples, seed)
    else:
        claims_by_seed, table_by_seed = (f.assign(**{SEED_COLUMN: all_seeds[0]}) for f in (claims, table))
    claims.insert(claims.columns.get_loc("comparisons"), "per_seed", _per_seed_counts(claims, claims_by_seed))
    curves = pd.concat([r.curves for r in results], ignore_index=True)
    references = pd.DataFrame(
        [
            {
                "dataset": r.name,
                "reference": reference_strategy(r.curves),
                "n_layers": r.n_layers,
                "ks": fraction_steps(r.n_layers),
                "val_tolerance": r.tolerance,
                "n_test": len(next(iter(r.seed_original("test").values()), [])),
                "seeds": "/".join(map(str, r.seeds)),
                "predictions": r.has_predictions,
            }
            for r in results
        ]
    )
    return {
        "results": results,
        "seeds": all_seeds,
        "note": seed_note(all_seeds),
        "table": table,
        "table_by_seed": table_by_seed,
        "table1_max": table1(curves[curves["strategy"].map(_in_table)], {r.name: r.metrics for r in results}),
        "references": references,
        "distill_summary": seed_mean_summary(summary_by_seed) if summary_by_seed is not None else None,
        "distill_summary_by_seed": summary_by_seed,
        "distill_pairs": distill_pairs(results, summary_by_seed, resamples=resamples, seed=seed),
        "claims": claims,
        "claims_by_seed": claims_by_seed,
        "direction": direction_check(results, resamples, seed),
        "orders": pruning_orders(results),
    }


# ---------------------------------------------------------------- how stable the verdicts are


def verdict_changes(claims_a: pd.DataFrame, claims_b: pd.DataFrame) -> dict:
    """Which claim verdicts differ between two claims tables (``claims_check`` of two runs).

    A verdict is one reading of one claim: 'point' and 'significant' for the claims counted over datasets, one
    'factor' reading for each accuracy-to-size factor (its two columns coincide).  Only verdicts both runs
    measured are compared: one measured in a single run (a protocol or depth the other did not run) says nothing
    about noise and is listed apart.  Returns {"claims": verdicts compared, "changed": how many differ, "which":
    [{"claim", "reading", "verdicts": [a, b]}], "by_reading": {reading: [changed, compared]}, "measured_in_one":
    [{"claim", "reading", "verdicts": [a, b]}]}."""
    merged = claims_a.merge(claims_b, on="claim", how="outer", suffixes=("_a", "_b"))
    compared, which, by_reading, one_only = 0, [], {}, []
    for r in merged.itertuples(index=False):
        factor = str(r.claim).startswith("Accuracy-to-size factor")
        readings = {"factor": "verdict"} if factor else {"point": "verdict_point", "significant": "verdict"}
        for reading, column in readings.items():
            a, b = (getattr(r, f"{column}_{x}") for x in "ab")
            a, b = ("not measured" if pd.isna(v) else str(v) for v in (a, b))
            if "not measured" in (a, b):
                if a != b:
                    one_only.append({"claim": r.claim, "reading": reading, "verdicts": [a, b]})
                continue
            compared += 1
            counts = by_reading.setdefault(reading, [0, 0])
            counts[1] += 1
            if a != b:
                counts[0] += 1
                which.append({"claim": r.claim, "reading": reading, "verdicts": [a, b]})
    return {
        "claims": compared,
        "changed": len(which),
        "which": which,
        "by_reading": by_reading,
        "measured_in_one": one_only,
    }
