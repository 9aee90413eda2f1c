"""The sequential pruning engine (SPEC 4): one layer at a time, any strategy, results on disk (SPEC 9).

M_0 = the run's fine-tuned model.  For k = 1 .. L-1 the strategy looks at M_(k-1) (its signals, or
its validation accuracy for Oracle), names one remaining layer, that layer is removed and M_k is
evaluated on validation and test.  Nothing is chosen on test.

With ``finetune_between == 0`` (the default) M_k is a function of the set of kept original layers,
so a ``Pruner`` memoises accuracy and signals by that set: every curve starts from the same full
model, Oracle's candidates are the next steps of other curves, and a 6-layer model has only 63
distinct pruned models in all.  Variants are evaluated through ``layers_removed`` (no weight is
copied), and on CPU a sub-model starts from the stored hidden states of an earlier one with the
same first layers (``LayerInputs``; bit-identical logits).  The memo is warm-started from the run
folder's files, so a later call (e.g. fusion) re-uses what earlier curves computed.  With
``finetune_between > 0`` the memo is off and each curve trains its own deep copy after every
removal; Oracle then scores its candidates on the current re-trained model, without re-training each.

Choices SPEC leaves open (the companion's own): a curve holds k = 1 .. L-1 only (M_0 is in
metrics.json); Random replicate r = 0 .. R-1 (the ``seed`` column) of pipeline seed S draws from
``numpy.random.default_rng(1000 * S + r)`` (``random_generator``; S = 0 keeps the curves of runs before seeds),
and every other strategy is recorded with seed 0; signals are computed and stored only for strategies that read
them (single-signal, Block-Influence, fusion), not for Random, Oracle and Top-Drop.

Files (written atomically after each finished strategy; a rerun skips what is there): ``runfiles``
holds their columns, readers and writers.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .errors import PaperlibError
from .io import (
    read_parquet,
    update_parquet,
    write_parquet,
)
from .models import count_parameters, fp32_bytes, get_layers, kept_layers, layers_removed, remove_layers
from .runfiles import (
    CURVE_COLUMNS,
    CURVES_FILE,
    LABELS_FILE,
    ORIGINAL,
    SIGNAL_COLUMNS,
    SIGNALS_FILE,
    SPLITS,
    _read,
    _typed_curves,
    _typed_labels,
    _typed_predictions,
    _typed_signals,
    fold_predictions,
    format_kept,
    merge_predictions,
    parse_kept,
    prediction_rows,
    read_predictions,
)
from .strategies import REFERENCE_SIGNALS, REGISTRY, SIGNALS, Strategy, parse_strategies
from .tokens import Encoded, encode, length_batches
from .train import TrainSettings, autocast, predict_logits, progress_enabled, tqdm, train

SignalFn = Callable[..., pd.DataFrame]
LAYER_INPUT_BUDGET = 1 << 30  # bytes of stored layer inputs (CPU evaluation reuse)
SHARED_PREFIX_BUDGET = 2 << 30  # bytes of one batch's layer outputs kept while sub-models share their first layers


class _Stop(Exception):
    """Raised by a forward hook to end a forward pass once the layer it waits for has run."""


def _default_signal_fn(*args, **kwargs) -> pd.DataFrame:
    from .signals import compute_signals  # lazy: signals is a later pipeline stage

    return compute_signals(*args, **kwargs)


class LayerInputs:
    """Hidden states entering each layer of recently evaluated sub-models, to start later ones part-way.

    In a sub-model keeping layers (l_1 < ... < l_m) the input of position p depends only on
    l_1 .. l_(p-1).  A sub-model that shares its first p layers with one evaluated before can take
    that stored input and run only its remaining layers: the same tensors go through the same
    layers in the same batches, so the logits are bit-identical to a full forward pass.  Removing
    layer r from the previous step's model, or Oracle's candidates, then cost only the layers above
    r.  Kept per split and batch, on the CPU, within a byte budget (M_0's entry is never evicted)."""

    def __init__(self, full: tuple[int, ...], budget_bytes: int):
        self.full, self.budget = full, budget_bytes
        self.entries: OrderedDict[tuple[tuple[int, ...], str], list[list[torch.Tensor | None]]] = OrderedDict()

    def donor(self, kept: tuple[int, ...], split: str) -> tuple[list | None, int]:
        """(stored inputs, p): the entry sharing the longest prefix with ``kept``; at least one layer must run."""
        best, best_p = None, 0
        for other, s in self.entries:
            if s != split:
                continue
            lcp = next((i for i, (a, b) in enumerate(zip(other, kept)) if a != b), min(len(other), len(kept)))
            p = min(lcp, len(kept) - 1, len(other) - 1)
            if p > best_p:
                best, best_p = (other, s), p
        if best is None:
            return None, 0
        self.entries.move_to_end(best)
        return self.entries[best], best_p

    def store(self, kept: tuple[int, ...], split: str, inputs: list) -> None:
        self.entries[(kept, split)] = inputs
        self.entries.move_to_end((kept, split))
        while self._bytes() > self.budget:
            victim = next((k for k in self.entries if k[0] != self.full), None)
            if victim is None or victim == (kept, split):
                break
            del self.entries[victim]

    def _bytes(self) -> int:
        return sum(
            t.numel() * t.element_size()
            for inputs in self.entries.values()
            for per_batch in inputs
            for t in per_batch
            if t is not None
        )


class Pruner:
    """Evaluates and measures sub-models of one run's M_0, named by the original layers they keep.

    Caches (only while ``finetune_between == 0``, when a sub-model is a function of its kept set)
    are keyed by ``frozenset(kept)``: validation accuracy, test accuracy, signals."""

    def __init__(self, run, signal_fn: SignalFn | None = None, progress: bool | None = None, model=None):
        self.run = run
        self.model = model if model is not None else run.model
        self.signal_fn = signal_fn or _default_signal_fn
        self.progress = progress
        self.memo = run.preset.finetune_between == 0
        self.all_layers: tuple[int, ...] = tuple(kept_layers(run.model))
        # real computations (memo misses) and layer forward passes they ran, for profiling
        self.calls = {"val": 0, "test": 0, "signals": 0, "layers_run": 0}
        self._val: dict[frozenset, float] = {}
        self._test: dict[frozenset, float] = {}
        self._signals: dict[frozenset, pd.DataFrame] = {}
        # predicted labels (int16) by split and kept set; without the memo, those of the latest evaluation
        self._pred: dict[str, dict[frozenset, np.ndarray]] = {split: {} for split in SPLITS}
        self._calib: Encoded | None = None
        self._weight_cache: dict = {}  # per-layer weight summaries for the signals (the weights never change here)
        self._modules = dict(zip(self.all_layers, get_layers(run.model)))
        self.layer_inputs = LayerInputs(self.all_layers, LAYER_INPUT_BUDGET) if self.memo else None
        # test accuracies evaluated together at a stage's end (``run_pruning``): None = on CUDA (where
        # ``layer_inputs`` is not used), True/False = always/never; ``_deferred`` collects them meanwhile
        self.share_test_prefixes: bool | None = None
        self._deferred: set[frozenset] | None = None
        # sizes: M_0's totals minus the removed layers' own tensors (no copy needed)
        layers = get_layers(run.model)
        self._total = (count_parameters(run.model), fp32_bytes(run.model))
        self._layer_size = {
            orig: (count_parameters(layer), fp32_bytes(layer)) for orig, layer in zip(self.all_layers, layers)
        }

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def calibration(self) -> Encoded:
        """``n_calib`` stratified training examples, tokenised like the rest of the run (SPEC 2)."""
        if self._calib is None:
            preset = self.run.preset
            df = self.run.splits.calibration(preset.n_calib, seed=preset.seed)
            self._calib = encode(df["text"].tolist(), df["label"].to_numpy(), self.run.tokenizer, preset.max_length)
        return self._calib

    def warm_start(self, folder=None) -> int:
        """Fill the memo from the run folder's curves.parquet and signals.parquet; return how many
        entries were added.  Valid because a run folder holds one config (``prepare`` checks it) and,
        with ``finetune_between == 0``, a result is a function of the kept set (exact floats on disk)."""
        if not self.memo:
            return 0
        folder = Path(folder if folder is not None else self.run.folder)
        added = 0
        if (folder / CURVES_FILE).is_file():
            for kept, val, test in read_parquet(
                folder / CURVES_FILE, columns=["kept", "val_acc", "test_acc"]
            ).itertuples(index=False):
                key = frozenset(parse_kept(kept))
                added += key not in self._val
                self._val.setdefault(key, float(val))
                self._test.setdefault(key, float(test))
        preds = read_predictions(folder)
        if preds is not None and (folder / CURVES_FILE).is_file():
            kept_of = {
                (str(r.strategy), int(r.seed), int(r.step)): frozenset(parse_kept(r.kept))
                for r in read_parquet(folder / CURVES_FILE, columns=["strategy", "seed", "step", "kept"]).itertuples()
            }
            for (name, seed, step, split), g in preds.groupby(["strategy", "seed", "step", "split"], sort=False):
                key = frozenset(self.all_layers) if name == ORIGINAL else kept_of.get((str(name), int(seed), int(step)))
                if key is not None and split in self._pred and key not in self._pred[split]:
                    self._pred[split][key] = g.sort_values("example")["pred"].to_numpy(np.int16)
                    added += 1
        if (folder / SIGNALS_FILE).is_file():
            rows = read_parquet(folder / SIGNALS_FILE)
            for _, g in rows.groupby(["strategy", "seed", "step"], sort=False):
                key = frozenset(int(i) for i in g["layer"])
                if key not in self._signals:
                    df = g[["layer", *SIGNALS, *REFERENCE_SIGNALS]].sort_values("layer").reset_index(drop=True)
                    df.insert(1, "position", range(len(df)))
                    self._signals[key] = df.astype({"layer": "int64"})
                    added += 1
        return added

    def fork(self) -> Pruner:
        """A Pruner over a deep copy of M_0 (for ``finetune_between > 0``, where each curve trains its own)."""
        return Pruner(self.run, self.signal_fn, self.progress, model=copy.deepcopy(self.run.model))

    # ------------------------------------------------------------ sub-models
    def _key(self, kept) -> frozenset:
        key = frozenset(int(i) for i in kept)
        have = set(kept_layers(self.model))
        if not key or not key <= have:
            raise PaperlibError(
                f"kept layers {sorted(key)} must be a non-empty subset of the model's layers {sorted(have)}"
            )
        return key

    def _without(self, key: frozenset):
        """Context: the model running only the layers in ``key`` (a view, not a copy)."""
        return layers_removed(self.model, [i for i in kept_layers(self.model) if i not in key])

    def _accuracy(self, key: frozenset, split: str, cache: dict) -> float:
        if self.memo and key in cache:
            return cache[key]
        if split == "test" and self._deferred is not None:  # nothing reads test while curves are chosen
            self._deferred.add(key)
            return float("nan")
        logits = self.logits(key, split)
        labels = self.run.encoded[split].labels.to(logits.device)
        pred = logits.argmax(-1)
        acc = float((pred == labels).float().mean())  # exactly as train.evaluate
        self._pred[split][key] = pred.to(torch.int16).cpu().numpy()
        if self.memo:
            cache[key] = acc
        return acc

    def predictions(self, kept, split: str) -> np.ndarray:
        """Predicted labels (int16, in the order of ``run.encoded[split]``) of the model keeping these layers;
        without the memo, those of its latest evaluation (``evaluate`` first)."""
        key = self._key(kept)
        if key not in self._pred[split]:
            self._accuracy(key, split, {})
        return self._pred[split][key]

    @torch.inference_mode()
    def logits(self, kept, split: str) -> torch.Tensor:
        """Logits of the sub-model keeping ``kept`` on ``run.encoded[split]``, as ``train.predict_logits``
        computes them (same batches, same precision policy); on CPU started from the stored layer
        inputs of an earlier sub-model with the same first layers where there is one."""
        kept = tuple(sorted(self._key(kept)))
        if self.layer_inputs is None or self.device.type != "cpu":  # CUDA or no memo: train.predict_logits itself
            self.calls[split] += 1
            self.calls["layers_run"] += len(kept)
            with self._without(frozenset(kept)) as m:
                return predict_logits(m, self.run.encoded[split], self.run.preset.eval_batch_size, self.device)
        if kept != self.all_layers and (self.all_layers, split) not in self.layer_inputs.entries:
            self.logits(self.all_layers, split)  # M_0 first: every curve starts from it
        data = self.run.encoded[split].to(self.device)
        batches = list(length_batches(data, self.run.preset.eval_batch_size))
        donor, start = self.layer_inputs.donor(kept, split)
        inputs = [list(donor[q]) if q < start else [None] * len(batches) for q in range(len(kept))]
        current = {"batch": 0}

        def hook_at(q: int):
            def hook(module, args):
                if q == start and start > 0:  # skip kept[:start]: feed the stored input instead
                    args = (donor[q][current["batch"]], *args[1:])
                inputs[q][current["batch"]] = args[0]
                return args

            return hook

        handles = [
            self._modules[layer].register_forward_pre_hook(hook_at(q)) for q, layer in enumerate(kept) if q >= start
        ]
        out = torch.empty(len(data), self.model.config.num_labels, device=self.device)
        was_training = self.model.training
        self.model.eval()
        try:
            with self._without(frozenset(kept[start:])) as m, autocast(self.device):
                for b, (index, batch) in enumerate(batches):
                    current["batch"] = b
                    out[index.to(self.device)] = m(
                        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                    ).logits.float()
        finally:
            for h in handles:
                h.remove()
            self.model.train(was_training)
        self.calls[split] += 1
        self.calls["layers_run"] += len(kept) - start
        self.layer_inputs.store(kept, split, inputs)
        return out

    def _run_layers(self, layers: tuple[int, ...], hidden, batch: dict, capture: bool):
        """One forward of the sub-model keeping ``layers``, its first layer fed ``hidden`` (None: the embeddings,
        as always); ``capture``: stop after the last of them and return its output, else the logits."""
        first, last = self._modules[layers[0]], self._modules[layers[-1]]
        handles, got = [], {}
        if hidden is not None:
            handles.append(first.register_forward_pre_hook(lambda module, args: (hidden, *args[1:])))
        if capture:

            def grab(module, args, output):
                got["hidden"] = output[0] if isinstance(output, tuple) else output
                raise _Stop

            handles.append(last.register_forward_hook(grab))
        self.calls["layers_run"] += len(layers)
        try:
            with self._without(frozenset(layers)) as m, autocast(self.device):
                return m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        except _Stop:
            return got["hidden"]
        finally:
            for h in handles:
                h.remove()

    @torch.inference_mode()
    def logits_many(self, keys, split: str, budget_bytes: int = SHARED_PREFIX_BUDGET) -> dict[tuple, torch.Tensor]:
        """Logits of several sub-models on ``split``, each layer run once per distinct prefix of kept layers.

        In a sub-model keeping l_1 < ... < l_m the input of l_p depends only on l_1 .. l_(p-1), so sub-models
        with the same first kept layers share their outputs.  Batch by batch (the batches of
        ``train.predict_logits``), the sorted kept tuples are taken in lexicographic order, a depth-first walk
        of their prefix tree: a prefix that the next sub-model shares is run one layer at a time and its
        output kept (within ``budget_bytes``; the outputs of prefixes no later sub-model can share are
        dropped), the rest of a sub-model runs in one forward from its longest kept prefix.  The same layers
        see the same tensors in the same batches as a forward of each sub-model alone, so the logits are the
        same.  Returns {sorted kept tuple: logits (float32, in ``run.encoded[split]``'s order)}."""
        models = sorted({tuple(sorted(self._key(k))) for k in keys})
        data = self.run.encoded[split].to(self.device)
        out = {m: torch.empty(len(data), self.model.config.num_labels, device=self.device) for m in models}
        was_training = self.model.training
        self.model.eval()
        try:
            for index, batch in length_batches(data, self.run.preset.eval_batch_size):
                index = index.to(self.device)
                kept: dict[tuple, torch.Tensor] = {}
                for i, m in enumerate(models):
                    kept = {p: h for p, h in kept.items() if m[: len(p)] == p}  # no later model shares the rest
                    start = max((len(p) for p in kept if len(p) < len(m)), default=0)
                    nxt = models[i + 1] if i + 1 < len(models) else ()
                    shared = next((j for j, (a, b) in enumerate(zip(m, nxt)) if a != b), min(len(m), len(nxt)))
                    share = min(shared, len(nxt) - 1, len(m) - 1)  # the next model reads the output of m[:share]
                    hidden = kept[m[:start]] if start else None
                    for p in range(start + 1, share + 1):
                        hidden = self._run_layers(m[p - 1 : p], hidden, batch, capture=True)
                        if (
                            sum(h.numel() * h.element_size() for h in kept.values())
                            + hidden.numel() * hidden.element_size()
                            <= budget_bytes
                        ):
                            kept[m[:p]] = hidden
                    start = max(start, share)
                    out[m][index] = self._run_layers(m[start:], hidden, batch, capture=False)
        finally:
            self.model.train(was_training)
        self.calls[split] += len(models)
        return out

    def prefetch_test(self, keys) -> int:
        """Evaluate the sub-models among ``keys`` not known yet on the test split together (``logits_many``),
        keeping accuracy and predictions as ``_accuracy`` does; returns how many were evaluated.  (Validation
        is read while curves are chosen, one sub-model at a time, so only test evaluations can wait.)"""
        todo = sorted({self._key(k) for k in keys} - set(self._test), key=sorted)
        if not todo:
            return 0
        labels = self.run.encoded["test"].labels.to(self.device)
        for kept, logits in self.logits_many(todo, "test").items():
            key, pred = frozenset(kept), logits.argmax(-1)
            self._test[key] = float((pred == labels).float().mean())  # exactly as train.evaluate
            self._pred["test"][key] = pred.to(torch.int16).cpu().numpy()
        return len(todo)

    def val_accuracy(self, kept) -> float:
        return self._accuracy(self._key(kept), "val", self._val)

    def test_accuracy(self, kept) -> float:
        return self._accuracy(self._key(kept), "test", self._test)

    def evaluate(self, kept) -> tuple[float, float]:
        """(val_acc, test_acc) of the model keeping these original layers, via ``layers_removed``."""
        return self.val_accuracy(kept), self.test_accuracy(kept)

    def size(self, kept) -> tuple[int, int]:
        """(n_params, fp32 bytes) of the model keeping these layers: M_0's minus the removed layers'."""
        key = frozenset(int(i) for i in kept)
        removed = [self._layer_size[i] for i in self.all_layers if i not in key]
        return (self._total[0] - sum(r[0] for r in removed), self._total[1] - sum(r[1] for r in removed))

    def signals(self, kept) -> pd.DataFrame:
        """The signals of the model keeping these layers: one row per layer ('layer' = original index)."""
        key = self._key(kept)
        if self.memo and key in self._signals:
            return self._signals[key]
        preset = self.run.preset
        extra = {}
        if self.signal_fn is _default_signal_fn:  # speed settings only; the values do not depend on them
            extra = {"chunk": preset.signal_chunk, "weight_cache": self._weight_cache if self.memo else None}
        with self._without(key) as m:
            df = self.signal_fn(
                m,
                self.calibration,
                batch_size=preset.batch_size,
                device=self.device,
                seed=preset.seed,
                progress=False,
                **extra,
            )
        self.calls["signals"] += 1
        if sorted(df["layer"].astype(int).tolist()) != sorted(key):
            raise PaperlibError(
                f"signal function returned layers {sorted(df['layer'].tolist())} for a model "
                f"keeping {sorted(key)} (it must give one row per remaining layer)"
            )
        df = df.sort_values("layer").reset_index(drop=True)
        if self.memo:
            self._signals[key] = df
        return df

    # ------------------------------------------------------------ choosing
    def oracle_choice(self, kept) -> int:
        """Greedy oracle: the remaining layer whose removal leaves the best validation accuracy
        (ties: lowest original index)."""
        kept = sorted(int(i) for i in kept)
        scores = [self.val_accuracy([j for j in kept if j != i]) for i in kept]
        return kept[int(np.argmax(scores))]  # argmax returns the first maximum = lowest index


def _strategies(spec) -> list[Strategy]:
    """'all', a comma list, names and/or Strategy objects (e.g. fitted fusion ones) -> unique Strategies."""
    out: dict[str, Strategy] = {}
    for item in [spec] if isinstance(spec, (str, Strategy)) else spec:
        for s in [item] if isinstance(item, Strategy) else [REGISTRY[n] for n in parse_strategies(item)]:
            out.setdefault(s.name, s)
    return list(out.values())


def _reads_signals(strategy: Strategy) -> bool:
    return strategy.kind == "fusion" or strategy.column is not None


def random_generator(pipeline_seed: int, replicate: int) -> np.random.Generator:
    """Random's generator for replicate r of pipeline seed S: ``default_rng(1000 * S + r)`` (distinct for r < 1000)."""
    return np.random.default_rng(1000 * int(pipeline_seed) + int(replicate))


def prune_curve(pruner: Pruner, strategy, seed: int = 0, with_predictions: bool = False):
    """Prune M_0 down to one layer with ``strategy``: (curve rows, signal rows), L-1 steps each; with
    ``with_predictions`` also the prediction rows of every step (``predictions.parquet``'s columns).

    ``seed`` is Random's replicate r, drawn by ``random_generator(run seed, r)``; other strategies ignore it
    except as a label."""
    (strategy,) = _strategies(strategy)
    preset = pruner.run.preset
    work = pruner if pruner.memo else pruner.fork()
    rng = random_generator(preset.seed, seed)
    kept = list(pruner.all_layers)
    if len(kept) < 2:
        raise PaperlibError(f"the model has {len(kept)} layer(s); pruning needs at least 2")
    curve, signal_rows, predictions = [], [], []
    for step in range(1, len(pruner.all_layers)):
        if strategy.kind == "oracle":
            layer = work.oracle_choice(kept)
        elif _reads_signals(strategy):
            sig = work.signals(kept)
            layer = strategy.choose(sig, rng)
            rows = sig.reindex(columns=["layer", *SIGNALS, *REFERENCE_SIGNALS])
            signal_rows.append(rows.assign(strategy=strategy.name, seed=seed, step=step))
        else:  # Random, Top-Drop: only the remaining layers matter
            layer = strategy.choose(pd.DataFrame({"layer": kept}), rng)
        if layer not in kept:
            raise PaperlibError(
                f"strategy {strategy.name!r} chose layer {layer}, which is not among the remaining {kept}"
            )
        kept = [i for i in kept if i != layer]
        if not work.memo:
            remove_layers(work.model, [layer])
            if preset.finetune_between > 0:
                settings = TrainSettings.finetune(preset, getattr(work.model.config, "hidden_size", None))
                settings = settings.replace(epochs=preset.finetune_between, seed=preset.seed + step)
                train(
                    work.model,
                    pruner.run.encoded["train"],
                    settings,
                    device=work.device,
                    progress=False,
                    desc=f"re-train k={step}",
                )
        val, test = work.evaluate(kept)
        if with_predictions:
            predictions += [
                prediction_rows(work.predictions(kept, split), strategy.name, seed, step, split) for split in SPLITS
            ]
        n_params, n_bytes = work.size(kept)
        curve.append((strategy.name, seed, step, layer, format_kept(kept), val, test, n_params, n_bytes))
    curves = _typed_curves(pd.DataFrame(curve, columns=CURVE_COLUMNS))
    signals = (
        pd.concat(signal_rows, ignore_index=True)[SIGNAL_COLUMNS]
        if signal_rows
        else pd.DataFrame(columns=SIGNAL_COLUMNS)
    )
    if with_predictions:
        return curves, _typed_signals(signals), _typed_predictions(pd.concat(predictions, ignore_index=True))
    return curves, _typed_signals(signals)


# ---------------------------------------------------------------- files


def _save_original(folder: Path, pruner: Pruner) -> None:
    """labels.parquet and M_0's predictions (step 0), once per run folder."""
    if not (folder / LABELS_FILE).is_file():
        labels = [
            pd.DataFrame(
                {
                    "split": split,
                    "example": np.arange(len(pruner.run.encoded[split])),
                    "label": pruner.run.encoded[split].labels.cpu().numpy(),
                }
            )
            for split in SPLITS
        ]
        write_parquet(_typed_labels(pd.concat(labels, ignore_index=True)), folder / LABELS_FILE)
    have = read_predictions(folder, columns=["strategy"])
    if have is None or not (have["strategy"] == ORIGINAL).any():
        rows = [
            prediction_rows(pruner.predictions(pruner.all_layers, split), ORIGINAL, 0, 0, split) for split in SPLITS
        ]
        merge_predictions(folder, pd.concat(rows, ignore_index=True))


def _save(
    folder: Path, curve: pd.DataFrame, signals: pd.DataFrame, predictions: pd.DataFrame, job: tuple[str, int]
) -> None:
    """Merge one finished (strategy, seed) into the three files, replacing any earlier rows of it,
    each under the run folder's lock (another stage's rows written meanwhile are kept).

    Signals and predictions first: curves.parquet is what marks a job done, so an interruption
    between the writes only means the job is redone (its rows replaced, never duplicated)."""
    merge_predictions(folder, predictions)
    for name, new, typed in ((SIGNALS_FILE, signals, _typed_signals), (CURVES_FILE, curve, _typed_curves)):
        update_parquet(folder / name, typed(new), ["strategy", "seed"], typed)


def _done(
    curves: pd.DataFrame,
    n_steps: int,
    predictions: pd.DataFrame | None = None,
    signals: pd.DataFrame | None = None,
    reads_signals: set[str] = frozenset(),
) -> set[tuple[str, int]]:
    """(strategy, seed) pairs with all ``n_steps`` curve rows and, when ``predictions`` is given, the
    predictions of every step on both splits (a folder from before predictions were saved redoes them);
    for the strategies in ``reads_signals``, also the signals of every step in ``signals`` (a deleted or
    damaged signals.parquet redoes them, so every file the stage owns is whole again)."""
    counts = curves.groupby(["strategy", "seed"]).size()
    done = {(str(s), int(seed)) for (s, seed), n in counts.items() if n == n_steps}
    if predictions is not None:
        models = predictions.drop_duplicates(["strategy", "seed", "step", "split"]).groupby(["strategy", "seed"]).size()
        done &= {(str(s), int(seed)) for (s, seed), n in models.items() if n == n_steps * len(SPLITS)}
    if signals is not None and reads_signals:
        steps = signals.drop_duplicates(["strategy", "seed", "step"]).groupby(["strategy", "seed"]).size()
        have = {(str(s), int(seed)) for (s, seed), n in steps.items() if n == n_steps}
        done = {job for job in done if job[0] not in reads_signals or job in have}
    return done


def run_pruning(
    run, strategies="all", progress: bool | None = None, signal_fn: SignalFn | None = None, pruner: Pruner | None = None
) -> pd.DataFrame:
    """Run every strategy (names, 'all', or Strategy objects such as fusion ones) on ``run``; return
    all curves of the run folder.  Random runs ``run.preset.random_seeds`` seeds (0..R-1).

    (strategy, seed) pairs already complete in curves.parquet are skipped, so an interrupted run
    resumes; the memo is warm-started from the folder's files, so e.g. fusion curves re-use the
    signals and accuracies of models the earlier curves visited.  Pass ``pruner`` to share one
    Pruner's caches between calls."""
    strategies = _strategies(strategies)
    pruner = pruner or Pruner(run, signal_fn, progress)
    folder = Path(run.folder)
    pruner.warm_start(folder)
    _save_original(folder, pruner)
    n_steps = len(pruner.all_layers) - 1
    signals_path = folder / SIGNALS_FILE
    done = _done(
        _read(folder / CURVES_FILE, CURVE_COLUMNS, _typed_curves),
        n_steps,
        read_predictions(folder, columns=["strategy", "seed", "step", "split"]),
        read_parquet(signals_path, columns=["strategy", "seed", "step"])
        if signals_path.is_file()
        else pd.DataFrame({"strategy": [], "seed": [], "step": []}),
        {s.name for s in strategies if _reads_signals(s)},
    )
    jobs = [
        (s, seed)
        for s in strategies
        for seed in (range(run.preset.random_seeds) if s.kind == "random" else [0])
        if (s.name, seed) not in done
    ]
    share = pruner.share_test_prefixes
    if share is None:
        share = pruner.memo and pruner.device.type == "cuda"
    if share and pruner.memo and jobs:
        # validation and signals choose every curve (nothing reads test while pruning); then the test
        # evaluations of all their sub-models at once, sharing layers (Pruner.logits_many); the loop below
        # then finds every value in the memo
        pruner._deferred = set()
        try:
            for strategy, seed in tqdm(jobs, desc="prune", disable=not progress_enabled(progress)):
                prune_curve(pruner, strategy, seed)
        finally:
            deferred, pruner._deferred = pruner._deferred, None
        pruner.prefetch_test(deferred)
    bar = tqdm(jobs, desc="prune" if not share else "prune: files", disable=not progress_enabled(progress))
    for strategy, seed in bar:
        bar.set_postfix_str(strategy.name + (f" seed {seed}" if strategy.kind == "random" else ""))
        curve, signals, predictions = prune_curve(pruner, strategy, seed, with_predictions=True)
        _save(folder, curve, signals, predictions, (strategy.name, seed))
    bar.close()
    fold_predictions(folder)  # one write of predictions.parquet per stage, not one per job
    return _read(folder / CURVES_FILE, CURVE_COLUMNS, _typed_curves)


# ---------------------------------------------------------------- summary


def summarize_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: the mean test accuracy over k (the area under the curve, no k chosen), then the best
    test accuracy over k and the k reaching it (a maximum picked on test: a secondary view), sorted by
    the mean.  Random (several seeds) is first averaged over seeds per step.  When several k reach the
    best, the largest k (the smallest model) is reported."""
    per_step = curves.groupby(["strategy", "step"], as_index=False).agg(
        test_acc=("test_acc", "mean"), seeds=("seed", "nunique")
    )
    rows = []
    for name, g in per_step.groupby("strategy", sort=True):
        best = g["test_acc"].max()
        rows.append(
            {
                "strategy": name,
                "best_test_acc": best,
                "best_k": int(g.loc[g["test_acc"] == best, "step"].max()),
                "mean_test_acc": g["test_acc"].mean(),
                "seeds": int(g["seeds"].max()),
            }
        )
    table = pd.DataFrame(rows, columns=["strategy", "mean_test_acc", "best_test_acc", "best_k", "seeds"])
    return table.sort_values(
        ["mean_test_acc", "best_test_acc", "strategy"], ascending=[False, False, True], kind="stable"
    ).reset_index(drop=True)


def prune_command(run, strategies="all", progress: bool | None = None) -> None:
    """`paperlib prune`: run the strategies, then print each curve's mean test accuracy (and its test-selected
    maximum)."""
    curves = run_pruning(run, strategies, progress=progress)
    names = [s.name for s in _strategies(strategies)]
    table = summarize_curves(curves[curves["strategy"].isin(names)])
    table["strategy"] = [f"{s} (mean of {n})" if n > 1 else s for s, n in zip(table["strategy"], table["seeds"])]
    m = run.metrics
    print(
        f"{run.splits.name}: M_0 ({m.get('n_layers', len(kept_layers(run.model)))} layers) "
        f"val {m['val_acc']:.4f}, test {m['test_acc']:.4f}; curves in {Path(run.folder) / CURVES_FILE}"
    )
    shown = table.drop(columns="seeds").rename(
        columns={"best_test_acc": "max_test_acc (picked on test)", "best_k": "k_of_max"}
    )
    print(shown.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
