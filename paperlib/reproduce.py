"""``paperlib reproduce``: execute the notebooks with papermill, dataset by dataset.

Per dataset, notebooks 01-05 run in order with the parameters injected and land in the run folder
(``runs/<preset>/<dataset>/NN_name.ipynb``); then 06 runs once into ``runs/<preset>/summary/``.
Each notebook executes to a temporary name and is renamed only when it finished without error, so
an output notebook that exists is complete.  A rerun skips complete notebooks (with the same
parameters) until the first one it must execute; after that every later notebook of the chain
runs again, because it reads what the earlier one wrote (the engines themselves skip saved work).
One dataset failing does not stop the others; failures are listed at the end.

While a notebook runs, its long loops report to a progress file the runner follows (``paperlib.progress``):
one terminal bar per notebook with the stage, the strategy or depth, steps done of total, elapsed time and
ETA.  Every executed notebook is cleaned before it is renamed (``clean_notebook``): no progress bars,
library warnings or absolute paths in its outputs or metadata.  At the end ``paperlib.report`` renders the
run as static HTML and the runner prints where."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PaperlibError
from .paths import ROOT_ENV, display_path, portable_parameters, repo_root

DATASET_NOTEBOOKS = (
    "01_finetune_baseline",
    "02_pruning_signals",
    "03_single_signal_pruning",
    "04_strategic_fusion",
    "05_knowledge_distillation",
)
SUMMARY_NOTEBOOK = "06_results_across_datasets"
DISTILL_NOTEBOOK = DATASET_NOTEBOOKS[-1]  # the one notebook that takes --depths
# the kernel's own log (transport warnings, shutdown noise) would drown the progress lines; cell
# errors still reach the executed notebook and the failure report
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]


def default_notebooks_dir() -> Path:
    """The repository's ``notebooks/`` beside the package (not moved by ``$PAPERLIB_ROOT``)."""
    return Path(__file__).resolve().parents[1] / "notebooks"


def _papermill():
    try:
        import papermill
    except ImportError:
        raise PaperlibError(
            "paperlib reproduce needs papermill and a Jupyter kernel: "
            "pip install 'paperlib[notebooks]' (papermill, ipykernel, nbformat)"
        ) from None
    return papermill


