"""Saved students (paperlib.export) and their measured speed (paperlib.latency), on the tiny run.

The saved checkpoint is checked through plain transformers (``pipeline``), its card through
``huggingface_hub.ModelCard.load``, and the card's accuracy and intervals against a bootstrap computed
here from the prediction files.  Speed is never asserted (benchmarks/ measures it): the latency file is
checked for what it must hold and for timing the architectures it names."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from paperlib.errors import PaperlibError

from support import rf_curve


@pytest.fixture
def tiny_copy(tiny_run, tmp_path):
    """The tiny run in a folder of its own, with its config, metrics and classical reference."""
    from paperlib.baselines import baseline_run

    folder = tmp_path / "runs" / tiny_run.folder.name
    shutil.copytree(tiny_run.folder / "model", folder / "model")
    for name in ("config.json", "metrics.json"):
        shutil.copy2(tiny_run.folder / name, folder / name)
    run = dataclasses.replace(tiny_run, folder=folder, preset=tiny_run.preset.replace(kd_epochs=1))
    baseline_run(run)
    rf_curve().to_parquet(folder / "curves.parquet")  # k* = 2 (kept 0,3)
    return run


def _interval_text(student: np.ndarray, other: np.ndarray) -> str:
    """The paired percentile bootstrap computed directly: 2,000 resamples of the examples, default_rng(0)."""
    n = len(student)
    draws = np.random.default_rng(0).integers(0, n, size=(2000, n))
    d = student.astype(float) - other.astype(float)
    lo, hi = np.quantile(d[draws].mean(1), [0.025, 0.975])
    return f"{100 * d.mean():+.2f} points [{100 * lo:+.2f}, {100 * hi:+.2f}]"


def test_the_saved_student_reloads_through_pipeline_and_its_card_states_its_accuracy(tiny_copy, monkeypatch):
    from huggingface_hub import ModelCard
    from transformers import pipeline

    from paperlib import distill as module
    from paperlib.distill import distill_run

    run = tiny_copy
    kept_students = []
    real_save = module.export.save_student
    monkeypatch.setattr(
        module.export, "save_student", lambda r, s, *a, **k: kept_students.append(s) or real_save(r, s, *a, **k)
    )
    df = distill_run(run, depths="all", modes=("none", "kd"), verbose=False)
    folder = run.folder / "students" / "random-forest-k2-kd"
    assert sorted(p.name for p in (run.folder / "students").iterdir()) == ["random-forest-k2-kd"]  # k* only
    # the checkpoint through plain transformers: the same predictions as the student in memory
    texts = run.splits.test["text"].astype(str).tolist()
    classify = pipeline("text-classification", model=str(folder), device="cpu")
    names = [str(n) for n in run.splits.class_names]
    saved = np.array([names.index(out["label"]) for out in classify(texts, truncation=True, batch_size=16)])
    student = kept_students[0]
    with torch.inference_mode():
        enc = run.encoded["test"]
        memory = student(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits.argmax(-1).numpy()
    np.testing.assert_array_equal(saved, memory)
    assert classify.model.config.id2label == dict(enumerate(names)) and classify.model.config.kept_layers == [0, 3]
    # the card: metadata, and the accuracy and intervals recomputed here from the prediction files
    card = ModelCard.load(folder / "README.md")
    assert card.data.pipeline_tag == "text-classification" and card.data.library_name == "transformers"
    assert card.data.base_model is None  # random:tiny has no hub model to name
    assert card.data.datasets == [run.splits.name]
    preds = pd.read_parquet(run.folder / "distill_predictions.parquet")
    kd = preds[(preds["mode"] == "kd") & (preds["depth"] == 2) & (preds["split"] == "test")].sort_values("example")
    np.testing.assert_array_equal(kd["pred"].to_numpy(), memory)
    labels = enc.labels.numpy()
    with torch.inference_mode():
        m0 = run.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits.argmax(-1).numpy()
    baseline = pd.read_parquet(run.folder / "baseline_predictions.parquet").sort_values("index")
    correct = kd["pred"].to_numpy() == labels
    acc = correct.mean()
    assert df.set_index(["depth", "mode"]).loc[(2, "kd"), "test_acc"] == pytest.approx(acc)
    assert f"| this model | {acc:.4f} |" in card.text
    assert _interval_text(correct, m0 == labels) in card.text
    assert _interval_text(correct, baseline["pred"].to_numpy() == labels) in card.text
    assert card.data.eval_results[0].metric_value == pytest.approx(acc, abs=1e-6)
    assert "original layers 0, 3 of 0..3 (removed: 1, 2)" in card.text
    assert "paperlib distill --dataset" in card.text and "--save-students best" in card.text
    # its speed row in the card comes from latency.parquet
    lat = pd.read_parquet(run.folder / "latency.parquet")
    row = lat[(lat["kept"] == "0,3") & (lat["device"] == "cpu")].iloc[0]
    assert f"| {row['median_ms']:.2f} | {row['speedup']:.2f}x | 2.00x |" in card.text


def test_a_rerun_keeps_saved_students_and_retrains_only_a_missing_one(tiny_copy, monkeypatch):
    from paperlib import distill as module
    from paperlib.distill import distill_run

    run = tiny_copy
    distill_run(run, depths="all", modes=("none", "kd"), save_students="1,3", verbose=False)
    students = run.folder / "students"
    assert sorted(p.name for p in students.iterdir()) == ["random-forest-k1-kd", "random-forest-k3-kd"]
    real_loop, real_train, real_save = module.train, module.distill, module.export.save_student
    monkeypatch.setattr(module, "train", lambda *a, **k: pytest.fail("a saved student was trained again"))
    monkeypatch.setattr(module.export, "save_student", lambda *a, **k: pytest.fail("a saved student was saved again"))
    distill_run(run, depths="all", modes=("none", "kd"), save_students="1,3", verbose=False)
    shutil.rmtree(students / "random-forest-k3-kd")
    monkeypatch.setattr(module, "train", real_loop)
    trained, saved = [], []
    monkeypatch.setattr(module, "distill", lambda *a, **k: trained.append(k["desc"]) or real_train(*a, **k))
    monkeypatch.setattr(
        module.export, "save_student", lambda *a, **k: saved.append(a[2]["depth"]) or real_save(*a, **k)
    )
    df = distill_run(run, depths="all", modes=("none", "kd"), save_students="1,3", verbose=False)
    assert trained == ["kd k=3"] and saved == [3]  # only the missing one, so the saved model is its row's
    assert len(df) == 6 and (students / "random-forest-k3-kd" / "README.md").is_file()
    with pytest.raises(PaperlibError, match="does not distil"):
        distill_run(run, depths="best", modes=("kd",), save_students="3", verbose=False)


def test_latency_times_each_architecture_it_names(tiny_copy):
    """Each row is timed on the layers it names: forward hooks count the calls of every original layer."""
    from paperlib.latency import measure
    from paperlib.models import get_layers

    run = tiny_copy
    calls = {}
    hooks = [
        layer.register_forward_hook(lambda m, i, o, idx=idx: calls.__setitem__(idx, calls.get(idx, 0) + 1))
        for idx, layer in enumerate(get_layers(run.model))
    ]
    try:
        df = measure(run.model, run.encoded["test"], {1: [0, 2, 3], 3: [3]}, repeats=4, warmup=1, n_inputs=2)
    finally:
        for h in hooks:
            h.remove()
    rounds = 4 + 1
    # layer 3 is in every architecture, 0 in M_0 and k=1, 1 in M_0 only
    assert calls == {0: 2 * rounds, 1: rounds, 2: 2 * rounds, 3: 3 * rounds}
    assert df["depth"].tolist() == [0, 1, 3] and df["n_layers"].tolist() == [4, 3, 1]
    assert df["kept"].tolist() == ["0,1,2,3", "0,2,3", "3"] and (df["device"] == "cpu").all()
    assert (df["threads"] == torch.get_num_threads()).all() and (df["batch"] == 1).all()
    np.testing.assert_allclose(df["speedup"], df["median_ms"].iloc[0] / df["median_ms"])
    np.testing.assert_allclose(df["layer_ratio"], [1.0, 4 / 3, 4.0])
    np.testing.assert_allclose(df["throughput"], 1000 / df["median_ms"])
    lengths = run.encoded["test"].attention_mask[:2].sum(1).float()
    assert df["tokens"].iloc[0] == pytest.approx(float(lengths.mean()))  # batch 1: each text at its own length
    assert next(run.model.parameters()).device.type == "cpu" and len(get_layers(run.model)) == 4  # left whole


def test_save_policies_and_a_bad_one_is_one_error_line(tmp_path):
    from paperlib.export import save_depths, student_slug

    assert save_depths("best", [1, 3, 5], 3) == [3] and save_depths("all", [5, 1], 3) == [1, 5]
    assert save_depths("none", [1, 3], 3) == [] and save_depths("5,1", [1, 3, 5], 3) == [1, 5]
    assert student_slug("Random-Forest (transfer)", 2) == "random-forest-transfer-k2-kd"
    with pytest.raises(PaperlibError, match="--save-students"):
        save_depths("k*", [1], 1)
    done = subprocess.run(
        [sys.executable, "-m", "paperlib", "distill", "--dataset", "bbc_news", "--save-students", "best,2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: --save-students") and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_accuracy_speed_plot_puts_each_student_at_its_own_size_and_time():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paperlib import plots

    distill = pd.DataFrame(
        [
            {"depth": k, "kept": kept, "mode": mode, "test_acc": acc - 0.01 * k, "bytes": b}
            for k, kept, b in ((1, "0,2,3", 3_000_000), (3, "3", 1_000_000))
            for mode, acc in (("kd", 0.9), ("none", 0.7))
        ]
    )
    latency = pd.DataFrame(
        {
            "depth": [0, 1, 3, 0, 1, 3],
            "kept": ["0,1,2,3", "0,2,3", "3"] * 2,
            "device": ["cpu"] * 3 + ["cuda"] * 3,
            "batch": [1] * 3 + [512] * 3,
            "median_ms": [8.0, 6.0, 2.0, 30.0, 25.0, 9.0],
        }
    )
    fig = plots.accuracy_speed_plot(distill, latency, original_acc=0.95, original_bytes=4_000_000, floor_acc=0.6)
    size, speed = fig.axes
    kd = {ax: next(l for l in ax.get_lines() if l.get_label().startswith("KD")) for ax in (size, speed)}
    np.testing.assert_allclose(kd[size].get_xdata(), [1.0, 3.0])  # MB, sorted by size: k=3 then k=1
    np.testing.assert_allclose(kd[size].get_ydata(), [0.87, 0.89])
    np.testing.assert_allclose(kd[speed].get_xdata(), [2.0, 6.0])  # the CPU times of those kept layers
    np.testing.assert_allclose(kd[speed].get_ydata(), [0.87, 0.89])
    star = next(l for l in speed.get_lines() if l.get_label().startswith("original"))
    assert list(star.get_xdata()) == [8.0] and list(star.get_ydata()) == [0.95]
    assert "batch 1" in speed.get_xlabel()
    plt.close(fig)
    fig = plots.accuracy_speed_plot(distill, latency, 0.95, 4_000_000, device="cuda")
    assert sorted(next(l for l in fig.axes[1].get_lines() if l.get_label().startswith("KD")).get_xdata()) == [9, 25]
    plt.close(fig)
    with pytest.raises(PaperlibError, match="no 'mps' rows"):
        plots.accuracy_speed_plot(distill, latency, 0.95, 4_000_000, device="mps")
