"""Benchmark: the signal pass (``paperlib.signals.compute_signals``), plain against optimised, lever by lever.

    python benchmarks/bench_signals.py                      # CPU: minilm, bbc_news at the quick preset's sizes
    python benchmarks/bench_signals.py --device cuda --no-record --out bench_signals.json
                                                            # CUDA: random:bert-base, 512 synthetic texts of 128 tokens

Each variant is one whole ``compute_signals`` call (calibration pass, MI, gradient, weight, activation and
attention signals), timed ``--repeats`` times interleaved with the others (a busy machine slows all alike),
median reported:

  plain       ``signals.PLAIN``: one gradient batch per forward, eager attention read by hooks, one
              autograd backward per batch, float64 eigen-decompositions, weight summaries recomputed
  chunk       plain + ``--chunk`` examples per forward+backward, per-batch gradients from the hooks
  sdpa+qk     plain + SDPA forward/backward, attention statistics recomputed from q and k
  sdpa+eager  plain + SDPA forward/backward, attention statistics from a second no-grad eager forward
  pca32       plain + float32 eigen-decompositions (float64 where float32 cannot resolve the spectrum)
  weights     plain + the weight summaries cached (warm, as in the pruning engine)
  optimised   ``signals.FAST`` + ``--chunk`` + cached weights: what the pruning engine runs
  chunk=C     the optimised pass at each chunk C of ``--chunks`` (how ``signals.AUTO_CHUNK`` was chosen)

Wall and CPU seconds (this process, all threads) are both reported: on a shared CPU the CPU seconds measure
the work a variant does, the wall seconds also the time other jobs held the cores.

On CUDA the table adds the matmul-FLOP bound of the pass: forward + backward (3x the forward) of every Linear
of the layers and of the attention products q k^T and P v, at the calibration set's real token counts (no
padding), plus the pooler and classifier, over ``--peak-tflops`` (H200 bf16: about 790), and each variant's
ratio to it (issue 23's goal: at most 3x), the peak GPU memory of each variant, and the host synchronisations
of one plain and one optimised pass (``torch.cuda.set_sync_debug_mode``).  A second table times the pieces of
the optimised pass.  Needs only torch, transformers, scikit-learn and pandas (plus the embedded minilm/bbc_news
packages for the CPU default; ``--synthetic`` or a ``random:`` model avoids them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("PAPERLIB_QUIET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from machine import cpu_name  # noqa: E402  (benchmarks/, first on sys.path when run as a script)
from torch import nn  # noqa: E402

from paperlib.models import get_layers  # noqa: E402
from paperlib.signals import (  # noqa: E402
    AUTO_CHUNK,
    FAST,
    PLAIN,
    SignalOptions,
    calibration_pass,
    compute_signals,
    gradient_signals,
    mutual_information_signals,
    weight_signals,
)
from paperlib.tokens import Encoded  # noqa: E402
from paperlib.train import precision  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADING = "## Signals"
NUM_LABELS = 5
LEVERS = {  # name: (options, uses --chunk, uses the weight cache)
    "plain": (PLAIN, False, False),
    "chunk": (SignalOptions(attention="eager", gradients="hooks", pca="float64"), True, False),
    "sdpa+qk": (SignalOptions(attention="qk", gradients="autograd", pca="float64"), False, False),
    "sdpa+eager": (SignalOptions(attention="eager-pass", gradients="autograd", pca="float64"), False, False),
    "pca32": (SignalOptions(attention="eager", gradients="autograd", pca="float32"), False, False),
    "weights": (PLAIN, False, True),
    "optimised": (FAST, True, True),
}


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
    """``n`` stratified bbc_news training examples (the quick preset's calibration set at its sizes)."""
    from paperlib.config import get_preset
    from paperlib.data import load_splits
    from paperlib.tokens import encode

    splits = load_splits("bbc_news", get_preset("quick", max_length=length))
    calib = splits.calibration(n)
    return encode(calib["text"].tolist(), calib["label"].to_numpy(), tokenizer, length, use_disk_cache=False)


def flop_bound(model: nn.Module, data: Encoded) -> float:
    """Matmul FLOPs of one forward + backward over ``data`` at its real token counts: 3 x the forward's
    2 x tokens x (sum of d_in d_out over the layers' Linears) + 2 x 2 T_i^2 d per layer and example (q k^T
    and P v) + the pooler and classifier on the [CLS] rows."""
    layers = get_layers(model)
    linear = sum(
        m.in_features * m.out_features for layer in layers for m in layer.modules() if isinstance(m, nn.Linear)
    )
    lengths = data.lengths.double().cpu()
    hidden = next(m for m in layers[0].modules() if isinstance(m, nn.Linear)).in_features
    head = sum(
        m.in_features * m.out_features
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and not any(m is x for layer in layers for x in layer.modules())
    )
    forward = 2 * lengths.sum() * linear + len(layers) * 4 * (lengths**2).sum() * hidden + 2 * len(lengths) * head
    return float(3 * forward)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_variant(model, data, batch_size, device, options, chunk, cache) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one ``compute_signals`` call.  On a shared CPU the CPU
    seconds measure the work done; the wall seconds also count the time other jobs held the cores."""
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0, c0 = time.perf_counter(), time.process_time()
    compute_signals(model, data, batch_size=batch_size, chunk=chunk, device=device, options=options, weight_cache=cache)
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def peak_gib(device: torch.device) -> float | None:
    """Peak GPU memory of the latest ``time_variant`` call, GiB (CUDA only)."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def time_parts(model, data, batch_size, device, chunk, repeats) -> dict[str, float]:
    """Median wall seconds of the optimised pass's pieces: the calibration pass, the MI signals under each
    PCA precision, the gradient signals and the weight signals fresh and cached (warm)."""
    pass_ = functools.partial(calibration_pass, batch_size=batch_size, chunk=chunk, device=device)

    def timed(f, *args):
        _sync(device)
        t0 = time.perf_counter()
        out = f(*args)
        _sync(device)
        return time.perf_counter() - t0, out

    cache: dict = {}
    weight_signals(model, cache)
    parts: dict[str, list[float]] = {}
    for _ in range(repeats):
        s, stats = timed(pass_, model, data)
        pieces = {
            "calibration pass": s,
            "MI signals, float64 PCA": timed(mutual_information_signals, stats, 0, "float64")[0],
            "MI signals, float32 PCA": timed(mutual_information_signals, stats, 0, "float32")[0],
            "gradient signals": timed(gradient_signals, stats)[0],
            "weight signals, fresh": timed(weight_signals, model)[0],
            "weight signals, cached": timed(weight_signals, model, cache)[0],
        }
        for name, seconds in pieces.items():
            parts.setdefault(name, []).append(seconds)
    return {name: statistics.median(v) for name, v in parts.items()}


def count_syncs(model, data, batch_size, device, options, chunk, cache) -> int | None:
    """Host-device synchronisations of one pass (CUDA only), as ``torch.cuda.set_sync_debug_mode`` reports them."""
    if device.type != "cuda":
        return None
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            time_variant(model, data, batch_size, device, options, chunk, cache)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught)


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
    variants = {
        name: (opts, args.chunk if chunked else 0, uses_cache) for name, (opts, chunked, uses_cache) in LEVERS.items()
    }
    variants |= {f"chunk={c}": (FAST, c, True) for c in args.chunks if c != args.chunk}
    caches = {name: ({} if uses_cache else None) for name, (_, _, uses_cache) in variants.items()}
    for _ in range(args.warmup):  # also fills the weight caches, as the pruning engine's first pass does
        for name, (opts, chunk, _) in variants.items():
            time_variant(model, data, args.batch_size, device, opts, chunk, caches[name])
    seconds, peak = {name: [] for name in variants}, {}
    for _ in range(args.repeats):
        for name, (opts, chunk, _) in variants.items():
            seconds[name].append(time_variant(model, data, args.batch_size, device, opts, chunk, caches[name]))
            peak[name] = peak_gib(device)
    bound = flop_bound(model, data) / (args.peak_tflops * 1e12) if device.type == "cuda" else None
    rows = []
    plain = statistics.median(w for w, _ in seconds["plain"])
    plain_cpu = statistics.median(c for _, c in seconds["plain"])
    for name, (opts, chunk, _) in variants.items():
        s, cpu = statistics.median(w for w, _ in seconds[name]), statistics.median(c for _, c in seconds[name])
        effective = chunk if chunk > 0 else (AUTO_CHUNK.get(device.type, 0) if opts.gradients == "hooks" else 0)
        rows.append(
            {
                "variant": name,
                "chunk": effective or args.batch_size,
                "s": s,
                "cpu_s": cpu,
                "x_plain": plain / s,
                "x_plain_cpu": plain_cpu / cpu,
                "bound_ratio": s / bound if bound else None,
                "peak_gib": peak[name],
            }
        )
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "hardware": hardware(device),
        "precision": precision(device),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "model": args.model,
        "data": source,
        "n": args.n,
        "length": args.length,
        "tokens": int(data.lengths.sum()),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "bound_s": bound,
        "peak_tflops": args.peak_tflops,
        "syncs": {
            "plain": count_syncs(model, data, args.batch_size, device, PLAIN, 0, None),
            "optimised": count_syncs(model, data, args.batch_size, device, FAST, args.chunk, caches["optimised"]),
        },
        "rows": rows,
        "parts_s": time_parts(model, data, args.batch_size, device, args.chunk, args.repeats),
    }


