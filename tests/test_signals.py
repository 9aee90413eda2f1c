"""The twelve signals against independent computations: a manual layer-by-layer forward, the model's
own ``output_attentions``/``output_hidden_states``, a plain per-batch gradient loop, numpy on the state
dict, and constructed data whose mutual information is known."""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from paperlib.models import get_layers, load_model, remove_layers
from paperlib.signals import (
    compute_signals,
    histogram_entropy,
    knn_mutual_info,
    principal_components,
    redundancy_mi,
    task_relevance_mi,
    token_mean,
)
from paperlib.strategies import SIGNALS
from paperlib.tokens import Encoded, encode, length_batches

BATCH = 8
N_CLASSES = 3


@functools.cache
def _base_model(name: str):
    """A random tiny classifier with weights large enough that layers are far from the identity."""
    model, _ = load_model(f"random:{name}", num_labels=N_CLASSES)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.15)
    return model.eval()


def _model(name: str):
    return copy.deepcopy(_base_model(name))


def _calib(n: int = 30, width: int = 12, seed: int = 0) -> Encoded:
    """Random token ids with varied lengths, one example of a single token (a single valid key)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, width + 1, (n,), generator=g)
    lengths[3] = 1
    mask = (torch.arange(width)[None] < lengths[:, None]).long()
    ids = torch.randint(1000, 3000, (n, width), generator=g) * mask
    return Encoded(ids, mask, torch.arange(n) % N_CLASSES, lengths)


def _layer_prefix(model, i: int) -> str:
    return {
        "bert": "bert.encoder.layer",
        "roberta": "roberta.encoder.layer",
        "electra": "electra.encoder.layer",
        "distilbert": "distilbert.transformer.layer",
    }[model.config.model_type] + f".{i}."


# ---------------------------------------------------------------- manual forward, layer by layer


def _attention_probs(q, k, mask, heads):
    b, t, d = q.shape
    q = q.view(b, t, heads, -1).transpose(1, 2)
    k = k.view(b, t, heads, -1).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // heads)
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    return scores.softmax(-1)


def _mix(p, v, heads):
    b, t, d = v.shape
    v = v.view(b, t, heads, -1).transpose(1, 2)
    return (p @ v).transpose(1, 2).reshape(b, t, d)


@torch.no_grad()
def _manual_forward(model, enc: Encoded):
    """Per layer: (x_l, a_l, P_l, h_l), computed by calling each layer's submodules directly."""
    mask = enc.attention_mask.bool()
    out = []
    if model.config.model_type == "bert":
        x = model.bert.embeddings(input_ids=enc.input_ids)
        heads = model.config.num_attention_heads
        for layer in get_layers(model):
            sa = layer.attention.self
            p = _attention_probs(sa.query(x), sa.key(x), mask, heads)
            att = layer.attention.output(_mix(p, sa.value(x), heads), x)
            a = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(att))
            h = layer.output(a, att)
            out.append((x, a, p, h))
            x = h
    else:  # distilbert
        x = model.distilbert.embeddings(enc.input_ids)
        heads = model.config.n_heads
        for layer in get_layers(model):
            sa = layer.attention
            p = _attention_probs(sa.q_lin(x), sa.k_lin(x), mask, heads)
            att = layer.sa_layer_norm(sa.out_lin(_mix(p, sa.v_lin(x), heads)) + x)
            a = layer.ffn.activation(layer.ffn.lin1(att))
            h = layer.output_layer_norm(layer.ffn.lin2(a) + att)
            out.append((x, a, p, h))
            x = h
    return out


def _attention_reference(p: np.ndarray, mask: np.ndarray):
    """(mean max P, mean normalised entropy) over heads and valid queries, with numpy loops per example."""
    maxes, ents = [], []
    for b in range(p.shape[0]):
        n = int(mask[b].sum())
        pb = p[b][:, :n, :n]  # heads x valid queries x valid keys
        maxes.append(pb.max(-1).ravel())
        if n == 1:
            ents.append(np.zeros(pb.shape[0]))
        else:
            ent = -(pb * np.log(np.where(pb > 0, pb, 1.0))).sum(-1) / np.log(n)
            ents.append(ent.ravel())
    return np.concatenate(maxes).mean(), np.concatenate(ents).mean()


