"""Speed levers of issue 23, each against the plain path it replaces: prediction part files against today's
rewrite of predictions.parquet on every job, bucketed and compiled training against the plain loop, the
classical reference beside fine-tuning against the same computation inline, and the GPU pipeline benchmark."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from paperlib import pruning, runfiles
from paperlib.errors import PaperlibError
from paperlib.io import part_name, parts_dir, update_parquet, write_part
from paperlib.models import get_layers, kept_layers
from paperlib.pruning import Pruner, prune_curve, run_pruning
from paperlib.strategies import SIGNALS
from paperlib.tokens import length_batches
from paperlib.train import TrainSettings, train

from support import REPO

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
    typed = runfiles._typed_predictions
    m0 = [runfiles.prediction_rows(pruner.predictions(pruner.all_layers, s), "M_0", 0, 0, s) for s in runfiles.SPLITS]
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
    with pytest.MonkeyPatch.context() as mp:  # set up before conftest's per-test fp32: say it here too
        mp.setenv("PAPERLIB_PRECISION", "fp32")
        data = rewritten_file(in_folder(tiny_run, folder), folder, NAMES)
    return data, pd.read_parquet(folder / "predictions.parquet")


def test_prediction_parts_fold_into_the_file_the_rewrites_gave(tiny_run, tmp_path, reference):
    run_pruning(in_folder(tiny_run, tmp_path), NAMES, signal_fn=fake_signals)
    assert (tmp_path / "predictions.parquet").read_bytes() == reference[0]
    assert not parts_dir(tmp_path / "predictions.parquet").exists()  # folded: the folder holds one file again
    pd.testing.assert_frame_equal(runfiles.load_predictions(tmp_path), reference[1])


def test_an_interrupted_stage_leaves_readable_parts_and_no_duplicate_rows(tiny_run, tmp_path, reference):
    run = in_folder(tiny_run, tmp_path)
    with pytest.raises(KeyboardInterrupt):  # Weight-Magnitude (3 passes) finishes, the flipped rule does not
        run_pruning(run, NAMES, signal_fn=Interrupting(3))
    parts = sorted(parts_dir(tmp_path / "predictions.parquet").glob("*.parquet"))
    assert len(parts) >= 2 and not (tmp_path / "predictions.parquet").exists()  # M_0 + finished jobs, unfolded
    got = runfiles.load_predictions(tmp_path)
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
    pd.testing.assert_frame_equal(runfiles.load_predictions(folder), reference[1])
    changed = top.assign(pred=(top["pred"] + 1).astype(np.int16))  # a redone job with other predictions
    runfiles.merge_predictions(folder, changed)
    got = runfiles.load_predictions(folder)
    assert not got.duplicated(KEY).any() and len(got) == len(reference[1])
    mine = got[got["strategy"] == "Top-Drop"].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, changed.reset_index(drop=True))
    pd.testing.assert_frame_equal(
        got[got["strategy"] != "Top-Drop"].reset_index(drop=True),
        reference[1][reference[1]["strategy"] != "Top-Drop"].reset_index(drop=True),
    )
    assert runfiles.fold_predictions(folder)
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "predictions.parquet"), got)


def test_dropping_strategies_removes_their_parts_and_rows(tiny_run, tmp_path, reference):
    (tmp_path / "predictions.parquet").write_bytes(reference[0])
    oracle = reference[1][reference[1]["strategy"] == "Oracle"]
    runfiles.merge_predictions(tmp_path, oracle)
    runfiles.drop_strategies(tmp_path, ["Oracle", "Random"])
    got = runfiles.load_predictions(tmp_path)
    assert set(got["strategy"]) == set(reference[1]["strategy"]) - {"Oracle", "Random"}
    assert not any(parts_dir(tmp_path / "predictions.parquet").glob("*.parquet"))


def test_results_read_the_parts_of_an_interrupted_stage(tiny_run, tmp_path):
    """The tables' loader sees the same per-example correctness before and after the fold."""
    from paperlib.results import SeedRun, _read_scores

    run = in_folder(tiny_run, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_pruning(run, NAMES, signal_fn=Interrupting(3))
    empty = dict(metrics={}, tolerance=0.01, curves=pd.DataFrame(), distill=pd.DataFrame())
    before = SeedRun(0, 4, **empty)
    _read_scores(tmp_path, before)
    assert runfiles.fold_predictions(tmp_path)
    after = SeedRun(0, 4, **empty)
    _read_scores(tmp_path, after)
    assert before.scores.keys() == after.scores.keys() and "test" in before.original
    for k in before.scores:
        np.testing.assert_array_equal(before.scores[k], after.scores[k])


# ---------------------------------------------------------------- TF-IDF + LR: one BLAS thread, beside training


def test_one_blas_thread_and_parallel_fits_keep_the_chosen_C_and_the_predictions_on_a_real_dataset(shared_datasets):
    """agnews at the paper caps: the fits one after another with the library's default threads (the plain
    settings) and side by side in three processes with one thread each agree."""
    from paperlib.baselines import tfidf_lr
    from paperlib.config import get_preset
    from paperlib.data import load_splits

    s = load_splits("agnews", get_preset("paper"), shared_datasets)
    plain, plain_pred = tfidf_lr(s.train, s.val, s.test, blas_threads=None)
    fast, fast_pred = tfidf_lr(s.train, s.val, s.test, blas_threads=1, n_jobs=3)
    assert (fast["C"], fast["val_acc"], fast["test_acc"]) == (plain["C"], plain["val_acc"], plain["test_acc"])
    np.testing.assert_array_equal(fast_pred, plain_pred)
    assert fast["test_acc"] == float((fast_pred == s.test["label"].to_numpy()).mean())


def _without_seconds(info: dict) -> dict:
    return {k: v for k, v in info.items() if k != "seconds"}


@pytest.mark.parametrize("child_works", [True, False])
def test_the_reference_computed_beside_writes_the_files_computed_inline(tiny_run, tmp_path, monkeypatch, child_works):
    from paperlib import baselines

    inline = baselines.baseline_run(in_folder(tiny_run, tmp_path / "inline"))
    if not child_works:  # the child exits 1 at once: the result is computed in this process instead
        monkeypatch.setattr(baselines.sys, "executable", shutil.which("false"))
    beside = baselines.Beside(tiny_run.splits, tiny_run.preset.seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        child = baselines.baseline_run(in_folder(tiny_run, tmp_path / "beside"), beside=beside)
    assert any("child process failed" in str(w.message) for w in caught) == (not child_works)
    assert _without_seconds(child) == _without_seconds(inline)
    assert beside.proc.returncode == (0 if child_works else 1)
    for name in ("baseline_predictions.parquet",):
        assert (tmp_path / "beside" / name).read_bytes() == (tmp_path / "inline" / name).read_bytes()
    assert not beside.tmp.exists()  # the temporary inputs are gone


def test_the_reference_starts_beside_only_on_an_accelerator_and_stops_with_its_owner(tiny_run, tmp_path):
    from paperlib import baselines

    assert baselines.start_beside(tmp_path, tiny_run.splits, 0, "cpu") is None
    beside = baselines.start_beside(tmp_path, tiny_run.splits, 0, "cuda:0")
    assert isinstance(beside, baselines.Beside) and beside.proc.poll() is None
    proc, tmp = beside.proc, beside.tmp
    del beside  # e.g. fine-tuning raised: the child is killed and its inputs removed
    import gc

    gc.collect()
    assert proc.poll() is not None and not tmp.exists()
    (tmp_path / "baseline.json").write_text("{}")
    assert baselines.start_beside(tmp_path, tiny_run.splits, 0, "cuda") is None  # already computed


# ---------------------------------------------------------------- training: padded widths, compiled layers


def _no_dropout(model):
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def test_padded_widths_give_the_unpadded_logits_and_loss(tiny_run):
    model = copy.deepcopy(tiny_run.model).eval()
    data = tiny_run.encoded["train"]
    plain = {tuple(i.tolist()): b for i, b in length_batches(data, 12, multiple_of=1)}
    padded = {tuple(i.tolist()): b for i, b in length_batches(data, 12, multiple_of=32)}
    assert plain.keys() == padded.keys()
    assert any(padded[k]["input_ids"].shape[1] > plain[k]["input_ids"].shape[1] for k in plain)
    with torch.no_grad():
        for k, b in plain.items():
            p = padded[k]
            a = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            c = model(input_ids=p["input_ids"], attention_mask=p["attention_mask"]).logits
            torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(F.cross_entropy(c, p["labels"]), F.cross_entropy(a, b["labels"]))


class Recording:
    """A torch.compile backend: AOT autograd like ``cudagraphs`` (without the graphs), recording each graph's
    example input shapes."""

    def __init__(self):
        self.shapes = []

    def __call__(self, gm, inputs):
        self.shapes.append([tuple(t.shape) for t in inputs if isinstance(t, torch.Tensor) and t.ndim == 3])
        return torch._dynamo.lookup_backend("aot_eager")(gm, inputs)


def _train(model, tiny_run, **kwargs):
    settings = TrainSettings(epochs=2, lr=1e-3, batch_size=12, warmup_ratio=0.1, weight_decay=0.01, seed=3)
    return train(model, tiny_run.encoded["train"], settings, **{"device": "cpu", "progress": False, **kwargs})


def test_compiled_layers_train_like_the_eager_loop(tiny_run):
    """Same batches (widths padded to 32 either way), dropout off: the weights after two epochs agree with the
    eager loop's, and with the plain unpadded loop's within fp32 noise.  Only full batches were compiled, each
    layer of every width through one graph, and the model comes back uncompiled."""
    n = len(tiny_run.encoded["train"])
    assert n % 12, "the test needs an epoch with a short batch"
    start = _no_dropout(tiny_run.model)
    plain, eager, compiled = (copy.deepcopy(start) for _ in range(3))
    _train(plain, tiny_run, compile="none")
    _train(eager, tiny_run, compile="none", multiple_of=32)
    backend = Recording()
    info = _train(compiled, tiny_run, compile=backend)
    assert info["steps"] == 2 * -(-n // 12) and info["compile"] == "Recording"
    assert backend.shapes and all(s[0] == 12 and s[1] % 32 == 0 for shapes in backend.shapes for s in shapes)
    assert len(backend.shapes) <= 2  # one graph per width (and padding-mask kind), shared by the four layers
    assert all(layer._compiled_call_impl is None for layer in get_layers(compiled))
    for (name, a), b, c in zip(eager.named_parameters(), compiled.parameters(), plain.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
        torch.testing.assert_close(c, a, rtol=1e-3, atol=1e-4, msg=name)


def test_a_failing_compiler_falls_back_to_the_eager_steps(tiny_run):
    def broken(gm, inputs):
        raise RuntimeError("no kernels today")

    start = _no_dropout(tiny_run.model)
    eager, fallback = copy.deepcopy(start), copy.deepcopy(start)
    _train(eager, tiny_run, compile="none", multiple_of=32)
    with pytest.warns(UserWarning, match="training eagerly"):
        info = _train(fallback, tiny_run, compile=broken)
    assert info["compile"] == "failed: eager"
    for a, b in zip(eager.parameters(), fallback.parameters()):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_the_compile_policy(monkeypatch):
    from paperlib import train as t

    monkeypatch.delenv(t.COMPILE_ENV, raising=False)
    assert t.compile_mode(None, "cpu") is None  # auto: eager on a CPU
    assert t.compile_mode(None, "cuda") == t.CUDA_COMPILE
    assert t.compile_mode(False, "cuda") is None and t.compile_mode(True, "cpu") == "default"
    monkeypatch.setenv(t.COMPILE_ENV, "none")
    assert t.compile_mode(None, "cuda") is None
    monkeypatch.setenv(t.COMPILE_ENV, "reduce-overhead")
    assert t.compile_mode(None, "cpu") == "reduce-overhead"
    assert t.compile_mode("cudagraphs", "cpu") == "cudagraphs"
    monkeypatch.setenv(t.COMPILE_ENV, "fastest")
    with pytest.raises(PaperlibError, match="PAPERLIB_COMPILE"):
        t.compile_mode(None, "cuda")


# ---------------------------------------------------------------- the GPU pipeline benchmark


def _bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gpu_pipeline", REPO / "benchmarks" / "bench_gpu_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_the_benchmarks_flop_count_is_torchs_for_a_forward_and_a_backward(attn):
    """Against ``torch.utils.flop_counter`` on an eager-attention model (whose attention is plain matmuls); with
    SDPA the counter sees only the linear layers (it counts no CPU attention kernel), which must match ours
    minus the attention term 4 B T^2 n h."""
    from torch.utils.flop_counter import FlopCounterMode

    from paperlib.models import load_model

    bench = _bench()
    model, _ = load_model("random:tiny", attn_implementation=attn)
    model = _no_dropout(model)
    ids = torch.randint(0, 1000, (3, 20))
    mask = torch.ones_like(ids)
    mask[0, 10:] = 0
    attention = 4 * 3 * 20 * 20 * 4 * model.config.hidden_size if attn == "sdpa" else 0
    model.eval()
    with FlopCounterMode(display=False) as fc:
        model(input_ids=ids, attention_mask=mask)
    assert fc.get_total_flops() == bench.forward_flops(model, 3, 20) - attention
    model.train()
    with FlopCounterMode(display=False) as fc:
        model(input_ids=ids, attention_mask=mask).logits.sum().backward()
    assert fc.get_total_flops() == 3 * (bench.forward_flops(model, 3, 20) - attention)


def test_the_gpu_pipeline_benchmark_runs_the_four_stages_on_cpu(tmp_path, synthetic_folder):
    bench = _bench()
    out = tmp_path / "gpu_pipeline.json"
    argv = ["--model", "random:tiny", "--preset", "tiny", "--datasets", str(synthetic_folder), "--device", "cpu"]
    argv += ["--strategies", "all", "--depths", "best", "--json", str(out), "--out", str(tmp_path / "runs")]
    import paperlib.pruning as pruning
    import paperlib.train as train_module

    plain, plain_logits = train_module.predict_logits, pruning.Pruner.logits
    result = bench.main([*argv, "--breakdown"])
    saved = json.loads(out.read_text())
    assert saved == result
    assert {"date", "hardware", "command", "datasets", "seeds", "wall_s", "stages"} <= set(saved)
    assert saved["datasets"] == [str(synthetic_folder)] and saved["seeds"] == [0]
    assert list(saved["stages"]) == ["process_start", "finetune", "prune", "fuse", "distill", "reload"]
    for name, v in saved["stages"].items():
        # fuse may run no forward at all: a fused order that meets kept sets the single signals already
        # evaluated reuses their predictions (pruning's warm start)
        assert v["s"] > 0 and (v["bound_s"] > 0 if name in ("finetune", "prune", "distill") else True)
        assert v["bound_s"] == 0 or name in bench.STAGES
        assert v["bound_s"] == pytest.approx(v["tflop"] / bench.PEAK_TFLOPS, rel=1e-4)
    assert saved["wall_s"] == pytest.approx(sum(saved["stages"][s]["s"] for s in bench.STAGES), abs=0.02)
    # --breakdown: each stage's parts (and "other") add up to its seconds; what each stage must have done
    parts = saved["breakdown"]
    for name, split in parts.items():
        assert sum(split.values()) == pytest.approx(saved["stages"][name]["s"], abs=0.01)
        assert all(v >= 0 for k, v in split.items() if k != "other") and split["other"] > -0.01
    assert parts["finetune"]["training"] > 0 and parts["finetune"]["evaluation"] > 0  # M_0 and its validation
    assert parts["prune"]["signal pass"] > 0 and parts["prune"]["evaluation"] > 0 and parts["prune"]["writes"] > 0
    assert "training" not in parts["prune"] and parts["distill"]["training"] > 0
    assert train_module.predict_logits is plain and pruning.Pruner.logits is plain_logits  # unwrapped after
    folder = tmp_path / "runs" / "seed-0" / synthetic_folder.name
    assert {"curves.parquet", "distill.parquet", "baseline.json"} <= {p.name for p in folder.iterdir()}


def test_the_train_step_benchmark_compares_modes_from_one_start(synthetic_folder):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_train_steps", REPO / "benchmarks" / "bench_train_steps.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec.loader.exec_module(module)
        rows = module.main(
            ["--model", "random:tiny", "--preset", "tiny", "--dataset", str(synthetic_folder), "--device", "cpu"]
            + ["--modes", "none,aot_eager", "--epochs", "2"]
        )
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert [r["ran"] for r in rows] == ["none", "aot_eager"]
    assert all(r["later_epoch_s"] > 0 and 0 <= r["val_acc"] <= 1 for r in rows)
