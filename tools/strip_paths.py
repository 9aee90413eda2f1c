"""Strip absolute paths of the machine that wrote them from committed text files (JSON, CSV, notebooks, Markdown).

    python tools/strip_paths.py results figures notebooks     # rewrite in place; prints what changed

A data source ``local:/any/where/<folder>`` becomes ``local:<folder>`` (the folder's name, relative to the data
dir); any other absolute path (``paperlib.notebook_run.ABSOLUTE_PATH``) is shown as ``paperlib.paths.display_path``
shows it (relative to the repository, ``~/...``, or ``.../<parent>/<name>``).  Binary files are left alone; the
test ``tests/test_paths.py`` checks them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from paperlib.notebook_run import ABSOLUTE_PATH, clean_notebook_file  # noqa: E402
from paperlib.paths import display_path  # noqa: E402

TEXT = {".json", ".csv", ".md", ".txt", ".html", ".ipynb", ".tsv", ".log"}
LOCAL_SOURCE = re.compile(r"local:(/[^\s\"',]+)")


def strip(text: str) -> str:
    text = LOCAL_SOURCE.sub(lambda m: "local:" + m.group(1).rstrip("/").rsplit("/", 1)[-1], text)
    return ABSOLUTE_PATH.sub(lambda m: display_path(m.group(0)) if m.group(0).startswith("/") else "...", text)


def main(folders) -> int:
    changed = 0
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if not path.is_file() or path.suffix not in TEXT:
                continue
            if path.suffix == ".ipynb":
                before = path.read_text()
                clean_notebook_file(path)
                if path.read_text() != before:
                    changed += 1
                    print(f"stripped: {display_path(path)}")
                continue
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
            new = strip(text)
            if new != text:
                path.write_text(new, encoding="utf-8", errors="surrogateescape")
                changed += 1
                print(f"stripped: {display_path(path)}")
    print(f"{changed} file(s) changed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["results", "figures", "notebooks"]))