@pytest.mark.parametrize("name", ["tiny", "distilbert-tiny"])
def test_activation_attention_and_influence_match_a_manual_forward(name):
    model, enc = _model(name), _calib()
    got = compute_signals(model, enc, batch_size=BATCH, device="cpu")
    valid = enc.attention_mask.bool().numpy()
    for pos, (x, a, p, h) in enumerate(_manual_forward(model, enc)):
        a = a.double().numpy()[valid]  # tokens x d_ff
        row = got.iloc[pos]
        assert row["Activation-Mean"] == pytest.approx(a.mean(), rel=1e-4, abs=1e-7)
        assert row["Activation-Intensity"] == pytest.approx(np.linalg.norm(a, axis=1).mean(), rel=1e-4)
        assert row["Activation-Energy"] == pytest.approx((a**2).sum() / a.shape[0], rel=1e-4)
        max_p, ent = _attention_reference(p.double().numpy(), valid)
        assert row["Attention-Weight"] == pytest.approx(max_p, rel=1e-4)
        assert row["Attention-Entropy"] == pytest.approx(ent, rel=1e-4)
        xv, hv = x.double().numpy()[valid], h.double().numpy()[valid]
        cos = (xv * hv).sum(1) / (np.linalg.norm(xv, axis=1) * np.linalg.norm(hv, axis=1))
        assert row["Block-Influence"] == pytest.approx((1 - cos).mean(), rel=1e-3, abs=1e-6)


@pytest.mark.parametrize("name", ["tiny", "roberta-tiny", "distilbert-tiny"])
def test_attention_influence_and_mi_match_output_attentions(name):
    """Reference: the model's own eager ``output_attentions`` and ``output_hidden_states``; PCA by
    sklearn; Gaussian MI by the covariance-determinant formula 1/2 log(|Sxx||Syy| / |S|)."""
    from sklearn.decomposition import PCA
    from sklearn.feature_selection import mutual_info_classif

    model, enc = _model(name), _calib(n=60)
    got = compute_signals(model, enc, batch_size=BATCH, device="cpu", seed=3)
    assert model.config._attn_implementation == "sdpa"  # switched for the pass only
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(
            input_ids=enc.input_ids,
            attention_mask=enc.attention_mask,
            output_attentions=True,
            output_hidden_states=True,
        )
    valid = enc.attention_mask.bool().numpy()
    labels = enc.labels.numpy()
    for pos in range(len(got)):
        max_p, ent = _attention_reference(out.attentions[pos].double().numpy(), valid)
        assert got["Attention-Weight"][pos] == pytest.approx(max_p, rel=1e-4)
        assert got["Attention-Entropy"][pos] == pytest.approx(ent, rel=1e-4)
        x, h = out.hidden_states[pos].double().numpy(), out.hidden_states[pos + 1].double().numpy()
        xv, hv = x[valid], h[valid]
        cos = (xv * hv).sum(1) / (np.linalg.norm(xv, axis=1) * np.linalg.norm(hv, axis=1))
        assert got["Block-Influence"][pos] == pytest.approx((1 - cos).mean(), rel=1e-3, abs=1e-6)
        # Task-Relevance-MI: top-16 PCA components of the output [CLS] vectors
        z = PCA(n_components=16).fit_transform(h[:, 0])
        mi = mutual_info_classif(z, labels, random_state=3).mean()
        assert got["Task-Relevance-MI"][pos] == pytest.approx(mi, abs=1e-3)
        # Redundancy-MI: token means over valid tokens, k = min(16, (n-1)//2) = 16 components per side
        assert got["Redundancy-MI"][pos] == pytest.approx(_reference_redundancy(x, h, valid), rel=1e-3)


