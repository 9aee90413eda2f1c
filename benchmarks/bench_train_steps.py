"""Benchmark: the training loop (``paperlib.train.train``) under each way of compiling its layers (issue 23).

The paper preset's fine-tuning of one dataset (batch 32, AdamW, the precision policy, length-bucketed batches)
from the same start for each mode: eager (``none``), CUDA graphs of the plain kernels (``cudagraphs``, what
``auto`` picks on CUDA), Inductor with CUDA graphs (``reduce-overhead``), ...  Per mode: the first epoch (with
the tracing and the graphs' recording), the later epochs' mean, ms per step, the validation accuracy reached,
and the compile cost = first epoch - later epoch.  Compilation pays when (eager step - compiled step) x steps of
a process's trainings exceeds its cost.

    python benchmarks/bench_train_steps.py --data-dir DATA --dataset agnews --modes none,cudagraphs,reduce-overhead
    python benchmarks/bench_train_steps.py --model random:tiny --preset tiny --dataset FOLDER --modes none,aot_eager
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("PAPERLIB_QUIET", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # a shared CPU: spinning OpenMP threads slowed small steps ~100x
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from bench_gpu_pipeline import hardware  # noqa: E402  (benchmarks/, first on sys.path when run as a script)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--dataset", default="agnews")
    ap.add_argument("--model", default="random:bert-base")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--modes", default="none,cudagraphs", help="comma list of train(compile=...) values")
    ap.add_argument("--epochs", type=int, default=2, help="at least 2: the first one holds the compilation")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)

    from paperlib.config import get_preset
    from paperlib.data import load_splits
    from paperlib.models import load_model
    from paperlib.tokens import encode_splits
    from paperlib.train import TrainSettings, default_device, evaluate, precision, train

    preset = get_preset(args.preset)
    device = torch.device(args.device) if args.device else default_device()
    splits = load_splits(args.dataset, preset, args.data_dir)
    start, tok = load_model(args.model, class_names=splits.class_names)
    data = encode_splits(splits, tok, preset.max_length)
    rows = []
    for mode in [m for m in args.modes.split(",") if m]:
        model = copy.deepcopy(start)
        t0 = time.perf_counter()
        info = train(
            model,
            data["train"],
            dataclasses.replace(TrainSettings.finetune(preset, start.config.hidden_size), epochs=args.epochs),
            device=device,
            progress=False,
            compile=mode,
        )
        total = time.perf_counter() - t0
        first, later = info["epoch_seconds"][0], info["epoch_seconds"][1:]
        steady = sum(later) / len(later) if later else float("nan")
        steps = info["steps"] / len(info["epoch_seconds"])
        val = evaluate(model, data["val"], preset.eval_batch_size, device)["accuracy"]
        rows.append(
            {
                "mode": mode,
                "ran": info["compile"],
                "total_s": total,
                "first_epoch_s": first,
                "later_epoch_s": steady,
                "ms_per_step": 1000 * steady / steps,
                "compile_s": first - steady,
                "val_acc": val,
                "final_loss": info["final_loss"],
            }
        )
        print(rows[-1], flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(
        f"\n{args.model} on {splits.name}, preset {args.preset}: {len(splits.train)} training texts, batch "
        f"{preset.batch_size}, {args.epochs} epochs, precision {precision(device)}; {hardware()}"
    )
    print("| mode | ran as | first epoch s | later epoch s | ms / step | compile s | val acc | final loss |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['ran']} | {r['first_epoch_s']:.1f} | {r['later_epoch_s']:.1f} | "
            f"{r['ms_per_step']:.1f} | {r['compile_s']:.1f} | {r['val_acc']:.4f} | {r['final_loss']:.4f} |"
        )
    return rows


if __name__ == "__main__":
    main()
