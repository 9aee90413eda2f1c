"""Knowledge distillation (SPEC 6): the loss by hand, the cached teacher, the stage's rows, DDP sharding,
and one real check that distillation helps a pruned MiniLM."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from paperlib.distill import (
    best_depth,
    distill_run,
    kd_loss,
    kd_loss_fn,
    parse_depths,
    parse_kept,
    pruned_curve,
    teacher_logits,
)
from paperlib.errors import PaperlibError
from paperlib.models import count_parameters, fp32_bytes, layers_removed
from paperlib.train import TrainSettings

from support import rf_curve


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


# ------------------------------------------------- the teacher's soft labels carry what noisy labels lack


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
    from paperlib.tokens import Encoded

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
    from paperlib.distill import distill
    from paperlib.tokens import Encoded
    from paperlib.train import predict_logits, train

    clean, test = _key_token_data(240, 0), _key_token_data(300, 1)
    accuracy = lambda m: float((predict_logits(m, test, device="cpu").argmax(-1) == test.labels).float().mean())
    teacher = _BagOfWords(seed=1)
    train(teacher, clean, TrainSettings(epochs=10, lr=3e-2, batch_size=32), device="cpu", progress=False)
    assert accuracy(teacher) > 0.95  # precondition: the teacher knows the task
    shifted = torch.from_numpy(np.random.default_rng(2).random(len(clean)) < 0.6)
    noisy = Encoded(
        clean.input_ids, clean.attention_mask, torch.where(shifted, (clean.labels + 1) % 3, clean.labels), clean.lengths
    )
    logits = predict_logits(teacher, clean, device="cpu")
    acc = {}
    for alpha in (0.5, 0.0):
        student = _BagOfWords(seed=2)
        distill(
            student,
            noisy,
            logits if alpha else None,
            TrainSettings(epochs=10, lr=3e-2, batch_size=32),
            alpha=alpha,
            temperature=2.0,
            device="cpu",
            progress=False,
        )
        acc[alpha] = accuracy(student)
    # measured (torch 2.13 CPU): KD 0.84, control 0.39 (it mostly learns the shifted labels)
    assert acc[0.0] < 0.6 and acc[0.5] > acc[0.0] + 0.3, acc


# ---------------------------------------------------------------- curve handling


def test_best_depth_takes_the_highest_val_acc_and_the_smallest_k_on_ties():
    assert best_depth(rf_curve(val=(0.5, 0.9, 0.9))) == 2
    assert best_depth(rf_curve(val=(0.95, 0.9, 0.9))) == 1
    assert parse_depths("best", rf_curve()) == [2]
    assert parse_depths("all", rf_curve()) == [1, 2, 3]
    assert parse_depths("3,1", rf_curve()) == [1, 3]
    with pytest.raises(PaperlibError, match="not on the curve"):
        parse_depths("7", rf_curve())


def test_depth_policies_pick_the_documented_steps():
    # steps 1..5 (a 6-layer model), k* = 2 (the first maximum of val_acc)
    steps = lambda val: pd.DataFrame({"step": range(1, len(val) + 1), "val_acc": list(val)})
    curve = steps((0.5, 0.9, 0.9, 0.4, 0.3))
    assert parse_depths("all", curve) == [1, 2, 3, 4, 5]
    assert parse_depths("every_other", curve) == [1, 2, 3, 5]  # odd k plus k* = 2
    assert parse_depths("three", curve) == [2, 3, 5]  # k*, the middle (3 of 1..5), the deepest (5)
    assert parse_depths("best", curve) == [2]
    # steps 1..11 (12 layers), k* = 11: every_other is the six odd k, k* already among them
    twelve = steps([0.1 * i for i in range(1, 12)])
    assert parse_depths("every_other", twelve) == [1, 3, 5, 7, 9, 11]
    assert parse_depths("three", twelve) == [6, 11]  # k* is the deepest: two distinct depths
    with pytest.raises(PaperlibError, match="every_other"):
        parse_depths("most", curve)


def test_presets_choose_a_depth_policy_and_reject_a_bad_one():
    from paperlib.config import get_preset

    assert get_preset("quick").distill_depths == "three"
    assert get_preset("paper").distill_depths in ("all", "every_other")
    assert get_preset("tiny", distill_depths="1,3").distill_depths == "1,3"
    with pytest.raises(PaperlibError, match="distill_depths"):
        get_preset("quick", distill_depths="most")


def test_parse_kept_reads_every_representation():
    assert parse_kept([0, 3]) == parse_kept(np.array([0, 3])) == parse_kept("[0, 3]") == parse_kept("0,3") == [0, 3]


def test_pruned_curve_picks_the_strategy_and_its_lowest_seed():
    curves = pd.concat(
        [rf_curve("Random", seed=1, val=(0.1, 0.2, 0.3)), rf_curve("Random", seed=0), rf_curve("Weight-Entropy")]
    )
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
    rf_curve("Weight-Entropy").to_parquet(run.folder / "curves.parquet")  # kept [0,2,3] / [0,3] / [3]
    run.preset = run.preset.replace(kd_epochs=1)
    df = distill_run(run, depths="all", strategy="Weight-Entropy", verbose=False)
    on_disk = pd.read_parquet(run.folder / "distill.parquet")
    assert len(df) == len(on_disk) == 3 * 3 + 1  # 3 depths x 3 modes, and M_0 continued
    assert set(on_disk.columns) == {
        "dataset",
        "strategy",
        "depth",
        "n_layers",
        "kept",
        "mode",
        "alpha",
        "val_acc",
        "test_acc",
        "n_params",
        "bytes",
        "ats",
        "best_depth",
    }
    assert on_disk.groupby("depth")["n_layers"].first().tolist() == [4, 3, 2, 1]  # depth 0: M_0 continued
    control = on_disk[on_disk.strategy == "M_0"]
    assert control[["depth", "mode", "kept", "alpha", "best_depth"]].values.tolist() == [
        [0, "ce", "0,1,2,3", 0.0, False]
    ]
    assert control["n_params"].iloc[0] == count_parameters(run.model)  # the unpruned model, every layer kept
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
            assert np.float32((p["pred"].to_numpy() == run.encoded[split].labels.numpy()).mean()) == pytest.approx(
                acc, abs=1e-7
            )
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
    rf_curve("Weight-Entropy").to_parquet(run.folder / "curves.parquet")  # kept [0,2,3] / [0,3] / [3]
    distill_run(run, depths="all", strategy="Weight-Entropy", modes=("none",), verbose=False)
    rf_curve("Weight-Entropy", kept=([0, 2, 3], [2, 3], [3])).to_parquet(run.folder / "curves.parquet")
    from paperlib import distill as module

    loads, real = [], module.pruned_copy
    monkeypatch.setattr(module, "pruned_copy", lambda *a, **k: loads.append(a) or real(*a, **k))
    df = distill_run(run, depths="all", strategy="Weight-Entropy", modes=("none",), verbose=False)
    assert len(loads) == 1  # only the stale depth's student was rebuilt
    assert df.set_index("depth").loc[2, "kept"] == "2,3" and len(df) == 3
    preds = pd.read_parquet(run.folder / "distill_predictions.parquet")
    assert set(preds.loc[preds.depth == 2, "kept"]) == {"2,3"}


def test_early_stopping_stops_after_patience_epochs_and_keeps_the_best_weights(tiny_run, monkeypatch):
    from paperlib.distill import distill

    student = copy.deepcopy(tiny_run.model)
    scores, seen = iter([0.5, 0.7, 0.6, 0.7, 0.9, 0.9]), []

    def fake_evaluate(model, data, batch_size=128, device=None):  # a known val curve; record each epoch's weights
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return {"accuracy": next(scores)}

    monkeypatch.setattr("paperlib.distill.evaluate", fake_evaluate)
    info = distill(
        student,
        tiny_run.encoded["train"],
        None,
        TrainSettings(epochs=6, lr=1e-3, batch_size=16),
        alpha=0.0,
        device="cpu",
        val_data=tiny_run.encoded["val"],
        patience=2,
    )
    # best 0.7 after epoch 2 (index 1); epochs 3 and 4 do not beat it (0.7 ties) -> stop after 4 of 6
    assert (info["epochs_run"], info["best_epoch"], info["val_acc"]) == (4, 1, 0.7)
    assert len(seen) == 4 and info["steps"] == 4 * math.ceil(len(tiny_run.encoded["train"]) / 16)
    assert not torch.equal(
        seen[1]["classifier.weight"], seen[3]["classifier.weight"]
    )  # training went on after the best
    for name, value in student.state_dict().items():
        torch.testing.assert_close(value, seen[1][name], rtol=0, atol=0)  # ... and the best epoch's weights came back
    with pytest.raises(PaperlibError, match="patience"):
        from paperlib.config import get_preset

        get_preset("tiny", kd_patience=-1)


def test_distill_run_without_curves_says_what_to_run(tiny_copy):
    with pytest.raises(PaperlibError, match="paperlib prune"):
        distill_run(tiny_copy)


# ---------------------------------------------------------------- DDP: every rank, same step count, disjoint batches


def _ddp_worker(rank, world, port, out_dir):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        PAPERLIB_QUIET="1",
    )
    from transformers import AutoModelForSequenceClassification

    from paperlib.models import RANDOM_MODELS
    from paperlib.tokens import Encoded
    from paperlib.train import train

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(RANDOM_MODELS["tiny"]())
    g = torch.Generator().manual_seed(1)
    n, width = 70, 12  # 70 examples / batch 8 = 9 batches: 2 ranks cannot share the 9th
    lengths = torch.randint(3, width + 1, (n,), generator=g)
    mask = (torch.arange(width)[None] < lengths[:, None]).long()
    data = Encoded(
        torch.randint(5, 1000, (n, width), generator=g) * mask, mask, torch.randint(0, 2, (n,), generator=g), lengths
    )
    seen = []

    def loss_fn(logits, batch, index):
        seen.append(index.tolist())
        return torch.nn.functional.cross_entropy(logits, batch["labels"])

    info = train(model, data, TrainSettings(epochs=1, lr=1e-3, batch_size=8), loss_fn=loss_fn, device="cpu")
    torch.save(
        {"seen": seen, "steps": info["steps"], "params": [p.detach().clone() for p in model.parameters()]},
        f"{out_dir}/rank{rank}.pt",
    )
    torch.distributed.destroy_process_group()


def test_train_under_two_ranks_shards_batches_and_keeps_replicas_equal(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["steps"] == r1["steps"] == 4  # floor(9 batches / 2 ranks), the same on both
    ex0 = {i for b in r0["seen"] for i in b}
    ex1 = {i for b in r1["seen"] for i in b}
    assert not ex0 & ex1  # no example on both ranks within the epoch
    assert len(r0["seen"]) == len(r1["seen"]) == 4
    for a, b in zip(r0["params"], r1["params"]):
        torch.testing.assert_close(a, b)  # DDP averaged the gradients: the replicas stayed equal


# ---------------------------------------------------------------- the real thing, once


def test_distillation_beats_the_pruned_minilm_on_bbc_news(quick_minilm, tmp_path, monkeypatch):
    """MiniLM fine-tuned on bbc_news (quick caps), pruned to 2 of 6 layers: KD's test accuracy beats no training."""
    import paperlib.experiment as experiment
    from paperlib.config import get_preset

    from support import copy_run

    runs = tmp_path / "runs"
    copy_run(quick_minilm[0], runs / "seed-0")  # the session's M_0, in a runs folder of this test's own
    monkeypatch.setattr(
        experiment, "train", lambda *a, **k: pytest.fail("the shared M_0 must be loaded, not retrained")
    )
    run = experiment.prepare("bbc_news", "minilm", get_preset("quick"), runs, device="cpu", progress=False)
    curve = pd.DataFrame(
        {
            "strategy": "Random-Forest",
            "seed": 0,
            "step": [4],
            "removed": [4],
            "kept": [[0, 5]],
            "val_acc": [0.0],
            "test_acc": [0.0],
            "n_params": 0,
            "bytes": 0,
        }
    )
    curve.to_parquet(run.folder / "curves.parquet")
    df = distill_run(run, depths="4", modes=("none", "kd"), verbose=False).set_index("mode")
    assert df.loc["kd", "n_layers"] == 2
    # measured here (torch 2.13 CPU): none 0.8675, kd 0.9075 test accuracy
    assert df.loc["kd", "test_acc"] > df.loc["none", "test_acc"], df[["val_acc", "test_acc"]]
