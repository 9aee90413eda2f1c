"""Command line: help texts, `finetune` on a tiny model, reuse, interrupted saves, and every bad input
giving one `error:` line, a non-zero exit and no half-written run folder."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import types

import pandas as pd
import pytest

from paperlib import cli

from support import REPO, write_synthetic


def run_cli(argv, capsys):
    """(exit code, stdout, stderr) of ``paperlib <argv>`` run in-process."""
    code = 0
    try:
        cli.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def finetune_args(dataset, out, *extra, model="random:tiny", preset="tiny"):
    return ["finetune", "--dataset", dataset, "--model", model, "--preset", preset, "--out", out, "--quiet", *extra]


# ---------------------------------------------------------------- help


def test_every_option_of_every_command_has_help(capsys):
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"finetune", "prune", "fuse", "distill", "table", "reproduce"} <= set(subparsers.choices)
    help_of = {c.dest: c.help for c in subparsers._choices_actions}
    for name, sub in subparsers.choices.items():
        assert help_of.get(name), f"{name} has no one-line help"
        assert sub.description, f"{name} has no description"
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help and len(action.help) > 10, f"{name} {action.option_strings} has no help"
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0 and all(n in out for n in subparsers.choices)
    code, out, _ = run_cli(["finetune", "--help"], capsys)
    assert code == 0 and "--data-dir" in out and "PAPERLIB_DATA_DIR" in out and "labels.txt" in out


def test_no_command_prints_help_and_fails(capsys):
    code, out, _ = run_cli([], capsys)
    assert code != 0 and "finetune" in out


# ---------------------------------------------------------------- finetune


def test_finetune_writes_the_run_folder_and_reuses_it(tmp_path, capsys, monkeypatch):
    data = write_synthetic(tmp_path / "fruit", n_per_class=60)
    (data / "labels.txt").write_text("fruit\ncar\nsport\n")
    out = tmp_path / "runs"
    code, stdout, err = run_cli(finetune_args(data, out), capsys)
    assert code == 0, err
    folder = out / "seed-0" / "fruit"
    # M_0 and, beside it, the classical reference (TF-IDF + logistic regression) with its test predictions
    assert sorted(p.name for p in folder.iterdir()) == [
        "baseline.json",
        "baseline_predictions.parquet",
        "config.json",
        "metrics.json",
        "model",
    ]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert f"test acc {metrics['test_acc']:.4f}" in stdout
    baseline = json.loads((folder / "baseline.json").read_text())  # the classical reference beside M_0
    assert f"classical reference TF-IDF+LR (C={baseline['C']:g}" in stdout
    config = json.loads((folder / "config.json").read_text())
    assert config["class_names"] == ["fruit", "car", "sport"] and config["preset"]["name"] == "tiny"
    saved = json.loads((folder / "model" / "config.json").read_text())
    assert saved["id2label"] == {"0": "fruit", "1": "car", "2": "sport"} and saved["kept_layers"] == [0, 1, 2, 3]
    assert (folder / "model" / "tokenizer.json").is_file() or (folder / "model" / "vocab.txt").is_file()
    assert not [p for p in out.rglob(".*")], "temporary files left behind"

    # the same config again: the saved model is reused, nothing is trained or rewritten
    import paperlib.experiment as experiment

    def no_training(*args, **kwargs):
        raise AssertionError("a rerun with the same config must reuse the model")

    monkeypatch.setattr(experiment, "train", no_training)
    stamp = (folder / "model" / "model.safetensors").stat().st_mtime_ns
    code, stdout2, err = run_cli(finetune_args(data, out), capsys)
    assert code == 0, err
    assert stdout2 == stdout and (folder / "model" / "model.safetensors").stat().st_mtime_ns == stamp

    # another config in the same folder is refused, and the folder is left as it was
    code, _, err = run_cli(finetune_args(data, out, "--max-length", "16"), capsys)
    assert code == 2 and "different config" in err and "max_length" in err
    assert json.loads((folder / "metrics.json").read_text()) == metrics


def test_interrupted_save_leaves_no_half_folder(tmp_path, capsys, monkeypatch):
    from transformers import PreTrainedModel

    data = write_synthetic(tmp_path / "synth", n_per_class=40)
    out = tmp_path / "runs"
    real_save = PreTrainedModel.save_pretrained

    def save_then_interrupt(self, *args, **kwargs):
        real_save(self, *args, **kwargs)  # the weights are on disk (in the temporary folder) ...
        raise KeyboardInterrupt  # ... when the user presses Ctrl-C

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_then_interrupt)
    code, _, err = run_cli(finetune_args(data, out), capsys)
    assert code == 130 and "interrupted" in err
    assert not (out / "seed-0" / "synth").exists() and not [p for p in out.rglob("*") if p.is_file()]

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", real_save)
    import paperlib.experiment as experiment

    real_write = experiment.write_json

    def fail_on_metrics(obj, path):
        if str(path).endswith("metrics.json"):
            raise KeyboardInterrupt
        real_write(obj, path)

    monkeypatch.setattr(experiment, "write_json", fail_on_metrics)
    code, _, _ = run_cli(finetune_args(data, out), capsys)
    assert code == 130 and not (out / "seed-0" / "synth").exists()

    monkeypatch.setattr(experiment, "write_json", real_write)
    code, _, err = run_cli(finetune_args(data, out), capsys)
    assert code == 0, err
    assert {p.name for p in (out / "seed-0" / "synth").iterdir()} == {
        "baseline.json",
        "baseline_predictions.parquet",
        "config.json",
        "metrics.json",
        "model",
    }


# ---------------------------------------------------------------- bad input


def write(folder, df, stem="all"):
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / f"{stem}.csv", index=False)
    return folder


def rows(counts):
    return pd.DataFrame(
        [(f"text {label} {i}", label) for label, n in counts.items() for i in range(n)], columns=["text", "label"]
    )


def gpt2_folder(path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.for_model(
        "gpt2",
        n_embd=32,
        n_layer=2,
        n_head=2,
        vocab_size=1000,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    return path


BAD_INPUTS = {  # case -> (argv builder given tmp_path, words the error must contain)
    "unknown dataset": (lambda t: finetune_args("no_such_set", t / "out"), ["unknown dataset", "bbc_news"]),
    "unknown model": (
        lambda t: finetune_args(write_synthetic(t / "ok"), t / "out", model="no-such-model"),
        ["unknown model 'no-such-model'", "minilm"],
    ),
    "unknown random model": (
        lambda t: finetune_args(write_synthetic(t / "ok"), t / "out", model="random:huge"),
        ["random:huge"],
    ),
    "unknown preset": (
        lambda t: finetune_args(write_synthetic(t / "ok"), t / "out", preset="huge"),
        ["unknown preset 'huge'"],
    ),
    "hub name offline": (lambda t: finetune_args("imdb", t / "out"), ["--data-dir", "imdb/"]),
    "folder without csvs": (lambda t: (t / "bare").mkdir() or finetune_args(t / "bare", t / "out"), ["all.csv"]),
    "missing columns": (
        lambda t: finetune_args(write(t / "cols", rows({0: 60, 1: 60}).rename(columns={"label": "y"})), t / "out"),
        ["lacks column(s) ['label']"],
    ),
    "labels not 0..K-1": (lambda t: finetune_args(write(t / "lab", rows({1: 60, 2: 60})), t / "out"), ["0..K-1"]),
    "one class": (lambda t: finetune_args(write(t / "one", rows({0: 200})), t / "out"), ["1 class(es)"]),
    "too few rows": (lambda t: finetune_args(write(t / "few", rows({0: 10, 1: 10})), t / "out"), ["too few rows"]),
    "max_length below 8": (
        lambda t: finetune_args(write_synthetic(t / "ok"), t / "out", "--max-length", "7"),
        ["max_length must be at least 8"],
    ),
    "data dir missing": (lambda t: finetune_args("imdb", t / "out", "--data-dir", t / "nowhere"), ["not a folder"]),
    # checked before the fine-tune that distill would otherwise run first: nothing is written
    "unknown depth policy": (
        lambda t: ["distill", *finetune_args(write_synthetic(t / "ok"), t / "out", "--depths", "most")[1:]],
        ["--depths must be one of", "every_other", "three"],
    ),
    "unsupported architecture": (
        lambda t: finetune_args(write_synthetic(t / "ok"), t / "out", model=gpt2_folder(t / "gpt2")),
        ["cannot find the layer list", "BERT", "RoBERTa", "DistilBERT", "ELECTRA", "MPNet"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_error_line_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setitem(sys.modules, "datasets", None)  # as in the base install: no `datasets`
    build, words = BAD_INPUTS[case]
    argv = build(tmp_path)
    capsys.readouterr()
    code, out, err = run_cli(argv, capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*")), "half-written run folder"


def test_hub_name_with_fake_datasets_module_fails_fast_offline(tmp_path, capsys, monkeypatch):
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda *a, **k: (_ for _ in ()).throw(AssertionError("load_dataset called while offline"))
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(finetune_args("dbpedia", tmp_path / "out"), capsys)
    assert code == 2 and err.startswith("error: ") and "unreachable" in err and "--data-dir" in err
    assert not (tmp_path / "out").exists()


def test_subprocess_exit_status_and_stderr(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PAPERLIB_QUIET="1")
    proc = subprocess.run(
        [sys.executable, "-m", "paperlib", "finetune", "--dataset", "no_such_set", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith(
        "error: unknown dataset"
    )
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- options checked before any work


@pytest.mark.parametrize(
    "argv, words",
    [
        (["prune", "--strategies", "Weight-Entropy,Nope"], ["unknown strategy", "Nope"]),
        (["prune", "--strategies", "Random-Forest"], ["paperlib fuse"]),
        (["distill", "--depths", "2,x"], ["--depths", "'2,x'"]),
        (["distill", "--depths", "0"], ["--depths", "k >= 1"]),
        (["distill", "--strategy", "Random-Forrest"], ["unknown --strategy", "Random-Forest"]),
    ],
)
def test_stage_options_are_checked_before_any_work(argv, words, tmp_path, capsys, monkeypatch):
    import paperlib.experiment as experiment

    def no_work(*args, **kwargs):
        raise AssertionError("data loaded or model trained before the options were checked")

    monkeypatch.setattr(experiment, "prepare", no_work)
    data = write_synthetic(tmp_path / "synth", n_per_class=40)
    code, out, err = run_cli(
        [*argv, "--dataset", data, "--model", "random:tiny", "--preset", "tiny", "--out", tmp_path / "out", "--quiet"],
        capsys,
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(w in lines[0] for w in words), lines[0]
    assert not (tmp_path / "out").exists()


def test_run_config_records_no_machine_paths(tmp_path, capsys, monkeypatch):
    """config.json names the data by its folder (relative to the data dir) and its fingerprint only."""
    data_dir = tmp_path / "data"
    write_synthetic(data_dir / "mine", n_per_class=40)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(finetune_args(data_dir / "mine", tmp_path / "runs", "--data-dir", data_dir), capsys)
    assert code == 0, err
    text = (tmp_path / "runs" / "seed-0" / "mine" / "config.json").read_text()
    config = json.loads(text)
    assert str(tmp_path) not in text and config["source"] == "local:mine" and config["dataset_arg"] == "mine"
    assert len(config["data_fingerprint"]) == 16
    # the recorded name is enough to rebuild the run from the data dir (as notebook 06 does)
    from paperlib.config import get_preset
    from paperlib.experiment import prepare

    run = prepare(
        config["dataset_arg"], config["model"], get_preset("tiny"), tmp_path / "runs", data_dir, progress=False
    )
    assert run.splits.fingerprint() == config["data_fingerprint"]


def test_prune_with_a_bad_strategy_fails_before_loading_anything(tmp_path):
    """With bars on (no PAPERLIB_QUIET), the error line is all stderr shows: no "Loading weights" bar, no
    fine-tuning."""
    env = {k: v for k, v in os.environ.items() if k != "PAPERLIB_QUIET"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "paperlib",
            "prune",
            "--dataset",
            "bbc_news",
            "--preset",
            "tiny",
            "--strategies",
            "No-Such-Signal",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: ")
    assert "No-Such-Signal" in proc.stderr and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- runtime settings (config.runtime, issue 24)


def test_runtime_reads_the_variables_and_follows_their_changes(monkeypatch, tmp_path):
    import dataclasses

    from paperlib.config import Runtime, runtime
    from paperlib.errors import PaperlibError

    monkeypatch.setenv("PAPERLIB_QUIET", "1")
    monkeypatch.setenv("PAPERLIB_PRECISION", " BF16 ")
    monkeypatch.setenv("PAPERLIB_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("PAPERLIB_MPNET_SDPA", "0")
    rt = runtime()
    assert (rt.quiet, rt.precision, rt.cache_dir, rt.mpnet_sdpa) == (True, "bf16", tmp_path / "c", False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rt.quiet = False
    assert Runtime.from_environ(rt.environ()) == rt  # what a child process is given reads back the same
    monkeypatch.setenv("PAPERLIB_QUIET", "0")  # a test's (or a user's) change is seen on the next call
    assert runtime().quiet is False
    monkeypatch.setenv("PAPERLIB_PRECISION", "half")
    with pytest.raises(PaperlibError, match=r"\$PAPERLIB_PRECISION must be one of auto, bf16, fp32"):
        runtime()


def test_flags_reach_the_stages_through_runtime_not_the_environment(tmp_path, capsys, monkeypatch):
    """--quiet and --precision are seen by the code below the CLI (bars off, bf16) while the environment
    stays as it was (conftest sets PAPERLIB_PRECISION=fp32; PAPERLIB_QUIET unset here)."""
    import paperlib.experiment as experiment
    from paperlib.errors import PaperlibError
    from paperlib.train import precision, progress_enabled

    seen = {}

    def stage_spy(*args, **kwargs):
        seen.update(precision=precision("cpu"), bars=progress_enabled(), environ=dict(os.environ))
        raise PaperlibError("stop here")

    monkeypatch.setattr(experiment, "prepare", stage_spy)
    monkeypatch.delenv("PAPERLIB_QUIET")
    before = dict(os.environ)
    data = write_synthetic(tmp_path / "synth")
    argv = ["prune", "--dataset", data, "--preset", "tiny", "--out", tmp_path / "out", "--quiet", "--precision", "bf16"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "stop here" in err
    assert (seen["precision"], seen["bars"], seen["environ"]) == ("bf16", False, before)
    assert dict(os.environ) == before and progress_enabled() and precision("cpu") == "fp32"


def test_reproduce_gives_its_kernels_the_precision_flag(tmp_path, capsys, monkeypatch):
    """Papermill's kernels are other processes: for them (only) the flag becomes $PAPERLIB_PRECISION."""
    import paperlib.sweep as sweep

    seen = {}
    monkeypatch.setattr(sweep, "reproduce", lambda **kw: seen.update(env=os.environ.get("PAPERLIB_PRECISION")))
    code, _, err = run_cli(["reproduce", "--precision", "bf16", "--runs", tmp_path / "r"], capsys)
    assert seen == {"env": "bf16"} and os.environ["PAPERLIB_PRECISION"] == "fp32"


def test_no_module_reads_paperlib_variables_but_config():
    """One reader of the PAPERLIB_* variables (config.runtime); reproduce and notebook_run set kernels' environment."""
    import re

    offenders = []
    for path in sorted((REPO / "paperlib").glob("*.py")):
        if path.name in ("config.py", "reproduce.py", "notebook_run.py"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"environ\b.*PAPERLIB_|environ\b.*_ENV\b", line):
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert offenders == []
