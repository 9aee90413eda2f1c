"""The twelve pruning signals of SPEC 3, plus the Block-Influence reference: one calibration pass
(``paperlib.signal_pass``), then one small function per category.

    stats = calibration_pass(model, calib)            # forward with hooks + backward, once
    activation_signals(stats)                         # Activation-Mean, -Intensity, -Energy
    mutual_information_signals(stats, seed)           # Task-Relevance-MI, Redundancy-MI
    gradient_signals(stats)                           # Gradient-Norm, -Fisher, -Taylor
    weight_signals(model)                             # Weight-Magnitude, -Entropy (no data needed)
    attention_signals(stats)                          # Attention-Weight, -Entropy
    block_influence(stats)                            # the ShortGPT reference
    compute_signals(model, calib) == all of them in one table (what the pruning engine calls)

Each category function reads its few numbers back to the host once.

Choices SPEC leaves open (the companion's own):
- a_l is the input of the FFN's down-projection, the same for every architecture (``signal_pass``).
- The gradient batch is the training batch (``batch_size``, length-sorted): g_b is the gradient of batch
  b's mean cross-entropy, "mean over batches" a plain mean over the B batches.  How many examples run
  per forward+backward (``chunk``) is a speed setting only: a chunk holds whole gradient batches and
  the per-batch gradients are recovered from each Linear's input and output gradient.
- Attention and activation means pool all valid tokens / (head, valid query) pairs of all examples.
- Redundancy-MI compares the token-mean states m(x_l) and m(h_l), not the [CLS] vectors: the [CLS]
  vector entering the bottom layer is the same embedding for every example (same token, position 0),
  so its PCA is empty and the MI was 0 for the bottom layer in every snapshot.  Token means differ
  between examples at every depth.
- PCA keeps at most 16 components, fewer when n_calib or hidden is small; Redundancy-MI keeps at most
  (n-1)//2 per side, because two k-dimensional projections of n centred points with 2k > n-1 share
  directions by construction and would make every canonical correlation 1.
- Task-Relevance-MI uses sklearn's ``mutual_info_classif`` estimator re-implemented in torch
  (``knn_mutual_info``, tested equal to sklearn to 1e-9) so it runs on the model's device.
- On CPU the result is deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from .models import get_layers, kept_layers
from .signal_pass import AUTO_CHUNK, FAST, PLAIN, CalibrationStats, SignalOptions, _to_device, calibration_pass
from .strategies import REFERENCE_SIGNALS, SIGNALS
from .tokens import Encoded

__all__ = [
    "AUTO_CHUNK",
    "FAST",
    "PLAIN",
    "CalibrationStats",
    "SignalOptions",
    "activation_signals",
    "attention_signals",
    "block_influence",
    "calibration_pass",
    "canonical_correlations",
    "compute_signals",
    "gradient_signals",
    "histogram_entropy",
    "knn_mutual_info",
    "mutual_information_signals",
    "principal_components",
    "redundancy_mi",
    "task_relevance_mi",
    "token_mean",
    "weight_matrices",
    "weight_signals",
]

MAX_COMPONENTS = 16
HISTOGRAM_BINS = 256
MAX_RHO = 1.0 - 1e-6


# ---------------------------------------------------------------- the categories


def _frame(stats: CalibrationStats, columns: dict[str, torch.Tensor]) -> pd.DataFrame:
    """One row per layer: 'layer' (original index) and the given (L,) tensors, read back in one transfer."""
    values = torch.stack([v.double() for v in columns.values()], 1).cpu().numpy()
    table = pd.DataFrame(values, columns=list(columns))
    table.insert(0, "layer", stats.layers)
    return table


def activation_signals(stats: CalibrationStats) -> pd.DataFrame:
    """Over the N valid calibration tokens t and the d_ff FFN activations a_l,tj of layer l:
    Activation-Mean = (1/(N d_ff)) sum_t sum_j a_l,tj; Activation-Intensity = (1/N) sum_t ||a_l,t||_2;
    Activation-Energy = ||a_l||_F^2 / N.  (All prune lowest first.)"""
    d_ff = torch.tensor(stats.d_ff, dtype=torch.float64, device=stats.device)
    return _frame(
        stats,
        {
            "Activation-Mean": stats.act_sum / (stats.n_tokens * d_ff),
            "Activation-Intensity": stats.act_norm_sum / stats.n_tokens,
            "Activation-Energy": stats.act_sq_sum / stats.n_tokens,
        },
    )


def attention_signals(stats: CalibrationStats) -> pd.DataFrame:
    """Over heads h and valid queries q of layer l's attention probabilities P_l (K_q valid keys):
    Attention-Weight = mean_{h,q} max_k P_l,hqk (prunes lowest first);
    Attention-Entropy = mean_{h,q} -sum_k P_l,hqk log P_l,hqk / log K_q (prunes highest first)."""
    return _frame(
        stats,
        {
            "Attention-Weight": stats.attn_max_sum / stats.attn_count,
            "Attention-Entropy": stats.attn_entropy_sum / stats.attn_count,
        },
    )


def block_influence(stats: CalibrationStats) -> pd.DataFrame:
    """The ShortGPT reference: Block-Influence = (1/N) sum_t (1 - cos(x_l,t, h_l,t)) (prunes lowest first)."""
    return _frame(stats, {"Block-Influence": stats.influence_sum / stats.n_tokens})


def gradient_signals(stats: CalibrationStats) -> pd.DataFrame:
    """With g_b the gradient of gradient batch b's mean cross-entropy, B batches and gbar = (1/B) sum_b g_b,
    each over layer l's parameters theta_l: Gradient-Norm = ||gbar||_2; Gradient-Fisher =
    sum_theta (1/B) sum_b g_b^2 (the empirical Fisher trace); Gradient-Taylor = |sum_theta theta gbar|
    (the first-order loss change if the layer's weights were zeroed).  (All prune lowest first.)"""
    b = stats.n_batches
    mean_grads = [g.double() / b for g in stats.grad_flat]  # one flat vector per layer
    theta = [torch.cat([p.flatten() for p in params]).double() for params in stats.params]
    return _frame(
        stats,
        {
            "Gradient-Norm": torch.stack([torch.linalg.vector_norm(g) for g in mean_grads]),
            "Gradient-Fisher": stats.fisher_sum / b,
            "Gradient-Taylor": torch.stack([(t * g).sum() for t, g in zip(theta, mean_grads)]).abs(),
        },
    )


# ---------------------------------------------------------------- weight signals (no data)


def weight_matrices(layer: nn.Module) -> list[torch.Tensor]:
    """The layer's weight matrices: parameters with ndim >= 2 (biases and LayerNorm excluded)."""
    return [p.detach() for p in layer.parameters() if p.ndim >= 2]


def histogram_entropy(values: torch.Tensor, lo: float, hi: float, bins: int = HISTOGRAM_BINS) -> float:
    """Shannon entropy (nats) of a ``bins``-bin histogram on [lo, hi]: H = -sum_b p_b log p_b."""
    values = values.detach().double().flatten()
    if hi <= lo:
        return 0.0
    counts = torch.histc(values, bins=bins, min=lo, max=hi)
    p = counts / counts.sum()
    return float(-torch.special.xlogy(p, p).sum())


@dataclass
class _LayerWeights:
    """One layer's weights, summarised once: sorted values (float32), mean |w| (float64), min and max."""

    key: tuple
    sorted: torch.Tensor
    mean_abs: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor


def _layer_weights(layer: nn.Module, cache: dict) -> _LayerWeights:
    weights = weight_matrices(layer)
    key = tuple((w.data_ptr(), tuple(w.shape), w.dtype, str(w.device)) for w in weights)
    hit = cache.get(id(layer))
    if hit is None or hit.key != key:
        flat = torch.cat([w.flatten().float() for w in weights])
        values = flat.sort().values
        hit = _LayerWeights(key, values, flat.double().abs().mean(), values[0].double(), values[-1].double())
        cache[id(layer)] = hit
    return hit


def _sorted_histogram(values: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bins: int) -> torch.Tensor:
    """Counts of sorted float32 ``values`` in ``bins`` equal bins on [lo, hi] (numpy's rule: [e_i, e_i+1), the
    last bin closed), from where the edges fall in the sorted values; edges are float64, rounded up to float32
    so that v < edge compares exactly for float32 v."""
    edges = lo + (hi - lo) * torch.arange(1, bins, dtype=torch.float64, device=values.device) / bins
    e32 = edges.float()
    e32 = torch.where(e32.double() < edges, torch.nextafter(e32, torch.full_like(e32, float("inf"))), e32)
    below = torch.searchsorted(values, e32, side="left")  # values < e_1 .. e_(bins-1)
    ends = torch.cat([below.new_zeros(1), below, below.new_full((1,), values.numel())])
    return ends.diff().double()


def weight_signals(model: nn.Module, cache: dict | None = None) -> pd.DataFrame:
    """Over layer l's weight matrices W_l (biases and LayerNorm excluded; no data needed):
    Weight-Magnitude = mean |w|; Weight-Entropy = -sum_{b=1}^{256} p_b log p_b, p_b the share of W_l's
    weights in bin b of 256 equal bins on [min, max] over the weights of ALL remaining layers (the shared
    range changes when layers are removed; the per-layer summaries do not).  (Both prune lowest first.)

    ``cache``: a dict kept across calls on sub-models of one model whose weights do not change (the
    pruning engine's memo): each layer's sorted weights, mean |w|, min and max are computed once and the
    histogram counts read from the sorted values; without it, ``torch.histc`` on float64 copies."""
    layers = get_layers(model)
    if cache is None:
        flat = [torch.cat([w.flatten() for w in weight_matrices(layer)]) for layer in layers]
        lo, hi = torch.stack([v.min() for v in flat]).min().item(), torch.stack([v.max() for v in flat]).max().item()
        magnitude = torch.stack([v.double().abs().mean() for v in flat])
        entropy = torch.tensor([histogram_entropy(v, lo, hi) for v in flat], dtype=torch.float64)
    else:
        summaries = [_layer_weights(layer, cache) for layer in layers]
        lo, hi = torch.stack([s.lo for s in summaries]).min(), torch.stack([s.hi for s in summaries]).max()
        magnitude = torch.stack([s.mean_abs for s in summaries])
        counts = torch.stack([_sorted_histogram(s.sorted, lo, hi, HISTOGRAM_BINS) for s in summaries])
        p = counts / counts.sum(1, keepdim=True)
        entropy = torch.where(hi > lo, -torch.special.xlogy(p, p).sum(1), torch.zeros_like(magnitude))
    values = torch.stack([magnitude, entropy.to(magnitude.device)], 1).cpu().numpy()
    table = pd.DataFrame(values, columns=["Weight-Magnitude", "Weight-Entropy"])
    table.insert(0, "layer", kept_layers(model))
    return table


# ---------------------------------------------------------------- mutual-information helpers


def _as_double(x, device=None) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, device=device).detach().double()


