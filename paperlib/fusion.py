"""Strategic fusion (SPEC 5): learn from the single-signal runs which layer is safe to prune.

Each step k of each of the 12 single-signal runs gives one row:

    features = the 12 signals of the layer removed at step k, z-scored across the layers remaining at step k
    target   = val_acc(k) - val_acc(k-1)          (val_acc(0) = the unpruned model's)

A row that repeats an earlier one (two signals that prune alike give the same model, layer and accuracies) is
kept once.  Two regressors map features -> target: ``Pipeline(StandardScaler, LinearRegression)`` and
``Pipeline(StandardScaler, RandomForestRegressor(n_estimators=200, random_state=seed))``.  A fusion
strategy then z-scores the current model's signals the same way, predicts the target for every
remaining layer and prunes the highest prediction (``Strategy.choose``).

Protocols: ``within`` trains on this dataset's rows (the default, our reading of the paper);
``transfer`` trains on every *other* dataset under the runs folder (leave-one-dataset-out), so the
dataset being pruned contributes no row.  Only validation accuracy enters a row.  Transfer takes a
dataset only if its run was made the same way (model, precision and recipe: ``config.result_config``;
the others are left out with a printed line), and only its complete single-signal curves.

Staleness: the fitted models are keyed by the rows they were fitted on (``rows_key``: datasets, row
count, SHA-256 of the rows).  ``fusion_<protocol>.json`` stores that key with what the notebooks and the
CLI read (LR coefficients and intercept, scaler, RF importances); ``fusion_<protocol>_fit.parquet`` the
training rows with both models' predictions.  When the key changes (new or changed single-signal
runs, another set of transfer datasets), the protocol's fusion curves are deleted and pruned again.
No fitted model is pickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import PaperlibError
from .io import read_csv, read_json, read_parquet, run_lock, write_csv, write_json, write_parquet
from .strategies import CATEGORY, FUSION_NAMES, SIGNALS, Strategy, fusion_names, zscore

PROTOCOLS = ("within", "transfer")
KINDS = ("lr", "rf")
KIND_NAMES = dict(zip(KINDS, FUSION_NAMES))
ROW_COLUMNS = ["dataset", "strategy", "step", "layer", *SIGNALS, "target"]
DUPLICATE_KEY = ["dataset", "step", "layer", *SIGNALS, "target"]  # a row's content: all but the strategy's name


def strategy_name(kind: str, protocol: str = "within") -> str:
    """'Linear-Regression' / 'Random-Forest', suffixed ' (transfer)' for the transfer protocol."""
    return fusion_names(_protocol(protocol))[KINDS.index(_kind(kind))]


def _kind(kind: str) -> str:
    lookup = {"lr": "lr", "rf": "rf", "linear-regression": "lr", "random-forest": "rf"}
    key = str(kind).lower()
    if key not in lookup:
        raise PaperlibError(f"unknown fusion model {kind!r}; choose 'lr' (Linear-Regression) or 'rf' (Random-Forest)")
    return lookup[key]


def _protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise PaperlibError(f"unknown fusion protocol {protocol!r}; choose one of {list(PROTOCOLS)}")
    return protocol


# ---------------------------------------------------------------- rows


def fusion_rows(
    signals_df: pd.DataFrame, curves_df: pd.DataFrame, base_val_acc: float, dataset: str | None = None
) -> pd.DataFrame:
    """One row per step of every single-signal run: z-scored signals of the removed layer, accuracy change.

    ``signals_df`` holds, per (strategy, seed, step), the signals of the model *before* step k's
    removal (one row per remaining layer); ``curves_df`` the removed layer and val_acc after step k.
    Runs that stopped early contribute the steps they have; a step whose signals are missing is an error.
    A row equal to an earlier one in everything but the strategy's name (``DUPLICATE_KEY``: two signals that
    prune alike, up to that step) is removed; the first in SPEC 3's order stays (SPEC 5).
    """
    missing = {"strategy", "seed", "step", "removed", "val_acc"} - set(curves_df.columns)
    if missing:
        raise PaperlibError(f"curves lack column(s) {sorted(missing)}; was curves.parquet written by paperlib prune?")
    curves = curves_df[curves_df["strategy"].isin(SIGNALS)]
    if curves.empty:
        raise PaperlibError("no single-signal pruning runs to learn from; run `paperlib prune --strategies all` first")
    signals = {
        key: g
        for key, g in signals_df[signals_df["strategy"].isin(SIGNALS)].groupby(["strategy", "seed", "step"], sort=False)
    }
    rows = []
    for (strategy, seed), curve in curves.groupby(["strategy", "seed"], sort=False):
        curve = curve.sort_values("step")
        steps = curve["step"].to_numpy()
        if not np.array_equal(steps, np.arange(1, len(steps) + 1)):
            raise PaperlibError(
                f"{strategy} (seed {seed}) has pruning steps {steps.tolist()}, not 1..k; "
                f"rerun `paperlib prune` to complete it"
            )
        before = float(base_val_acc)
        for step, removed, after in zip(steps, curve["removed"], curve["val_acc"]):
            layers = signals.get((strategy, seed, step))
            if layers is None or int(removed) not in set(layers["layer"].astype(int)):
                raise PaperlibError(
                    f"signals.parquet lacks the signals of {strategy} (seed {seed}) at step {step}; "
                    f"rerun `paperlib prune` for that strategy"
                )
            z = zscore(layers)
            features = z[(layers["layer"].astype(int) == int(removed)).to_numpy()].iloc[0]
            rows.append(
                {
                    "dataset": dataset,
                    "strategy": strategy,
                    "step": int(step),
                    "layer": int(removed),
                    **features.to_dict(),
                    "target": float(after) - before,
                }
            )
            before = float(after)
    order = {s: i for i, s in enumerate(SIGNALS)}
    out = pd.DataFrame(rows, columns=ROW_COLUMNS).sort_values(
        ["strategy", "step"], key=lambda c: c.map(order) if c.name == "strategy" else c, kind="stable"
    )
    # Two signals that prune alike give the same rows (same model, same layer removed, same accuracies): one
    # measurement counted twice.  Keep the first (SPEC 3's order), so a fit is not weighted by how many signals
    # happen to agree (Weight-Magnitude and Weight-Entropy always do).
    return out.drop_duplicates(DUPLICATE_KEY).reset_index(drop=True)


def dataset_name_of(folder: str | Path) -> str:
    """A run folder's dataset name: its folder name (``runs/<preset>/seed-<S>/<dataset>/``, SPEC 9)."""
    return Path(folder).name


