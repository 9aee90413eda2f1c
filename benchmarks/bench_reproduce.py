"""Benchmark: wall time of the main job (``paperlib reproduce``, quick preset) per notebook, and of the test command.

Runs the README's main job into a fresh temporary runs folder once per precision, then the README's
test command (the ``python -m pytest ...`` line of README.md, or ``--test-command``) once in fp32, and
prints one table: the seconds each notebook took (reproduce's own "done in" lines), the whole main job
per precision and the test command, each against its goal (issue 14: main job <= 4 min in fp32 on
2 CPU cores, test command <= 15 min in fp32).

    python benchmarks/bench_reproduce.py                                 # fp32 and bf16, then the tests
    python benchmarks/bench_reproduce.py --precision fp32 --no-tests     # the main job in fp32 only

Needs the notebooks and test extras (papermill, nbval).  Run it on an idle machine: the printed table
goes into RESULTS.md, "Main job".
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DONE = re.compile(r"\[(?P<who>[^\]]+)\] (?P<nb>\d\d_\w+): done in (?P<s>\d+)s")
REPO = Path(__file__).resolve().parents[1]
MAIN_JOB_GOAL_S = 4 * 60  # issue 14, fp32 on 2 idle cores; bf16 must be faster still
TEST_GOAL_S = 15 * 60  # issue 14, the README test command in fp32


def hardware() -> str:
    import torch
    from machine import cpu_name  # benchmarks/, first on sys.path when run as a script

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu_name()}, {torch.get_num_threads()} threads (torch {torch.__version__}), load avg {load:.1f} at start"


def readme_test_command(readme: Path = REPO / "README.md") -> str:
    """The README's test command: its first line running ``python -m pytest``, without a leading install step."""
    for line in readme.read_text().splitlines():
        if "python -m pytest" in line:
            return line.split("&&")[-1].strip().strip("`").strip()
    sys.exit(f"error: no `python -m pytest` line in {readme}; pass --test-command")


def run_main_job(precision: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_reproduce_") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "paperlib",
            "reproduce",
            "--runs",
            str(Path(tmp) / "runs"),
            "--precision",
            precision,
            *extra,
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        total = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"error: `{' '.join(cmd)}` failed with status {proc.returncode}:\n{proc.stderr[-2000:]}")
    steps = {m["nb"]: int(m["s"]) for m in DONE.finditer(proc.stdout + proc.stderr)}
    return {"precision": precision, "steps": steps, "total": total}


def run_tests(command: str) -> dict:
    """The test command in fp32 from the repository root; seconds and pytest's last line."""
    env = {**os.environ, "PAPERLIB_PRECISION": "fp32"}
    t0 = time.perf_counter()
    proc = subprocess.run(command, shell=True, capture_output=True, text=True, cwd=REPO, env=env)  # may set variables
    seconds = time.perf_counter() - t0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return {"seconds": seconds, "status": proc.returncode, "summary": lines[-1].strip("= ") if lines else ""}


def verdict(seconds: float, goal: float) -> str:
    return f"{'met' if seconds <= goal else 'NOT met'} (goal {goal / 60:.0f} min)"


def table(results: list[dict], tests: dict | None) -> str:
    notebooks = sorted({nb for r in results for nb in r["steps"]})
    head = "| | " + " | ".join(f"{r['precision']} (s)" for r in results) + " | goal |"
    lines = [head, "|---" * (len(results) + 2) + "|"]
    for nb in notebooks:
        lines.append(f"| {nb} | " + " | ".join(str(r["steps"].get(nb, "")) for r in results) + " | |")
    fp32_total = next((q["total"] for q in results if q["precision"] == "fp32"), float("inf"))
    cells = [
        f"**{r['total']:.0f}** ({r['total'] / 60:.1f} min, "
        + (
            verdict(r["total"], MAIN_JOB_GOAL_S)
            if r["precision"] == "fp32"
            else f"{'faster' if r['total'] < fp32_total else 'not faster'} than fp32"
        )
        + ")"
        for r in results
    ]
    lines.append(
        "| **main job (whole command)** | " + " | ".join(cells) + f" | <= {MAIN_JOB_GOAL_S / 60:.0f} min fp32 |"
    )
    if tests is not None:
        lines.append(
            f"| **test command** (fp32) | **{tests['seconds']:.0f}** ({tests['seconds'] / 60:.1f} min, "
            f"{verdict(tests['seconds'], TEST_GOAL_S)}; exit {tests['status']}: {tests['summary']}) |"
            + " |" * (len(results) - 1)
            + f" <= {TEST_GOAL_S / 60:.0f} min fp32 |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--precision",
        nargs="+",
        default=["fp32", "bf16"],
        choices=["auto", "bf16", "fp32"],
        help="run the main job once per value (default: fp32 bf16)",
    )
    ap.add_argument("--no-tests", action="store_true", help="skip the test command")
    ap.add_argument("--test-command", default=None, help="default: the README's `python -m pytest ...` line")
    ap.add_argument("extra", nargs="*", help="more `paperlib reproduce` options, after --")
    args = ap.parse_args(argv)
    where, stamp = hardware(), dt.datetime.now().isoformat(timespec="seconds")
    results = []
    for p in args.precision:
        results.append(run_main_job(p, args.extra))
        print(f"main job {p}: {results[-1]['total']:.0f}s {results[-1]['steps']}", flush=True)
    tests = None
    if not args.no_tests:
        command = args.test_command or readme_test_command()
        print(f"test command: {command}", flush=True)
        tests = run_tests(command)
    command = (
        "python benchmarks/bench_reproduce.py "
        + " ".join(["--precision", *args.precision])
        + (" --no-tests" if args.no_tests else "")
        + (" -- " + " ".join(args.extra) if args.extra else "")
    )
    print(f"\n{stamp} | {where}\n`{command}`\n\n{table(results, tests)}")


if __name__ == "__main__":
    main()
