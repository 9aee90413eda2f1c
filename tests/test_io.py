"""Result files (SPEC 9): atomic folder replace, the run-folder lock, a killed writer's leftovers, damaged files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from paperlib.errors import PaperlibError
from paperlib.io import (
    atomic_dir,
    atomic_path,
    clean_leftovers,
    read_csv,
    read_json,
    read_parquet,
    run_lock,
    update_parquet,
    write_parquet,
)

from support import REPO


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------- atomic folder replace


def test_a_csv_without_its_columns_or_with_an_open_quote_is_one_error(tmp_path):
    (tmp_path / "weights.csv").write_text("signal,lr_coefficient\nA,0.1\n")
    with pytest.raises(PaperlibError, match=r"weights\.csv.*protocol"):
        read_csv(tmp_path / "weights.csv", required=("protocol",))
    (tmp_path / "cut.csv").write_text('signal,protocol\n"Activation-Mean,within\n')
    with pytest.raises(PaperlibError, match="cut.csv"):
        read_csv(tmp_path / "cut.csv")
    assert list(read_csv(tmp_path / "weights.csv")["signal"]) == ["A"]


def test_atomic_files_get_the_mode_a_plain_open_gives(tmp_path):
    """mkstemp's temporary file is 0600; a result (a report page, a parquet file) must be readable as umask allows."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with atomic_path(tmp_path / "atomic.txt") as tmp:
        tmp.write_text("x")
    write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "frame.parquet")
    for path in (tmp_path / "atomic.txt", tmp_path / "frame.parquet"):
        assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777, path


