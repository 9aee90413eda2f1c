"""The compressed model as a product (issue 22): a distilled student saved as a plain transformers checkpoint
with a Hugging Face model card.

``<run folder>/students/<strategy-slug>-k<k>-<mode>/`` holds ``save_pretrained``'s files, the tokenizer
(``model_max_length`` = the run's max_length, so ``truncation=True`` cuts texts where training did) and
``README.md``, a card written with ``huggingface_hub.ModelCard``: metadata (base model, dataset, library,
pipeline tag, the test accuracy as a model-index result) and a body saying which original layers the student
keeps, its test accuracy with paired 95 % bootstrap intervals against M_0 and against TF-IDF + LR, its
parameters and bytes, its measured speed (``latency.parquet``) and the command that made it.  The folder is
written atomically (``io.atomic_dir``); ``config.json``'s ``kept_layers`` tells a rerun whether it is saved.

    from transformers import pipeline
    classify = pipeline("text-classification", model="runs/quick/seed-0/bbc_news/students/random-forest-k1-kd")
    classify("Shares rose after the central bank held rates", truncation=True)"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import PaperlibError
from .io import atomic_dir, read_json, read_parquet

STUDENTS_DIR = "students"
SAVE_POLICIES = ("best", "all", "none")  # best: the KD student at k*; all: every distilled depth; none: no save
SAVED_MODE = "kd"  # the student a user deploys is the distilled one
# the embedded MiniLM is recorded by its short name or its folder name; on the hub it is this model
HUB_NAMES = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}


def check_save_students(spec: str) -> None:
    """``--save-students``: one of SAVE_POLICIES or a comma list of depths k >= 1 (checked before any work)."""
    parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    if spec in SAVE_POLICIES or (parts and all(p.isdigit() and int(p) >= 1 for p in parts)):
        return
    raise PaperlibError(
        f"--save-students must be one of {', '.join(SAVE_POLICIES)} or a comma list of depths k (e.g. 1,3), "
        f"got {spec!r}"
    )


def save_depths(spec: str, depths: list[int], k_star: int) -> list[int]:
    """The depths whose KD student is saved: 'best' = [k*] (when distilled), 'all' = ``depths``, 'none' = [],
    or a comma list, each of which must be among this call's distilled ``depths``."""
    check_save_students(spec)
    if spec == "none":
        return []
    if spec == "best":
        return [k_star] if k_star in depths else []
    if spec == "all":
        return sorted(depths)
    wanted = sorted({int(p) for p in str(spec).split(",") if p.strip()})
    missing = [k for k in wanted if k not in depths]
    if missing:
        raise PaperlibError(
            f"--save-students asks for depth(s) {missing}, which this call does not distil (depths {sorted(depths)}); "
            f"add them to --depths"
        )
    return wanted


def student_slug(strategy: str, depth: int, mode: str = SAVED_MODE) -> str:
    """'Random-Forest', 2, 'kd' -> 'random-forest-k2-kd' (a folder name; transfer suffixes become words)."""
    name = re.sub(r"[^a-z0-9]+", "-", strategy.lower()).strip("-")
    return f"{name}-k{int(depth)}-{mode}"


def student_path(folder, strategy: str, depth: int, mode: str = SAVED_MODE) -> Path:
    return Path(folder) / STUDENTS_DIR / student_slug(strategy, depth, mode)


def is_saved(folder, strategy: str, depth: int, kept, mode: str = SAVED_MODE) -> bool:
    """Whether the student of (strategy, depth, mode) is saved with exactly these kept original layers."""
    path = student_path(folder, strategy, depth, mode)
    if not (path / "config.json").is_file() or not (path / "README.md").is_file():
        return False
    saved = json.loads((path / "config.json").read_text()).get("kept_layers")
    return saved is not None and [int(i) for i in saved] == [int(i) for i in kept]


# ---------------------------------------------------------------- what the card states


def _config(run) -> dict:
    """The run folder's config.json ({} for a folder that holds none, e.g. a copy of M_0 alone)."""
    path = Path(run.folder) / "config.json"
    return read_json(path) if path.is_file() else {}


def _interval(a_correct: np.ndarray, b_correct: np.ndarray) -> dict:
    """Paired bootstrap of accuracy(a) - accuracy(b) over the same test examples (SPEC 7: 2,000 resamples)."""
    from .stats import DEFAULT_RESAMPLES, paired_bootstrap

    ci = paired_bootstrap(a_correct.astype(float), b_correct.astype(float)).iloc[0]
    return {
        "diff": float(ci["diff"]),
        "ci_low": float(ci["ci_low"]),
        "ci_high": float(ci["ci_high"]),
        "resamples": DEFAULT_RESAMPLES,
    }


