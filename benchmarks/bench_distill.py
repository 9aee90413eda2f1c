"""Distillation throughput and model-FLOP utilisation: paperlib's loop against a Hugging Face Trainer.

Teacher: ``random:bert-base`` (12 layers, hidden 768); student: the same model with 6 layers removed.
Random tokens, every sequence ``--length`` tokens long, batch sizes ``--batch-sizes``.  Variants:

  a_paperlib        paperlib.distill.distill: cached teacher logits, bf16 autocast, SDPA, fused AdamW
  a_paperlib_compile   the same with torch.compile (static shapes)
  a_paperlib_cudagraphs  the same with torch.compile(mode="reduce-overhead"): CUDA graphs, fewer launches
  b_trainer_bf16    transformers.Trainer, compute_loss overridden for the same KD loss, teacher forward
                    inside compute_loss (under bf16 autocast, like the student), bf16=True
  c_trainer_fp32    the same Trainer in fp32

MFU = matmul FLOPs per second / the bf16 matmul rate measured here (8192^3 torch.matmul).
Matmul FLOPs per example = student forward + backward (3x forward) + teacher forward when it runs.
Usage: ``python benchmarks/bench_distill.py`` (GPU); ``--smoke`` runs tiny sizes on any machine.
Writes ``bench_distill.json`` into ``$OUT`` (or ``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout (no install)
os.environ.setdefault("PAPERLIB_QUIET", "1")

import torch  # noqa: E402

from paperlib.distill import distill, kd_loss, teacher_logits  # noqa: E402
from paperlib.models import RANDOM_MODELS, remove_layers  # noqa: E402
from paperlib.tokens import Encoded  # noqa: E402
from paperlib.train import TrainSettings  # noqa: E402

NUM_LABELS = 4
LAST_STUDENT: dict[tuple, torch.nn.Module] = {}  # (compile, batch) -> a warmed-up student, for the profile
ALPHA, T, LR = 0.5, 2.0, 3e-5


# ---------------------------------------------------------------- FLOPs and the ceiling


def forward_matmul_flops(config, n_layers: int, length: int) -> float:
    """Matmul FLOPs of one example's forward: per token and layer 2*(4h^2 + 2*h*ffn) (QKV, output,
    FFN) + 2*2*length*h (QK^T and PV); per example the pooler (2h^2) and the classifier (2hK)."""
    h, ffn = config.hidden_size, config.intermediate_size
    per_token_layer = 2 * (4 * h * h + 2 * h * ffn) + 4 * length * h
    return n_layers * length * per_token_layer + 2 * h * h + 2 * h * NUM_LABELS


def matmul_ceiling(device, n: int = 8192, reps: int = 10) -> float:
    """Measured bf16 matmul rate in FLOP/s (mean of ``reps`` products of random n x n matrices after 3 warm-ups)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- models and data


def make_models(config_name: str, device):
    from transformers import AutoModelForSequenceClassification

    config = RANDOM_MODELS[config_name]()
    config.num_labels = NUM_LABELS
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
    student = copy.deepcopy(teacher)
    n = config.num_hidden_layers
    remove_layers(student, list(range(1, n, 2)))  # keep every other layer: 12 -> 6
    return teacher.to(device).eval(), student.cpu()


def random_data(n: int, length: int, vocab: int, seed: int = 0) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (n, length), generator=g)
    ids[:, 0] = 101  # [CLS]
    mask = torch.ones(n, length, dtype=torch.long)
    return Encoded(ids, mask, torch.randint(0, NUM_LABELS, (n,), generator=g), mask.sum(1))


# ---------------------------------------------------------------- (a) paperlib


def bench_paperlib(student0, data, cached, batch, steps, device, compile):
    """Two epochs of ``steps`` steps each: the first warms up (and compiles), the second is timed."""
    student = copy.deepcopy(student0)
    info = distill(
        student,
        data,
        cached,
        TrainSettings(epochs=2, lr=LR, batch_size=batch),
        alpha=ALPHA,
        temperature=T,
        device=device,
        compile=compile,
        progress=False,
    )
    assert info["steps"] == 2 * steps, info
    LAST_STUDENT[compile, batch] = student  # the profile reuses it: same module and shapes, no recompile
    seconds = info["epoch_seconds"][1]
    return {
        "samples_per_s": steps * batch / seconds,
        "step_ms": 1e3 * seconds / steps,
        "warmup_s": info["epoch_seconds"][0],
        "final_loss": info["final_loss"],
    }


