"""Print the README's result tables (markdown) from a committed runs folder, so no number is typed by hand.

    python tools/readme_results.py results/mpnet-paper          # Table 1, M_0 vs TF-IDF, distillation, claims
    python tools/readme_results.py results/mpnet-paper --direction   # the direction check (flipped rules)

Everything comes from ``paperlib.claims.verdicts`` (the same code as ``paperlib table``) and the run
folders' ``metrics.json``, ``baseline.json`` and ``distill.parquet``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paperlib.claims import direction_wide, verdicts  # noqa: E402
from paperlib.io import read_json, read_parquet  # noqa: E402
from paperlib.results import classical_reference, dataset_order  # noqa: E402
from paperlib.tables import comparison_wide  # noqa: E402


def markdown(df: pd.DataFrame, index: bool = True) -> str:
    df = df.reset_index() if index else df
    cells = [[str(c) for c in df.columns]] + [
        ["" if pd.isna(v) else str(v) for v in row] for row in df.itertuples(index=False)
    ]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "---|" * len(df.columns))
    return "\n".join(lines)


def pct(x) -> str:
    return f"{100 * x:.1f}"


def ci(d, lo, hi) -> str:
    mark = "" if lo <= 0 <= hi else " *"
    return f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]{mark}"


def per_dataset(runs: Path, v: dict) -> pd.DataFrame:
    """M_0, the classical reference, and the distilled RF students (k* and the deepest cut) per dataset."""
    rows = []
    pairs = v["distill_pairs"].set_index("dataset") if len(v["distill_pairs"]) else None
    for name in dataset_order([p.name for p in runs.iterdir() if (p / "metrics.json").is_file()]):
        folder = runs / name
        m, row = read_json(folder / "metrics.json"), {"dataset": name}
        base = read_json(folder / "baseline.json") if (folder / "baseline.json").is_file() else {}
        row["M_0"] = pct(m["test_acc"])
        row["TF-IDF+LR"] = pct(base["test_acc"]) if base else ""
        if (folder / "distill.parquet").is_file() and pairs is not None and name in pairs.index:
            d = read_parquet(folder / "distill.parquet")
            d = d[d["strategy"] == "Random-Forest"]
            p = pairs.loc[name]
            k = int(p["k_star"])
            at = d[d["depth"] == k].set_index("mode")["test_acc"]
            row["k*"] = k
            row["KD at k*"] = pct(at["kd"])
            row["control at k*"] = pct(at["ce"])
            row["KD − M_0"] = ci(p["kd-M_0_diff"], p["kd-M_0_ci_low"], p["kd-M_0_ci_high"])
            row["KD − control"] = ci(p["kd-ce_diff"], p["kd-ce_ci_low"], p["kd-ce_ci_high"])
            deep = d[d["depth"] == d["depth"].max()].set_index("mode")["test_acc"]
            row["1 layer left: KD / control"] = f"{pct(deep['kd'])} / {pct(deep['ce'])}"
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs")
    p.add_argument("--direction", action="store_true", help="only the direction check (runs with '(flipped)' rules)")
    args = p.parse_args(argv)
    runs = Path(args.runs)
    v = verdicts(runs)
    if args.direction:
        print(markdown(direction_wide(v["direction"])))
        return 0
    original = {
        p.name: read_json(p / "metrics.json")["test_acc"] for p in runs.iterdir() if (p / "metrics.json").is_file()
    }
    print(
        "**Curve mean** (test accuracy %, mean over k = 1..L-1; R = reference chosen on validation; "
        "+/- = significantly above/below R, paired bootstrap 95 %):\n"
    )
    print(markdown(comparison_wide(v["table"], "mean", original, classical_reference(runs))))
    print(
        "\n**M_0, the classical reference and the distilled Random-Forest student** (test %; differences in "
        "points with paired-bootstrap 95 % intervals, * = interval excludes 0):\n"
    )
    print(markdown(per_dataset(runs, v), index=False))
    claims = v["claims"][["claim", "paper", "point_count", "significant_count", "verdict_point", "verdict"]].copy()
    for col in ("point_count", "significant_count"):
        claims[col] = claims[col].map(lambda x: "" if pd.isna(x) else int(x))
    factors = v["distill_summary"][["F1", "F2", "F2-control", "F3"]].mean() if len(v["distill_summary"]) else {}
    for name, value in dict(factors).items():  # the factor claims: the measured mean beside 18.84
        claims.loc[claims["claim"].str.contains(f"factor {name} "), "point_count"] = f"{name} = {value:.2f}"
    print("\n**Claims check** (point = the paper's reading, max over k on test; significant = ours):\n")
    print(
        markdown(
            claims.rename(columns={"verdict_point": "verdict (point)", "verdict": "verdict (significant)"}), index=False
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
