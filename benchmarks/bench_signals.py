"""Benchmark: the signal calibration pass against one fine-tuning pass over the same examples.

Goal (the issue): ``compute_signals`` costs at most 2x a training step's forward+backward over the
same examples and batch size.  The training step follows ``paperlib.train`` semantics: train mode,
fused AdamW, the precision policy of ``paperlib.train`` (bf16 autocast on CUDA and on CPUs with bf16
arithmetic), SDPA attention, length-grouped shuffled batches.

    python benchmarks/bench_signals.py                      # CPU: minilm, 128 bbc_news examples, length 64
    python benchmarks/bench_signals.py --device cuda --out bench_signals.json
                                                            # CUDA: random:bert-base, 512 synthetic examples, length 128

Where the policy picks bf16 the signal pass is timed both under bf16 autocast (compute_signals'
default there) and in fp32.  Needs only torch, transformers, scikit-learn and pandas (plus the embedded minilm/bbc_news
packages for the CPU default; ``--synthetic`` or a ``random:`` model avoids them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("PAPERLIB_QUIET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from machine import cpu_name  # noqa: E402  (benchmarks/, first on sys.path when run as a script)

from paperlib.data import Encoded, length_batches  # noqa: E402
from paperlib.signals import compute_signals  # noqa: E402
from paperlib.train import autocast as train_autocast  # noqa: E402
from paperlib.train import precision

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADING = "## Signals"
NUM_LABELS = 5


def build_model(name: str):
    """(model, tokenizer or None).  ``random:<cfg>`` is built from its config alone (no tokenizer
    package needed), so the CUDA run needs nothing but transformers."""
    from transformers import AutoModelForSequenceClassification

    if name.startswith("random:"):
        from paperlib.models import RANDOM_MODELS

        config = RANDOM_MODELS[name.split(":", 1)[1]]()
        config.num_labels = NUM_LABELS
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
        model.config.kept_layers = list(range(model.config.num_hidden_layers))
        return model, None
    from paperlib.models import load_model

    return load_model(name, num_labels=NUM_LABELS)


def synthetic(n: int, length: int, vocab: int, seed: int = 0) -> Encoded:
    """Random token ids with lengths uniform in [length/2, length] and random labels."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(length // 2, length + 1, (n,), generator=g)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    ids = torch.randint(1000, vocab, (n, length), generator=g) * mask
    ids[:, 0] = 101  # [CLS]
    return Encoded(ids, mask, torch.randint(0, NUM_LABELS, (n,), generator=g), lengths)