def _kernel_name() -> str:
    """The kernel papermill should start: ``python3`` must exist (ipykernel installs it)."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        if "python3" in KernelSpecManager().find_kernel_specs():
            return "python3"
    except ImportError:
        pass
    raise PaperlibError(
        "no Jupyter kernel named python3: pip install ipykernel && python -m ipykernel install --user --name python3"
    )


def check_environment(root: str | os.PathLike) -> dict[str, str | None]:
    """The environment of a notebook check (nbval) and of ``tools/refresh_notebooks.py`` (None: unset).

    A fresh runs root, fp32 (the declared precision of the checked numbers), no progress bars, a cache
    inside the root, and no ``$PAPERLIB_DATA_DIR``, so the notebooks use their embedded default data."""
    root = Path(root)
    return {
        ROOT_ENV: str(root),
        "PAPERLIB_PRECISION": "fp32",
        "PAPERLIB_QUIET": "1",
        "PAPERLIB_CACHE_DIR": str(root / "cache"),
        "PAPERLIB_DATA_DIR": None,
        "PAPERLIB_PROGRESS_FILE": None,
    }


def is_complete(path: Path, parameters: dict) -> bool:
    """True when ``path`` is a notebook papermill finished without error, run with ``parameters``."""
    if not path.is_file():
        return False
    try:
        meta = json.loads(path.read_text()).get("metadata", {}).get("papermill", {})
    except (OSError, ValueError):
        return False
    return (
        meta.get("exception") in (None, False)
        and meta.get("end_time") is not None
        and meta.get("parameters")
        in (json.loads(json.dumps(parameters)), json.loads(json.dumps(portable_parameters(parameters))))
    )


# ---------------------------------------------------------------- cleaning executed notebooks

# a progress bar as tqdm draws it ("eval:  40%|####      | 2/5 [00:01<00:02, 1.2it/s]") or its blank eraser
_BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+|\d+(it|s)/(s|it)\]|^\s+$")
# "…/site-packages/x.py:21: SomeWarning: message" (its next line, the source, is indented)
_WARNING = re.compile(r"^\S*\.py:\d+: \w*Warning\b")
# an absolute POSIX path under a machine folder, or a Windows user/system path
ABSOLUTE_PATH = re.compile(
    r"(?<![\w.~/-])/(?:tmp|home|root|work|Users|var|opt|usr|mnt|srv|private|data|scratch)"
    r"(?:/[^\s'\"<>:,;)\]}\\\x00-\x1f\x7f-\xff]+)+"
    r"|\b[A-Z]:\\{1,2}(?:Users|Windows|Program Files|ProgramData|temp)\b[^\s'\"<>]*"
)


def _strip_paths(text: str, roots: list[tuple[str, str]]) -> str:
    for absolute, shown in roots:
        text = text.replace(absolute + "/", "" if shown == "." else shown + "/").replace(absolute, shown)
    return ABSOLUTE_PATH.sub(
        lambda m: (
            display_path(m.group(0))
            if m.group(0).startswith("/")
            else ".../" + m.group(0).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        ),
        text,
    )


def clean_text(text: str, roots: list[tuple[str, str]] = ()) -> str:
    """Stream text without progress bars, library warnings or absolute paths.

    A line redrawn with carriage returns keeps what a terminal would show (the part after the last
    ``\\r``); lines that are progress bars, warnings (with their source line) or tqdm's widget hint go."""
    kept, skip_source = [], False
    for line in text.split("\n"):
        shown = line.rsplit("\r", 1)[-1]
        if skip_source and shown.startswith("  "):
            skip_source = False
            continue
        skip_source = False
        if _WARNING.search(shown):
            skip_source = True
            continue
        if ("\r" in line or "\x1b" in line) and (not shown.strip() or _BAR.search(shown)):
            continue
        if _BAR.search(shown) and "|" in shown:
            continue
        kept.append(shown)
    return _strip_paths("\n".join(kept), list(roots))


def _path_roots(extra=()) -> list[tuple[str, str]]:
    """(absolute folder, how to show it), longest first: the given folders, the repository root, home."""
    folders = {str(Path(p).expanduser().resolve()) for p in extra if p}
    folders |= {str(repo_root()), str(Path(__file__).resolve().parents[1])}
    pairs = [(f, display_path(f)) for f in folders]
    pairs = [(a, "." if s == "." else s) for a, s in pairs]
    home = str(Path.home().resolve())
    return sorted(pairs, key=lambda p: -len(p[0])) + [(home, "~")]


def clean_notebook(nb, roots=(), output_path: str | None = None):
    """Clean an executed notebook (an ``nbformat`` node) in place and return it.

    Outputs: progress bars, library warnings and empty streams dropped, absolute paths under
    ``roots``, the repository or the home folder shown relative (``display_path``), consecutive
    streams merged.  Metadata: papermill's input/output paths and parameters made portable."""
    pairs = _path_roots(roots)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.source = _strip_paths(cell.source, pairs)
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                out["text"] = clean_text(out.get("text", ""), pairs)
                if not out["text"].strip():
                    continue
                if (
                    outputs
                    and outputs[-1].get("output_type") == "stream"
                    and outputs[-1].get("name") == out.get("name")
                ):
                    outputs[-1]["text"] = outputs[-1]["text"].rstrip("\n") + "\n" + out["text"]
                    continue
            elif out.get("output_type") in ("execute_result", "display_data"):
                for mime in ("text/plain", "text/html", "text/markdown"):
                    if mime in out.get("data", {}):
                        value = out["data"][mime]
                        value = "".join(value) if isinstance(value, list) else value
                        out["data"][mime] = _strip_paths(value, pairs)
            elif out.get("output_type") == "error":
                out["traceback"] = [_strip_paths(line, pairs) for line in out.get("traceback", [])]
                out["evalue"] = _strip_paths(out.get("evalue", ""), pairs)
            outputs.append(out)
        cell.outputs = outputs
    meta = nb.metadata.get("papermill")
    if meta is not None:
        for key in ("input_path", "output_path"):
            if meta.get(key):
                meta[key] = display_path(meta[key]) if Path(meta[key]).is_absolute() else meta[key]
        if output_path is not None:
            meta["output_path"] = output_path
        meta["parameters"] = portable_parameters(meta.get("parameters") or {})
        meta["environment_variables"] = {}
    return nb


