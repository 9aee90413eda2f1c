"""The train / validation / test sizes a preset actually uses per dataset (SPEC 2's splits, the validation floor and
the preset's caps), read by ``paperlib.data.load_splits`` from a data folder.  Prints markdown (the README table).

    python tools/split_sizes.py [--preset paper] [--data-dir /work/shared/datasets] [--datasets all]

"source" is the local copy's files (train + test, or all.csv); "val from test" counts the validation rows that the
floor of ``splits.validation_sizes`` took from the source's test split (where train would otherwise drop below half)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paperlib.config import PAPER_DATASETS, get_preset  # noqa: E402
from paperlib.data import REGISTRY, _read_local_folder, load_splits  # noqa: E402
from paperlib.splits import validation_sizes  # noqa: E402
from tools.readme_results import markdown  # noqa: E402


def sizes(name: str, preset, data_dir: Path) -> dict:
    train, test, all_rows, _ = _read_local_folder(data_dir / REGISTRY[name].local_folder, name)
    if all_rows is not None:
        n_test = int(round(0.2 * len(all_rows)))
        source, n_train = f"all.csv {len(all_rows):,}", len(all_rows) - n_test
    else:
        source, n_train, n_test = f"{len(train):,} + {len(test):,}", len(train), len(test)
    splits = load_splits(name, preset, data_dir)
    return {
        "source": source,
        "train": f"{len(splits.train):,}",
        "val": f"{len(splits.val):,}",
        "test": f"{len(splits.test):,}",
        "val from test": f"{validation_sizes(n_train, n_test, preset.val_cap)[1]:,}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--data-dir", default=os.environ.get("PAPERLIB_DATA_DIR", "/work/shared/datasets"))
    ap.add_argument("--datasets", default="all", help="'all' (the nine) or a comma list")
    args = ap.parse_args()
    preset = get_preset(args.preset)
    names = PAPER_DATASETS if args.datasets == "all" else args.datasets.split(",")
    table = pd.DataFrame.from_dict(
        {n: sizes(n, preset, Path(args.data_dir)) for n in names}, orient="index"
    ).rename_axis("dataset")
    print(
        f"Splits of the {preset.name} preset (caps {preset.train_cap:,} / {preset.val_cap:,} / {preset.test_cap:,}, "
        f"split_seed {preset.split_seed})\n"
    )
    print(markdown(table))


if __name__ == "__main__":
    main()
