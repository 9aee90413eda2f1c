"""Print the README's result tables (markdown) from a committed runs folder, so no number is typed by hand.

    python tools/readme_results.py results/mpnet-paper          # Table 1, M_0 vs TF-IDF, distillation, claims
    python tools/readme_results.py results/mpnet-paper --direction   # the direction check (flipped rules)
    python tools/readme_results.py results/minilm-seeds --compare results/minilm-seeds-b   # two runs' claims

Everything comes from ``paperlib.claims.verdicts`` (the same code as ``paperlib table``), over every pipeline seed
of the runs folder (``RUNS/seed-<S>/``, or the folder itself for a run written before seeds): seed means, intervals
that hold training and test-set noise (one seed: test-set noise only, and the tables say so), per-seed agreement
and per-seed claim counts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paperlib.claims import verdicts  # noqa: E402
from paperlib.direction import direction_wide  # noqa: E402
from paperlib.errors import PaperlibError  # noqa: E402
from paperlib.results import check_runs_root, classical_reference  # noqa: E402
from paperlib.tables import comparison_wide, orders_summary  # noqa: E402


def markdown(df: pd.DataFrame, index: bool = True) -> str:
    df = df.reset_index() if index else df
    cells = [[str(c) for c in df.columns]] + [
        ["" if pd.isna(v) else str(v) for v in row] for row in df.itertuples(index=False)
    ]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "---|" * len(df.columns))
    return "\n".join(lines)


def pct(x) -> str:
    return "" if pd.isna(x) else f"{100 * x:.1f}"


def ci(p: pd.Series, label: str) -> str:
    """'+1.2 [+0.3, +2.1] *' (and ' 3/3' with several seeds) for one pair of ``distill_pairs``; '' without data."""
    d, lo, hi = p[f"{label}_diff"], p[f"{label}_ci_low"], p[f"{label}_ci_high"]
    if pd.isna(d):
        return ""
    agree = f" {int(p[f'{label}_agree'])}/{int(p['n_seeds'])}" if p["n_seeds"] > 1 else ""
    mark = " *" if p[f"{label}_call"] in ("win", "loss") else ""
    return f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]{agree}{mark}"


def per_dataset(v: dict, baseline: dict) -> pd.DataFrame:
    """M_0, the classical reference, M_0 continued and the distilled RF students (k* and the one-layer cut) per
    dataset, seed means."""
    summary = v["distill_summary"]
    s = summary.set_index("dataset") if summary is not None else pd.DataFrame()
    pairs = v["distill_pairs"].set_index("dataset") if len(v["distill_pairs"]) else pd.DataFrame()
    rows = []
    for r in v["results"]:
        row = {"dataset": r.name, "seeds": len(r.seeds), "M_0": pct(r.metrics["test_acc"])}
        row["TF-IDF+LR"] = pct(baseline.get(r.name))
        if r.name in s.index and r.name in pairs.index:
            a, p = s.loc[r.name], pairs.loc[r.name]
            one = r.distill[(r.distill["strategy"] == "Random-Forest") & (r.distill["n_layers"] == 1)]
            deep = one.groupby("mode")["test_acc"].mean()  # seed means of the one-layer students
            row |= {
                "k*": a["k_stars"],
                "M_0 continued": pct(a["continued_test_acc"]),
                "KD at k*": pct(a["kd_test_acc"]),
                "control at k*": pct(a["ce_test_acc"]),
                "KD − M_0": ci(p, "kd-M_0"),
                "KD − M_0 continued": ci(p, "kd-M_0c"),
                "KD − control": ci(p, "kd-ce"),
                "1 layer left: KD / control": f"{pct(deep.get('kd'))} / {pct(deep.get('ce'))}",
            }
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.drop(columns=[c for c in out.columns if (out[c].astype(str) == "").all()])


def factors(v: dict) -> pd.DataFrame:
    """F1, F2, F2-control and F3 per dataset (seed means), F3 beside its ceiling, and their mean."""
    s = v["distill_summary"]
    cols = ["F1", "F2", "F2-control", "F3", "F3_ceiling"]
    table = s.set_index("dataset")[cols]
    table.loc["mean"] = table.mean()
    return table.map(lambda x: "" if pd.isna(x) else f"{x:.2f}").rename(columns={"F3_ceiling": "F3 ceiling"})


def _count(x) -> str:
    return "" if pd.isna(x) else str(int(x))


def claims_table(v: dict) -> pd.DataFrame:
    claims = v["claims"][
        ["claim", "paper", "point_count", "significant_count", "per_seed", "comparisons", "verdict_point", "verdict"]
    ].copy()
    for col in ("point_count", "significant_count", "comparisons"):
        claims[col] = claims[col].map(_count)
    for i, r in v["claims"].iterrows():  # the factor claims: the measured mean beside 18.84
        if str(r["claim"]).startswith("Accuracy-to-size factor") and r["verdict"] != "not measured":
            claims.loc[i, "point_count"] = _factor_value(r)
    if len(v["seeds"]) == 1:
        claims = claims.drop(columns=["per_seed"])
    return claims.rename(columns={"verdict_point": "verdict (point)", "verdict": "verdict (significant)"})


def _factor_value(claim: pd.Series) -> str:
    """'F1 = 1.09' from a measured factor claim's detail ('F1 = 1.09 (mean over 9); ...')."""
    return str(claim["detail"]).split(" (mean", 1)[0]


