"""The sequential pruning engine on the tiny fine-tuned run (4 layers), with fake and real signals."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import random

import numpy as np
import pandas as pd
import pytest
import torch

from paperlib import pruning, runfiles
from paperlib.errors import PaperlibError
from paperlib.models import count_parameters, fp32_bytes, get_layers, kept_layers, layers_removed, remove_layers
from paperlib.pruning import Pruner, prune_curve, run_pruning, summarize_curves
from paperlib.runfiles import load_curves, load_signals
from paperlib.strategies import PRUNE_ALL, REGISTRY, SIGNALS
from paperlib.tokens import Encoded
from paperlib.train import evaluate, predict_logits

ALL = [0, 1, 2, 3]


def fake_signals(model, calib, **kwargs) -> pd.DataFrame:
    """Stand-in for compute_signals: Weight-Magnitude for real, the rest fixed functions of the layer index."""
    rows = []
    for pos, (orig, layer) in enumerate(zip(kept_layers(model), get_layers(model))):
        weights = [m.weight.detach() for m in layer.modules() if isinstance(m, torch.nn.Linear)]
        row = {name: float(np.sin((orig + 1) * (i + 1))) for i, name in enumerate(SIGNALS)}
        row["Weight-Magnitude"] = float(torch.cat([w.abs().flatten() for w in weights]).mean())
        rows.append({"layer": orig, "position": pos, **row, "Block-Influence": float(np.cos(orig + 1))})
    return pd.DataFrame(rows)


class Counting:
    """A signal function that counts its calls (and can fail on purpose)."""

    def __init__(self, fail_after: int | None = None):
        self.calls, self.fail_after = 0, fail_after

    def __call__(self, model, calib, **kwargs):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        return fake_signals(model, calib)


def in_folder(run, folder):
    return dataclasses.replace(run, folder=folder)


def params_snapshot(model):
    return [(id(p), p.data_ptr(), p.detach().clone()) for p in model.parameters()]


def assert_unchanged(model, snapshot):
    now = list(model.parameters())
    assert len(now) == len(snapshot) and kept_layers(model) == ALL and len(get_layers(model)) == 4
    for p, (pid, ptr, value) in zip(now, snapshot):
        assert id(p) == pid and p.data_ptr() == ptr and torch.equal(p.detach(), value)


def _reference_order(run, column, direction):
    """Removal order by recomputing fake_signals on really pruned deep copies (independent of the engine)."""
    model, order = copy.deepcopy(run.model), []
    for _ in range(3):
        sig = fake_signals(model, None).sort_values("layer")
        values = sig[column].to_numpy() * (1 if direction == "lowest" else -1)
        layer = int(sig["layer"].to_numpy()[np.argmin(values)])  # argmin: first = lowest index on ties
        order.append(layer)
        remove_layers(model, [layer])
    return order


# ---------------------------------------------------------------- curves


@pytest.fixture(scope="module")
def all_curves(tiny_run, tmp_path_factory):
    run = in_folder(tiny_run, tmp_path_factory.mktemp("all"))
    snapshot = params_snapshot(tiny_run.model)
    with pytest.MonkeyPatch.context() as mp:  # set up before conftest's per-test fp32: say it here too
        mp.setenv("PAPERLIB_PRECISION", "fp32")
        curves = run_pruning(run, "all", signal_fn=fake_signals)
    assert_unchanged(tiny_run.model, snapshot)  # the engine never mutates M_0
    return run, curves


def test_every_curve_has_L_minus_1_consistent_steps(all_curves):
    run, curves = all_curves
    assert list(curves.columns) == [
        "strategy",
        "seed",
        "step",
        "removed",
        "kept",
        "val_acc",
        "test_acc",
        "n_params",
        "bytes",
    ]
    jobs = {(s, seed) for s, seed in zip(curves["strategy"], curves["seed"])}
    want = {(name, 0) for name in PRUNE_ALL if name != "Random"} | {
        ("Random", s) for s in range(run.preset.random_seeds)
    }
    assert jobs == want
    for _, g in curves.groupby(["strategy", "seed"]):
        assert g["step"].tolist() == [1, 2, 3]
        removed = g["removed"].tolist()
        assert len(set(removed)) == 3 and set(removed) <= set(ALL)
        for k, kept in enumerate(g["kept"], start=1):
            assert runfiles.parse_kept(kept) == tuple(i for i in ALL if i not in removed[:k])
        assert len(runfiles.parse_kept(g["kept"].iloc[-1])) == 1
    assert curves["kept"].map(type).eq(str).all() and curves["removed"].dtype == np.int64


def test_strategies_follow_their_rules(all_curves):
    run, curves = all_curves
    order = lambda name, seed=0: curves[(curves.strategy == name) & (curves.seed == seed)]["removed"].tolist()
    assert order("Top-Drop") == [3, 2, 1]
    for seed in range(run.preset.random_seeds):
        rng, kept, want = np.random.default_rng(seed), list(ALL), []
        for _ in range(3):
            want.append(int(rng.choice(kept)))
            kept.remove(want[-1])
        assert order("Random", seed) == want
    for name in ("Weight-Magnitude", "Redundancy-MI", "Attention-Entropy", "Gradient-Fisher"):
        assert order(name) == _reference_order(run, name, REGISTRY[name].direction), name
    assert order("Block-Influence") == _reference_order(run, "Block-Influence", "lowest")


def test_signal_rows_are_those_each_step_chose_from(all_curves):
    run, curves = all_curves
    signals = load_signals(run.folder)
    assert list(signals.columns) == ["strategy", "seed", "step", "layer", *SIGNALS, "Block-Influence"]
    assert set(signals["strategy"]) == set(SIGNALS) | {"Block-Influence"}  # only rules that read signals
    for (name, seed, step), g in signals.groupby(["strategy", "seed", "step"]):
        row = curves[(curves.strategy == name) & (curves.seed == seed) & (curves.step == step)].iloc[0]
        before = (
            ALL
            if step == 1
            else runfiles.parse_kept(
                curves[(curves.strategy == name) & (curves.seed == seed) & (curves.step == step - 1)]["kept"].iloc[0]
            )
        )
        assert tuple(g["layer"]) == tuple(before) and row["removed"] in before
        # the removed layer is the one ranked first by the strategy's direction, on these stored rows
        col, direction = REGISTRY[name].column, REGISTRY[name].direction
        values = g[col].to_numpy() if direction == "lowest" else -g[col].to_numpy()
        assert row["removed"] == g["layer"].to_numpy()[np.argmin(values)]


def test_sizes_match_a_really_pruned_copy(tiny_run, all_curves):
    _, curves = all_curves
    pruner = Pruner(tiny_run, fake_signals)
    assert pruner.size(ALL) == (tiny_run.metrics["n_params"], tiny_run.metrics["bytes"])
    for kept in [(0, 1, 3), (2, 3), (1,)]:
        m = remove_layers(copy.deepcopy(tiny_run.model), [i for i in ALL if i not in kept])
        assert pruner.size(kept) == (count_parameters(m), fp32_bytes(m))
    for _, row in curves.drop_duplicates("kept").iterrows():  # every distinct model on the curves
        m = remove_layers(copy.deepcopy(tiny_run.model), [i for i in ALL if i not in runfiles.parse_kept(row["kept"])])
        assert (row["n_params"], row["bytes"]) == (count_parameters(m), fp32_bytes(m))


def test_predictions_are_saved_for_every_curve_row_and_for_M0(all_curves):
    """predictions.parquet: one int16 label per (strategy, seed, step, split, example); scored against
    labels.parquet they give the curve's accuracies, and they equal a really pruned copy's argmax."""
    run, curves = all_curves
    preds, labels = runfiles.load_predictions(run.folder), runfiles.load_labels(run.folder)
    assert list(preds.columns) == ["strategy", "seed", "step", "split", "example", "pred"]
    assert preds["pred"].dtype == np.int16 and labels["label"].dtype == np.int16
    for split in ("val", "test"):
        truth = labels[labels.split == split].sort_values("example")["label"].to_numpy()
        np.testing.assert_array_equal(truth, run.encoded[split].labels.numpy())
        m0 = preds[(preds.strategy == "M_0") & (preds.split == split)].sort_values("example")
        assert (m0["step"] == 0).all() and len(m0) == len(truth)
        np.testing.assert_array_equal(
            m0["pred"].to_numpy(), predict_logits(run.model, run.encoded[split], device="cpu").argmax(-1).numpy()
        )
    by_model = {
        key: g.sort_values("example")["pred"].to_numpy()
        for key, g in preds.groupby(["strategy", "seed", "step", "split"])
    }
    assert len(by_model) == 2 * (len(curves) + 1)  # every curve row on both splits, and M_0
    for row in curves.itertuples():
        for split, acc in (("val", row.val_acc), ("test", row.test_acc)):
            pred = by_model[(row.strategy, row.seed, row.step, split)]
            truth = run.encoded[split].labels.numpy()
            assert np.float32((pred == truth).mean()) == pytest.approx(acc, abs=1e-7)
    for kept in curves["kept"].unique()[:4]:
        row = curves[curves.kept == kept].iloc[0]
        m = remove_layers(copy.deepcopy(run.model), [i for i in ALL if i not in runfiles.parse_kept(kept)])
        np.testing.assert_array_equal(
            by_model[(row.strategy, row.seed, row.step, "test")],
            predict_logits(m, run.encoded["test"], device="cpu").argmax(-1).numpy(),
        )


def test_a_folder_without_predictions_redoes_its_curves(tiny_run, tmp_path):
    run = in_folder(tiny_run, tmp_path)
    run_pruning(run, ["Top-Drop", "Random"], signal_fn=fake_signals)
    before = load_curves(tmp_path)
    (tmp_path / "predictions.parquet").unlink()
    after = run_pruning(run, ["Top-Drop", "Random"], signal_fn=fake_signals)
    pd.testing.assert_frame_equal(before, after)
    preds = runfiles.load_predictions(tmp_path)
    assert set(preds["strategy"]) == {"M_0", "Top-Drop", "Random"}
    assert len(preds.drop_duplicates(["strategy", "seed", "step", "split"])) == 2 * (len(after) + 1)


def test_evaluate_uses_no_copy_and_matches_a_pruned_copy(tiny_run):
    snapshot = params_snapshot(tiny_run.model)
    pruner = Pruner(tiny_run, fake_signals)
    for kept in [(0, 2, 3), (1, 3), (2,)]:
        val, test = pruner.evaluate(kept)
        assert_unchanged(tiny_run.model, snapshot)
        m = remove_layers(copy.deepcopy(tiny_run.model), [i for i in ALL if i not in kept])
        assert val == evaluate(m, tiny_run.encoded["val"], device="cpu")["accuracy"]
        assert test == evaluate(m, tiny_run.encoded["test"], device="cpu")["accuracy"]
    assert pruner.evaluate(ALL) == pytest.approx((tiny_run.metrics["val_acc"], tiny_run.metrics["test_acc"]))
    with pytest.raises(PaperlibError):
        pruner.evaluate((0, 7))


@pytest.mark.parametrize("budget", [pruning.LAYER_INPUT_BUDGET, 1])
def test_reused_layer_inputs_give_bit_identical_logits(tiny_run, tmp_path, monkeypatch, budget):
    monkeypatch.setattr(pruning, "LAYER_INPUT_BUDGET", budget)  # 1 byte: only M_0's entry is kept
    run = harmless_layer_run(tiny_run, tmp_path)  # strong layers: every layer changes the logits
    pruner = Pruner(run, fake_signals)
    subsets = [s for r in (4, 3, 2, 1) for s in itertools.combinations(ALL, r)]
    random.Random(0).shuffle(subsets)
    for kept in subsets:
        pruned = remove_layers(copy.deepcopy(run.model), [i for i in ALL if i not in kept])
        for split in ("val", "test"):
            assert torch.equal(pruner.logits(kept, split), predict_logits(pruned, run.encoded[split], device="cpu"))
    assert pruner.calls["val"] == pruner.calls["test"] == 15 + (subsets[0] != tuple(ALL))  # + M_0 up front
    assert pruner.calls["layers_run"] < 2 * sum(len(s) for s in subsets)  # some layers were skipped
    # removing the top layer of M_0 runs one layer: the input of layer 2 is stored from M_0's pass
    before = pruner.calls["layers_run"]
    pruner.logits((0, 1, 2), "val")
    assert pruner.calls["layers_run"] - before == 1


def test_signals_are_memoised_by_kept_set(tiny_run):
    fn = Counting()
    pruner = Pruner(tiny_run, fn)
    a = pruner.signals([3, 1, 2])
    b = pruner.signals((1, 2, 3))
    assert fn.calls == 1 and a is b and a["layer"].tolist() == [1, 2, 3]
    pruner.signals(ALL)
    assert fn.calls == 2


# ---------------------------------------------------------------- oracle


def harmless_layer_run(tiny_run, folder, h=2):
    """tiny_run's model with strong random layers, where layer ``h`` is an exact identity.

    BERT is post-LN: a layer outputs LN2(y + FFN(y)) with y = LN1(x + Attn(x)).  Zeroing the attention
    output dense and the FFN output dense (weights and biases) leaves LN2(LN1(x)).  If layer h-1's
    output LayerNorm has gamma = 1, beta = 0, then x already has mean 0 and variance 1 per token, and
    with layer h's LayerNorms also at gamma = 1, beta = 0, LN2(LN1(x)) = x (up to eps = 1e-12 and
    rounding): removing h changes nothing.  Validation labels are set to the full model's predictions,
    so M_0 scores 1.0 and any layer that matters scores less when removed."""
    model = copy.deepcopy(tiny_run.model)
    layers = get_layers(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in layers:  # layers strong enough that removing one flips predictions
            for mod in layer.modules():
                if isinstance(mod, torch.nn.Linear):
                    mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * 2 / mod.weight.shape[1] ** 0.5)
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=g))
        layers[h - 1].output.LayerNorm.weight.fill_(1.0)
        layers[h - 1].output.LayerNorm.bias.zero_()
        for lin in (layers[h].attention.output.dense, layers[h].output.dense):
            lin.weight.zero_()
            lin.bias.zero_()
        for ln in (layers[h].attention.output.LayerNorm, layers[h].output.LayerNorm):
            ln.weight.fill_(1.0)
            ln.bias.zero_()
    val = tiny_run.encoded["val"]
    labels = predict_logits(model, val, device="cpu").argmax(-1)
    encoded = {**tiny_run.encoded, "val": Encoded(val.input_ids, val.attention_mask, labels, val.lengths)}
    return dataclasses.replace(tiny_run, model=model, encoded=encoded, folder=folder)


def test_oracle_removes_the_harmless_layer_first(tiny_run, tmp_path):
    run = harmless_layer_run(tiny_run, tmp_path, h=2)
    full = predict_logits(run.model, run.encoded["val"], device="cpu")
    with layers_removed(run.model, [2]):
        torch.testing.assert_close(predict_logits(run.model, run.encoded["val"], device="cpu"), full, atol=1e-5, rtol=0)
    pruner = Pruner(run, fake_signals)
    assert pruner.val_accuracy(ALL) == 1.0 and pruner.val_accuracy([0, 1, 3]) == 1.0
    # precondition of the construction: every other removal really hurts (so lower indices cannot win a tie)
    assert all(pruner.val_accuracy([j for j in ALL if j != i]) < 1.0 for i in (0, 1, 3))
    curve, signals = prune_curve(pruner, "Oracle")
    assert curve["removed"].iloc[0] == 2 and curve["val_acc"].iloc[0] == 1.0 and signals.empty


def test_oracle_is_greedy_on_validation_with_lowest_index_ties(tiny_run):
    table = {
        (0, 1, 2): 0.5,
        (0, 1, 3): 0.9,
        (0, 2, 3): 0.9,
        (1, 2, 3): 0.7,  # 1 and 2 tie: 1 goes
        (0, 2): 0.1,
        (0, 3): 0.6,
        (2, 3): 0.6,  # from (0, 2, 3): 0 and 2 tie -> 0
        (2,): 0.2,
        (3,): 0.3,
    }

    class Scripted(Pruner):
        def val_accuracy(self, kept):
            return table.get(tuple(sorted(kept)), 0.0)

        def test_accuracy(self, kept):
            return -1.0  # never consulted for choosing

    curve, _ = prune_curve(Scripted(tiny_run, fake_signals), "Oracle")
    assert curve["removed"].tolist() == [1, 0, 2]
    assert curve["val_acc"].tolist() == [0.9, 0.6, 0.3]


# ---------------------------------------------------------------- files, resume, determinism


def test_same_seed_gives_byte_identical_files(tiny_run, tmp_path):
    names = ["Weight-Magnitude", "Random", "Oracle", "Top-Drop"]
    for sub in ("a", "b"):
        run_pruning(in_folder(tiny_run, tmp_path / sub), names, signal_fn=fake_signals)
    for name in ("curves.parquet", "signals.parquet", "predictions.parquet", "labels.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # strategy order does not change the files either (rows are sorted)
    run_pruning(in_folder(tiny_run, tmp_path / "c"), names[::-1], signal_fn=fake_signals)
    assert (tmp_path / "a" / "curves.parquet").read_bytes() == (tmp_path / "c" / "curves.parquet").read_bytes()


def test_rerun_skips_finished_work_and_resumes_after_an_interruption(tiny_run, tmp_path):
    run = in_folder(tiny_run, tmp_path)
    fn = Counting(fail_after=4)  # Weight-Entropy needs 3 calls; the 5th call (Gradient-Norm step 2) fails
    with pytest.raises(KeyboardInterrupt):
        run_pruning(run, ["Weight-Entropy", "Gradient-Norm", "Random"], signal_fn=fn)
    curves = load_curves(tmp_path)
    assert set(curves["strategy"]) == {"Weight-Entropy"} and len(curves) == 3
    assert set(load_signals(tmp_path)["strategy"]) == {"Weight-Entropy"}
    fn = Counting()
    curves = run_pruning(run, ["Weight-Entropy", "Gradient-Norm", "Random"], signal_fn=fn)
    # only Gradient-Norm's models are new; models Weight-Entropy visited come from signals.parquet
    assert fn.calls == len(models_before(curves, "Gradient-Norm") - models_before(curves, "Weight-Entropy"))
    before = {n: (tmp_path / n).read_bytes() for n in ("curves.parquet", "signals.parquet")}
    fn = Counting()
    curves = run_pruning(run, "Weight-Entropy,Gradient-Norm,Random", signal_fn=fn)
    assert fn.calls == 0 and before == {n: (tmp_path / n).read_bytes() for n in before}
    assert len(curves) == 3 * (2 + run.preset.random_seeds)
    # more Random seeds later: only the new seed runs
    more = dataclasses.replace(run, preset=run.preset.replace(random_seeds=run.preset.random_seeds + 1))
    curves = run_pruning(more, ["Random"], signal_fn=fn)
    assert sorted(set(curves.loc[curves.strategy == "Random", "seed"])) == list(range(run.preset.random_seeds + 1))


def models_before(curves, strategy):
    """The kept sets a strategy's steps chose from: all layers, then each step's kept set but the last."""
    kept = curves[curves.strategy == strategy].sort_values("step")["kept"].map(runfiles.parse_kept).tolist()
    return {frozenset(k) for k in [tuple(ALL), *kept[:-1]]}


def test_warm_start_restores_exact_signals_and_accuracies(tiny_run, tmp_path):
    run = in_folder(tiny_run, tmp_path)
    curves = run_pruning(run, ["Gradient-Taylor", "Top-Drop"], signal_fn=fake_signals)
    fn = Counting()
    pruner = Pruner(run, fn)
    assert pruner.warm_start() > 0
    pd.testing.assert_frame_equal(pruner.signals(ALL), fake_signals(tiny_run.model, None), check_exact=True)
    assert fn.calls == 0
    for kept, val, test in curves[["kept", "val_acc", "test_acc"]].itertuples(index=False):
        assert pruner.evaluate(runfiles.parse_kept(kept)) == (val, test)


def test_load_errors_name_the_fix(tmp_path):
    with pytest.raises(PaperlibError, match="paperlib prune"):
        load_curves(tmp_path)
    with pytest.raises(PaperlibError, match="paperlib prune"):
        load_signals(tmp_path)


def test_finetune_between_trains_a_copy_per_curve(tiny_run, tmp_path):
    run = dataclasses.replace(tiny_run, folder=tmp_path, preset=tiny_run.preset.replace(finetune_between=1))
    snapshot = params_snapshot(tiny_run.model)
    fn = Counting()
    pruner = Pruner(run, fn)
    curve, signals = prune_curve(pruner, "Weight-Magnitude")
    assert_unchanged(tiny_run.model, snapshot)
    assert curve["step"].tolist() == [1, 2, 3] and fn.calls == 3 and not pruner.memo
    # re-training moves the weights, so Weight-Magnitude of the still-present layers changes between steps
    s1 = signals[signals.step == 1].set_index("layer")["Weight-Magnitude"]
    s2 = signals[signals.step == 2].set_index("layer")["Weight-Magnitude"]
    assert not np.allclose(s1[s2.index], s2)
    m = remove_layers(copy.deepcopy(tiny_run.model), [curve["removed"].iloc[0]])
    assert (curve["n_params"].iloc[0], curve["bytes"].iloc[0]) == (count_parameters(m), fp32_bytes(m))
    # predictions are those of each step's re-trained model: they reproduce its accuracies
    curve, _, preds = prune_curve(Pruner(run, fake_signals), "Top-Drop", with_predictions=True)
    for row in curve.itertuples():
        for split, acc in (("val", row.val_acc), ("test", row.test_acc)):
            pred = preds[(preds.step == row.step) & (preds.split == split)].sort_values("example")["pred"].to_numpy()
            assert np.float32((pred == run.encoded[split].labels.numpy()).mean()) == pytest.approx(acc, abs=1e-7)


# ---------------------------------------------------------------- summary and command


def test_summarize_curves_by_hand():
    rows = [
        ("A", 0, 1, 0.8),
        ("A", 0, 2, 0.9),
        ("A", 0, 3, 0.9),
        ("Random", 0, 1, 0.6),
        ("Random", 0, 2, 0.2),
        ("Random", 1, 1, 0.8),
        ("Random", 1, 2, 0.6),
    ]
    df = pd.DataFrame(rows, columns=["strategy", "seed", "step", "test_acc"])
    table = summarize_curves(df).set_index("strategy")
    assert table.loc["A", "best_test_acc"] == pytest.approx(0.9) and table.loc["A", "best_k"] == 3
    assert table.loc["A", "mean_test_acc"] == pytest.approx((0.8 + 0.9 + 0.9) / 3)
    assert table.loc["Random", "best_test_acc"] == pytest.approx(0.7) and table.loc["Random", "best_k"] == 1
    assert table.loc["Random", "mean_test_acc"] == pytest.approx((0.7 + 0.4) / 2) and table.loc["Random", "seeds"] == 2
    assert list(table.index) == ["A", "Random"]


def test_prune_command_prints_a_table(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pruning, "_default_signal_fn", fake_signals)
    pruning.prune_command(in_folder(tiny_run, tmp_path), "Top-Drop,Random")
    out = capsys.readouterr().out
    assert "Top-Drop" in out and f"Random (mean of {tiny_run.preset.random_seeds})" in out and "picked on test" in out


# ---------------------------------------------------------------- with the real signals


def test_real_signals_drive_a_curve(tiny_run, tmp_path):
    run = in_folder(tiny_run, tmp_path)
    curves = run_pruning(run, ["Weight-Entropy", "Gradient-Fisher", "Block-Influence"])
    signals = load_signals(tmp_path)
    assert len(curves) == 9 and len(signals) == 3 * (4 + 3 + 2)
    assert signals[["Weight-Entropy", "Gradient-Fisher", "Block-Influence"]].notna().all().all()
    for (name, step), g in signals.groupby(["strategy", "step"]):
        removed = curves[(curves.strategy == name) & (curves.step == step)]["removed"].iloc[0]
        assert removed == g["layer"].to_numpy()[np.argmin(g[name].to_numpy())]  # all three prune lowest first
    # deterministic on CPU: a second folder gets the same bytes
    run_pruning(in_folder(tiny_run, tmp_path / "again"), ["Weight-Entropy", "Gradient-Fisher", "Block-Influence"])
    for name in ("curves.parquet", "signals.parquet"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_prune_work_counts_a_hand_made_run(tmp_path):
    """tools/prune_work.py on a 3-layer run worked out by hand: Oracle removes 2 then 0; Gradient-Norm removes 0
    then 2 and read the signals of {0,1,2} and {1,2}."""
    import subprocess
    import sys

    from support import REPO

    folder = tmp_path / "seed-0" / "toy"
    folder.mkdir(parents=True)
    rows = [
        ("Oracle", 1, 2, "0,1"),
        ("Oracle", 2, 0, "1"),
        ("Gradient-Norm", 1, 0, "1,2"),
        ("Gradient-Norm", 2, 2, "1"),
    ]
    pd.DataFrame(
        [(s, 0, k, r, kept, 0.5, 0.5, 1, 4) for s, k, r, kept in rows],
        columns=["strategy", "seed", "step", "removed", "kept", "val_acc", "test_acc", "n_params", "bytes"],
    ).to_parquet(folder / "curves.parquet")
    pd.DataFrame({"strategy": ["Gradient-Norm"] * 5, "step": [1, 1, 1, 2, 2], "layer": [0, 1, 2, 1, 2]}).to_parquet(
        folder / "signals.parquet"
    )
    (folder / "config.json").write_text('{"sizes": {"val": 10, "test": 20}, "preset": {"n_calib": 4}}')
    (folder / "metrics.json").write_text('{"n_layers": 3}')
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "prune_work.py"), str(tmp_path / "seed-0")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    values = dict(zip(out[0].split(), out[1].split()))
    # evaluated: {0,1,2}, {0,1}, {1}, {1,2} = 3 + 2 + 1 + 2 = 8 layers; Oracle's candidates besides them: {0,2}
    # at step 1, {0} at step 2 = 3 layers, validation only; signal passes {0,1,2}, {1,2} = 5 layers x 4 texts x 3
    val, test, signal = (8 + 3) * 10, 8 * 20, 5 * 4 * 3
    assert values["evaluated"] == "4" and values["oracle_val_only"] == "2" and values["signal_passes"] == "2"
    total = val + test + signal
    assert float(values["share_eval_val"]) == round(val / total, 2)
    assert float(values["share_eval_test"]) == round(test / total, 2)
    assert float(values["share_signal"]) == round(signal / total, 2)
    # prefixes of (0,1,2), (0,1), (1,), (1,2): (0,), (0,1), (0,1,2), (1,), (1,2) = 5 layer runs instead of 8
    assert float(values["prefix_share"]) == round(5 / 8, 2)


@pytest.mark.parametrize("arch", ["tiny", "roberta-tiny", "distilbert-tiny", "electra-tiny", "mpnet-tiny"])
@pytest.mark.parametrize("budget", [pruning.SHARED_PREFIX_BUDGET, 1])
def test_shared_prefix_logits_equal_each_sub_model_alone(tiny_run, arch, budget):
    """Pruner.logits_many against a really pruned copy's own forward, bit for bit, for every sub-model of a
    4-layer model of each architecture (1 byte: no layer output kept, every sub-model from its embeddings)."""
    from paperlib.models import load_model

    model, _ = load_model(f"random:{arch}", num_labels=tiny_run.model.config.num_labels, seed=3)
    with torch.no_grad():  # strong random layers, so that every layer changes the logits
        g = torch.Generator().manual_seed(1)
        for layer in get_layers(model):
            for mod in layer.modules():
                if isinstance(mod, torch.nn.Linear):
                    mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * 2 / mod.weight.shape[1] ** 0.5)
    run = dataclasses.replace(tiny_run, model=model.eval())
    pruner = Pruner(run, fake_signals)
    subsets = [s for r in (4, 3, 2, 1) for s in itertools.combinations(ALL, r)]
    got = pruner.logits_many(subsets, "test", budget_bytes=budget)
    distinct = set()
    for kept in subsets:
        pruned = remove_layers(copy.deepcopy(model), [i for i in ALL if i not in kept])
        want = predict_logits(pruned, run.encoded["test"], batch_size=run.preset.eval_batch_size, device="cpu")
        assert torch.equal(got[kept], want), (arch, kept)
        distinct.add(tuple(want.flatten()[:8].tolist()))
    assert len(distinct) > 10  # the sub-models really differ
    plain = sum(map(len, subsets)) * len(list(pruning.length_batches(run.encoded["test"], run.preset.eval_batch_size)))
    if budget > 1:  # 15 sub-models, 32 layer runs alone; 15 distinct prefixes ... plus the final runs' own
        assert pruner.calls["layers_run"] < plain


def test_a_stage_with_shared_test_prefixes_writes_the_same_files(tiny_run, tmp_path):
    """run_pruning choosing every curve first and evaluating test at the end, sharing layers, against the plain
    engine: byte-identical curves, signals and predictions; fewer layer runs."""
    names = ["Weight-Magnitude", "Gradient-Norm", "Random", "Oracle", "Top-Drop"]
    runs = {}
    for sub, share in (("plain", False), ("shared", True)):
        run = in_folder(tiny_run, tmp_path / sub)
        pruner = Pruner(run, fake_signals)
        pruner.share_test_prefixes = share
        pruner.layer_inputs = None  # as on CUDA: each sub-model alone unless shared here
        run_pruning(run, names, pruner=pruner)
        runs[sub] = pruner
    for name in ("curves.parquet", "signals.parquet", "predictions.parquet"):
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "shared" / name).read_bytes(), name
    curves = pd.read_parquet(tmp_path / "shared" / "curves.parquet")
    assert curves["test_acc"].notna().all() and len(curves) == (len(names) - 1 + tiny_run.preset.random_seeds) * 3
    assert runs["shared"].calls["layers_run"] < runs["plain"].calls["layers_run"]
