"""``paperlib reproduce`` over a grid of notebook chains: on Dask distributed, or in this process.

    paperlib reproduce --preset paper --datasets all --seeds 3       # a local cluster sized to the machine
    paperlib reproduce ... --scheduler tcp://HOST:8786              # an existing cluster ($PAPERLIB_DASK_SCHEDULER)
    paperlib reproduce ... --jobs 1                                 # in this process, one chain after the other

One Dask task per chain (``reproduce.run_chain``: 01-05 of one dataset, seed and model); a model's notebook 06
is submitted once all of that model's chains have finished.  The local cluster has one worker process per visible
GPU (``--workers-per-gpu N``: N workers share each GPU), each pinned to its GPU by ``CUDA_VISIBLE_DEVICES`` in its
nanny's environment (the worker process starts with it, before anything imports torch) and declaring the resource
``GPU=1``, which every chain asks for; without GPUs, CPU workers share the cores (``OMP_NUM_THREADS`` each).  One
thread per worker: papermill changes the process's working directory while a notebook runs.

Faults: a chain whose kernel dies resumes inside its task (``reproduce.KERNEL_RETRIES``); one whose worker dies is
rescheduled by the scheduler (``WORKER_RETRIES`` times on the local cluster; elsewhere the scheduler's
``distributed.scheduler.allowed-failures``) and resumes from the files and notebooks it wrote, whose writes are
atomic and locked; a kernel whose worker died exits by itself (ipykernel polls its parent).  A chain that fails on
its own (a cell error) is reported once and the others go on.  Ctrl-C cancels what has not finished: the local
cluster is closed (its kernels end with their workers); on an existing cluster running chains stop at their next
notebook.  Finished chains' files stay."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import time
import uuid

from . import reproduce as rp
from .config import ENV, environment, runtime
from .errors import PaperlibError
from .notebook_run import error_line

SCHEDULER_ENV = ENV["scheduler"]
GPU = "GPU"  # the worker resource a chain asks for on a cluster that has GPUs
WORKER_RETRIES = 2  # a chain whose worker dies is run again this many times (local cluster)
DASHBOARD = ":8787"  # Dask's usual port; the scheduler takes another when it is busy


def have_dask() -> bool:
    return importlib.util.find_spec("distributed") is not None


def _distributed():
    try:
        import distributed
    except ImportError:
        raise PaperlibError(
            "running chains in parallel needs Dask distributed: pip install 'paperlib[cluster]' "
            "(or --jobs 1 runs them one after the other in this process)"
        ) from None
    return distributed


def _silent(message: str) -> None:
    """Worker-side chains print nothing: the submitting process prints one line per finished chain."""


# ---------------------------------------------------------------- the local cluster


def worker_specs(
    gpus: list[str], cpus: int, jobs: int | None = None, workers_per_gpu: int = 1, n_chains: int | None = None
) -> dict[str, dict]:
    """The local cluster's workers as ``SpecCluster`` specs (``{name: {"cls": Nanny, "options": ...}}``).

    With GPUs: ``workers_per_gpu`` workers per GPU (or ``jobs`` workers, worker i on GPU i mod n), each with
    ``CUDA_VISIBLE_DEVICES`` pinned in its nanny's environment and the resource ``GPU=1``.  Without: ``jobs`` CPU
    workers (default: half the cores, at most one per chain).  Every worker has one thread and an equal share of
    the cores for its kernels (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, unless set already)."""
    from distributed import Nanny

    if gpus:
        n = jobs if jobs is not None else len(gpus) * workers_per_gpu
        pinned = [gpus[i % len(gpus)] for i in range(n)]
    else:
        n = jobs if jobs is not None else max(1, min(cpus // 2, n_chains or cpus))
        pinned = [None] * n
    threads = str(max(1, cpus // n))
    shares = {k: threads for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k not in os.environ}  # the user's win
    specs, seen = {}, {}
    for gpu in pinned:
        env = dict(shares)
        options = {"nthreads": 1, "env": env, "silence_logs": logging.ERROR}
        if gpu is None:
            name = f"cpu-{len(specs)}"
        else:
            env["CUDA_VISIBLE_DEVICES"] = gpu
            options["resources"] = {GPU: 1}
            seen[gpu] = seen.get(gpu, 0) + 1
            name = f"gpu{gpu}-{seen[gpu] - 1}"
        specs[name] = {"cls": Nanny, "options": options}
    return specs


def local_cluster(specs: dict[str, dict], dashboard: str | None = DASHBOARD):
    """A ``SpecCluster`` of worker processes on this machine (scheduler on 127.0.0.1) for ``specs``."""
    from distributed import Scheduler, SpecCluster

    options = {"host": "127.0.0.1", "dashboard_address": dashboard, "allowed_failures": WORKER_RETRIES}
    return SpecCluster(
        workers=specs, scheduler={"cls": Scheduler, "options": options}, silence_logs=logging.ERROR, name="paperlib"
    )


def _cuda_cluster(gpus: list[str]):
    """dask-cuda's ``LocalCUDACluster``: one worker per GPU, each seeing its own GPU first (where installed)."""
    from dask_cuda import LocalCUDACluster

    return LocalCUDACluster(
        CUDA_VISIBLE_DEVICES=",".join(gpus),
        threads_per_worker=1,
        resources={GPU: 1},
        host="127.0.0.1",
        dashboard_address=DASHBOARD,
        scheduler_kwargs={"allowed_failures": WORKER_RETRIES},
        silence_logs=logging.ERROR,
    )


