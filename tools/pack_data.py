"""Pack the local datasets for the GPU machine: every CSV of the nine paper datasets with each text cut to
``--chars`` characters (1,000 by default: more than max_length 128-256 tokens reach), as ``data/<folder>/*.csv``
in one tar.xz.  Usage: python tools/pack_data.py SRC_DATA_DIR OUT.tar.xz [--chars 1000]"""

import argparse
import tarfile
import tempfile
from pathlib import Path

import pandas as pd

from paperlib.config import PAPER_DATASETS
from paperlib.data import REGISTRY


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--chars", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        for name in PAPER_DATASETS:
            folder = REGISTRY[name].local_folder
            (root / folder).mkdir(parents=True)
            for csv in sorted((Path(args.src) / folder).glob("*.csv")):
                df = pd.read_csv(csv, keep_default_na=False)
                for col in [c for c in ("text", *REGISTRY[name].text_columns) if c in df]:
                    df[col] = df[col].astype(str).str.slice(0, args.chars)
                df.to_csv(root / folder / csv.name, index=False)
        with tarfile.open(args.out, "w:xz") as tar:
            tar.add(root, arcname="data")
    print(f"{args.out}: {Path(args.out).stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
