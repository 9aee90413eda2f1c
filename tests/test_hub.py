"""The hub path of SPEC 2 without a network: ``datasets.load_dataset`` returns in-memory DatasetDicts built
with each dataset's schema as on its hub dataset card (feature names, ClassLabel names, split names)."""

from __future__ import annotations

import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from paperlib import data as data_mod
from paperlib.config import get_preset
from paperlib.data import REGISTRY, load_splits
from paperlib.errors import PaperlibError
from paperlib.splits import make_splits

datasets = pytest.importorskip("datasets")
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value  # noqa: E402

TINY = get_preset("tiny")  # caps 80 / 40 / 40
STARS = ["1 star", "2 star", "3 stars", "4 stars", "5 stars"]

# name -> (hub id, config, splits, feature spec, class names, label column, text of a row from its columns)
# as on the dataset cards (huggingface.co/datasets/<id>); the text rule is SPEC 2's, written out here.
CARDS = {
    "newsgroup": (
        "SetFit/20_newsgroups",
        None,
        ("train", "test"),
        {"text": "string", "label": "int64", "label_text": "string"},
        [
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
        ],
        "label",
        lambda r: r["text"],
    ),
    "dbpedia": (
        "fancyzhx/dbpedia_14",
        None,
        ("train", "test"),
        {"label": "class", "title": "string", "content": "string"},
        [
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
        ],
        "label",
        lambda r: r["content"],
    ),
    "arxiv": (
        "ccdv/arxiv-classification",
        None,
        ("train", "validation", "test"),
        {"text": "string", "label": "class"},
        ["math.AC", "cs.CV", "cs.AI", "cs.SY", "math.GR", "cs.CE", "cs.PL", "cs.IT", "cs.DS", "cs.NE", "math.ST"],
        "label",
        lambda r: r["text"],
    ),
    "patent": (
        "ccdv/patent-classification",
        "abstract",
        ("train", "validation", "test"),
        {"text": "string", "label": "class"},
        [
            "Human Necessities",
            "Performing Operations; Transporting",
            "Chemistry; Metallurgy",
            "Textiles; Paper",
            "Fixed Constructions",
            "Mechanical Engineering; Lightning; Heating; Weapons; Blasting",
            "Physics",
            "Electricity",
            "General tagging of new or cross-sectional technology",
        ],
        "label",
        lambda r: r["text"],
    ),
    "yahoo": (
        "community-datasets/yahoo_answers_topics",
        None,
        ("train", "test"),
        {
            "id": "int32",
            "topic": "class",
            "question_title": "string",
            "question_content": "string",
            "best_answer": "string",
        },
        [
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
        ],
        "topic",
        lambda r: (r["question_title"] + " " + r["question_content"]) if r["question_content"] else r["question_title"],
    ),
    "yelp": (
        "Yelp/yelp_review_full",
        None,
        ("train", "test"),
        {"label": "class", "text": "string"},
        STARS,
        "label",
        lambda r: r["text"],
    ),
    "agnews": (
        "fancyzhx/ag_news",
        None,
        ("train", "test"),
        {"text": "string", "label": "class"},
        ["World", "Sports", "Business", "Sci/Tech"],
        "label",
        lambda r: r["text"],
    ),
    "imdb": (
        "stanfordnlp/imdb",
        None,
        ("train", "test", "unsupervised"),
        {"text": "string", "label": "class"},
        ["neg", "pos"],
        "label",
        lambda r: r["text"],
    ),
    "amazon": (
        "fancyzhx/amazon_polarity",
        None,
        ("train", "test"),
        {"label": "class", "title": "string", "content": "string"},
        ["negative", "positive"],
        "label",
        lambda r: r["title"] + ": " + r["content"],
    ),
}


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path):
    """Each test its own cache: a cached split from another test would hide the hub path under test."""
    monkeypatch.setenv("PAPERLIB_CACHE_DIR", str(tmp_path / "cache"))


def card_split(name: str, split: str, n: int, sort_by_label: bool = False) -> Dataset:
    """``n`` rows with the card's features; strings say which dataset, split, row and class they belong to."""
    _, _, _, spec, names, label_col, _ = CARDS[name]
    k = len(names)
    rng = np.random.default_rng(zlib.crc32(f"{name}/{split}".encode()))
    labels = np.sort(rng.integers(0, k, n)) if sort_by_label else rng.integers(0, k, n)
    if split == "unsupervised":
        labels = np.full(n, -1)
    cols, feats = {}, {}
    for col, kind in spec.items():
        if kind == "class":
            cols[col], feats[col] = labels, ClassLabel(names=names)
        elif col == label_col:
            cols[col], feats[col] = labels.astype(kind), Value(kind)
        elif col == "label_text":
            cols[col], feats[col] = [names[i] for i in labels], Value("string")
        elif kind == "int32":
            cols[col], feats[col] = np.arange(n, dtype=np.int32), Value("int32")
        else:  # every third question_content is empty, as some are on the hub
            empty = col == "question_content"
            cols[col] = [
                "" if empty and i % 3 == 0 else f"{name} {split} {col} {i} class{lab}" for i, lab in enumerate(labels)
            ]
            feats[col] = Value("string")
    return Dataset.from_dict(cols, features=Features(feats))