def _worker_resources(dask_scheduler=None) -> dict:
    """{worker address: its declared resources} (run on the scheduler)."""
    return {address: dict(ws.resources) for address, ws in dask_scheduler.workers.items()}


def _chain_slots(dask_scheduler=None, gpu: bool = False) -> int:
    """How many chains the cluster runs at once now (run on the scheduler): its GPU resources, else its threads."""
    workers = dask_scheduler.workers.values()
    return int(sum(ws.resources.get(GPU, 0) for ws in workers) if gpu else sum(ws.nthreads for ws in workers))


@contextlib.contextmanager
def connect(scheduler: str | None, jobs: int | None, workers_per_gpu: int | None, n_chains: int):
    """Yield ``(client, description, gpu)``: a client of the cluster at ``scheduler``, or of a new local cluster
    (closed on exit); ``gpu``: whether its workers declare the ``GPU`` resource, so chains ask for one."""
    distributed = _distributed()
    cluster = None
    if scheduler is None:
        gpus, cpus = rp.visible_gpus(), rp.usable_cpus()
        if gpus and jobs is None and (workers_per_gpu or 1) == 1 and importlib.util.find_spec("dask_cuda"):
            cluster, kind = _cuda_cluster(gpus), "dask-cuda"
        else:
            specs = worker_specs(gpus, cpus, jobs, workers_per_gpu or 1, n_chains)
            cluster, kind = local_cluster(specs), "nanny-pinned"
        where = f"local cluster, {len(cluster.workers)} worker(s) on " + (
            f"GPU(s) {gpus} ({kind})" if gpus else f"{cpus} CPU core(s)"
        )
    try:
        client = distributed.Client(cluster if cluster is not None else scheduler)
    except OSError as exc:
        if cluster is not None:
            cluster.close()
        raise PaperlibError(f"cannot reach the Dask scheduler at {scheduler!r} ({exc})") from None
    try:
        if cluster is None:
            if not client.run_on_scheduler(_worker_resources):
                rp.print_line(f"reproduce: waiting for a worker to join the scheduler at {scheduler} ...")
            client.wait_for_workers(1)
            where = f"scheduler {scheduler}"
        resources = client.run_on_scheduler(_worker_resources)
        gpu = any(r.get(GPU) for r in resources.values())
        link = client.dashboard_link if importlib.util.find_spec("bokeh") else None
        where += f", {len(resources)} worker(s) now" + (", chains ask for a GPU each" if gpu else "")
        where += f"; dashboard {link}" if link else "; dashboard: pip install bokeh to see one"
        yield client, where, gpu
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ---------------------------------------------------------------- tasks (run on the workers)


def _chain_task(chain: rp.Chain, stop: str) -> rp.ChainResult:
    from distributed import Event, get_worker

    event = Event(stop)
    with environment(dict(chain.env)):  # the submitter's PAPERLIB_* for this task's kernels (never CUDA's)
        result = rp.run_chain(chain, say=_silent, should_stop=event.is_set)
    result.worker = str(get_worker().name)
    return result


def _transfer_task(chain: rp.Chain, stop: str) -> str:
    """The transfer fusion of one complete chain (``fusion.transfer_fusion``), while its M_0 is on this machine."""
    from distributed import Event

    from .experiment import holds_m0
    from .fusion import transfer_fusion

    if Event(stop).is_set():
        return f"[{chain.label}] transfer fusion: cancelled"
    if not holds_m0(chain.folder):  # notebooks of one's own (--notebooks) that make no M_0: nothing to transfer
        return f"[{chain.label}] transfer fusion: skipped (no fine-tuned M_0 in the chain's folder)"
    start = time.perf_counter()
    with environment(dict(chain.env)):
        done = transfer_fusion(chain.runs, [chain.name], chain.data_dir, seeds=[chain.seed], progress=False)
    return f"[{chain.label}] transfer fusion: {done['status'].iloc[0]} in {time.perf_counter() - start:.0f}s"


