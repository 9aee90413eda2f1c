"""Command line: ``paperlib finetune | prune | fuse | distill | table | reproduce | report``.

Each subcommand is a thin wrapper over one pipeline stage.  One rule for every command: every option and
input that can be checked without loading a model is checked before any work (``_check_*``); any failure
is then one ``error:`` line on stderr saying what and how to fix it, with the run folder as it was:
a ``PaperlibError`` (bad input) or an ``OSError`` (disk full, permission denied, a file where a folder
must be) exits 2; an unexpected exception (a bug) exits 1 and says how to see its traceback (``--debug``
or ``$PAPERLIB_DEBUG=1``).  Ctrl-C exits 130.  The flags ``--quiet``, ``--precision`` and ``--debug``
reach the code below through ``config.runtime()``, not the environment."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import PaperlibError, os_error_message

DATASET_HELP = (
    "registry name (bbc_news, newsgroup, dbpedia, arxiv, patent, yahoo, yelp, agnews, imdb, amazon) "
    "or a folder with train.csv+test.csv or all.csv (columns text,label; optional labels.txt)"
)
# the run files each stage reads, checked (schemas) before the stage loads a model; M_0's own files
# (config.json, metrics.json, baseline.json, model/) are checked by experiment.prepare for every stage
PRUNE_FILES = ("curves.parquet", "signals.parquet", "predictions.parquet", "labels.parquet")
STAGE_FILES = {
    "finetune": (),
    "prune": PRUNE_FILES,
    "fuse": (*PRUNE_FILES, "fusion_{protocol}.json", "fusion_weights.csv"),
    "distill": ("curves.parquet", "distill.parquet", "distill_predictions.parquet"),
}


def _common(p: argparse.ArgumentParser, dataset_required: bool = True) -> None:
    p.add_argument(
        "--dataset",
        required=dataset_required,
        default=None if dataset_required else "bbc_news",
        help=DATASET_HELP,
    )
    p.add_argument(
        "--model",
        default=None,
        help="'minilm' (embedded), 'random:<tiny|bert-base|...>', a hub id or a checkpoint folder "
        "(default: the preset's model)",
    )
    p.add_argument("--preset", default="quick", help="quick (CPU, default), paper (GPU) or tiny (tests)")
    p.add_argument(
        "--out", default=None, help="runs folder; results go to OUT/seed-<S>/<dataset>/ (default: runs/<preset>)"
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="local folder laid out like ../shared/datasets (default: $PAPERLIB_DATA_DIR; else embedded or hub)",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="override the preset's max tokens per text (8 .. the model's positions)",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="first pipeline seed S (default: the preset's, 0; 0 .. 2**32 - 1)"
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="how many seeds: S .. S+N-1, one whole pipeline each, run one after another (default 1)",
    )
    p.add_argument("--device", default=None, help="torch device: cpu, cuda, cuda:<n>, mps (default: cuda if available)")
    _precision(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _debug(p)


def _precision(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default=None,
        help="matrix products in bf16 autocast or fp32; auto (default, or $PAPERLIB_PRECISION): bf16 on "
        "GPUs and on CPUs with bf16 arithmetic (AVX512-BF16/AMX), fp32 elsewhere",
    )


def _debug(p: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    # SUPPRESS on the subcommands: `paperlib --debug prune ...` is not undone by the subparser's default
    p.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="on an unexpected error, show the full traceback (also $PAPERLIB_DEBUG=1)",
    )


# ---------------------------------------------------------------- checks before any work


def _preset(args):
    from .config import get_preset

    return get_preset(args.preset, max_length=args.max_length, seed=args.seed)


def _out(args, preset) -> str:
    return args.out or f"runs/{preset.name}"


def _run_folder(args, preset, seed: int) -> Path:
    from .experiment import run_folder

    return run_folder(_out(args, preset), args.dataset, seed)


def _check_strategies(spec: str) -> None:
    """--strategies: 'all' or known names (at least one), checked before any data is loaded or model trained."""
    from .strategies import parse_strategies

    if not parse_strategies(spec):
        raise PaperlibError(
            f"--strategies {spec!r} names no strategy; give 'all' or a comma list such as Random,Oracle"
        )


def _check_distill_args(depths: str | None, strategy: str) -> None:
    """--depths (None = the preset's policy) and --strategy (a known name), before any work.
    Whether each k is on the curve is checked once the curve is read."""
    from .config import check_depths
    from .strategies import REGISTRY, fusion_names

    if depths is not None:
        check_depths(depths, "--depths")
    known = [*REGISTRY, *fusion_names("within"), *fusion_names("transfer")]
    if strategy not in known:
        raise PaperlibError(f"unknown --strategy {strategy!r}; choose one of {known}")


def _check_stage(args, stage: str):
    """The checks of a stage command that need no data and no model: the preset and its overrides, the seeds,
    the stage's own options, and, in every seed's run folder, the run files it will read (whole and of the right
    shape).  Returns (preset, seeds); ``experiment.prepare`` then checks the device, the folders, the model's
    positions and the data."""
    from .config import seed_list
    from .io import check_run_files

    preset = _preset(args)
    seeds = seed_list(preset.seed, args.seeds)
    if stage == "prune":
        _check_strategies(args.strategies)
    elif stage == "distill":
        _check_distill_args(args.depths, args.strategy)
    for seed in seeds:
        folder = _run_folder(args, preset, seed)
        check_run_files(folder, [n.format(protocol=getattr(args, "protocol", "")) for n in STAGE_FILES[stage]])
        if stage == "fuse":
            _check_fuse_inputs(args, preset, folder)
        elif stage == "distill":
            _check_distill_inputs(args, preset, folder)
    return preset, seeds


def _check_fuse_inputs(args, preset, folder: Path) -> None:
    """fuse learns from single-signal curves: this folder's (within), or other datasets' made the same way
    (transfer); both are read before M_0 is loaded (or fine-tuned)."""
    from .fusion import dataset_rows, transfer_folders
    from .io import check_run_files

    if args.protocol == "within":
        dataset_rows(folder)  # its errors say what to run first
        return
    for other in (
        sorted(p for p in folder.parent.iterdir() if p.is_dir() and p != folder) if folder.parent.is_dir() else []
    ):
        check_run_files(other, ("config.json", "metrics.json", "curves.parquet", "signals.parquet"))
    model = None if (folder / "config.json").is_file() else (args.model or preset.model)
    transfer_folders(folder.name, folder.parent, model, reference=folder, verbose=False)


def _check_distill_inputs(args, preset, folder: Path) -> None:
    """distill needs the strategy's curve and depths on it: read from curves.parquet before M_0 is loaded."""
    from .distill import parse_depths, pruned_curve
    from .io import read_parquet

    curves = folder / "curves.parquet"
    if not curves.is_file():
        raise PaperlibError(f"{curves} is missing: run `paperlib prune` and `paperlib fuse` on this dataset first")
    curve = pruned_curve(read_parquet(curves), args.strategy)
    parse_depths(preset.distill_depths if args.depths is None else args.depths, curve)


def _runs(args, stage: str):
    """The run of each seed --seed .. --seed + --seeds - 1, after ``_check_stage``: prepared (fine-tuned or loaded)
    one after another, so a killed command resumes seed by seed."""
    from .experiment import prepare

    preset, seeds = _check_stage(args, stage)
    for seed in seeds:
        yield prepare(args.dataset, args.model, preset, _out(args, preset), args.data_dir, args.device, seed=seed)


# ---------------------------------------------------------------- commands


def cmd_finetune(args) -> None:
    for run in _runs(args, "finetune"):
        _print_finetune(run)


def _print_finetune(run) -> None:
    from .baselines import read_baseline

    m = run.metrics
    print(
        f"{run.splits.name}: fine-tuned {m['n_layers']}-layer model in {m['train_seconds']}s; "
        f"val acc {m['val_acc']:.4f}, test acc {m['test_acc']:.4f} -> {run.folder}"
    )
    b = read_baseline(run.folder)
    if b:
        print(
            f"{run.splits.name}: classical reference {b['method']} (C={b['C']:g}, chosen on validation): "
            f"val acc {b['val_acc']:.4f}, test acc {b['test_acc']:.4f}"
        )


def cmd_prune(args) -> None:
    from .pruning import prune_command

    for run in _runs(args, "prune"):
        prune_command(run, strategies=args.strategies)


def cmd_fuse(args) -> None:
    from .fusion import fuse_command

    for run in _runs(args, "fuse"):  # transfer: the other datasets of the same seed
        fuse_command(run, protocol=args.protocol, runs_root=run.folder.parent)


def cmd_distill(args) -> None:
    from .distill import distill_command
    from .export import check_save_students
    from .train import compile_mode

    compile_mode(args.compile, "cpu")  # a bad --compile fails before any work
    check_save_students(args.save_students)
    for run in _runs(args, "distill"):
        distill_command(
            run,
            depths=args.depths,
            compile=args.compile,
            strategy=args.strategy,
            save_students=args.save_students,
        )


def cmd_table(args) -> None:
    from .io import check_run_files, check_writable
    from .paths import seed_roots
    from .results import check_same_config

    runs = Path(args.runs)
    if runs.exists() and not runs.is_dir():
        raise PaperlibError(f"--runs {args.runs!r} is a file, not a runs folder; pass the folder that holds <dataset>/")
    if args.save is not None:
        check_writable(args.save, "--save folder", "--save")
    folders = [p for root in seed_roots(runs).values() for p in sorted(root.iterdir()) if p.is_dir()]
    for folder in folders:  # every run file whole and of the right shape, one way of running
        check_run_files(folder)
    check_same_config(runs, folders)
    table_command(args.runs, out=args.save)


def table_command(runs_root: str | Path, out: str | Path | None = None, seeds=None) -> dict:
    """``paperlib table``: print the seed-aggregated Table 1 with per-seed agreement, the secondary views, the
    pruning orders that coincide, the distillation summary, the claims check (in aggregate and per seed) with its
    rules and the direction check (``tabulate.print_verdicts``); with ``out``, also write them as CSV
    (``tabulate.write_verdicts``).  ``seeds``: only those pipeline seeds (default: every seed under ``runs_root``)."""
    from .claims import verdicts
    from .results import classical_reference
    from .tabulate import print_verdicts, write_verdicts

    v = verdicts(runs_root, seeds=seeds)
    print_verdicts(v, classical_reference(runs_root))
    if out is not None:
        write_verdicts(v, out)
    return v


def cmd_reproduce(args) -> None:
    from .config import check_depths, exported, get_preset, seed_list
    from .config import data_dir as resolve_data_dir
    from .data import check_datasets, dataset_list
    from .io import check_writable
    from .reproduce import check_start_within
    from .sweep import check_cluster_options, reproduce

    preset = get_preset(args.preset)
    check_cluster_options(args.jobs, args.workers_per_gpu, args.scheduler)
    check_start_within(args.start_within)
    seed_list(preset.seed if args.seed is None else args.seed, args.seeds)
    if args.depths is not None:
        check_depths(args.depths, "--depths")
    resolve_data_dir(args.data_dir)
    # every dataset before the first notebook: a typo fails now, not after the datasets before it ran
    check_datasets(dataset_list(args.datasets, preset.datasets), args.data_dir, preset)
    check_writable(args.runs or f"runs/{preset.name}", "runs folder", "--runs")
    with exported("precision"):  # the one setting papermill's kernels must inherit from the command line
        ok = reproduce(
            preset=args.preset,
            datasets=args.datasets,
            runs=args.runs,
            data_dir=args.data_dir,
            model=args.model,
            seed=args.seed,
            seeds=args.seeds,
            jobs=args.jobs,
            workers_per_gpu=args.workers_per_gpu,
            scheduler=args.scheduler,
            notebooks_dir=args.notebooks,
            depths=args.depths,
            start_within=args.start_within,
        )
    if not ok:
        sys.exit(1)


def cmd_report(args) -> None:
    from .report import report_command

    report_command(args.runs, pages=not args.no_pages)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="paperlib",
        description="Layer pruning, strategic fusion and distillation of transformer classifiers "
        "(companion to arXiv 2501.03273). Stages: finetune -> prune -> fuse -> distill -> table.",
    )
    parser.add_argument("--version", action="version", version=f"paperlib {__version__}")
    _debug(parser, default=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_stages(sub)
    _add_table(sub)
    _add_reproduce(sub)
    _add_report(sub)
    return parser


def _add_stages(sub) -> None:
    _add_finetune(sub)
    _add_prune(sub)
    _add_fuse(sub)
    _add_distill(sub)


def _add_finetune(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune the full model M_0 and write the run folder",
        description="Fine-tune MODEL on DATASET and write OUT/seed-<S>/<dataset>/ (config.json, model/, metrics.json). "
        "A rerun with the same config reuses the saved model.",
    )
    _common(p)
    p.set_defaults(func=cmd_finetune)


def _add_prune(sub) -> None:
    p = sub.add_parser(
        "prune",
        help="single-signal, random, oracle and reference pruning curves",
        description="Prune layers one at a time with each strategy (fine-tuning first if needed); "
        "writes signals.parquet and curves.parquet and prints best test accuracy per strategy.",
    )
    _common(p)
    p.add_argument(
        "--strategies",
        default="all",
        help="'all' or a comma list of strategy names (e.g. Weight-Entropy,Random,Oracle)",
    )
    p.set_defaults(func=cmd_prune)


def _add_fuse(sub) -> None:
    p = sub.add_parser(
        "fuse",
        help="fit LR / RF fusion on the single-signal runs and prune with them",
        description="Build fusion rows from the single-signal runs, fit Linear-Regression and Random-Forest, "
        "and add their pruning curves to curves.parquet.",
    )
    _common(p)
    p.add_argument(
        "--protocol",
        choices=["within", "transfer"],
        default="within",
        help="within: rows from this dataset (default); transfer: rows from the other datasets under the runs "
        "folder made the same way (model, precision, recipe)",
    )
    p.set_defaults(func=cmd_fuse)


def _add_distill(sub) -> None:
    p = sub.add_parser(
        "distill",
        help="knowledge distillation of the RF-pruned models",
        description="Distil the teacher M_0 into the RF-pruned student at each depth (and the alpha=0 control); "
        "writes distill.parquet.",
    )
    _common(p)
    p.add_argument(
        "--depths",
        default=None,
        help="'all' (k = 1..L-1), 'every_other' (k = 1,3,5,... and k*), 'three' (k*, the middle, the deepest), "
        "'best' (k* only) or a comma list of k (default: the preset's; quick: three, paper: all)",
    )
    p.add_argument(
        "--compile",
        nargs="?",
        const="default",
        default=None,
        help="how the students' layers are compiled: auto (default, or $PAPERLIB_COMPILE: CUDA graphs on a GPU, "
        "eager on a CPU), none, cudagraphs, reduce-overhead, default (Inductor; what a bare --compile means)",
    )
    p.add_argument(
        "--strategy", default="Random-Forest", help="whose pruned curve to distil (any strategy in curves.parquet)"
    )
    p.add_argument(
        "--save-students",
        default="best",
        help="which KD students to keep as transformers checkpoints with a model card under OUT/<dataset>/students/: "
        "best (k*, default), all (every distilled depth), none, or a comma list of depths",
    )
    p.set_defaults(func=cmd_distill)


def _add_table(sub) -> None:
    p = sub.add_parser(
        "table",
        help="print Table 1, distillation/ATS columns and the claims check",
        description="Read every dataset under RUNS and print Table 1 and the claims check. The datasets must "
        "have been run the same way (model, precision, recipe).",
    )
    p.add_argument("--runs", default="runs/quick", help="runs folder holding <dataset>/ run folders")
    p.add_argument("--save", default=None, help="also write the tables as CSV into this folder")
    _debug(p)
    p.set_defaults(func=cmd_table)


def _add_reproduce(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="run the notebooks with papermill over a grid of datasets x seeds x models (the main job)",
        description="Execute notebooks 01-05 per dataset, seed and model (one chain each, into "
        "RUNS/seed-<S>/<dataset>/), then 06 once per model into RUNS/summary/, with papermill. Chains run as "
        "Dask tasks on a local cluster sized to the machine (one worker per visible GPU, or CPU workers sharing "
        "the cores) or on an existing cluster (--scheduler); --jobs 1 runs them in this process. Resumes; a chain "
        "whose kernel or worker dies is retried; failed chains are listed at the end (exit status 1). Every "
        "dataset name is checked before the first chain runs.",
    )
    p.add_argument("--preset", default="quick", help="quick (default) or paper")
    p.add_argument("--datasets", default=None, help="'all' (the nine) or a comma list (default: the preset's datasets)")
    p.add_argument("--runs", default=None, help="runs folder (default: runs/<preset>)")
    p.add_argument("--data-dir", default=None, help="local data folder (default: $PAPERLIB_DATA_DIR)")
    p.add_argument(
        "--model",
        default=None,
        help="override the preset's model; a comma list runs each model into RUNS/<model short name>/",
    )
    p.add_argument("--seed", type=int, default=None, help="the first pipeline seed (default: the preset's, 0)")
    p.add_argument("--seeds", type=int, default=1, help="how many seeds: SEED .. SEED+SEEDS-1 (default 1)")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="workers of the local cluster (default: one per visible GPU, else half the cores); "
        "1: the chains one after the other in this process (no Dask needed)",
    )
    p.add_argument(
        "--workers-per-gpu",
        type=int,
        default=None,
        help="local cluster: this many workers share each GPU, so small datasets overlap on one GPU (default 1)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="address of a running Dask scheduler (tcp://HOST:PORT) whose workers run the chains "
        "(default: $PAPERLIB_DASK_SCHEDULER; else a local cluster)",
    )
    p.add_argument(
        "--depths",
        default=None,
        help="distillation depths of notebook 05: all, every_other, three, best or a comma list of k "
        "(default: the preset's distill_depths)",
    )
    p.add_argument(
        "--start-within",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no chain later than SECONDS after the grid's start (a machine lent for a fixed time): chains "
        "start in order, seed by seed; those left are listed as not started (exit status 1) and the same command "
        "runs them (default: no limit)",
    )
    p.add_argument("--notebooks", default=None, help="folder of the notebooks (default: the repository's notebooks/)")
    _precision(p)
    _debug(p)
    p.set_defaults(func=cmd_reproduce)


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="render a run's executed notebooks as static HTML with an index (offline)",
        description="Render every executed notebook of a run (per dataset 01-05, and 06) to static HTML "
        "under <runs>/report/, with an index.html linking them beside the summary tables "
        "and the Figure 1 grid. `paperlib reproduce` writes it at its end.",
    )
    p.add_argument(
        "--runs", default="runs/quick", help="runs folder of a finished `paperlib reproduce` (default: runs/quick)"
    )
    p.add_argument(
        "--no-pages",
        action="store_true",
        help="write index.html alone, linking the executed .ipynb files (no HTML page per notebook)",
    )
    _debug(p)
    p.set_defaults(func=cmd_report)