def fake_hub(monkeypatch, sizes=None, sorted_train=("dbpedia",)):
    """Patch datasets.load_dataset to serve the nine cards; returns the list of calls it saw."""
    calls = []
    built = {}

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        match = [n for n, c in CARDS.items() if c[0] == path and c[1] == name]
        if not match:
            raise FileNotFoundError(f"Couldn't find a dataset script or data files for {path!r} (config {name!r})")
        n = match[0]
        if n not in built:
            train_n, test_n = (sizes or {}).get(n, (3000, 1000))
            built[n] = DatasetDict(
                {
                    s: card_split(n, s, train_n if s == "train" else test_n, s == "train" and n in sorted_train)
                    for s in CARDS[n][2]
                }
            )
        return built[n]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(data_mod, "_hub_reachable", lambda *a, **k: True)
    return calls


@pytest.fixture
def no_row_reads(monkeypatch):
    """Any per-row read of a datasets.Dataset (iterating it or a lazy Column) fails the test."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("a hub column was read row by row")

    monkeypatch.setattr(datasets.Dataset, "__iter__", refuse)
    monkeypatch.setattr(datasets.arrow_dataset.Column, "__iter__", refuse)


def reference_splits(name: str, preset, seed: int):
    """What the local-folder path gives for the same rows: full frames with SPEC 2's text, then make_splits."""
    _, _, _, _, names, label_col, text_of = CARDS[name]
    frames = {}
    for split in ("train", "test"):
        ds = card_split(name, split, 3000 if split == "train" else 1000, split == "train" and name == "dbpedia")
        df = ds.to_pandas()
        frames[split] = pd.DataFrame({"text": [text_of(r) for r in df.to_dict("records")], "label": df[label_col]})
    return make_splits(name, frames["train"], frames["test"], None, names, preset, "reference", seed)


@pytest.mark.parametrize("name", list(CARDS))
def test_hub_dataset_gives_spec_texts_labels_and_class_names(name, monkeypatch, no_row_reads):
    calls = fake_hub(monkeypatch)
    splits = load_splits(name, TINY)
    assert calls == [CARDS[name][:2]]
    assert splits.class_names == CARDS[name][4] and REGISTRY[name].num_classes == len(CARDS[name][4])
    assert (len(splits.train), len(splits.val), len(splits.test)) == (80, 40, 40)
    ref = reference_splits(name, TINY, TINY.seed)
    for part in ("train", "val", "test"):
        pd.testing.assert_frame_equal(getattr(splits, part), getattr(ref, part))
    # each text is the row's own (its class tag agrees with its label) and comes from the right split
    for part, origin in (("train", "train"), ("val", "train"), ("test", "test")):
        df = getattr(splits, part)
        assert all(f" {origin} " in t for t in df["text"])
        assert all(t.rstrip().endswith(f"class{lab}") for t, lab in zip(df["text"], df["label"]))
    hub_id, config = CARDS[name][:2]
    assert splits.source == f"hub:{hub_id}" + (f"/{config}" if config else "")


def test_two_column_texts_are_joined_as_the_local_copies():
    yahoo, amazon = REGISTRY["yahoo"], REGISTRY["amazon"]
    frame = pd.DataFrame(
        {
            "question_title": ["Why?", "How"],
            "question_content": ["Because", None],
            "title": ["Great CD", "Meh"],
            "content": ["My lovely Pat", "ok"],
        }
    )
    assert data_mod.hub_texts(frame, yahoo).tolist() == ["Why? Because", "How"]
    assert data_mod.hub_texts(frame, amazon).tolist() == ["Great CD: My lovely Pat", "Meh: ok"]


def test_label_sorted_split_still_gives_every_class(monkeypatch, no_row_reads):
    fake_hub(monkeypatch)  # dbpedia's train split is sorted by class, as on the hub
    splits = load_splits("dbpedia", TINY)
    assert sorted(splits.train["label"].unique()) == list(range(14))


