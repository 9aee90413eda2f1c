"""How many texts a tokenizer cuts at ``max_length``: per dataset of a data folder, the share of texts longer than
each length (special tokens counted, as ``paperlib.tokens.encode`` truncates), the median token count, and how many
characters the longest length's prefix needs (what ``tools/pack_data.py --chars`` must keep).  Prints markdown.

    python tools/truncation.py [--data-dir /work/shared/datasets] [--lengths 128,256] [--tokenizer minilm]

``--tokenizer``: ``minilm`` (the embedded all-MiniLM-L6-v2), a checkpoint folder (e.g. the MPNet folder of
``tools/fetch_mpnet.sh``) or a hub id; give several, comma-separated, for one table each.  Every row of the
dataset's local copy counts (train and test, or all.csv), with SPEC 2's text."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paperlib.config import PAPER_DATASETS  # noqa: E402
from paperlib.data import REGISTRY, _read_local_folder  # noqa: E402
from paperlib.models import load_tokenizer  # noqa: E402
from tools.readme_results import markdown  # noqa: E402


def texts_of(data_dir: Path, name: str) -> list[str]:
    train, test, all_rows, _ = _read_local_folder(data_dir / REGISTRY[name].local_folder, name)
    frames = [f for f in (train, test, all_rows) if f is not None]
    return pd.concat(frames, ignore_index=True)["text"].astype(str).tolist()


def token_stats(texts: list[str], tokenizer, lengths: list[int], batch: int = 512) -> dict:
    """Token counts with special tokens (no truncation) and the character end of the ``max(lengths)``-token prefix."""
    counts, ends = [], []
    longest = max(lengths)
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        enc = tokenizer(chunk, truncation=False, add_special_tokens=True, return_offsets_mapping=True, verbose=False)
        for ids, offsets in zip(enc["input_ids"], enc["offset_mapping"]):
            counts.append(len(ids))
            # the last real token inside the prefix (special tokens have the offset (0, 0))
            inside = [end for _, end in offsets[: longest - 1] if end > 0]
            ends.append(max(inside) if inside else 0)
    counts, ends = np.array(counts), np.array(ends)
    row = {"texts": len(counts), "median tokens": int(np.median(counts))}
    for n in lengths:
        row[f"cut at {n}"] = f"{100 * float((counts > n).mean()):.1f} %"
    row[f"chars for {longest} tokens (p99 / max)"] = f"{int(np.percentile(ends, 99)):,} / {int(ends.max()):,}"
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("PAPERLIB_DATA_DIR", "/work/shared/datasets"))
    ap.add_argument("--lengths", default="128,256", help="comma list of max_length values")
    ap.add_argument("--tokenizer", default="minilm", help="minilm, a checkpoint folder or a hub id (comma list)")
    ap.add_argument("--datasets", default=",".join(PAPER_DATASETS))
    args = ap.parse_args()
    lengths = sorted(int(n) for n in args.lengths.split(","))
    for name in args.tokenizer.split(","):
        tokenizer = load_tokenizer(name)
        rows = {d: token_stats(texts_of(Path(args.data_dir), d), tokenizer, lengths) for d in args.datasets.split(",")}
        table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("dataset")
        print(f"\nTruncation by the {Path(name).name} tokenizer (share of texts longer than max_length tokens)\n")
        print(markdown(table))


if __name__ == "__main__":
    main()
