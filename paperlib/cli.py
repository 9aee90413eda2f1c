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
    p.add_argument("--out", default=None, help="runs folder; results go to OUT/<dataset>/ (default: runs/<preset>)")
    p.add_argument(
        "--data-dir",
        default=None,
        help="local folder laid out like ../shared/datasets (default: $PAPERLIB_DATA_DIR; else embedded or hub)",
    )
    p.add_argument("--max-length", type=int, default=None, help="override the preset's max tokens per text")
    p.add_argument("--seed", type=int, default=None, help="override the preset's seed")
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


def _prepare(args):
    from .experiment import prepare

    preset = _preset(args)
    return prepare(
        args.dataset,
        args.model,
        preset,
        _out(args, preset),
        args.data_dir,
        args.device,
        progress=False if args.quiet else None,
    )


def cmd_finetune(args) -> None:
    run = _prepare(args)
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
    prune_command(_prepare(args), strategies=args.strategies, progress=False if args.quiet else None)


def cmd_fuse(args) -> None:
    from .fusion import fuse_command

    preset = _preset(args)
    fuse_command(
        _prepare(args), protocol=args.protocol, runs_root=_out(args, preset), progress=False if args.quiet else None
    )


def cmd_distill(args) -> None:
    from .distill import distill_command

    _check_distill_args(args.depths, args.strategy)
    from .train import compile_mode

    compile_mode(args.compile, "cpu")  # a bad --compile fails before any work
    distill_command(
        _prepare(args),
        depths=args.depths,
        compile=args.compile,
        progress=False if args.quiet else None,
        strategy=args.strategy,
    )


def cmd_table(args) -> None:
    table_command(args.runs, out=args.save)


def table_command(runs_root: str | Path, out: str | Path | None = None) -> dict:
    """``paperlib table``: print the selection-free Table 1 with intervals, the secondary views, the
    distillation summary, the claims check with its rules and (when flipped runs exist) the direction
    check; with ``out``, also write them as CSV (table1.csv tidy, table1_<view>.csv wide, table1_max.csv,
    distill_summary.csv, distill_pairs.csv, claims.csv, direction.csv)."""
    import numpy as np
    import pandas as pd

    from .claims import VERDICT_RULES, direction_wide, verdicts
    from .io import write_csv
    from .results import classical_reference
    from .tables import ci_wide, comparison_wide

    v = verdicts(runs_root)
    table, references, claims = v["table"], v["references"], v["claims"]
    original = {r.name: r.metrics.get("test_acc", np.nan) for r in v["results"]}
    baseline = classical_reference(runs_root)
    ks = "; ".join(
        f"{r.dataset}: L={r.n_layers}, k={'/'.join(str(k) for k in r.ks.values())}, reference {r.reference}"
        f"{'' if r.predictions else ' (no predictions.parquet: no intervals)'}"
        for r in references.itertuples()
    )
    views = {
        "mean": "test accuracy (%) averaged over k = 1..L-1 (area under the curve)",
        "L/4": "test accuracy (%) at k = L/4",
        "L/2": "test accuracy (%) at k = L/2",
        "3L/4": "test accuracy (%) at k = 3L/4",
        "val-k": "test accuracy (%) at the k chosen on validation (most layers removed with validation "
        "accuracy within the preset's tolerance of M_0's; k=0 is M_0)",
        "max": "SECONDARY, selected on test (the paper's Table 1): maximum over k of test accuracy",
    }
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_colwidth", 200):
        print(
            "Table 1 (selection-free). R = reference: the best single-signal strategy chosen on validation "
            "(validation curve mean); + / - = the paired-bootstrap 95 % interval of the difference to R at the "
            "same k excludes 0 (2,000 resamples of the test examples); no mark = tie."
        )
        print(ks)
        for view, title in views.items():
            print(f"\n{title}")
            print(comparison_wide(table, view, *((original, baseline) if view == "mean" else ())).to_string())
            if view == "mean":
                print("\ndifference to R on the curve mean, points [95 % interval]")
                intervals = ci_wide(table, "mean")
                print(intervals.to_string() if not intervals.empty else "(no predictions.parquet: no intervals)")
        if v["distill_summary"] is not None:
            s = v["distill_summary"]
            print("\nDistillation of the RF-pruned model at k* (accuracy-to-size in %/MB, MB = 10^6 bytes)")
            shown = s.assign(original_MB=s["original_bytes"] / 1e6, kd_MB=s["kd_bytes"] / 1e6)
            print(
                shown.drop(columns=["original_bytes", "kd_bytes"]).to_string(
                    index=False, float_format=lambda x: f"{x:.4f}"
                )
            )
            if not v["distill_pairs"].empty:
                print(
                    "\nPaired differences at k* (points, 95 % interval): "
                    "KD vs M_0, control vs M_0, KD vs untrained, KD vs control"
                )
                print(_pairs_text(v["distill_pairs"]).to_string(index=False))
        print("\nClaims check (verdict_point: the paper's reading; verdict: ours, significant count)")
        print(claims.drop(columns=["detail"]).to_string(index=False))
        print("\nDetails")
        for r in claims.itertuples():
            print(f"- {r.claim}: {r.detail}")
        print("\n" + VERDICT_RULES)
        if not v["direction"].empty:
            print("\nDirection check: does SPEC 3's direction beat its flip on the VALIDATION curve mean? (points)")
            print(direction_wide(v["direction"]).to_string())
    if out is not None:
        out = Path(out)
        write_csv(table, out / "table1.csv")
        for view in views:
            write_csv(
                comparison_wide(table, view).reset_index(names="strategy"), out / f"table1_{view.replace('/', '_')}.csv"
            )
        write_csv(v["table1_max"], out / "table1_max.csv")
        if v["distill_summary"] is not None:
            write_csv(v["distill_summary"], out / "distill_summary.csv")
            write_csv(v["distill_pairs"], out / "distill_pairs.csv")
        write_csv(claims, out / "claims.csv")
        write_csv(v["direction"], out / "direction.csv")
    return v


