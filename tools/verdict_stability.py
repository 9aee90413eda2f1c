"""How many claim verdicts change between two runs folders (issue 19: what a verdict is worth).

    python tools/verdict_stability.py RUN_A RUN_B --out results/verdict_stability.json

Each run is judged by ``paperlib.claims.verdicts`` (the same code as ``paperlib table``, every seed of each run);
``paperlib.claims.verdict_changes`` compares the two claims tables: both readings (point, significant) of every
claim counted over datasets and the one reading of each accuracy-to-size factor, where both runs measured it (a
verdict measured in one run only is listed apart, not counted).  Writes {"runs": [RUN_A, RUN_B], "claims": n,
"changed": n, "which": [...], "by_reading": {...}, "measured_in_one": [...]} and prints one line, then the
changes and the verdicts measured in one run only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paperlib.claims import verdict_changes, verdicts  # noqa: E402
from paperlib.errors import PaperlibError  # noqa: E402
from paperlib.io import write_json  # noqa: E402
from paperlib.paths import display_path  # noqa: E402


def stability(run_a: str | Path, run_b: str | Path) -> dict:
    """``verdict_changes`` of two runs folders, with their paths as a reader sees them."""
    claims = [verdicts(run)["claims"] for run in (run_a, run_b)]
    return {"runs": [display_path(run_a), display_path(run_b)], **verdict_changes(*claims)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--out", default=None, help="write the result as JSON here (e.g. results/verdict_stability.json)")
    args = p.parse_args(argv)
    try:
        result = stability(args.run_a, args.run_b)
    except PaperlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.out:
        write_json(result, args.out)
    print(f"{result['changed']} of {result['claims']} claim verdicts differ between {' and '.join(result['runs'])}")
    for w in result["which"]:
        print(f"- {w['claim']} [{w['reading']}]: {w['verdicts'][0]} -> {w['verdicts'][1]}")
    for w in result["measured_in_one"]:
        print(f"  (measured in one run only) {w['claim']} [{w['reading']}]: {w['verdicts'][0]} / {w['verdicts'][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
