"""The training recipe (issues 13 and 19): classical reference, M_0 epoch selection and early stopping, the
learning rates, and the compute-matched control M_0 continued."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from paperlib.baselines import tfidf_lr
from paperlib.train import recovery_lr

from support import rf_curve


def _texts(n, seed):
    rng = np.random.default_rng(seed)
    words = {0: ["goal", "match", "team", "score"], 1: ["stock", "market", "bank", "price"]}
    rows = [(" ".join(rng.choice(words[y], 6)) + " the a of", y) for y in rng.integers(0, 2, n)]
    return pd.DataFrame(rows, columns=["text", "label"])


def test_tfidf_lr_separates_disjoint_vocabularies_and_reports_its_test_predictions():
    train, val, test = _texts(60, 0), _texts(20, 1), _texts(30, 2)
    info, pred = tfidf_lr(train, val, test)
    assert info["test_acc"] == 1.0 and info["val_acc"] == 1.0
    assert info["C"] == 1.0  # all C tie on validation: the smallest is kept
    assert len(pred) == len(test) and (pred == test["label"].to_numpy()).all()


def test_tfidf_lr_accuracy_is_the_mean_of_its_predictions():
    train, val, test = _texts(60, 0), _texts(20, 1), _texts(30, 2)
    test = test.assign(label=1 - test["label"])  # flipped test labels: every prediction wrong
    info, pred = tfidf_lr(train, val, test)
    assert info["test_acc"] == float((pred == test["label"].to_numpy()).mean()) == 0.0


def test_recovery_lr_scales_with_the_layers_removed():
    assert recovery_lr(3e-5, 12, 12) == 3e-5
    assert abs(recovery_lr(3e-5, 12, 1) - 3.6e-4) < 1e-12
    assert abs(recovery_lr(1e-4, 6, 3) - 2e-4) < 1e-12


def test_epoch_selection_restores_the_best_epoch(monkeypatch):
    from paperlib import experiment

    model = torch.nn.Linear(2, 2)
    scores, seen = iter([0.5, 0.8, 0.8, 0.6]), []

    def fake_evaluate(m, data, batch_size=128, device=None):
        seen.append({k: v.clone() for k, v in m.state_dict().items()})
        return {"accuracy": next(scores)}

    monkeypatch.setattr(experiment, "evaluate", fake_evaluate)
    select = experiment._EpochSelection(model, None, 8, "cpu")
    for epoch in range(4):
        with torch.no_grad():
            model.weight.add_(1.0)  # a different set of weights after every epoch
        select(epoch)
    select.restore_best()
    assert select.best_epoch == 1 and select.history == [0.5, 0.8, 0.8, 0.6]  # ties keep the earlier epoch
    torch.testing.assert_close(model.weight, seen[1]["weight"], rtol=0, atol=0)


# ---------------------------------------------------------------- a converged M_0: early stopping (issue 19)


def _schedule(lr: float, total: int, n: int) -> list[float]:
    """The documented schedule (train.TrainSettings): linear warm-up over int(0.1 * total) steps, then linear
    decay to 0 at step ``total``; the first ``n`` steps' learning rates."""
    warmup = int(0.1 * total)
    return [lr * (s + 1) / warmup if s < warmup else lr * (total - s) / (total - warmup) for s in range(n)]


class _LearningRates:
    """Every optimizer step's learning rate (a global step pre-hook), read through ``torch.optim``."""

    def __enter__(self):
        self.lrs = []
        self.handle = register_optimizer_step_pre_hook(
            lambda opt, args, kwargs: self.lrs.append(opt.param_groups[0]["lr"])
        )
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_fine_tuning_stops_after_patience_epochs_and_keeps_the_best_epoch(tmp_path, monkeypatch):
    import math

    from paperlib import experiment
    from paperlib.config import get_preset

    from support import write_synthetic

    data = write_synthetic(tmp_path / "synth", n_per_class=40)
    preset = get_preset("tiny", finetune_epochs=8, finetune_patience=2)
    curve, seen, real = [0.5, 0.7, 0.6, 0.7], [], experiment.evaluate

    def fake_evaluate(model, data, batch_size=128, device=None, progress=False):
        """A constructed validation curve for the epochs; the real evaluation for the final metrics."""
        if len(seen) < len(curve):
            seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            return {"accuracy": curve[len(seen) - 1], "loss": 0.0}
        return real(model, data, batch_size, device, progress)

    monkeypatch.setattr(experiment, "evaluate", fake_evaluate)
    with _LearningRates() as spy:
        run = experiment.prepare(str(data), "random:tiny", preset, tmp_path / "runs", device="cpu", progress=False)
    m, per_epoch = run.metrics, math.ceil(len(run.splits.train) / preset.batch_size)
    # best 0.7 after epoch 2; epochs 3 and 4 bring no new best (a tie is none): stop after 4 of at most 8
    assert (m["epochs_run"], m["best_epoch"], m["val_acc_by_epoch"]) == (4, 2, curve)
    assert m["train_steps"] == len(spy.lrs) == 4 * per_epoch
    assert not torch.equal(seen[1]["classifier.weight"], seen[3]["classifier.weight"])  # it trained on after epoch 2
    for name, value in run.model.state_dict().items():
        torch.testing.assert_close(value, seen[1][name], rtol=0, atol=0)  # ... and epoch 2's weights came back
    saved = json.loads((run.folder / "metrics.json").read_text())
    assert (saved["epochs_run"], saved["best_epoch"], saved["val_acc_by_epoch"]) == (4, 2, curve)
    # the schedule spans the 8 epochs at most: stopping after 4 cut its decay short (at about half the peak)
    np.testing.assert_allclose(spy.lrs, _schedule(preset.lr, 8 * per_epoch, 4 * per_epoch), rtol=1e-12)