def _pairs_text(pairs):
    """The paired differences at k* as text cells: '+1.23 [+0.10, +2.40]' in points."""
    import pandas as pd

    out = pairs[["dataset", "k_star"]].copy()
    for label in ("kd-M_0", "ce-M_0", "kd-none", "kd-ce"):
        out[label] = [
            ("" if pd.isna(d) else f"{100 * d:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]")
            for d, lo, hi in zip(pairs[f"{label}_diff"], pairs[f"{label}_ci_low"], pairs[f"{label}_ci_high"])
        ]
    return out


def cmd_reproduce(args) -> None:
    from .reproduce import reproduce

    ok = reproduce(
        preset=args.preset,
        datasets=args.datasets,
        runs=args.runs,
        data_dir=args.data_dir,
        model=args.model,
        jobs=args.jobs,
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
        description="Fine-tune MODEL on DATASET and write OUT/<dataset>/ (config.json, model/, metrics.json). "
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
        help="run the notebooks with papermill over datasets (the main job)",
        description="Execute notebooks 01-05 per dataset, then 06 once, with papermill; "
        "resumes, and reports failed datasets at the end.",
    )
    p.add_argument("--preset", default="quick", help="quick (default) or paper")
    p.add_argument("--datasets", default=None, help="'all' (the nine) or a comma list (default: the preset's datasets)")
    p.add_argument("--runs", default=None, help="runs folder (default: runs/<preset>)")
    p.add_argument("--data-dir", default=None, help="local data folder (default: $PAPERLIB_DATA_DIR)")
    p.add_argument("--model", default=None, help="override the preset's model")
    p.add_argument("--jobs", type=int, default=1, help="datasets run in parallel")
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
