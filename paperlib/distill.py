"""Knowledge distillation of pruned students from the fine-tuned teacher M_0 (SPEC 6).

Loss, per batch of B examples with student logits s, teacher logits t and labels y:

    L = alpha * T^2 * (1/B) sum_i KL(softmax(t_i/T) || softmax(s_i/T)) + (1 - alpha) * (1/B) sum_i CE(y_i, s_i)

with T = 2, alpha = 0.5 (``preset.kd_temperature``, ``preset.kd_alpha``).  The teacher is frozen, so
its logits are computed once per training example (``predict_logits``) and looked up by example
index through the training loop's ``loss_fn`` hook every epoch.  alpha = 0 is the control: the same
student and budget trained on the labels alone.  "M_0 continued" (strategy ``"M_0"``, depth 0, mode ``"ce"``) is
the compute-matched control of "pruned + retrained beats M_0": the unpruned M_0 re-trained with the students'
exact budget and the alpha = 0 loss, so that it and the students' alpha = 0 control differ only in the pruning.
Training uses the shared loop (``paperlib.train``) with ``TrainSettings.recovery``: AdamW at
``recovery_lr(preset.kd_lr, L, n_kept)`` = kd_lr * L / n_kept (a student that kept fewer layers takes larger
steps; M_0 continued: kd_lr), 10 % warm-up, ``preset.kd_epochs`` epochs, batch ``preset.batch_size``;
fused AdamW, bf16 autocast where the hardware has it (``train.precision``), SDPA attention, the encoder
layers compiled as ``train.compile_mode`` says (CUDA graphs on a GPU by default); DDP under torchrun.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import export, runfiles
from .config import DEPTH_POLICIES
from .errors import PaperlibError
from .io import read_json, read_parquet, run_lock, update_parquet, write_json
from .models import ats, count_parameters, fp32_bytes, kept_layers, remove_layers
from .train import (
    LossFn,
    TrainSettings,
    evaluate,
    init_distributed,
    is_main_process,
    predict_logits,
    progress_enabled,
    tqdm,
    train,
)

DEFAULT_STRATEGY = "Random-Forest"
CONTROL = "M_0"  # the row of M_0 continued: the unpruned model re-trained with the students' budget, alpha = 0
DEPTHS_FILE = "distill.json"  # the depths each distilled strategy was asked for and given (provenance)
MODES = ("none", "kd", "ce")  # pruned as is (alpha NaN); distilled (alpha = kd_alpha); label-only control (alpha = 0)
COLUMNS = [
    "dataset",
    "strategy",
    "depth",
    "n_layers",
    "kept",
    "mode",
    "alpha",
    "val_acc",
    "test_acc",
    "n_params",
    "bytes",
    "ats",
    "best_depth",
]
PREDICTION_COLUMNS = ["strategy", "depth", "kept", "mode", "split", "example", "pred"]
PREDICTIONS_FILE = "distill_predictions.parquet"
SAVED_MODE = export.SAVED_MODE


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    alpha: float = 0.5,
    temperature: float = 2.0,
) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(y, s), each averaged over the batch.

    Computed in float32 (the logits may come from bf16 autocast).  With alpha = 0 the teacher is not
    needed and the loss is exactly the cross-entropy."""
    s = student_logits.float()
    ce = F.cross_entropy(s, labels)
    if alpha == 0:
        return ce
    T = temperature
    log_p_student = F.log_softmax(s / T, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / T, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return alpha * T * T * kl + (1 - alpha) * ce


def kd_loss_fn(teacher_logits: torch.Tensor | None, alpha: float, temperature: float) -> LossFn:
    """The ``loss_fn`` hook for ``train``: teacher logits looked up by the batch's example indices."""
    if alpha != 0 and teacher_logits is None:
        raise PaperlibError("distillation with alpha > 0 needs the teacher's logits")

    def loss_fn(logits: torch.Tensor, batch: dict, index: torch.Tensor) -> torch.Tensor:
        t = None if alpha == 0 else teacher_logits[index.to(teacher_logits.device)]
        return kd_loss(logits, t, batch["labels"], alpha, temperature)

    return loss_fn


def teacher_logits(teacher: torch.nn.Module, data, batch_size: int = 128, device=None) -> torch.Tensor:
    """The frozen teacher's logits for every example of ``data`` (float32, in ``data``'s order), computed once.

    (``predict_logits`` runs in inference mode, so the teacher is never updated nor traced for gradients.)"""
    return predict_logits(teacher, data, batch_size, device)


def distill(
    student: torch.nn.Module,
    data,
    teacher_logits: torch.Tensor | None,
    settings: TrainSettings,
    *,
    alpha: float = 0.5,
    temperature: float = 2.0,
    device=None,
    compile: bool | str | None = None,
    progress: bool | None = None,
    desc: str = "distill",
    val_data=None,
    patience: int = 0,
    eval_batch_size: int = 128,
) -> dict:
    """Train ``student`` in place on ``data`` with the KD loss (alpha = 0: labels only) and ``settings`` (epochs,
    lr, batch, warm-up, weight decay, seed; ``TrainSettings.recovery``); return train()'s info.

    Early stopping (``patience`` > 0 and ``val_data``): validation accuracy after every epoch; training
    stops once ``patience`` epochs in a row have not beaten the best, and the best epoch's weights are
    put back.  The info then also holds 'val_acc' (the kept weights' validation accuracy), 'best_epoch'
    and 'epochs_run'.  The learning-rate schedule is the full ``settings.epochs`` one either way."""
    if teacher_logits is not None and len(teacher_logits) != len(data):
        raise PaperlibError(
            f"{len(teacher_logits)} teacher logits for {len(data)} training examples; "
            f"compute them on the same training set"
        )
    stop = (
        EarlyStopping(student, val_data, patience, eval_batch_size, device)
        if patience > 0 and val_data is not None
        else None
    )
    info = train(
        student,
        data,
        settings,
        loss_fn=kd_loss_fn(teacher_logits, alpha, temperature),
        device=device,
        progress=progress,
        compile=compile,
        desc=desc,
        on_epoch_end=stop,
    )
    if stop is not None:
        info.update(stop.restore())
    return info


class EarlyStopping:
    """``train``'s ``on_epoch_end`` hook: track validation accuracy, stop after ``patience`` epochs
    without a new best (strictly higher), remember the best weights (a copy on the model's device)."""

    def __init__(self, model: torch.nn.Module, val_data, patience: int, batch_size: int = 128, device=None):
        if patience < 1:
            raise PaperlibError(f"early-stopping patience must be at least 1 epoch, got {patience}")
        self.model, self.val_data, self.patience = model, val_data, patience
        self.batch_size, self.device = batch_size, device
        self.best, self.best_epoch, self.epochs_run, self.weights = -1.0, -1, 0, None

    def __call__(self, epoch: int) -> bool:
        acc = evaluate(self.model, self.val_data, self.batch_size, self.device)["accuracy"]
        self.epochs_run = epoch + 1
        if acc > self.best:
            self.best, self.best_epoch = acc, epoch
            self.weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return epoch - self.best_epoch >= self.patience

    def restore(self) -> dict:
        """Put the best epoch's weights back; return {'val_acc', 'best_epoch', 'epochs_run'}."""
        if self.weights is not None and self.best_epoch != self.epochs_run - 1:
            self.model.load_state_dict(self.weights)
        self.weights = None
        return {"val_acc": self.best, "best_epoch": self.best_epoch, "epochs_run": self.epochs_run}


# ---------------------------------------------------------------- the pruned curve to distil


def parse_kept(kept) -> list[int]:
    """Original layer indices from a curves.parquet ``kept`` cell, as a list (``runfiles.parse_kept``)."""
    return list(runfiles.parse_kept(kept))


def pruned_curve(curves: pd.DataFrame, strategy: str = DEFAULT_STRATEGY) -> pd.DataFrame:
    """One strategy's curve, one row per step k (its lowest seed when it has several), sorted by k."""
    have = sorted(curves["strategy"].unique().tolist())
    if strategy not in have:
        hint = " (run `paperlib fuse` first to add the fusion curves)" if strategy == DEFAULT_STRATEGY else ""
        raise PaperlibError(
            f"curves.parquet has no {strategy!r} curve{hint}; or distil another strategy with --strategy, one of {have}"
        )
    rows = curves[curves["strategy"] == strategy]
    if "seed" in rows and rows["seed"].notna().any():
        rows = rows[rows["seed"] == rows["seed"].min()]
    return rows.sort_values("step").drop_duplicates("step").reset_index(drop=True)


def best_depth(curve: pd.DataFrame) -> int:
    """k* = the step with the highest validation accuracy; ties go to the smallest k (SPEC 6)."""
    best = curve["val_acc"].max()
    return int(curve.loc[curve["val_acc"] == best, "step"].min())


def parse_depths(depths, curve: pd.DataFrame) -> list[int]:
    """The depths k to distil, sorted: a named policy or a comma list / sequence of k on the curve.

    With the curve's steps k = 1 .. K and k* = ``best_depth(curve)``:
    'all' = every k (SPEC 6); 'every_other' = k = 1, 3, 5, ... plus k*; 'three' = k*, the middle step
    (the ``K // 2 + 1``-th of the sorted steps, k = 3 of 1..5) and the deepest (k = K, one layer left);
    'best' = k* only.  ``None`` means 'all'.  Policies other than 'all' are ours, to save time."""
    steps = sorted(int(k) for k in curve["step"])
    if not steps:
        raise PaperlibError("the pruned curve has no steps to distil")
    k_star = best_depth(curve)
    if depths in (None, "all"):
        chosen = steps
    elif depths == "best":
        chosen = [k_star]
    elif depths == "every_other":
        chosen = [k for k in steps if k % 2 == 1] + [k_star]
    elif depths == "three":
        chosen = [k_star, steps[len(steps) // 2], steps[-1]]
    else:
        try:
            chosen = [int(k) for k in (str(depths).split(",") if isinstance(depths, str) else depths) if str(k).strip()]
        except ValueError:
            raise PaperlibError(
                f"--depths must be one of {', '.join(DEPTH_POLICIES)} or a comma list of integers, got {depths!r}"
            ) from None
        bad = sorted(set(chosen) - set(steps))
        if bad:
            raise PaperlibError(f"depth(s) {bad} are not on the curve; choose k in {min(steps)}..{max(steps)}")
    return sorted(set(chosen))


# ---------------------------------------------------------------- the stage


def _scored(model: torch.nn.Module, data, batch_size: int, device) -> tuple[float, np.ndarray]:
    """(accuracy exactly as ``train.evaluate``, predicted labels as int16 in ``data``'s order)."""
    pred = predict_logits(model, data, batch_size, device).argmax(-1)
    acc = float((pred == data.labels.to(pred.device)).float().mean())
    return acc, pred.to(torch.int16).cpu().numpy()


def _current(rows: list[dict], curve: pd.DataFrame, strategy: str) -> list[dict]:
    """Rows still valid for ``curve``: another strategy's, or this strategy's whose kept layers are the
    curve's at that depth (a refitted curve that now keeps other layers makes the old row stale)."""
    kept_at = {int(k): runfiles.format_kept(parse_kept(v)) for k, v in zip(curve["step"], curve["kept"])}
    return [
        r
        for r in rows
        if r["strategy"] != strategy or kept_at.get(int(r["depth"])) == runfiles.format_kept(parse_kept(r["kept"]))
    ]


def distill_run(
    run,
    depths=None,
    strategy: str = DEFAULT_STRATEGY,
    compile: bool | str | None = None,
    progress: bool | None = None,
    modes=MODES,
    verbose: bool = True,
    save_students: str = "best",
    command: str | None = None,
) -> pd.DataFrame:
    """Distil the run's M_0 into ``strategy``'s pruned student at each depth; return distill.parquet's rows.

    ``depths``: a policy of ``parse_depths`` or a list of k; None takes the preset's ``distill_depths``.
    For each depth k the student is a copy of M_0 (``run.model``, the saved ``run.folder/'model'``) with
    the layers missing from the curve's ``kept`` removed, so it inherits the fine-tuned weights.  With mode
    'ce' among ``modes``, the row of M_0 continued (``CONTROL``, depth 0) is trained too, right after k*'s rows:
    a copy of M_0 with every layer, the alpha = 0 loss and ``TrainSettings.recovery(preset, L, L)``.  Rows already
    in ``distill.parquet`` are skipped; the file is rewritten atomically after each new row.  ``distill.json``
    records the depths asked for and chosen, per strategy.

    Once the rows are done, the students' speed against M_0 goes to ``latency.parquet`` (``paperlib.latency``) and
    the KD students of ``save_students`` ('best' = k*, 'all', 'none' or a comma list of depths) are saved with a
    model card under ``students/`` (``paperlib.export``; ``command`` is the card's "how it was made", by default
    the equivalent ``paperlib distill`` command).  A KD row whose student should be saved but is not (or was
    saved for other kept layers) is trained again, so a saved model is always the one its row scores."""
    rank, world = init_distributed()
    curves_path = run.folder / "curves.parquet"
    if not curves_path.is_file():
        raise PaperlibError(f"{curves_path} is missing: run `paperlib prune` and `paperlib fuse` on this dataset first")
    curve = pruned_curve(read_parquet(curves_path), strategy)
    k_star = best_depth(curve)
    requested = run.preset.distill_depths if depths is None else depths
    chosen = parse_depths(requested, curve)
    chosen = sorted(chosen, key=lambda k: (k != k_star, k))  # k* first: the headline row lands early
    if rank == 0:
        _record_depths(run.folder, strategy, requested, chosen, k_star)
    preset, dataset = run.preset, run.splits.name
    out_path = run.folder / "distill.parquet"
    pred_path = run.folder / PREDICTIONS_FILE
    done = read_parquet(out_path) if out_path.is_file() else pd.DataFrame(columns=COLUMNS)
    preds = read_parquet(pred_path) if pred_path.is_file() else pd.DataFrame(columns=PREDICTION_COLUMNS)
    if world > 1:
        torch.distributed.barrier()  # every rank has read the same finished rows before rank 0 writes more
    rows = _current([] if done.empty else done.to_dict("records"), curve, strategy)
    have = {
        (r.strategy, int(r.depth), r.kept, r.mode)
        for r in preds.drop_duplicates(["strategy", "depth", "kept", "mode"]).itertuples()
    }
    rows = [
        r
        for r in rows
        if (r["strategy"], int(r["depth"]), runfiles.format_kept(parse_kept(r["kept"])), r["mode"]) in have
    ]
    kept_at = {int(k): parse_kept(v) for k, v in zip(curve["step"], curve["kept"])}
    saves = export.save_depths(save_students, chosen, k_star) if SAVED_MODE in modes else []
    unsaved = {(strategy, k, SAVED_MODE) for k in saves if not export.is_saved(run.folder, strategy, k, kept_at[k])}
    rows = [r for r in rows if (r["strategy"], int(r["depth"]), r["mode"]) not in unsaved]  # trained again
    finished = {(r["strategy"], int(r["depth"]), r["mode"]) for r in rows}
    keys = {(r["strategy"], int(r["depth"]), runfiles.format_kept(parse_kept(r["kept"])), r["mode"]) for r in rows}
    preds = (
        preds[[(t.strategy, int(t.depth), t.kept, t.mode) in keys for t in preds.itertuples()]] if len(preds) else preds
    )
    pred_parts = [preds] if len(preds) else []
    todo = [(strategy, k, m) for k in chosen for m in modes if (strategy, k, m) not in finished]
    if "ce" in modes and (CONTROL, 0, "ce") not in finished:  # M_0 continued, right after k*'s rows
        todo.insert(sum(k == k_star for _, k, _ in todo), (CONTROL, 0, "ce"))
    all_layers = list(kept_layers(run.model))
    device = run.device
    to_save = []  # (row, student on the CPU, test predictions), saved once the speed is measured
    cached = None
    if any(m == "kd" for _, _, m in todo):
        cached = teacher_logits(run.model, run.encoded["train"], preset.eval_batch_size, device)
    bar = tqdm(todo, desc=f"distill {dataset}", disable=not progress_enabled(progress))
    for name, k, mode in bar:
        bar.set_postfix_str(f"{mode} k={k}" if name == strategy else f"{name} continued")
        t0 = time.perf_counter()
        kept = all_layers if name == CONTROL else parse_kept(curve.loc[curve["step"] == k].iloc[0]["kept"])
        student = pruned_copy(run.model, kept).to(device)
        alpha = {"none": float("nan"), "kd": preset.kd_alpha, "ce": 0.0}[mode]  # 'none' is not trained
        if mode != "none":
            distill(
                student,
                run.encoded["train"],
                cached if mode == "kd" else None,
                TrainSettings.recovery(preset, len(all_layers), len(kept)),  # M_0 continued: lr = kd_lr
                alpha=alpha,
                temperature=preset.kd_temperature,
                device=device,
                compile=compile,
                progress=progress,
                desc=f"{mode} k={k}",
                val_data=run.encoded["val"],
                patience=preset.kd_patience,
                eval_batch_size=preset.eval_batch_size,
            )
        (val, val_pred), (test, test_pred) = (
            _scored(student, run.encoded[split], preset.eval_batch_size, device) for split in ("val", "test")
        )
        n_bytes = fp32_bytes(student)
        kept_str = runfiles.format_kept(kept)
        pred_parts += [
            pd.DataFrame(
                {
                    "strategy": name,
                    "depth": int(k),
                    "kept": kept_str,
                    "mode": mode,
                    "split": split,
                    "example": np.arange(len(pred)),
                    "pred": pred,
                }
            )
            for split, pred in (("val", val_pred), ("test", test_pred))
        ]
        rows.append(
            {
                "dataset": dataset,
                "strategy": name,
                "depth": int(k),
                "n_layers": len(kept),
                "kept": kept_str,
                "mode": mode,
                "alpha": float(alpha),
                "val_acc": val,
                "test_acc": test,
                "n_params": count_parameters(student),
                "bytes": n_bytes,
                "ats": float(ats(test, n_bytes)),
                "best_depth": bool(name == strategy and k == k_star),
            }
        )
        if rank == 0:  # predictions first: a row in distill.parquet marks the pair done; both under the run lock
            key = ["strategy", "depth", "mode"]
            update_parquet(pred_path, _tidy_predictions(pred_parts[-2:]), key, lambda df: _tidy_predictions([df]))
            update_parquet(out_path, _tidy(rows[-1:]), key, lambda df: _tidy(df.to_dict("records")))
        if verbose and rank == 0:
            print(
                f"{dataset} {name} k={k} ({len(kept)} layers) {mode}: val {val:.4f} test {test:.4f} "
                f"({time.perf_counter() - t0:.1f}s)",
                flush=True,
            )
        if mode == SAVED_MODE and (strategy, k, mode) in unsaved and rank == 0:
            to_save.append((rows[-1], student.cpu(), test_pred))
        del student
    bar.close()
    if rank == 0:
        _measure_and_save(
            run,
            rows,
            strategy,
            to_save,
            command or export.equivalent_command(run, depths, strategy, save_students),
            verbose,
        )
    return _tidy(rows)


def _measure_and_save(run, rows: list[dict], strategy: str, to_save: list, command: str, verbose: bool) -> None:
    """After the rows: ``latency.parquet`` for every depth of ``strategy`` against M_0, then the saved students."""
    from . import latency
    from .paths import display_path

    depths = {int(r["depth"]): parse_kept(r["kept"]) for r in rows if r["strategy"] == strategy}
    speed = latency.run_latency(run, depths)
    for row, student, test_pred in to_save:
        path = export.save_student(run, student, row, test_pred, speed, command)
        if verbose:
            print(
                f"saved the k={row['depth']} {row['mode']} student with its model card: {display_path(path)}",
                flush=True,
            )


def _record_depths(folder, strategy: str, requested, chosen: list[int], k_star: int) -> None:
    """Add this call's depths to ``distill.json``: per strategy, every policy asked for and the union of the
    depths they chose, and k* (what the preset's ``distill_depths`` in config.json cannot say when ``--depths``
    or notebook 05's ``DEPTHS`` overrode it)."""
    path = folder / DEPTHS_FILE
    with run_lock(folder):
        record = read_json(path) if path.is_file() else {}
        entry = record.get(strategy, {})
        policy = requested if isinstance(requested, str) else ",".join(str(k) for k in requested)
        record[strategy] = {
            "requested": sorted({*entry.get("requested", []), policy}),
            "depths": sorted({*entry.get("depths", []), *(int(k) for k in chosen)}),
            "k_star": int(k_star),
        }
        write_json(record, path)


def _tidy_predictions(parts: list[pd.DataFrame]) -> pd.DataFrame:
    df = pd.concat(parts, ignore_index=True)[PREDICTION_COLUMNS].astype(
        {"strategy": str, "depth": "int16", "kept": str, "mode": str, "split": str, "example": "int32", "pred": "int16"}
    )
    return df.sort_values(["strategy", "depth", "mode", "split", "example"], kind="stable").reset_index(drop=True)


def pruned_copy(model: torch.nn.Module, kept) -> torch.nn.Module:
    """A trainable copy of ``model`` keeping only the original layers ``kept`` (its inherited weights).

    Copied in memory from the run's M_0 (the weights ``prepare`` saved or loaded), not re-read from disk."""
    student = copy.deepcopy(model)
    removed = [i for i in kept_layers(student) if i not in kept]
    if removed:
        remove_layers(student, removed)
    student.train()
    for p in student.parameters():
        p.requires_grad_(True)
    return student


def _tidy(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["kept"] = [runfiles.format_kept(parse_kept(k)) for k in df["kept"]]
    df["mode"] = pd.Categorical(df["mode"], categories=list(MODES))
    df = df.sort_values(["strategy", "depth", "mode"]).reset_index(drop=True)
    df["mode"] = df["mode"].astype(str)
    return df.astype(
        {
            "depth": "int64",
            "n_layers": "int64",
            "n_params": "int64",
            "bytes": "int64",
            "alpha": "float64",
            "val_acc": "float64",
            "test_acc": "float64",
            "ats": "float64",
            "best_depth": "bool",
        }
    )


def distill_table(df: pd.DataFrame) -> pd.DataFrame:
    """Wide view: one row per depth, test accuracy and ATS of each mode side by side."""
    wide = df.pivot_table(
        index=["strategy", "depth", "n_layers", "best_depth"], columns="mode", values=["test_acc", "ats"], observed=True
    )
    wide.columns = [f"{v}_{m}" for v, m in wide.columns]
    return wide.reset_index()


def distill_command(
    run,
    depths=None,
    compile: bool | str | None = None,
    progress: bool | None = None,
    strategy: str = DEFAULT_STRATEGY,
    save_students: str = "best",
) -> pd.DataFrame:
    """``paperlib distill``: distil every requested depth and print the table (rank 0 only)."""
    df = distill_run(
        run, depths=depths, strategy=strategy, compile=compile, progress=progress, save_students=save_students
    )
    if is_main_process():
        print(
            f"\n{run.splits.name}: distillation of the {strategy}-pruned students "
            f"(teacher test acc {run.metrics['test_acc']:.4f}) -> {run.folder / 'distill.parquet'}"
        )
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(distill_table(df).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return df
