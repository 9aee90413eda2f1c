"""The training recipe of issue 13: classical reference, M_0 epoch selection, recovery learning rate."""

import numpy as np
import pandas as pd
import torch

from paperlib.baselines import tfidf_lr
from paperlib.train import recovery_lr


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
