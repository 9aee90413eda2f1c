"""Benchmark: wall time of the main job, ``paperlib reproduce`` (quick preset, embedded default), per notebook.

Runs the README's main job into a fresh temporary runs folder once per precision and prints a table
of the seconds each notebook took (from reproduce's own "done in" lines) and the whole command.
Goal (issue 6): the quick reproduce ends in under 10 minutes on 2 CPU cores.

    python benchmarks/bench_reproduce.py                        # auto (bf16 where the CPU has it)
    python benchmarks/bench_reproduce.py --precision fp32 auto  # both, one after the other

Needs the notebooks extra (papermill).  The printed table goes into RESULTS.md, "Main job".
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


def hardware() -> str:
    import torch

    from machine import cpu_name  # benchmarks/, first on sys.path when run as a script

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu_name()}, {torch.get_num_threads()} threads (torch {torch.__version__}), load avg {load:.1f} at start"


def run_once(precision: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_reproduce_") as tmp:
        cmd = [sys.executable, "-m", "paperlib", "reproduce", "--runs", str(Path(tmp) / "runs"),
               "--precision", precision, *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        total = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"error: `{' '.join(cmd)}` failed with status {proc.returncode}:\n{proc.stderr[-2000:]}")
    steps = {m["nb"]: int(m["s"]) for m in DONE.finditer(proc.stdout + proc.stderr)}
    return {"precision": precision, "steps": steps, "total": total}


def table(results: list[dict]) -> str:
    notebooks = sorted({nb for r in results for nb in r["steps"]})
    head = "| notebook | " + " | ".join(f"{r['precision']} (s)" for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for nb in notebooks:
        lines.append(f"| {nb} | " + " | ".join(str(r["steps"].get(nb, "")) for r in results) + " |")
    lines.append("| **whole command** | " + " | ".join(f"**{r['total']:.0f}** ({r['total'] / 60:.1f} min)"
                                                       for r in results) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "bf16", "fp32"],
                    help="run the job once per value (default: auto)")
    ap.add_argument("extra", nargs="*", help="more `paperlib reproduce` options, after --")
    args = ap.parse_args(argv)
    where, stamp = hardware(), dt.datetime.now().isoformat(timespec="seconds")
    results = [run_once(p, args.extra) for p in args.precision]
    text = table(results)
    command = "python benchmarks/bench_reproduce.py " + " ".join(["--precision", *args.precision])
    print(f"{stamp} | {where}\n`{command}`\n\n{text}")


if __name__ == "__main__":
    main()