def points(d: dict) -> str:
    """A difference in accuracy as the card writes it: '+1.25 points [-0.50, +3.00]'."""
    return f"{100 * d['diff']:+.2f} points [{100 * d['ci_low']:+.2f}, {100 * d['ci_high']:+.2f}]"


def m0_test_predictions(run) -> np.ndarray:
    """M_0's test predictions: predictions.parquet's M_0 rows (written by the prune stage), else computed now."""
    path = Path(run.folder) / "predictions.parquet"
    if path.is_file():
        preds = read_parquet(path)
        rows = preds[(preds["strategy"] == "M_0") & (preds["split"] == "test")].sort_values("example")
        if len(rows) == len(run.encoded["test"]):
            return rows["pred"].to_numpy()
    from .train import predict_logits

    return (
        predict_logits(run.model, run.encoded["test"], run.preset.eval_batch_size, run.device).argmax(-1).cpu().numpy()
    )


def comparisons(run, test_pred: np.ndarray) -> dict:
    """The student's test accuracy and its paired intervals against M_0 and TF-IDF + LR (when computed)."""
    from .baselines import PREDICTIONS_NAME

    labels = run.encoded["test"].labels.cpu().numpy()
    student = np.asarray(test_pred) == labels
    m0 = m0_test_predictions(run) == labels
    out = {"n_test": len(labels), "accuracy": float(student.mean()), "m0_accuracy": float(m0.mean())}
    out["vs_m0"] = _interval(student, m0)
    baseline = Path(run.folder) / PREDICTIONS_NAME
    if baseline.is_file():
        b = read_parquet(baseline).sort_values("index")
        if len(b) == len(labels) and (b["label"].to_numpy() == labels).all():
            correct = b["pred"].to_numpy() == labels
            out["baseline_accuracy"] = float(correct.mean())
            out["vs_baseline"] = _interval(student, correct)
    return out


