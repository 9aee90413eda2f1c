"""paperlib reproduce on Dask: a local cluster's grid equals a direct serial computation, a killed worker's chain
resumes without duplicates, a broken dataset fails alone, GPU workers take one chain at a time each on their own
GPU, and an existing scheduler with separately started workers runs the grid."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from test_reproduce import log, summary_seen, toy_notebooks

from paperlib import reproduce as rp
from paperlib import sweep

from support import REPO, write_synthetic


def toy_data(tmp_path: Path, names) -> str:
    """--datasets for the toy notebooks: data folders of these names (the CLI checks every dataset before any
    work; the toy notebooks never read them)."""
    return ",".join(str(write_synthetic(tmp_path / "data" / n, n_per_class=5)) for n in names)


pytest.importorskip("papermill")
distributed = pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")  # distributed's own dependency

DATASETS = ("synA", "synB")
SEEDS = (0, 1)
KILLED = (1, "synA")  # the chain whose worker is killed mid-chain: seed, dataset

_SETUP = (
    "from paperlib.config import get_preset\nfrom paperlib.experiment import prepare\n"
    "from paperlib.paths import resolve_runs\n"
    "run = prepare(DATASET, MODEL, get_preset(PRESET), resolve_runs(RUNS), DATA_DIR, progress=False, seed=SEED)\n"
)
STAGES = {  # what each stage notebook runs: the calls of the real notebooks, without their tables and figures
    "01_finetune_baseline": _SETUP,
    "02_pruning_signals": "print('signals are computed by 03 here')",
    "03_single_signal_pruning": _SETUP
    + "from paperlib.pruning import run_pruning\nrun_pruning(run, 'Weight-Magnitude', progress=False)\n"
    # the chain whose worker is killed pauses once here, with some curves saved and 03 not complete, so the
    # kill (test_a_worker_killed_mid_chain...) never misses a fast 03; the retry finds the marker and goes on
    + "import pathlib, time\nmarker = pathlib.Path(run.folder) / 'paused'\n"
    + f"if (SEED, pathlib.Path(DATASET).name) == {KILLED!r} and not marker.exists():\n"
    + "    marker.touch()\n    time.sleep(60)\n"
    + "run_pruning(run, 'all', progress=False)",
    "04_strategic_fusion": _SETUP + "from paperlib.fusion import run_fusion\nrun_fusion(run, 'within', progress=False)",
    "05_knowledge_distillation": _SETUP
    + "from paperlib.distill import distill_run\ndistill_run(run, depths=DEPTHS, progress=False, verbose=False)",
}
SUMMARY = (
    "from paperlib.config import get_preset\nfrom paperlib.experiment import prepare\n"
    "from paperlib.fusion import run_fusion\nfrom paperlib.io import read_json\n"
    "from paperlib.paths import resolve_runs, seed_root\n"
    "for seed in SEEDS:\n    root = seed_root(resolve_runs(RUNS), seed)\n    for name in DATASETS:\n"
    "        config = read_json(root / name / 'config.json')\n"
    "        run = prepare(config['dataset_arg'], config['model'], get_preset(PRESET), resolve_runs(RUNS), DATA_DIR, "
    "progress=False, seed=seed)\n        run_fusion(run, 'transfer', runs_root=root, progress=False)"
)


def stage_notebooks(folder: Path) -> Path:
    """01-06 with the real notebooks' parameters, each running its pipeline stage and nothing else."""
    folder.mkdir()
    chain = "DATASET = 'x'\nPRESET = 'tiny'\nRUNS = 'runs'\nDATA_DIR = None\nMODEL = None\nSEED = 0"
    for name, body in STAGES.items():
        params = chain + ("\nDEPTHS = None" if name == rp.DISTILL_NOTEBOOK else "")
        cells = [new_code_cell(params, metadata={"tags": ["parameters"]}), new_code_cell(body)]
        nbformat.write(new_notebook(cells=cells), folder / f"{name}.ipynb")
    params = "PRESET = 'tiny'\nRUNS = 'runs'\nDATASETS = None\nSEEDS = None\nDATA_DIR = None\nMODEL = None"
    cells = [new_code_cell(params, metadata={"tags": ["parameters"]}), new_code_cell(SUMMARY)]
    nbformat.write(new_notebook(cells=cells), folder / f"{rp.SUMMARY_NOTEBOOK}.ipynb")
    return folder