def kernel_breakdown(student, data, cached, batch, steps, device, compile) -> dict:
    """GPU kernel time per step of one profiled epoch of paperlib's loop, by kind (after a warm-up epoch)."""
    from torch.profiler import ProfilerActivity, profile

    kw = dict(alpha=ALPHA, temperature=T, device=device, compile=compile, progress=False)
    one_epoch = TrainSettings(epochs=1, lr=LR, batch_size=batch)
    distill(student, data, cached, one_epoch, **kw)  # warm-up (compiles)
    gpu = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CUDA if gpu else ProfilerActivity.CPU]) as prof:
        distill(student, data, cached, one_epoch, **kw)
    kinds = {
        "attention": ("sdpa", "flash", "fmha", "attention", "efficient"),
        "matmul": ("gemm", "cutlass", "nvjet", "cublas"),
        "optimizer": ("adam", "foreach", "multi_tensor"),
        "fused elementwise/norm (triton)": ("triton",),
    }
    totals, top = {}, []
    for e in prof.key_averages():
        us = getattr(e, "self_device_time_total", None) if gpu else e.self_cpu_time_total
        if us is None:
            us = getattr(e, "self_cuda_time_total", 0)
        if not us:
            continue
        name = e.key.lower()
        kind = next((k for k, keys in kinds.items() if any(x in name for x in keys)), "other")
        totals[kind] = totals.get(kind, 0.0) + us / 1e3 / steps
        top.append((us / 1e3 / steps, e.key[:90]))
    top.sort(reverse=True)
    return {
        "ms_per_step_by_kind": totals,
        "kernel_ms_per_step": sum(totals.values()),
        "top_kernels_ms_per_step": top[:15],
    }


# ---------------------------------------------------------------- (b, c) Hugging Face Trainer


