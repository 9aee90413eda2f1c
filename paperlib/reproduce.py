"""``paperlib reproduce``'s notebook runner: papermill over one notebook chain at a time.

A **chain** is notebooks 01-05 for one dataset, seed and model, executed in order with the parameters
injected into the run folder ``<runs>/seed-<S>/<dataset>/NN_name.ipynb``; notebook 06 then runs once per
model into ``<runs>/summary/`` with ``SEEDS`` = the seeds run (``plan`` lists the grid, dataset x seed x model).
Each notebook executes to a temporary name and is renamed only when it finished without error, so an output
notebook that exists is complete.  A rerun skips complete notebooks (with the same parameters) until the first
one it must execute; after that every later notebook of the chain runs again, because it reads what the earlier
one wrote (the engines themselves skip saved work).  A notebook whose kernel died is retried from the files
written so far; one failing chain does not stop the others; failures are listed at the end.

``run_serial`` runs the grid in this process (``--jobs 1``, no Dask needed); ``paperlib.sweep`` runs the same
chains as Dask tasks.  While a notebook runs in this process, its long loops report to a progress file the
runner follows (``paperlib.progress``): one terminal bar per notebook.  Every executed notebook is cleaned
before it is renamed (``notebook_run.clean_notebook``): no progress bars, library warnings or absolute paths in
its outputs or metadata.  At the end ``paperlib.report`` renders each model's runs folder as static HTML."""

from __future__ import annotations

import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PaperlibError
from .notebook_run import _kernel_name, _papermill, error_line, execute, is_complete, kernel_died
from .paths import SEED_PREFIX, display_path, seed_root

DATASET_NOTEBOOKS = (
    "01_finetune_baseline",
    "02_pruning_signals",
    "03_single_signal_pruning",
    "04_strategic_fusion",
    "05_knowledge_distillation",
)
SUMMARY_NOTEBOOK = "06_results_across_datasets"
DISTILL_NOTEBOOK = DATASET_NOTEBOOKS[-1]  # the one notebook that takes --depths
KERNEL_RETRIES = 2  # a chain whose kernel died resumes at most this many times
NOT_STARTED = "not started"  # ChainResult.failed of a chain --start-within kept from starting


def default_notebooks_dir() -> Path:
    """The repository's ``notebooks/`` beside the package (not moved by ``$PAPERLIB_ROOT``)."""
    return Path(__file__).resolve().parents[1] / "notebooks"


