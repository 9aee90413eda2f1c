"""Bootstrap intervals (SPEC 7): the paired bootstrap over test examples and the win / loss / tie call.

Every comparison of a dataset uses the same resamples (``bootstrap_weights`` is cached per size), so two
intervals of one table are directly comparable.  Vectorised: the resample means of m paired differences are
one (m x n) @ (n x resamples) product.

>>> import numpy as np
>>> a, b = np.array([1, 1, 1, 0]), np.array([0, 1, 1, 0])
>>> ci = paired_bootstrap(a, b, resamples=200)
>>> float(ci["diff"].iloc[0])  # mean of a - b
0.25
>>> call(float(ci["ci_low"].iloc[0]), float(ci["ci_high"].iloc[0]))  # 4 examples cannot decide
'tie'
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from .errors import PaperlibError

__all__ = ["BOOTSTRAP_SEED", "CI_LEVEL", "DEFAULT_RESAMPLES", "bootstrap_weights", "call", "paired_bootstrap"]


DEFAULT_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95


@functools.lru_cache(maxsize=4)
def bootstrap_weights(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(resamples x n) resampling weights: W[r, i] = (times example i is drawn in resample r) / n, the draws
    being ``numpy.random.default_rng(seed).integers(0, n, size=(resamples, n))``; W @ x is the resample mean.
    Cached (read-only): every comparison on n examples sees the same resamples."""
    if n < 1:
        raise PaperlibError("the bootstrap needs at least one test example")
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    counts = np.bincount((draws + n * np.arange(resamples)[:, None]).ravel(), minlength=resamples * n)
    weights = counts.reshape(resamples, n).astype(np.float64) / n
    weights.setflags(write=False)
    return weights


def paired_bootstrap(
    a,
    b,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """Paired bootstrap over examples of the accuracy difference of ``a`` minus ``b``.

    ``a``: (m, n) per-example scores of m models (1 = correct, 0 = wrong; a seed mean for Random), ``b``:
    (n,) or (m, n), the same examples in the same order.  Every row uses the same resamples (all
    comparisons of a dataset see the same draws).  Returns, per row: diff = mean(a - b), ci_low and
    ci_high = the (1-level)/2 and (1+level)/2 percentiles of the resampled mean differences (numpy's
    linear interpolation).  Vectorised: one (m x n) @ (n x resamples) product."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    d = a - np.asarray(b, dtype=np.float64)
    w = bootstrap_weights(d.shape[1], resamples, seed) if weights is None else weights
    boot = d @ w.T  # (m, resamples)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2], axis=1)
    return pd.DataFrame({"diff": d.mean(1), "ci_low": lo, "ci_high": hi})


def call(ci_low: float, ci_high: float) -> str:
    """'win' when the interval lies above 0, 'loss' when below, 'tie' when it holds 0; '' without one."""
    if pd.isna(ci_low) or pd.isna(ci_high):
        return ""
    return "win" if ci_low > 0 else "loss" if ci_high < 0 else "tie"
