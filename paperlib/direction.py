"""The direction check (SPEC 3): does each signal's SPEC direction beat its flip on the validation curves, with a
paired interval over seeds and validation examples (``direction_check``), and its signals x datasets view."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .results import DatasetResults
from .stats import BOOTSTRAP_SEED, CI_LEVEL, DEFAULT_RESAMPLES
from .strategies import FLIPPED, REFERENCE_SIGNALS, SIGNALS
from .tables import compare_pairs, dataset_curve_mean, dataset_order, view_scores


def direction_check(
    results: list[DatasetResults],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> pd.DataFrame:
    """Does SPEC 3's direction beat its flip?  Per (signal, dataset) with both curves: the VALIDATION
    curve mean (averaged over seeds) of '<signal>' and of '<signal> (flipped)' (``paperlib prune --strategies
    flipped``), their difference, its two-level interval over seeds and validation examples and a verdict:
    'SPEC' (above 0 on a majority of seeds too), 'flip' (below), 'tie'; without predictions the sign of the
    point estimate decides, in parentheses.  Signals without a flipped run are left out.
    Columns: signal, dataset, spec_val_mean, flipped_val_mean, diff, ci_low, ci_high, agree, verdict."""
    rows = []
    for res in results:
        val = dataset_curve_mean(res, "val_acc")
        for signal in (*SIGNALS, *REFERENCE_SIGNALS):
            flipped = signal + FLIPPED
            if signal not in val.index or flipped not in val.index:
                continue
            spec, flip = float(val.loc[signal].mean()), float(val.loc[flipped].mean())
            a, b = (((name, "mean"), view_scores(res, name, "mean", "val")) for name in (signal, flipped))
            (c,) = compare_pairs(res, [(a, b)], "val", resamples, seed, level)
            lo = hi = agree = np.nan
            verdict = "(SPEC)" if spec > flip else "(flip)" if flip > spec else "(tie)"
            if c is not None:
                lo, hi, agree = c["ci_low"], c["ci_high"], c["agree"]
                verdict = {"win": "SPEC", "loss": "flip", "tie": "tie"}[c["call"]]
            rows.append(
                {
                    "signal": signal,
                    "dataset": res.name,
                    "spec_val_mean": spec,
                    "flipped_val_mean": flip,
                    "diff": spec - flip,
                    "ci_low": lo,
                    "ci_high": hi,
                    "agree": agree,
                    "verdict": verdict,
                }
            )
    columns = [
        "signal",
        "dataset",
        "spec_val_mean",
        "flipped_val_mean",
        "diff",
        "ci_low",
        "ci_high",
        "agree",
        "verdict",
    ]
    return pd.DataFrame(rows, columns=columns)


def direction_wide(check: pd.DataFrame) -> pd.DataFrame:
    """Signals x datasets: 'SPEC' / 'flip' / 'tie' with the difference in points, plus a count column."""
    if check.empty:
        return pd.DataFrame()
    cells = check.assign(cell=[f"{v} {100 * d:+.2f}" for v, d in zip(check["verdict"], check["diff"])])
    wide = cells.pivot(index="signal", columns="dataset", values="cell")
    wide = wide.reindex(
        index=[s for s in (*SIGNALS, *REFERENCE_SIGNALS) if s in wide.index], columns=dataset_order(wide.columns)
    ).fillna("")
    counts = check.groupby("signal")["verdict"].agg(
        lambda v: (
            f"SPEC {sum(x.strip('()') == 'SPEC' for x in v)}, "
            f"flip {sum(x.strip('()') == 'flip' for x in v)} of {len(v)}"
        )
    )
    wide["SPEC better / flip better"] = counts.reindex(wide.index)
    wide.columns.name = None
    return wide
