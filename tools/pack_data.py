"""Pack the local datasets for the GPU machine: every CSV of the nine paper datasets with each text cut to
``--chars`` characters, beside the folder's SOURCE.md and labels.txt (the class names: without them every run
config on the GPU machine says "0", "1", ...), as ``data/<folder>/`` in one tar.xz.

    python tools/pack_data.py SRC_DATA_DIR OUT.tar.xz [--chars 2000]

2,000 characters (the default) keep every text whole up to 256 tokens: ``tools/truncation.py`` measures at most
1,691 characters for a 256-token prefix on ../shared/datasets (newsgroup); 1,000, the old default, cut texts
that 256 tokens would have kept.  ``--chars 0`` keeps every text whole."""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paperlib.config import PAPER_DATASETS  # noqa: E402
from paperlib.data import REGISTRY  # noqa: E402

SIDE_FILES = ("SOURCE.md", "labels.txt")  # what load_splits reads the class names from


def pack_folder(src: Path, dest: Path, chars: int, columns: tuple[str, ...] = ()) -> None:
    """One dataset folder: its CSVs with the ``text`` column and the dataset's own text ``columns``
    (``DatasetInfo.text_columns``) cut to ``chars`` characters (0: whole), and its SOURCE.md / labels.txt as
    they are."""
    dest.mkdir(parents=True)
    for csv in sorted(src.glob("*.csv")):
        df = pd.read_csv(csv, keep_default_na=False)
        for col in [c for c in ("text", *columns) if chars and c in df]:
            df[col] = df[col].astype(str).str.slice(0, chars)
        df.to_csv(dest / csv.name, index=False)
    for name in SIDE_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--chars", type=int, default=2000, help="characters kept per text (0: all)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        for name in PAPER_DATASETS:
            folder = REGISTRY[name].local_folder
            pack_folder(Path(args.src) / folder, root / folder, args.chars, REGISTRY[name].text_columns)
        with tarfile.open(args.out, "w:xz") as tar:
            tar.add(root, arcname="data")
    print(f"{args.out}: {Path(args.out).stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
