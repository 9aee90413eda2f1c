"""Strategic fusion (SPEC 5): learn from the single-signal runs which layer is safe to prune.

Each step k of each of the 12 single-signal runs gives one row:

    features = the 12 signals of the layer removed at step k, z-scored across the layers remaining at step k
    target   = val_acc(k) - val_acc(k-1)          (val_acc(0) = the unpruned model's)

Two regressors map features -> target: ``Pipeline(StandardScaler, LinearRegression)`` and
``Pipeline(StandardScaler, RandomForestRegressor(n_estimators=200, random_state=seed))``.  A fusion
strategy then z-scores the current model's signals the same way, predicts the target for every
remaining layer and prunes the highest prediction (``Strategy.choose``).

Protocols: ``within`` trains on this dataset's rows (the default, our reading of the paper);
``transfer`` trains on every *other* dataset under the runs folder (leave-one-dataset-out), so the
dataset being pruned contributes no row.  Only validation accuracy enters a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import PaperlibError
from .io import atomic_path, read_json, read_parquet, run_lock, write_csv, write_parquet
from .strategies import CATEGORY, SIGNALS, Strategy, zscore

PROTOCOLS = ("within", "transfer")
KINDS = ("lr", "rf")
KIND_NAMES = {"lr": "Linear-Regression", "rf": "Random-Forest"}
ROW_COLUMNS = ["dataset", "strategy", "step", "layer", *SIGNALS, "target"]


def strategy_name(kind: str, protocol: str = "within") -> str:
    """'Linear-Regression' / 'Random-Forest', suffixed ' (transfer)' for the transfer protocol."""
    name = KIND_NAMES[_kind(kind)]
    return name if protocol == "within" else f"{name} ({protocol})"


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

def fusion_rows(signals_df: pd.DataFrame, curves_df: pd.DataFrame, base_val_acc: float,
                dataset: str | None = None) -> pd.DataFrame:
    """One row per step of every single-signal run: z-scored signals of the removed layer, accuracy change.

    ``signals_df`` holds, per (strategy, seed, step), the signals of the model *before* step k's
    removal (one row per remaining layer); ``curves_df`` the removed layer and val_acc after step k.
    Runs that stopped early contribute the steps they have; a step whose signals are missing is an error.
    """
    missing = {"strategy", "seed", "step", "removed", "val_acc"} - set(curves_df.columns)
    if missing:
        raise PaperlibError(f"curves lack column(s) {sorted(missing)}; was curves.parquet written by paperlib prune?")
    curves = curves_df[curves_df["strategy"].isin(SIGNALS)]
    if curves.empty:
        raise PaperlibError("no single-signal pruning runs to learn from; run `paperlib prune --strategies all` first")
    signals = {key: g for key, g in signals_df[signals_df["strategy"].isin(SIGNALS)].groupby(
        ["strategy", "seed", "step"], sort=False)}
    rows = []
    for (strategy, seed), curve in curves.groupby(["strategy", "seed"], sort=False):
        curve = curve.sort_values("step")
        steps = curve["step"].to_numpy()
        if not np.array_equal(steps, np.arange(1, len(steps) + 1)):
            raise PaperlibError(f"{strategy} (seed {seed}) has pruning steps {steps.tolist()}, not 1..k; "
                                f"rerun `paperlib prune` to complete it")
        before = float(base_val_acc)
        for step, removed, after in zip(steps, curve["removed"], curve["val_acc"]):
            layers = signals.get((strategy, seed, step))
            if layers is None or int(removed) not in set(layers["layer"].astype(int)):
                raise PaperlibError(f"signals.parquet lacks the signals of {strategy} (seed {seed}) at step {step}; "
                                    f"rerun `paperlib prune` for that strategy")
            z = zscore(layers)
            features = z[(layers["layer"].astype(int) == int(removed)).to_numpy()].iloc[0]
            rows.append({"dataset": dataset, "strategy": strategy, "step": int(step), "layer": int(removed),
                         **features.to_dict(), "target": float(after) - before})
            before = float(after)
    order = {s: i for i, s in enumerate(SIGNALS)}
    out = pd.DataFrame(rows, columns=ROW_COLUMNS)
    return out.sort_values(["strategy", "step"], key=lambda c: c.map(order) if c.name == "strategy" else c,
                           kind="stable").reset_index(drop=True)


def dataset_name_of(folder: str | Path) -> str:
    """A run folder's dataset name: its folder name (``runs/<preset>/<dataset>/``, SPEC 9)."""
    return Path(folder).name


