"""The calibration pass of the signals (SPEC 3): the current model once over the calibration examples,
a forward with hooks and a backward of each gradient batch's mean cross-entropy, reduced on the device to
the per-layer sums of ``CalibrationStats``; ``paperlib.signals`` turns them into the twelve signals.

The hooks see the FFN activations a_l (the input of the FFN's down-projection: ``output.dense``,
DistilBERT ``ffn.lin2``, exactly ``intermediate_act_fn(intermediate.dense(.))``), the attention
probabilities P_l, the states x_l entering and h_l leaving each layer, and the gradients of each gradient
batch.  Only non-padding tokens count.  Nothing is read back to the host during the pass.

How it computes (never what) is a ``SignalOptions``: ``FAST`` (the default) and ``PLAIN`` (eager attention
read by hooks, one autograd backward per gradient batch, float64 eigen-decompositions) give the same
signals within the tolerances ``tests/test_signal_speed.py`` states.  The pass runs under the precision
policy of training and evaluation (``train.precision``); hooks and statistics are fp32.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import PaperlibError
from .models import attention_implementation, get_layers, kept_layers
from .tokens import Encoded
from .train import autocast as policy_autocast
from .train import default_device, progress_enabled, tqdm

# examples per forward+backward when ``chunk`` is 0, by device type (benchmarks/RESULTS.md, "Signals"): on CPU
# the quick preset's 64 calibration texts at once beat two batches of 32.  On CUDA 64 too: the paper preset's
# whole calibration set (512 texts of 256 tokens) through BERT-base in one forward+backward ran out of an H200's
# 140 GiB (measured 2026-12-01), and 64 x 256 tokens already fill the GPU's matmuls
AUTO_CHUNK = {"cpu": 64, "cuda": 64}


@dataclass(frozen=True)
class SignalOptions:
    """How the signals are computed (the values do not depend on it beyond float rounding).

    ``attention``: ``eager`` runs eager attention and reads P_l from the attention module; ``qk`` runs the
    forward and backward with SDPA and recomputes softmax(q k^T / sqrt(d) [+ MPNet's position bias]) from
    the projected queries and keys, without gradient, for the statistics; ``eager-pass`` runs SDPA for the
    forward and backward and a second, no-grad eager forward for the statistics.
    ``gradients``: ``autograd`` backpropagates each gradient batch on its own and reads ``p.grad``;
    ``hooks`` backpropagates a chunk of batches at once and forms each batch's weight gradient from the
    layer inputs and output gradients of every Linear and LayerNorm (needed for chunks > one batch).
    ``pca``: ``float64`` eigen-decompositions; ``float32`` where float32 resolves the spectrum, float64 for
    the other matrices (``FLOAT32_MIN_GAP``).  All layers' matrices are decomposed as one batch."""

    attention: str = "qk"
    gradients: str = "hooks"
    pca: str = "float32"

    def __post_init__(self):
        for name, allowed in (
            ("attention", ("eager", "qk", "eager-pass")),
            ("gradients", ("autograd", "hooks")),
            ("pca", ("float64", "float32")),
        ):
            if getattr(self, name) not in allowed:
                raise PaperlibError(f"signal option {name} must be one of {', '.join(allowed)}")


FAST = SignalOptions()
PLAIN = SignalOptions(attention="eager", gradients="autograd", pca="float64")


# ---------------------------------------------------------------- where each architecture keeps things


@dataclass(frozen=True)
class Probe:
    """Submodule paths inside one transformer layer.

    ``attention``: the module whose hook sees the attention probabilities under eager attention, read from
    its output[1] (``reads='output'``) or its input[0] (``reads='input'``, MPNet's attention-dropout module);
    ``ffn_down``: the FFN down-projection Linear, whose input is a_l; ``query``/``key``: the projections
    whose outputs give the scores; their parent module also receives MPNet's position bias as argument
    ``bias_arg``."""

    attention: str
    reads: str
    ffn_down: str
    query: str
    key: str
    bias_arg: int | None = None


_BERT_LIKE = Probe("attention.self", "output", "output.dense", "attention.self.query", "attention.self.key")
PROBES = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "distilbert": Probe("attention", "output", "ffn.lin2", "attention.q_lin", "attention.k_lin"),
    # MPNet returns P only on request; its scores add a relative position bias (third argument)
    "mpnet": Probe("attention.attn.dropout", "input", "output.dense", "attention.attn.q", "attention.attn.k", 2),
}


def _probe(model: nn.Module) -> Probe:
    model_type = getattr(model.config, "model_type", None)
    candidates = [PROBES[model_type]] if model_type in PROBES else list(dict.fromkeys(PROBES.values()))
    layer = get_layers(model)[0]
    for probe in candidates:
        try:
            for path in (probe.attention, probe.ffn_down, probe.query, probe.key):
                layer.get_submodule(path)
            return probe
        except AttributeError:
            continue
    raise PaperlibError(
        f"signals: cannot find the attention and FFN modules of a {type(model).__name__} layer "
        f"(model_type={model_type!r}); supported: {', '.join(PROBES)}"
    )


def _can_sdpa(model: nn.Module) -> bool:
    return bool(getattr(model, "_paperlib_mpnet_sdpa", False) or getattr(model, "_supports_sdpa", False))


def _gradient_modules(layer: nn.Module) -> list[nn.Module] | None:
    """The Linear and LayerNorm modules holding every parameter of ``layer``, each applied once per
    forward; None when some parameter lives elsewhere or the FFN is chunked (then ``hooks`` cannot
    form per-batch gradients and the pass backpropagates each batch on its own)."""
    if any(getattr(m, "chunk_size_feed_forward", 0) for m in layer.modules()):  # the FFN runs piece by piece
        return None
    modules = [m for m in layer.modules() if isinstance(m, (nn.Linear, nn.LayerNorm))]
    covered = {id(p) for m in modules for p in m.parameters(recurse=False)}
    if covered != {id(p) for p in layer.parameters()}:
        return None
    return modules


# ---------------------------------------------------------------- what the pass gathers


@dataclass
class CalibrationStats:
    """What one calibration pass gathered over n examples for the L remaining layers (tensors on the
    pass's device; sums are float64, N = valid tokens, B = gradient batches).

    Per layer l: ``act_sum`` = sum of a_l entries, ``act_norm_sum`` = sum over tokens of ||a_l row||,
    ``act_sq_sum`` = sum of a_l^2; ``attn_max_sum`` / ``attn_entropy_sum`` = sums over (head, valid query)
    of max_k P and of entropy(P)/log(valid keys), ``attn_count`` their number; ``influence_sum`` = sum over
    tokens of 1 - cos(x_l, h_l); ``cls`` (L, n, hidden) = c_l per example; ``state_means`` (L+1, n, hidden)
    = m(x_0), m(h_0), ..., m(h_(L-1)) (m = mean over the example's valid tokens; m(x_l) = m(h_(l-1)) unless
    ``input_means`` holds it); ``params`` = theta_l (each layer's parameters, in the order of
    ``layer.parameters()``); ``grad_sum`` = sum_b g_b per parameter, views into ``grad_flat`` (one flat vector
    per layer; ``grad_owner`` = each parameter's layer); ``fisher_sum`` = sum_b ||g_b restricted to theta_l||^2."""

    layers: list[int]
    labels: np.ndarray
    n_tokens: torch.Tensor
    n_batches: int
    d_ff: list[int]
    act_sum: torch.Tensor
    act_norm_sum: torch.Tensor
    act_sq_sum: torch.Tensor
    attn_max_sum: torch.Tensor
    attn_entropy_sum: torch.Tensor
    attn_count: torch.Tensor
    influence_sum: torch.Tensor
    cls: torch.Tensor
    state_means: torch.Tensor
    params: list[list[torch.Tensor]]
    grad_owner: torch.Tensor
    grad_flat: list[torch.Tensor]
    grad_sum: list[torch.Tensor]
    fisher_sum: torch.Tensor
    input_means: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.act_sum.device


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on ``device`` without a host-device synchronisation (pinned, non-blocking on CUDA)."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class _Chunk:
    """What the hooks need to know about the chunk in flight."""

    mask: torch.Tensor  # (B, T) bool, True on real tokens
    index: torch.Tensor  # (B,) example positions in the calibration set
    n_valid: torch.Tensor  # (B,) valid tokens per example
    groups: list[int]  # sizes of its gradient batches, in order


def _grouped(t: torch.Tensor, groups: list[int]) -> list[torch.Tensor]:
    """(B, T, d) -> tensors (G, rows, d) of the gradient batches' rows (equal batches stacked, the last apart)."""
    size, d = groups[0], t.shape[-1]
    full = len(groups) if groups[-1] == size else len(groups) - 1
    parts = [t[: full * size].reshape(full, -1, d)] if full else []
    if full < len(groups):
        parts.append(t[full * size :].reshape(1, -1, d))
    return parts


class _Recorder:
    """The pass's hooks: each reduces the chunk in flight to per-layer sums in ``stats``."""

    def __init__(self, stats: CalibrationStats, probe: Probe, param_slot: dict[int, int]):
        self.stats, self.probe, self.slot, self.chunk = stats, probe, param_slot, _Chunk()
        self.projections: list[dict] = [{} for _ in stats.layers]
        # a weak reference: the output holds the autograd graph, whose tensor hooks hold this recorder; a strong one
        # made a cycle through C++ autograd nodes that Python's gc cannot break (each pass leaked its last chunk's
        # activations: 70 GiB on CUDA after four 12-layer pruning curves, measured 2026-12-01)
        self.last_output: weakref.ref | None = None

    def select(self, data: Encoded, index: torch.Tensor, width: int, groups: list[int]) -> dict:
        """The chunk's rows cut to its longest example; sets what the hooks read."""
        mask = data.attention_mask[index, :width]
        c = self.chunk
        c.mask, c.index, c.n_valid, c.groups = mask.bool(), index, mask.sum(1), groups
        return {"input_ids": data.input_ids[index, :width], "attention_mask": mask, "labels": data.labels[index]}

    def attach(self, layers, attention: str, grad_modules, forward_statistics: bool = True) -> list:
        """Register the hooks: forward statistics, the attention statistics of ``attention`` (eager, qk or
        none), and, given ``grad_modules`` (per layer), the per-batch gradients; returns the handles."""
        p, handles = self.probe, []
        for pos, layer in enumerate(layers):
            if forward_statistics:
                handles.append(layer.get_submodule(p.ffn_down).register_forward_pre_hook(self.activation(pos)))
                handles.append(layer.register_forward_hook(self.layer(pos), with_kwargs=True))
            if attention == "eager":
                handles.append(layer.get_submodule(p.attention).register_forward_hook(self.eager_attention(pos)))
            elif attention == "qk":
                for name in ("query", "key"):
                    handles.append(
                        layer.get_submodule(getattr(p, name)).register_forward_hook(self.projection(pos, name))
                    )
                scores = layer.get_submodule(p.query.rsplit(".", 1)[0])
                handles.append(scores.register_forward_hook(self.scores(pos), with_kwargs=True))
            for m in grad_modules[pos] if grad_modules else []:
                hook = self.linear_gradients if isinstance(m, nn.Linear) else self.layernorm_gradients
                handles.append(m.register_forward_hook(hook(pos)))
        if grad_modules:  # gradients flow from the bottom layer's input up; no parameter needs .grad
            handles.append(layers[0].register_forward_pre_hook(_input_requires_grad, with_kwargs=True))
        return handles

    # -------------------------------------------------------- forward statistics
    def activation(self, pos: int):
        def hook(module, args):
            a = args[0].detach().float()
            m = self.chunk.mask.to(a.dtype)
            sq = a.square().sum(-1)  # (B, T)
            self.stats.act_sum[pos] += (a.sum(-1) * m).sum()
            self.stats.act_norm_sum[pos] += (sq.sqrt() * m).sum()
            self.stats.act_sq_sum[pos] += (sq * m).sum()

        return hook

    def layer(self, pos: int):
        def hook(module, args, kwargs, output):
            x_raw = args[0] if args else kwargs["hidden_states"]
            h_raw = output[0] if isinstance(output, tuple) else output
            x, h = x_raw.detach().float(), h_raw.detach().float()
            s, c = self.stats, self.chunk
            cos = F.cosine_similarity(x, h, dim=-1, eps=1e-8)  # (B, T)
            s.influence_sum[pos] += ((1.0 - cos) * c.mask).sum()
            m = c.mask.to(x.dtype)[..., None]
            n = c.n_valid.to(x.dtype)[:, None]
            s.cls[pos, c.index] = h[:, 0]
            s.state_means[pos + 1, c.index] = (h * m).sum(1) / n
            last = self.last_output() if self.last_output is not None else None
            chained = pos > 0 and last is not None and x_raw.data_ptr() == last.data_ptr()
            if pos == 0:
                s.state_means[0, c.index] = (x * m).sum(1) / n
            elif not chained:  # a model that alters the states between layers
                s.input_means.setdefault(pos, torch.zeros_like(s.state_means[0]))[c.index] = (x * m).sum(1) / n
            self.last_output = weakref.ref(h_raw)

        return hook

    def _attention_stats(self, pos: int, p: torch.Tensor) -> None:
        p = p.detach().float()  # (B, H, Q, K); padding keys hold probability 0
        s, c = self.stats, self.chunk
        q = c.mask[:, None, :].to(p.dtype)  # valid queries
        entropy = -torch.special.xlogy(p, p).sum(-1)  # (B, H, Q), 0 log 0 = 0
        log_keys = c.n_valid.to(p.dtype).log()[:, None, None]
        normalised = torch.where(log_keys > 0, entropy / log_keys.clamp_min(1e-12), torch.zeros_like(entropy))
        s.attn_max_sum[pos] += (p.amax(-1) * q).sum()
        s.attn_entropy_sum[pos] += (normalised * q).sum()
        s.attn_count[pos] += q.sum() * p.shape[1]

    def eager_attention(self, pos: int):
        if self.probe.reads == "output":

            def hook(module, args, output):
                if not isinstance(output, tuple) or len(output) < 2 or output[1] is None:
                    raise PaperlibError(
                        f"signals: {type(module).__name__} returned no attention probabilities; "
                        "eager attention is required"
                    )
                self._attention_stats(pos, output[1])
        else:

            def hook(module, args, output):
                self._attention_stats(pos, args[0])

        return hook

    def projection(self, pos: int, name: str):
        def hook(module, args, output):
            self.projections[pos][name] = output.detach()

        return hook

    def scores(self, pos: int):
        """P = softmax(q k^T / sqrt(d_head) [+ position bias], padding keys masked), without gradient."""

        def hook(module, args, kwargs, output):
            proj = self.projections[pos]
            q, k = proj.pop("query"), proj.pop("key")
            d_head = module.attention_head_size
            b, t = q.shape[:2]
            with torch.no_grad():
                q = q.float().view(b, t, -1, d_head).transpose(1, 2)
                k = k.float().view(b, t, -1, d_head).transpose(1, 2)
                scores = q @ k.transpose(-1, -2) * getattr(module, "scaling", d_head**-0.5)
                if self.probe.bias_arg is not None:
                    bias = args[self.probe.bias_arg] if len(args) > self.probe.bias_arg else kwargs.get("position_bias")
                    if bias is not None:
                        scores = scores + bias.float()
                scores = scores.masked_fill(~self.chunk.mask[:, None, None, :], float("-inf"))
                self._attention_stats(pos, scores.softmax(-1))

        return hook

    # -------------------------------------------------------- gradients of each gradient batch
    def _add_gradient(self, pos: int, param: nn.Parameter, per_batch: torch.Tensor) -> None:
        """per_batch: (G, *param.shape), the gradient of each of G gradient batches."""
        self.stats.fisher_sum[pos] += torch.linalg.vector_norm(per_batch, dtype=torch.float32).double().square()
        self.stats.grad_sum[self.slot[id(param)]] += per_batch.sum(0, dtype=torch.float32)

    def linear_gradients(self, pos: int):
        """dL_b/dW = sum over batch b's tokens of delta_t x_t^T, dL_b/db = sum of delta_t."""

        def hook(module, args, output):
            x, groups = args[0].detach(), self.chunk.groups

            def backward(delta):
                for xg, dg in zip(_grouped(x.to(delta.dtype), groups), _grouped(delta, groups)):
                    self._add_gradient(pos, module.weight, dg.transpose(1, 2) @ xg)
                    if module.bias is not None:
                        self._add_gradient(pos, module.bias, dg.sum(1))

            output.register_hook(backward)

        return hook

    def layernorm_gradients(self, pos: int):
        """dL_b/dgamma = sum over batch b's tokens of delta_t * xhat_t, dL_b/dbeta = sum of delta_t."""

        def hook(module, args, output):
            x, groups = args[0].detach(), self.chunk.groups

            def backward(delta):
                delta = delta.float()
                xhat = F.layer_norm(x.float(), module.normalized_shape, eps=module.eps)
                for xg, dg in zip(_grouped(xhat, groups), _grouped(delta, groups)):
                    if module.weight is not None:
                        self._add_gradient(pos, module.weight, (dg * xg).sum(1))
                    if module.bias is not None:
                        self._add_gradient(pos, module.bias, dg.sum(1))

            output.register_hook(backward)

        return hook


# ---------------------------------------------------------------- the calibration pass


def _chunks(calib: Encoded, batch_size: int, chunk: int) -> list[tuple[int, int, int, list[int]]]:
    """(start, stop, width, gradient-batch sizes) over the length-sorted order: the gradient batches are
    those of ``length_batches(calib, batch_size)``; each chunk holds ``chunk // batch_size`` of them."""
    lengths = calib.lengths.cpu()
    order = torch.argsort(lengths.double(), stable=True)
    per_chunk = max(1, chunk // batch_size)
    out, n = [], len(order)
    for start in range(0, n, per_chunk * batch_size):
        stop = min(n, start + per_chunk * batch_size)
        groups = [min(batch_size, stop - s) for s in range(start, stop, batch_size)]
        out.append((start, stop, int(lengths[order[start:stop]].max()), groups))
    return out


def calibration_pass(
    model: nn.Module,
    calib: Encoded,
    *,
    batch_size: int = 32,
    chunk: int = 0,
    device=None,
    progress: bool | None = False,
    autocast: bool = True,
    options: SignalOptions = FAST,
) -> CalibrationStats:
    """Run the CURRENT (possibly pruned) model once over ``calib``: a forward with hooks and a backward of
    each gradient batch's mean cross-entropy, ``chunk`` examples at a time (a whole number of gradient
    batches of ``batch_size``; 0: ``AUTO_CHUNK`` for the device).  ``device``: None means cuda when available
    (like training); ``autocast``: False forces fp32, True follows ``train.precision``.  The model's training
    flag, requires_grad flags and attention implementation are restored; its gradients are dropped."""
    if len(calib) < 2:
        raise PaperlibError(f"signals need at least 2 calibration examples, got {len(calib)} (raise n_calib)")
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    layers, probe = list(get_layers(model)), _probe(model)
    grad_modules = [_gradient_modules(layer) for layer in layers]
    use_hooks = options.gradients == "hooks" and all(m is not None for m in grad_modules)
    attention = options.attention if _can_sdpa(model) else "eager"
    chunk = (chunk if chunk > 0 else AUTO_CHUNK.get(device.type, 0)) if use_hooks else batch_size
    chunks = _chunks(calib, batch_size, chunk)
    stats = _empty_stats(model, layers, probe, calib, sum(len(c[3]) for c in chunks), device)
    rec = _Recorder(stats, probe, {id(p): i for i, p in enumerate(p for layer in layers for p in layer.parameters())})
    data = Encoded(
        *(_to_device(t, device) for t in (calib.input_ids, calib.attention_mask, calib.labels, calib.lengths))
    )
    order = _to_device(torch.argsort(calib.lengths.cpu().double(), stable=True), device)
    # 1/|b| per example in sorted order: the chunk's loss sum_b mean_{i in b} CE_i backpropagates every g_b at once
    inverse_size = _to_device(torch.cat([torch.full((g,), 1.0 / g) for c in chunks for g in c[3]]), device)
    stats.n_tokens += data.attention_mask.sum()
    params = [p for layer in layers for p in layer.parameters()]
    was_training, requires = model.training, {name: p.requires_grad for name, p in model.named_parameters()}
    handles = []
    try:
        model.eval()
        for p in model.parameters():
            p.grad = None
            p.requires_grad_(False)
        for p in params:  # only theta_l's gradients are needed; with the hooks, not even those as .grad
            p.requires_grad_(not use_hooks)
        handles = rec.attach(layers, attention, grad_modules if use_hooks else None)
        with attention_implementation(model, "eager" if attention == "eager" else "sdpa"):
            for start, stop, width, groups in tqdm(chunks, desc="signals", disable=not progress_enabled(progress)):
                batch = rec.select(data, order[start:stop], width, groups)
                with policy_autocast(device) if autocast else torch.autocast(device.type, enabled=False):
                    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                ce = F.cross_entropy(logits.float(), batch["labels"], reduction="none")
                if use_hooks:
                    (ce * inverse_size[start:stop]).sum().backward()
                else:
                    ce.mean().backward()
                    _read_gradients(stats, params)
        for h in handles:
            h.remove()
        if attention == "eager-pass":
            handles = rec.attach(layers, "eager", None, forward_statistics=False)
            _eager_attention_pass(model, rec, data, order, chunks, device, autocast)
    finally:
        for h in handles:
            h.remove()
        for name, p in model.named_parameters():
            p.grad = None
            p.requires_grad_(requires[name])
        model.train(was_training)
    return stats


def _empty_stats(model, layers, probe: Probe, calib: Encoded, n_batches: int, device) -> CalibrationStats:
    """Zero sums on ``device`` for the pass; the gradient sums are views into one flat vector per layer."""
    n, n_layers = len(calib), len(layers)
    hidden = layers[0].get_submodule(probe.ffn_down).out_features
    zeros = lambda *shape, dtype=torch.float64: torch.zeros(*shape, dtype=dtype, device=device)  # noqa: E731
    owner = torch.tensor([pos for pos, layer in enumerate(layers) for _ in layer.parameters()])
    stats = CalibrationStats(
        layers=kept_layers(model),
        labels=calib.labels.cpu().numpy(),
        n_tokens=zeros(()),
        n_batches=n_batches,
        d_ff=[layer.get_submodule(probe.ffn_down).in_features for layer in layers],
        act_sum=zeros(n_layers),
        act_norm_sum=zeros(n_layers),
        act_sq_sum=zeros(n_layers),
        attn_max_sum=zeros(n_layers),
        attn_entropy_sum=zeros(n_layers),
        attn_count=zeros(n_layers),
        influence_sum=zeros(n_layers),
        cls=zeros(n_layers, n, hidden, dtype=torch.float32),
        state_means=zeros(n_layers + 1, n, hidden, dtype=torch.float32),
        params=[[p.detach() for p in layer.parameters()] for layer in layers],
        grad_owner=_to_device(owner, device),
        grad_flat=[zeros(sum(p.numel() for p in layer.parameters()), dtype=torch.float32) for layer in layers],
        grad_sum=[],
        fisher_sum=zeros(n_layers),
    )
    for flat, layer in zip(stats.grad_flat, layers):
        sizes = [p.numel() for p in layer.parameters()]
        stats.grad_sum += [g.view_as(p) for g, p in zip(flat.split(sizes), layer.parameters())]
    return stats


def _input_requires_grad(module, args, kwargs):
    if args:
        return (args[0].detach().requires_grad_(True), *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": kwargs["hidden_states"].detach().requires_grad_(True)}


def _read_gradients(stats: CalibrationStats, params: list[nn.Parameter]) -> None:
    """``autograd``: add this batch's p.grad to the sums, then drop it."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    stats.fisher_sum.index_add_(0, stats.grad_owner, torch.stack(torch._foreach_norm(grads)).double().square())
    torch._foreach_add_(stats.grad_sum, grads)
    for p in params:
        p.grad = None


@torch.no_grad()
def _eager_attention_pass(model, rec: _Recorder, data: Encoded, order, chunks, device, autocast: bool) -> None:
    """``eager-pass``: the attention statistics from a second, no-grad forward under eager attention."""
    with attention_implementation(model, "eager"):
        for start, stop, width, groups in chunks:
            batch = rec.select(data, order[start:stop], width, groups)
            with policy_autocast(device) if autocast else torch.autocast(device.type, enabled=False):
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