def real_calibration(tokenizer, n: int, length: int) -> Encoded:
    """``n`` stratified bbc_news training examples (the quick preset's calibration set)."""
    from paperlib.config import get_preset
    from paperlib.data import encode, load_splits

    splits = load_splits("bbc_news", get_preset("quick", max_length=length))
    calib = splits.calibration(n)
    return encode(calib["text"].tolist(), calib["label"].to_numpy(), tokenizer, length, use_disk_cache=False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(model, data: Encoded, batch_size: int, device: torch.device, seed: int) -> tuple[float, float]:
    """(seconds of forward+backward, seconds of forward+backward+optimizer step) for one pass over ``data``."""
    model.train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-5,
        fused=device.type in ("cuda", "cpu"),
    )
    autocast = train_autocast(device)
    fwd_bwd = step = 0.0
    batches = [
        {k: v.to(device) for k, v in b.items()}  # gathered up front, as paperlib.train does
        for _, b in length_batches(data.to("cpu"), batch_size, shuffle=True, seed=seed)
    ]
    for b in batches:
        _sync(device)
        t0 = time.perf_counter()
        with autocast:
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        loss = F.cross_entropy(logits.float(), b["labels"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _sync(device)
        t1 = time.perf_counter()
        opt.step()
        _sync(device)
        t2 = time.perf_counter()
        fwd_bwd += t1 - t0
        step += t2 - t0
    opt.zero_grad(set_to_none=True)
    model.eval()
    return fwd_bwd, step


def time_signals(model, data: Encoded, batch_size: int, device: torch.device, autocast: bool) -> float:
    _sync(device)
    t0 = time.perf_counter()
    compute_signals(model, data, batch_size=batch_size, device=device, autocast=autocast)
    _sync(device)
    return time.perf_counter() - t0


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"{cpu_name()}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def run(args) -> dict:
    device = torch.device(args.device)
    model, tokenizer = build_model(args.model)
    model.to(device).eval()
    if tokenizer is not None and not args.synthetic:
        data, source = real_calibration(tokenizer, args.n, args.length), "bbc_news"
    else:
        data, source = synthetic(args.n, args.length, model.config.vocab_size), "synthetic ids"
    data = data.to(device)
    precisions = {"fp32": False} if precision(device) == "fp32" else {"bf16": True, "fp32": False}
    for _ in range(args.warmup):
        time_training(model, data, args.batch_size, device, seed=0)
        for autocast in precisions.values():
            time_signals(model, data, args.batch_size, device, autocast)
    fwd_bwd, step, signals = [], [], {name: [] for name in precisions}
    for r in range(args.repeats):  # interleaved, so a busy machine slows both sides alike
        a, b = time_training(model, data, args.batch_size, device, seed=r + 1)
        fwd_bwd.append(a)
        step.append(b)
        for name, autocast in precisions.items():
            signals[name].append(time_signals(model, data, args.batch_size, device, autocast))
    signals = {name: statistics.median(v) for name, v in signals.items()}
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "hardware": hardware(device),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "model": args.model,
        "data": source,
        "n": args.n,
        "length": args.length,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "train_fwd_bwd_s": statistics.median(fwd_bwd),
        "train_step_s": statistics.median(step),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "signals_s": signals,
    }
    result["ratio_signals_over_fwd_bwd"] = {k: v / result["train_fwd_bwd_s"] for k, v in signals.items()}
    return result


def table(result: dict) -> str:
    rows = [
        "| date | hardware | command | data | train fwd+bwd (s) | train step incl. AdamW (s) | signal pass (s) "
        "| ratio pass / fwd+bwd |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dtype, seconds in result["signals_s"].items():
        load = f", load avg {result['load_average']:.1f}" if result.get("load_average") is not None else ""
        rows.append(
            f"| {result['date']} | {result['hardware']}{load} | `{result['command']}` | {result['model']}, "
            f"{result['n']} x {result['length']} {result['data']}, batch {result['batch_size']} | "
            f"{result['train_fwd_bwd_s']:.3f} | {result['train_step_s']:.3f} | {seconds:.3f} ({dtype}) | "
            f"{result['ratio_signals_over_fwd_bwd'][dtype]:.2f} |"
        )
    return "\n".join(rows)


def append_results(result: dict, path: Path = RESULTS) -> None:
    """Add this run's rows to the "Signals" section of RESULTS.md, leaving other sections untouched."""
    from paperlib.io import atomic_path

    text = path.read_text() if path.is_file() else "# Benchmark results\n"
    lines = text.rstrip("\n").split("\n")
    rows = table(result).split("\n")
    if HEADING not in lines:
        note = (
            "Calibration pass (`paperlib.signals.compute_signals`: forward with hooks + backward, MI and "
            "weight signals included) against one fine-tuning pass over the same examples. Goal: ratio <= 2."
        )
        lines += ["", HEADING, "", note, ""] + rows
    else:
        start = lines.index(HEADING)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        while end > start and not lines[end - 1].strip():
            end -= 1
        lines[end:end] = rows[2:]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--model", default=None, help="default: minilm on CPU, random:bert-base on CUDA")
    p.add_argument("--n", type=int, default=None, help="calibration examples (default 128 CPU, 512 CUDA)")
    p.add_argument("--length", type=int, default=None, help="max tokens (default 64 CPU, 128 CUDA)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--synthetic", action="store_true", help="synthetic token ids even when a tokenizer is available")
    p.add_argument("--out", default=None, help="also write the result as JSON here")
    p.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.model = args.model or ("random:bert-base" if cuda else "minilm")
    args.n = args.n or (512 if cuda else 128)
    args.length = args.length or (128 if cuda else 64)
    result = run(args)
    print(table(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_record:
        append_results(result)


if __name__ == "__main__":
    main()
