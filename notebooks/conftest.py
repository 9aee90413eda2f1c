"""nbval re-executes the notebooks from scratch: a fresh, empty runs root, fp32, the embedded data.

``pytest notebooks --nbval-lax`` starts one kernel per notebook.  Before each notebook's kernel starts,
its environment gets (``paperlib.notebook_run.check_environment``, which ``tools/refresh_notebooks.py``
uses too, so the committed outputs are made the way they are checked)

* ``PAPERLIB_ROOT``: one temporary folder for the whole session, empty at the start, so the notebooks'
  ``RUNS = "runs/quick"`` is a new folder and every checked number is recomputed (01 fine-tunes, 02-05
  read what the earlier notebooks of this session wrote, 06 tabulates them);
* ``PAPERLIB_PRECISION=fp32``: the declared precision of the checked numbers (notebook 01 says so);
* ``PAPERLIB_QUIET=1`` and a cache folder inside the root; ``PAPERLIB_DATA_DIR`` removed, so the
  notebooks' default dataset is the embedded one whatever the user's shell selects.

The variables are set only around notebook items (``pytest_runtest_setup``/``teardown``): the unit
tests of the same session never see them.  The root is deleted at the end of the session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from paperlib.notebook_run import check_environment

_ROOT: Path | None = None
_SAVED: dict[str, str | None] = {}


def _is_notebook(item) -> bool:
    return str(getattr(item, "path", item.fspath)).endswith(".ipynb")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Runs before nbval starts a notebook's kernel (in the setup of its first cell), so the kernel inherits it."""
    global _ROOT
    if not _is_notebook(item):
        return
    if _ROOT is None:
        _ROOT = Path(tempfile.mkdtemp(prefix="paperlib-nbval-"))
    for name, value in check_environment(_ROOT).items():
        _SAVED.setdefault(name, os.environ.get(name))
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def pytest_runtest_teardown(item, nextitem):
    if not _is_notebook(item) or (nextitem is not None and _is_notebook(nextitem)):
        return
    for name, value in _SAVED.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _SAVED.clear()


def pytest_unconfigure(config):
    if _ROOT is not None:
        shutil.rmtree(_ROOT, ignore_errors=True)
