"""What ``paperlib table`` prints and saves: ``claims.verdicts``' frames as text and as CSV files.

Nothing is computed here; every number comes from ``paperlib.claims.verdicts``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .claims import VERDICT_RULES
from .direction import direction_wide
from .tables import ci_wide, comparison_wide, orders_summary

VIEWS = {
    "mean": "test accuracy (%) averaged over k = 1..L-1 (area under the curve)",
    "L/4": "test accuracy (%) at k = L/4",
    "L/2": "test accuracy (%) at k = L/2",
    "3L/4": "test accuracy (%) at k = 3L/4",
    "val-k": "test accuracy (%) at the k chosen on validation (most layers removed with validation "
    "accuracy within the preset's tolerance of M_0's; k=0 is M_0)",
    "max": "SECONDARY, selected on test (the paper's Table 1): maximum over k of test accuracy",
}
PAIR_LABELS = {
    "kd-M_0": "KD vs M_0",
    "ce-M_0": "control vs M_0",
    "kd-none": "KD vs untrained",
    "kd-ce": "KD vs control",
    "kd-M_0c": "KD vs M_0 continued",
    "ce-M_0c": "control vs M_0 continued",
    "M_0c-M_0": "M_0 continued vs M_0",
}


def pairs_text(pairs: pd.DataFrame) -> pd.DataFrame:
    """The paired differences at k* as text cells: '+1.23 [+0.10, +2.40]' in points (with several seeds, the
    seeds agreeing in sign: ' 3/3'); pairs without data are left out."""
    out = pairs[["dataset", "k_stars"]].rename(columns={"k_stars": "k*"})

    def cell(r, label):
        if pd.isna(r[f"{label}_diff"]):
            return ""
        d, lo, hi = (100 * r[f"{label}_{c}"] for c in ("diff", "ci_low", "ci_high"))
        agree = f" {int(r[f'{label}_agree'])}/{int(r['n_seeds'])}" if r["n_seeds"] > 1 else ""
        return f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]{agree}"

    for label, title in PAIR_LABELS.items():
        if f"{label}_diff" in pairs and pairs[f"{label}_diff"].notna().any():
            out[title] = [cell(r, label) for _, r in pairs.iterrows()]
    return out


def _print_table1(v: dict, baseline: dict) -> None:
    table, references = v["table"], v["references"]
    original = {r.name: r.metrics.get("test_acc", np.nan) for r in v["results"]}
    several = len(v["seeds"]) > 1
    print(
        "Table 1 (selection-free). R = reference: the best single-signal strategy chosen on validation "
        "(validation curve mean, averaged over seeds); + / - = the 95 % interval of the difference to R at the "
        "same k excludes 0 (2,000 resamples); no mark = tie."
    )
    print(v["note"])
    print(
        "; ".join(
            f"{r.dataset}: L={r.n_layers}, k={'/'.join(str(k) for k in r.ks.values())}, reference {r.reference}"
            + (f", seeds {r.seeds}" if several else "")
            + ("" if r.predictions else " (no predictions.parquet: no intervals)")
            for r in references.itertuples()
        )
    )
    for view, title in VIEWS.items():
        print(f"\n{title}")
        print(comparison_wide(table, view, *((original, baseline) if view == "mean" else ())).to_string())
        if view == "mean":
            print("\ndifference to R on the curve mean, points [95 % interval]")
            intervals = ci_wide(table, "mean")
            print(intervals.to_string() if not intervals.empty else "(no predictions.parquet: no intervals)")


def _print_distill(v: dict) -> None:
    s = v["distill_summary"]
    print(
        "\nDistillation of the RF-pruned model at k* (seed means; accuracy-to-size in %/MB, MB = 10^6 bytes; "
        "continued = M_0 trained on with the students' budget; F2 at k = L/4 and 3L/4; F3 beside its ceiling)"
    )
    shown = s.assign(original_MB=s["original_bytes"] / 1e6, kd_MB=s["kd_bytes"] / 1e6)
    print(shown.drop(columns=["original_bytes", "kd_bytes"]).to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    if not v["distill_pairs"].empty:
        print(
            "\nPaired differences at k* (points, 95 % interval" + (", seeds agreeing)" if len(v["seeds"]) > 1 else ")")
        )
        print(pairs_text(v["distill_pairs"]).to_string(index=False))


def print_verdicts(v: dict, baseline: dict | None = None) -> None:
    """Print ``claims.verdicts``' result: Table 1 and its views, the coinciding orders, the distillation summary,
    the claims with their rules, the direction check.  ``baseline``: {dataset: TF-IDF + LR test accuracy}."""
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_colwidth", 200):
        _print_table1(v, baseline or {})
        print("\nPruning orders that coincide (the strategies of Table 1 but Random; distinct orders per seed):")
        for r in orders_summary(v["orders"]).itertuples():
            print(f"- {r.dataset}: {r.distinct_orders} distinct; shared in every seed: {r.shared_in_every_seed}")
        if v["distill_summary"] is not None:
            _print_distill(v)
        print(
            "\nClaims check (verdict_point: the paper's reading; verdict: ours, significant count; per_seed: each "
            "seed's significant count alone; comparisons: the intervals a count is drawn from, no multiplicity "
            "correction)"
        )
        print(v["claims"].drop(columns=["detail"]).to_string(index=False))
        print("\nDetails")
        for r in v["claims"].itertuples():
            print(f"- {r.claim}: {r.detail}")
        print("\n" + VERDICT_RULES)
        if not v["direction"].empty:
            print("\nDirection check: does SPEC 3's direction beat its flip on the VALIDATION curve mean? (points)")
            print(direction_wide(v["direction"]).to_string())


def write_verdicts(v: dict, out: str | Path) -> None:
    """Write ``claims.verdicts``' frames as CSV into ``out``: table1.csv (tidy), table1_<view>.csv (wide),
    table1_by_seed.csv, table1_max.csv, orders.csv, distill_summary.csv, distill_summary_by_seed.csv,
    distill_pairs.csv, claims.csv, claims_by_seed.csv, direction.csv."""
    from .io import write_csv

    out = Path(out)
    write_csv(v["table"], out / "table1.csv")
    for view in VIEWS:
        wide = comparison_wide(v["table"], view).reset_index(names="strategy")
        write_csv(wide, out / f"table1_{view.replace('/', '_')}.csv")
    write_csv(v["table_by_seed"], out / "table1_by_seed.csv")
    write_csv(v["table1_max"], out / "table1_max.csv")
    write_csv(v["orders"].drop(columns=["groups"]), out / "orders.csv")
    if v["distill_summary"] is not None:
        write_csv(v["distill_summary"], out / "distill_summary.csv")
        write_csv(v["distill_summary_by_seed"], out / "distill_summary_by_seed.csv")
        write_csv(v["distill_pairs"], out / "distill_pairs.csv")
    write_csv(v["claims"], out / "claims.csv")
    write_csv(v["claims_by_seed"], out / "claims_by_seed.csv")
    write_csv(v["direction"], out / "direction.csv")