def dataset_rows(folder: str | Path, base_val_acc: float | None = None) -> pd.DataFrame:
    """``fusion_rows`` of one run folder, from its signals.parquet, curves.parquet and metrics.json."""
    folder = Path(folder)
    needed = [folder / "signals.parquet", folder / "curves.parquet"]
    if base_val_acc is None:
        needed.append(folder / "metrics.json")
    absent = [p.name for p in needed if not p.is_file()]
    if absent:
        raise PaperlibError(f"run folder {str(folder)!r} lacks {absent}; run `paperlib prune` on that dataset first")
    if base_val_acc is None:
        base_val_acc = read_json(folder / "metrics.json")["val_acc"]
    return fusion_rows(read_parquet(folder / "signals.parquet"), read_parquet(folder / "curves.parquet"),
                       base_val_acc, dataset_name_of(folder))


def single_signal_folders(runs_root: str | Path) -> dict[str, Path]:
    """Dataset name -> run folder, for every folder under ``runs_root`` holding single-signal runs."""
    root = Path(runs_root)
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        curves, signals = folder / "curves.parquet", folder / "signals.parquet"
        if curves.is_file() and signals.is_file() and (folder / "metrics.json").is_file():
            strategies = read_parquet(curves, columns=["strategy"])["strategy"]
            if strategies.isin(SIGNALS).any():
                found[dataset_name_of(folder)] = folder
    return found


def rows_for(protocol: str, dataset: str, runs_root: str | Path) -> pd.DataFrame:
    """Training rows for fusion on ``dataset``.

    within: that dataset's rows.  transfer: the rows of every other dataset under ``runs_root`` with
    single-signal runs (leave-one-dataset-out); ``dataset`` contributes none."""
    folders = single_signal_folders(runs_root)
    if _protocol(protocol) == "within":
        if dataset not in folders:
            raise PaperlibError(f"no single-signal runs for {dataset!r} under {str(runs_root)!r}; "
                                f"run `paperlib prune --dataset {dataset}` first")
        return dataset_rows(folders[dataset])
    others = [name for name in folders if name != dataset]
    if not others:
        raise PaperlibError(f"the transfer protocol needs single-signal runs of at least one dataset other than "
                            f"{dataset!r} under {str(runs_root)!r}; run `paperlib prune` on another dataset first")
    rows = pd.concat([dataset_rows(folders[name]) for name in others], ignore_index=True)
    assert not (rows["dataset"] == dataset).any()  # leave-one-dataset-out
    return rows


# ---------------------------------------------------------------- models

