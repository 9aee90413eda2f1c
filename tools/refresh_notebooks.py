"""Re-execute the committed notebooks the way nbval checks them, clean them, and write them back.

    python tools/refresh_notebooks.py                 # all of notebooks/00-06, about as long as the main job
    python tools/refresh_notebooks.py --keep-runs DIR # keep the runs root the notebooks wrote (default: deleted)

Each notebook runs top to bottom with papermill, without injected parameters (so the committed
notebooks keep their defaults: quick preset, embedded MiniLM and BBC News), in the environment of the
notebook check (``paperlib.notebook_run.check_environment``: a fresh empty runs root, fp32, no progress
bars, no ``$PAPERLIB_DATA_DIR``), in order 00 to 06 so that each reads what the earlier ones wrote.  The
executed copy is cleaned (``paperlib.notebook_run.clean_notebook``: no progress bars, warnings or absolute
paths) and replaces ``notebooks/NN_name.ipynb``; a notebook that fails is left as it was and the tool
stops with status 1.  A live bar shows each notebook's inner progress."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from paperlib import notebook_run as nr  # noqa: E402
from paperlib.config import environment  # noqa: E402
from paperlib.paths import display_path  # noqa: E402

MAX_BYTES = 2_000_000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-runs", default=None, help="use this (empty or new) folder as the runs root and keep it")
    parser.add_argument(
        "--notebooks", default=str(REPO / "notebooks"), help="folder of the notebooks (default: notebooks/)"
    )
    args = parser.parse_args(argv)
    folder = Path(args.notebooks).resolve()
    names = sorted(p.stem for p in folder.glob("[0-9][0-9]_*.ipynb"))
    root = Path(args.keep_runs).resolve() if args.keep_runs else Path(tempfile.mkdtemp(prefix="paperlib-refresh-"))
    root.mkdir(parents=True, exist_ok=True)
    bars = sys.stderr.isatty()
    try:
        with environment(nr.check_environment(root)):  # as nbval runs them
            for name in names:
                source = folder / f"{name}.ipynb"
                output = root / "executed" / f"{name}.ipynb"
                print(f"[refresh] {name}: running ...", flush=True)
                t0 = time.perf_counter()
                try:
                    nr.execute(
                        source,
                        output,
                        {},
                        cwd=folder,
                        progress=f"[refresh] {name[:2]}" if bars else None,
                        clean_roots=[root, folder],
                    )
                except Exception as exc:
                    print(
                        f"[refresh] {name}: FAILED ({nr.error_line(exc)}); {name}.ipynb left as it was; "
                        f"see {output.with_name(name + '.failed.ipynb')}",
                        flush=True,
                    )
                    return 1
                nr.clean_notebook_file(output, [root, folder], output_path=display_path(source))
                shutil.copyfile(output, source)
                size = source.stat().st_size
                warn = f"  WARNING: over {MAX_BYTES / 1e6:.0f} MB" if size > MAX_BYTES else ""
                print(
                    f"[refresh] {name}: done in {time.perf_counter() - t0:.0f}s, {size / 1e3:.0f} kB{warn}", flush=True
                )
    finally:
        if not args.keep_runs:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