def _speed_lines(latency: pd.DataFrame | None, kept: str) -> list[str]:
    if latency is None or latency.empty:
        return ["Not measured (no `latency.parquet` in the run folder)."]
    lines = [
        "| device | threads | batch | tokens per text | M_0 (ms) | this model (ms) | speed-up | layer ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, rows in latency.groupby(["device", "batch"], sort=False):
        m0, me = rows[rows["depth"] == 0], rows[rows["kept"] == kept]
        if m0.empty or me.empty:
            continue
        m0, me = m0.iloc[0], me.iloc[0]
        lines.append(
            f"| {me['device']} ({me['precision']}) | {me['threads']} | {me['batch']} | {me['tokens']:.1f} | "
            f"{m0['median_ms']:.2f} | {me['median_ms']:.2f} | {me['speedup']:.2f}x | {me['layer_ratio']:.2f}x |"
        )
    lines.append(
        "\nMedian time per forward pass over repeated runs after warm-up, M_0 and this model timed in the same "
        "process on the same test texts (`paperlib.latency`). The layer ratio L / n_kept is the speed-up the "
        "layers alone would give; the embeddings and the classification head do not shrink."
    )
    return lines


def model_card(run, row: dict, stats: dict, latency: pd.DataFrame | None, command: str):
    """The ``huggingface_hub.ModelCard`` of one saved student (``row``: its distill.parquet row)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from .data import REGISTRY
    from .runfiles import parse_kept

    config = _config(run)
    model = str(config.get("model", run.preset.model))
    base = None if model.startswith("random:") else HUB_NAMES.get(model, model)
    dataset = run.splits.name
    hub = REGISTRY[dataset].hub_id if dataset in REGISTRY else None
    slug = student_slug(row["strategy"], row["depth"], row["mode"])
    kept = [int(i) for i in parse_kept(row["kept"])]
    L = int(run.metrics["n_layers"])
    removed = [i for i in range(L) if i not in kept]
    data = ModelCardData(
        model_name=slug,
        base_model=base,
        datasets=[hub or dataset],
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["paperlib", "layer-pruning", "knowledge-distillation"],
        metrics=["accuracy"],
        eval_results=[
            EvalResult(
                task_type="text-classification",
                dataset_type=hub or dataset,
                dataset_name=dataset,
                dataset_split="test",
                metric_type="accuracy",
                metric_value=round(stats["accuracy"], 6),
            )
        ],
    )
    m0_bytes, m0_params = int(run.metrics["bytes"]), int(run.metrics["n_params"])
    acc = [
        "| model | test accuracy | this model minus it (95 % interval) |",
        "|---|---|---|",
        f"| this model | {stats['accuracy']:.4f} | |",
        f"| M_0 (the fine-tuned {L}-layer model) | {stats['m0_accuracy']:.4f} | {points(stats['vs_m0'])} |",
    ]
    if "vs_baseline" in stats:
        acc.append(
            f"| TF-IDF + LR (classical reference) | {stats['baseline_accuracy']:.4f} | {points(stats['vs_baseline'])} |"
        )
    body = "\n".join(
        [
            f"# {slug}",
            "",
            f"A {len(kept)}-layer text classifier for `{dataset}` ({len(run.splits.class_names)} classes), made by "
            "paperlib (the companion of *Strategic Fusion Optimizes Transformer Compression*, "
            f"[arXiv 2501.03273](https://arxiv.org/abs/2501.03273)) from `{model}` fine-tuned on the same data "
            f"(M_0, {L} layers): the {row['strategy']} strategy removed {len(removed)} whole encoder layers, then "
            f"the student was trained with knowledge distillation from M_0 (alpha = {row['alpha']:g}, T = "
            f"{run.preset.kd_temperature:g}, {run.preset.kd_epochs} epoch(s)).",
            "",
            "## Layers",
            f"Keeps the original layers {', '.join(map(str, kept))} of 0..{L - 1} (removed: "
            f"{', '.join(map(str, removed)) or 'none'}), in that order; `config.json` records them as `kept_layers`.",
            "",
            "## Accuracy",
            f"On the run's test split ({stats['n_test']} texts, never used for a choice). Intervals: paired bootstrap "
            f"over the test texts ({stats['vs_m0']['resamples']:,} resamples, numpy `default_rng(0)`, percentile "
            "95 % interval); they cover test-set noise only (one training seed).",
            "",
            *acc,
            "",
            "## Size",
            f"{int(row['n_params']):,} parameters, {int(row['bytes']):,} bytes as fp32 "
            f"({int(row['bytes']) / m0_bytes:.1%} of M_0's {m0_bytes:,} bytes, {m0_params:,} parameters); "
            "the embeddings and the head are not pruned.",
            "",
            "## Speed",
            *_speed_lines(latency, row["kept"]),
            "",
            "## Use",
            "```python",
            "from transformers import pipeline",
            'classify = pipeline("text-classification", model="path/to/this/folder")',
            'classify("some text", truncation=True)  # texts are cut at '
            + f"{run.preset.max_length} tokens, as in training",
            "```",
            f"Labels: {', '.join(f'{i} = {n}' for i, n in enumerate(run.splits.class_names))}.",
            "",
            "## How it was made",
            "```bash",
            command,
            "```",
        ]
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


def equivalent_command(run, depths, strategy: str, save: str) -> str:
    """The ``paperlib distill`` command equivalent to a call of ``distill_run`` (e.g. from notebook 05)."""
    from .paths import display_path

    config = _config(run)
    parts = [
        "paperlib distill",
        f"--dataset {config.get('dataset_arg', run.splits.name)}",
        f"--model {config.get('model', run.preset.model)}",
        f"--preset {run.preset.name}",
        f"--out {display_path(Path(run.folder).parent.parent)}",  # the runs folder above seed-<S>/<dataset>
        f"--seed {run.preset.seed}",
        f"--depths {depths if depths is not None else run.preset.distill_depths}",
        f"--strategy {strategy}",
        f"--save-students {save}",
    ]
    return " ".join(parts)


def save_student(run, student, row: dict, test_pred, latency: pd.DataFrame | None, command: str) -> Path:
    """Write ``student`` (a trained pruned copy of M_0) with its tokenizer and card; return its folder."""
    from transformers.utils import logging as hf_logging

    path = student_path(run.folder, row["strategy"], row["depth"], row["mode"])
    names = [str(n) for n in run.splits.class_names]
    student.config.id2label = dict(enumerate(names))
    student.config.label2id = {n: i for i, n in enumerate(names)}
    student.eval()
    tokenizer = copy.deepcopy(run.tokenizer)
    tokenizer.model_max_length = run.preset.max_length
    card = model_card(run, row, comparisons(run, test_pred), latency, command)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with atomic_dir(path) as tmp:
            student.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            card.save(Path(tmp) / "README.md")
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return path
