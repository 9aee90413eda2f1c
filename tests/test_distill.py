"""Knowledge distillation (SPEC 6): the loss by hand, the cached teacher, the stage's rows, DDP sharding,
and one real check that distillation helps a pruned MiniLM."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from paperlib.distill import (best_depth, distill_run, kd_loss, kd_loss_fn, parse_depths, parse_kept,
                              pruned_curve, teacher_logits)
from paperlib.errors import PaperlibError
from paperlib.models import count_parameters, fp32_bytes, layers_removed


def _log_softmax_by_hand(row):
    m = max(row)
    log_z = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - log_z for v in row]


def _kd_by_hand(s, t, y, alpha, T):
    """alpha*T^2*mean_i sum_c p_t log(p_t/p_s) + (1-alpha)*mean_i -log softmax(s_i)[y_i], with explicit sums."""
    kl_total, ce_total = 0.0, 0.0
    for s_i, t_i, y_i in zip(s, t, y):
        log_ps = _log_softmax_by_hand([v / T for v in s_i])
        log_pt = _log_softmax_by_hand([v / T for v in t_i])
        kl_total += sum(math.exp(lt) * (lt - ls) for lt, ls in zip(log_pt, log_ps))
        ce_total += -_log_softmax_by_hand(s_i)[y_i]
    n = len(s)
    return alpha * T * T * kl_total / n + (1 - alpha) * ce_total / n


S = [[2.0, -1.0, 0.5], [0.1, 0.2, 3.0], [-2.0, 1.5, 1.0], [0.0, 0.0, 0.0]]
TCH = [[1.0, 0.0, -1.0], [-0.5, 0.4, 2.0], [0.3, 2.5, -1.0], [1.0, -1.0, 0.5]]
Y = [0, 2, 1, 2]


@pytest.mark.parametrize("alpha,T", [(0.5, 2.0), (0.9, 1.0), (0.25, 4.0), (1.0, 2.0)])
def test_kd_loss_matches_hand_computation(alpha, T):
    got = kd_loss(torch.tensor(S), torch.tensor(TCH), torch.tensor(Y), alpha=alpha, temperature=T)
    assert float(got) == pytest.approx(_kd_by_hand(S, TCH, Y, alpha, T), rel=1e-6)


def test_kd_loss_is_zero_kl_when_student_equals_teacher():
    # KL(p||p) = 0, so alpha=1 gives 0 whatever T
    same = torch.tensor(TCH)
    assert float(kd_loss(same, same, torch.tensor(Y), alpha=1.0, temperature=3.0)) == pytest.approx(0.0, abs=1e-7)


def test_alpha_zero_is_cross_entropy_and_ignores_the_teacher():
    ce = sum(-_log_softmax_by_hand(s)[y] for s, y in zip(S, Y)) / len(S)
    s, y = torch.tensor(S), torch.tensor(Y)
    assert float(kd_loss(s, None, y, alpha=0.0)) == pytest.approx(ce, rel=1e-6)
    assert float(kd_loss(s, torch.randn(4, 3) * 10, y, alpha=0.0)) == pytest.approx(ce, rel=1e-6)
    hook = kd_loss_fn(None, alpha=0.0, temperature=2.0)
    assert float(hook(s, {"labels": y}, torch.arange(4))) == pytest.approx(ce, rel=1e-6)
    with pytest.raises(PaperlibError):
        kd_loss_fn(None, alpha=0.5, temperature=2.0)


def test_cached_teacher_logits_equal_a_fresh_forward(tiny_run):
    model, data = tiny_run.model, tiny_run.encoded["train"]
    cached = teacher_logits(model, data, batch_size=16, device="cpu")
    assert cached.shape == (len(data), tiny_run.splits.num_classes)
    with torch.no_grad():  # full-width padded forward, in data order: no length bucketing
        fresh = model.eval()(input_ids=data.input_ids, attention_mask=data.attention_mask).logits
    torch.testing.assert_close(cached, fresh, atol=1e-5, rtol=1e-5)
    # the hook looks rows up by example index: a shuffled batch gets its own teacher rows
    idx = torch.tensor([5, 0, 17, 3])
    s = torch.randn(4, cached.shape[1])
    hook = kd_loss_fn(cached, alpha=0.5, temperature=2.0)
    got = hook(s, {"labels": data.labels[idx]}, idx)
    want = _kd_by_hand(s.tolist(), fresh[idx].tolist(), data.labels[idx].tolist(), 0.5, 2.0)
    assert float(got) == pytest.approx(want, rel=1e-5)


# ---------------------------------------------------------------- the teacher's soft labels carry what noisy labels lack

class _BagOfWords(torch.nn.Module):
    """Mean of token embeddings -> linear head; returns an object with ``.logits`` like a HF classifier."""

    def __init__(self, seed: int, vocab: int = 50, dim: int = 16, classes: int = 3):
        super().__init__()
        torch.manual_seed(seed)
        self.emb, self.out = torch.nn.Embedding(vocab, dim), torch.nn.Linear(dim, classes)

    def forward(self, input_ids, attention_mask):
        from types import SimpleNamespace

        m = attention_mask.unsqueeze(-1).float()
        return SimpleNamespace(logits=self.out((self.emb(input_ids) * m).sum(1) / m.sum(1)))


def _key_token_data(n: int, seed: int):
    """The class is given away by the first token (3 key tokens per class), then 5 filler tokens."""
    from paperlib.data import Encoded

    g = np.random.default_rng(seed)
    y = g.integers(0, 3, n)
    ids = g.integers(10, 50, (n, 6))
    ids[:, 0] = 1 + 3 * y + g.integers(0, 3, n)
    return Encoded(torch.from_numpy(ids), torch.ones(n, 6, dtype=torch.long), torch.from_numpy(y), torch.full((n,), 6))


def test_kd_beats_the_alpha_zero_control_when_the_labels_are_noisy():
    """Teacher trained on clean labels; students trained on labels of which 60 % are shifted to the next
    class, so the hard labels point to the wrong class more often than to the right one.  Only the KL term
    brings the teacher's knowledge in: with it the student recovers the task, the control learns the shift.
    A KL term that is dropped, mis-signed or fed the wrong rows fails this test."""
    from paperlib.data import Encoded
    from paperlib.distill import distill
    from paperlib.train import predict_logits, train

    clean, test = _key_token_data(240, 0), _key_token_data(300, 1)
    accuracy = lambda m: float((predict_logits(m, test, device="cpu").argmax(-1) == test.labels).float().mean())
    teacher = _BagOfWords(seed=1)
    train(teacher, clean, epochs=10, lr=3e-2, batch_size=32, device="cpu", progress=False)
    assert accuracy(teacher) > 0.95  # precondition: the teacher knows the task
    shifted = torch.from_numpy(np.random.default_rng(2).random(len(clean)) < 0.6)
    noisy = Encoded(clean.input_ids, clean.attention_mask, torch.where(shifted, (clean.labels + 1) % 3, clean.labels),
                    clean.lengths)
    logits = predict_logits(teacher, clean, device="cpu")
    acc = {}
    for alpha in (0.5, 0.0):
        student = _BagOfWords(seed=2)
        distill(student, noisy, logits if alpha else None, alpha=alpha, temperature=2.0, epochs=10, lr=3e-2,
                batch_size=32, device="cpu", progress=False)
        acc[alpha] = accuracy(student)
    # measured (torch 2.13 CPU): KD 0.84, control 0.39 (it mostly learns the shifted labels)
    assert acc[0.0] < 0.6 and acc[0.5] > acc[0.0] + 0.3, acc


# ---------------------------------------------------------------- curve handling

def _curve(strategy="Random-Forest", val=(0.5, 0.9, 0.9), kept=([0, 2, 3], [0, 3], [3]), seed=0):
    return pd.DataFrame({"strategy": strategy, "seed": seed, "step": range(1, len(val) + 1),
                         "removed": [1, 2, 0][:len(val)], "kept": list(kept), "val_acc": list(val),
                         "test_acc": list(val), "n_params": 0, "bytes": 0})


def test_best_depth_takes_the_highest_val_acc_and_the_smallest_k_on_ties():
    assert best_depth(_curve(val=(0.5, 0.9, 0.9))) == 2
    assert best_depth(_curve(val=(0.95, 0.9, 0.9))) == 1
    assert parse_depths("best", _curve()) == [2]
    assert parse_depths("all", _curve()) == [1, 2, 3]
    assert parse_depths("3,1", _curve()) == [1, 3]
    with pytest.raises(PaperlibError, match="not on the curve"):
        parse_depths("7", _curve())


def test_parse_kept_reads_every_representation():
    assert parse_kept([0, 3]) == parse_kept(np.array([0, 3])) == parse_kept("[0, 3]") == parse_kept("0,3") == [0, 3]


def test_pruned_curve_picks_the_strategy_and_its_lowest_seed():
    curves = pd.concat([_curve("Random", seed=1, val=(0.1, 0.2, 0.3)), _curve("Random", seed=0),
                        _curve("Weight-Entropy")])
    rf = pruned_curve(curves, "Random")
    assert rf["val_acc"].tolist() == [0.5, 0.9, 0.9]
    with pytest.raises(PaperlibError, match="paperlib fuse"):
        pruned_curve(curves)  # no Random-Forest curve yet: says how to get one or choose another


# ---------------------------------------------------------------- the stage on the tiny run

@pytest.fixture
def tiny_copy(tiny_run, tmp_path):
    """The tiny run in a folder of its own (the session fixture's folder is shared by other tests)."""
    folder = tmp_path / "run"
    shutil.copytree(tiny_run.folder / "model", folder / "model")
    return dataclasses.replace(tiny_run, folder=folder)


def test_distill_run_writes_every_mode_and_resumes(tiny_copy, monkeypatch):
    run = tiny_copy
    _curve("Weight-Entropy").to_parquet(run.folder / "curves.parquet")  # kept [0,2,3] / [0,3] / [3]
    run.preset = run.preset.replace(kd_epochs=1)
    df = distill_run(run, depths="all", strategy="Weight-Entropy", verbose=False)
    on_disk = pd.read_parquet(run.folder / "distill.parquet")
    assert len(df) == len(on_disk) == 3 * 3
    assert set(on_disk.columns) == {"dataset", "strategy", "depth", "n_layers", "kept", "mode", "alpha", "val_acc",
                                    "test_acc", "n_params", "bytes", "ats", "best_depth"}
    assert on_disk.groupby("depth")["n_layers"].first().tolist() == [3, 2, 1]
    assert on_disk.loc[on_disk.best_depth, "depth"].unique().tolist() == [2]
    assert on_disk.loc[on_disk["mode"] == "kd", "alpha"].eq(run.preset.kd_alpha).all()
    assert on_disk.loc[on_disk["mode"] == "ce", "alpha"].eq(0.0).all()
    # 'none' = the pruned M_0 as is: compare with the in-memory model run without those layers
    none = on_disk[(on_disk["mode"] == "none") & (on_disk.depth == 2)].iloc[0]
    with layers_removed(run.model, [1, 2]) as m:
        logits = m(input_ids=run.encoded["test"].input_ids, attention_mask=run.encoded["test"].attention_mask).logits
        acc = float((logits.argmax(-1) == run.encoded["test"].labels).float().mean())
        size, n_params = fp32_bytes(m), count_parameters(m)
    assert none["test_acc"] == pytest.approx(acc)
    assert none["bytes"] == size and none["n_params"] == n_params
    assert none["ats"] == pytest.approx(100 * acc / (size / 1e6))
    assert parse_kept(none["kept"]) == [0, 3]
    assert count_parameters(run.model) > n_params  # the teacher itself was left whole
    # a rerun finds every row done and trains nothing
    # predictions: every row on both splits, scoring its accuracies; 'none' equals the pruned forward
    preds = pd.read_parquet(run.folder / "distill_predictions.parquet")
    assert preds["pred"].dtype == np.int16
    for row in on_disk.itertuples():
        for split, acc in (("val", row.val_acc), ("test", row.test_acc)):
            p = preds[(preds.depth == row.depth) & (preds["mode"] == row.mode) & (preds.split == split)]
            assert (p["kept"] == row.kept).all() and p["example"].tolist() == list(range(len(run.encoded[split])))
            assert np.float32((p["pred"].to_numpy() == run.encoded[split].labels.numpy()).mean()) == pytest.approx(acc, abs=1e-7)
    none_pred = preds[(preds.depth == 2) & (preds["mode"] == "none") & (preds.split == "test")]["pred"].to_numpy()
    np.testing.assert_array_equal(none_pred, logits.argmax(-1).numpy())
    # a rerun finds every row done and trains nothing
    monkeypatch.setattr("paperlib.distill.train", lambda *a, **k: pytest.fail("resumed run trained again"))
    again = distill_run(run, depths="all", strategy="Weight-Entropy", verbose=False)
    pd.testing.assert_frame_equal(again, on_disk)


def test_distill_rows_are_keyed_by_kept_layers(tiny_copy, monkeypatch):
    """A refitted curve that keeps other layers at depth 2 makes that depth's rows stale: they are redone,
    the other depths are not."""
    run = tiny_copy
    run.preset = run.preset.replace(kd_epochs=1)
    _curve("Weight-Entropy").to_parquet(run.folder / "curves.parquet")  # kept [0,2,3] / [0,3] / [3]
    distill_run(run, depths="all", strategy="Weight-Entropy", modes=("none",), verbose=False)
    _curve("Weight-Entropy", kept=([0, 2, 3], [2, 3], [3])).to_parquet(run.folder / "curves.parquet")
    from paperlib import distill as module

    loads, real = [], module.load_model
    monkeypatch.setattr(module, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    df = distill_run(run, depths="all", strategy="Weight-Entropy", modes=("none",), verbose=False)
    assert len(loads) == 1  # only the stale depth's student was rebuilt
    assert df.set_index("depth").loc[2, "kept"] == "2,3" and len(df) == 3
    preds = pd.read_parquet(run.folder / "distill_predictions.parquet")
    assert set(preds.loc[preds.depth == 2, "kept"]) == {"2,3"}
