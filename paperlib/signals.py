"""The twelve pruning signals of SPEC 3, plus the Block-Influence reference, from ONE calibration pass.

``compute_signals`` runs the current (possibly pruned) model once over the calibration examples:
a forward pass with hooks (FFN activations a_l, attention probabilities P_l, the hidden states x_l
entering and h_l leaving each layer) and a backward pass of the mean cross-entropy of each batch
(the gradient signals).  Hooks reduce each batch to per-layer sums on the fly; only the [CLS]
vectors (n_calib x hidden per layer) are kept.  Only non-padding tokens count.

Choices SPEC leaves open (the companion's own):
- a_l is the input of the FFN's down-projection (``output.dense``; DistilBERT ``ffn.lin2``), which
  is exactly ``intermediate_act_fn(intermediate.dense(.))``, the same for every architecture.
- "Mean over batches" is a plain mean over the calibration batches (length-sorted, ``batch_size``).
- Attention and activation means pool all valid tokens / (head, valid query) pairs of all examples.
- Redundancy-MI compares the token-mean states m(x_l) and m(h_l), not the [CLS] vectors: the [CLS]
  vector entering the bottom layer is the same embedding for every example (same token, position 0),
  so its PCA is empty and the MI was 0 for the bottom layer in every snapshot.  Token means differ
  between examples at every depth.
- PCA keeps at most 16 components, fewer when n_calib or hidden is small; Redundancy-MI keeps at most
  (n-1)//2 per side, because two k-dimensional projections of n centred points with 2k > n-1 share
  directions by construction and would make every canonical correlation 1.
- Task-Relevance-MI uses sklearn's ``mutual_info_classif`` estimator re-implemented in torch
  (``knn_mutual_info``, tested equal to sklearn to 1e-9) so it runs on the model's device; PCA comes
  from the eigen-decomposition of the smaller Gram matrix, once per [CLS] matrix.
- The pass runs under the precision policy of training and evaluation (``train.precision``: bf16
  autocast on CUDA and on CPUs with bf16 arithmetic, else fp32); hooks and statistics are fp32.
  On CPU the result is deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .data import Encoded, length_batches
from .errors import PaperlibError
from .models import attention_implementation, get_layers, kept_layers
from .strategies import REFERENCE_SIGNALS, SIGNALS
from .train import autocast as policy_autocast
from .train import default_device, progress_enabled, tqdm

MAX_COMPONENTS = 16
HISTOGRAM_BINS = 256
MAX_RHO = 1.0 - 1e-6


# ---------------------------------------------------------------- where each architecture keeps things


@dataclass(frozen=True)
class Probe:
    """Submodule paths inside one transformer layer.

    ``attention``: the module whose hook sees the attention probabilities, read from its output[1]
    (``reads='output'``) or its input[0] (``reads='input'``, MPNet's attention-dropout module);
    ``ffn_down``: the FFN down-projection Linear, whose input is a_l."""

    attention: str
    reads: str
    ffn_down: str


_BERT_LIKE = Probe("attention.self", "output", "output.dense")
PROBES = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "distilbert": Probe("attention", "output", "ffn.lin2"),
    "mpnet": Probe("attention.attn.dropout", "input", "output.dense"),  # MPNet returns P only on request
}


def _probe(model: nn.Module) -> Probe:
    model_type = getattr(model.config, "model_type", None)
    candidates = [PROBES[model_type]] if model_type in PROBES else list(dict.fromkeys(PROBES.values()))
    layer = get_layers(model)[0]
    for probe in candidates:
        try:
            layer.get_submodule(probe.attention), layer.get_submodule(probe.ffn_down)
            return probe
        except AttributeError:
            continue
    raise PaperlibError(
        f"signals: cannot find the attention and FFN modules of a {type(model).__name__} layer "
        f"(model_type={model_type!r}); supported: {', '.join(PROBES)}"
    )


# ---------------------------------------------------------------- per-layer accumulators


@dataclass
class _LayerSums:
    """Running sums of one layer over the calibration pass (float64 scalars on the device)."""

    act_sum: torch.Tensor  # sum of a_l entries over valid tokens
    act_norm_sum: torch.Tensor  # sum of ||a_l row|| over valid tokens
    act_sq_sum: torch.Tensor  # sum of a_l^2 over valid tokens
    attn_max_sum: torch.Tensor  # sum of max_k P over (head, valid query)
    attn_ent_sum: torch.Tensor  # sum of entropy(P)/log(valid keys) over (head, valid query)
    attn_count: torch.Tensor  # number of (head, valid query) pairs
    influence_sum: torch.Tensor  # sum of 1 - cos(x_l, h_l) over valid tokens
    d_ff: int = 0
    cls_out: torch.Tensor | None = None  # (n_calib, hidden): c_l, the first-token vector of h_l
    mean_in: torch.Tensor | None = None  # (n_calib, hidden): mean over valid tokens of x_l
    mean_out: torch.Tensor | None = None  # (n_calib, hidden): mean over valid tokens of h_l

    @classmethod
    def zeros(cls, device) -> _LayerSums:
        return cls(*(torch.zeros((), dtype=torch.float64, device=device) for _ in range(7)))


class _Batch:
    """What the hooks need to know about the batch in flight."""

    mask: torch.Tensor  # (B, T) bool, True on real tokens
    index: torch.Tensor  # (B,) example positions in the calibration set
    n_valid: torch.Tensor  # (B,) valid tokens per example
    n_examples: int  # calibration set size


def _activation_hook(sums: _LayerSums, batch: _Batch):
    def hook(module, args):
        a = args[0].detach().float()
        m = batch.mask.to(a.dtype)
        sq = a.square().sum(-1)  # (B, T)
        sums.act_sum += (a.sum(-1) * m).sum()
        sums.act_norm_sum += (sq.sqrt() * m).sum()
        sums.act_sq_sum += (sq * m).sum()
        sums.d_ff = a.shape[-1]

    return hook


def _attention_stats(p: torch.Tensor, sums: _LayerSums, batch: _Batch) -> None:
    p = p.detach().float()  # (B, H, Q, K); padding keys hold probability 0
    q = batch.mask[:, None, :].to(p.dtype)  # valid queries
    entropy = -torch.special.xlogy(p, p).sum(-1)  # (B, H, Q), 0 log 0 = 0
    log_keys = batch.n_valid.to(p.dtype).log()[:, None, None]
    normalised = torch.where(log_keys > 0, entropy / log_keys.clamp_min(1e-12), torch.zeros_like(entropy))
    sums.attn_max_sum += (p.amax(-1) * q).sum()
    sums.attn_ent_sum += (normalised * q).sum()
    sums.attn_count += q.sum() * p.shape[1]


def _attention_hook(sums: _LayerSums, batch: _Batch, reads: str):
    if reads == "output":

        def hook(module, args, output):
            if not isinstance(output, tuple) or len(output) < 2 or output[1] is None:
                raise PaperlibError(
                    f"signals: {type(module).__name__} returned no attention probabilities; eager attention is required"
                )
            _attention_stats(output[1], sums, batch)
    else:

        def hook(module, args, output):
            _attention_stats(args[0], sums, batch)

    return hook


def _layer_hook(sums: _LayerSums, batch: _Batch):
    def hook(module, args, kwargs, output):
        x = (args[0] if args else kwargs["hidden_states"]).detach().float()
        h = (output[0] if isinstance(output, tuple) else output).detach().float()
        cos = F.cosine_similarity(x, h, dim=-1, eps=1e-8)  # (B, T)
        sums.influence_sum += ((1.0 - cos) * batch.mask).sum()
        if sums.cls_out is None:
            sums.cls_out, sums.mean_in, sums.mean_out = (x.new_zeros(batch.n_examples, x.shape[-1]) for _ in range(3))
        m = batch.mask.to(x.dtype)[..., None]
        n = batch.n_valid.to(x.dtype)[:, None]
        sums.cls_out[batch.index] = h[:, 0]
        sums.mean_in[batch.index] = (x * m).sum(1) / n
        sums.mean_out[batch.index] = (h * m).sum(1) / n

    return hook


# ---------------------------------------------------------------- signals that need no data


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


def weight_signals(model: nn.Module) -> pd.DataFrame:
    """Weight-Magnitude = mean |w| and Weight-Entropy (256 bins on the range of all remaining layers)."""
    flat = [torch.cat([w.flatten() for w in weight_matrices(layer)]) for layer in get_layers(model)]
    lo = min(float(v.min()) for v in flat)
    hi = max(float(v.max()) for v in flat)
    return pd.DataFrame(
        {
            "Weight-Magnitude": [float(v.double().abs().mean()) for v in flat],
            "Weight-Entropy": [histogram_entropy(v, lo, hi) for v in flat],
        }
    )


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


def principal_components(x, k: int = MAX_COMPONENTS) -> torch.Tensor:
    """Scores U S of the top-k principal components of ``x`` (n x d, float64), k <= min(16, n-1, d)."""
    u, s = _pca(_as_double(x), k)
    return u * s


def knn_mutual_info(z, labels, seed: int = 0, n_neighbors: int = 3) -> torch.Tensor:
    """I(z_j; label) for every column z_j of ``z``: sklearn's ``mutual_info_classif(z, labels,
    discrete_features=False, n_neighbors=3, random_state=seed)`` re-implemented in torch so that it runs
    on the model's device (same scaling, same 1e-10 noise from ``RandomState(seed)``, same Ross (2014)
    k-NN estimator: I = psi(N) + <psi(k)> - <psi(N_y)> - <psi(m)>, clipped at 0)."""
    z = _as_double(z)
    n, f = z.shape
    y = torch.as_tensor(np.asarray(labels.cpu() if torch.is_tensor(labels) else labels), device=z.device)
    std = z.std(0, unbiased=False)
    z = z / torch.where(std < 10 * torch.finfo(torch.float64).eps, torch.ones_like(std), std)
    noise = torch.from_numpy(np.random.RandomState(seed).standard_normal(size=(n, f))).to(z.device)
    z = z + 1e-10 * z.abs().mean(0).clamp_min(1.0) * noise
    same = y[:, None] == y[None, :]
    count = same.sum(1)
    valid = count > 1  # points alone in their class are ignored
    k = count.clamp_max(n_neighbors + 1) - 1  # min(n_neighbors, count - 1)
    z, same, k, count = z[valid], same[valid][:, valid], k[valid], count[valid]
    n_valid = int(valid.sum())
    if n_valid == 0:
        return z.new_zeros(f)
    eye = torch.eye(n_valid, dtype=torch.bool, device=z.device)
    out = []
    chunk = max(1, (1 << 24) // (n_valid * n_valid))
    for j in range(0, f, chunk):
        c = z[:, j : j + chunk].T  # (features, points)
        dist = (c[:, :, None] - c[:, None, :]).abs()  # (features, i, j)
        within = dist.masked_fill(~same | eye, float("inf"))
        kth = within.topk(int(k.max()), dim=-1, largest=False).values
        radius = torch.nextafter(
            kth.gather(-1, (k - 1).expand(c.shape[0], -1)[..., None])[..., 0],
            torch.zeros((), dtype=z.dtype, device=z.device),
        )
        m = (dist <= radius[..., None]).sum(-1)  # neighbours of any class within the radius, itself included
        psi = torch.special.digamma
        mi = (
            psi(torch.tensor(float(n_valid), dtype=z.dtype)).to(z.device)
            + psi(k.double()).mean()
            - psi(count.double()).mean()
            - psi(m.double()).mean(-1)
        )
        out.append(mi.clamp_min(0.0))
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


def _gaussian_mi(ux: torch.Tensor, uy: torch.Tensor) -> float:
    """-1/2 sum log(1 - rho^2), rho = singular values of Ux^T Uy (orthonormal projections), clipped."""
    if ux.shape[1] == 0 or uy.shape[1] == 0:
        return 0.0
    rho = torch.linalg.svdvals(ux.T @ uy).clamp(0.0, MAX_RHO)
    return float(-0.5 * torch.log1p(-rho.square()).sum())


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
    return _gaussian_mi(_pca(x, k)[0], _pca(y.to(x.device), k)[0])


# ---------------------------------------------------------------- the calibration pass


def _mi_signals(sums: list[_LayerSums], labels: torch.Tensor, seed: int) -> list[tuple[float, float]]:
    """(Task-Relevance-MI, Redundancy-MI) per layer: Task-Relevance-MI from the PCA of c_l, Redundancy-MI
    from the PCA of the token means m(x_l), m(h_l).  Each token-mean PCA is computed once: the output
    of layer l is the input of layer l+1."""
    means = [sums[0].mean_in.double()] + [s.mean_out.double() for s in sums]
    k_red = _redundancy_k(means[0].shape[0])
    decomposed = [_pca(m, k_red)[0] for m in means]
    single_class = len(torch.unique(labels)) < 2
    out = []
    for pos, s in enumerate(sums):
        u_in = decomposed[pos]
        if pos > 0 and not torch.equal(s.mean_in.double(), means[pos]):  # a model that alters states between layers
            u_in = _pca(s.mean_in.double(), k_red)[0]
        relevance = 0.0
        if not single_class:
            u_cls, s_cls = _pca(s.cls_out.double(), MAX_COMPONENTS)
            if u_cls.shape[1]:
                relevance = float(knn_mutual_info(u_cls * s_cls, labels.cpu().numpy(), seed).mean())
        out.append((relevance, _gaussian_mi(u_in, decomposed[pos + 1])))
    return out


def compute_signals(
    model: nn.Module,
    calib: Encoded,
    *,
    batch_size: int = 32,
    device=None,
    seed: int = 0,
    progress: bool | None = False,
    autocast: bool = True,
) -> pd.DataFrame:
    """One calibration pass over ``calib`` (forward with hooks + backward) on the CURRENT (possibly
    pruned) model.

    Returns one row per remaining layer, in current order, with columns 'layer' (original index),
    'position' (current index), the 12 SIGNALS of SPEC 3 and 'Block-Influence'.  ``device``: None
    means cuda when available (like training); ``autocast``: False forces fp32, True follows ``train.precision``.  The
    model's training flag, requires_grad flags and attention implementation are restored; its
    gradients are dropped.

    Gradient signals, with g_b the gradient of batch b's mean cross-entropy and B batches:
    Gradient-Norm = ||mean_b g_b||, Gradient-Fisher = sum_theta mean_b g_b^2,
    Gradient-Taylor = |sum_theta theta * mean_b g_b|, each over the layer's parameters theta_l."""
    if len(calib) < 2:
        raise PaperlibError(f"signals need at least 2 calibration examples, got {len(calib)} (raise n_calib)")
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    layers = get_layers(model)
    probe = _probe(model)
    sums = [_LayerSums.zeros(device) for _ in layers]
    batch = _Batch()
    batch.n_examples = len(calib)
    params = [p for layer in layers for p in layer.parameters()]
    owner = torch.tensor([pos for pos, layer in enumerate(layers) for _ in layer.parameters()], device=device)
    in_layers = {id(p) for p in params}
    grad_sum: list[torch.Tensor] | None = None
    fisher = torch.zeros(len(layers), dtype=torch.float64, device=device)

    was_training = model.training
    requires = {name: p.requires_grad for name, p in model.named_parameters()}
    handles = []
    n_batches = 0
    try:
        model.eval()
        for p in model.parameters():
            p.grad = None
            p.requires_grad_(id(p) in in_layers)  # no embedding/head gradients: only theta_l is needed
        for layer, s in zip(layers, sums):
            ffn_down, attention = layer.get_submodule(probe.ffn_down), layer.get_submodule(probe.attention)
            handles.append(ffn_down.register_forward_pre_hook(_activation_hook(s, batch)))
            handles.append(attention.register_forward_hook(_attention_hook(s, batch, probe.reads)))
            handles.append(layer.register_forward_hook(_layer_hook(s, batch), with_kwargs=True))
        host = calib.to("cpu")  # batch widths come from the host copy: no device reads per batch
        with attention_implementation(model, "eager"):
            for index, b in tqdm(
                list(length_batches(host, batch_size)), desc="signals", disable=not progress_enabled(progress)
            ):
                b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
                batch.mask = b["attention_mask"].bool()
                batch.n_valid = b["attention_mask"].sum(1)
                batch.index = index.to(device)
                with policy_autocast(device) if autocast else torch.autocast(device.type, enabled=False):
                    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
                F.cross_entropy(logits.float(), b["labels"]).backward()
                grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
                fisher.index_add_(0, owner, torch.stack(torch._foreach_norm(grads)).double().square())
                if grad_sum is None:
                    grad_sum = grads
                else:
                    torch._foreach_add_(grad_sum, grads)
                for p in params:
                    p.grad = None
                n_batches += 1
        tokens = float(calib.attention_mask.sum())
        weights = weight_signals(model)
        mi = _mi_signals(sums, calib.labels.to(device), seed)
        with torch.no_grad():
            mean_grads = [g.double() / n_batches for g in grad_sum]
            grad_sq = torch.zeros(len(layers), dtype=torch.float64, device=device).index_add_(
                0, owner, torch.stack([g.square().sum() for g in mean_grads])
            )
            taylor = torch.zeros(len(layers), dtype=torch.float64, device=device).index_add_(
                0, owner, torch.stack([(p.double() * g).sum() for p, g in zip(params, mean_grads)])
            )
        rows = []
        for pos, s in enumerate(sums):
            rows.append(
                {
                    "Activation-Mean": float(s.act_sum) / (tokens * s.d_ff),
                    "Activation-Intensity": float(s.act_norm_sum) / tokens,
                    "Activation-Energy": float(s.act_sq_sum) / tokens,
                    "Task-Relevance-MI": mi[pos][0],
                    "Redundancy-MI": mi[pos][1],
                    "Gradient-Norm": float(grad_sq[pos].sqrt()),
                    "Gradient-Fisher": float(fisher[pos]) / n_batches,
                    "Gradient-Taylor": float(taylor[pos].abs()),
                    "Weight-Magnitude": weights["Weight-Magnitude"][pos],
                    "Weight-Entropy": weights["Weight-Entropy"][pos],
                    "Attention-Weight": float(s.attn_max_sum / s.attn_count),
                    "Attention-Entropy": float(s.attn_ent_sum / s.attn_count),
                    "Block-Influence": float(s.influence_sum) / tokens,
                }
            )
    finally:
        for h in handles:
            h.remove()
        for name, p in model.named_parameters():
            p.grad = None
            p.requires_grad_(requires[name])
        model.train(was_training)
    table = pd.DataFrame(rows, columns=list(SIGNALS) + list(REFERENCE_SIGNALS))
    table.insert(0, "position", range(len(layers)))
    table.insert(0, "layer", kept_layers(model))
    return table