def reference_runs(data: dict[str, Path], data_dir: Path, runs: Path) -> Path:
    """The same grid computed directly, one stage after the other in this process (no notebooks, no Dask)."""
    import torch

    from paperlib.config import get_preset
    from paperlib.distill import distill_run
    from paperlib.experiment import prepare
    from paperlib.fusion import run_fusion
    from paperlib.paths import seed_root
    from paperlib.pruning import run_pruning

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers' kernels (Dask's nannies set OMP_NUM_THREADS=1)
    try:
        for seed in SEEDS:
            preset = get_preset("tiny", seed=seed)
            root = seed_root(runs, seed)
            for folder in data.values():
                run = prepare(str(folder), "random:tiny", preset, runs, data_dir, progress=False)
                run_pruning(run, "all", progress=False)
                run_fusion(run, "within", progress=False)
                distill_run(run, progress=False, verbose=False)
            for folder in data.values():
                run = prepare(str(folder), "random:tiny", preset, runs, data_dir, progress=False)
                run_fusion(run, "transfer", runs_root=root, progress=False)
    finally:
        torch.set_num_threads(threads)
    return runs


KEYS = {  # result files compared with the reference, and the key that must not repeat within each
    "curves.parquet": ["strategy", "seed", "step"],
    "predictions.parquet": ["strategy", "seed", "step", "split", "example"],
    "signals.parquet": None,
    "distill.parquet": ["strategy", "depth", "mode"],
    "distill_predictions.parquet": ["strategy", "depth", "mode", "split", "example"],
}


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in one order, timing columns dropped (wall time differs between any two runs)."""
    df = df.drop(columns=[c for c in df.columns if "second" in c or c.endswith("_time")])
    return df.sort_values(list(df.columns), kind="stable").reset_index(drop=True)


def _metrics(folder: Path) -> dict:
    m = json.loads((folder / "metrics.json").read_text())
    return {k: v for k, v in m.items() if "second" not in k}


def _worker_of_kernel_in(folder: Path) -> tuple[int, int] | None:
    """(worker pid, kernel pid) of the kernel running a notebook of ``folder`` (its progress file is there)."""
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("PAPERLIB_PROGRESS_FILE", "").startswith(str(folder) + os.sep) and "ipykernel" in " ".join(
            proc.cmdline()
        ):
            return proc.ppid(), proc.pid
    return None


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # exited, not yet reaped
    except psutil.NoSuchProcess:
        return True


def _kill_mid_chain(folder: Path, killed: dict, done: threading.Event) -> None:
    """SIGKILL the worker that runs 03 of ``folder`` once 03 has saved some curves (not all: 03 not complete)."""
    deadline = time.monotonic() + 600
    while not done.is_set() and time.monotonic() < deadline:
        if (folder / "curves.parquet").is_file() and not (folder / "03_single_signal_pruning.ipynb").exists():
            found = _worker_of_kernel_in(folder)
            if found:
                os.kill(found[0], signal.SIGKILL)
                killed.update(worker=found[0], kernel=found[1], curves=len(pd.read_parquet(folder / "curves.parquet")))
                return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The tiny preset over 2 datasets x 2 seeds (plus a broken dataset) through the stage notebooks on a
    LocalCluster of 2 single-threaded worker processes, one worker SIGKILLed in the middle of one chain's 03;
    and the same grid computed directly in this process."""
    base = tmp_path_factory.mktemp("grid")
    data_dir = base / "data"  # the runs record folders inside the data dir by name: 06 finds them again there
    data = {name: write_synthetic(data_dir / name, n_per_class=40, seed=i) for i, name in enumerate(DATASETS)}
    broken = data_dir / "broken"
    broken.mkdir()
    (broken / "all.csv").write_text("text,category\nsome words,1\n")  # no label column
    nbs = stage_notebooks(base / "nbs")
    runs = base / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PAPERLIB_PRECISION", "fp32")
        mp.setenv("PAPERLIB_CACHE_DIR", str(base / "cache"))
        mp.delenv("PAPERLIB_DATA_DIR", raising=False)
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
        )
        killed, done = {}, threading.Event()
        seed, name = KILLED
        killer = threading.Thread(target=_kill_mid_chain, args=(runs / f"seed-{seed}" / name, killed, done))
        killer.start()
        out_path = base / "stdout.txt"
        try:
            with open(out_path, "w") as out, _stdout_to(out):
                ok = sweep.reproduce(
                    "tiny",
                    [str(p) for p in (*data.values(), broken)],
                    runs,
                    data_dir=data_dir,
                    model="random:tiny",
                    seeds=len(SEEDS),
                    scheduler=cluster.scheduler_address,
                    notebooks_dir=nbs,
                )
        finally:
            done.set()
            killer.join()
            cluster.close()
        reference = reference_runs(data, data_dir, base / "reference")
    return {"ok": ok, "out": out_path.read_text(), "runs": runs, "reference": reference, "killed": killed}


