"""A dataset's capped splits: ``Splits``, SPEC 2's split rules and caps (``make_splits``), and the parquet file
that caches a hub dataset's splits (its path is keyed in ``data``).

Splits (SPEC 2): test = the source's test split, or a stratified 20 % of ``all.csv``; validation = a
stratified 10 % of train (at most 1,000); the rest is train.  Where that gives fewer than
``min(val_cap, 500)`` validation rows, validation takes that many (``validation_sizes``: from train while train
keeps half of all rows, then from test while test keeps as many rows as validation).  Preset caps then
subsample each split, deterministically and stratified.  Everything is seeded by ``preset.split_seed``, so the
same call gives the same rows, whatever the pipeline seed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import Preset
from .errors import PaperlibError


@dataclass
class Splits:
    """Three DataFrames with columns ``text`` and ``label`` (0..K-1), plus the class names."""

    name: str
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    class_names: list[str]
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def calibration(self, n: int, seed: int = 0) -> pd.DataFrame:
        """``n`` stratified examples of train: the calibration set of the signals (SPEC 2)."""
        return stratified_cap(self.train, n, seed)

    def fingerprint(self) -> str:
        h = hashlib.sha1()
        for part in (self.train, self.val, self.test):
            h.update(pd.util.hash_pandas_object(part[["text", "label"]], index=False).values.tobytes())
        return h.hexdigest()[:16]


def _save_splits_cache(splits: Splits, path: Path) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from .io import atomic_path

    frame = pd.concat(
        [df.assign(split=key) for key, df in (("train", splits.train), ("val", splits.val), ("test", splits.test))],
        ignore_index=True,
    )
    table = pa.Table.from_pandas(frame[["split", "text", "label"]], preserve_index=False)
    meta = {"class_names": splits.class_names, "source": splits.source, "fingerprint": splits.fingerprint()}
    table = table.replace_schema_metadata({b"paperlib": json.dumps(meta).encode()})
    try:
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    except OSError:
        pass  # a read-only cache is fine: the hub copy is read again next time


def _load_splits_cache(name: str, path: Path) -> Splits | None:
    """The cached splits, or None when absent or unreadable (then they are rebuilt and rewritten)."""
    import json

    import pyarrow.parquet as pq

    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"paperlib"])
        frame = table.to_pandas()
        parts = {
            key: frame.loc[frame["split"] == key, ["text", "label"]].reset_index(drop=True).astype({"label": "int64"})
            for key in ("train", "val", "test")
        }
        splits = Splits(name, parts["train"], parts["val"], parts["test"], list(meta["class_names"]), meta["source"])
    except Exception:
        return None
    return splits if splits.fingerprint() == meta.get("fingerprint") else None


def stratified_cap(df: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    """At most ``cap`` rows, chosen stratified by label and deterministically (seeded)."""
    if len(df) <= cap:
        return df.reset_index(drop=True)
    kept, _ = _stratified_split(df, cap, seed)
    return kept


def _stratified_split(df: pd.DataFrame, n_first: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``df`` into (n_first rows, the rest), each class in proportion (largest remainders)."""
    rng = np.random.default_rng(seed)
    labels = df["label"].to_numpy()
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n_first / len(df)
    take = np.floor(quota).astype(int)
    short = n_first - take.sum()
    order = np.lexsort((classes, -(quota - take)))  # largest remainder first, ties by class id
    take[order[:short]] += 1
    first = []
    for cls, k in zip(classes, take):
        idx = np.flatnonzero(labels == cls)
        first.extend(rng.permutation(idx)[:k].tolist())
    first = np.sort(np.array(first, dtype=int))
    mask = np.zeros(len(df), dtype=bool)
    mask[first] = True
    return df[mask].reset_index(drop=True), df[~mask].reset_index(drop=True)


VAL_MIN = 500  # validation rows wanted wherever the data allows (ours, issue 19): one row is 0.2 points
TRAIN_SHARE = 0.5  # carving validation never leaves train with less than this share of all rows


