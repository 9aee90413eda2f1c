"""The shared first cell of notebooks 02-05: ``run = setup(DATASET, PRESET, RUNS, DATA_DIR, MODEL, SEED)``.

One call loads the run of that dataset and pipeline seed (``RUNS/seed-<SEED>/<dataset>/``; fine-tuning M_0 first
only where notebook 01 has not), sets the display options every notebook shares and prints the run folder as a
reader should see it (``paths.display_path``, never an absolute path of this machine)."""

from __future__ import annotations

DISPLAY_OPTIONS = {"display.precision": 4, "display.width": 160}


def setup(
    DATASET: str,
    PRESET: str,
    RUNS: str,
    DATA_DIR: str | None = None,
    MODEL: str | None = None,
    SEED: int = 0,
    progress: bool = False,
):
    """The ``Run`` of notebook parameters (named as the parameter cells name them): ``experiment.prepare`` of
    ``DATASET`` with preset ``PRESET`` and model ``MODEL`` (None: the preset's) in the runs folder ``RUNS`` (a
    relative path is taken from the repository root, ``paths.resolve_runs``) for pipeline seed ``SEED``."""
    import pandas as pd

    from .config import get_preset
    from .experiment import prepare
    from .paths import display_path, resolve_runs

    for option, value in DISPLAY_OPTIONS.items():
        pd.set_option(option, value)
    run = prepare(DATASET, MODEL, get_preset(PRESET), resolve_runs(RUNS), DATA_DIR, progress=progress, seed=SEED)
    print(f"run folder: {display_path(run.folder)}")
    return run