def test_fine_tuning_without_patience_runs_every_epoch(tmp_path, monkeypatch):
    from paperlib import experiment
    from paperlib.config import get_preset

    from support import write_synthetic

    data = write_synthetic(tmp_path / "synth", n_per_class=40)
    scores = iter([0.9, 0.5, 0.4])  # the best is the first epoch, yet with patience 0 all 3 run
    monkeypatch.setattr(experiment, "evaluate", lambda *a, **k: {"accuracy": next(scores, 0.1), "loss": 0.0})
    run = experiment.prepare(
        str(data), "random:tiny", get_preset("tiny", finetune_epochs=3), tmp_path / "runs", device="cpu", progress=False
    )
    assert (run.metrics["epochs_run"], run.metrics["best_epoch"]) == (3, 1)


def test_learning_rate_scales_with_the_model_width_in_the_paper_preset():
    from paperlib.config import get_preset
    from paperlib.train import TrainSettings

    paper = get_preset("paper")
    assert TrainSettings.finetune(paper, 768).lr == pytest.approx(5e-5)  # BERT-base, MPNet-base
    assert TrainSettings.finetune(paper, 384).lr == pytest.approx(1e-4)  # MiniLM: issue 19's probe
    assert TrainSettings.finetune(get_preset("quick"), 384).lr == 1e-4  # lr_width 0: the preset's lr as is
    students = TrainSettings.recovery(paper, 12, 3)
    assert (students.epochs, students.lr) == (paper.kd_epochs, pytest.approx(paper.kd_lr * 4))


# ---------------------------------------------------------------- the compute-matched control: M_0 continued


def test_m0_continued_gets_exactly_the_students_budget(tiny_run, tmp_path, monkeypatch):
    import dataclasses
    import math
    import shutil

    from paperlib import distill as distill_module
    from paperlib.models import kept_layers

    folder = tmp_path / "run"
    shutil.copytree(tiny_run.folder / "model", folder / "model")
    run = dataclasses.replace(tiny_run, folder=folder, preset=tiny_run.preset.replace(kd_epochs=2))
    rf_curve(val=(0.5, 0.9, 0.6), kept=("0,2,3", "0,3", "3")).to_parquet(folder / "curves.parquet")
    trained, real = {}, distill_module.train

    def spy(model, data, settings, **kwargs):
        starts_at_m0 = all(
            torch.equal(a, b) for a, b in zip(model.state_dict().values(), run.model.state_dict().values())
        )
        with _LearningRates() as rates:
            info = real(model, data, settings, **kwargs)
        logits, labels = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
        loss = float(kwargs["loss_fn"](logits, {"labels": labels}, torch.arange(5)))
        trained[len(kept_layers(model))] = (settings, rates.lrs, info["steps"], starts_at_m0, loss, (logits, labels))
        return info

    monkeypatch.setattr(distill_module, "train", spy)
    df = distill_module.distill_run(run, depths="2", strategy="Random-Forest", modes=("none", "ce"), verbose=False)
    control, student = trained[4], trained[2]  # M_0 continued keeps all 4 layers; the student at k = 2 keeps 2
    steps = run.preset.kd_epochs * math.ceil(len(run.encoded["train"]) / run.preset.batch_size)
    assert control[2] == student[2] == len(control[1]) == len(student[1]) == steps
    assert control[0] == student[0].replace(lr=control[0].lr)  # epochs, batch, warm-up, weight decay, seed
    assert control[0].lr == run.preset.kd_lr and student[0].lr == pytest.approx(2 * run.preset.kd_lr)  # 4 / 2 layers
    np.testing.assert_allclose(control[1], _schedule(run.preset.kd_lr, steps, steps), rtol=1e-12)
    np.testing.assert_allclose(np.array(student[1]) / 2, control[1], rtol=1e-12)  # the same schedule, lr x L/n_kept
    assert control[3]  # it starts from M_0's weights
    for loss, (logits, labels) in (control[4:], student[4:]):  # alpha = 0: plain cross-entropy on the labels
        assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)))
    row = df[df.strategy == "M_0"].iloc[0]
    assert (row.depth, row["mode"], row.alpha, row.n_layers, bool(row.best_depth)) == (0, "ce", 0.0, 4, False)
    preds = pd.read_parquet(folder / "distill_predictions.parquet")
    for split, acc in (("val", row.val_acc), ("test", row.test_acc)):
        p = preds[(preds.strategy == "M_0") & (preds.split == split)]
        assert p["example"].tolist() == list(range(len(run.encoded[split])))
        assert float((p["pred"].to_numpy() == run.encoded[split].labels.numpy()).mean()) == pytest.approx(acc)
    # resumable like every row: a rerun trains nothing
    monkeypatch.setattr(distill_module, "train", lambda *a, **k: pytest.fail("a finished row was trained again"))
    again = distill_module.distill_run(run, depths="2", strategy="Random-Forest", modes=("none", "ce"), verbose=False)
    pd.testing.assert_frame_equal(again, df)
