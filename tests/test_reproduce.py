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

from paperlib import paths
from paperlib import reproduce as rp
from paperlib.errors import PaperlibError

pytest.importorskip("papermill")

REPO = Path(__file__).resolve().parents[1]


def _toy_notebooks(folder: Path) -> Path:
    """Six one-cell notebooks: 01-05 append their name to <RUNS>/<DATASET>/log.txt (01 fails for 'bad') and
    write what their kernel saw (DEPTHS if injected, $CUDA_VISIBLE_DEVICES) to <name>.seen.json beside it;
    06 writes the DATASETS it was given."""
    folder.mkdir()
    for name in rp.DATASET_NOTEBOOKS:
        body = (
            f"import json, os\nfrom pathlib import Path\n"
            f"if DATASET == 'bad' and '{name}'.startswith('01'):\n    raise ValueError('bad dataset')\n"
            f"folder = Path(RUNS) / DATASET\nfolder.mkdir(parents=True, exist_ok=True)\n"
            f"with open(folder / 'log.txt', 'a') as f:\n    f.write('{name}\\n')\n"
            f"seen = {{'DEPTHS': globals().get('DEPTHS', 'absent'), 'gpu': os.environ.get('CUDA_VISIBLE_DEVICES')}}\n"
            f"(folder / '{name}.seen.json').write_text(json.dumps(seen))\nprint('{name}', DATASET)"
        )
        params = new_code_cell(
            "DATASET = 'x'\nPRESET = 'quick'\nRUNS = 'runs'\nDATA_DIR = None\nMODEL = None",
            metadata={"tags": ["parameters"]},
        )
        nbformat.write(new_notebook(cells=[params, new_code_cell(body)]), folder / f"{name}.ipynb")
    params = new_code_cell(
        "PRESET = 'quick'\nRUNS = 'runs'\nDATASETS = None\nDATA_DIR = None\nMODEL = None",
        metadata={"tags": ["parameters"]},
    )
    body = "from pathlib import Path\n(Path(RUNS) / 'summary.txt').write_text(','.join(DATASETS))"
    nbformat.write(new_notebook(cells=[params, new_code_cell(body)]), folder / f"{rp.SUMMARY_NOTEBOOK}.ipynb")
    return folder


def _log(runs: Path, dataset: str) -> list[str]:
    path = runs / dataset / "log.txt"
    return path.read_text().split() if path.is_file() else []


def test_failures_are_isolated_and_a_rerun_resumes(tmp_path, capfd):
    nbs = _toy_notebooks(tmp_path / "nbs")
    runs = tmp_path / "runs"
    ok = rp.reproduce("tiny", "good,bad", runs, notebooks_dir=nbs, jobs=2)
    out = capfd.readouterr().out
    assert ok is False  # 'bad' failed ...
    assert _log(runs, "good") == list(rp.DATASET_NOTEBOOKS)  # ... without stopping 'good'
    assert _log(runs, "bad") == []
    assert "FAILED bad: 01_finetune_baseline (ValueError: bad dataset)" in out
    assert (runs / "bad" / "01_finetune_baseline.failed.ipynb").is_file()  # the traceback, kept to read
    assert not (runs / "bad" / "01_finetune_baseline.ipynb").exists()  # never a half notebook under the real name
    assert (runs / "summary.txt").read_text() == "good"  # 06 ran over the datasets that finished
    for name in rp.DATASET_NOTEBOOKS:
        executed = json.loads((runs / "good" / f"{name}.ipynb").read_text())
        assert executed["metadata"]["papermill"]["parameters"]["DATASET"] == "good"
        assert f"[good] {name}: running" in out
    assert not [p for p in (runs / "good").iterdir() if p.name.startswith(".")]  # no temporary left (nor progress file)
    executed = (runs / "good" / "01_finetune_baseline.ipynb").read_text()
    assert not rp.ABSOLUTE_PATH.findall(executed)  # cleaned: metadata and injected parameters carry no machine path
    assert json.loads(executed)["metadata"]["papermill"]["parameters"]["RUNS"] == paths.display_path(runs)
    assert (runs / "report" / "index.html").is_file() and "report: " in out  # the report, and where it is

    # rerun: every complete notebook is skipped, 06 too (nothing changed); only 'bad' is tried again
    ok = rp.reproduce("tiny", "good,bad", runs, notebooks_dir=nbs, jobs=1)
    out = capfd.readouterr().out
    assert ok is False
    assert _log(runs, "good") == list(rp.DATASET_NOTEBOOKS)  # not appended again
    assert out.count("done already, skipped") == len(rp.DATASET_NOTEBOOKS) + 1


def test_a_changed_or_failed_notebook_reruns_the_rest_of_its_chain(tmp_path):
    nbs = _toy_notebooks(tmp_path / "nbs")
    runs = tmp_path / "runs"
    assert rp.reproduce("tiny", "good", runs, notebooks_dir=nbs)
    (runs / "good" / "03_single_signal_pruning.ipynb").unlink()  # as if interrupted before 03 was renamed
    assert rp.reproduce("tiny", "good", runs, notebooks_dir=nbs)
    names = list(rp.DATASET_NOTEBOOKS)
    assert _log(runs, "good") == names + names[2:]  # 01, 02 skipped; 03 and everything after it rerun
    # other parameters (another model) make the saved notebooks stale
    assert not rp.is_complete(
        runs / "good" / "01_finetune_baseline.ipynb",
        {"DATASET": "good", "PRESET": "tiny", "RUNS": str(runs), "DATA_DIR": None, "MODEL": "x"},
    )