def bench_trainer(student0, teacher, data, batch, steps, warmup, device, bf16):
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            return {"input_ids": data.input_ids[i], "attention_mask": data.attention_mask[i], "labels": data.labels[i]}

    class KDTrainer(Trainer):
        """The usual KD recipe: the teacher runs inside compute_loss on every batch."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                t_logits = teacher(**inputs).logits
            loss = kd_loss(outputs.logits, t_logits, labels, alpha=ALPHA, temperature=T)
            return (loss, outputs) if return_outputs else loss

    class Clock(TrainerCallback):
        def __init__(self):
            self.t0 = self.t1 = None

        def on_step_end(self, args, state, control, **kw):
            if state.global_step in (warmup, warmup + steps):
                sync(device)
                if state.global_step == warmup:
                    self.t0 = time.perf_counter()
                else:
                    self.t1 = time.perf_counter()

    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=batch,
            max_steps=warmup + steps,
            learning_rate=LR,
            warmup_steps=max(1, (warmup + steps) // 10),
            weight_decay=0.01,
            bf16=bf16,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            logging_steps=10**6,
            dataloader_drop_last=True,
            use_cpu=device.type == "cpu",
            seed=0,
        )
        trainer = KDTrainer(model=copy.deepcopy(student0), args=args, train_dataset=Rows())
        trainer.add_callback(clock)
        trainer.train()
    seconds = clock.t1 - clock.t0
    return {"samples_per_s": steps * batch / seconds, "step_ms": 1e3 * seconds / steps, "optim": args.optim}


# ---------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", default="64,256")
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--steps", type=int, default=30, help="timed steps per variant (as many again warm up)")
    p.add_argument(
        "--variants", default="a_paperlib,b_trainer_bf16,c_trainer_fp32,a_paperlib_compile,a_paperlib_cudagraphs"
    )
    p.add_argument("--model", default="bert-base", help="key of paperlib.models.RANDOM_MODELS")
    p.add_argument("--smoke", action="store_true", help="tiny model, few steps: checks the script end to end")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip the kernel-time breakdown")
    p.add_argument("--budget-s", type=float, default=420, help="skip variants that would start after this many seconds")
    p.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/out")
    args = p.parse_args(argv)
    if args.smoke:
        args.model, args.length, args.steps = "tiny", 32, 3
        args.batch_sizes = "8,16" if args.batch_sizes == p.get_default("batch_sizes") else args.batch_sizes
    start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (the PyTorch default, stated)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    variants = [v.strip() for v in args.variants.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import transformers

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "model": args.model,
        "length": args.length,
        "steps": args.steps,
        "command": " ".join(sys.argv),
    }
    peak = matmul_ceiling(device, n=8192 if device.type == "cuda" else 1024, reps=10 if device.type == "cuda" else 2)
    meta["matmul_bf16_tflops"] = peak / 1e12
    print(f"bf16 matmul ceiling: {peak / 1e12:.1f} TFLOP/s on {meta['device']}", flush=True)

    teacher, student0 = make_models(args.model, device)
    cfg = teacher.config
    f_student = forward_matmul_flops(cfg, len(student0.config.kept_layers), args.length)
    f_teacher = forward_matmul_flops(cfg, cfg.num_hidden_layers, args.length)
    rows = []

    def save():
        (out / "bench_distill.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")

    for batch in batch_sizes:
        data = random_data(batch * args.steps, args.length, cfg.vocab_size)
        sync(device)
        t0 = time.perf_counter()
        cached = teacher_logits(teacher, data, batch_size=256, device=device)
        sync(device)
        cache_s = time.perf_counter() - t0
        rows.append(
            {
                "variant": "teacher_cache_pass",
                "batch": batch,
                "samples_per_s": len(data) / cache_s,
                "mfu": len(data) * f_teacher / cache_s / peak,
                "note": "one-off; includes warm-up",
            }
        )
        for variant in variants:
            if time.perf_counter() - start > args.budget_s:
                print(f"skipped {variant} at batch {batch}: over the time budget", flush=True)
                continue
            t_start = time.perf_counter()
            try:
                if variant.startswith("a_paperlib"):
                    mode = {
                        "a_paperlib": False,
                        "a_paperlib_compile": True,
                        "a_paperlib_cudagraphs": "reduce-overhead",
                    }[variant]
                    r = bench_paperlib(student0, data, cached, batch, args.steps, device, compile=mode)
                    flops = 3 * f_student
                elif variant.startswith(("b_trainer", "c_trainer")):
                    bf16 = variant.endswith("bf16")
                    if bf16 and device.type == "cpu" and not args.smoke:
                        continue
                    r = bench_trainer(student0, teacher, data, batch, args.steps // 2, args.steps // 2, device, bf16)
                    flops = 3 * f_student + f_teacher
                else:
                    raise SystemExit(f"unknown variant {variant}")
            except Exception as exc:  # keep the other numbers
                print(f"{variant} at batch {batch} failed: {type(exc).__name__}: {exc}", flush=True)
                rows.append({"variant": variant, "batch": batch, "error": f"{type(exc).__name__}: {exc}"[:500]})
                save()
                continue
            r.update(
                variant=variant,
                batch=batch,
                mfu=r["samples_per_s"] * flops / peak,
                gflop_per_example=flops / 1e9,
                wall_s=time.perf_counter() - t_start,
            )
            rows.append(r)
            print(
                f"{variant:>20} batch {batch:>4}: {r['samples_per_s']:9.0f} samples/s  MFU {100 * r['mfu']:5.1f}%  "
                f"({r['wall_s']:.0f}s)",
                flush=True,
            )
            save()
        if args.profile and time.perf_counter() - start < args.budget_s:
            gpu = device.type == "cuda"
            try:
                prof = {
                    "batch": batch,
                    "compile": gpu,
                    **kernel_breakdown(
                        LAST_STUDENT.get((gpu, batch), student0), data, cached, batch, args.steps, device, compile=gpu
                    ),
                }
                meta.setdefault("profiles", []).append(prof)
                print(
                    f"kernel time per step at batch {batch}: {prof['kernel_ms_per_step']:.2f} ms",
                    {k: round(v, 2) for k, v in prof["ms_per_step_by_kind"].items()},
                    flush=True,
                )
            except Exception as exc:
                print(f"profile failed: {type(exc).__name__}: {exc}", flush=True)
            save()
    for batch in batch_sizes:  # speed-ups over the usual Trainer
        by = {r["variant"]: r for r in rows if r["batch"] == batch and "samples_per_s" in r}
        base = by.get("b_trainer_bf16")
        for r in by.values():
            if base and r is not base and r["variant"] != "teacher_cache_pass":
                r["x_vs_trainer_bf16"] = r["samples_per_s"] / base["samples_per_s"]
    meta["total_s"] = time.perf_counter() - start
    save()
    print(
        f"\n{meta['device']}, torch {meta['torch']}, transformers {meta['transformers']}, "
        f"length {args.length}, bf16 matmul ceiling {meta['matmul_bf16_tflops']:.0f} TFLOP/s"
    )
    print(f"{'variant':>20} {'batch':>5} {'samples/s':>10} {'step ms':>8} {'MFU %':>6} {'x Trainer bf16':>14}")
    for r in rows:
        if "samples_per_s" not in r:
            print(f"{r['variant']:>20} {r['batch']:>5}  error: {r.get('error', '')[:80]}")
            continue
        x = r.get("x_vs_trainer_bf16")
        print(
            f"{r['variant']:>20} {r['batch']:>5} {r['samples_per_s']:10.0f} {r.get('step_ms', float('nan')):8.2f} "
            f"{100 * r['mfu']:6.1f} {'' if x is None else f'{x:14.2f}'}"
        )


if __name__ == "__main__":
    main()
