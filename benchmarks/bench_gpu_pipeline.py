"""Benchmark: the four stages of the nine-dataset run, in one process, against their matmul-FLOP bound (issue 23).

For each dataset (and seed): fine-tune (``experiment.prepare``: data, M_0 trained, evaluated and saved, the
TF-IDF reference), prune (``run_pruning`` with ``all,flipped``), fuse (``run_fusion``, within), distill
(``distill_run`` at ``every_other``), each timed in process (``torch.cuda.synchronize`` at its end), then the
reload of the saved M_0 that every later CLI process pays (``prepare`` on the finished folder), and once the
start of a fresh process (imports of the stages and of transformers' modeling code, CUDA initialisation); those
two are not summed into ``wall_s``.

The bound of a stage is the matmul FLOPs of every forward and backward pass it ran, at the padded widths it ran
them at, over the peak matmul rate (790 TFLOP/s bf16 on an H200; ``--peak-tflops``).  They are counted by a hook
on the model's top-level forward (it sees every call, compiled or not, and deep copies such as the students
inherit it): per call with a batch of B texts of width T through n encoder layers of hidden size h and
intermediate size f,

    linear layers  2 B T n (4 h^2 + 2 h f)   attention  4 B T^2 n h   pooler + head  2 B h (h + C)

times 3 when gradients are on (forward + backward), 1 otherwise.  Embedding lookups, norms, softmax and the
signals' statistics are not matmuls and are not counted.  (On a CPU the pruning engine starts some evaluations
part-way through the layers, so there the count is an upper bound.)

    python benchmarks/bench_gpu_pipeline.py --data-dir DATA --datasets agnews --json benchmarks/gpu_pipeline.json
    python benchmarks/bench_gpu_pipeline.py --model random:tiny --preset tiny --datasets FOLDER   # CPU smoke run

``--breakdown`` also splits each stage's seconds into parts (``PARTS``: training steps, evaluations, the signals'
calibration pass and their statistics, the TF-IDF reference, prediction and curve writes, model loads; each part's
own time, calls nested in another part counted once, the rest "other"), with a CUDA synchronisation around every
timed call; the headline stage figures come from a run without it.

``--compile`` sets ``$PAPERLIB_COMPILE`` for the run (how training steps compile their layers; auto: CUDA
graphs on a GPU).  Needs torch, transformers, scikit-learn, pandas and pyarrow only; ``random:`` models need the
MiniLM tokenizer files (the embedded package, or ``$PAPERLIB_MINILM_DIR`` pointing at a copy:
``--save-tokenizer DIR`` writes one).  The JSON (``{"date", "hardware", "command", "datasets", "seeds",
"wall_s", "stages": {name: {"s", "bound_s"}}}``, stage seconds summed over datasets and seeds) is rewritten
after every stage, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PAPERLIB_QUIET", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # a shared CPU: spinning OpenMP threads slowed small steps ~100x
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from machine import cpu_name  # noqa: E402  (benchmarks/, first on sys.path when run as a script)

STAGES = ("finetune", "prune", "fuse", "distill")
PEAK_TFLOPS = 790.0  # H200 dense bf16 matmul rate (issue 23)
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


class FlopCounter:
    """Matmul FLOPs of every forward (x3 with gradients) of the models it is attached to, by stage."""

    def __init__(self):
        self.stage, self.flops = None, {}

    def attach(self, model: torch.nn.Module) -> torch.nn.Module:
        model.register_forward_pre_hook(self._hook, with_kwargs=True)
        return model

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if self.stage is None or ids is None:
            return
        self.flops[self.stage] = self.flops.get(self.stage, 0) + forward_flops(module, *ids.shape) * (
            3 if torch.is_grad_enabled() else 1
        )


PARTS = {  # module (or module:class): {name as it is called there: part}; every caller's own binding is wrapped
    "paperlib.train": {"predict_logits": "evaluation"},
    "paperlib.pruning:Pruner": {"logits": "evaluation"},  # pruned models, some started part-way up the layers
    "paperlib.pruning": {
        "predict_logits": "evaluation",
        "train": "training",
        "write_parquet": "writes",
        "update_parquet": "writes",
        "fold_predictions": "writes",
        "merge_predictions": "writes",
    },
    "paperlib.distill": {"predict_logits": "evaluation", "train": "training"},
    "paperlib.experiment": {"train": "training", "baseline_run": "TF-IDF reference", "load_model": "model load"},
    "paperlib.signals": {"calibration_pass": "signal pass", "compute_signals": "signal statistics"},
}


class PartTimer:
    """One stage's seconds by part (``PARTS``) between ``start`` and ``stop``: a part's own time, what nested parts
    took subtracted."""

    def __init__(self):
        self.split, self._open, self._undo = None, [], []  # split: {part: s} of the stage being timed, else None

    def start(self) -> None:
        self.split = {}

    def stop(self) -> dict:
        split, self.split = self.split, None
        return split

    def install(self) -> None:
        import importlib

        for where, names in PARTS.items():
            module_name, _, cls = where.partition(":")
            module = importlib.import_module(module_name)
            module = getattr(module, cls) if cls else module
            for attr, part in names.items():
                self._undo.append((module, attr, getattr(module, attr)))
                setattr(module, attr, self._timed(getattr(module, attr), part))

    def uninstall(self) -> None:
        for module, attr, fn in reversed(self._undo):
            setattr(module, attr, fn)
        self._undo.clear()

    def _timed(self, fn, part: str):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if self.split is None:
                return fn(*args, **kwargs)
            sync()
            t0 = time.perf_counter()
            self._open.append(0.0)  # seconds of the parts nested in this call
            try:
                return fn(*args, **kwargs)
            finally:
                sync()
                total, nested = time.perf_counter() - t0, self._open.pop()
                self.split[part] = self.split.get(part, 0.0) + total - nested
                if self._open:
                    self._open[-1] += total

        return timed


def forward_flops(model: torch.nn.Module, batch: int, width: int) -> int:
    """Matmul FLOPs of one forward pass of ``model`` (its layers at this moment) on a batch x width batch."""
    from paperlib.models import get_layers

    c = model.config
    h = getattr(c, "hidden_size", None) or c.dim
    f = getattr(c, "intermediate_size", None) or c.hidden_dim
    n = len(get_layers(model))
    tokens = batch * width
    layers = n * (2 * tokens * (4 * h * h + 2 * h * f) + 4 * batch * width * width * h)
    return int(layers + 2 * batch * h * (h + c.num_labels))


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__}), {os.cpu_count()} CPU cores"
    load = os.getloadavg()[0]
    return f"{cpu_name()}, {torch.get_num_threads()} threads (torch {torch.__version__}), load avg {load:.1f}"


def run_dataset(
    dataset, args, preset, runs: Path, counter: FlopCounter, record, parts: PartTimer | None = None
) -> None:
    """The four stages (and the reload) of one dataset and seed, each timed and recorded as it ends."""
    from paperlib import experiment
    from paperlib.distill import distill_run
    from paperlib.fusion import run_fusion
    from paperlib.pruning import run_pruning

    load_model = experiment.load_model
    experiment.load_model = lambda *a, **k: (lambda mt: (counter.attach(mt[0]), mt[1]))(load_model(*a, **k))
    try:
        state = {}

        def finetune():
            state["run"] = experiment.prepare(
                dataset, args.model, preset, runs, args.data_dir, device=args.device, progress=False
            )

        def reload():
            experiment.prepare(dataset, args.model, preset, runs, args.data_dir, device=args.device, progress=False)

        steps = {
            "finetune": finetune,
            "prune": lambda: run_pruning(state["run"], args.strategies, progress=False),
            "fuse": lambda: run_fusion(state["run"], "within", runs, progress=False),
            "distill": lambda: distill_run(state["run"], depths=args.depths, progress=False, verbose=False),
            "reload": reload,
        }
        for name in [*args.stages, "reload"]:
            counter.stage = name
            if parts is not None:
                parts.start()
            sync()
            t0 = time.perf_counter()
            steps[name]()
            sync()
            seconds = time.perf_counter() - t0
            record(name, seconds, counter.flops.get(name, 0), parts.stop() if parts is not None else None)
            counter.stage = None
    finally:
        experiment.load_model = load_model


def process_start() -> float:
    """Seconds a fresh process takes to import paperlib's stages and transformers' modeling code and start
    CUDA: what every CLI stage pays before its work (``reload`` adds the model and data)."""
    import subprocess

    code = (
        "import torch, paperlib.experiment, paperlib.pruning, paperlib.distill, paperlib.fusion; "
        "from transformers import modeling_utils; torch.cuda.is_available() and torch.cuda.init()"
    )
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
    return time.perf_counter() - t0


def parts_table(breakdown: dict) -> str:
    """The stages' parts as a markdown table: seconds and share of the stage."""
    lines = ["| stage | part | s | share |", "|---|---|---|---|"]
    for stage, parts in breakdown.items():
        total = sum(parts.values())
        for part, s in sorted(parts.items(), key=lambda kv: -kv[1]):
            lines.append(f"| {stage} | {part} | {s:.1f} | {100 * s / total if total else 0:.0f} % |")
    return "\n".join(lines)