def compare_claims(runs: dict) -> pd.DataFrame:
    """The claims of two (or more) runs side by side: {label: verdicts(...)} -> per run the point count, the
    significant count with each seed's count, and the significant verdict."""
    first = next(iter(runs.values()))["claims"]
    out = first[["claim", "paper"]].copy()
    for label, v in runs.items():
        c = v["claims"].set_index("claim").reindex(first["claim"])
        cells = []
        for claim, r in c.iterrows():
            if str(claim).startswith("Accuracy-to-size factor"):
                cells.append(_factor_value(r) if r["verdict"] != "not measured" else "")
            elif pd.isna(r["significant_count"]):
                cells.append("")
            else:
                per_seed = f" ({r['per_seed']})" if isinstance(r["per_seed"], str) and r["per_seed"] else ""
                cells.append(f"{_count(r['point_count'])} / {_count(r['significant_count'])}{per_seed}")
        out[f"{label}: point / significant (per seed)"] = cells
        out[f"{label}: verdict"] = c["verdict"].tolist()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs")
    p.add_argument("--direction", action="store_true", help="only the direction check (runs with '(flipped)' rules)")
    p.add_argument("--compare", metavar="RUNS_B", help="only the claims of RUNS and RUNS_B side by side")
    args = p.parse_args(argv)
    try:  # both folders before any work: a bad --compare must not cost the first run's bootstraps
        for runs in (args.runs, args.compare or args.runs):
            check_runs_root(runs)
    except PaperlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        v = verdicts(args.runs)
        if args.compare:
            print(markdown(compare_claims({Path(r).name: verdicts(r) for r in (args.runs, args.compare)}), False))
            return 0
    except PaperlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.direction:
        print(markdown(direction_wide(v["direction"])))
        return 0
    baseline = classical_reference(args.runs)
    original = {r.name: r.metrics["test_acc"] for r in v["results"]}
    agreement = "; with several seeds, n/S = seeds agreeing in sign" if len(v["seeds"]) > 1 else ""
    print(f"{v['note']}\n")
    print(
        "**Curve mean** (test accuracy %, mean over k = 1..L-1 and over seeds; R = reference chosen on validation; "
        f"+/- = significantly above/below R{agreement}):\n"
    )
    print(markdown(comparison_wide(v["table"], "mean", original, baseline)))
    print("\n**Pruning orders that coincide** (strategies of Table 1 but Random; distinct orders per seed):\n")
    print(markdown(orders_summary(v["orders"]), index=False))
    if v["distill_summary"] is not None:
        print(
            "\n**M_0, the classical reference, M_0 continued and the distilled Random-Forest student** (test %, "
            "seed means; differences in points with 95 % intervals, * = interval excludes 0 and the sign holds on "
            "a majority of seeds):\n"
        )
        print(markdown(per_dataset(v, baseline), index=False))
        print(
            "\n**Accuracy-to-size factors** (F2: ratio of mean accuracies at k = L/4 and 3L/4; F3 beside its "
            "ceiling bytes(M_0) / bytes(one-layer student)):\n"
        )
        print(markdown(factors(v)))
    print(
        "\n**Claims check** (point = the paper's reading, max over k on test; significant = ours; per_seed = each "
        "seed's significant count alone; comparisons = intervals a count is drawn from, no multiplicity "
        "correction):\n"
    )
    print(markdown(claims_table(v), index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