def _summary_task(summary: rp.Summary, stop: str) -> tuple[str | None, str]:
    from distributed import Event

    if Event(stop).is_set():
        return "the grid was cancelled", f"[{summary.label}] {rp.SUMMARY_NOTEBOOK}: cancelled"
    with environment(dict(summary.env)):
        return rp.run_summary(summary, say=_silent)


# ---------------------------------------------------------------- the grid on a cluster


def _failed(chain: rp.Chain, exc: BaseException) -> rp.ChainResult:
    """The result of a chain whose task raised: its worker died too often (``KilledWorker``) or it never ran."""
    result = rp.ChainResult(chain.label, chain.name, chain.seed, chain.model_label, str(chain.folder))
    result.failed = "worker" if type(exc).__name__ == "KilledWorker" else "setup"
    result.error = error_line(exc)
    return result


def run_on_dask(
    plan: rp.Plan, client, gpu: bool = False, start_within: float | None = None
) -> tuple[list[rp.ChainResult], dict[str, str | None]]:
    """Every chain of ``plan`` as a task of ``client``'s cluster, then each model's 06 once its chains are done.

    Chains are submitted in the plan's order (seed by seed), only as many at a time as the cluster has chain
    slots, so that the first seeds finish first and a grid cut short leaves whole seeds (Dask's own order among
    tasks submitted at once is not the plan's).  ``start_within``: seconds after the grid's start after which
    no chain is submitted; the rest are reported as not started.  Once every chain of a seed has ended, each
    complete one's transfer fusion (LR and RF fitted on the seed's other datasets) runs as a task of its own, in
    parallel, while the M_0 are on this machine (notebook 06 then finds them saved: a grid run seed by seed over
    several machines can still be summarised).  Prints one line per finished task above an overall bar; returns
    what ``reproduce.run_serial`` returns."""
    from distributed import Event, as_completed
    from tqdm.auto import tqdm

    from .train import progress_enabled

    token = uuid.uuid4().hex[:8]
    stop = Event(f"paperlib-stop-{token}", client=client)
    resources = {GPU: 1} if gpu else None

    def submit(task, item, kind: str = "chain"):
        key = f"paperlib-{kind}-{item.label}-{token}"
        return client.submit(task, item, stop.name, key=key, resources=resources, pure=False, retries=0)

    start = time.perf_counter()
    at = lambda: f" [{time.perf_counter() - start:.0f}s into the grid]"  # where the wall time goes, in a log
    models = {m.label: m for m in plan.models}
    left = {label: sum(c.model_label == label for c in plan.chains) for label in models}  # tasks before its 06
    seed_left = {}
    for c in plan.chains:
        seed_left[(c.model_label, c.seed)] = seed_left.get((c.model_label, c.seed), 0) + 1
    by_label = {c.label: c for c in plan.chains}
    summaries, summary_futures, results, chains, transfers = {}, {}, [], {}, {}
    queue = list(plan.chains)
    bar = tqdm(
        total=len(queue) + len(models), desc="reproduce", unit="task", disable=not progress_enabled(), file=sys.stderr
    )
    pending = as_completed()

    def chain_ended(result: rp.ChainResult) -> None:
        results.append(result)
        tqdm.write(result.line() + at(), file=sys.stdout)
        bar.update(1)
        seed_key = (result.model_label, result.seed)
        seed_left[seed_key] -= 1
        ended = [r for r in results if (r.model_label, r.seed) == seed_key]
        complete = [r for r in ended if r.ok]
        # the transfer protocol needs two datasets, and every chain of the seed run (one not started would
        # change the rows the others learn from)
        if seed_left[seed_key] == 0 and len(complete) >= 2 and all(r.failed != rp.NOT_STARTED for r in ended):
            for r in complete:
                transfers[f := submit(_transfer_task, by_label[r.label], "transfer")] = by_label[r.label]
                pending.add(f)
            left[result.model_label] += len(complete)
            bar.total += len(complete)
        task_ended(result.model_label)

    def task_ended(model_label: str) -> None:
        left[model_label] -= 1
        if left[model_label] == 0:
            summary = plan.summary(models[model_label], results)
            if summary is None:
                bar.total -= 1
            else:
                summary_futures[f := submit(_summary_task, summary)] = summary
                pending.add(f)

    def top_up() -> None:  # fill the free chain slots with the next chains of the plan
        if start_within is not None and queue and time.perf_counter() - start > start_within:
            while queue:
                chain_ended(rp.not_started(queue.pop(0), start_within))
            return
        running = sum(not f.done() for f in chains)
        free = client.run_on_scheduler(_chain_slots, gpu=gpu) - running
        for _ in range(min(max(free, 0 if running else 1), len(queue))):  # one at least: the grid never stalls
            chain = queue.pop(0)
            chains[f := submit(_chain_task, chain)] = chain
            pending.add(f)

    top_up()
    try:
        for future in pending:
            if future in chains:
                try:
                    result = future.result()
                except Exception as exc:
                    result = _failed(chains[future], exc)
                chain_ended(result)
                top_up()
            elif future in transfers:
                try:
                    line = future.result()
                except Exception as exc:  # 06 tries it again (and says what is missing)
                    line = f"[{transfers[future].label}] transfer fusion: FAILED ({error_line(exc)})"
                tqdm.write(line + at(), file=sys.stdout)
                bar.update(1)
                task_ended(transfers[future].model_label)
            else:
                summary = summary_futures[future]
                try:
                    error, line = future.result()
                except Exception as exc:  # its worker died too often, or the task never ran
                    error = error_line(exc)
                    line = f"[{summary.label}] {rp.SUMMARY_NOTEBOOK}: FAILED ({error})"
                summaries[summary.model_label] = error
                tqdm.write(line + at(), file=sys.stdout)
                bar.update(1)
    except KeyboardInterrupt:
        stop.set()
        client.cancel([*chains, *transfers, *summary_futures])
        tqdm.write(
            f"reproduce: cancelled with {len(results)} of {len(plan.chains)} chain(s) finished (their files stay)",
            file=sys.stdout,
        )
        raise
    finally:
        bar.close()
    order = {chain.label: i for i, chain in enumerate(plan.chains)}
    return sorted(results, key=lambda r: order[r.label]), summaries