def _seen(runs: Path, dataset: str, notebook: str) -> dict:
    return json.loads((runs / dataset / f"{notebook}.seen.json").read_text())


def _parameters(runs: Path, dataset: str, notebook: str) -> dict:
    return json.loads((runs / dataset / f"{notebook}.ipynb").read_text())["metadata"]["papermill"]["parameters"]


def test_depths_reach_notebook_05_alone_and_a_new_depth_reruns_05_only(tmp_path, capfd):
    nbs = _toy_notebooks(tmp_path / "nbs")
    runs = tmp_path / "runs"
    distill, before = rp.DATASET_NOTEBOOKS[-1], rp.DATASET_NOTEBOOKS[:-1]
    assert distill == "05_knowledge_distillation"
    assert rp.reproduce("tiny", "good", runs, notebooks_dir=nbs, depths="best")
    assert _parameters(runs, "good", distill)["DEPTHS"] == "best"
    assert _seen(runs, "good", distill)["DEPTHS"] == "best"  # injected into the kernel, not only recorded
    for name in before:
        assert "DEPTHS" not in _parameters(runs, "good", name), name
        assert _seen(runs, "good", name)["DEPTHS"] == "absent", name
    capfd.readouterr()

    # the same depths again: every notebook (and 06) is complete
    assert rp.reproduce("tiny", "good", runs, notebooks_dir=nbs, depths="best")
    out = capfd.readouterr().out
    assert out.count("done already, skipped") == len(rp.DATASET_NOTEBOOKS) + 1 and "running" not in out
    assert _log(runs, "good") == list(rp.DATASET_NOTEBOOKS)

    # other depths: 01-04 stay, 05 runs again with the new value
    assert rp.reproduce("tiny", "good", runs, notebooks_dir=nbs, depths="three")
    out = capfd.readouterr().out
    assert _log(runs, "good") == [*rp.DATASET_NOTEBOOKS, distill]
    assert all(f"[good] {name}: done already, skipped" in out for name in before)
    assert _parameters(runs, "good", distill)["DEPTHS"] == _seen(runs, "good", distill)["DEPTHS"] == "three"


def test_bad_depths_fail_before_any_notebook_runs(tmp_path):
    nbs = _toy_notebooks(tmp_path / "nbs")
    with pytest.raises(PaperlibError, match="--depths"):
        rp.reproduce("tiny", "good", tmp_path / "runs", notebooks_dir=nbs, depths="bogus")
    assert not (tmp_path / "runs").exists()


def test_parallel_datasets_each_see_their_own_gpu(tmp_path, monkeypatch):
    nbs = _toy_notebooks(tmp_path / "nbs")
    runs = tmp_path / "runs"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")  # the kernels would see "2,5" if nothing were spread
    assert rp.reproduce("tiny", "one,two", runs, notebooks_dir=nbs, jobs=2)
    seen = {d: {_seen(runs, d, name)["gpu"] for name in rp.DATASET_NOTEBOOKS} for d in ("one", "two")}
    assert all(len(gpus) == 1 for gpus in seen.values()), seen  # one GPU for every notebook of a dataset
    assert seen["one"] | seen["two"] == {"2", "5"}, seen  # ... and a different one per dataset


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
    monkeypatch.setattr(rp, "reproduce", lambda **kwargs: calls.append(kwargs) or True)
    cli.main(["reproduce", "--preset", "tiny", "--depths", "2,4"])
    assert calls[0]["depths"] == "2,4"
    cli.main(["reproduce", "--preset", "tiny"])
    assert calls[1]["depths"] is None  # the preset's distill_depths


def test_is_complete_reads_papermill_metadata(tmp_path):
    params = {"DATASET": "d", "PRESET": "quick"}
    path = tmp_path / "n.ipynb"
    assert not rp.is_complete(path, params)
    meta = {"papermill": {"parameters": params, "exception": None, "end_time": "2025-01-01T00:00:00"}}
    path.write_text(json.dumps({"cells": [], "metadata": meta}))
    assert rp.is_complete(path, params)
    assert not rp.is_complete(path, {**params, "PRESET": "paper"})
    meta["papermill"]["exception"] = True
    path.write_text(json.dumps({"cells": [], "metadata": meta}))
    assert not rp.is_complete(path, params)
    path.write_text("{ truncated")
    assert not rp.is_complete(path, params)


def test_bad_inputs_fail_fast(tmp_path):
    with pytest.raises(PaperlibError, match="lacks"):
        rp.reproduce("tiny", "bbc_news", tmp_path / "runs", notebooks_dir=tmp_path)
    with pytest.raises(PaperlibError, match="unknown preset"):
        rp.reproduce("nope", notebooks_dir=tmp_path)
    with pytest.raises(PaperlibError, match="jobs"):
        rp.reproduce("tiny", "bbc_news", tmp_path / "runs", jobs=0)


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
    """The real notebooks through `paperlib reproduce` on two local datasets, tiny preset."""
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
        folder = runs / dataset
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
    assert again.returncode == 0 and "running" not in again.stdout