def _pca(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, s): orthonormal scores and singular values of the top-k principal components of x (n x d),
    from the eigen-decomposition of the smaller Gram matrix of the centred data; components whose
    variance is below 1e-12 of the largest are dropped."""
    n, d = x.shape
    k = min(k, n - 1, d)
    if k < 1:
        return x.new_zeros(n, 0), x.new_zeros(0)
    xc = x - x.mean(0)
    if n <= d:
        lam, vec = torch.linalg.eigh(xc @ xc.T)
        lam, u = lam.flip(0)[:k], vec.flip(1)[:, :k]
    else:
        lam, vec = torch.linalg.eigh(xc.T @ xc)
        lam, v = lam.flip(0)[:k], vec.flip(1)[:, :k]
        u = (xc @ v) / lam.clamp_min(1e-300).sqrt()
    keep = lam > lam[0].clamp_min(1e-300) * 1e-12
    return u[:, keep], lam[keep].sqrt()


# float32 eigenvectors are used only where every kept eigenvalue lies at least this share of the largest from
# its neighbours: float32's backward error (~1e-7 of the largest) then turns each eigenvector by about 1e-3 rad
# at most; closer eigenvalues (a collapsed spectrum, e.g. the [CLS] vectors of a fine-tuned classifier) go to float64
FLOAT32_MIN_GAP = 1e-4


def _eigh_pca(x: torch.Tensor, k: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U (M, n, k), s (M, k), resolved (M,)) from the eigen-decomposition in ``dtype`` of the smaller Gram
    matrix of each centred x[m]; components whose variance is below 1e-12 of the largest are zeroed (float64),
    ``resolved`` says whether float32 can be trusted (``FLOAT32_MIN_GAP``)."""
    m, n, d = x.shape
    xc = x.to(dtype)
    xc = xc - xc.mean(1, keepdim=True)
    tiny = torch.finfo(dtype).tiny
    if n <= d:
        lam, vec = torch.linalg.eigh(xc @ xc.mT)
        lam, u = lam.flip(-1), vec.flip(-1)[..., :k]
    else:
        lam, vec = torch.linalg.eigh(xc.mT @ xc)
        lam, v = lam.flip(-1), vec.flip(-1)[..., :k]
        u = (xc @ v) / lam[:, :k].clamp_min(tiny).sqrt()[:, None, :]
    top = torch.cat([lam, lam.new_zeros(m, 1)], 1)[:, : k + 1]  # lambda_1 .. lambda_(k+1), 0 past the dimension
    below = top[:, :k] - top[:, 1:]
    above = torch.cat([torch.full_like(top[:, :1], float("inf")), top[:, : k - 1] - top[:, 1:k]], 1)
    resolved = (torch.minimum(above, below) >= FLOAT32_MIN_GAP * top[:, :1]).all(1)
    lam = lam[:, :k]
    keep = lam > lam[:, :1].clamp_min(tiny) * 1e-12
    return u.double() * keep[:, None, :], lam.clamp_min(0).sqrt().double() * keep, resolved