class _stdout_to:
    """Send this process's stdout lines to a file (module fixtures cannot use capfd)."""

    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        self.saved, sys.stdout = sys.stdout, self.handle

    def __exit__(self, *exc):
        sys.stdout = self.saved


def test_the_grid_equals_a_direct_serial_computation(grid):
    assert grid["ok"] is False  # the broken dataset ...
    for seed in SEEDS:
        for name in DATASETS:
            folder, ref = grid["runs"] / f"seed-{seed}" / name, grid["reference"] / f"seed-{seed}" / name
            for nb in rp.DATASET_NOTEBOOKS:
                assert (folder / f"{nb}.ipynb").is_file(), (seed, name, nb)
            assert _metrics(folder) == _metrics(ref), (seed, name)
            for file in KEYS:
                got, want = pd.read_parquet(folder / file), pd.read_parquet(ref / file)
                pd.testing.assert_frame_equal(_tidy(got), _tidy(want), obj=f"seed-{seed}/{name}/{file}")
            assert {"Random-Forest", "Random-Forest (transfer)"} <= set(
                pd.read_parquet(folder / "curves.parquet").strategy
            )
    # the seeds differ (each seeds its own fine-tuning), so equality above is not one seed's run copied
    a, b = (pd.read_parquet(grid["runs"] / f"seed-{s}" / "synB" / "predictions.parquet") for s in SEEDS)
    assert not _tidy(a).equals(_tidy(b))
    for seed in SEEDS:  # each seed's transfer fusions ran as tasks of their own once its chains had ended
        for name in DATASETS:
            assert f"[seed-{seed}/{name}] transfer fusion: fitted in" in grid["out"], grid["out"]
    summary = grid["runs"] / "summary" / f"{rp.SUMMARY_NOTEBOOK}.ipynb"
    params = json.loads(summary.read_text())["metadata"]["papermill"]["parameters"]
    assert params["DATASETS"] == list(DATASETS) and params["SEEDS"] == list(SEEDS)  # 06 once, over the complete ones


def test_a_broken_dataset_fails_alone_with_one_error_line(grid):
    lines = grid["out"].splitlines()
    failed = [line for line in lines if "FAILED" in line and "broken" in line and not line.startswith("  ")]
    assert len(failed) == len(SEEDS), lines  # one line per broken chain, as it finished ...
    assert all("01_finetune_baseline" in line and "PaperlibError" in line for line in failed), failed
    assert not any("Traceback" in line for line in lines)
    assert lines[-1] == f"reproduce: {len(DATASETS) * len(SEEDS)}/{(len(DATASETS) + 1) * len(SEEDS)} chain(s) " + (
        f"complete, {len(SEEDS)} failed"
    )  # ... and the last line counts the failures