def _reference_redundancy(x: np.ndarray, h: np.ndarray, valid: np.ndarray, k: int = 16) -> float:
    """Gaussian MI of the top-k sklearn PCA projections of the per-example token means (a numpy loop),
    by the covariance-determinant formula 1/2 log(|Sxx||Syy| / |S|)."""
    from sklearn.decomposition import PCA

    mx = np.stack([x[i][valid[i]].mean(0) for i in range(len(x))])
    mh = np.stack([h[i][valid[i]].mean(0) for i in range(len(h))])
    zx, zy = PCA(n_components=k).fit_transform(mx), PCA(n_components=k).fit_transform(mh)
    joint = np.cov(np.hstack([zx, zy]).T)
    return 0.5 * (
        np.linalg.slogdet(joint[:k, :k])[1] + np.linalg.slogdet(joint[k:, k:])[1] - np.linalg.slogdet(joint)[1]
    )


def test_redundancy_mi_is_informative_for_the_bottom_layer_on_real_cls_first_inputs():
    """Real tokenised text starts with [CLS] at position 0, so the [CLS] vector entering layer 0 is one
    embedding shared by every example (its PCA is empty: the old [CLS]-based definition gave 0).  The
    token-mean definition gives every layer, the bottom one included, a finite positive value that
    matches the independent reference."""
    model, tokenizer = _model("tiny"), load_model("random:tiny", num_labels=N_CLASSES)[1]
    rng = np.random.default_rng(0)
    words = "apple engine goal market river cloud paper stone music garden train light".split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(3, 14)))) for _ in range(60)]
    enc = encode(texts, np.arange(60) % N_CLASSES, tokenizer, 16)
    assert (enc.input_ids[:, 0] == tokenizer.cls_token_id).all()
    got = compute_signals(model, enc, batch_size=BATCH, device="cpu")
    model.set_attn_implementation("eager")
    with torch.no_grad():
        hidden = model(
            input_ids=enc.input_ids, attention_mask=enc.attention_mask, output_hidden_states=True
        ).hidden_states
    bottom_cls = hidden[0][:, 0].double()
    assert torch.allclose(bottom_cls, bottom_cls[:1].expand_as(bottom_cls))  # the defect the definition avoids
    valid = enc.attention_mask.bool().numpy()
    for pos in range(len(got)):
        x, h = hidden[pos].double().numpy(), hidden[pos + 1].double().numpy()
        expected = _reference_redundancy(x, h, valid)
        assert expected > 0.5  # the reference itself is informative for every layer
        assert got["Redundancy-MI"][pos] == pytest.approx(expected, rel=1e-3)


# ---------------------------------------------------------------- gradient and weight signals


@pytest.mark.parametrize("name", ["tiny", "distilbert-tiny"])
def test_gradient_signals_match_a_plain_per_batch_loop(name):
    model, enc = _model(name), _calib()
    got = compute_signals(model, enc, batch_size=BATCH, device="cpu")
    assert all(p.grad is None for p in model.parameters())  # dropped after the pass
    n_layers = len(get_layers(model))
    g_sum = [dict() for _ in range(n_layers)]
    fisher = np.zeros(n_layers)
    batches = list(length_batches(enc, BATCH))
    for _, b in batches:  # the model's default (sdpa) attention, every parameter trainable
        model.zero_grad()
        F.cross_entropy(
            model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"]
        ).backward()
        for name_, p in model.named_parameters():
            for i in range(n_layers):
                if name_.startswith(_layer_prefix(model, i)):
                    g = p.grad.double().numpy().copy()
                    g_sum[i][name_] = g_sum[i].get(name_, 0) + g
                    fisher[i] += (g**2).sum()
    params = dict(model.named_parameters())
    for i in range(n_layers):
        mean_g = {k: v / len(batches) for k, v in g_sum[i].items()}
        norm = math.sqrt(sum((g**2).sum() for g in mean_g.values()))
        taylor = abs(sum((params[k].detach().double().numpy() * g).sum() for k, g in mean_g.items()))
        assert got["Gradient-Norm"][i] == pytest.approx(norm, rel=1e-4)
        assert got["Gradient-Fisher"][i] == pytest.approx(fisher[i] / len(batches), rel=1e-4)
        assert got["Gradient-Taylor"][i] == pytest.approx(taylor, rel=1e-3)