def table(stages: dict) -> str:
    """The stages as a markdown table: seconds, matmul TFLOP, the bound and seconds / bound."""
    lines = ["| stage | s | matmul TFLOP | bound s | ratio |", "|---|---|---|---|---|"]
    for name, v in stages.items():
        ratio = f"{v['s'] / v['bound_s']:.0f}x" if v["bound_s"] else "-"
        lines.append(f"| {name} | {v['s']:.1f} | {v['tflop']:.4g} | {v['bound_s']:.4g} | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data-dir", default=None, help="datasets folder (tools/pack_data.py output, or ../shared/datasets)"
    )
    ap.add_argument("--datasets", default="agnews", help="comma list of registry names or dataset folders")
    ap.add_argument("--model", default="random:bert-base")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--seeds", type=int, default=1, help="how many seeds (S .. S+N-1)")
    ap.add_argument("--strategies", default="all,flipped")
    ap.add_argument("--depths", default="every_other")
    ap.add_argument("--stages", default=",".join(STAGES), help="a prefix of finetune,prune,fuse,distill")
    ap.add_argument("--compile", default=None, help="sets $PAPERLIB_COMPILE (auto, none, cudagraphs, ...)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None, help="runs folder (default: a temporary one, deleted at the end)")
    ap.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS)
    ap.add_argument("--json", default=None, help="write the result here (issue 23's schema)")
    ap.add_argument("--breakdown", action="store_true", help="also split each stage's seconds into parts (PARTS)")
    ap.add_argument("--save-tokenizer", default=None, help="copy the MiniLM tokenizer files to this folder and exit")
    args = ap.parse_args(argv)
    if args.save_tokenizer:
        from paperlib.models import minilm_path

        Path(args.save_tokenizer).mkdir(parents=True, exist_ok=True)
        for name in TOKENIZER_FILES:
            shutil.copy(minilm_path() / name, Path(args.save_tokenizer) / name)
        print(f"tokenizer files in {args.save_tokenizer}: set PAPERLIB_MINILM_DIR to it")
        return {}
    args.stages = [s for s in args.stages.split(",") if s]
    if args.stages != list(STAGES[: len(args.stages)]):
        ap.error(f"--stages must be a prefix of {','.join(STAGES)} (each stage needs the ones before it)")
    if args.compile is not None:
        os.environ["PAPERLIB_COMPILE"] = args.compile

    from paperlib.config import get_preset
    from paperlib.train import compile_mode, default_device, precision

    device = torch.device(args.device) if args.device else default_device()
    datasets = [d for d in args.datasets.split(",") if d]
    seeds = list(range(args.seed, args.seed + args.seeds))
    counter = FlopCounter()
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "hardware": hardware(),
        "command": "python benchmarks/bench_gpu_pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "datasets": datasets,
        "seeds": seeds,
        "model": args.model,
        "preset": args.preset,
        "precision": precision(device),
        "compile": str(compile_mode(None, device)),
        "peak_tflops": args.peak_tflops,
        "wall_s": 0.0,
        "stages": {},
        "per_dataset": {},
    }
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-gpu-pipeline-"))
    t_start = time.perf_counter()

    def record(dataset, seed):
        def add(stage, seconds, flops, split=None):
            bound = flops / (args.peak_tflops * 1e12)
            if split is not None:  # the stage's parts and what they leave ("other"), summed over datasets
                mine = result.setdefault("breakdown", {}).setdefault(stage, {})
                for part, s in {**split, "other": seconds - sum(split.values())}.items():
                    mine[part] = round(mine.get(part, 0.0) + s, 3)
            for where in (result["stages"], result["per_dataset"].setdefault(f"{dataset}/seed-{seed}", {})):
                v = where.setdefault(stage, {"s": 0.0, "bound_s": 0.0, "tflop": 0.0})
                v["s"] = round(v["s"] + seconds, 3)
                v["bound_s"] = float(f"{v['bound_s'] + bound:.6g}")
                v["tflop"] = float(f"{v['tflop'] + flops / 1e12:.6g}")
            result["wall_s"] = round(sum(v["s"] for k, v in result["stages"].items() if k in STAGES), 2)
            print(f"{dataset} seed {seed} {stage}: {seconds:.1f} s, bound {bound:.4g} s", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(result, indent=2) + "\n")

        return add

    record("-", seeds[0])("process_start", process_start(), 0)
    parts = PartTimer() if args.breakdown else None
    try:
        if parts is not None:
            parts.install()
        for seed in seeds:
            preset = get_preset(args.preset, seed=seed)
            for dataset in datasets:
                run_dataset(dataset, args, preset, root, counter, record(dataset, seed), parts)
    finally:
        if parts is not None:
            parts.uninstall()
        if not args.out:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n{args.model}, preset {args.preset}, {', '.join(datasets)}, seeds {seeds}; {result['hardware']}; "
        f"precision {result['precision']}, compile {result['compile']}; four stages {result['wall_s']:.1f} s "
        f"(whole command {time.perf_counter() - t_start:.1f} s); not summed: process_start = a fresh process's imports "
        f"and CUDA start, reload = prepare() of a finished folder in this process"
    )
    print(table(result["stages"]))
    if "breakdown" in result:
        print("\nEach stage by part (its own seconds; CUDA synchronised around every timed call):")
        print(parts_table(result["breakdown"]))
    return result


if __name__ == "__main__":
    main()