def test_a_worker_killed_mid_chain_is_retried_and_its_files_have_no_duplicates(grid):
    killed = grid["killed"]
    assert killed, "the worker was never killed: the chain ran 03 before it could be"
    assert _gone(killed["worker"])
    assert _gone(killed["kernel"])  # the orphaned kernel exited by itself
    seed, name = KILLED
    folder = grid["runs"] / f"seed-{seed}" / name
    assert f"[seed-{seed}/{name}] done in" in grid["out"]  # it finished after the kill
    for file, key in KEYS.items():
        if key:
            df = pd.read_parquet(folder / file)
            assert not df.duplicated(key).any(), file
    # its curves hold strategies saved before the kill and after, all equal to the reference (first test)
    assert 0 < killed["curves"] < len(pd.read_parquet(grid["reference"] / f"seed-{seed}" / name / "curves.parquet"))


# ---------------------------------------------------------------- toy chains: scheduling and faults


def test_local_cluster_isolates_failures_and_gives_up_on_a_worker_that_always_dies(tmp_path, capfd):
    nbs = toy_notebooks(tmp_path / "nbs")
    runs = tmp_path / "runs"
    ok = sweep.reproduce("tiny", "good,bad,killer", runs, notebooks_dir=nbs, jobs=2)
    out = capfd.readouterr().out
    assert ok is False
    assert "local cluster, 2 worker(s)" in out
    assert log(runs, "good") == list(rp.DATASET_NOTEBOOKS)
    assert out.count("FAILED in 01_finetune_baseline") == 1 and "(ValueError: bad dataset)" in out
    # 'killer' kills its worker in 02 every time: rescheduled WORKER_RETRIES times, then reported, not hung
    assert "[seed-0/killer] FAILED in worker" in out and "KilledWorker" in out
    assert log(runs, "killer") == ["01_finetune_baseline"]  # 01 ran once; every retry resumed at 02
    assert summary_seen(runs) == {"DATASETS": ["good"], "SEEDS": [0]}
    assert out.rstrip().splitlines()[-1] == "reproduce: 1/3 chain(s) complete, 2 failed"


def test_gpu_workers_take_one_chain_at_a_time_each_on_its_own_gpu(tmp_path, monkeypatch):
    nbs = toy_notebooks(tmp_path / "nbs")
    runs = tmp_path / "runs"
    specs = sweep.worker_specs(["3", "7"], cpus=2)
    assert [s["options"]["env"]["CUDA_VISIBLE_DEVICES"] for s in specs.values()] == ["3", "7"]
    for spec in specs.values():
        assert spec["options"]["resources"] == {"GPU": 1} and spec["options"]["nthreads"] == 1
        spec["options"]["nthreads"] = 2  # room for two chains at once: only the GPU resource keeps them apart
    monkeypatch.setenv("TOY_SLEEP", "0.3")
    cluster = sweep.local_cluster(specs, dashboard=None)
    try:
        assert sweep.reproduce("tiny", "a,b,c,d", runs, notebooks_dir=nbs, scheduler=cluster.scheduler_address)
    finally:
        cluster.close()
    spans = {}
    for d in "abcd":
        seen = [json.loads((runs / "seed-0" / d / f"{nb}.seen.json").read_text()) for nb in rp.DATASET_NOTEBOOKS]
        gpus = {s["gpu"] for s in seen}
        assert len(gpus) == 1, (d, gpus)  # every kernel of a chain sees the one GPU of its worker
        spans.setdefault(gpus.pop(), []).append((seen[0]["start"], seen[-1]["end"]))
    assert set(spans) == {"3", "7"}, spans  # both workers, each with its own GPU
    for gpu, intervals in spans.items():
        intervals.sort()
        for (_, end), (start, _) in zip(intervals, intervals[1:]):
            assert start >= end, (gpu, intervals)  # never two chains at once on one GPU


