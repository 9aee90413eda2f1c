"""reproduce: papermill over datasets, atomic outputs, resume, failure isolation, and the real notebooks end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from paperlib import notebook_run as nr
from paperlib import paths, sweep
from paperlib import reproduce as rp
from paperlib.errors import PaperlibError

pytest.importorskip("papermill")

REPO = Path(__file__).resolve().parents[1]


def toy_notebooks(folder: Path) -> Path:
    """Six one-cell notebooks.  01-05 append their name to <RUNS>/seed-<SEED>/<DATASET>/log.txt and write what their
    kernel saw (DEPTHS if injected, $CUDA_VISIBLE_DEVICES, their parent's pid, start and end times) to
    <name>.seen.json beside it, after sleeping $TOY_SLEEP seconds.  Datasets that misbehave: 'bad' fails in 01 (a
    cell error); 'crash' kills its own kernel in 03 the first time; 'dead' kills its kernel in 02 every time;
    'killer' kills its kernel's parent (the worker) in 02 every time.  06 writes the DATASETS and SEEDS it got."""
    folder.mkdir()
    for name in rp.DATASET_NOTEBOOKS:
        body = (
            f"import json, os, signal, time\nfrom pathlib import Path\nstart = time.time()\n"
            f"DATASET = Path(DATASET).name  # a data folder given by its path runs under its name\n"
            f"folder = Path(RUNS) / f'seed-{{SEED}}' / DATASET\nfolder.mkdir(parents=True, exist_ok=True)\n"
            f"if DATASET == 'bad' and '{name}'.startswith('01'):\n    raise ValueError('bad dataset')\n"
            f"if DATASET == 'crash' and '{name}'.startswith('03') and not (folder / 'crashed').exists():\n"
            f"    (folder / 'crashed').touch()\n    os._exit(1)\n"
            f"if DATASET == 'dead' and '{name}'.startswith('02'):\n    os._exit(1)\n"
            f"if DATASET == 'killer' and '{name}'.startswith('02'):\n    os.kill(os.getppid(), signal.SIGKILL)\n"
            f"    os._exit(1)\n"
            f"time.sleep(float(os.environ.get('TOY_SLEEP', '0')))\n"
            f"with open(folder / 'log.txt', 'a') as f:\n    f.write('{name}\\n')\n"
            f"seen = {{'DEPTHS': globals().get('DEPTHS', 'absent'), 'gpu': os.environ.get('CUDA_VISIBLE_DEVICES'), "
            f"'worker': os.getppid(), 'start': start, 'end': time.time()}}\n"
            f"(folder / '{name}.seen.json').write_text(json.dumps(seen))\nprint('{name}', DATASET)"
        )
        params = new_code_cell(
            "DATASET = 'x'\nPRESET = 'quick'\nRUNS = 'runs'\nDATA_DIR = None\nMODEL = None\nSEED = 0",
            metadata={"tags": ["parameters"]},
        )
        nbformat.write(new_notebook(cells=[params, new_code_cell(body)]), folder / f"{name}.ipynb")
    params = new_code_cell(
        "PRESET = 'quick'\nRUNS = 'runs'\nDATASETS = None\nSEEDS = None\nDATA_DIR = None\nMODEL = None",
        metadata={"tags": ["parameters"]},
    )
    body = (
        "import json\nfrom pathlib import Path\n"
        "(Path(RUNS) / 'summary.json').write_text(json.dumps({'DATASETS': DATASETS, 'SEEDS': SEEDS}))"
    )
    nbformat.write(new_notebook(cells=[params, new_code_cell(body)]), folder / f"{rp.SUMMARY_NOTEBOOK}.ipynb")
    return folder


def log(runs: Path, dataset: str, seed: int = 0) -> list[str]:
    path = runs / f"seed-{seed}" / dataset / "log.txt"
    return path.read_text().split() if path.is_file() else []


def summary_seen(runs: Path) -> dict:
    return json.loads((runs / "summary.json").read_text())


def test_serial_failures_are_isolated_and_a_rerun_resumes(tmp_path, capfd):
    nbs = toy_notebooks(tmp_path / "nbs")
    runs = tmp_path / "runs"
    ok = sweep.reproduce("tiny", "good,bad", runs, notebooks_dir=nbs, jobs=1)
    out = capfd.readouterr().out
    assert ok is False  # 'bad' failed ...
    assert log(runs, "good") == list(rp.DATASET_NOTEBOOKS)  # ... without stopping 'good'
    assert log(runs, "bad") == []
    assert "FAILED seed-0/bad: 01_finetune_baseline (ValueError: bad dataset)" in out
    assert out.rstrip().splitlines()[-1] == "reproduce: 1/2 chain(s) complete, 1 failed"  # the last line counts
    bad = runs / "seed-0" / "bad"
    assert (bad / "01_finetune_baseline.failed.ipynb").is_file()  # the traceback, kept to read
    assert not (bad / "01_finetune_baseline.ipynb").exists()  # never a half notebook under the real name
    assert summary_seen(runs) == {"DATASETS": ["good"], "SEEDS": [0]}  # 06 ran over the datasets that finished
    good = runs / "seed-0" / "good"
    for name in rp.DATASET_NOTEBOOKS:
        executed = json.loads((good / f"{name}.ipynb").read_text())
        assert executed["metadata"]["papermill"]["parameters"]["DATASET"] == "good"
        assert executed["metadata"]["papermill"]["parameters"]["SEED"] == 0
        assert f"[seed-0/good] {name}: running" in out
    assert not [p for p in good.iterdir() if p.name.startswith(".")]  # no temporary left (nor progress file)
    executed = (good / "01_finetune_baseline.ipynb").read_text()
    assert not nr.ABSOLUTE_PATH.findall(executed)  # cleaned: metadata and injected parameters carry no machine path
    assert json.loads(executed)["metadata"]["papermill"]["parameters"]["RUNS"] == paths.display_path(runs)
    assert (runs / "report" / "index.html").is_file() and "report: " in out  # the report, and where it is

    # rerun: every complete notebook is skipped, 06 too (nothing changed); only 'bad' is tried again
    ok = sweep.reproduce("tiny", "good,bad", runs, notebooks_dir=nbs, jobs=1)
    out = capfd.readouterr().out
    assert ok is False
    assert log(runs, "good") == list(rp.DATASET_NOTEBOOKS)  # not appended again
    assert out.count("done already, skipped") == len(rp.DATASET_NOTEBOOKS) + 1


def test_seeds_and_models_make_the_grid_and_06_gets_the_seeds(tmp_path, capfd):
    nbs = toy_notebooks(tmp_path / "nbs")
    runs = tmp_path / "runs"
    assert sweep.reproduce("tiny", "one,two", runs, notebooks_dir=nbs, jobs=1, seed=3, seeds=2)
    for seed in (3, 4):
        for d in ("one", "two"):
            assert log(runs, d, seed) == list(rp.DATASET_NOTEBOOKS), (seed, d)
            assert _parameters(runs / f"seed-{seed}", d, "01_finetune_baseline")["SEED"] == seed
    assert not (runs / "seed-0").exists() and not (runs / "seed-5").exists()  # seeds 3..4 exactly
    assert summary_seen(runs) == {"DATASETS": ["one", "two"], "SEEDS": [3, 4]}
    capfd.readouterr()

    # two models: each its own runs folder (RUNS/<short name>/), each a runs folder of its own with its 06
    assert sweep.reproduce("tiny", "one", runs, model="random:tiny,/some/path/my-model/", notebooks_dir=nbs, jobs=1)
    out = capfd.readouterr().out
    for label, model in (("random-tiny", "random:tiny"), ("my-model", "/some/path/my-model/")):
        assert log(runs / label, "one") == list(rp.DATASET_NOTEBOOKS)
        params = _parameters(runs / label / "seed-0", "one", "01_finetune_baseline")
        assert params["MODEL"] == paths.portable_parameters({"MODEL": model})["MODEL"]  # as notebooks record paths
        assert params["RUNS"] == paths.display_path(runs / label)
        assert summary_seen(runs / label) == {"DATASETS": ["one"], "SEEDS": [0]}
        assert f"[{label}/seed-0/one] done in" in out
    with pytest.raises(PaperlibError, match="collide"):
        sweep.reproduce("tiny", "one", runs, model="a/m,b/m", notebooks_dir=nbs, jobs=1)


def test_model_short_name():
    assert rp.model_short_name("random:tiny") == "random-tiny"
    assert rp.model_short_name("sentence-transformers/all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
    assert rp.model_short_name("/tmp/models/all-mpnet-base-v2/") == "all-mpnet-base-v2"
    assert rp.model_short_name("bert-base-uncased") == "bert-base-uncased"


def test_a_kernel_that_dies_is_retried_and_resumes_from_its_notebooks(tmp_path, capfd):
    nbs = toy_notebooks(tmp_path / "nbs")
    runs = tmp_path / "runs"
    assert sweep.reproduce("tiny", "crash", runs, notebooks_dir=nbs, jobs=1)  # 03's kernel dies once
    out = capfd.readouterr().out
    assert "[seed-0/crash] 03_single_signal_pruning: the kernel died (DeadKernelError" in out
    assert "retry 1 of 2" in out and "resumed 1x after its kernel died" in out
    assert log(runs, "crash") == list(rp.DATASET_NOTEBOOKS)  # 01, 02 not run again: nothing twice
    # a kernel that dies every time: retried a bounded number of times, then reported once, not retried again
    ok = sweep.reproduce("tiny", "dead,good", runs, notebooks_dir=nbs, jobs=1)
    out = capfd.readouterr().out
    assert ok is False and out.count("the kernel died (DeadKernelError") == rp.KERNEL_RETRIES  # one per retry
    died = f"the kernel died {1 + rp.KERNEL_RETRIES} times"
    assert f"FAILED seed-0/dead: 02_pruning_signals (DeadKernelError: Kernel died; {died})" in out
    assert log(runs, "dead") == ["01_finetune_baseline"]  # 01 ran once, was skipped on every retry
    assert log(runs, "good") == list(rp.DATASET_NOTEBOOKS)


def test_a_changed_or_failed_notebook_reruns_the_rest_of_its_chain(tmp_path):
    nbs = toy_notebooks(tmp_path / "nbs")
    runs = tmp_path / "runs"
    assert sweep.reproduce("tiny", "good", runs, notebooks_dir=nbs, jobs=1)
    (runs / "seed-0" / "good" / "03_single_signal_pruning.ipynb").unlink()  # as if interrupted before 03 was renamed
    assert sweep.reproduce("tiny", "good", runs, notebooks_dir=nbs, jobs=1)
    names = list(rp.DATASET_NOTEBOOKS)
    assert log(runs, "good") == names + names[2:]  # 01, 02 skipped; 03 and everything after it rerun
    # other parameters (another model) make the saved notebooks stale
    assert not nr.is_complete(
        runs / "seed-0" / "good" / "01_finetune_baseline.ipynb",
        {"DATASET": "good", "PRESET": "tiny", "RUNS": str(runs), "DATA_DIR": None, "MODEL": "x", "SEED": 0},
    )


def _seen(runs: Path, dataset: str, notebook: str, seed: int = 0) -> dict:
    return json.loads((runs / f"seed-{seed}" / dataset / f"{notebook}.seen.json").read_text())


def _parameters(root: Path, dataset: str, notebook: str) -> dict:
    return json.loads((root / dataset / f"{notebook}.ipynb").read_text())["metadata"]["papermill"]["parameters"]


def test_depths_reach_notebook_05_alone_and_a_new_depth_reruns_05_only(tmp_path, capfd):
    nbs = toy_notebooks(tmp_path / "nbs")
    runs = tmp_path / "runs"
    root = runs / "seed-0"
    distill, before = rp.DATASET_NOTEBOOKS[-1], rp.DATASET_NOTEBOOKS[:-1]
    assert distill == "05_knowledge_distillation"
    assert sweep.reproduce("tiny", "good", runs, notebooks_dir=nbs, depths="best", jobs=1)
    assert _parameters(root, "good", distill)["DEPTHS"] == "best"
    assert _seen(runs, "good", distill)["DEPTHS"] == "best"  # injected into the kernel, not only recorded
    for name in before:
        assert "DEPTHS" not in _parameters(root, "good", name), name
        assert _seen(runs, "good", name)["DEPTHS"] == "absent", name
    capfd.readouterr()

    # the same depths again: every notebook (and 06) is complete
    assert sweep.reproduce("tiny", "good", runs, notebooks_dir=nbs, depths="best", jobs=1)
    out = capfd.readouterr().out
    assert out.count("done already, skipped") == len(rp.DATASET_NOTEBOOKS) + 1 and "running" not in out
    assert log(runs, "good") == list(rp.DATASET_NOTEBOOKS)

    # other depths: 01-04 stay, 05 runs again with the new value
    assert sweep.reproduce("tiny", "good", runs, notebooks_dir=nbs, depths="three", jobs=1)
    out = capfd.readouterr().out
    assert log(runs, "good") == [*rp.DATASET_NOTEBOOKS, distill]
    assert all(f"[seed-0/good] {name}: done already, skipped" in out for name in before)
    assert _parameters(root, "good", distill)["DEPTHS"] == _seen(runs, "good", distill)["DEPTHS"] == "three"


def test_bad_depths_fail_before_any_notebook_runs(tmp_path):
    nbs = toy_notebooks(tmp_path / "nbs")
    with pytest.raises(PaperlibError, match="--depths"):
        sweep.reproduce("tiny", "good", tmp_path / "runs", notebooks_dir=nbs, depths="bogus", jobs=1)
    assert not (tmp_path / "runs").exists()


def test_visible_gpus_reads_cuda_visible_devices_else_counts_devices(monkeypatch):
    import torch

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,3")
    assert rp.visible_gpus() == ["0", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # set but empty: no GPU at all
    assert rp.visible_gpus() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert rp.visible_gpus() == []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert rp.visible_gpus() == ["0", "1"]


def test_usable_cpus_follows_the_affinity_mask():
    assert rp.usable_cpus() == len(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    if taskset is None:
        pytest.skip("no taskset to restrict the affinity mask")
    done = subprocess.run(
        [taskset, "-c", "0", sys.executable, "-c", "from paperlib.reproduce import usable_cpus; print(usable_cpus())"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_cli_reproduce_passes_depths_on(monkeypatch, capsys):
    from paperlib import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["reproduce", "--help"])
    assert exit_.value.code == 0 and "--depths" in capsys.readouterr().out
    calls = []
    monkeypatch.setattr(sweep, "reproduce", lambda **kwargs: calls.append(kwargs) or True)
    cli.main(["reproduce", "--preset", "tiny", "--depths", "2,4"])
    assert calls[0]["depths"] == "2,4"
    cli.main(["reproduce", "--preset", "tiny"])
    assert calls[1]["depths"] is None  # the preset's distill_depths
    assert (calls[1]["seed"], calls[1]["seeds"], calls[1]["jobs"], calls[1]["scheduler"]) == (None, 1, None, None)
    cli.main(["reproduce", "--seed", "3", "--seeds", "2", "--workers-per-gpu", "3", "--model", "a,b"])
    assert (calls[2]["seed"], calls[2]["seeds"], calls[2]["workers_per_gpu"], calls[2]["model"]) == (3, 2, 3, "a,b")
    cli.main(["reproduce", "--scheduler", "tcp://127.0.0.1:1"])
    assert calls[3]["scheduler"] == "tcp://127.0.0.1:1"


def test_is_complete_reads_papermill_metadata(tmp_path):
    params = {"DATASET": "d", "PRESET": "quick"}
    path = tmp_path / "n.ipynb"
    assert not nr.is_complete(path, params)
    meta = {"papermill": {"parameters": params, "exception": None, "end_time": "2025-01-01T00:00:00"}}
    path.write_text(json.dumps({"cells": [], "metadata": meta}))
    assert nr.is_complete(path, params)
    assert not nr.is_complete(path, {**params, "PRESET": "paper"})
    meta["papermill"]["exception"] = True
    path.write_text(json.dumps({"cells": [], "metadata": meta}))
    assert not nr.is_complete(path, params)
    path.write_text("{ truncated")
    assert not nr.is_complete(path, params)


def test_bad_inputs_fail_fast(tmp_path, monkeypatch):
    with pytest.raises(PaperlibError, match="lacks"):
        sweep.reproduce("tiny", "bbc_news", tmp_path / "runs", notebooks_dir=tmp_path, jobs=1)
    with pytest.raises(PaperlibError, match="unknown preset"):
        sweep.reproduce("nope", notebooks_dir=tmp_path, jobs=1)
    with pytest.raises(PaperlibError, match="jobs"):
        sweep.reproduce("tiny", "bbc_news", tmp_path / "runs", jobs=0)
    with pytest.raises(PaperlibError, match="--seeds"):
        sweep.reproduce("tiny", "bbc_news", tmp_path / "runs", seeds=0, jobs=1)
    with pytest.raises(PaperlibError, match="--scheduler"):
        sweep.reproduce("tiny", "bbc_news", tmp_path / "runs", jobs=2, scheduler="tcp://127.0.0.1:1")
    # without Dask: --jobs 1 runs in this process; asking for a cluster is one error naming the extra
    monkeypatch.setattr(sweep, "have_dask", lambda: False)
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` raises ImportError
    with pytest.raises(PaperlibError, match=r"paperlib\[cluster\]"):
        sweep.reproduce("tiny", "bbc_news", tmp_path / "runs", jobs=2)
    assert not (tmp_path / "runs").exists()


def test_repo_root_and_runs_resolution(monkeypatch, tmp_path):
    assert (paths.repo_root() / "notebooks").is_dir() and (paths.repo_root() / "paperlib").is_dir()
    assert paths.resolve_runs("runs/quick") == paths.repo_root() / "runs" / "quick"
    assert paths.resolve_runs(tmp_path) == tmp_path
    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path))
    assert paths.resolve_runs("runs/x") == tmp_path / "runs" / "x"


def test_every_notebook_has_a_parameters_cell_papermill_reads():
    import papermill as pm

    for name in (*rp.DATASET_NOTEBOOKS, rp.SUMMARY_NOTEBOOK):
        found = pm.inspect_notebook(str(REPO / "notebooks" / f"{name}.ipynb"))
        expected = (
            {"PRESET", "RUNS", "DATA_DIR", "MODEL"}
            | ({"DATASETS", "SEEDS"} if name == rp.SUMMARY_NOTEBOOK else {"DATASET", "SEED"})
            | ({"DEPTHS"} if name == rp.DISTILL_NOTEBOOK else set())
        )  # what `reproduce --depths` sets
        assert set(found) == expected, name


@pytest.mark.slow
@pytest.mark.shared_data
def test_reproduce_two_local_datasets_end_to_end(shared_datasets, tmp_path):
    """The real notebooks through `paperlib reproduce` on two local datasets, tiny preset (on a local Dask
    cluster where Dask is installed, else in the one process)."""
    runs = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "paperlib",
        "reproduce",
        "--preset",
        "tiny",
        "--model",
        "random:tiny",
        "--datasets",
        "yahoo,patent",
        "--data-dir",
        str(shared_datasets),
        "--runs",
        str(runs),
    ]
    # one thread: a 4-layer, 32-wide model gains nothing from more, and loses a lot when cores are shared
    env = {**os.environ, "PAPERLIB_QUIET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for dataset in ("yahoo", "patent"):
        folder = runs / "seed-0" / dataset
        for name in (
            "config.json",
            "metrics.json",
            "model/config.json",
            "signals.parquet",
            "curves.parquet",
            "fusion_rows.parquet",
            "distill.parquet",
            *(f"{nb}.ipynb" for nb in rp.DATASET_NOTEBOOKS),
            *(
                f"figures/{fig}.{ext}"
                for fig in (
                    "02_signal_heatmap",
                    "02_signal_correlation",
                    "03_pruning_curves",
                    "03_pruning_order",
                    "04_fusion_weights",
                    "05_distillation",
                )
                for ext in ("png", "pdf")
            ),
        ):
            assert (folder / name).is_file() and (folder / name).stat().st_size > 0, f"{dataset}/{name}"
    summary = runs / "summary"
    for name in ("06_results_across_datasets.ipynb", "table1.csv", "claims.csv", "figures/06_figure1_grid.png"):
        assert (summary / name).is_file(), name
    nb = nbformat.read(summary / "06_results_across_datasets.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "2 dataset(s): yahoo, patent" in printed or "2 dataset(s): patent, yahoo" in printed
    import pandas as pd

    table = pd.read_csv(summary / "table1.csv")
    assert set(table["dataset"]) == {"yahoo", "patent"}
    assert {"Random-Forest", "Random-Forest (transfer)"} <= set(table["strategy"])  # transfer needs both datasets
    # a rerun resumes: nothing is executed again
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and "running" not in again.stdout, again.stdout + again.stderr
    assert again.stdout.count(f"(0 run, {len(rp.DATASET_NOTEBOOKS)} done already)") == 2, again.stdout
    assert "06_results_across_datasets: done already, skipped" in again.stdout


def test_a_kernel_that_never_came_up_counts_as_died():
    """jupyter_client's error when a kernel dies at start (two of nine workers drew one ZMQ port on the H200,
    2026-12-01) is retried like a dead kernel; an error of the notebook's own code is not."""
    from nbclient.exceptions import DeadKernelError

    assert nr.kernel_died(DeadKernelError("Kernel died"))
    assert nr.kernel_died(RuntimeError("Kernel died before replying to kernel_info"))
    assert not nr.kernel_died(RuntimeError("CUDA error: out of memory"))
    assert not nr.kernel_died(NameError("name 'display_path' is not defined"))


def test_start_within_in_this_process(tmp_path, capfd):
    nbs = toy_notebooks(tmp_path / "nbs")
    runs = tmp_path / "runs"
    assert sweep.reproduce("tiny", "a,b", runs, notebooks_dir=nbs, jobs=1, start_within=0.5) is False
    out = capfd.readouterr().out
    assert log(runs, "a") == list(rp.DATASET_NOTEBOOKS) and log(runs, "b") == []
    assert "[seed-0/b] not started (--start-within 0.5 s had passed" in out
    assert out.strip().splitlines()[-1].startswith("reproduce: 1/2 chain(s) complete, 0 failed")
