"""Command line: ``paperlib finetune | prune | fuse | distill | table | reproduce | report``.

Each subcommand is a thin wrapper over one pipeline stage; bad input prints one ``error:`` line
and exits with status 2."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import PaperlibError


def _common(p: argparse.ArgumentParser, dataset_required: bool = True) -> None:
    p.add_argument(
        "--dataset",
        required=dataset_required,
        default=None if dataset_required else "bbc_news",
        help="registry name (bbc_news, newsgroup, dbpedia, arxiv, patent, yahoo, yelp, agnews, imdb, amazon) "
        "or a folder with train.csv+test.csv or all.csv (columns text,label; optional labels.txt)",
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
    p.add_argument("--max-length", type=int, default=None, help="override the preset's max tokens per text")
    p.add_argument("--seed", type=int, default=None, help="first pipeline seed S (default: the preset's, 0)")
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="how many seeds: S .. S+N-1, one whole pipeline each, run one after another (default 1)",
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    _precision(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _precision(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default=None,
        help="matrix products in bf16 autocast or fp32; auto (default, or $PAPERLIB_PRECISION): bf16 on "
        "GPUs and on CPUs with bf16 arithmetic (AVX512-BF16/AMX), fp32 elsewhere",
    )


def _preset(args):
    from .config import get_preset

    return get_preset(args.preset, max_length=args.max_length, seed=args.seed)


def _out(args, preset) -> str:
    return args.out or f"runs/{preset.name}"


def _runs(args):
    """The run of each seed --seed .. --seed + --seeds - 1, prepared (fine-tuned or loaded) one after another."""
    from . import experiment

    preset = _preset(args)
    for seed in experiment.seed_list(preset.seed, args.seeds):
        yield experiment.prepare(
            args.dataset,
            args.model,
            preset,
            _out(args, preset),
            args.data_dir,
            args.device,
            progress=False if args.quiet else None,
            seed=seed,
        )


def cmd_finetune(args) -> None:
    for run in _runs(args):
        _print_finetune(run)


def _print_finetune(run) -> None:
    m = run.metrics
    print(
        f"{run.splits.name}: fine-tuned {m['n_layers']}-layer model in {m['train_seconds']}s; "
        f"val acc {m['val_acc']:.4f}, test acc {m['test_acc']:.4f} -> {run.folder}"
    )
    from .baselines import read_baseline

    b = read_baseline(run.folder)
    if b:
        print(
            f"{run.splits.name}: classical reference {b['method']} (C={b['C']:g}, chosen on validation): "
            f"val acc {b['val_acc']:.4f}, test acc {b['test_acc']:.4f}"
        )


def _check_strategies(spec: str) -> None:
    """--strategies: 'all' or known names, checked before any data is loaded or model trained."""
    from .strategies import parse_strategies

    parse_strategies(spec)


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


def cmd_prune(args) -> None:
    from .pruning import prune_command

    _check_strategies(args.strategies)
    for run in _runs(args):
        prune_command(run, strategies=args.strategies, progress=False if args.quiet else None)


def cmd_fuse(args) -> None:
    from .fusion import fuse_command

    for run in _runs(args):  # transfer: the other datasets of the same seed
        fuse_command(run, protocol=args.protocol, runs_root=run.folder.parent, progress=False if args.quiet else None)


def cmd_distill(args) -> None:
    from .distill import distill_command
    from .export import check_save_students

    _check_distill_args(args.depths, args.strategy)
    check_save_students(args.save_students)
    for run in _runs(args):
        distill_command(
            run,
            depths=args.depths,
            compile=args.compile,
            progress=False if args.quiet else None,
            strategy=args.strategy,
            save_students=args.save_students,
        )


def cmd_table(args) -> None:
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
    from .sweep import reproduce

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
    )
    if not ok:
        sys.exit(1)


def cmd_report(args) -> None:
    from .report import report_command

    report_command(args.runs, pages=not args.no_pages)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paperlib",
        description="Layer pruning, strategic fusion and distillation of transformer classifiers "
        "(companion to arXiv 2501.03273). Stages: finetune -> prune -> fuse -> distill -> table.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"paperlib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "finetune",
        help="fine-tune the full model M_0 and write the run folder",
        description="Fine-tune MODEL on DATASET and write OUT/seed-<S>/<dataset>/ (config.json, model/, metrics.json). "
        "A rerun with the same config reuses the saved model.",
    )
    _common(p)
    p.set_defaults(func=cmd_finetune)

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
        help="within: rows from this dataset (default); transfer: rows from the other datasets under the runs folder",
    )
    p.set_defaults(func=cmd_fuse)

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
    p.add_argument("--compile", action="store_true", help="torch.compile the student (CUDA)")
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

    p = sub.add_parser(
        "table",
        help="print Table 1, distillation/ATS columns and the claims check",
        description="Read every dataset under RUNS and print Table 1 and the claims check.",
    )
    p.add_argument("--runs", default="runs/quick", help="runs folder holding <dataset>/ run folders")
    p.add_argument("--save", default=None, help="also write the tables as CSV into this folder")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser(
        "reproduce",
        help="run the notebooks with papermill over a grid of datasets x seeds x models (the main job)",
        description="Execute notebooks 01-05 per dataset, seed and model (one chain each, into "
        "RUNS/seed-<S>/<dataset>/), then 06 once per model into RUNS/summary/, with papermill. Chains run as "
        "Dask tasks on a local cluster sized to the machine (one worker per visible GPU, or CPU workers sharing "
        "the cores) or on an existing cluster (--scheduler); --jobs 1 runs them in this process. Resumes; a chain "
        "whose kernel or worker dies is retried; failed chains are listed at the end (exit status 1).",
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
    p.add_argument("--notebooks", default=None, help="folder of the notebooks (default: the repository's notebooks/)")
    _precision(p)
    p.set_defaults(func=cmd_reproduce)

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
    p.set_defaults(func=cmd_report)
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        sys.exit(2)
    if getattr(args, "quiet", False):
        os.environ["PAPERLIB_QUIET"] = "1"
    if getattr(args, "precision", None):  # read by every stage, and inherited by papermill's kernels
        os.environ["PAPERLIB_PRECISION"] = args.precision
    try:
        if os.environ.get("PAPERLIB_PRECISION"):
            from .train import precision

            precision("cpu")  # a bad $PAPERLIB_PRECISION fails here, before any work
        args.func(args)
    except PaperlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished results are saved; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
