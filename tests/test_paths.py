"""No committed result, notebook or figure carries an absolute path of the machine that made it.

Scans every committed file under results/, notebooks/ and figures/ (``git ls-files``; the folders
themselves where git is absent): text files as text, notebooks including their metadata (papermill's
input/output paths and parameters), parquet files' string columns and schema metadata, and binary
files (PNG text chunks, PDF info) as Latin-1 bytes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from paperlib.notebook_run import ABSOLUTE_PATH, clean_notebook, clean_text

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("results", "notebooks", "figures")


def committed_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", *FOLDERS], cwd=REPO, capture_output=True, text=True, check=True).stdout
        files = [REPO / line for line in out.splitlines() if line]
    except (OSError, subprocess.CalledProcessError):
        files = [p for folder in FOLDERS for p in (REPO / folder).rglob("*") if p.is_file()]
    return [p for p in files if p.is_file()]


def absolute_paths(path: Path) -> list[str]:
    """The absolute paths found in ``path`` (text, parquet cells and metadata, raw bytes)."""
    found = ABSOLUTE_PATH.findall(path.read_bytes().decode("latin-1"))
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
        found += ABSOLUTE_PATH.findall(" ".join(v.decode("latin-1") for v in meta.values()))
        df = pd.read_parquet(path)
        for column in df.columns:
            if df[column].dtype == object:
                found += ABSOLUTE_PATH.findall(" ".join(map(str, df[column].unique())))
    return found


def test_the_scanner_finds_what_it_must(tmp_path):
    """The scan itself can fail: a planted path in JSON, in a parquet cell and in a notebook's metadata is found."""
    (tmp_path / "config.json").write_text('{"source": "local:/home/alice/data/ag_news"}')
    pd.DataFrame({"kept": ["0,1"], "where": ["/tmp/run/x"]}).to_parquet(tmp_path / "c.parquet", compression="zstd")
    (tmp_path / "n.ipynb").write_text('{"metadata": {"papermill": {"output_path": "/work/out/06.ipynb"}}}')
    (tmp_path / "ok.json").write_text(
        '{"source": "local:ag_news", "url": "https://example.com/home/x", "runs": "runs/quick"}'
    )
    assert absolute_paths(tmp_path / "config.json") == ["/home/alice/data/ag_news"]
    assert "/tmp/run/x" in absolute_paths(tmp_path / "c.parquet")
    assert absolute_paths(tmp_path / "n.ipynb") == ["/work/out/06.ipynb"]
    assert absolute_paths(tmp_path / "ok.json") == []


def test_cleaning_removes_bars_warnings_and_paths():
    text = (
        "/opt/venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found.\n"
        "  from .autonotebook import tqdm as notebook_tqdm\n"
        "Loading weights:   0%|          | 0/103 [00:00<?, ?it/s]"
        "\rLoading weights: 100%|##########| 103/103 [00:00<00:00]\n"
        "run folder: /home/bob/runs/quick/bbc_news\n"
    )
    cleaned = clean_text(text)
    assert "Warning" not in cleaned and "autonotebook" not in cleaned and "Loading weights" not in cleaned
    assert cleaned.strip().startswith("run folder: ") and not ABSOLUTE_PATH.findall(cleaned)


def test_clean_notebook_makes_metadata_portable():
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    cell = new_code_cell(
        "x",
        outputs=[
            new_output("stream", name="stderr", text="\n"),
            new_output("stream", name="stdout", text="saved to /tmp/abc/figures/x.png\n"),
        ],
    )
    nb = new_notebook(
        cells=[cell],
        metadata={
            "papermill": {
                "input_path": "/work/repo/notebooks/01.ipynb",
                "output_path": "/tmp/nbout/01.ipynb",
                "parameters": {"RUNS": "/tmp/r/runs/quick", "PRESET": "quick"},
            }
        },
    )
    clean_notebook(nb)
    text = nbformat.writes(nb)
    assert not ABSOLUTE_PATH.findall(text), ABSOLUTE_PATH.findall(text)
    assert [o["name"] for o in nb.cells[0].outputs] == ["stdout"]  # the empty stderr stream is gone
    assert nb.metadata["papermill"]["parameters"]["PRESET"] == "quick"


@pytest.mark.parametrize("folder", FOLDERS)
def test_committed_files_hold_no_absolute_paths(folder):
    files = [p for p in committed_files() if p.relative_to(REPO).parts[0] == folder]
    offending = {str(p.relative_to(REPO)): sorted(set(found))[:3] for p in files if (found := absolute_paths(p))}
    assert not offending, (
        f"absolute paths in committed files (python tools/strip_paths.py {folder} fixes text files): {offending}"
    )