def clean_notebook_file(path: Path, roots=(), output_path: str | None = None) -> None:
    """``clean_notebook`` on a file, rewritten in place."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nbformat.write(clean_notebook(nb, roots, output_path), str(path))


def execute(
    notebook: Path, output: Path, parameters: dict, cwd: Path | None = None, progress: str | None = None, clean_roots=()
) -> None:
    """Run ``notebook`` with ``parameters`` into ``output`` (temporary name first, cleaned, then renamed).

    ``progress``: a label; the notebook's loops then report to ``output``'s progress file and a
    terminal bar follows them."""
    from .progress import PROGRESS_ENV, Follower

    pm = _papermill()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.running.ipynb")
    progress_file = output.with_name(f".{output.stem}.progress.json")
    previous = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = str(progress_file)  # the kernel inherits it
    try:
        with Follower(progress_file, progress or "", enabled=progress is not None):
            pm.execute_notebook(
                str(notebook),
                str(tmp),
                parameters=parameters,
                kernel_name=_kernel_name(),
                cwd=str(cwd or notebook.parent),
                language="python",
                progress_bar=False,
                log_output=False,
                extra_arguments=KERNEL_ARGUMENTS,
            )
        clean_notebook_file(tmp, [*clean_roots, output.parent], output_path=display_path(output))
        os.replace(tmp, output)
        output.with_name(f"{output.stem}.failed.ipynb").unlink(missing_ok=True)
    except BaseException:
        # papermill leaves the partial notebook (with the traceback) at tmp: keep it as *.failed.ipynb to read
        if tmp.exists():
            os.replace(tmp, output.with_name(f"{output.stem}.failed.ipynb"))
        raise
    finally:
        if previous is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = previous


def _error_line(exc: BaseException) -> str:
    name = getattr(exc, "ename", type(exc).__name__)
    value = getattr(exc, "evalue", str(exc))
    return f"{name}: {str(value).splitlines()[0] if str(value) else ''}"


@dataclass
class DatasetResult:
    dataset: str
    folder: str
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: str | None = None
    error: str | None = None
    seconds: float = 0.0


def _say(message: str) -> None:
    """One progress line, written in one call so parallel datasets do not interleave mid-line."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def run_dataset(
    dataset: str,
    preset: str,
    runs: Path,
    data_dir: str | None,
    model: str | None,
    notebooks_dir: Path,
    threads: int | None = None,
    bars: bool = False,
    depths: str | None = None,
    gpu: str | None = None,
) -> DatasetResult:
    """Notebooks 01-05 for one dataset; stops at the first failing notebook and says which.

    ``depths`` (``--depths``) reaches notebook 05 alone, as its ``DEPTHS`` parameter (None: the preset's policy);
    ``gpu``: the one GPU this dataset's kernels see (``CUDA_VISIBLE_DEVICES``), set by parallel runs."""
    from .data import dataset_name

    if threads:  # parallel datasets share the cores: keep each kernel to its share
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    if gpu is not None:  # before anything here touches CUDA; the kernels inherit it
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    name = dataset_name(dataset)
    folder = runs / name
    result = DatasetResult(name, str(folder))
    params = {"DATASET": dataset, "PRESET": preset, "RUNS": str(runs), "DATA_DIR": data_dir, "MODEL": model}
    start, stale = time.perf_counter(), False
    for nb in DATASET_NOTEBOOKS:
        output = folder / f"{nb}.ipynb"
        nb_params = {**params, "DEPTHS": depths} if nb == DISTILL_NOTEBOOK and depths is not None else params
        if not stale and is_complete(output, nb_params):
            result.skipped.append(nb)
            _say(f"[{name}] {nb}: done already, skipped")
            continue
        stale = True
        _say(f"[{name}] {nb}: running ...")
        t0 = time.perf_counter()
        try:
            execute(
                notebooks_dir / f"{nb}.ipynb",
                output,
                nb_params,
                cwd=notebooks_dir,
                progress=f"[{name}] {nb[:2]}" if bars else None,
                clean_roots=[runs, data_dir, notebooks_dir],
            )
        except Exception as exc:  # report, keep going with the other datasets
            result.failed, result.error = nb, _error_line(exc)
            _say(
                f"[{name}] {nb}: FAILED after {time.perf_counter() - t0:.0f}s ({result.error}); "
                f"see {display_path(output.with_name(nb + '.failed.ipynb'))}"
            )
            break
        result.executed.append(nb)
        _say(f"[{name}] {nb}: done in {time.perf_counter() - t0:.0f}s")
    result.seconds = time.perf_counter() - start
    return result