def print_line(message: str) -> None:
    """One progress line, written in one call so parallel output does not interleave mid-line."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- the grid: chains and summaries


@dataclass(frozen=True)
class Chain:
    """One notebook chain: 01-05 for one dataset, seed and model, into ``<runs>/seed-<S>/<dataset>/``.

    ``runs`` is the model's runs folder; ``env``: ``PAPERLIB_*`` variables of the submitting process, set
    around the notebooks where a chain runs in another process (a Dask worker)."""

    dataset: str  # as the notebooks get it: a registry name or an absolute folder
    name: str  # the run folder's name
    seed: int
    model: str | None
    model_label: str  # "" when the grid has one model
    runs: Path
    preset: str
    data_dir: str | None
    notebooks: Path
    depths: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    @property
    def folder(self) -> Path:
        return seed_root(self.runs, self.seed) / self.name

    @property
    def label(self) -> str:
        return "/".join(p for p in (self.model_label, f"{SEED_PREFIX}{self.seed}", self.name) if p)

    def parameters(self, notebook: str) -> dict:
        params = {
            "DATASET": self.dataset,
            "PRESET": self.preset,
            "RUNS": str(self.runs),
            "DATA_DIR": self.data_dir,
            "MODEL": self.model,
            "SEED": self.seed,
        }
        return {**params, "DEPTHS": self.depths} if notebook == DISTILL_NOTEBOOK and self.depths is not None else params


@dataclass
class ChainResult:
    label: str
    dataset: str
    seed: int
    model_label: str
    folder: str
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: str | None = None  # the notebook that failed ("setup", "worker", "cancelled" or NOT_STARTED outside one)
    error: str | None = None
    seconds: float = 0.0
    retries: int = 0  # times the chain was resumed after its kernel died
    worker: str | None = None  # the Dask worker that ran it

    @property
    def ok(self) -> bool:
        return self.failed is None

    def line(self) -> str:
        """One line saying how the chain ended (what ``paperlib reproduce`` prints per chain)."""
        where = f" on {self.worker}" if self.worker else ""
        again = f", resumed {self.retries}x after its kernel died" if self.retries else ""
        if self.ok:
            ran = f"{len(self.executed)} run, {len(self.skipped)} done already"
            return f"[{self.label}] done in {self.seconds:.0f}s{where} ({ran}{again})"
        if self.failed == NOT_STARTED:
            return f"[{self.label}] not started ({self.error})"
        see = ""
        if self.failed in DATASET_NOTEBOOKS:
            see = f"; see {display_path(Path(self.folder) / f'{self.failed}.failed.ipynb')}"
        return f"[{self.label}] FAILED in {self.failed} after {self.seconds:.0f}s{where}{again} ({self.error}){see}"


class _KernelDied(Exception):
    pass


def not_started(chain: Chain, start_within: float) -> ChainResult:
    """The result of a chain kept back by ``--start-within``: nothing of it ran; the same command resumes it."""
    result = ChainResult(chain.label, chain.name, chain.seed, chain.model_label, str(chain.folder))
    result.failed = NOT_STARTED
    result.error = f"--start-within {start_within:g} s had passed; the same command runs it"
    return result


def check_start_within(start_within: float | None) -> None:
    if start_within is not None and not start_within > 0:
        raise PaperlibError(f"--start-within must be a positive number of seconds, not {start_within!r}")


def run_chain(
    chain: Chain, say=print_line, bars: bool = False, should_stop=None, kernel_retries: int = KERNEL_RETRIES
) -> ChainResult:
    """Notebooks 01-05 of one chain, resuming: complete notebooks (same parameters) are skipped until the
    first one that must run; from there every later one runs again (the engines skip saved work).

    A notebook whose kernel died is run again, up to ``kernel_retries`` times, from the files written so far;
    a notebook that fails on its own (a cell error) ends the chain at once with its error line.
    ``should_stop``: a callable asked between notebooks; True ends the chain as "cancelled"."""
    result = ChainResult(chain.label, chain.name, chain.seed, chain.model_label, str(chain.folder))
    start = time.perf_counter()
    while True:
        try:
            _chain_pass(chain, result, say, bars, should_stop)
            break
        except _KernelDied as died:
            notebook, error = died.args
            if result.retries >= kernel_retries:
                result.failed, result.error = notebook, f"{error}; the kernel died {result.retries + 1} times"
                break
            result.retries += 1
            say(f"[{chain.label}] {notebook}: the kernel died ({error}); retry {result.retries} of {kernel_retries}")
    result.seconds = time.perf_counter() - start
    return result


def _chain_pass(chain: Chain, result: ChainResult, say, bars: bool, should_stop) -> None:
    stale = False
    for nb in DATASET_NOTEBOOKS:
        if should_stop is not None and should_stop():
            result.failed, result.error = "cancelled", "the grid was cancelled"
            return
        output = chain.folder / f"{nb}.ipynb"
        params = chain.parameters(nb)
        if not stale and is_complete(output, params):
            if nb not in result.executed and nb not in result.skipped:
                result.skipped.append(nb)
                say(f"[{chain.label}] {nb}: done already, skipped")
            continue
        stale = True
        say(f"[{chain.label}] {nb}: running ...")
        t0 = time.perf_counter()
        try:
            execute(
                chain.notebooks / f"{nb}.ipynb",
                output,
                params,
                cwd=chain.notebooks,
                progress=f"[{chain.label}] {nb[:2]}" if bars else None,
                clean_roots=[chain.runs, chain.data_dir, chain.notebooks],
            )
        except Exception as exc:
            if kernel_died(exc):
                raise _KernelDied(nb, error_line(exc)) from None
            result.failed, result.error = nb, error_line(exc)
            say(
                f"[{chain.label}] {nb}: FAILED after {time.perf_counter() - t0:.0f}s ({result.error}); "
                f"see {display_path(output.with_name(nb + '.failed.ipynb'))}"
            )
            return
        if nb not in result.executed:
            result.executed.append(nb)
        say(f"[{chain.label}] {nb}: done in {time.perf_counter() - t0:.0f}s")


@dataclass(frozen=True)
class Summary:
    """Notebook 06 of one model: over the datasets complete in every seed, into ``<runs>/summary/``."""

    runs: Path
    model_label: str
    preset: str
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    data_dir: str | None
    model: str | None
    notebooks: Path
    changed: bool = True  # False: no chain executed anything, so a complete 06 with the same parameters stays
    env: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        return "/".join(p for p in (self.model_label, "summary") if p)

    def parameters(self) -> dict:
        return {
            "PRESET": self.preset,
            "RUNS": str(self.runs),
            "DATASETS": list(self.datasets),
            "SEEDS": list(self.seeds),
            "DATA_DIR": self.data_dir,
            "MODEL": self.model,
        }


def run_summary(summary: Summary, say=print_line, bars: bool = False) -> tuple[str | None, str]:
    """Notebook 06 for one model: (None when it ran or was complete already, else its error line; the line
    saying how it ended)."""
    params = summary.parameters()
    output = summary.runs / "summary" / f"{SUMMARY_NOTEBOOK}.ipynb"
    head = f"[{summary.label}] {SUMMARY_NOTEBOOK}:"
    if not summary.changed and is_complete(output, params):
        say(f"{head} done already, skipped")
        return None, f"{head} done already, skipped"
    say(f"{head} running ...")
    t0 = time.perf_counter()
    try:
        execute(
            summary.notebooks / f"{SUMMARY_NOTEBOOK}.ipynb",
            output,
            params,
            cwd=summary.notebooks,
            progress=f"[{summary.label}] {SUMMARY_NOTEBOOK[:2]}" if bars else None,
            clean_roots=[summary.runs, summary.data_dir, summary.notebooks],
        )
    except Exception as exc:
        error = error_line(exc)
        line = f"{head} FAILED ({error}); see {display_path(output.with_name(SUMMARY_NOTEBOOK + '.failed.ipynb'))}"
        say(line)
        return error, line
    line = f"{head} done in {time.perf_counter() - t0:.0f}s -> {display_path(output)}"
    say(line)
    return None, line


@dataclass(frozen=True)
class ModelRuns:
    model: str | None  # None: the preset's
    label: str  # its short name, "" when the grid has one model
    runs: Path


@dataclass
class Plan:
    """A checked grid: every chain (dataset x seed x model) and what each model's notebook 06 needs."""

    preset: str
    runs: Path
    data_dir: str | None
    notebooks: Path
    seeds: list[int]
    datasets: list[str]  # run folder names, in grid order
    models: list[ModelRuns]
    chains: list[Chain]
    env: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        models = f" x {len(self.models)} models" if len(self.models) > 1 else ""
        return (
            f"preset {self.preset}, {len(self.datasets)} dataset(s) {self.datasets} x seed(s) {self.seeds}{models} "
            f"= {len(self.chains)} chain(s), runs in {display_path(self.runs)}"
        )

    def summary(self, model: ModelRuns, results: list[ChainResult]) -> Summary | None:
        """Notebook 06 of ``model`` over the datasets whose chains finished in every seed (None: no such dataset)."""
        mine = [r for r in results if r.model_label == model.label]
        complete = [d for d in self.datasets if all(r.ok for r in mine if r.dataset == d)]
        if not complete:
            return None
        return Summary(
            model.runs,
            model.label,
            self.preset,
            tuple(complete),
            tuple(self.seeds),
            self.data_dir,
            model.model,
            self.notebooks,
            changed=any(r.executed for r in mine),
            env=self.env,
        )