def _pca_stack(x: torch.Tensor, k: int, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``_pca`` of each x[m] (M x n x d) at once: (U (M, n, k), s (M, k)) in float64, the columns of dropped
    components zero.  ``method``: ``float64``, or ``float32`` with the matrices float32 cannot resolve
    redone in float64 (one host read of which they are)."""
    m, n, d = x.shape
    k = min(k, n - 1, d)
    if k < 1:
        return x.new_zeros(m, n, 0, dtype=torch.float64), x.new_zeros(m, 0, dtype=torch.float64)
    if method == "float64":
        return _eigh_pca(x, k, torch.float64)[:2]
    u, s, resolved = _eigh_pca(x, k, torch.float32)
    u = torch.linalg.qr(u).Q * (s > 0)[:, None, :]  # re-orthonormalised in float64
    redo = (~resolved).nonzero().flatten()
    if len(redo):
        u[redo], s[redo] = _eigh_pca(x[redo], k, torch.float64)[:2]
    return u, s


def principal_components(x, k: int = MAX_COMPONENTS) -> torch.Tensor:
    """Scores U S of the top-k principal components of ``x`` (n x d, float64), k <= min(16, n-1, d)."""
    u, s = _pca(_as_double(x), k)
    return u * s


def _sklearn_noise(seed: int, n: int, f: int, device) -> torch.Tensor:
    """The 1e-10-scaled noise sklearn's ``mutual_info_classif`` adds: RandomState(seed) normals, n x f."""
    return _to_device(torch.from_numpy(np.random.RandomState(seed).standard_normal(size=(n, f))), device)


def knn_mutual_info(z, labels, seed: int = 0, n_neighbors: int = 3) -> torch.Tensor:
    """I(z_j; label) for every column z_j of ``z``: sklearn's ``mutual_info_classif(z, labels,
    discrete_features=False, n_neighbors=3, random_state=seed)`` re-implemented in torch so that it runs
    on the model's device (same scaling, same 1e-10 noise from ``RandomState(seed)``, same Ross (2014)
    k-NN estimator: I = psi(N) + <psi(k)> - <psi(N_y)> - <psi(m)>, clipped at 0)."""
    z = _as_double(z)
    return _knn_mi(z, labels, _sklearn_noise(seed, *z.shape, z.device), n_neighbors)


def _knn_mi(z: torch.Tensor, labels, noise: torch.Tensor, n_neighbors: int = 3) -> torch.Tensor:
    """``knn_mutual_info`` with the noise given; the label bookkeeping is done on the host (no device reads)."""
    n, f = z.shape
    y = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
    std = z.std(0, unbiased=False)
    z = z / torch.where(std < 10 * torch.finfo(torch.float64).eps, torch.ones_like(std), std)
    z = z + 1e-10 * z.abs().mean(0).clamp_min(1.0) * noise
    same_host = y[:, None] == y[None, :]
    count_host = same_host.sum(1)
    valid = np.flatnonzero(count_host > 1)  # points alone in their class are ignored
    if len(valid) == 0:
        return z.new_zeros(f)
    k_host = np.minimum(count_host[valid], n_neighbors + 1) - 1  # min(n_neighbors, count - 1)
    device = z.device
    z = z.index_select(0, _to_device(torch.from_numpy(valid), device))
    same = _to_device(torch.from_numpy(same_host[np.ix_(valid, valid)]), device)
    k = _to_device(torch.from_numpy(k_host), device)
    n_valid, k_max = len(valid), int(k_host.max())
    eye = torch.eye(n_valid, dtype=torch.bool, device=device)
    psi = torch.special.digamma
    host = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    constant = float(psi(host(float(n_valid))) + psi(host(k_host)).mean() - psi(host(count_host[valid])).mean())
    out = []
    chunk = max(1, (1 << 24) // (n_valid * n_valid))
    for j in range(0, f, chunk):
        c = z[:, j : j + chunk].T  # (features, points)
        dist = (c[:, :, None] - c[:, None, :]).abs()  # (features, i, j)
        within = dist.masked_fill(~same | eye, float("inf"))
        kth = within.topk(k_max, dim=-1, largest=False).values
        radius = torch.nextafter(
            kth.gather(-1, (k - 1).expand(c.shape[0], -1)[..., None])[..., 0],
            torch.zeros((), dtype=z.dtype, device=device),
        )
        m = (dist <= radius[..., None]).sum(-1)  # neighbours of any class within the radius, itself included
        out.append((constant - psi(m.double()).mean(-1)).clamp_min(0.0))
    return torch.cat(out)


def task_relevance_mi(cls, labels, seed: int = 0, k: int = MAX_COMPONENTS) -> float:
    """Task-Relevance-MI = mean over the top-k PCA components z_j of c_l of I(z_j; label), by the k-NN
    estimator of sklearn's ``mutual_info_classif(random_state=seed)`` (see ``knn_mutual_info``)."""
    z = principal_components(cls, k)
    labels = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
    if z.shape[1] == 0 or len(np.unique(labels)) < 2:
        return 0.0
    return float(knn_mutual_info(z, labels, seed).mean())


def _redundancy_k(n: int, k: int = MAX_COMPONENTS) -> int:
    return min(k, (n - 1) // 2)


def _gaussian_mi(ux: torch.Tensor, uy: torch.Tensor) -> torch.Tensor:
    """-1/2 sum log(1 - rho^2), rho = singular values of Ux^T Uy (orthonormal projections, batched over
    leading dimensions), clipped; zero columns (dropped components) add nothing."""
    if ux.shape[-1] == 0 or uy.shape[-1] == 0:
        return ux.new_zeros(ux.shape[:-2])
    rho = torch.linalg.svdvals(ux.mT @ uy).clamp(0.0, MAX_RHO)
    return -0.5 * torch.log1p(-rho.square()).sum(-1)


def canonical_correlations(x, y, k: int = MAX_COMPONENTS) -> torch.Tensor:
    """Canonical correlations of the top-k PCA projections of x and y (k <= (n-1)//2): the singular
    values of Ux^T Uy, with Ux, Uy the orthonormal (whitened) projections."""
    x, y = _as_double(x), _as_double(y)
    k = _redundancy_k(x.shape[0], k)
    ux, uy = _pca(x, k)[0], _pca(y.to(x.device), k)[0]
    if ux.shape[1] == 0 or uy.shape[1] == 0:
        return x.new_zeros(0)
    return torch.linalg.svdvals(ux.T @ uy)


def token_mean(states, mask) -> torch.Tensor:
    """m(x)_i = sum_t mask_it x_it / sum_t mask_it: the mean over each example's valid tokens
    (states: examples x tokens x hidden, mask: examples x tokens)."""
    x = _as_double(states)
    m = _as_double(mask, x.device)
    return (x * m[..., None]).sum(1) / m.sum(1, keepdim=True)


def redundancy_mi(mean_in, mean_out, k: int = MAX_COMPONENTS) -> float:
    """Redundancy-MI = Gaussian MI between the token-mean states entering and leaving a layer
    (``token_mean`` of x_l and of h_l, examples x hidden): -1/2 sum_i log(1 - rho_i^2), rho_i the
    canonical correlations of their top-k PCA projections, clipped below 1 - 1e-6 (a layer that
    copies its input scores about 6.6 nats per component, large but finite)."""
    x, y = _as_double(mean_in), _as_double(mean_out)
    k = _redundancy_k(x.shape[0], k)
    return float(_gaussian_mi(_pca(x, k)[0], _pca(y.to(x.device), k)[0]))


def mutual_information_signals(stats: CalibrationStats, seed: int = 0, pca: str = FAST.pca) -> pd.DataFrame:
    """Task-Relevance-MI = (1/k) sum_{j<=k} I(z_j; y), z = the top-k (k <= 16) PCA scores of the [CLS] vectors
    c_l leaving layer l, I the k-NN estimator of sklearn's ``mutual_info_classif(random_state=seed)``
    (prunes lowest first); Redundancy-MI = -1/2 sum_i log(1 - rho_i^2), rho_i the canonical correlations of
    the top-k' (k' <= min(16, (n-1)/2)) PCA projections of the token means m(x_l) and m(h_l) (prunes highest
    first).  All layers' decompositions run as one batch (``pca``: see ``SignalOptions``); each
    token-mean decomposition serves two layers (the output of layer l is the input of layer l+1)."""
    n = stats.cls.shape[1]
    k_red = _redundancy_k(n)
    u_states = _pca_stack(stats.state_means, k_red, pca)[0]
    u_in = u_states[:-1].clone()
    for pos, means in stats.input_means.items():  # inputs that are not the previous layer's output
        u_in[pos] = _pca_stack(means[None], k_red, pca)[0][0]
    redundancy = _gaussian_mi(u_in, u_states[1:])
    relevance = torch.zeros(len(stats.layers), dtype=torch.float64, device=stats.device)
    if len(np.unique(stats.labels)) >= 2:
        u, s = _pca_stack(stats.cls, MAX_COMPONENTS, pca)
        n_layers, _, k = u.shape
        if k:
            z = (u * s[:, None, :]).permute(1, 0, 2).reshape(n, n_layers * k)  # every layer's components as columns
            noise = _sklearn_noise(seed, n, k, stats.device).repeat(1, n_layers)  # sklearn's noise, per layer
            mi = _knn_mi(z, stats.labels, noise).view(n_layers, k)
            kept = (s > 0).double()
            relevance = (mi * kept).sum(1) / kept.sum(1).clamp_min(1.0)
    return _frame(stats, {"Task-Relevance-MI": relevance, "Redundancy-MI": redundancy})


# ---------------------------------------------------------------- everything at once


def compute_signals(
    model: nn.Module,
    calib: Encoded,
    *,
    batch_size: int = 32,
    chunk: int = 0,
    device=None,
    seed: int = 0,
    progress: bool | None = False,
    autocast: bool = True,
    options: SignalOptions = FAST,
    weight_cache: dict | None = None,
) -> pd.DataFrame:
    """``calibration_pass`` on the CURRENT (possibly pruned) model, then every category.

    Returns one row per remaining layer, in current order, with columns 'layer' (original index),
    'position' (current index), the 12 SIGNALS of SPEC 3 and 'Block-Influence'.  ``batch_size`` is the
    gradient batch, ``chunk`` how many examples run at once (see ``calibration_pass``); ``options`` how the
    values are computed (``FAST`` or ``PLAIN``); ``weight_cache`` see ``weight_signals``."""
    stats = calibration_pass(
        model,
        calib,
        batch_size=batch_size,
        chunk=chunk,
        device=device,
        progress=progress,
        autocast=autocast,
        options=options,
    )
    parts = [
        mutual_information_signals(stats, seed, options.pca),  # the most device work first: it overlaps the reads
        gradient_signals(stats),
        weight_signals(model, weight_cache),
        activation_signals(stats),
        attention_signals(stats),
        block_influence(stats),
    ]
    table = pd.concat([p.drop(columns="layer") for p in parts], axis=1)[list(SIGNALS) + list(REFERENCE_SIGNALS)]
    table.insert(0, "position", range(len(table)))
    table.insert(0, "layer", stats.layers)
    return table
