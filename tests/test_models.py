"""Models (SPEC 1): loading, the layer list of each architecture, physical layer removal, sizes."""

from __future__ import annotations

import socket

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from paperlib.errors import PaperlibError
from paperlib.models import (
    count_parameters,
    fp32_bytes,
    get_layers,
    kept_layers,
    layers_removed,
    load_model,
    remove_layers,
)

ARCHS = {  # random model name -> (base attribute, layer list inside it)
    "random:tiny": ("bert", "encoder"),
    "random:roberta-tiny": ("roberta", "encoder"),
    "random:distilbert-tiny": ("distilbert", "transformer"),
    "random:electra-tiny": ("electra", "encoder"),
    "random:mpnet-tiny": ("mpnet", "encoder"),
}


def tiny(name: str, num_labels: int = 3):
    model, _ = load_model(name, num_labels=num_labels, attn_implementation="eager")
    return model.eval()


def inputs(seed: int = 0, batch: int = 4, length: int = 12):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 1000, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row, n in enumerate([length, length - 3, 5, 2][:batch]):  # padding at the end of most rows
        mask[row, n:] = 0
    ids[0, 0] = ids[1, 0] = 101
    return ids, mask


def layer_list(model, name):
    base, holder = ARCHS[name]
    return getattr(getattr(model, base), holder).layer  # the architecture's own attribute path


def by_hand(model, name, layers, ids, mask):
    """Logits computed without the model's forward: embeddings, each layer module called directly
    with an additive (batch, 1, 1, keys) mask, then the architecture's classifier head."""
    base_name = ARCHS[name][0]
    base = getattr(model, base_name)
    additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    h = base.embeddings(input_ids=ids)
    if base_name == "electra" and hasattr(base, "embeddings_project"):
        h = base.embeddings_project(h)
    extra = {}
    if base_name == "mpnet":  # relative position bias, computed once by the encoder and shared by its layers
        extra["position_bias"] = base.encoder.compute_position_bias(h)
    for layer in layers:
        out = layer(h, additive, **extra)
        h = out[0] if isinstance(out, tuple) else out
    if base_name == "bert":
        return model.classifier(model.dropout(base.pooler(h)))
    if base_name == "distilbert":
        return model.classifier(model.dropout(torch.relu(model.pre_classifier(h[:, 0]))))
    return model.classifier(h)  # RoBERTa, ELECTRA and MPNet heads take the sequence output


@pytest.mark.parametrize("name", list(ARCHS))
def test_remove_layers_equals_running_the_kept_layers_by_hand(name, tmp_path):
    model = tiny(name)
    ids, mask = inputs()
    original = list(layer_list(model, name))
    assert len(original) == 4 and get_layers(model) is layer_list(model, name)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(by_hand(model, name, original, ids, mask), full, rtol=1e-5, atol=1e-6)

        remove_layers(model, [1, 2])
        assert [id(m) for m in layer_list(model, name)] == [id(original[0]), id(original[3])]
        assert model.config.num_hidden_layers == 2 and kept_layers(model) == [0, 3]
        pruned = model(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(
            pruned, by_hand(model, name, [original[0], original[3]], ids, mask), rtol=1e-5, atol=1e-6
        )
        assert not torch.allclose(pruned, full)

        remove_layers(model, [0])  # original indices, also after an earlier removal
        assert kept_layers(model) == [3] and model.config.num_hidden_layers == 1
        torch.testing.assert_close(
            model(input_ids=ids, attention_mask=mask).logits,
            by_hand(model, name, [original[3]], ids, mask),
            rtol=1e-5,
            atol=1e-6,
        )

    model.save_pretrained(tmp_path / "pruned")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "pruned").eval()
    assert plain.config.kept_layers == [3] and len(layer_list(plain, name)) == 1
    with torch.no_grad():
        torch.testing.assert_close(
            plain(input_ids=ids, attention_mask=mask).logits,
            model(input_ids=ids, attention_mask=mask).logits,
            rtol=1e-5,
            atol=1e-6,
        )


@pytest.mark.parametrize("name", ["random:tiny", "random:distilbert-tiny"])
def test_layers_removed_is_temporary_and_copies_nothing(name):
    model = tiny(name)
    ids, mask = inputs(1)
    original = list(layer_list(model, name))
    pointers = [p.data_ptr() for p in model.parameters()]
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
        with layers_removed(model, [0, 2]) as m:
            assert m is model and kept_layers(model) == [1, 3] and model.config.num_hidden_layers == 2
            assert [id(x) for x in layer_list(model, name)] == [id(original[1]), id(original[3])]
            torch.testing.assert_close(
                model(input_ids=ids, attention_mask=mask).logits,
                by_hand(model, name, [original[1], original[3]], ids, mask),
                rtol=1e-5,
                atol=1e-6,
            )
            assert {p.data_ptr() for p in model.parameters()} < set(pointers)  # the same storage, fewer tensors
        assert kept_layers(model) == [0, 1, 2, 3] and model.config.num_hidden_layers == 4
        assert [id(x) for x in layer_list(model, name)] == [id(x) for x in original]
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, before)
        with pytest.raises(RuntimeError):
            with layers_removed(model, [3]):
                raise RuntimeError("boom")
        assert kept_layers(model) == [0, 1, 2, 3] and len(layer_list(model, name)) == 4


def test_load_model_records_class_names_and_kept_layers():
    model, tok = load_model("random:tiny", class_names=["cat", "dog", "eel"])
    assert model.config.id2label == {0: "cat", 1: "dog", 2: "eel"}
    assert model.config.label2id == {"cat": 0, "dog": 1, "eel": 2}
    assert model.classifier.out_features == 3 and kept_layers(model) == [0, 1, 2, 3]
    assert tok("hello world")["input_ids"][0] == tok.cls_token_id and len(tok) > 30_000