def test_worker_specs_share_gpus_and_cores():
    specs = sweep.worker_specs(["0"], cpus=16, workers_per_gpu=3)
    assert [s["options"]["env"]["CUDA_VISIBLE_DEVICES"] for s in specs.values()] == ["0", "0", "0"]
    assert list(specs) == ["gpu0-0", "gpu0-1", "gpu0-2"]
    specs = sweep.worker_specs(["0", "1"], cpus=16, jobs=3)  # worker i on GPU i mod n
    assert [s["options"]["env"]["CUDA_VISIBLE_DEVICES"] for s in specs.values()] == ["0", "1", "0"]
    cpu = sweep.worker_specs([], cpus=8, n_chains=3)  # half the cores, at most one worker per chain
    assert len(cpu) == 3 and all("resources" not in s["options"] for s in cpu.values())
    if "OMP_NUM_THREADS" not in os.environ:
        assert {s["options"]["env"]["OMP_NUM_THREADS"] for s in cpu.values()} == {"2"}  # 8 cores // 3 workers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scheduler_reaches_separately_started_workers(tmp_path):
    nbs = toy_notebooks(tmp_path / "nbs")
    runs = tmp_path / "runs"
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
    if dask is None:
        pytest.skip("no `dask` command (distributed installs it)")
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        for i in range(2):
            worker = [dask, "worker", address, "--nthreads", "1"]
            procs.append(
                subprocess.Popen(
                    [*worker, "--name", f"w{i}", "--no-dashboard"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        data = toy_data(tmp_path, ["one", "two", "three"])
        cmd = [sys.executable, "-m", "paperlib", "reproduce", "--preset", "tiny", "--datasets", data]
        cmd += ["--runs", str(runs), "--notebooks", str(nbs), "--seeds", "2"]
        done = subprocess.run(
            cmd, capture_output=True, text=True, env={**env, sweep.SCHEDULER_ENV: address}, timeout=300
        )
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"scheduler {address}, 2 worker(s)" in done.stdout
    # the toy notebooks make no M_0: each complete chain's transfer fusion says so instead of failing
    assert "transfer fusion: FAILED" not in done.stdout, done.stdout
    assert done.stdout.count("transfer fusion: skipped (no fine-tuned M_0") == 6, done.stdout
    for seed in (0, 1):
        for d in ("one", "two", "three"):
            assert log(runs, d, seed) == list(rp.DATASET_NOTEBOOKS), (seed, d)
    workers = {line.split(" on ")[1].split()[0] for line in done.stdout.splitlines() if "] done in" in line}
    assert workers == {"w0", "w1"}, done.stdout  # both separately started workers ran chains
    assert summary_seen(runs) == {"DATASETS": ["one", "two", "three"], "SEEDS": [0, 1]}


def test_ctrl_c_cancels_the_grid_and_keeps_every_finished_chain(tmp_path):
    nbs = toy_notebooks(tmp_path / "nbs")
    runs = tmp_path / "runs"
    names = "abcdef"
    cmd = [sys.executable, "-m", "paperlib", "reproduce", "--preset", "tiny", "--datasets", toy_data(tmp_path, names)]
    cmd += ["--jobs", "2", "--notebooks", str(nbs), "--runs", str(runs)]
    env = {**os.environ, "TOY_SLEEP": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        # a terminal's Ctrl-C reaches a process whose SIGINT is live; under a shell without job control (`cmd &`,
        # as CI runners start jobs) SIGINT arrives ignored and Python then never raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    first = None
    for line in proc.stdout:  # until the first chain has finished
        if "] done in" in line:
            first = line.split("]")[0].rsplit("/", 1)[-1]
            break
    assert first, proc.communicate(timeout=60)
    family = psutil.Process(proc.pid).children(recursive=True)  # workers and kernels
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole foreground process group
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, out + err
    assert "interrupted: finished results are saved" in err and "cancelled with" in out
    assert log(runs, first) == list(rp.DATASET_NOTEBOOKS)  # the finished chain's files are all there ...
    for nb in rp.DATASET_NOTEBOOKS:
        assert json.loads((runs / "seed-0" / first / f"{nb}.ipynb").read_text())["metadata"]["papermill"]["end_time"]
    assert sum(log(runs, d) == list(rp.DATASET_NOTEBOOKS) for d in names) < len(names)  # ... the grid was cut short
    deadline = time.monotonic() + 30  # kernels notice within a second that their worker is gone
    while time.monotonic() < deadline and not all(_gone(p.pid) for p in family):
        time.sleep(0.5)
    assert all(_gone(p.pid) for p in family), [p.pid for p in family if not _gone(p.pid)]


def _chain_spans(runs: Path, seeds, names) -> dict[tuple[int, str], tuple[float, float]]:
    """{(seed, dataset): (start of its 01, end of its 05)} from the toy notebooks' records."""
    spans = {}
    for seed in seeds:
        for d in names:
            first, last = (runs / f"seed-{seed}" / d / f"{nb}.seen.json" for nb in rp.DATASET_NOTEBOOKS[::4])
            if first.is_file() and last.is_file():
                spans[(seed, d)] = (json.loads(first.read_text())["start"], json.loads(last.read_text())["end"])
    return spans


def test_chains_start_seed_by_seed_and_start_within_leaves_the_rest_for_the_same_command(tmp_path, capfd):
    """One worker: the chains run one at a time in the plan's order (seed 0's datasets, then seed 1's), never
    several submitted at once; --start-within stops new chains once passed, reports each one left as not started
    (exit status False) without touching it, and the same command then runs exactly those."""
    nbs = toy_notebooks(tmp_path / "nbs")
    runs = tmp_path / "runs"
    specs = sweep.worker_specs([], cpus=2, jobs=1)
    cluster = sweep.local_cluster(specs, dashboard=None)
    try:
        args = dict(seed=0, seeds=2, notebooks_dir=nbs, scheduler=cluster.scheduler_address)
        assert sweep.reproduce("tiny", "a,b", runs, start_within=0.5, **args) is False
        out = capfd.readouterr().out
        assert log(runs, "a", 0) == list(rp.DATASET_NOTEBOOKS)  # the first chain of the plan ran whole ...
        assert all(log(runs, d, s) == [] for s, d in ((0, "b"), (1, "a"), (1, "b")))  # ... nothing of the others
        assert not (runs / "seed-1").exists() and not (runs / "seed-0" / "b").exists()
        for label in ("seed-0/b", "seed-1/a", "seed-1/b"):
            assert f"[{label}] not started (--start-within 0.5 s had passed; the same command runs it)" in out
        assert "3 not started (--start-within): the same command runs them" in out.strip().splitlines()[-1]
        assert "reproduce: 1/4 chain(s) complete, 0 failed" in out
        first = _chain_spans(runs, (0,), "a")[(0, "a")]

        assert sweep.reproduce("tiny", "a,b", runs, **args) is True
        out = capfd.readouterr().out
    finally:
        cluster.close()
    assert "[seed-0/a] done in" in out and "(0 run, 5 done already)" in out
    assert log(runs, "a", 0) == list(rp.DATASET_NOTEBOOKS)  # not run again
    spans = _chain_spans(runs, (0, 1), "ab")
    assert spans[(0, "a")] == first
    order = [(0, "b"), (1, "a"), (1, "b")]
    starts = [spans[c][0] for c in order]
    assert starts == sorted(starts), spans  # seed by seed, in the plan's order
    for earlier, later in zip(order, order[1:]):
        assert spans[later][0] >= spans[earlier][1], spans  # one chain at a time on the one slot
    assert summary_seen(runs) == {"DATASETS": ["a", "b"], "SEEDS": [0, 1]}