def fit_fusion(rows: pd.DataFrame, kind: str, seed: int = 0):
    """Fit ``Pipeline(StandardScaler, LinearRegression | RandomForestRegressor(200, random_state=seed))``
    on the 12 feature columns -> ``target``.  The pipeline pickles and predicts on z-scored signals."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    kind = _kind(kind)
    if len(rows) < 2:
        raise PaperlibError(f"fusion needs at least 2 rows to fit, got {len(rows)}; run the single-signal strategies first")
    model = LinearRegression() if kind == "lr" else RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=1)
    pipe = Pipeline([("scale", StandardScaler()), (kind, model)])
    pipe.fit(rows[list(SIGNALS)].astype(float), rows["target"].astype(float))
    return pipe


def fusion_weights(lr_pipe, rf_pipe) -> pd.DataFrame:
    """Which signals the fusion trusts: LR coefficients and RF impurity importances, one row per signal.

    ``lr_coefficient`` is per standard deviation of the feature (the scaler's units), so the twelve
    are comparable: positive = a high z-scored signal predicts a smaller loss (a safer removal)."""
    return pd.DataFrame({
        "signal": list(SIGNALS),
        "category": [CATEGORY[s] for s in SIGNALS],
        "lr_coefficient": np.asarray(lr_pipe[-1].coef_, dtype=float),
        "rf_importance": np.asarray(rf_pipe[-1].feature_importances_, dtype=float),
    })


def fusion_strategy(pipe, name: str) -> Strategy:
    """A pruning strategy that removes the layer with the highest predicted accuracy change."""
    return Strategy(name, "fusion", "fusion", "highest", predictor=pipe.predict)


# ---------------------------------------------------------------- stage

@dataclass
class FusionResult:
    """What ``run_fusion`` produced: rows, training rows, fitted pipelines, weights and fusion curves."""

    protocol: str
    rows: pd.DataFrame
    train_rows: pd.DataFrame
    pipelines: dict = field(repr=False)
    weights: pd.DataFrame
    curves: pd.DataFrame


def run_fusion(run, protocol: str = "within", runs_root=None, progress=None, signal_fn=None,
               pruner=None) -> FusionResult:
    """Build and save this dataset's fusion rows, fit LR and RF, prune with them.

    Writes ``fusion_rows.parquet``, ``fusion_<protocol>.joblib`` (both pipelines and the datasets they
    were trained on), ``fusion_weights.csv`` (one block per protocol) and appends the fusion curves to
    curves.parquet through ``pruning.run_pruning`` (which skips curves already there, so refitting on
    new rows does not redo a finished fusion curve: delete its rows to redo it).  ``signal_fn`` and
    ``pruner`` pass through to the engine (a shared ``Pruner`` reuses its cached signals)."""
    from .pruning import run_pruning

    protocol = _protocol(protocol)
    folder = Path(run.folder)
    runs_root = Path(runs_root) if runs_root is not None else folder.parent
    dataset = dataset_name_of(folder)
    rows = dataset_rows(folder, run.metrics["val_acc"])
    write_parquet(rows, folder / "fusion_rows.parquet")
    train_rows = rows if protocol == "within" else rows_for("transfer", dataset, runs_root)
    seed = int(getattr(run.preset, "seed", 0))
    pipes = {kind: fit_fusion(train_rows, kind, seed) for kind in KINDS}
    _save_pipelines(pipes, protocol, train_rows, folder / f"fusion_{protocol}.joblib")
    weights = fusion_weights(pipes["lr"], pipes["rf"])
    weights.insert(0, "protocol", protocol)
    weights.insert(0, "dataset", dataset)
    _save_weights(weights, folder / "fusion_weights.csv")
    strategies = [fusion_strategy(pipes[k], strategy_name(k, protocol)) for k in KINDS]
    curves = run_pruning(run, strategies, progress=progress, signal_fn=signal_fn, pruner=pruner)
    names = [s.name for s in strategies]
    curves = curves[curves["strategy"].isin(names)].reset_index(drop=True)
    return FusionResult(protocol, rows, train_rows, pipes, weights, curves)


def _save_pipelines(pipes: dict, protocol: str, train_rows: pd.DataFrame, path: Path) -> None:
    import joblib

    payload = {"protocol": protocol, "trained_on": sorted(train_rows["dataset"].dropna().unique().tolist()),
               "n_rows": len(train_rows), "features": list(SIGNALS), **pipes}
    with atomic_path(path) as tmp:
        joblib.dump(payload, tmp)


def load_pipelines(folder: str | Path, protocol: str = "within") -> dict:
    """The saved ``{'lr', 'rf', 'protocol', 'trained_on', ...}`` of ``run_fusion``."""
    import joblib

    path = Path(folder) / f"fusion_{_protocol(protocol)}.joblib"
    if not path.is_file():
        raise PaperlibError(f"{str(path)!r} does not exist; run `paperlib fuse --protocol {protocol}` first")
    return joblib.load(path)


def _save_weights(weights: pd.DataFrame, path: Path) -> None:
    """Replace this protocol's block of fusion_weights.csv, keep the other protocol's."""
    with run_lock(path.parent):
        if path.is_file():
            old = pd.read_csv(path)
            old = old[old["protocol"] != weights["protocol"].iloc[0]]
            weights = pd.concat([old, weights], ignore_index=True) if not old.empty else weights
        write_csv(weights, path)


def fuse_command(run, protocol: str = "within", runs_root=None, progress=None) -> FusionResult:
    """``paperlib fuse``: fit, prune, print the weights and the fusion curves' best accuracies."""
    result = run_fusion(run, protocol, runs_root, progress)
    trained_on = sorted(result.train_rows["dataset"].dropna().unique())
    print(f"{dataset_name_of(run.folder)}: fusion ({protocol}) fitted on {len(result.train_rows)} rows "
          f"from {', '.join(map(str, trained_on))}")
    with pd.option_context("display.width", 120, "display.float_format", "{:.4f}".format):
        print(result.weights.drop(columns=["dataset", "protocol"]).to_string(index=False))
    print(f"original: val acc {run.metrics['val_acc']:.4f}, test acc {run.metrics['test_acc']:.4f}")
    for name, curve in result.curves.groupby("strategy", sort=False):
        curve = curve.sort_values("step")
        best = curve.iloc[int(np.argmax(curve["test_acc"].to_numpy()))]
        print(f"{name}: best test acc {best['test_acc']:.4f} at k={int(best['step'])} "
              f"(val {best['val_acc']:.4f}); removal order {curve['removed'].astype(int).tolist()}")
    return result
