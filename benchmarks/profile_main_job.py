"""Profile: where the quick main job's time goes, stage by stage, in one process (no notebooks).

Runs what notebooks 01-05 call (fine-tune, the 12 signal curves, every pruning strategy and the
direction check, fusion, distillation) on a copy of a run folder, with a timer and the Pruner's
counters (signal passes, evaluations, layer forwards) per stage, and the matmul FLOPs of one
example through each kind of pass (``torch.utils.flop_counter``) so costs compare across machines.

    python benchmarks/profile_main_job.py --runs /tmp/prof --precision fp32 [--depths three]

A loaded machine inflates every row alike; read the shares, not the seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path


def flops_per_example(model, enc, backward: bool) -> float:
    """Matmul FLOPs of one batch (forward, or forward + backward) divided by its examples."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    batch = {k: getattr(enc, k)[:32].to(device) for k in ("input_ids", "attention_mask")}
    with FlopCounterMode(display=False) as counter:
        if backward:
            out = model(**batch).logits.sum()
            out.backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                model(**batch)
    return counter.get_total_flops() / 32


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="a runs folder (reused: stages with saved results are skipped)")
    ap.add_argument("--precision", default="fp32", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--depths", default=None, help="distillation depths (default: the preset's)")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--out", default=None, help="write the stage table as JSON here too")
    ap.add_argument("--device", default="cpu", help="cpu (the main job's case) or cuda")
    ap.add_argument("--model", default=None, help="override the preset's model (e.g. random:bert-base)")
    ap.add_argument("--dataset", default=None, help="default: the preset's first dataset")
    ap.add_argument("--data-dir", default=None, help="local data folder (the nine datasets)")
    ap.add_argument(
        "--stop-after",
        default=None,
        choices=["02", "03"],
        help="end after this notebook's stages (e.g. 03: profile the prune stage alone)",
    )
    args = ap.parse_args(argv)
    os.environ["PAPERLIB_PRECISION"] = args.precision
    os.environ.setdefault("PAPERLIB_QUIET", "1")

    import torch

    from paperlib.config import get_preset
    from paperlib.distill import distill_run
    from paperlib.experiment import prepare
    from paperlib.fusion import run_fusion
    from paperlib.pruning import Pruner, run_pruning
    from paperlib.strategies import REGISTRY, SIGNALS

    preset = get_preset(args.preset)
    rows = []

    def stage(name, fn, pruner=None):
        before = dict(pruner.calls) if pruner is not None else {}
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        calls = {k: v - before.get(k, 0) for k, v in pruner.calls.items()} if pruner is not None else {}
        rows.append({"stage": name, "seconds": round(seconds, 1), **calls})
        print(f"{name}: {seconds:.1f}s {calls}", flush=True)
        return result

    t_all = time.perf_counter()
    run = stage(
        "01 load data + fine-tune M_0 (or load it)",
        lambda: prepare(
            args.dataset or preset.datasets[0],
            args.model,
            preset,
            args.runs,
            args.data_dir,
            device=args.device,
            progress=False,
        ),
    )
    pruner = Pruner(run, progress=False)
    stage("02 twelve signal curves", lambda: run_pruning(run, list(SIGNALS), progress=False, pruner=pruner), pruner)
    if args.stop_after != "02":
        stage(
            "03 other strategies (Oracle, Random x seeds, references)",
            lambda: run_pruning(run, "all", progress=False, pruner=pruner),
            pruner,
        )
        flip = {"lowest": "highest", "highest": "lowest"}
        flipped = [
            dataclasses.replace(REGISTRY[s], name=f"{s} (flipped)", direction=flip[REGISTRY[s].direction])
            for s in SIGNALS
        ]
        check_run = dataclasses.replace(run, folder=run.folder / "direction_check")
        stage(
            "03 direction check (12 flipped curves)",
            lambda: run_pruning(check_run, flipped, progress=False, pruner=pruner),
            pruner,
        )
    if args.stop_after is None:
        stage("04 fusion (within)", lambda: run_fusion(run, "within", progress=False), None)
        stage("05 distillation", lambda: distill_run(run, depths=args.depths, progress=False, verbose=True), None)
    total = time.perf_counter() - t_all

    m = run.model
    calib = pruner.calibration
    fl = {
        "forward / example": flops_per_example(m, run.encoded["val"], False),
        "forward+backward / example": flops_per_example(m, run.encoded["train"], True),
    }
    m.eval()
    from paperlib.signals import compute_signals

    t0 = time.perf_counter()
    compute_signals(m, calib, batch_size=preset.batch_size, device=args.device)  # ends reading floats: synchronised
    one_pass = time.perf_counter() - t0
    load = os.getloadavg()[0]
    print(
        f"\ntotal {total:.0f}s, torch threads {torch.get_num_threads()}, load avg {load:.1f} at the end; "
        f"calibration set {len(calib)}, train {len(run.encoded['train'])}, val {len(run.encoded['val'])}, "
        f"test {len(run.encoded['test'])}"
    )
    print("| stage | seconds | share | signal passes | val evals | test evals | layer forwards |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stage']} | {r['seconds']} | {100 * r['seconds'] / total:.0f} % | {r.get('signals', '')} | "
            f"{r.get('val', '')} | {r.get('test', '')} | {r.get('layers_run', '')} |"
        )
    print({k: f"{v / 1e9:.2f} GFLOP" for k, v in fl.items()})
    print(
        f"one signal pass of the full model over the {len(calib)} calibration texts: {one_pass:.2f}s "
        f"(passes x this bounds the signals' share of a stage; the rest is evaluation and bookkeeping)"
    )
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "total": total, "flops": fl, "load": load}, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