def check_cluster_options(jobs: int | None, workers_per_gpu: int | None, scheduler: str | None) -> str | None:
    """The cluster options of ``reproduce`` checked before any work; returns the scheduler to use (``scheduler``,
    else ``$PAPERLIB_DASK_SCHEDULER``, else None: a local cluster)."""
    scheduler = scheduler or runtime().scheduler
    if jobs is not None and jobs < 1:
        raise PaperlibError(f"--jobs must be at least 1, got {jobs}")
    if workers_per_gpu is not None and workers_per_gpu < 1:
        raise PaperlibError(f"--workers-per-gpu must be at least 1, got {workers_per_gpu}")
    if scheduler is not None and (jobs is not None or workers_per_gpu is not None):
        raise PaperlibError("--jobs and --workers-per-gpu size a local cluster; --scheduler uses an existing one")
    if jobs is not None and workers_per_gpu is not None:
        raise PaperlibError("--jobs and --workers-per-gpu both size the local cluster: give one")
    return scheduler


def reproduce(
    preset: str = "quick",
    datasets=None,
    runs=None,
    data_dir=None,
    model=None,
    seed: int | None = None,
    seeds: int = 1,
    jobs: int | None = None,
    workers_per_gpu: int | None = None,
    scheduler: str | None = None,
    notebooks_dir=None,
    depths: str | None = None,
    start_within: float | None = None,
) -> bool:
    """``paperlib reproduce``: every chain of the grid (``reproduce.plan``), then each model's 06 and report;
    True when every notebook ran (or was already done).

    ``scheduler`` (default ``$PAPERLIB_DASK_SCHEDULER``): an existing Dask cluster; else a local cluster sized to
    the machine (``jobs`` workers, or ``workers_per_gpu`` per GPU); ``jobs=1``: in this process, no Dask needed.
    ``start_within``: no chain starts later than this many seconds into the grid (a machine lent for a fixed
    time: the chains that can finish run, the rest wait for the same command again)."""
    from .train import progress_enabled

    scheduler = check_cluster_options(jobs, workers_per_gpu, scheduler)
    rp.check_start_within(start_within)
    serial = jobs == 1 and scheduler is None
    if not serial and not have_dask():
        if scheduler is not None or jobs is not None or workers_per_gpu is not None:
            _distributed()  # the error line with the install command
        serial = True  # a plain install: chains one after the other, as before Dask
    bars = progress_enabled() and serial  # live notebook bars only when one chain runs at a time here
    grid = rp.plan(preset, datasets, runs, data_dir, model, seed, seeds, notebooks_dir, depths)
    if serial:
        how = "in this process" + ("" if have_dask() else " (Dask is not installed)")
        rp.print_line(f"reproduce: {grid.describe()}; {how}")
        results, summaries = rp.run_serial(grid, bars, start_within)
    else:
        with connect(scheduler, jobs, workers_per_gpu, len(grid.chains)) as (client, where, gpu):
            rp.print_line(f"reproduce: {grid.describe()}; {where}")
            results, summaries = run_on_dask(grid, client, gpu, start_within)
    return rp.finish(grid, results, summaries)
