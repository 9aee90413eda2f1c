"""Strategic fusion: rows, LR / RF fits, protocols, and pruning with a fitted model through the engine."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest

from paperlib.errors import PaperlibError
from paperlib.fusion import (
    dataset_rows,
    fit_fusion,
    fusion_rows,
    fusion_strategy,
    fusion_weights,
    load_fit_summary,
    rows_for,
    rows_key,
    run_fusion,
    single_signal_folders,
    strategy_name,
)
from paperlib.io import read_json, write_json
from paperlib.models import kept_layers
from paperlib.strategies import SIGNALS

S = list(SIGNALS)


def _signal_rows(layers, values: dict, strategy="Activation-Mean", step=1, seed=0):
    """Signals of the remaining ``layers``: given columns from ``values``, every other signal constant."""
    df = pd.DataFrame({"strategy": strategy, "seed": seed, "step": step, "layer": layers})
    for s in S:
        df[s] = values.get(s, [7.0] * len(layers))
    df["Block-Influence"] = 0.5
    return df


# ---------------------------------------------------------------- rows


def test_fusion_rows_zscore_removed_layer_and_accuracy_change():
    # step 1: layers 0,1,2, layer 1 removed; step 2: layers 0,2, layer 0 removed
    signals = pd.concat(
        [
            _signal_rows([0, 1, 2], {"Activation-Mean": [1.0, 2.0, 3.0], "Weight-Entropy": [0.0, 0.0, 3.0]}, step=1),
            _signal_rows([0, 2], {"Activation-Mean": [1.0, 3.0], "Weight-Entropy": [0.0, 3.0]}, step=2),
            _signal_rows([0, 1, 2], {}, strategy="Random", step=1),  # not a single-signal run: ignored
        ]
    )
    curves = pd.DataFrame(
        {
            "strategy": ["Activation-Mean"] * 2 + ["Random"],
            "seed": 0,
            "step": [1, 2, 1],
            "removed": [1, 0, 2],
            "kept": ["0,2", "2", "0,1"],
            "val_acc": [0.85, 0.70, 0.1],
        }
    )
    rows = fusion_rows(signals, curves, base_val_acc=0.90, dataset="d")
    assert list(rows.columns) == ["dataset", "strategy", "step", "layer", *S, "target"]
    assert rows["strategy"].tolist() == ["Activation-Mean"] * 2 and rows["layer"].tolist() == [1, 0]
    # by hand: layer 1's Activation-Mean is the mean -> 0; Weight-Entropy (0,0,3): mean 1, sd sqrt(2)
    assert rows.loc[0, "Activation-Mean"] == pytest.approx(0.0)
    assert rows.loc[0, "Weight-Entropy"] == pytest.approx(-1 / np.sqrt(2))
    assert rows.loc[1, "Activation-Mean"] == pytest.approx(-1.0) and rows.loc[1, "Weight-Entropy"] == pytest.approx(
        -1.0
    )
    constant = [s for s in S if s not in ("Activation-Mean", "Weight-Entropy")]
    assert (rows[constant] == 0).all().all()  # a constant signal scores 0
    assert rows["target"].tolist() == pytest.approx([0.85 - 0.90, 0.70 - 0.85])
    assert (rows["dataset"] == "d").all()


def test_fusion_rows_missing_signals_is_a_clear_error():
    curves = pd.DataFrame(
        {"strategy": ["Activation-Mean"], "seed": 0, "step": [1], "removed": [1], "kept": ["0"], "val_acc": [0.5]}
    )
    with pytest.raises(PaperlibError, match="signals"):
        fusion_rows(_signal_rows([0, 2], {}), curves, 0.9)
    with pytest.raises(PaperlibError, match="paperlib prune"):
        fusion_rows(_signal_rows([0, 1], {}), curves.assign(strategy="Random"), 0.9)


def test_fusion_rows_of_signals_that_prune_alike_are_kept_once():
    # Weight-Magnitude and Weight-Entropy prune 1 then 0 (the same model, layer and accuracies: the same rows);
    # Gradient-Norm removes 1 first too (step 1 repeats) and then 2 (a new row)
    values = {"Activation-Mean": [1.0, 2.0, 3.0]}
    signals, rows = [], []
    for strategy, order in (("Weight-Magnitude", [1, 0]), ("Weight-Entropy", [1, 0]), ("Gradient-Norm", [1, 2])):
        signals.append(_signal_rows([0, 1, 2], values, strategy=strategy, step=1))
        left = [0, 2]
        signals.append(_signal_rows(left, {"Activation-Mean": [1.0, 3.0]}, strategy=strategy, step=2))
        val = {0: 0.70, 2: 0.60}
        rows += [(strategy, 0, 1, order[0], 0.85), (strategy, 0, 2, order[1], val[order[1]])]
    curves = pd.DataFrame(rows, columns=["strategy", "seed", "step", "removed", "val_acc"])
    out = fusion_rows(pd.concat(signals), curves, base_val_acc=0.90, dataset="d")
    # 6 single-signal steps, 3 distinct: (step 1, layer 1), (step 2, layer 0), (step 2, layer 2)
    assert list(zip(out["strategy"], out["step"], out["layer"])) == [
        ("Gradient-Norm", 1, 1),
        ("Gradient-Norm", 2, 2),
        ("Weight-Magnitude", 2, 0),
    ]
    assert out["target"].tolist() == pytest.approx([0.85 - 0.90, 0.60 - 0.85, 0.70 - 0.85])


# ---------------------------------------------------------------- models


def _features(n, seed):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        rng.normal(size=(n, len(S))) * rng.uniform(0.5, 3.0, len(S)) + rng.normal(size=len(S)), columns=S
    )


def test_linear_regression_recovers_generating_coefficients():
    w = np.linspace(-1.0, 1.0, len(S))
    x = _features(200, 0)
    rows = x.assign(target=x.to_numpy() @ w + 0.25)
    pipe = fit_fusion(rows, "lr")
    scaler, lr = pipe[0], pipe[-1]
    # effective coefficients on the raw features: coef / scale
    assert lr.coef_ / scaler.scale_ == pytest.approx(w, abs=1e-8)
    probe = _features(20, 1)
    assert pipe.predict(probe) == pytest.approx(probe.to_numpy() @ w + 0.25, abs=1e-8)
    weights = fusion_weights(pipe, fit_fusion(rows, "rf"))
    assert weights["signal"].tolist() == S
    assert weights["lr_coefficient"].to_numpy() == pytest.approx(w * scaler.scale_, abs=1e-8)
    assert weights["rf_importance"].sum() == pytest.approx(1.0)


def test_random_forest_beats_linear_regression_on_an_interaction():
    def make(n, seed):
        x = _features(n, seed)
        return x.assign(target=x["Activation-Mean"] * x["Gradient-Fisher"])

    train, test = make(600, 2), make(300, 3)
    errors = {k: np.mean((fit_fusion(train, k).predict(test[S]) - test["target"]) ** 2) for k in ("lr", "rf")}
    assert errors["rf"] < 0.5 * errors["lr"]


def test_fitted_pipeline_chooses_highest_prediction():
    x = _features(100, 4)
    rows = x.assign(target=-x["Activation-Mean"])  # low Activation-Mean = harmless
    pipe = fit_fusion(rows, "lr")
    signals = _signal_rows([0, 3, 5], {"Activation-Mean": [2.0, -1.0, 4.0]})
    assert fusion_strategy(pipe, "Linear-Regression").choose(signals) == 3
    with pytest.raises(PaperlibError, match="lr"):
        fit_fusion(rows, "svm")


# ---------------------------------------------------------------- protocols


def _fake_run_folder(root, name, seed, n_layers=4, poison=False, strategies=S, model="random:tiny", steps=None):
    """A run folder with hand-made single-signal curves and signals (random values); ``steps`` < L-1
    leaves every curve unfinished."""
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True)
    sig_parts, curve_rows = [], []
    for strategy in strategies:
        kept, val = list(range(n_layers)), 0.9
        for step in range(1, (steps or n_layers - 1) + 1):
            sig_parts.append(_signal_rows(kept, {s: rng.normal(size=len(kept)) for s in S}, strategy, step))
            removed = kept[int(rng.integers(len(kept)))]
            kept = [i for i in kept if i != removed]
            val = val - rng.uniform(0, 0.1) + (50.0 if poison else 0.0)
            curve_rows.append((strategy, 0, step, removed, ",".join(map(str, kept)), val, val, 1, 4))
    pd.concat(sig_parts).to_parquet(folder / "signals.parquet")
    pd.DataFrame(
        curve_rows, columns=["strategy", "seed", "step", "removed", "kept", "val_acc", "test_acc", "n_params", "bytes"]
    ).to_parquet(folder / "curves.parquet")
    write_json(
        {"val_acc": 0.9, "test_acc": 0.9, "n_params": 10, "bytes": 40, "n_layers": n_layers}, folder / "metrics.json"
    )
    write_json({"model": model}, folder / "config.json")
    return folder


def test_transfer_never_sees_the_held_out_dataset(tmp_path):
    for i, name in enumerate("abc"):
        _fake_run_folder(tmp_path, name, seed=i)
    _fake_run_folder(tmp_path, "random_only", seed=9, strategies=["Random"])
    assert sorted(single_signal_folders(tmp_path)) == ["a", "b", "c"]
    rows = rows_for("transfer", "a", tmp_path)
    assert set(rows["dataset"]) == {"b", "c"} and len(rows) == 2 * 12 * 3
    probe = _features(30, 5)
    before = {k: fit_fusion(rows, k).predict(probe) for k in ("lr", "rf")}
    # poison the held-out dataset: other signals, targets 50 points off
    shutil.rmtree(tmp_path / "a")
    _fake_run_folder(tmp_path, "a", seed=123, poison=True)
    again = rows_for("transfer", "a", tmp_path)
    pd.testing.assert_frame_equal(again, rows)
    for k in ("lr", "rf"):
        assert fit_fusion(again, k).predict(probe) == pytest.approx(before[k], abs=0)
    # within uses a's own (poisoned) rows, and so differs from transfer
    within = rows_for("within", "a", tmp_path)
    assert set(within["dataset"]) == {"a"} and within["target"].max() > 40
    assert not np.allclose(fit_fusion(within, "lr").predict(probe), before["lr"])


def test_transfer_takes_only_complete_runs_of_the_same_model(tmp_path):
    for i, name in enumerate("abc"):
        _fake_run_folder(tmp_path, name, seed=i)
    _fake_run_folder(tmp_path, "unfinished", seed=5, steps=2)  # 2 of 3 steps: no complete curve
    _fake_run_folder(tmp_path, "other_model", seed=6, model="minilm")
    rows = rows_for("transfer", "a", tmp_path, model="random:tiny")
    assert set(rows["dataset"]) == {"b", "c"} and len(rows) == 2 * 12 * 3
    # no model given: the held-out dataset's own run (model, precision, recipe) still leaves other_model out
    assert set(rows_for("transfer", "a", tmp_path)["dataset"]) == {"b", "c"}
    assert set(rows_for("transfer", "a", tmp_path, datasets=["c"])["dataset"]) == {"c"}
    assert set(rows_for("within", "unfinished", tmp_path)["step"]) == {1, 2}  # within keeps what it has


def test_rows_key_changes_with_any_row(tmp_path):
    a = dataset_rows(_fake_run_folder(tmp_path, "a", seed=0))
    key = rows_key(a)
    assert key["datasets"] == ["a"] and key["n_rows"] == 36 and key == rows_key(a.copy())
    changed = a.copy()
    changed.loc[5, "target"] += 1e-12
    assert rows_key(changed)["sha256"] != key["sha256"]
    assert rows_key(a.iloc[:-1])["n_rows"] == 35


def test_transfer_without_other_datasets_is_a_clear_error(tmp_path):
    _fake_run_folder(tmp_path, "a", seed=0)
    with pytest.raises(PaperlibError, match="other than 'a'"):
        rows_for("transfer", "a", tmp_path)
    with pytest.raises(PaperlibError, match="protocol"):
        rows_for("sideways", "a", tmp_path)


# ---------------------------------------------------------------- through the pruning engine

HARMLESS = 2


def fake_signals(model, calib, **kwargs):
    """Deterministic per-layer signals; layer 2 has by far the lowest Activation-Mean."""
    layers = kept_layers(model)
    df = pd.DataFrame({"layer": layers})
    for j, s in enumerate(S):
        df[s] = [np.sin(1.3 * (l + 1) * (j + 1)) for l in layers]
    df["Activation-Mean"] = [-5.0 if l == HARMLESS else float(l) for l in layers]
    df["Block-Influence"] = 0.1
    return df


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    folder = tmp_path / "runs" / "synth"
    shutil.copytree(tiny_run.folder, folder, ignore=shutil.ignore_patterns("*.parquet", "fusion*", "model"))
    return dataclasses.replace(tiny_run, folder=folder)


def test_fusion_pruning_removes_the_layer_its_model_calls_harmless(run_copy):
    from paperlib.pruning import run_pruning

    x = _features(200, 6)
    rows = x.assign(target=-0.1 * x["Activation-Mean"])  # the lower Activation-Mean, the safer the removal
    strategies = [fusion_strategy(fit_fusion(rows, k), strategy_name(k)) for k in ("lr", "rf")]
    curves = run_pruning(run_copy, strategies, signal_fn=fake_signals)
    first = curves[curves["step"] == 1].set_index("strategy")["removed"]
    assert first.to_dict() == {"Linear-Regression": HARMLESS, "Random-Forest": HARMLESS}


def test_run_fusion_end_to_end(run_copy):
    from paperlib.pruning import Pruner, run_pruning

    pruner = Pruner(run_copy, fake_signals)
    run_pruning(run_copy, S, pruner=pruner)
    result = run_fusion(run_copy, "within", pruner=pruner)
    folder, n_steps = run_copy.folder, len(kept_layers(run_copy.model)) - 1
    saved_rows = pd.read_parquet(folder / "fusion_rows.parquet")
    # one row per distinct (layers removed before, layer removed): fake_signals depends on the kept layers only,
    # so signals that prune alike repeat a row, which is kept once (SPEC 5)
    curves = pd.read_parquet(folder / "curves.parquet")
    runs = [
        g.sort_values("step")["removed"].tolist() for _, g in curves[curves["strategy"].isin(S)].groupby("strategy")
    ]
    distinct = {(frozenset(r[: k - 1]), r[k - 1]) for r in runs for k in range(1, n_steps + 1)}
    assert len(saved_rows) == len(distinct) < 12 * n_steps and set(saved_rows["dataset"]) == {"synth"}
    pd.testing.assert_frame_equal(saved_rows, dataset_rows(folder, run_copy.metrics["val_acc"]))
    # step 1 of every single-signal run starts from M_0's validation accuracy
    first = curves[(curves["step"] == 1) & curves["strategy"].isin(S)].set_index("strategy")["val_acc"]
    step1 = saved_rows[saved_rows["step"] == 1].set_index("strategy")["target"]
    assert step1.to_numpy() == pytest.approx((first.reindex(step1.index) - run_copy.metrics["val_acc"]).to_numpy())
    saved = load_fit_summary(folder, "within")
    assert saved["trained_on"] == ["synth"] and saved["key"] == rows_key(saved_rows)
    assert not list(folder.glob("*.joblib"))  # no pickled model in the run folder
    # the stored LR coefficients reproduce the fitted model: intercept + sum coefficient * x
    probe = _features(5, 7)
    by_hand = saved["lr"]["intercept"] + probe[S].to_numpy() @ np.array(saved["lr"]["coefficient"])
    assert by_hand == pytest.approx(result.pipelines["lr"].predict(probe))
    assert saved["rf"]["importance"] == pytest.approx(result.pipelines["rf"][-1].feature_importances_.tolist())
    fit = pd.read_parquet(folder / "fusion_within_fit.parquet")
    assert fit["rf_prediction"].to_numpy() == pytest.approx(result.pipelines["rf"].predict(saved_rows[S]))
    assert set(result.curves["strategy"]) == {"Linear-Regression", "Random-Forest"}
    assert result.curves.groupby("strategy")["step"].max().tolist() == [n_steps, n_steps]
    weights = pd.read_csv(folder / "fusion_weights.csv")
    assert len(weights) == 12 and set(weights["protocol"]) == {"within"}
    with pytest.raises(PaperlibError, match="other than 'synth'"):
        run_fusion(run_copy, "transfer", pruner=pruner)


def test_fusion_curves_are_redone_when_their_rows_change(run_copy):
    from paperlib.pruning import Pruner, run_pruning

    pruner = Pruner(run_copy, fake_signals)
    run_pruning(run_copy, S, pruner=pruner)
    first = run_fusion(run_copy, "within", pruner=pruner)
    again = run_fusion(run_copy, "within", pruner=pruner)  # same rows: nothing redone
    assert not first.refitted and not again.refitted and again.key == first.key
    # another single-signal curve with other values: new rows, so the fusion curves are stale
    curves = pd.read_parquet(run_copy.folder / "curves.parquet")
    curves.loc[curves["strategy"] == "Gradient-Norm", "val_acc"] -= 0.25
    curves.to_parquet(run_copy.folder / "curves.parquet")
    redone = run_fusion(run_copy, "within", pruner=pruner)
    assert redone.refitted and redone.key != first.key
    assert load_fit_summary(run_copy.folder)["key"] == redone.key
    after = pd.read_parquet(run_copy.folder / "curves.parquet")
    assert (after["strategy"] == "Random-Forest").sum() == len(kept_layers(run_copy.model)) - 1  # no duplicates


def test_transfer_fusion_keeps_saved_curves_without_m0_and_redoes_stale_ones(tmp_path, monkeypatch):
    """06's transfer protocol over two real tiny runs: both fitted on their M_0; with the models deleted (a seed
    run on a machine that kept none) a rerun keeps both, reading files only; when b's single-signal curve changes,
    a's transfer rows (b's) are stale, and only a needs its M_0 again, which load_run says is missing."""
    from paperlib.config import get_preset
    from paperlib.experiment import prepare
    from paperlib.fusion import transfer_fusion, transfer_is_saved
    from paperlib.pruning import run_pruning

    from support import write_synthetic

    monkeypatch.setenv("PAPERLIB_PRECISION", "fp32")
    monkeypatch.setenv("PAPERLIB_CACHE_DIR", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    for i, name in enumerate(("syna", "synb")):
        data = write_synthetic(tmp_path / name, n_per_class=30, seed=i)
        run = prepare(str(data), "random:tiny", get_preset("tiny"), runs, device="cpu", progress=False, seed=0)
        run_pruning(run, list(SIGNALS), progress=False)
    root = runs / "seed-0"
    assert not transfer_is_saved(root / "syna", root)
    first = transfer_fusion(runs, ["syna", "synb"], tmp_path)
    assert first.to_dict("records") == [
        {"seed": 0, "dataset": "syna", "status": "fitted"},
        {"seed": 0, "dataset": "synb", "status": "fitted"},
    ]
    curves = {n: pd.read_parquet(root / n / "curves.parquet") for n in ("syna", "synb")}
    for name in ("syna", "synb"):
        # the saved key is the one of the rows the other dataset holds (an independent recomputation)
        other = "synb" if name == "syna" else "syna"
        expected = rows_key(dataset_rows(root / other, read_json(root / other / "metrics.json")["val_acc"]))
        assert load_fit_summary(root / name, "transfer")["key"] == expected
        assert set(curves[name]["strategy"]) >= {"Linear-Regression (transfer)", "Random-Forest (transfer)"}
        shutil.rmtree(root / name / "model")
    again = transfer_fusion(runs, ["syna", "synb"], tmp_path)
    assert set(again["status"]) == {"saved"}
    for name in ("syna", "synb"):
        pd.testing.assert_frame_equal(pd.read_parquet(root / name / "curves.parquet"), curves[name])
    changed = curves["synb"].copy()
    changed.loc[changed["strategy"] == "Gradient-Norm", "val_acc"] -= 0.25
    changed.to_parquet(root / "synb" / "curves.parquet")
    assert not transfer_is_saved(root / "syna", root) and transfer_is_saved(root / "synb", root)
    with pytest.raises(PaperlibError, match="syna' holds no fine-tuned M_0"):
        transfer_fusion(runs, ["syna", "synb"], tmp_path)
