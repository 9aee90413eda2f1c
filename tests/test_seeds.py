"""Seeds as a run dimension (issue 19): one run folder per pipeline seed, splits shared by every seed, an M_0 per
seed, a killed run resuming seed by seed, Random's generators, what a run's config records, the notebooks' setup."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_cli import run_cli

from paperlib.experiment import load_run, run_folder

from support import rf_curve, write_synthetic


def stage(command, data, out, *extra, model="random:tiny"):
    return [command, "--dataset", data, "--model", model, "--preset", "tiny", "--out", out, "--quiet", *extra]


def random_order(seed: int, layers: list[int]) -> list[int]:
    """Random's documented rule (strategies.Random): at each step a uniform draw among the sorted remaining layers
    by ``numpy.random.default_rng(seed)``, until one layer is left."""
    rng, kept, order = np.random.default_rng(seed), sorted(layers), []
    for _ in range(len(layers) - 1):
        layer = int(rng.choice(np.array(kept)))
        order.append(layer)
        kept.remove(layer)
    return order


def test_run_folder_nests_the_dataset_in_its_seed_root(tmp_path):
    assert run_folder(tmp_path, "bbc_news", 3) == tmp_path / "seed-3" / "bbc_news"
    assert run_folder(tmp_path, str(tmp_path / "data" / "mine")) == tmp_path / "seed-0" / "mine"


def test_two_seeds_share_the_splits_and_fine_tune_their_own_m0(tmp_path, capsys):
    data = write_synthetic(tmp_path / "synth", n_per_class=40)
    out = tmp_path / "runs"
    code, _, err = run_cli(stage("prune", data, out, "--seed", "4", "--seeds", "2", "--strategies", "Random"), capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["seed-4", "seed-5"]
    folders = [out / f"seed-{s}" / "synth" for s in (4, 5)]
    configs = [json.loads((f / "config.json").read_text()) for f in folders]
    assert [c["seed"] for c in configs] == [c["preset"]["seed"] for c in configs] == [4, 5]
    assert [c["split_seed"] for c in configs] == [0, 0]
    # the same examples in every seed: labels, test texts and the data fingerprint
    pd.testing.assert_frame_equal(*(pd.read_parquet(f / "labels.parquet") for f in folders))
    assert configs[0]["data_fingerprint"] == configs[1]["data_fingerprint"]
    tests = [load_run(out, str(data), seed=s, device="cpu").splits.test["text"].tolist() for s in (4, 5)]
    assert tests[0] == tests[1]
    # ... but each seed fine-tuned its own M_0 (another head initialisation and batch order)
    from safetensors.torch import load_file

    heads = [load_file(f / "model" / "model.safetensors")["classifier.weight"] for f in folders]
    assert not torch.equal(*heads)
    # Random replicate r of seed S draws from default_rng(1000 S + r)
    for seed, folder in zip((4, 5), folders):
        curves = pd.read_parquet(folder / "curves.parquet")
        for r, curve in curves[curves.strategy == "Random"].groupby("seed"):
            assert curve.sort_values("step")["removed"].tolist() == random_order(1000 * seed + r, [0, 1, 2, 3])


def test_seed_zero_keeps_the_random_curves_of_runs_before_seeds(tiny_run):
    from paperlib.pruning import Pruner, prune_curve

    pruner = Pruner(tiny_run, progress=False)
    for r in range(3):
        curve, _ = prune_curve(pruner, "Random", seed=r)
        assert curve["removed"].tolist() == random_order(r, [0, 1, 2, 3])  # default_rng(r), as before seeds
    other = Pruner(dataclasses.replace(tiny_run, preset=tiny_run.preset.replace(seed=7)), progress=False)
    curve, _ = prune_curve(other, "Random", seed=1)
    assert curve["removed"].tolist() == random_order(7001, [0, 1, 2, 3])


def test_a_killed_run_redoes_only_the_unfinished_seed(tmp_path, capsys, monkeypatch):
    import paperlib.experiment as experiment

    data = write_synthetic(tmp_path / "synth", n_per_class=40)
    out = tmp_path / "runs"
    real, seeds_trained = experiment.train, []

    def train_until_seed_1(model, data, settings, **kwargs):
        seeds_trained.append(settings.seed)
        if settings.seed == 1:
            raise KeyboardInterrupt  # Ctrl-C while the second seed fine-tunes
        return real(model, data, settings, **kwargs)

    monkeypatch.setattr(experiment, "train", train_until_seed_1)
    code, _, err = run_cli(stage("finetune", data, out, "--seeds", "2"), capsys)
    assert code == 130 and seeds_trained == [0, 1], err
    assert (out / "seed-0" / "synth" / "metrics.json").is_file() and not (out / "seed-1" / "synth").exists()
    stamp = (out / "seed-0" / "synth" / "model" / "model.safetensors").stat().st_mtime_ns

    seeds_trained.clear()
    monkeypatch.setattr(experiment, "train", lambda m, d, s, **k: seeds_trained.append(s.seed) or real(m, d, s, **k))
    code, stdout, err = run_cli(stage("finetune", data, out, "--seeds", "2"), capsys)
    assert code == 0 and seeds_trained == [1], err  # seed 0 was loaded, not trained again
    assert (out / "seed-0" / "synth" / "model" / "model.safetensors").stat().st_mtime_ns == stamp
    assert stdout.count("fine-tuned") == 2 and (out / "seed-1" / "synth" / "metrics.json").is_file()


@pytest.mark.parametrize("extra", [["--seeds", "0"], ["--seed", "-1"]])
def test_a_bad_seed_range_is_one_error_line_and_writes_nothing(extra, tmp_path, capsys):
    data = write_synthetic(tmp_path / "synth", n_per_class=40)
    code, _, err = run_cli(stage("finetune", data, tmp_path / "out", *extra), capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "seed" in lines[0], err
    assert not (tmp_path / "out").exists()


def test_a_run_records_the_model_seed_and_depths_it_used(tmp_path, capsys):
    """--model X --depths Y: config.json names X (also as the preset's model) and the seed; distill.json names Y."""
    data = write_synthetic(tmp_path / "synth", n_per_class=40)
    out = tmp_path / "runs"
    argv = ("--seed", "2")
    code, _, err = run_cli(stage("finetune", data, out, *argv, model="random:bert-tiny"), capsys)
    assert code == 0, err
    folder = out / "seed-2" / "synth"
    config = json.loads((folder / "config.json").read_text())
    assert config["model"] == config["preset"]["model"] == "random:bert-tiny"  # the tiny preset's is random:tiny
    assert (config["seed"], config["preset"]["seed"], config["split_seed"]) == (2, 2, 0)
    assert config["finetune"] == {
        "epochs": 1,
        "lr": 1e-3,
        "batch_size": 16,
        "warmup_ratio": 0.1,
        "weight_decay": 0.01,
        "seed": 2,
    }  # the tiny preset's recipe (config.PRESETS)
    # an RF curve to distil (4 layers: k = 1, 2, 3; the best validation accuracy at k = 2)
    rf_curve(val=(0.5, 0.9, 0.6), kept=("0,2,3", "0,3", "3")).to_parquet(folder / "curves.parquet")
    code, _, err = run_cli(stage("distill", data, out, *argv, "--depths", "1,3", model="random:bert-tiny"), capsys)
    assert code == 0, err
    assert json.loads((folder / "distill.json").read_text()) == {
        "Random-Forest": {"requested": ["1,3"], "depths": [1, 3], "k_star": 2}
    }
    rows = pd.read_parquet(folder / "distill.parquet")
    assert sorted(set(rows["depth"])) == [0, 1, 3]  # depth 0: M_0 continued


def test_load_run_reads_a_runs_folder_from_before_seeds(tiny_run, tmp_path, monkeypatch):
    """A flat runs folder (``<runs>/<dataset>/``, as results/ holds) whose config names the preset's default model
    instead of the one used (the provenance error of results/mpnet-paper) still loads, as its recorded seed."""
    import shutil

    import paperlib.experiment as experiment

    monkeypatch.setattr(experiment, "train", lambda *a, **k: pytest.fail("load_run must not train"))
    flat = tmp_path / "flat"
    shutil.copytree(tiny_run.folder, flat / "synth", ignore=shutil.ignore_patterns("*.parquet"))
    config = json.loads((flat / "synth" / "config.json").read_text())
    config["preset"]["model"] = "bert-base-uncased"
    for key in ("seed", "split_seed", "finetune"):
        config.pop(key)
    (flat / "synth" / "config.json").write_text(json.dumps(config))
    data = tiny_run.folder.parents[2] / "synth"
    run = load_run(flat, str(data), device="cpu")
    assert run.folder == flat / "synth" and run.preset.seed == 0
    assert run.splits.fingerprint() == config["data_fingerprint"]


def test_notebook_setup_loads_the_seed_run_and_prints_its_folder(tmp_path, capsys, monkeypatch):
    import paperlib.experiment as experiment
    from paperlib.notebook import setup

    data = write_synthetic(tmp_path / "synth", n_per_class=40)
    out = tmp_path / "runs"
    assert run_cli(stage("finetune", data, out, "--seed", "1"), capsys)[0] == 0
    monkeypatch.setattr(experiment, "train", lambda *a, **k: pytest.fail("setup must load the saved M_0"))
    monkeypatch.setenv("PAPERLIB_ROOT", str(tmp_path))
    with pd.option_context("display.precision", 6):
        run = setup(str(data), "tiny", "runs", None, "random:tiny", 1)
        assert pd.get_option("display.precision") == 4
    assert run.folder == out / "seed-1" / "synth" and run.preset.seed == 1
    assert capsys.readouterr().out.strip() == "run folder: runs/seed-1/synth"  # relative to the root, no machine path