def dataset_rows(folder: str | Path, base_val_acc: float | None = None, complete: bool = False) -> pd.DataFrame:
    """``fusion_rows`` of one run folder, from its signals.parquet, curves.parquet and metrics.json;
    with ``complete``, only its complete single-signal curves (L-1 steps)."""
    folder = Path(folder)
    needed = [folder / "signals.parquet", folder / "curves.parquet"]
    if base_val_acc is None or complete:
        needed.append(folder / "metrics.json")
    absent = [p.name for p in needed if not p.is_file()]
    if absent:
        raise PaperlibError(f"run folder {str(folder)!r} lacks {absent}; run `paperlib prune` on that dataset first")
    metrics = read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
    if base_val_acc is None:
        base_val_acc = metrics["val_acc"]
    curves = read_parquet(folder / "curves.parquet")
    if complete:
        curves = complete_runs(curves, int(metrics.get("n_layers") or curves["step"].max() + 1) - 1)
    return fusion_rows(read_parquet(folder / "signals.parquet"), curves, base_val_acc, dataset_name_of(folder))


def _model_of(folder: Path) -> str | None:
    path = folder / "config.json"
    return read_json(path).get("model") if path.is_file() else None


def complete_runs(curves: pd.DataFrame, n_steps: int) -> pd.DataFrame:
    """The rows of the single-signal (strategy, seed) curves that have all steps 1..n_steps."""
    single = curves[curves["strategy"].isin(SIGNALS)]
    full = single.groupby(["strategy", "seed"])["step"].transform(lambda k: set(k) == set(range(1, n_steps + 1)))
    return single[full.astype(bool)]