def model_short_name(model: str) -> str:
    """A model's folder name in a grid of several models: the last part of a hub id, a path or
    ``random:<size>`` (``random-<size>``), with characters other than letters, digits, ``.``, ``_``, ``-`` as ``-``."""
    tail = Path(model.rstrip("/\\")).name or model
    return re.sub(r"[^A-Za-z0-9._-]+", "-", tail.replace(":", "-")).strip("-") or "model"


def forwarded_env() -> tuple[tuple[str, str], ...]:
    """The ``PAPERLIB_*`` variables a chain's kernels must see wherever the chain runs (not the progress file);
    quiet unless the user set ``$PAPERLIB_QUIET``: no progress bars inside saved notebooks."""
    from .config import ENV
    from .progress import PROGRESS_ENV

    env = {k: v for k, v in os.environ.items() if k.startswith("PAPERLIB_") and k != PROGRESS_ENV}
    env.setdefault(ENV["quiet"], "1")
    return tuple(sorted(env.items()))


def _models(model, runs: Path) -> list[ModelRuns]:
    names = [m.strip() for m in model.split(",") if m.strip()] if isinstance(model, str) else list(model or [])
    if len(names) <= 1:
        return [ModelRuns(names[0] if names else None, "", runs)]
    labels = [model_short_name(m) for m in names]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise PaperlibError(f"--model lists models whose folder names collide ({twice}); give each its own name")
    return [ModelRuns(m, label, runs / label) for m, label in zip(names, labels)]