def _run_dataset_safe(*args) -> DatasetResult:
    """run_dataset for a worker process: an unexpected error becomes a failed result, not a crash."""
    try:
        return run_dataset(*args)
    except Exception as exc:
        traceback.print_exc()
        return DatasetResult(str(args[0]), "", failed="setup", error=_error_line(exc))


def usable_cpus() -> int:
    """CPU cores this process may use (its affinity mask, e.g. under ``taskset``), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The CUDA devices parallel datasets are spread over: the entries of ``$CUDA_VISIBLE_DEVICES`` when
    set, else every device torch counts (none without CUDA)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip()]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def _datasets(preset, datasets) -> list[str]:
    from .config import PAPER_DATASETS

    if datasets in (None, "", []):
        return list(preset.datasets)
    names = datasets.split(",") if isinstance(datasets, str) else list(datasets)
    names = [n.strip() for n in names if n.strip()]
    if names == ["all"]:
        return list(PAPER_DATASETS)
    return list(dict.fromkeys(names))


def reproduce(
    preset: str = "quick",
    datasets=None,
    runs=None,
    data_dir=None,
    model=None,
    jobs: int = 1,
    notebooks_dir=None,
    depths: str | None = None,
) -> bool:
    """Execute 01-05 per dataset and 06 once; True when every notebook ran (or was already done).

    ``depths``: the distillation depths of notebook 05 (a policy or a comma list, ``config.check_depths``);
    None keeps the preset's ``distill_depths``.
    ``datasets``: None (the preset's), 'all' (the nine), or a comma string / list of names or folders.
    ``runs``: default ``runs/<preset>``, relative to the current directory as every CLI path is."""
    from .config import check_depths, get_preset
    from .config import data_dir as resolve_data_dir
    from .data import REGISTRY as DATA_REGISTRY
    from .data import dataset_name
    from .train import progress_enabled

    preset_obj = get_preset(preset)
    if depths is not None:
        check_depths(depths, "--depths")
    names = _datasets(preset_obj, datasets)
    runs_path = Path(runs or f"runs/{preset_obj.name}").expanduser().resolve()
    root = resolve_data_dir(data_dir)  # fails fast on a bad --data-dir
    data_dir = str(root.resolve()) if root is not None else None
    nb_dir = Path(notebooks_dir).expanduser().resolve() if notebooks_dir else default_notebooks_dir()
    missing = [nb for nb in (*DATASET_NOTEBOOKS, SUMMARY_NOTEBOOK) if not (nb_dir / f"{nb}.ipynb").is_file()]
    if missing:
        raise PaperlibError(
            f"notebook folder {str(nb_dir)!r} lacks {[m + '.ipynb' for m in missing]} (use --notebooks DIR)"
        )
    if jobs < 1:
        raise PaperlibError(f"--jobs must be at least 1, got {jobs}")
    _papermill(), _kernel_name()  # fail before any work if the notebook tools are missing
    # a folder given as a dataset travels to the kernels as an absolute path
    datasets = [
        d if d in DATA_REGISTRY or not Path(d).expanduser().is_dir() else str(Path(d).expanduser().resolve())
        for d in names
    ]
    jobs = min(jobs, len(datasets))
    bars = progress_enabled() and jobs == 1  # one live bar per notebook (parallel datasets print lines only)
    os.environ.setdefault("PAPERLIB_QUIET", "1")  # kernels inherit it: no progress bars inside saved notebooks
    _say(
        f"reproduce: preset {preset_obj.name}, {len(datasets)} dataset(s) {[dataset_name(d) for d in datasets]}, "
        f"runs in {display_path(runs_path)}, {jobs} job(s)"
    )
    args = [(d, preset_obj.name, runs_path, data_dir, model, nb_dir) for d in datasets]
    if jobs == 1:
        results = [_run_dataset_safe(*a, None, bars, depths) for a in args]
    else:
        threads = max(1, usable_cpus() // jobs)
        gpus = visible_gpus()  # several GPUs: dataset i runs on GPU i mod n
        gpu = [gpus[i % len(gpus)] if len(gpus) > 1 else None for i in range(len(args))]
        if len(gpus) > 1:
            _say(f"reproduce: {len(datasets)} datasets spread over GPUs {gpus}")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(
                pool.map(_run_dataset_safe, *zip(*[(*a, threads, False, depths, g) for a, g in zip(args, gpu)]))
            )
    done = [r for r in results if r.failed is None]
    summary_ok = True
    if done:
        summary_ok = _run_summary(
            done, any(r.executed for r in results), preset_obj.name, runs_path, data_dir, model, nb_dir, bars
        )
    failed = [r for r in results if r.failed is not None]
    _say(f"reproduce: {len(done)}/{len(results)} dataset(s) complete" + ("" if summary_ok else "; summary FAILED"))
    for r in failed:
        _say(f"  FAILED {r.dataset}: {r.failed} ({r.error})")
    if done:
        from .report import write_report

        try:
            index = write_report(runs_path)
            _say(f"report: {display_path(index)} (open it in a browser)")
        except Exception as exc:  # the notebooks are the results; a report that fails must not hide them
            _say(f"report: FAILED ({_error_line(exc)}); `paperlib report --runs {display_path(runs_path)}` retries")
    return not failed and summary_ok and bool(done)


def _run_summary(
    done: list[DatasetResult], changed: bool, preset: str, runs: Path, data_dir, model, nb_dir: Path, bars: bool = False
) -> bool:
    params = {
        "PRESET": preset,
        "RUNS": str(runs),
        "DATASETS": [r.dataset for r in done],
        "DATA_DIR": data_dir,
        "MODEL": model,
    }
    output = runs / "summary" / f"{SUMMARY_NOTEBOOK}.ipynb"
    if not changed and is_complete(output, params):
        _say(f"[summary] {SUMMARY_NOTEBOOK}: done already, skipped")
        return True
    _say(f"[summary] {SUMMARY_NOTEBOOK}: running ...")
    t0 = time.perf_counter()
    try:
        execute(
            nb_dir / f"{SUMMARY_NOTEBOOK}.ipynb",
            output,
            params,
            cwd=nb_dir,
            progress=f"[summary] {SUMMARY_NOTEBOOK[:2]}" if bars else None,
            clean_roots=[runs, data_dir, nb_dir],
        )
    except Exception as exc:
        _say(
            f"[summary] {SUMMARY_NOTEBOOK}: FAILED ({_error_line(exc)}); "
            f"see {display_path(output.with_name(SUMMARY_NOTEBOOK + '.failed.ipynb'))}"
        )
        return False
    _say(f"[summary] {SUMMARY_NOTEBOOK}: done in {time.perf_counter() - t0:.0f}s -> {display_path(output)}")
    return True


if __name__ == "__main__":  # python -m paperlib.reproduce [preset]
    sys.exit(0 if reproduce(*(sys.argv[1:2] or ["quick"])) else 1)