def single_signal_folders(runs_root: str | Path, model: str | None = None, complete: bool = False) -> dict[str, Path]:
    """Dataset name -> run folder, for every folder under ``runs_root`` holding single-signal runs;
    with ``model``, only folders whose config.json names that model; with ``complete``, only folders
    with at least one complete single-signal curve (L-1 steps, L from metrics.json)."""
    root = Path(runs_root)
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        curves, signals = folder / "curves.parquet", folder / "signals.parquet"
        if not (curves.is_file() and signals.is_file() and (folder / "metrics.json").is_file()):
            continue
        if model is not None and _model_of(folder) != model:
            continue
        df = read_parquet(curves, columns=["strategy", "seed", "step"])
        if complete:
            n_layers = read_json(folder / "metrics.json").get("n_layers") or int(df["step"].max()) + 1
            df = complete_runs(df, int(n_layers) - 1)
        if df["strategy"].isin(SIGNALS).any():
            found[dataset_name_of(folder)] = folder
    return found


def run_result_config(folder: str | Path) -> dict | None:
    """``config.result_config`` of a run folder (model, precision, recipe), None without a config.json."""
    from .config import result_config

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return None
    metrics = read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else None
    return result_config(read_json(folder / "config.json"), metrics)


def _same_config(folders: dict[str, Path], reference: Path | None, dataset: str, verbose: bool) -> dict[str, Path]:
    """The folders whose run shares ``reference``'s model, precision and recipe; each one left out is
    printed with how it differs (transfer never pools rows of runs made another way)."""
    from .config import config_differences

    like = run_result_config(reference) if reference is not None else None
    if like is None:
        return folders
    kept = {}
    for name, folder in folders.items():
        other = run_result_config(folder)
        diff = config_differences(like, other) if other is not None else ["no config.json"]
        if not diff:
            kept[name] = folder
        elif verbose:
            print(f"fusion (transfer) for {dataset}: left out {name}: its run differs in {'; '.join(diff)}")
    return kept


def transfer_folders(
    dataset: str, runs_root: str | Path, model: str | None = None, datasets=None, reference=None, verbose: bool = True
) -> dict[str, Path]:
    """The run folders transfer fusion on ``dataset`` learns from (see ``rows_for``); none is an error."""
    folders = single_signal_folders(runs_root, model, complete=True)
    folders = {n: f for n, f in folders.items() if n != dataset and (datasets is None or n in set(datasets))}
    reference = Path(reference) if reference is not None else Path(runs_root) / dataset
    folders = _same_config(folders, reference, dataset, verbose)
    if not folders:
        raise PaperlibError(
            f"the transfer protocol needs complete single-signal runs of at least one dataset other "
            f"than {dataset!r} under {str(runs_root)!r}"
            f"{f' with model {model!r}' if model else ''} and the same precision and recipe; run `paperlib prune` "
            f"on another dataset first"
        )
    return folders


def rows_for(
    protocol: str,
    dataset: str,
    runs_root: str | Path,
    model: str | None = None,
    datasets=None,
    reference: str | Path | None = None,
) -> pd.DataFrame:
    """Training rows for fusion on ``dataset``.

    within: that dataset's rows.  transfer: the rows of the complete single-signal curves of every other
    dataset under ``runs_root`` (leave-one-dataset-out; ``dataset`` contributes none), only folders of
    the same ``model`` when given, only the names in ``datasets`` when given (e.g. the datasets of
    the current reproduce run), and only runs made like ``reference`` (a run folder, default
    ``runs_root/dataset``): same model, precision and recipe (``config.result_config``); the others are
    left out with a printed line."""
    if _protocol(protocol) == "within":
        folders = single_signal_folders(runs_root)
        if dataset not in folders:
            raise PaperlibError(
                f"no single-signal runs for {dataset!r} under {str(runs_root)!r}; "
                f"run `paperlib prune --dataset {dataset}` first"
            )
        return dataset_rows(folders[dataset])
    folders = transfer_folders(dataset, runs_root, model, datasets, reference)
    rows = pd.concat([dataset_rows(folder, complete=True) for folder in folders.values()], ignore_index=True)
    assert not (rows["dataset"] == dataset).any()  # leave-one-dataset-out
    return rows