@pytest.mark.parametrize("name", ["tiny", "distilbert-tiny"])
def test_weight_signals_match_numpy_on_the_state_dict(name):
    model, enc = _model(name), _calib(n=8)
    got = compute_signals(model, enc, batch_size=BATCH, device="cpu")
    state = {k: v.double().numpy() for k, v in model.state_dict().items()}
    per_layer = []
    for i in range(len(got)):
        prefix = _layer_prefix(model, i)
        per_layer.append(np.concatenate([v.ravel() for k, v in state.items() if k.startswith(prefix) and v.ndim >= 2]))
    lo, hi = min(w.min() for w in per_layer), max(w.max() for w in per_layer)
    for i, w in enumerate(per_layer):
        counts, _ = np.histogram(w, bins=256, range=(lo, hi))
        p = counts[counts > 0] / counts.sum()
        assert got["Weight-Magnitude"][i] == pytest.approx(np.abs(w).mean(), rel=1e-6)
        assert got["Weight-Entropy"][i] == pytest.approx(-(p * np.log(p)).sum(), rel=1e-6)


def test_histogram_entropy_known_answers():
    assert histogram_entropy(torch.linspace(0, 1, 256 * 40), 0.0, 1.0) == pytest.approx(math.log(256), rel=1e-6)
    two = torch.tensor([0.0] * 10 + [1.0] * 10)
    assert histogram_entropy(two, 0.0, 1.0) == pytest.approx(math.log(2))
    assert histogram_entropy(torch.zeros(5), 0.0, 0.0) == 0.0


# ---------------------------------------------------------------- mutual information on known answers


def test_knn_mutual_info_matches_sklearn():
    from sklearn.feature_selection import mutual_info_classif

    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 150)
    y[7] = 4  # a class of one example is ignored, as sklearn does
    z = rng.normal(size=(150, 6)) * [1, 2, 3, 0.1, 5, 1]
    z[:, 0] += y  # informative
    z[:, 5] = np.round(z[:, 5])  # ties
    for seed in (0, 5):
        expected = mutual_info_classif(z, y, discrete_features=False, random_state=seed)
        np.testing.assert_allclose(knn_mutual_info(z, y, seed).numpy(), expected, atol=1e-9)


def test_principal_components_match_sklearn_pca():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(2)
    for shape in ((40, 100), (300, 20)):  # n < d and n > d
        x = rng.normal(size=shape) @ np.diag(np.linspace(3, 0.1, shape[1]))[:, : shape[1]]
        got = principal_components(x).numpy()
        expected = PCA(n_components=16).fit_transform(x)
        np.testing.assert_allclose(np.abs(got), np.abs(expected), atol=1e-8)  # up to each column's sign


def test_task_relevance_mi_is_high_for_the_label_and_near_zero_for_noise():
    rng = np.random.default_rng(0)
    y = np.arange(300) % 3
    noise = rng.normal(size=(300, 20))
    informative = noise * 0.01
    informative[:, 0] = y * 10.0  # the first principal component is the label itself
    assert task_relevance_mi(informative, y, k=1) == pytest.approx(math.log(3), abs=0.1)  # I = H(y)
    assert task_relevance_mi(noise, y) < 0.05
    assert task_relevance_mi(informative, y) > task_relevance_mi(noise, y) + 0.03
    from sklearn.feature_selection import mutual_info_classif

    small = noise[:12, :3]  # n < 16 and d < 16: k = min(16, n - 1, d) = 3 components (PCA is tested above)
    z = principal_components(small).numpy()
    assert z.shape == (12, 3)
    expected = mutual_info_classif(z, y[:12], random_state=0).mean()
    assert expected > 0  # a case where the value is not the clipped 0
    assert task_relevance_mi(small, y[:12]) == pytest.approx(expected, abs=1e-9)


