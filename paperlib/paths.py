"""Paths as a reader sees them, and where runs live: the repository root, runs folders, seed roots.

A runs folder holds one **seed root** per pipeline seed, ``<runs>/seed-<S>/``, each holding ``<dataset>/`` run
folders (SPEC 9).  Runs written before seeds existed hold the ``<dataset>/`` folders directly; ``seed_roots``
reads both layouts.  Nothing here imports another paperlib module but ``config`` (``runtime``) and ``io``: every
stage, the notebook runner and the report can use it."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT_ENV = "PAPERLIB_ROOT"  # read by config.runtime()
SEED_PREFIX = "seed-"
_SEED_DIR = re.compile(r"^seed-(\d+)$")


def repo_root() -> Path:
    """The repository root: ``$PAPERLIB_ROOT`` if set, else the folder above the package.

    Relative ``RUNS`` paths of the notebooks are taken from here; pointing ``$PAPERLIB_ROOT``
    elsewhere lets a notebook check (nbval) write its runs outside the checkout."""
    from .config import runtime

    return runtime().root or Path(__file__).resolve().parents[1]


def resolve_runs(runs: str | os.PathLike) -> Path:
    """A runs folder as an absolute path; a relative one is taken from the repository root.

    Notebooks run from ``notebooks/`` (nbval) or a run folder (papermill), so their default
    ``RUNS = "runs/quick"`` must not depend on the working directory."""
    path = Path(runs).expanduser()
    return path if path.is_absolute() else repo_root() / path


def display_path(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """``path`` as a reader should see it, never as an absolute path of this machine.

    Relative to ``root`` (default: the repository root, ``$PAPERLIB_ROOT`` when set), the checkout or the
    working directory when inside one of them; under the home folder as ``~/...``; anywhere else as
    ``.../<parent>/<name>``."""
    path = Path(path).expanduser()
    if not path.is_absolute():
        return path.as_posix()
    path = path.resolve()
    checkout = Path(__file__).resolve().parents[1]
    for base in (Path(root).expanduser().resolve() if root else repo_root(), checkout, Path.cwd().resolve()):
        if path == base:
            return "."
        if path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    home = Path.home().resolve()
    if path.is_relative_to(home) and path != home:
        return "~/" + path.relative_to(home).as_posix()
    return ".../" + "/".join(path.parts[-2:])


def portable_parameters(parameters: dict) -> dict:
    """Notebook parameters with every absolute path shown by ``display_path`` (what a notebook records)."""
    return {
        k: display_path(v) if isinstance(v, str) and Path(v).expanduser().is_absolute() else v
        for k, v in parameters.items()
    }


def seed_root(runs: str | os.PathLike, seed: int) -> Path:
    """The folder of one pipeline seed inside a runs folder: ``<runs>/seed-<seed>``."""
    return Path(runs) / f"{SEED_PREFIX}{int(seed)}"


def seed_roots(runs: str | os.PathLike) -> dict[int, Path]:
    """{seed: seed root} of a runs folder, in seed order.

    The ``seed-<S>`` folders when there are any; else, when ``runs`` holds run folders directly (the layout before
    seeds), ``{seed: runs}`` with the seed its run configs record (``preset.seed``, 0 when absent); else {}."""
    runs = Path(runs)
    if not runs.is_dir():
        return {}
    found = {int(m[1]): p for p in runs.iterdir() if p.is_dir() and (m := _SEED_DIR.match(p.name))}
    if found:
        return dict(sorted(found.items()))
    configs = sorted(p / "config.json" for p in runs.iterdir() if p.is_dir() and (p / "config.json").is_file())
    if not configs:
        return {}
    from .io import read_json

    return {int(read_json(configs[0]).get("preset", {}).get("seed", 0)): runs}