# ---------------------------------------------------------------- the one error rule


def error_line(exc: BaseException) -> tuple[int, str]:
    """(exit status, the ``error:`` line's text) for an exception that ended a command."""
    if isinstance(exc, PaperlibError):
        return 2, str(exc)
    if isinstance(exc, OSError):
        return 2, os_error_message(exc)
    detail = " ".join(str(exc).split())[:300]
    return 1, (
        f"unexpected {type(exc).__name__}{': ' + detail if detail else ''} (a bug in paperlib; please report it); "
        f"rerun with --debug for the traceback"
    )


def _stdout_closed() -> None:
    """The reader of stdout went away (``paperlib table | head``): no traceback, no error line."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python would fail again flushing stdout at exit
    except (OSError, ValueError, AttributeError):
        pass
    sys.exit(1)


def main(argv=None) -> None:
    from .config import overridden, runtime

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        sys.exit(2)
    debug = bool(getattr(args, "debug", False))
    flags = {
        "quiet": True if getattr(args, "quiet", False) else None,
        "precision": getattr(args, "precision", None),
        "debug": True if debug else None,
    }
    try:
        with overridden(**flags):
            debug = runtime().debug  # also checks the PAPERLIB_* variables (a bad $PAPERLIB_PRECISION), before any work
            args.func(args)
    except KeyboardInterrupt:
        print("interrupted: finished results are saved; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        _stdout_closed()
    except Exception as exc:
        if debug:
            raise
        code, line = error_line(exc)
        print(f"error: {line}", file=sys.stderr)
        sys.exit(code)


if __name__ == "__main__":
    main()
