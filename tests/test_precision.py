"""The precision policy: bf16 autocast where the hardware computes in bf16, fp32 elsewhere, and an override.

The other test files run fp32 (conftest) and check formulas against fp32 references; here the bf16
path is checked against the same model run in fp32."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from paperlib import cli
from paperlib.errors import PaperlibError
from paperlib.models import remove_layers
from paperlib.pruning import Pruner
from paperlib.signals import compute_signals
from paperlib.strategies import SIGNALS
from paperlib.train import autocast, evaluate, precision, predict_logits

CPUINFO = Path("/proc/cpuinfo")


def test_override_and_bad_values(monkeypatch):
    for value, want in (("fp32", "fp32"), ("bf16", "bf16"), (" BF16 ", "bf16")):
        monkeypatch.setenv("PAPERLIB_PRECISION", value)
        assert precision("cpu") == want
    monkeypatch.setenv("PAPERLIB_PRECISION", "fp16")
    with pytest.raises(PaperlibError, match="auto, bf16, fp32"):
        precision("cpu")


@pytest.mark.skipif(not CPUINFO.is_file(), reason="needs /proc/cpuinfo to know the CPU's bf16 support")
def test_auto_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setenv("PAPERLIB_PRECISION", "auto")
    flags = set(" ".join(l for l in CPUINFO.read_text().splitlines() if l.startswith("flags")).split())
    want = "bf16" if {"avx512_bf16", "amx_bf16"} & flags else "fp32"
    assert precision("cpu") == want
    monkeypatch.delenv("PAPERLIB_PRECISION")  # unset means auto
    assert precision("cpu") == want


@pytest.mark.parametrize("value,dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_autocast_runs_matrix_products_in_the_chosen_dtype(monkeypatch, value, dtype):
    monkeypatch.setenv("PAPERLIB_PRECISION", value)
    layer = torch.nn.Linear(8, 4)
    with autocast("cpu"):
        assert layer(torch.randn(2, 8)).dtype == dtype


def test_bad_precision_env_fails_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PAPERLIB_PRECISION", "half")
    with pytest.raises(SystemExit) as exc:
        cli.main(["finetune", "--dataset", "bbc_news", "--preset", "tiny", "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and "PAPERLIB_PRECISION" in err
    assert not (tmp_path / "out").exists()


def test_bf16_logits_are_close_to_fp32(tiny_run, monkeypatch):
    data = tiny_run.encoded["val"]
    fp32 = predict_logits(tiny_run.model, data, device="cpu")
    monkeypatch.setenv("PAPERLIB_PRECISION", "bf16")
    bf16 = predict_logits(tiny_run.model, data, device="cpu")
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)  # the products really ran in bf16
    scale = float(fp32.abs().max())
    torch.testing.assert_close(bf16, fp32, atol=0.05 * scale, rtol=0.05)


def test_bf16_layer_reuse_stays_bit_identical_to_a_pruned_copy(tiny_run, monkeypatch):
    """The pruning engine's shortcut (stored layer inputs) must give exactly what evaluation gives."""
    monkeypatch.setenv("PAPERLIB_PRECISION", "bf16")
    pruner = Pruner(tiny_run, signal_fn=lambda *a, **k: None)
    for kept in [(0, 1, 2, 3), (0, 1, 3), (0, 1), (1, 2, 3), (0, 2)]:
        pruned = remove_layers(copy.deepcopy(tiny_run.model), [i for i in range(4) if i not in kept])
        for split in ("val", "test"):
            assert torch.equal(
                pruner.logits(kept, split), predict_logits(pruned, tiny_run.encoded[split], device="cpu")
            )
        assert pruner.evaluate(kept) == (
            evaluate(pruned, tiny_run.encoded["val"], device="cpu")["accuracy"],
            evaluate(pruned, tiny_run.encoded["test"], device="cpu")["accuracy"],
        )
    before = pruner.calls["layers_run"]  # the shortcut was taken: dropping M_0's top layer runs one layer
    assert torch.equal(
        pruner.logits((0, 1, 2), "val"),
        predict_logits(remove_layers(copy.deepcopy(tiny_run.model), [3]), tiny_run.encoded["val"], device="cpu"),
    )
    assert pruner.calls["layers_run"] - before == 1


def test_bf16_signals_are_close_to_fp32(tiny_run, monkeypatch):
    calib = Pruner(tiny_run).calibration
    fp32 = compute_signals(tiny_run.model, calib, device="cpu")
    monkeypatch.setenv("PAPERLIB_PRECISION", "bf16")
    bf16 = compute_signals(tiny_run.model, calib, device="cpu")
    assert (bf16["layer"] == fp32["layer"]).all()
    # the weights are fp32 parameters either way: their signals do not change
    for name in ("Weight-Magnitude", "Weight-Entropy"):
        assert bf16[name].tolist() == fp32[name].tolist()
    # activation, attention and gradient statistics move by bf16 rounding only
    for name in (
        "Activation-Mean",
        "Activation-Intensity",
        "Activation-Energy",
        "Attention-Weight",
        "Attention-Entropy",
        "Gradient-Norm",
        "Gradient-Fisher",
        "Block-Influence",
    ):
        torch.testing.assert_close(
            torch.tensor(bf16[name].to_numpy()), torch.tensor(fp32[name].to_numpy()), rtol=0.08, atol=1e-6, msg=name
        )
    assert set(SIGNALS) <= set(bf16.columns) and bf16[list(SIGNALS)].notna().all().all()
