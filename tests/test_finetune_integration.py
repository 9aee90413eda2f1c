"""Integration: `paperlib finetune` of the embedded MiniLM on the embedded BBC News with the quick preset
(about 75 s on an idle 2-core CPU).  Not marked slow on purpose: it runs with the README test command."""

from __future__ import annotations

import json

import pytest

from paperlib import cli
from paperlib.config import get_preset
from paperlib.data import load_splits

CLASSES = ["business", "entertainment", "politics", "sports", "tech"]


@pytest.fixture
def quick_run(quick_minilm):
    """The session's fine-tuned MiniLM (tests/conftest.py: one `paperlib finetune` shared by the integration tests)."""
    return quick_minilm


def test_minilm_on_bbc_news_reaches_90_percent(quick_run, capsys):
    folder, _ = quick_run
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test_acc"] >= 0.90, metrics
    assert metrics["n_layers"] == 6 and metrics["device"] == "cpu"
    config = json.loads((folder / "config.json").read_text())
    assert config["class_names"] == CLASSES and config["sizes"] == {
        "train": 800,
        "val": 200,
        "test": 400,
    }  # val: 10 % of 1780 = 178 is below min(cap 200, 500), so 200 rows of train (SPEC 2)


def test_saved_run_loads_in_a_plain_transformers_pipeline(quick_run):
    from transformers import pipeline

    folder, _ = quick_run
    classify = pipeline("text-classification", model=str(folder / "model"), device="cpu")
    sport = classify("The striker scored twice as the league leaders won the cup final at the stadium.")[0]
    print(sport)
    assert sport["label"] == "sports"  # a real class name, not LABEL_3
    # the pipeline agrees with the labels about as well as the run's own evaluation did
    test = load_splits("bbc_news", get_preset("quick")).test.iloc[:120]
    predicted = [
        r["label"]
        for r in classify(
            test["text"].tolist(), truncation=True, max_length=get_preset("quick").max_length, batch_size=32
        )
    ]
    assert set(predicted) <= set(CLASSES)
    accuracy = sum(p == CLASSES[y] for p, y in zip(predicted, test["label"])) / len(test)
    assert accuracy >= 0.85


def test_rerun_reuses_the_saved_model(quick_run, capsys, monkeypatch):
    import paperlib.experiment as experiment

    folder, argv = quick_run
    capsys.readouterr()

    def no_training(*args, **kwargs):
        raise AssertionError("a rerun with the same config must reuse the model")

    monkeypatch.setattr(experiment, "train", no_training)
    cli.main(argv)
    out = capsys.readouterr().out
    metrics = json.loads((folder / "metrics.json").read_text())
    assert f"test acc {metrics['test_acc']:.4f}" in out


def test_load_run_rebuilds_the_saved_run_without_training(tiny_run, monkeypatch, tmp_path):
    import torch

    import paperlib.experiment as experiment
    from paperlib.errors import PaperlibError

    monkeypatch.setattr(experiment, "train", lambda *a, **k: pytest.fail("load_run must not train"))
    runs = tiny_run.folder.parents[1]  # the runs folder: <runs>/seed-0/synth
    data = runs.parent / "synth"  # the data folder the fixture fine-tuned on
    run = experiment.load_run(runs, str(data), device="cpu")
    assert (
        run.preset == tiny_run.preset
    )  # the overrides the run was made with (15 epochs, lr 3e-3), not 'tiny' as named
    assert run.preset.finetune_epochs == 15 and run.metrics == tiny_run.metrics
    for (name, a), b in zip(run.model.state_dict().items(), tiny_run.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    for split in ("train", "val", "test"):
        torch.testing.assert_close(run.encoded[split].input_ids, tiny_run.encoded[split].input_ids)
    assert experiment.load_run(runs, str(data), device="cpu", seed=0) is run  # cached in-process
    with pytest.raises(PaperlibError, match="paperlib finetune"):
        experiment.load_run(tmp_path, "nothing_here")