def test_checkpoint_folder_loads_and_a_new_label_set_gets_a_new_head(tmp_path):
    model, tok = load_model("random:tiny", class_names=["a", "b"])
    remove_layers(model, [2])
    model.save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    again, tok2 = load_model(str(tmp_path / "ckpt"))
    assert kept_layers(again) == [0, 1, 3] and again.config.id2label == {0: "a", 1: "b"}
    assert tok2.vocab == tok.vocab
    other, _ = load_model(str(tmp_path / "ckpt"), class_names=["x", "y", "z"])
    assert other.classifier.out_features == 3 and other.config.id2label[2] == "z"
    torch.testing.assert_close(
        other.bert.encoder.layer[2].output.dense.weight, again.bert.encoder.layer[2].output.dense.weight
    )


# ---------------------------------------------------------------- sizes


def test_sizes_of_random_tiny_by_formula():
    model = tiny("random:tiny", num_labels=3)
    h, ff, vocab, pos = 32, 64, 30522, 128
    embeddings = vocab * h + pos * h + 2 * h + 2 * h  # word, position, token type, LayerNorm
    layer = 4 * (h * h + h) + 2 * h + (h * ff + ff) + (ff * h + h) + 2 * h  # Q K V O, LN, FFN in/out, LN
    head = (h * h + h) + (h * 3 + 3)  # pooler, classifier
    assert count_parameters(model) == embeddings + 4 * layer + head
    assert fp32_bytes(model) == 4 * (embeddings + 4 * layer + head)
    remove_layers(model, [0, 3])
    assert count_parameters(model) == embeddings + 2 * layer + head
    assert fp32_bytes(model.to(torch.bfloat16)) == 4 * (embeddings + 2 * layer + head)  # fp32 whatever the dtype


# ---------------------------------------------------------------- bad input


def one_line_error(match, fn, *args, **kwargs):
    with pytest.raises(PaperlibError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_removing_a_layer_that_does_not_exist():
    model = tiny("random:tiny")
    one_line_error(r"cannot remove layer\(s\) \[7\]", remove_layers, model, [7])
    one_line_error(r"cannot remove layer\(s\) \[-1\]", remove_layers, model, [-1])
    assert kept_layers(model) == [0, 1, 2, 3] and len(get_layers(model)) == 4


def test_removing_the_same_layer_twice():
    model = tiny("random:tiny")
    one_line_error("named twice", remove_layers, model, [1, 1])
    remove_layers(model, [1])
    one_line_error(r"cannot remove layer\(s\) \[1\]", remove_layers, model, [1])
    one_line_error(r"cannot remove layer\(s\) \[1\]", lambda: layers_removed(model, [1]).__enter__())
    assert kept_layers(model) == [0, 2, 3]


def test_removing_every_layer():
    model = tiny("random:tiny")
    one_line_error("cannot remove every layer", remove_layers, model, [0, 1, 2, 3])
    remove_layers(model, [0, 1, 2])
    one_line_error("cannot remove every layer", remove_layers, model, [3])
    assert kept_layers(model) == [3] and len(get_layers(model)) == 1


SUPPORTED_NAMES = ("BERT", "RoBERTa", "DistilBERT", "ELECTRA", "MPNet")


def gpt2_tiny():
    config = AutoConfig.for_model(
        "gpt2",
        n_embd=32,
        n_layer=2,
        n_head=2,
        vocab_size=1000,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    return AutoModelForSequenceClassification.from_config(config)


def test_unsupported_architecture_names_the_supported_ones(tmp_path):
    message = one_line_error("cannot find the layer list", get_layers, gpt2_tiny())
    assert all(n in message for n in SUPPORTED_NAMES) and "gpt2" in message
    one_line_error("cannot find the layer list", remove_layers, gpt2_tiny(), [0])
    gpt2_tiny().save_pretrained(tmp_path / "gpt2")
    message = one_line_error("cannot find the layer list", load_model, str(tmp_path / "gpt2"))
    assert all(n in message for n in SUPPORTED_NAMES)


def test_unknown_model_names_fail_fast_offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("must not touch the network when HF_HUB_OFFLINE=1")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", refuse)
    message = one_line_error(
        "unknown model 'no-such-org-xyz/no-such-model'", load_model, "no-such-org-xyz/no-such-model"
    )
    assert "minilm" in message and "random:" in message
    one_line_error("unknown random model 'random:huge'", load_model, "random:huge")
    one_line_error("neither a checkpoint folder nor a hub id", load_model, "./no/such/folder")


def test_checkpoint_folder_without_config_or_tokenizer(tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error("has no config.json", load_model, str(tmp_path / "empty"))
    model, _ = load_model("random:tiny")
    model.save_pretrained(tmp_path / "no_tok")  # weights and config only
    one_line_error("has no tokenizer files", load_model, str(tmp_path / "no_tok"))


def test_a_new_head_is_the_same_whatever_ran_before(tmp_path):
    from transformers import AutoModel

    body, tok = load_model("random:tiny")
    AutoModel.from_config(body.config).save_pretrained(tmp_path / "encoder")  # no classifier in the checkpoint
    tok.save_pretrained(tmp_path / "encoder")
    first, _ = load_model(str(tmp_path / "encoder"), num_labels=3)
    torch.rand(1000)  # any use of the global generator in between
    second, _ = load_model(str(tmp_path / "encoder"), num_labels=3)
    torch.testing.assert_close(first.classifier.weight, second.classifier.weight, rtol=0, atol=0)
