"""Speed levers of issue 23, each against the plain path it replaces: prediction part files against today's
rewrite of predictions.parquet on every job, bucketed and compiled training against the plain loop, the
classical reference beside fine-tuning against the same computation inline, and the GPU pipeline benchmark."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from paperlib import pruning
from paperlib.io import part_name, parts_dir, update_parquet, write_part
from paperlib.models import get_layers, kept_layers
from paperlib.pruning import Pruner, prune_curve, run_pruning
from paperlib.strategies import SIGNALS

NAMES = ["Weight-Magnitude", "Random", "Oracle", "Top-Drop", "Weight-Entropy (flipped)"]
KEY = ["strategy", "seed", "step", "split", "example"]


def fake_signals(model, calib, **kwargs) -> pd.DataFrame:
    """Fixed functions of the layer index (real Weight-Magnitude): signals without a calibration pass."""
    rows = []
    for pos, (orig, layer) in enumerate(zip(kept_layers(model), get_layers(model))):
        row = {name: float(np.sin((orig + 1) * (i + 1))) for i, name in enumerate(SIGNALS)}
        row["Weight-Magnitude"] = float(sum(p.detach().abs().mean() for p in layer.parameters()))
        rows.append({"layer": orig, "position": pos, **row, "Block-Influence": float(np.cos(orig + 1))})
    return pd.DataFrame(rows)


class Interrupting:
    """fake_signals that raises KeyboardInterrupt on its (n+1)-th call: a stage killed part-way."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __call__(self, model, calib, **kwargs):
        if self.calls >= self.n:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        return fake_signals(model, calib)


def in_folder(run, folder):
    return dataclasses.replace(run, folder=folder)


def rewritten_file(run, folder, names) -> bytes:
    """predictions.parquet as the code before the part files wrote it: M_0's rows, then each (strategy, seed)
    merged into the one file by a read-modify-write (``io.update_parquet``), in the order run_pruning runs them."""
    pruner = Pruner(run, fake_signals)
    path = folder / "predictions.parquet"
    typed = pruning._typed_predictions
    m0 = [pruning.prediction_rows(pruner.predictions(pruner.all_layers, s), "M_0", 0, 0, s) for s in pruning.SPLITS]
    update_parquet(path, typed(pd.concat(m0)), ["strategy", "seed"], typed)
    for strategy in pruning._strategies(names):
        for seed in range(run.preset.random_seeds) if strategy.kind == "random" else [0]:
            _, _, preds = prune_curve(pruner, strategy, seed, with_predictions=True)
            update_parquet(path, typed(preds), ["strategy", "seed"], typed)
    return path.read_bytes()


@pytest.fixture(scope="module")
def reference(tiny_run, tmp_path_factory):
    """(the rewritten-file bytes, the same as a frame) for NAMES on the tiny run."""
    folder = tmp_path_factory.mktemp("rewritten")
    data = rewritten_file(in_folder(tiny_run, folder), folder, NAMES)
    return data, pd.read_parquet(folder / "predictions.parquet")


def test_prediction_parts_fold_into_the_file_the_rewrites_gave(tiny_run, tmp_path, reference):
    run_pruning(in_folder(tiny_run, tmp_path), NAMES, signal_fn=fake_signals)
    assert (tmp_path / "predictions.parquet").read_bytes() == reference[0]
    assert not parts_dir(tmp_path / "predictions.parquet").exists()  # folded: the folder holds one file again
    pd.testing.assert_frame_equal(pruning.load_predictions(tmp_path), reference[1])


def test_an_interrupted_stage_leaves_readable_parts_and_no_duplicate_rows(tiny_run, tmp_path, reference):
    run = in_folder(tiny_run, tmp_path)
    with pytest.raises(KeyboardInterrupt):  # Weight-Magnitude (3 passes) finishes, the flipped rule does not
        run_pruning(run, NAMES, signal_fn=Interrupting(3))
    parts = sorted(parts_dir(tmp_path / "predictions.parquet").glob("*.parquet"))
    assert len(parts) >= 2 and not (tmp_path / "predictions.parquet").exists()  # M_0 + finished jobs, unfolded
    got = pruning.load_predictions(tmp_path)
    assert not got.duplicated(KEY).any()
    done = set(zip(got["strategy"], got["seed"]))
    assert ("M_0", 0) in done and ("Weight-Magnitude", 0) in done and ("Weight-Entropy (flipped)", 0) not in done
    want = reference[1][[pair in done for pair in zip(reference[1]["strategy"], reference[1]["seed"])]]
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True))
    run_pruning(run, NAMES, signal_fn=fake_signals)  # resume: the rest runs, then one fold
    assert (tmp_path / "predictions.parquet").read_bytes() == reference[0]


def test_a_part_left_beside_the_folded_file_replaces_its_rows_once(tiny_run, tmp_path, reference):
    """A fold killed between writing the file and deleting the parts, and a job redone over the old layout."""
    folder = tmp_path
    (folder / "predictions.parquet").write_bytes(reference[0])  # e.g. a committed run: the file only
    top = reference[1][reference[1]["strategy"] == "Top-Drop"]
    write_part(folder / "predictions.parquet", part_name("Top-Drop", 0), top)  # as a fold leaves it
    pd.testing.assert_frame_equal(pruning.load_predictions(folder), reference[1])
    changed = top.assign(pred=(top["pred"] + 1).astype(np.int16))  # a redone job with other predictions
    pruning.merge_predictions(folder, changed)
    got = pruning.load_predictions(folder)
    assert not got.duplicated(KEY).any() and len(got) == len(reference[1])
    mine = got[got["strategy"] == "Top-Drop"].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, changed.reset_index(drop=True))
    pd.testing.assert_frame_equal(
        got[got["strategy"] != "Top-Drop"].reset_index(drop=True),
        reference[1][reference[1]["strategy"] != "Top-Drop"].reset_index(drop=True),
    )
    assert pruning.fold_predictions(folder)
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "predictions.parquet"), got)


def test_dropping_strategies_removes_their_parts_and_rows(tiny_run, tmp_path, reference):
    (tmp_path / "predictions.parquet").write_bytes(reference[0])
    oracle = reference[1][reference[1]["strategy"] == "Oracle"]
    pruning.merge_predictions(tmp_path, oracle)
    pruning.drop_strategies(tmp_path, ["Oracle", "Random"])
    got = pruning.load_predictions(tmp_path)
    assert set(got["strategy"]) == set(reference[1]["strategy"]) - {"Oracle", "Random"}
    assert not any(parts_dir(tmp_path / "predictions.parquet").glob("*.parquet"))


def test_results_read_the_parts_of_an_interrupted_stage(tiny_run, tmp_path):
    """The tables' loader sees the same per-example correctness before and after the fold."""
    from paperlib.results import DatasetResults, _read_scores

    run = in_folder(tiny_run, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_pruning(run, NAMES, signal_fn=Interrupting(3))
    empty = dict(metrics={}, tolerance=0.01, curves=pd.DataFrame(), distill=pd.DataFrame())
    before = DatasetResults("x", 4, **empty)
    _read_scores(tmp_path, before)
    assert pruning.fold_predictions(tmp_path)
    after = DatasetResults("x", 4, **empty)
    _read_scores(tmp_path, after)
    assert before.scores.keys() == after.scores.keys() and "test" in before.original
    for k in before.scores:
        np.testing.assert_array_equal(before.scores[k], after.scores[k])