def test_redundancy_mi_gaussian_known_answer():
    """x ~ N(0, I_16), y = x + e with e ~ N(0, I_16): every rho^2 = 1/2, so MI = 16/2 log 2."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 16))
    y = x + rng.normal(size=x.shape)
    assert redundancy_mi(x, y) == pytest.approx(8 * math.log(2), rel=0.02)
    assert redundancy_mi(x, rng.normal(size=x.shape)) < 0.05  # independent: about 0
    copy = redundancy_mi(x, x.copy())
    assert copy == pytest.approx(-8 * math.log1p(-((1 - 1e-6) ** 2)), rel=1e-3)  # clipped, finite
    assert np.isfinite(redundancy_mi(x[:10, :4], y[:10, :4]))  # n < 16 and d < 16 are handled


def test_redundancy_mi_known_canonical_correlations():
    """Jointly Gaussian x, y (16 dims each) with canonical correlations rho_i, each side seen through a
    random rotation: I(x; y) = -1/2 sum_i log(1 - rho_i^2) (invariant to the rotations)."""
    rng = np.random.default_rng(4)
    n, rho = 40000, np.linspace(0.05, 0.95, 16)
    zx = rng.normal(size=(n, 16))
    zy = rho * zx + np.sqrt(1 - rho**2) * rng.normal(size=(n, 16))
    qx, qy = (np.linalg.qr(rng.normal(size=(16, 16)))[0] for _ in range(2))
    expected = -0.5 * np.log1p(-(rho**2)).sum()
    assert redundancy_mi(zx @ qx, zy @ qy) == pytest.approx(expected, rel=0.02)


def test_token_mean_matches_a_loop_over_valid_tokens():
    rng = np.random.default_rng(5)
    states = rng.normal(size=(6, 9, 4))
    mask = (np.arange(9)[None] < rng.integers(1, 10, size=6)[:, None]).astype(np.int64)
    expected = np.stack([states[i][mask[i] == 1].mean(0) for i in range(6)])
    np.testing.assert_allclose(token_mean(states, mask).numpy(), expected, atol=1e-12)


def test_a_copying_layer_has_the_highest_redundancy_and_lowest_influence():
    model, enc = _model("tiny"), _calib(n=60)
    layer = get_layers(model)[2]
    with torch.no_grad():  # residual branches off: h = LayerNorm(LayerNorm(x)) = x for a normalised x
        for dense in (layer.attention.output.dense, layer.output.dense):
            dense.weight.zero_()
            dense.bias.zero_()
    got = compute_signals(model, enc, batch_size=BATCH, device="cpu")
    assert int(got["Redundancy-MI"].idxmax()) == 2
    assert int(got["Block-Influence"].idxmin()) == 2
    assert got["Block-Influence"][2] < 1e-5


# ---------------------------------------------------------------- pruned models, state, determinism


def test_pruned_model_reports_original_indices(tiny_run):
    model = tiny_run.model
    enc = tiny_run.encoded["train"].subset(range(24))
    full = compute_signals(model, enc, batch_size=BATCH, device="cpu")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    pruned, _ = load_model(str(tiny_run.folder / "model"))
    remove_layers(pruned, [1])
    got = compute_signals(pruned, enc, batch_size=BATCH, device="cpu")
    assert got["layer"].tolist() == [0, 2, 3]
    assert got["position"].tolist() == [0, 1, 2]
    assert list(got.columns) == ["layer", "position", *SIGNALS, "Block-Influence"]
    for pos, orig in enumerate([0, 2, 3]):
        w = np.concatenate(
            [v.numpy().ravel() for k, v in state.items() if k.startswith(f"bert.encoder.layer.{orig}.") and v.ndim >= 2]
        )
        assert got["Weight-Magnitude"][pos] == pytest.approx(np.abs(w).mean(), rel=1e-6)
    # layer 0 sees the same input either way, so its forward statistics agree with the full model's
    for col in ("Activation-Mean", "Activation-Energy", "Attention-Weight", "Attention-Entropy", "Block-Influence"):
        assert got[col][0] == pytest.approx(full[col][0], rel=1e-5)


def test_state_is_restored_and_the_pass_is_deterministic():
    model, enc = _model("tiny"), _calib(n=20)
    model.train()
    frozen = model.bert.embeddings.word_embeddings.weight
    frozen.requires_grad_(False)
    a = compute_signals(model, enc, batch_size=BATCH, device="cpu", seed=1)
    assert model.training and model.config._attn_implementation == "sdpa"
    assert not frozen.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if "word_embeddings" not in n)
    assert all(p.grad is None for p in model.parameters())
    b = compute_signals(model, enc, batch_size=BATCH, device="cpu", seed=1)
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())  # bitwise on CPU (dropout stayed off)
    assert np.isfinite(a[list(SIGNALS)].to_numpy()).all()