def rows_key(rows: pd.DataFrame) -> dict:
    """What a fit depends on: the datasets, the row count and the SHA-256 of the rows (CSV, 17 digits)."""
    import hashlib

    text = rows.reset_index(drop=True).to_csv(index=False, float_format="%.17g")
    return {
        "datasets": sorted(rows["dataset"].dropna().astype(str).unique().tolist()),
        "n_rows": int(len(rows)),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


# ---------------------------------------------------------------- models


def fit_fusion(rows: pd.DataFrame, kind: str, seed: int = 0):
    """Fit ``Pipeline(StandardScaler, LinearRegression | RandomForestRegressor(200, random_state=seed))``
    on the 12 feature columns -> ``target``.  The pipeline predicts on z-scored signals."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    kind = _kind(kind)
    if len(rows) < 2:
        raise PaperlibError(
            f"fusion needs at least 2 rows to fit, got {len(rows)}; run the single-signal strategies first"
        )
    model = LinearRegression() if kind == "lr" else RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=1)
    pipe = Pipeline([("scale", StandardScaler()), (kind, model)])
    pipe.fit(rows[list(SIGNALS)].astype(float), rows["target"].astype(float))
    return pipe


def fusion_weights(lr_pipe, rf_pipe) -> pd.DataFrame:
    """Which signals the fusion trusts: LR coefficients and RF impurity importances, one row per signal.

    ``lr_coefficient`` is per standard deviation of the feature (the scaler's units), so the twelve
    are comparable: positive = a high z-scored signal predicts a smaller loss (a safer removal)."""
    return pd.DataFrame(
        {
            "signal": list(SIGNALS),
            "category": [CATEGORY[s] for s in SIGNALS],
            "lr_coefficient": np.asarray(lr_pipe[-1].coef_, dtype=float),
            "rf_importance": np.asarray(rf_pipe[-1].feature_importances_, dtype=float),
        }
    )


def fusion_strategy(pipe, name: str) -> Strategy:
    """A pruning strategy that removes the layer with the highest predicted accuracy change."""
    return Strategy(name, "fusion", "fusion", "highest", predictor=pipe.predict)


# ---------------------------------------------------------------- stage


@dataclass
class FusionResult:
    """What ``run_fusion`` produced: rows, training rows, fitted pipelines (in memory only), their key,
    weights and fusion curves."""

    protocol: str
    rows: pd.DataFrame
    train_rows: pd.DataFrame
    pipelines: dict = field(repr=False)
    weights: pd.DataFrame
    curves: pd.DataFrame
    key: dict = field(default_factory=dict)
    refitted: bool = False  # True when earlier fusion curves of this protocol were stale and redone


def run_fusion(
    run, protocol: str = "within", runs_root=None, progress=None, signal_fn=None, pruner=None, datasets=None
) -> FusionResult:
    """Build and save this dataset's fusion rows, fit LR and RF, prune with them.

    Writes ``fusion_rows.parquet``, ``fusion_<protocol>.json`` (``fit_summary``: the key of the training
    rows, LR coefficients, RF importances), ``fusion_<protocol>_fit.parquet`` (training rows with both
    models' predictions), ``fusion_weights.csv`` (one block per protocol) and appends the fusion curves
    to curves.parquet through ``pruning.run_pruning``.  Curves already there are kept only if they were
    pruned by models fitted on the same rows (same ``rows_key``); otherwise they are deleted and pruned
    again.  Transfer: only complete single-signal runs of the same model under ``runs_root``, and only
    ``datasets`` when given.  ``signal_fn`` and ``pruner`` pass through to the engine."""
    from .pruning import run_pruning
    from .runfiles import drop_strategies

    protocol = _protocol(protocol)
    folder = Path(run.folder)
    runs_root = Path(runs_root) if runs_root is not None else folder.parent
    dataset = dataset_name_of(folder)
    rows = dataset_rows(folder, run.metrics["val_acc"])
    write_parquet(rows, folder / "fusion_rows.parquet")
    train_rows = (
        rows
        if protocol == "within"
        else rows_for("transfer", dataset, runs_root, _model_of(folder), datasets, reference=folder)
    )
    seed = int(getattr(run.preset, "seed", 0))
    pipes = {kind: fit_fusion(train_rows, kind, seed) for kind in KINDS}
    key = rows_key(train_rows)
    names = [strategy_name(k, protocol) for k in KINDS]
    summary_path = folder / f"fusion_{protocol}.json"
    old_key = read_json(summary_path).get("key") if summary_path.is_file() else None
    refitted = old_key != key and drop_strategies(folder, names) > 0  # stale (or unkeyed) fusion curves
    write_parquet(fit_predictions(pipes, train_rows), folder / f"fusion_{protocol}_fit.parquet")
    write_json(fit_summary(pipes, protocol, key), summary_path)
    weights = fusion_weights(pipes["lr"], pipes["rf"])
    weights.insert(0, "protocol", protocol)
    weights.insert(0, "dataset", dataset)
    _save_weights(weights, folder / "fusion_weights.csv")
    strategies = [fusion_strategy(pipes[k], name) for k, name in zip(KINDS, names)]
    curves = run_pruning(run, strategies, progress=progress, signal_fn=signal_fn, pruner=pruner)
    curves = curves[curves["strategy"].isin(names)].reset_index(drop=True)
    return FusionResult(protocol, rows, train_rows, pipes, weights, curves, key, refitted)


def transfer_is_saved(folder: str | Path, runs_root: str | Path) -> bool:
    """Whether ``folder``'s transfer fusion is saved and current, judged from files alone (its M_0 is not read):
    ``fusion_transfer.json`` holds the key of the rows the other datasets under ``runs_root`` give now, and both
    transfer curves run to k = L-1.  What ``run_fusion(run, "transfer")`` would keep without pruning again."""
    folder = Path(folder)
    summary, curves_path = folder / "fusion_transfer.json", folder / "curves.parquet"
    if not (summary.is_file() and curves_path.is_file() and (folder / "metrics.json").is_file()):
        return False
    try:
        rows = rows_for("transfer", dataset_name_of(folder), runs_root, _model_of(folder), reference=folder)
    except PaperlibError:  # no other complete dataset now
        return False
    if read_json(summary).get("key") != rows_key(rows):
        return False
    steps = set(range(1, int(read_json(folder / "metrics.json")["n_layers"])))
    curves = read_parquet(curves_path, columns=["strategy", "step"])
    return all(set(curves.loc[curves["strategy"] == strategy_name(k, "transfer"), "step"]) == steps for k in KINDS)


def transfer_fusion(runs: str | Path, names, data_dir=None, seeds=None, progress=None) -> pd.DataFrame:
    """The transfer protocol over a runs folder (notebook 06): for each seed and each dataset in ``names``, LR and
    RF fitted on the rows of the *other* datasets of that seed prune this one (``run_fusion``).  A dataset whose
    transfer fusion is saved and current (``transfer_is_saved``) is skipped without loading its M_0, so seeds run
    on machines that no longer hold their models can still be summarised; any other needs its M_0 (``load_run``
    says what to run when it is missing).  Returns one row per (seed, dataset): ``status`` "saved" or "fitted"."""
    from .experiment import load_run
    from .paths import seed_roots

    roots = seed_roots(runs)
    rows = []
    for seed, root in roots.items():
        if seeds is not None and seed not in seeds:
            continue
        for name in names:
            status = "saved" if transfer_is_saved(Path(root) / name, root) else "fitted"
            if status == "fitted":
                run = load_run(runs, name, data_dir, seed=seed)  # the preset and model its config.json records
                run_fusion(run, "transfer", runs_root=root, progress=progress)
            rows.append({"seed": seed, "dataset": name, "status": status})
    return pd.DataFrame(rows, columns=["seed", "dataset", "status"])


def fit_predictions(pipes: dict, rows: pd.DataFrame) -> pd.DataFrame:
    """The training rows (dataset, strategy, step, layer, target) with each model's in-sample prediction."""
    out = rows[["dataset", "strategy", "step", "layer", "target"]].copy()
    for kind in KINDS:
        out[f"{kind}_prediction"] = pipes[kind].predict(rows[list(SIGNALS)].astype(float))
    return out.reset_index(drop=True)


def fit_summary(pipes: dict, protocol: str, key: dict) -> dict:
    """JSON-ready: the rows key, features, LR (coefficients per feature unit and per standard deviation,
    intercept, scaler mean and scale: prediction = intercept + sum coef * x) and RF importances."""
    lr_scale, lr = pipes["lr"][0], pipes["lr"][-1]
    per_sd = np.asarray(lr.coef_, dtype=float)
    scale = np.asarray(lr_scale.scale_, dtype=float)
    mean = np.asarray(lr_scale.mean_, dtype=float)
    return {
        "protocol": protocol,
        "key": key,
        "trained_on": key["datasets"],
        "n_rows": key["n_rows"],
        "features": list(SIGNALS),
        "lr": {
            "coefficient_per_sd": per_sd.tolist(),
            "coefficient": (per_sd / scale).tolist(),
            "intercept": float(lr.intercept_ - (per_sd * mean / scale).sum()),
            "scaler_mean": mean.tolist(),
            "scaler_scale": scale.tolist(),
        },
        "rf": {
            "importance": np.asarray(pipes["rf"][-1].feature_importances_, dtype=float).tolist(),
            "n_estimators": int(pipes["rf"][-1].n_estimators),
        },
    }


def load_fit_summary(folder: str | Path, protocol: str = "within") -> dict:
    """The saved ``fusion_<protocol>.json`` of ``run_fusion`` (``fit_summary``)."""
    path = Path(folder) / f"fusion_{_protocol(protocol)}.json"
    if not path.is_file():
        raise PaperlibError(f"{str(path)!r} does not exist; run `paperlib fuse --protocol {protocol}` first")
    return read_json(path)


def _save_weights(weights: pd.DataFrame, path: Path) -> None:
    """Replace this protocol's block of fusion_weights.csv, keep the other protocol's."""
    with run_lock(path.parent):
        if path.is_file():
            old = read_csv(path, required=("protocol",))
            old = old[old["protocol"] != weights["protocol"].iloc[0]]
            weights = pd.concat([old, weights], ignore_index=True) if not old.empty else weights
        write_csv(weights, path)


def fuse_command(run, protocol: str = "within", runs_root=None, progress=None) -> FusionResult:
    """``paperlib fuse``: fit, prune, print the weights and the fusion curves' mean accuracies (no k picked on test)."""
    result = run_fusion(run, protocol, runs_root, progress)
    trained_on = sorted(result.train_rows["dataset"].dropna().unique())
    print(
        f"{dataset_name_of(run.folder)}: fusion ({protocol}) fitted on {len(result.train_rows)} rows "
        f"from {', '.join(map(str, trained_on))}"
    )
    with pd.option_context("display.width", 120, "display.float_format", "{:.4f}".format):
        print(result.weights.drop(columns=["dataset", "protocol"]).to_string(index=False))
    print(f"original: val acc {run.metrics['val_acc']:.4f}, test acc {run.metrics['test_acc']:.4f}")
    for name, curve in result.curves.groupby("strategy", sort=False):
        curve = curve.sort_values("step")
        print(
            f"{name}: mean over k of val acc {curve['val_acc'].mean():.4f}, test acc {curve['test_acc'].mean():.4f}; "
            f"removal order {curve['removed'].astype(int).tolist()}"
        )
    return result