def test_atomic_dir_replaces_the_folder_and_never_leaves_it_missing(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("0")
    seen_missing, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            if not target.is_dir():
                seen_missing.append(time.monotonic())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(1, 200):
            with atomic_dir(target) as tmp:
                (tmp / "weights").write_text(str(i))
    finally:
        stop.set()
        watcher.join()
    assert (target / "weights").read_text() == "199"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary or old folder left
    if sys.platform.startswith("linux"):
        assert seen_missing == []  # swapped in one step


def test_a_failed_block_keeps_the_old_folder(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed while saving")
    assert (target / "weights").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_fallback_swap_killed_between_renames_is_restored(tmp_path, monkeypatch):
    """Without an atomic exchange, a run killed after moving the old folder aside leaves '.model.<pid>.x.old'
    and no model/: the next run puts the old folder back."""
    pid = dead_pid()
    old = tmp_path / f".model.{pid}.abc123.old"
    old.mkdir()
    (old / "weights").write_text("old")
    (tmp_path / f".curves.parquet.{pid}.zz9.tmp").write_bytes(b"PAR1 half")
    (tmp_path / f".model.{pid}.q1w2.tmp").mkdir()
    live = tmp_path / f".distill.parquet.{os.getpid()}.live.tmp"  # our own writer, still running
    live.write_bytes(b"x")
    (tmp_path / ".hidden_user_file").write_text("keep")
    handled = clean_leftovers(tmp_path)
    assert len(handled) == 3
    assert (tmp_path / "model" / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", live.name, ".hidden_user_file"])


def test_fallback_swap_path(tmp_path, monkeypatch):
    from paperlib import io

    monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    target = tmp_path / "model"
    for i in range(3):
        with atomic_dir(target) as tmp:
            (tmp / "weights").write_text(str(i))
    assert (target / "weights").read_text() == "2" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# ---------------------------------------------------------------- damaged files


def test_damaged_files_are_one_error_naming_the_file(tmp_path):
    (tmp_path / "curves.parquet").write_bytes(b"PAR1 this is not parquet")
    (tmp_path / "metrics.json").write_text('{"val_acc": 0.9')
    (tmp_path / "fusion_weights.csv").write_bytes(b"\xff\xfe\x00garbage\x81")
    for reader, name in (
        (read_parquet, "curves.parquet"),
        (read_json, "metrics.json"),
        (read_csv, "fusion_weights.csv"),
    ):
        with pytest.raises(PaperlibError) as info:
            reader(tmp_path / name)
        msg = str(info.value)
        assert "\n" not in msg and name in msg
        # M_0's record: every later file came from that M_0, so the advice is the folder; else the file
        assert ("delete that run folder" if name == "metrics.json" else "delete that file") in msg


def test_a_whole_file_of_the_wrong_shape_is_the_damaged_file_error(tmp_path):
    """Each run file has one schema (columns and kinds, or keys and types), checked where it is read."""
    from paperlib.io import RUN_FILES

    pd.DataFrame({"strategy": ["Random"], "seed": [0]}).to_parquet(tmp_path / "curves.parquet")  # columns missing
    pd.DataFrame({"split": ["val"], "example": ["zero"], "label": [1]}).to_parquet(tmp_path / "labels.parquet")
    (tmp_path / "fusion_within.json").write_text("[1, 2]")
    (tmp_path / "metrics.json").write_text('{"val_acc": "high", "test_acc": 0.5}')
    for reader, name, words in (
        (read_parquet, "curves.parquet", "no column(s) ['step'"),
        (read_parquet, "labels.parquet", "column 'example' is "),
        (read_json, "fusion_within.json", "a JSON list"),
        (read_json, "metrics.json", "key 'val_acc' holds a str"),
    ):
        with pytest.raises(PaperlibError, match=r"is damaged") as info:
            reader(tmp_path / name)
        advice = "delete that run folder" if name == "metrics.json" else f"`paperlib {RUN_FILES[name].stage}`"
        assert words in str(info.value) and advice in str(info.value), str(info.value)
    # the columns asked for are the ones checked; a file of another name has no schema
    assert list(read_parquet(tmp_path / "curves.parquet", columns=["strategy"])["strategy"]) == ["Random"]
    pd.DataFrame({"anything": [1]}).to_parquet(tmp_path / "notes.parquet")
    assert list(read_parquet(tmp_path / "notes.parquet").columns) == ["anything"]


def test_the_committed_reference_runs_match_the_schemas():
    """Every run file of results/ (the one-seed runs and each seed of the seeded runs) passes its schema."""
    from paperlib.io import check_run_files

    root = REPO / "results"
    folders = [p for p in [*root.glob("*/*"), *root.glob("*/seed-*/*")] if (p / "config.json").is_file()]
    assert len(folders) >= 18 + 2 * 27
    for folder in folders:
        check_run_files(folder)


def test_check_writable_names_the_file_in_the_way(tmp_path):
    from paperlib.io import check_writable

    (tmp_path / "f").write_text("x")
    check_writable(tmp_path / "new" / "deeper", "run folder", "--out")  # creatable: fine, and nothing made
    assert not (tmp_path / "new").exists()
    for path, words in ((tmp_path / "f", "is a file"), (tmp_path / "f" / "sub", f"{str(tmp_path / 'f')!r} is a file")):
        with pytest.raises(PaperlibError, match="--out") as info:
            check_writable(path, "run folder", "--out")
        assert words in str(info.value)


@pytest.mark.parametrize(
    "code, words",
    [
        (28, "the disk is full"),  # ENOSPC
        (13, "writable"),  # EACCES
        (30, "read-only"),  # EROFS
        (20, "a file stands where a folder is needed"),  # ENOTDIR
    ],
)
def test_os_errors_are_one_line_saying_what_to_do(code, words):
    import errno

    from paperlib.errors import os_error_message

    assert code in errno.errorcode
    line = os_error_message(OSError(code, os.strerror(code), "/runs/x/curves.parquet"))
    assert "\n" not in line and os.strerror(code) in line and "'/runs/x/curves.parquet'" in line and words in line


def test_cli_reports_a_damaged_run_file_in_one_line(tmp_path):
    folder = tmp_path / "runs" / "synth"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{not json")
    write_parquet(pd.DataFrame({"strategy": ["Random"], "seed": [0], "step": [1]}), folder / "curves.parquet")
    env = dict(os.environ, PYTHONPATH=str(REPO), PAPERLIB_QUIET="1")
    proc = subprocess.run(
        [sys.executable, "-m", "paperlib", "table", "--runs", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "metrics.json" in lines[0] and "delete" in lines[0]


# ---------------------------------------------------------------- locked read-modify-write

WRITER = r"""
import sys, time
import pandas as pd
from paperlib.pruning import _done, _save
from paperlib.runfiles import CURVE_COLUMNS, PREDICTION_COLUMNS, SIGNAL_COLUMNS, CURVES_FILE, _read, _typed_curves
from pathlib import Path

folder, strategy, n_jobs, mode = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
N_STEPS = 3

def curve(seed):
    # a deterministic stand-in for a pruning curve: what the job computes, known in advance
    return pd.DataFrame([(strategy, seed, k, k, "0,1", seed + k / 10, seed - k / 10, 100 - k, 400 - 4 * k)
                         for k in range(1, N_STEPS + 1)], columns=CURVE_COLUMNS)

if mode == "kill":  # the 4th parquet write of this process stops half-way and waits to be killed
    real, calls = pd.DataFrame.to_parquet, []
    def to_parquet(self, path, *a, **k):
        calls.append(path)
        if len(calls) == 4:
            Path(path).write_bytes(b"PAR1 half a file")
            (folder / "READY").write_text(str(path))
            time.sleep(600)
        return real(self, path, *a, **k)
    pd.DataFrame.to_parquet = to_parquet

done = _done(_read(folder / CURVES_FILE, CURVE_COLUMNS, _typed_curves), N_STEPS)
for seed in range(n_jobs):
    if (strategy, seed) not in done:  # the resume rule of run_pruning
        empty = pd.DataFrame(columns=SIGNAL_COLUMNS), pd.DataFrame(columns=PREDICTION_COLUMNS)
        _save(folder, curve(seed), *empty, (strategy, seed))
"""


def writer(folder: Path, strategy: str, n_jobs: int, mode: str = "run") -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), strategy, str(n_jobs), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def expected_curves(strategies: dict[str, int]) -> pd.DataFrame:
    rows = [
        (s, seed, k, k, "0,1", seed + k / 10, seed - k / 10, 100 - k, 400 - 4 * k)
        for s, n in strategies.items()
        for seed in range(n)
        for k in range(1, 4)
    ]
    from paperlib.runfiles import CURVE_COLUMNS, _typed_curves

    return _typed_curves(pd.DataFrame(rows, columns=CURVE_COLUMNS))


def test_a_stage_killed_mid_write_is_completed_by_the_next_run(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    proc = writer(folder, "Weight-Entropy", 6, "kill")
    deadline = time.monotonic() + 120
    while not (folder / "READY").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (folder / "READY").unlink()
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert leftovers, "the kill should have hit a write in progress"
    # the file on disk is the last complete one: readable, the finished jobs whole
    partial = read_parquet(folder / "curves.parquet")
    assert set(partial.groupby(["strategy", "seed"]).size()) == {3}
    done_before = len(partial) // 3
    assert 1 <= done_before < 6
    rerun = writer(folder, "Weight-Entropy", 6)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    got = read_parquet(folder / "curves.parquet")
    pd.testing.assert_frame_equal(got, expected_curves({"Weight-Entropy": 6}))  # nothing lost or duplicated
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]  # the dead writer's leftover is gone


def test_two_stages_writing_one_run_folder_keep_both_results(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    procs = [writer(folder, name, 12) for name in ("Random", "Linear-Regression")]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    got = read_parquet(folder / "curves.parquet")
    pd.testing.assert_frame_equal(got, expected_curves({"Linear-Regression": 12, "Random": 12}))


def test_update_parquet_replaces_rows_by_key_and_keeps_the_rest(tmp_path):
    path = tmp_path / "rows.parquet"  # a name without a run-file schema
    update_parquet(path, pd.DataFrame({"depth": [1, 2], "mode": ["kd", "kd"], "acc": [0.1, 0.2]}), ["depth", "mode"])
    update_parquet(path, pd.DataFrame({"depth": [2, 3], "mode": ["kd", "ce"], "acc": [0.25, 0.3]}), ["depth", "mode"])
    got = read_parquet(path).sort_values(["depth"]).reset_index(drop=True)
    assert got.to_dict("list") == {"depth": [1, 2, 3], "mode": ["kd", "kd", "ce"], "acc": [0.1, 0.25, 0.3]}


def test_run_lock_is_reentrant_and_exclusive_between_threads(tmp_path):
    order = []
    with run_lock(tmp_path):
        with run_lock(tmp_path):  # re-entrant: no deadlock
            t = threading.Thread(target=lambda: run_lock_and_log(tmp_path, order))
            t.start()
            time.sleep(0.3)
            order.append("main done")
    t.join(10)
    assert order == ["main done", "thread got the lock"]


def test_the_lock_file_sits_beside_the_run_folder(tmp_path):
    folder = tmp_path / "runs" / "agnews"
    with run_lock(folder):
        pass
    assert list(folder.iterdir()) == [] and (tmp_path / "runs" / ".agnews.paperlib.lock").is_file()


def run_lock_and_log(folder, order):
    with run_lock(folder):
        order.append("thread got the lock")
