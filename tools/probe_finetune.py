"""Probe the fine-tuning recipe of M_0 (SPEC 8): fine-tune each model on each dataset with the paper preset's
recipe (or overrides) and print one markdown row per run: epochs run and kept, validation and test accuracy, and
TF-IDF + LR beside it.  Nothing is chosen on test; the table is for reading.

    python tools/probe_finetune.py --models minilm,/tmp/mpnet16 --datasets newsgroup,arxiv,yelp \\
        --data-dir /tmp/ref/data --lrs 3e-5,5e-5 --out /tmp/probe

``--lrs``: fine-tuning learning rates to try, each for every model as is (no width scaling); without it the
preset's rule (``TrainSettings.finetune``: lr * lr_width / hidden).  ``--max-length``, ``--epochs``, ``--patience``
override the preset's.  Each (model, lr, seed) writes its own runs folder under ``--out``, so a rerun reuses what
finished."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paperlib.baselines import read_baseline  # noqa: E402
from paperlib.config import get_preset  # noqa: E402
from paperlib.experiment import prepare  # noqa: E402
from paperlib.io import read_json  # noqa: E402
from tools.readme_results import markdown  # noqa: E402


def probe(model: str, dataset: str, preset, out: Path, data_dir, seed: int) -> dict:
    t0 = time.perf_counter()
    run = prepare(dataset, model, preset, out, data_dir, progress=False, seed=seed)
    m, base = run.metrics, read_baseline(run.folder) or {}
    lr = read_json(run.folder / "config.json").get("finetune", {}).get("lr", run.preset.lr)  # after width scaling
    return {
        "model": Path(model).name,
        "dataset": run.splits.name,
        "seed": seed,
        "lr": f"{lr:.0e}",
        "tokens": run.preset.max_length,
        "epochs run / max": f"{m['epochs_run']} / {run.preset.finetune_epochs}",
        "kept epoch": m["best_epoch"],
        "val acc": f"{100 * m['val_acc']:.1f}",
        "test acc": f"{100 * m['test_acc']:.1f}",
        "TF-IDF test": f"{100 * base['test_acc']:.1f}" if base else "",
        "seconds": round(time.perf_counter() - t0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="minilm")
    ap.add_argument("--datasets", default="newsgroup,arxiv")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="/tmp/probe_finetune")
    ap.add_argument("--seeds", default="0", help="comma list of pipeline seeds")
    ap.add_argument("--lrs", default=None, help="comma list of learning rates (default: the preset's rule)")
    ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--patience", type=int, default=None)
    args = ap.parse_args()
    base = get_preset(
        args.preset, max_length=args.max_length, finetune_epochs=args.epochs, finetune_patience=args.patience
    )
    variants = (
        [(None, base)]
        if args.lrs is None
        else [(lr, base.replace(lr=float(lr), lr_width=0)) for lr in args.lrs.split(",")]
    )
    rows = []
    for model in args.models.split(","):
        for lr, preset in variants:
            out = Path(args.out) / f"{Path(model).name}-lr{lr or 'rule'}-len{preset.max_length}"
            for seed in (int(s) for s in args.seeds.split(",")):
                for dataset in args.datasets.split(","):
                    rows.append(probe(model, dataset, preset, out, args.data_dir, seed))
                    print(" | ".join(str(v) for v in rows[-1].values()), flush=True)
    print()
    print(markdown(pd.DataFrame(rows), index=False))


if __name__ == "__main__":
    main()
