"""paperlib's SDPA path for MPNet (models.enable_mpnet_sdpa) computes the eager formula."""

import torch

from paperlib.models import load_model, set_attention


def _inputs(seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 30000, (4, 24), generator=g)
    mask = torch.ones(4, 24, dtype=torch.long)
    mask[1, 15:] = 0
    mask[3, 6:] = 0
    return ids, mask


def _model():
    model, _ = load_model("random:mpnet-tiny")
    model.eval()
    with torch.no_grad():  # a position bias large enough to matter, so a path that dropped it would fail
        model.mpnet.encoder.relative_attention_bias.weight.normal_(0, 2.0)
    return model


def _hidden(model, ids, mask):
    with torch.no_grad():
        return model.mpnet(input_ids=ids, attention_mask=mask).last_hidden_state


def test_mpnet_sdpa_equals_eager_on_random_inputs():
    model = _model()
    assert model.config._attn_implementation == "sdpa"
    for seed in (0, 1, 2):
        ids, mask = _inputs(seed)
        fast = _hidden(model, ids, mask)
        set_attention(model, "eager")
        ref = _hidden(model, ids, mask)
        set_attention(model, "sdpa")
        valid = mask.bool()
        err = (fast[valid] - ref[valid]).norm() / ref[valid].norm()
        assert err < 1e-5, err


def test_mpnet_sdpa_uses_the_position_bias_and_padding():
    model = _model()
    ids, mask = _inputs(3)
    base = _hidden(model, ids, mask)
    with torch.no_grad():
        model.mpnet.encoder.relative_attention_bias.weight.zero_()
    assert (_hidden(model, ids, mask) - base).abs().max() > 1e-2  # the bias changes the output
    model = _model()
    padded = ids.clone()
    padded[3, 6:] = 7  # other tokens behind the mask must not change the valid positions
    out_a, out_b = _hidden(model, ids, mask), _hidden(model, padded, mask)
    assert torch.allclose(out_a[3, :6], out_b[3, :6], atol=1e-5)


def test_mpnet_attention_probabilities_still_available():
    model = _model()
    ids, mask = _inputs(4)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
    probs = out.attentions[0]
    assert probs.shape == (4, 2, 24, 24)
    assert torch.allclose(probs.sum(-1), torch.ones(4, 2, 24), atol=1e-5)
    assert probs[3, :, :, 6:].abs().max() < 1e-6  # padded keys get no weight
