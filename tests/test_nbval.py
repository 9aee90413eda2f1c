"""The notebook check can fail: nbval re-executes checked cells and a changed number fails it.

A tiny notebook beside a copy of ``notebooks/conftest.py`` is checked with nbval in a subprocess (the
README's own options): once with its true outputs (passes, and shows that the kernel ran in a fresh
empty runs root, in fp32, without the user's data dir), once with one checked number changed (fails).
The committed notebooks 01-06 each hold checked cells with outputs to compare."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

pytest.importorskip("nbval")

REPO = Path(__file__).resolve().parents[1]
CHECK = "# NBVAL_CHECK_OUTPUT\n"
ENVIRONMENT = (
    CHECK + "import os\nfrom paperlib.paths import repo_root\n"
    "print(sorted(p.name for p in repo_root().glob('runs/*')), os.environ.get('PAPERLIB_PRECISION'),\n"
    "      'PAPERLIB_DATA_DIR' in os.environ, repo_root().name.startswith('paperlib-nbval-'))"
)
NUMBER = CHECK + "import math\nprint(f'{math.fsum([0.1] * 3):.2f}')"


def _notebook(folder: Path, number_output: str) -> Path:
    cells = [
        new_code_cell(
            ENVIRONMENT, execution_count=1, outputs=[new_output("stream", name="stdout", text="[] fp32 False True\n")]
        ),
        new_code_cell(NUMBER, execution_count=2, outputs=[new_output("stream", name="stdout", text=number_output)]),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "notebooks" / "conftest.py", folder / "conftest.py")
    (folder / "pytest.ini").write_text("[pytest]\n")  # this folder is the rootdir, whatever lies above it
    path = folder / "check.ipynb"
    nbformat.write(
        new_notebook(
            cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
        ),
        path,
    )
    return path


def _nbval(path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PAPERLIB_DATA_DIR": str(path.parent),
        "PAPERLIB_PRECISION": "bf16",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env.pop("PAPERLIB_ROOT", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", str(path), "--nbval-lax", "-p", "no:cacheprovider"],
        cwd=path.parent,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_nbval_passes_on_true_outputs_in_a_fresh_fp32_root_and_fails_on_a_changed_number(tmp_path):
    # the shell says bf16 and names a data dir: the check's kernel must see neither
    good = _nbval(_notebook(tmp_path / "good", "0.30\n"))
    assert good.returncode == 0, good.stdout[-2000:] + good.stderr[-2000:]
    bad = _nbval(_notebook(tmp_path / "bad", "0.31\n"))
    assert bad.returncode != 0
    assert "0.31" in bad.stdout and "0.30" in bad.stdout  # nbval shows the expected and the recomputed number
    assert "1 failed" in bad.stdout


def test_committed_notebooks_have_checked_cells_with_outputs():
    for name in (
        "01_finetune_baseline",
        "02_pruning_signals",
        "03_single_signal_pruning",
        "04_strategic_fusion",
        "05_knowledge_distillation",
        "06_results_across_datasets",
    ):
        nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
        checked = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(CHECK.strip())]
        assert checked, f"{name} has no # NBVAL_CHECK_OUTPUT cell"
        assert all(c.outputs for c in checked), f"{name}: a checked cell has no committed output to compare"


def test_committed_notebooks_carry_their_figures_and_stay_small():
    for path in sorted((REPO / "notebooks").glob("0[2-6]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        shows = sum(c.source.count("plots.show_figure(") for c in nb.cells if c.cell_type == "code")
        images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        assert shows > 0 and images >= shows, f"{path.name}: {shows} figure(s) made, {images} image(s) committed"
        assert path.stat().st_size < 2_000_000, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB"
