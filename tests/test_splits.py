"""Validation sets that can decide (SPEC 2, issue 19): the validation floor's sizes on a small and a large dataset
worked out by hand, the rows it takes from test, and the class names surviving tools/pack_data.py."""

from __future__ import annotations

import subprocess
import sys
import tarfile

import numpy as np
import pandas as pd
import pytest

from paperlib.config import get_preset
from paperlib.data import load_splits
from paperlib.splits import validation_sizes

from support import REPO


def frame(counts: dict[int, int], tag: str) -> pd.DataFrame:
    rows = [(f"{tag} {i} class{label}", label) for label, n in counts.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["text", "label"]).sample(frac=1.0, random_state=0).reset_index(drop=True)


def write(folder, **frames):
    folder.mkdir(parents=True)
    for name, df in frames.items():
        df.to_csv(folder / f"{name}.csv", index=False)
    return folder


UNCAPPED = get_preset("tiny", train_cap=100_000, val_cap=100_000, test_cap=100_000, n_calib=8)


def test_a_large_dataset_keeps_the_default_split(tmp_path):
    """train 12,000 + test 3,000: 10 % of train is 1,200 > 1,000, so validation is 1,000 rows of train, as before."""
    folder = write(tmp_path / "big", train=frame({0: 6000, 1: 6000}, "tr"), test=frame({0: 1500, 1: 1500}, "te"))
    s = load_splits(str(folder), UNCAPPED)
    assert (len(s.train), len(s.val), len(s.test)) == (11_000, 1_000, 3_000)
    assert set(s.val["text"]) <= {f"tr {i} class{c}" for c in (0, 1) for i in range(6000)}
    assert validation_sizes(12_000, 3_000, 100_000) == (1_000, 0)
    # a dataset whose 10 % already reach 500: 5,000 train rows -> 500, nothing changes
    assert validation_sizes(5_000, 5_000, 1_000) == (500, 0)


def test_a_small_train_split_gives_validation_rows_of_test(tmp_path):
    """train 1,000 + test 1,000 (yelp's local copy): 10 % of train is 100 < 500; train may not fall below half of
    the 2,000 rows, so no row of train moves; test gives 500 rows while it keeps as many as validation:
    1,000 / 500 / 500."""
    counts = {0: 200, 1: 200, 2: 200, 3: 200, 4: 200}
    train, test = frame(counts, "tr"), frame(counts, "te")
    folder = write(tmp_path / "small", train=train, test=test)
    s = load_splits(str(folder), UNCAPPED)
    assert (len(s.train), len(s.val), len(s.test)) == (1_000, 500, 500)
    assert set(s.train["text"]) == set(train["text"])  # train whole
    assert set(s.val["text"]) | set(s.test["text"]) == set(test["text"])  # test split into validation and test
    assert not set(s.val["text"]) & set(s.test["text"])
    assert s.val["label"].value_counts().to_dict() == {c: 100 for c in counts}  # stratified
    # a cap below 500 is what validation wants: min(val_cap, 500)
    capped = load_splits(str(folder), get_preset("tiny", train_cap=100_000, val_cap=300, test_cap=100_000))
    assert (len(capped.train), len(capped.val), len(capped.test)) == (1_000, 300, 700)


@pytest.mark.parametrize(
    "n_train,n_test,val_cap,expected",
    [
        (2094, 524, 1000, (500, 0)),  # arxiv all.csv 2,618: train 1,594 >= 1,309 (half)
        (3989, 997, 1000, (500, 0)),  # patent all.csv 4,986
        (2400, 600, 1000, (500, 0)),  # yahoo all.csv 3,000
        (1780, 445, 200, (200, 0)),  # bbc_news under quick: the cap 200 is the floor
        (384, 96, 1000, (144, 0)),  # 480 rows: train keeps 240, so 144 rows of validation
        (700, 500, 1000, (100, 200)),  # 1,200 rows: 100 from train (it keeps 600), 200 from test (it keeps 300)
        (600, 600, 1000, (0, 300)),  # train is half already: 300 from test, which keeps 300
    ],
)
def test_validation_sizes_worked_out_by_hand(n_train, n_test, val_cap, expected):
    assert validation_sizes(n_train, n_test, val_cap) == expected


def test_hub_rows_carved_from_test_read_their_text_from_test(monkeypatch, tmp_path):
    """On the hub path the rows are chosen on labels alone; a validation row taken from test must read its text
    from the test split (each fake row's text names its split and row)."""
    datasets = pytest.importorskip("datasets")
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    from paperlib import data as data_mod

    monkeypatch.setenv("PAPERLIB_CACHE_DIR", str(tmp_path / "cache"))
    names = ["1 star", "2 star", "3 stars", "4 stars", "5 stars"]

    def split(name, n):
        labels = np.arange(n) % 5
        return Dataset.from_dict(
            {"label": labels, "text": [f"yelp {name} {i} class{y}" for i, y in enumerate(labels)]},
            features=Features({"label": ClassLabel(names=names), "text": Value("string")}),
        )

    fake = DatasetDict({"train": split("train", 1000), "test": split("test", 1000)})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: fake)
    monkeypatch.setattr(data_mod, "_hub_reachable", lambda *a, **k: True)
    s = load_splits("yelp", UNCAPPED)
    assert (len(s.train), len(s.val), len(s.test)) == (1_000, 500, 500)
    for part, origin in ((s.train, "train"), (s.val, "test"), (s.test, "test")):
        assert all(t.startswith(f"yelp {origin} ") for t in part["text"])
        assert all(t.endswith(f"class{y}") for t, y in zip(part["text"], part["label"]))  # text and label agree


def test_packed_data_keeps_the_class_names(tmp_path):
    """tools/pack_data.py on a copy laid out like ../shared/datasets: the packed folders load with their names."""
    from paperlib.config import PAPER_DATASETS
    from paperlib.data import REGISTRY

    src = tmp_path / "src"
    for name in PAPER_DATASETS:  # the nine folders, each with a SOURCE.md '## Labels' list as the shared copy has
        k = REGISTRY[name].num_classes
        folder = write(src / REGISTRY[name].local_folder, all=frame({c: 12 for c in range(k)}, name))
        labels = "\n".join(f"- {c}: {name}-class-{c}" for c in range(k))
        (folder / "SOURCE.md").write_text(f"# {name}\n\n## Labels\n{labels}\n\n## Caveats\n- none\n")
    (src / "yelp_review_full" / "all.csv").write_text(
        "text,label\n" + "\n".join(f"{'x' * 50} {i},{i % 5}" for i in range(60)) + "\n"
    )
    out = tmp_path / "data.tar.xz"
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "pack_data.py"), str(src), str(out), "--chars", "20"], check=True
    )
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "packed", filter="data")
    preset = get_preset("tiny", n_calib=4)
    for name in ("agnews", "yelp"):
        s = load_splits(name, preset, tmp_path / "packed" / "data")
        assert s.class_names == [f"{name}-class-{c}" for c in range(REGISTRY[name].num_classes)]
    texts = pd.read_csv(tmp_path / "packed" / "data" / "yelp_review_full" / "all.csv", keep_default_na=False)["text"]
    assert texts.str.len().max() == 20  # cut to --chars