def plan(
    preset: str = "quick",
    datasets=None,
    runs=None,
    data_dir=None,
    model=None,
    seed: int | None = None,
    seeds: int = 1,
    notebooks_dir=None,
    depths: str | None = None,
) -> Plan:
    """Check every input and list the chains, before any work.

    ``datasets``: None (the preset's), 'all' (the nine), or a comma string / list of names or folders.
    ``runs``: default ``runs/<preset>``, relative to the current directory as every CLI path is.
    ``seed``, ``seeds``: seeds ``seed .. seed+seeds-1`` (default first seed: the preset's).
    ``model``: None (the preset's), one model, or a comma list: then model M's runs go to ``<runs>/<short name>/``.
    ``depths``: the distillation depths of notebook 05 (a policy or a comma list); None keeps the preset's."""
    from .config import check_depths, get_preset, seed_list
    from .config import data_dir as resolve_data_dir
    from .data import REGISTRY as DATA_REGISTRY
    from .data import dataset_name

    preset_obj = get_preset(preset)
    if depths is not None:
        check_depths(depths, "--depths")
    seeds_run = seed_list(preset_obj.seed if seed is None else seed, seeds)
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
    _papermill(), _kernel_name()  # fail before any work if the notebook tools are missing
    models = _models(model, runs_path)
    # a folder given as a dataset travels to the kernels as an absolute path
    datasets = [
        d if d in DATA_REGISTRY or not Path(d).expanduser().is_dir() else str(Path(d).expanduser().resolve())
        for d in names
    ]
    folders = [dataset_name(d) for d in datasets]
    env = forwarded_env()
    chains = [
        Chain(d, name, s, m.model, m.label, m.runs, preset_obj.name, data_dir, nb_dir, depths, env)
        for m in models
        for s in seeds_run
        for d, name in zip(datasets, folders)
    ]
    return Plan(preset_obj.name, runs_path, data_dir, nb_dir, seeds_run, folders, models, chains, env)


def run_serial(
    plan: Plan, bars: bool = False, start_within: float | None = None
) -> tuple[list[ChainResult], dict[str, str | None]]:
    """Every chain of ``plan`` in this process, one after the other, then each model's 06.

    ``start_within``: seconds after the first chain's start after which no chain starts (they are reported as
    not started).  Returns the chain results and {model label: None or the error of its 06} (a model with no
    complete dataset has no 06 and no entry)."""
    results = []
    start = time.perf_counter()
    for chain in plan.chains:
        if start_within is not None and time.perf_counter() - start > start_within:
            results.append(not_started(chain, start_within))
            print_line(results[-1].line())
            continue
        try:
            result = run_chain(chain, print_line, bars)
        except Exception as exc:  # an unexpected error ends this chain only
            traceback.print_exc()
            result = ChainResult(chain.label, chain.name, chain.seed, chain.model_label, str(chain.folder))
            result.failed, result.error = "setup", error_line(exc)
        results.append(result)
        print_line(result.line())
    summaries = {}
    for model in plan.models:
        summary = plan.summary(model, results)
        if summary is not None:
            summaries[model.label] = run_summary(summary, print_line, bars)[0]
    return results, summaries


def finish(plan: Plan, results: list[ChainResult], summaries: dict[str, str | None]) -> bool:
    """The report of each model's runs folder, the failures, and a last line with how many chains failed;
    True when every chain and every 06 ran."""
    from .report import write_report

    for model in plan.models:
        if not any(r.ok for r in results if r.model_label == model.label):
            continue
        try:
            index = write_report(model.runs)
            print_line(f"report: {display_path(index)} (open it in a browser)")
        except Exception as exc:  # the notebooks are the results; a report that fails must not hide them
            retry = f"`paperlib report --runs {display_path(model.runs)}` retries"
            print_line(f"report: FAILED ({error_line(exc)}); {retry}")
    waiting = [r for r in results if r.failed == NOT_STARTED]
    failed = [r for r in results if not r.ok and r.failed != NOT_STARTED]
    for r in failed:
        print_line(f"  FAILED {r.label}: {r.failed} ({r.error})")
    bad_summaries = [label or "summary" for label, error in summaries.items() if error is not None]
    missing = [m.label or "summary" for m in plan.models if m.label not in summaries]
    tail = ""
    if bad_summaries:
        tail += f"; notebook 06 FAILED ({', '.join(bad_summaries)})"
    if missing:
        tail += f"; notebook 06 not run ({', '.join(missing)}: no dataset complete in every seed)"
    if waiting:
        tail += f"; {len(waiting)} not started (--start-within): the same command runs them"
    complete = len(results) - len(failed) - len(waiting)
    print_line(f"reproduce: {complete}/{len(results)} chain(s) complete, {len(failed)} failed{tail}")
    return not failed and not waiting and not bad_summaries and not missing


def usable_cpus() -> int:
    """CPU cores this process may use (its affinity mask, e.g. under ``taskset``), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The CUDA devices a grid is spread over: the entries of ``$CUDA_VISIBLE_DEVICES`` when set, else every
    device torch counts (none without CUDA)."""
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