def validation_sizes(n_train: int, n_test: int, val_cap: int) -> tuple[int, int]:
    """(rows of validation taken from train, taken from test), given the rows of train and test before validation.

    The default (SPEC 2): 10 % of train, at most 1,000, none from test.  Where that is below
    V = min(val_cap, VAL_MIN), validation is V rows where the data allows: from train while train keeps at least
    TRAIN_SHARE of all n_train + n_test rows, then from test while test keeps at least as many rows as
    validation (test is cut only where train would fall below its share; yelp's 1,000 + 1,000 rows give
    1,000 / 500 / 500).

    >>> validation_sizes(2094, 524, 1000)  # arxiv's all.csv: 500 from train
    (500, 0)
    >>> validation_sizes(1000, 1000, 1000)  # yelp: train keeps its half, validation comes from test
    (0, 500)
    """
    default = min(1000, int(round(0.1 * n_train)))
    wanted = min(val_cap, VAL_MIN)
    if default >= wanted:
        return default, 0
    from_train = min(wanted, max(0, n_train - math.ceil(TRAIN_SHARE * (n_train + n_test))))
    from_test = min(wanted - from_train, max(0, (n_test - from_train) // 2))
    return (from_train, from_test) if from_train + from_test > default else (default, 0)


def _with_texts(df: pd.DataFrame, texts) -> pd.DataFrame:
    """``df`` (label, row, origin) with each row's text read by ``texts(origin, rows)``, one call per source split."""
    out = np.empty(len(df), dtype=object)
    rows, origin = df["row"].to_numpy(), df["origin"].to_numpy()
    for key in dict.fromkeys(origin):  # in order of first appearance
        idx = np.flatnonzero(origin == key)
        out[idx] = [str(t) for t in texts(key, rows[idx])]
    return pd.DataFrame({"text": out, "label": df["label"].to_numpy()})


def _check_labels(df: pd.DataFrame, name: str, where: str) -> pd.DataFrame:
    df = df.copy()
    if not pd.api.types.is_integer_dtype(df["label"]):
        converted = pd.to_numeric(df["label"], errors="coerce")
        if converted.isna().any() or (converted % 1 != 0).any():
            bad = df["label"][converted.isna() | (converted % 1 != 0)].iloc[0]
            raise PaperlibError(f"dataset {name!r}: {where} has a non-integer label {bad!r}; labels must be 0..K-1")
        df["label"] = converted.astype(int)
    df["label"] = df["label"].astype("int64")
    if "text" in df:
        df["text"] = df["text"].astype(str)
    return df


def make_splits(
    name: str,
    train: pd.DataFrame | None,
    test: pd.DataFrame | None,
    all_rows: pd.DataFrame | None,
    class_names: list[str] | None,
    preset: Preset,
    source: str,
    seed: int = 0,
    texts=None,
) -> Splits:
    """Apply SPEC 2's split rules and the preset's caps, with the checks users need.

    With ``texts``, the frames hold ``label`` and ``row`` (the row's index in its source split) but no
    text: rows are chosen on labels alone, then ``texts(source split, rows)`` reads the kept rows' texts,
    so a large hub split is never read whole.  The rows chosen are the same either way."""
    frames = {
        k: _check_labels(v, name, k) for k, v in (("train", train), ("test", test), ("all", all_rows)) if v is not None
    }
    labels = np.unique(np.concatenate([f["label"].to_numpy() for f in frames.values()]))
    k = int(labels.max()) + 1 if len(labels) else 0
    if len(labels) < 2:
        raise PaperlibError(f"dataset {name!r} has {len(labels)} class(es); classification needs at least 2")
    if labels.min() != 0 or k != len(labels) or not np.array_equal(labels, np.arange(k)):  # k first: no huge arange
        raise PaperlibError(
            f"dataset {name!r}: labels must be 0..K-1 with every class present; found {labels.tolist()[:20]}"
        )
    if class_names is None:
        class_names = [str(i) for i in range(k)]
    if len(class_names) != k:
        raise PaperlibError(f"dataset {name!r}: {len(class_names)} class names for {k} classes (check labels.txt)")
    frames = {k: v.assign(origin=k) for k, v in frames.items()}  # the source split of every row (hub texts)
    if "all" in frames:
        n_test = int(round(0.2 * len(frames["all"])))
        test_df, train_df = _stratified_split(frames["all"], n_test, seed)
    else:
        train_df, test_df = frames["train"], frames["test"]
    from_train, from_test = validation_sizes(len(train_df), len(test_df), preset.val_cap)
    val_df, train_df = _stratified_split(train_df, from_train, seed + 1)
    if from_test:
        val_extra, test_df = _stratified_split(test_df, from_test, seed + 2)
        val_df = pd.concat([val_df, val_extra], ignore_index=True)
    train_df = stratified_cap(train_df, preset.train_cap, seed)
    val_df = stratified_cap(val_df, preset.val_cap, seed)
    test_df = stratified_cap(test_df, preset.test_cap, seed)
    if texts is not None:
        train_df, val_df, test_df = (_with_texts(df, texts) for df in (train_df, val_df, test_df))
    train_df, val_df, test_df = (df[["text", "label"]] for df in (train_df, val_df, test_df))
    _check_texts_and_classes(name, {"train": train_df, "val": val_df, "test": test_df}, class_names)
    need = {"train": max(preset.n_calib, 2 * k), "val": k, "test": k}
    for split, df in (("train", train_df), ("val", val_df), ("test", test_df)):
        if len(df) < need[split]:
            raise PaperlibError(
                f"dataset {name!r} has too few rows: its {split} split holds {len(df)} rows but at least "
                f"{need[split]} are needed (n_calib={preset.n_calib}, {k} classes); use more data or a smaller preset"
            )
    return Splits(name, train_df, val_df, test_df, list(class_names), source)


def _check_texts_and_classes(name: str, parts: dict[str, pd.DataFrame], class_names) -> None:
    """A split whose texts are all empty, or a validation/test class with no training example, is an error
    (the first gives a model nothing to read; the second cannot be learnt, only counted wrong)."""
    for split, df in parts.items():
        if len(df) and not df["text"].astype(str).str.strip().astype(bool).any():
            raise PaperlibError(
                f"dataset {name!r}: every text of its {split} split is empty or whitespace; check the text column"
            )
    seen = set(parts["train"]["label"].tolist())
    for split in ("val", "test"):
        unseen = sorted(set(parts[split]["label"].tolist()) - seen)
        if unseen:
            shown = [f"{c} ({class_names[c]})" for c in unseen[:10]]
            raise PaperlibError(
                f"dataset {name!r}: class(es) {shown} of its {split} split have no training example; add training "
                f"rows of those classes (or drop them from the {split} data)"
            )
