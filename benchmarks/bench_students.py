"""Benchmark: how much faster the distilled students answer than M_0 (issue 22), for one run folder.

For M_0 and every depth in the run's ``distill.parquet`` (one strategy, Random-Forest by default), the
student's architecture (M_0 without the layers it removed; timing does not depend on the weights) is timed
with ``paperlib.latency.measure``, every architecture on the same texts in this one process, taking turns:

- CPU (default): batch 1, each test text at its own length (at most max_length tokens), fp32, ``--threads``
  (default: torch's), the median of ``--repeats`` forwards after a warm-up;
- ``--device cuda``: batches of ``--batch`` (default: the preset's eval_batch_size) padded texts under the
  precision policy (bf16 on GPUs), throughput in texts per second.

    python benchmarks/bench_students.py runs/quick/bbc_news
    python benchmarks/bench_students.py results/minilm-paper/agnews --model minilm --data-dir ../shared/datasets
    python benchmarks/bench_students.py results/mpnet-paper/agnews --model random:mpnet-base --synthetic --device cuda

The model is the run's saved M_0 (``model/``) or, for a folder without one (the committed reference runs),
``--model`` (weights do not change the time; the shapes must be the run's).  The texts are the run's test split
(``--data-dir`` as for the run), or with ``--synthetic`` random token ids of max_length tokens.  Prints a
markdown table (with date, hardware, load and command) and writes it as JSON to ``--out`` if given."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

os.environ.setdefault("PAPERLIB_QUIET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from machine import cpu_name  # noqa: E402

from paperlib.config import Preset  # noqa: E402
from paperlib.data import load_splits  # noqa: E402
from paperlib.io import read_json, read_parquet  # noqa: E402
from paperlib.latency import measure  # noqa: E402
from paperlib.models import load_model  # noqa: E402
from paperlib.runfiles import parse_kept  # noqa: E402
from paperlib.tokens import Encoded, encode  # noqa: E402


def texts(folder: Path, tokenizer, preset, args) -> Encoded:
    n = args.n_inputs * (1 if args.device == "cpu" else (args.batch or preset.eval_batch_size))
    if args.synthetic:
        ids = torch.randint(
            1000, tokenizer.vocab_size, (n, preset.max_length), generator=torch.Generator().manual_seed(0)
        )
        ones = torch.ones_like(ids)
        return Encoded(ids, ones, torch.zeros(n, dtype=torch.long), ones.sum(1))
    config = read_json(folder / "config.json")
    splits = load_splits(config["dataset_arg"], preset, args.data_dir)
    test = splits.test.head(n)
    return encode(test["text"].astype(str).tolist(), test["label"].tolist(), tokenizer, preset.max_length, False)


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a run folder holding config.json, metrics.json and distill.parquet")
    p.add_argument("--strategy", default="Random-Forest", help="whose distilled depths to time")
    p.add_argument("--model", default=None, help="model to time when the folder has no model/ (e.g. minilm)")
    p.add_argument("--data-dir", default=None, help="local data folder for the run's test texts")
    p.add_argument("--synthetic", action="store_true", help="random token ids of max_length tokens instead")
    p.add_argument("--device", default="cpu", help="cpu (batch 1) or cuda (batched throughput)")
    p.add_argument("--batch", type=int, default=None, help="batch size on the GPU (default: the preset's eval batch)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=100, help="timed rounds per architecture")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--n-inputs", type=int, default=16, help="distinct texts (batches on the GPU) cycled through")
    p.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = args.run.resolve()
    config, metrics = read_json(folder / "config.json"), read_json(folder / "metrics.json")
    known = {f.name for f in dataclasses.fields(Preset)}
    saved = {k: v for k, v in config["preset"].items() if k in known}
    preset = Preset(**{**saved, "datasets": tuple(saved["datasets"])})
    name = str(folder / "model") if (folder / "model").is_dir() else args.model
    if name is None:
        p.error(f"{folder} has no model/: pass --model (e.g. minilm, random:mpnet-base) with the run's shapes")
    model, tokenizer = load_model(name, class_names=config["class_names"] if name == args.model else None)
    if len(model.config.kept_layers) != metrics["n_layers"]:
        p.error(f"--model {name} has {len(model.config.kept_layers)} layers, the run's M_0 {metrics['n_layers']}")
    distill = read_parquet(folder / "distill.parquet")
    rows = distill[distill["strategy"] == args.strategy].drop_duplicates("depth")
    architectures = {int(r.depth): parse_kept(r.kept) for r in rows.itertuples()}
    device = torch.device(args.device)
    model.to(device)
    data = texts(folder, tokenizer, preset, args)
    batch = 1 if device.type == "cpu" else (args.batch or preset.eval_batch_size)
    df = measure(model, data, architectures, device, batch, args.repeats, args.warmup, args.n_inputs)
    df.insert(0, "dataset", config["dataset"])
    hardware = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{cpu_name()}, {torch.get_num_threads()} threads"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    command = "python benchmarks/bench_students.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    print(f"{dt.date.today().isoformat()} | {hardware} | load average {load:.2f} on {os.cpu_count()} cores")
    print(f"torch {torch.__version__}, python {platform.python_version()} | `{command}`")
    print(
        f"model {config['model']} ({metrics['n_layers']} layers), {config['dataset']}, max_length {preset.max_length}"
    )
    shown = df[["depth", "n_layers", "kept", "batch", "tokens", "median_ms", "throughput", "speedup", "layer_ratio"]]
    print("| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns))
    for row in shown.itertuples(index=False):
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row) + " |")
    if args.out:
        record = {"date": dt.date.today().isoformat(), "hardware": hardware, "load": load, "command": command}
        args.out.write_text(json.dumps({**record, "rows": df.to_dict("records")}, indent=2) + "\n")
    return df


if __name__ == "__main__":
    main()