def test_200k_row_split_is_read_through_arrow_and_cached(monkeypatch, no_row_reads, tmp_path):
    """No per-row reads (no_row_reads) on a 200k-row split; the capped frames are cached as parquet and a
    later call reads that file without the hub."""
    calls = fake_hub(monkeypatch, sizes={"amazon": (200_000, 20_000)})
    paper = get_preset("paper")
    first = load_splits("amazon", paper)
    assert (len(first.train), len(first.val), len(first.test)) == (8000, 1000, 2000) and len(calls) == 1
    cached = list((tmp_path / "cache" / "splits").glob("amazon-*.parquet"))
    assert len(cached) == 1 and not list((tmp_path / "cache" / "splits").glob("*.tmp"))
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("the hub was read again"))
    again = load_splits("amazon", paper)
    for part in ("train", "val", "test"):
        pd.testing.assert_frame_equal(getattr(again, part), getattr(first, part))
    assert again.class_names == first.class_names and again.source == first.source
    # another seed is another cache entry
    calls2 = fake_hub(monkeypatch, sizes={"amazon": (200_000, 20_000)})
    other = load_splits("amazon", paper, seed=1)
    assert len(calls2) == 1 and other.fingerprint() != first.fingerprint()


def test_a_damaged_splits_cache_is_rebuilt(monkeypatch, tmp_path):
    calls = fake_hub(monkeypatch)
    first = load_splits("agnews", TINY)
    (path,) = (tmp_path / "cache" / "splits").glob("agnews-*.parquet")
    path.write_bytes(b"not a parquet file")
    again = load_splits("agnews", TINY)
    assert len(calls) == 2 and again.fingerprint() == first.fingerprint()
    # a valid parquet whose rows were edited does not match its recorded fingerprint: rebuilt too
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    df = table.to_pandas()
    df.loc[0, "text"] = "edited"
    import pyarrow as pa

    pq.write_table(pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(table.schema.metadata), path)
    assert load_splits("agnews", TINY).fingerprint() == first.fingerprint() and len(calls) == 3


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("Max retries exceeded\nwith url"),
        FileNotFoundError("no such dataset"),
        RuntimeError("Dataset scripts are no longer supported, but found imdb.py"),
    ],
)
def test_load_dataset_failure_is_one_error_naming_the_dataset_and_data_dir(exc, monkeypatch):
    fake_hub(monkeypatch)

    def fail(*a, **k):
        raise exc

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(PaperlibError) as info:
        load_splits("imdb", TINY)
    msg = str(info.value)
    assert "\n" not in msg and "'imdb'" in msg and "stanfordnlp/imdb" in msg and "--data-dir" in msg
    assert type(exc).__name__ in msg


def test_hub_class_names_that_differ_from_the_registry_are_an_error(monkeypatch):
    fake_hub(monkeypatch)
    orig = CARDS["agnews"]
    monkeypatch.setitem(CARDS, "agnews", orig[:4] + (["World", "Sports", "Business", "Science"],) + orig[5:])
    with pytest.raises(PaperlibError, match="class names"):
        load_splits("agnews", TINY)


# ---------------------------------------------------------------- the reachability probe


class _FakeHub(BaseHTTPRequestHandler):
    """Plays an HTTP proxy that answers for the hub: records the absolute URLs it is asked for."""

    seen: list[str] = []

    def do_GET(self):  # noqa: N802
        _FakeHub.seen.append(self.path)
        body = b'{"id": "stanfordnlp/imdb", "sha": "0" }'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_probe_goes_through_the_proxy_when_there_is_no_direct_route(monkeypatch):
    """HF_ENDPOINT is a host that cannot be resolved (no direct route); only the proxy on localhost answers."""
    import socket

    import huggingface_hub.constants as hub_constants
    from huggingface_hub.utils import _http

    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        proxy = f"http://127.0.0.1:{server.server_address[1]}"
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(var, raising=False)
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(var, proxy)
        monkeypatch.setenv("HF_ENDPOINT", "http://hub.example.invalid")
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(_http, "_GLOBAL_CLIENT", None, raising=False)  # a fresh client reads the proxy settings
        direct = []
        real_getaddrinfo = socket.getaddrinfo

        def no_direct_route(host, *a, **k):
            if host != "127.0.0.1":
                direct.append(host)
                raise socket.gaierror("no direct route")
            return real_getaddrinfo(host, *a, **k)

        monkeypatch.setattr(socket, "getaddrinfo", no_direct_route)
        _FakeHub.seen = []
        assert data_mod._hub_reachable("stanfordnlp/imdb", timeout=5) is True
        assert any("hub.example.invalid/api/datasets/stanfordnlp/imdb" in p for p in _FakeHub.seen), _FakeHub.seen
        assert direct == []
    finally:
        server.shutdown()
        server.server_close()
