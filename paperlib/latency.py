"""Measured speed of the pruned students against M_0 (issue 22): batch-1 latency on CPU, batched throughput on GPU.

Every architecture (M_0 = depth 0, and each distilled depth k) runs on the same inputs in the same process.
Timing depends on the shapes, not on the trained weights, so each student is M_0 run without the layers it
removed (``models.layers_removed``: nothing is copied).  The architectures take turns forward by forward
(round r runs every one of them on input r), so a change of load on the machine hits them alike.

- CPU, batch 1: each of ``n_inputs`` test texts at its own length (no padding: one request as a deployed
  model sees it), fp32, ``torch.get_num_threads()`` threads; ``warmup`` untimed rounds, then ``repeats``
  timed ones.  median_ms = the median forward time; throughput = 1000 / median_ms examples per second.
- GPU (where the run's device is CUDA): batches of ``batch`` test texts padded to max_length, under the run's
  precision (``train.autocast``), timed between ``torch.cuda.synchronize`` calls; throughput =
  batch * 1000 / median_ms examples per second.
- speedup = median_ms(M_0) / median_ms on the same device and batch; layer_ratio = L / n_layers, what the
  speed-up would be if the layers were all of the time (the embeddings and the head do not shrink).

``latency.parquet`` (SPEC 9): dataset, depth, n_layers, kept, device, precision, threads, batch, tokens (mean
tokens per input), repeats, median_ms, throughput, speedup, layer_ratio."""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from .io import read_parquet, write_parquet
from .models import kept_layers, layers_removed

LATENCY_FILE = "latency.parquet"
COLUMNS = [
    "dataset",
    "depth",
    "n_layers",
    "kept",
    "device",
    "precision",
    "threads",
    "batch",
    "tokens",
    "repeats",
    "median_ms",
    "throughput",
    "speedup",
    "layer_ratio",
]
# under a second on the quick CPU job when the machine is idle (MiniLM at 32 tokens: 4 architectures x 23 rounds)
CPU_REPEATS, GPU_REPEATS, WARMUP, N_INPUTS = 20, 20, 3, 8


def _format(kept) -> str:
    return ",".join(str(int(i)) for i in kept)


def _forward_times(model, architectures: dict[int, list[int]], inputs: list[dict], repeats: int, warmup: int, sync):
    """{depth: [ms per forward]}: round r runs every architecture on ``inputs[r % len(inputs)]``."""
    times = {depth: [] for depth in architectures}
    every = kept_layers(model)
    with torch.inference_mode():
        for r in range(warmup + repeats):
            batch = inputs[r % len(inputs)]
            for depth, kept in architectures.items():
                removed = [i for i in every if i not in kept]
                with layers_removed(model, removed) if removed else contextlib.nullcontext():
                    sync()
                    t0 = time.perf_counter()
                    model(**batch)
                    sync()
                    if r >= warmup:
                        times[depth].append(1000 * (time.perf_counter() - t0))
    return times


def measure(
    model: torch.nn.Module,
    data,
    architectures: dict[int, list[int]],
    device="cpu",
    batch: int = 1,
    repeats: int | None = None,
    warmup: int = WARMUP,
    n_inputs: int = N_INPUTS,
) -> pd.DataFrame:
    """Time ``model`` (M_0) and each architecture ``{depth: kept original layers}`` on ``data``'s first texts.

    ``device`` 'cpu' (fp32, batch 1 unless ``batch`` says otherwise; each input trimmed to its own length)
    or a CUDA device (batches of ``batch`` padded texts, the precision policy's autocast).  Depth 0 (M_0,
    every layer) is always measured, since it is what ``speedup`` divides by.  ``model`` is used as is on
    CUDA and copied to the CPU for CPU timing when it lives elsewhere; it is left as it was."""
    from .train import autocast, precision

    device = torch.device(device)
    L = len(kept_layers(model))
    architectures = {0: kept_layers(model), **{int(k): list(v) for k, v in architectures.items() if int(k) != 0}}
    on_device = next(model.parameters()).device
    net = model if on_device == device else copy.deepcopy(model).to(device)
    was_training = net.training
    net.eval()
    cuda = device.type == "cuda"
    repeats = repeats or (GPU_REPEATS if cuda else CPU_REPEATS)
    inputs, tokens = [], []
    for start in range(0, n_inputs * batch, batch):
        idx = torch.arange(start, start + batch) % len(data)
        ids, mask = data.input_ids[idx], data.attention_mask[idx]
        if not cuda:  # one request as it comes: no padding beyond the longest text of the batch
            width = int(mask.sum(1).max())
            ids, mask = ids[:, :width], mask[:, :width]
        inputs.append({"input_ids": ids.to(device), "attention_mask": mask.to(device)})
        tokens.append(float(mask.sum(1).float().mean()))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with autocast(device) if cuda else torch.autocast("cpu", enabled=False):
        times = _forward_times(net, architectures, inputs, repeats, warmup, sync)
    net.train(was_training)
    if net is not model:
        del net
    median = {depth: statistics.median(t) for depth, t in times.items()}
    rows = [
        {
            "depth": depth,
            "n_layers": len(kept),
            "kept": _format(kept),
            "device": device.type,
            "precision": precision(device) if cuda else "fp32",
            "threads": torch.get_num_threads(),
            "batch": batch,
            "tokens": sum(tokens) / len(tokens),
            "repeats": repeats,
            "median_ms": median[depth],
            "throughput": batch * 1000 / median[depth],
            "speedup": median[0] / median[depth],
            "layer_ratio": L / len(kept),
        }
        for depth, kept in sorted(architectures.items())
    ]
    return pd.DataFrame(rows)


def run_latency(run, architectures: dict[int, list[int]], force: bool = False, **options) -> pd.DataFrame:
    """Measure a run folder's students ``{depth: kept}`` against its M_0 and write ``latency.parquet``.

    CPU batch 1 always; GPU batches of ``preset.eval_batch_size`` too where the run's device is CUDA.  A
    rerun whose file already holds exactly these architectures reads it back; any other set is measured
    again as a whole, so the rows of one file always come from one process."""
    path = Path(run.folder) / LATENCY_FILE
    wanted = {_format(kept_layers(run.model))} | {_format(v) for v in architectures.values()}
    if path.is_file() and not force:
        old = read_parquet(path)
        if set(old["kept"]) == wanted:
            return old
    devices = [("cpu", 1)] + ([(run.device, run.preset.eval_batch_size)] if run.device.type == "cuda" else [])
    frames = [
        measure(run.model, run.encoded["test"], architectures, device, batch, **options) for device, batch in devices
    ]
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "dataset", run.splits.name)
    df = df[COLUMNS]
    write_parquet(df, path)
    return df


def read_latency(folder) -> pd.DataFrame:
    """A run folder's ``latency.parquet`` (empty with the columns when it was not measured).

    To join it onto per-depth rows: ``on=["dataset", "depth"]`` (and ``kept`` where several strategies were
    distilled), one device at a time (``device == "cpu"``: batch-1 latency; ``"cuda"``: throughput)."""
    path = Path(folder) / LATENCY_FILE
    return read_parquet(path) if path.is_file() else pd.DataFrame(columns=COLUMNS)