def table(result: dict) -> str:
    load = f", load avg {result['load_average']:.1f}" if result.get("load_average") is not None else ""
    bound = result["bound_s"]
    lines = [
        f"{result['date']}, {result['hardware']}{load}, {result['precision']}: `{result['command']}`; "
        f"{result['model']}, {result['n']} x {result['length']} {result['data']} ({result['tokens']} tokens), "
        f"gradient batch {result['batch_size']}, median of {result['repeats']}"
        + (
            f"; matmul-FLOP bound {bound * 1e3:.1f} ms at {result['peak_tflops']:.0f} TFLOP/s"
            f"; host syncs per pass: plain {result['syncs']['plain']}, optimised {result['syncs']['optimised']}"
            if bound
            else ""
        ),
        "",
        "| variant | examples per forward | wall s | plain / variant (wall) | CPU s | plain / variant (CPU) "
        "| variant / bound | peak GiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        ratio = f"{r['bound_ratio']:.1f}x" if r["bound_ratio"] else "-"
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-"
        lines.append(
            f"| {r['variant']} | {r['chunk']} | {r['s']:.3f} | {r['x_plain']:.2f} | {r['cpu_s']:.2f} "
            f"| {r['x_plain_cpu']:.2f} | {ratio} | {peak} |"
        )
    lines += ["", "| piece of the optimised pass | wall s |", "|---|---|"]
    lines += [f"| {name} | {s:.4f} |" for name, s in result["parts_s"].items()]
    return "\n".join(lines)


def append_results(result: dict, path: Path = RESULTS) -> None:
    """Add this run's block to the "Signals" section of RESULTS.md, leaving other sections untouched."""
    from paperlib.io import atomic_path

    text = path.read_text() if path.is_file() else "# Benchmark results\n"
    lines = text.rstrip("\n").split("\n")
    block = ["", *table(result).split("\n")]
    if HEADING not in lines:
        lines += ["", HEADING, *block]
    else:
        start = lines.index(HEADING)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        while end > start and not lines[end - 1].strip():
            end -= 1
        lines[end:end] = block
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    from paperlib.config import get_preset

    quick = get_preset("quick")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--model", default=None, help="default: minilm on CPU, random:bert-base on CUDA")
    p.add_argument("--n", type=int, default=None, help=f"calibration examples (default {quick.n_calib} CPU, 512 CUDA)")
    p.add_argument("--length", type=int, default=None, help=f"max tokens (default {quick.max_length} CPU, 128 CUDA)")
    p.add_argument("--batch-size", type=int, default=quick.batch_size, help="the gradient batch")
    p.add_argument(
        "--chunk", type=int, default=None, help="examples per forward in 'chunk' and 'optimised' (default: n)"
    )
    p.add_argument("--chunks", type=int, nargs="*", default=None, help="more chunks for the optimised pass")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--peak-tflops", type=float, default=790.0, help="matmul peak for the bound (H200 bf16: 790)")
    p.add_argument("--synthetic", action="store_true", help="synthetic token ids even when a tokenizer is available")
    p.add_argument("--out", default=None, help="also write the result as JSON here")
    p.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.model = args.model or ("random:bert-base" if cuda else quick.model)
    args.n = args.n or (512 if cuda else quick.n_calib)
    args.length = args.length or (128 if cuda else quick.max_length)
    args.chunk = args.chunk or args.n
    if args.chunks is None:
        args.chunks = [args.batch_size * 2**i for i in range(8) if args.batch_size * 2**i < args.n]
    result = run(args)
    print(table(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_record:
        append_results(result)


if __name__ == "__main__":
    main()
