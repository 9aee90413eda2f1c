"""Bootstrap intervals (SPEC 7): the paired bootstrap over test examples, the two-level bootstrap over
pipeline seeds and test examples, and the win / loss / tie call.

Every comparison of a dataset uses the same resamples (the weights are cached per size), so two intervals of one
table are directly comparable.  Vectorised: the resample means of m paired differences are one
(m x n) @ (n x resamples) product; with S seeds, one (m S x n) @ (n x resamples) product and a weighted sum over
the seeds.

Two levels (ours, SPEC 7).  A pipeline seed re-draws everything training decides (M_0's fine-tuning, the
calibration sample, Random, the forest, distillation); the test examples are the same texts in every seed.  A
resample draws S seeds with replacement and n test examples with replacement; the one example draw serves every
drawn seed and both arms of a comparison (paired).  The statistic is the mean over the drawn seeds of the mean
difference over the drawn examples, so its spread holds training noise (which seeds) and test-set noise (which
examples) together.  The examples are drawn once per resample, not anew within each drawn seed, because they
are shared: their sampling error is common to all seeds, and independent draws per seed would average it away
(three identical seeds would look sqrt(3) times more certain than one).  With one seed it is
``paired_bootstrap``, draw for draw.

>>> import numpy as np
>>> a, b = np.array([1, 1, 1, 0]), np.array([0, 1, 1, 0])
>>> ci = paired_bootstrap(a, b, resamples=200)
>>> float(ci["diff"].iloc[0])  # mean of a - b
0.25
>>> call(float(ci["ci_low"].iloc[0]), float(ci["ci_high"].iloc[0]))  # 4 examples cannot decide
'tie'
>>> seeds = np.array([[0.06] * 50, [-0.04] * 50, [0.05] * 50])  # 3 seeds, the same 50 examples each
>>> two = two_level_bootstrap(seeds, 0.0, resamples=2000).iloc[0]
>>> round(float(two["diff"]), 4), int(two["agree"]), seed_call(two["ci_low"], two["ci_high"], 2, 3)
(0.0233, 2, 'tie')
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from .errors import PaperlibError

__all__ = [
    "BOOTSTRAP_SEED",
    "CI_LEVEL",
    "DEFAULT_RESAMPLES",
    "ResampleMeans",
    "bootstrap_weights",
    "call",
    "paired_bootstrap",
    "seed_agreement",
    "seed_call",
    "seed_weights",
    "two_level_bootstrap",
]


DEFAULT_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
SEED_STREAM = 1  # the seed draws come from default_rng([seed, SEED_STREAM]): a stream apart from the examples'


def _read_only(weights: np.ndarray) -> np.ndarray:
    weights.setflags(write=False)
    return weights


@functools.lru_cache(maxsize=4)
def bootstrap_weights(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Resampling weights of the paired bootstrap over n examples.

    Parameters
    ----------
    n : int
        Number of examples (at least 1).
    resamples : int
        Number of bootstrap resamples.
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    numpy.ndarray
        (resamples, n), read-only and cached: W[r, i] = (times example i is drawn in resample r) / n, the draws
        being ``default_rng(seed).integers(0, n, size=(resamples, n))``; ``W @ x`` is the resample mean of x.
    """
    if n < 1:
        raise PaperlibError("the bootstrap needs at least one test example")
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    counts = np.bincount((draws + n * np.arange(resamples)[:, None]).ravel(), minlength=resamples * n)
    return _read_only(counts.reshape(resamples, n).astype(np.float64) / n)


@functools.lru_cache(maxsize=4)
def seed_weights(n_seeds: int, resamples: int = DEFAULT_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Resampling weights of the seed level of the two-level bootstrap.

    Parameters
    ----------
    n_seeds : int
        Number of pipeline seeds S (at least 1).
    resamples : int
        Number of bootstrap resamples.
    seed : int
        The draws are ``default_rng([seed, 1]).integers(0, S, size=(resamples, S))``: a stream apart from the
        examples' (``bootstrap_weights``), so one seed leaves the example draws of the paired bootstrap as they are.

    Returns
    -------
    numpy.ndarray
        (resamples, S), read-only and cached: V[r, s] = (times seed s is drawn in resample r) / S.
    """
    if n_seeds < 1:
        raise PaperlibError("the two-level bootstrap needs at least one seed")
    draws = np.random.default_rng([seed, SEED_STREAM]).integers(0, n_seeds, size=(resamples, n_seeds))
    counts = np.bincount((draws + n_seeds * np.arange(resamples)[:, None]).ravel(), minlength=resamples * n_seeds)
    return _read_only(counts.reshape(resamples, n_seeds).astype(np.float64) / n_seeds)


def _two_level_means(x: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(m, S, n) scores -> (m, resamples) resample statistics: mean over the drawn seeds (``seed_weights``) of the
    mean over the drawn examples (``bootstrap_weights``, one draw for every seed)."""
    m, n_seeds, n = x.shape
    per_seed = (x.reshape(m * n_seeds, n) @ bootstrap_weights(n, resamples, seed).T).reshape(m, n_seeds, resamples)
    return np.einsum("msr,rs->mr", per_seed, seed_weights(n_seeds, resamples, seed))


def _interval(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each row.  Rounded to 12 decimals first: a resample mean is a multiple of 1/(S n r)
    (r Random replicates), so this only removes float noise, which would otherwise turn an atom at exactly 0
    (two models differing on a handful of examples) into a 'win' of 1e-17."""
    lo, hi = np.quantile(np.round(boot, 12), [(1 - level) / 2, (1 + level) / 2], axis=-1)
    return lo, hi


def paired_bootstrap(
    a,
    b,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """Paired bootstrap over examples of the accuracy difference of ``a`` minus ``b``.

    Parameters
    ----------
    a : array_like
        (m, n) or (n,): per-example scores of m models (1 = correct, 0 = wrong; a replicate mean for Random).
    b : array_like
        (n,) or (m, n): the same examples in the same order.
    resamples, seed : int
        ``bootstrap_weights``' arguments: every row sees the same resamples.
    level : float
        Coverage of the percentile interval.
    weights : numpy.ndarray, optional
        Precomputed ``bootstrap_weights(n, resamples, seed)``.

    Returns
    -------
    pandas.DataFrame
        One row per model: diff = mean(a - b), ci_low and ci_high = the (1-level)/2 and (1+level)/2 percentiles of
        the resampled mean differences (numpy's linear interpolation); all rounded to 12 decimals (``_interval``).
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    d = a - np.asarray(b, dtype=np.float64)
    w = bootstrap_weights(d.shape[1], resamples, seed) if weights is None else weights
    lo, hi = _interval(d @ w.T, level)
    return pd.DataFrame({"diff": np.round(d.mean(1), 12), "ci_low": lo, "ci_high": hi})


def two_level_bootstrap(
    a,
    b,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> pd.DataFrame:
    """Two-level bootstrap of the accuracy difference ``a`` minus ``b`` over seeds and examples.

    statistic = sum over seeds s of V[r, s] * (mean over the drawn examples of a - b in seed s), V =
    ``seed_weights``, the example draw (``bootstrap_weights``) the same for every seed; diff = its value on the
    data, the mean over seeds and examples of a - b.

    Parameters
    ----------
    a : array_like
        (m, S, n) or (S, n): per-example scores of m comparisons in S seeds (seed s scored on the same n examples).
    b : array_like
        Broadcastable to ``a``: (S, n) or (m, S, n).
    resamples, seed : int
        The weights' arguments: every row sees the same resamples.
    level : float
        Coverage of the percentile interval.

    Returns
    -------
    pandas.DataFrame
        One row per comparison: diff, ci_low, ci_high (percentiles as in ``paired_bootstrap``, which this equals
        for S = 1), n_seeds = S and agree = the number of seeds whose own mean difference has diff's sign
        (``seed_agreement``).
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.ndim == 2:
        d = d[None]
    if d.ndim != 3:
        raise PaperlibError(f"the two-level bootstrap takes (m, seeds, examples) scores, got shape {d.shape}")
    lo, hi = _interval(_two_level_means(d, resamples, seed), level)
    diff, per_seed = np.round(d.mean(axis=(1, 2)), 12), np.round(d.mean(2), 12)
    return pd.DataFrame(
        {"diff": diff, "ci_low": lo, "ci_high": hi, "n_seeds": d.shape[1], "agree": seed_agreement(per_seed, diff)}
    )


class ResampleMeans:
    """Two-level resample means of score vectors on one set of seeds and examples, cached by key.

    The statistic is linear in the scores, so the resampled difference of two models is the difference of their
    resampled statistics: ``add`` computes each new vector's row with one product for all of them, and
    ``compare`` of two keys costs no product of its own.  Every comparison made through one object sees the same
    resamples; ``compare(a, b)`` equals ``two_level_bootstrap(a, b)`` up to float rounding (removed by
    ``_interval``).

    Parameters
    ----------
    n_seeds, n : int
        Seeds and examples per seed of every vector.
    resamples, seed : int
        The weights' arguments.
    level : float
        Coverage of the percentile intervals.
    """

    def __init__(self, n_seeds: int, n: int, resamples=DEFAULT_RESAMPLES, seed=BOOTSTRAP_SEED, level=CI_LEVEL):
        self.shape, self.level, self.resamples, self.seed = (n_seeds, n), level, resamples, seed
        self.means: dict = {}  # key -> (resamples,) resample statistics
        self.seed_means: dict = {}  # key -> (S,) each seed's mean

    def add(self, vectors: dict) -> None:
        """Resample the (S, n) score arrays of the keys not seen before, in one product."""
        new = {k: np.asarray(v, dtype=np.float64) for k, v in vectors.items() if k not in self.means}
        if not new:
            return
        x = np.stack(list(new.values()))
        if x.shape[1:] != self.shape:
            raise PaperlibError(f"scores of shape {x.shape[1:]} on a resampler of {self.shape} (seeds, examples)")
        boot = _two_level_means(x, self.resamples, self.seed)
        for i, key in enumerate(new):
            self.means[key], self.seed_means[key] = boot[i], x[i].mean(1)

    def compare(self, pairs: list) -> list[dict]:
        """The two-level comparisons of key a minus key b for each (a, b) in ``pairs`` (all added), in one
        quantile call.

        Returns
        -------
        list of dict
            Per pair: diff (mean over seeds and examples), ci_low, ci_high, n_seeds, agree (``seed_agreement``).
        """
        if not pairs:
            return []
        lo, hi = _interval(np.stack([self.means[a] - self.means[b] for a, b in pairs]), self.level)
        per_seed = np.round(np.stack([self.seed_means[a] - self.seed_means[b] for a, b in pairs]), 12)
        diff = np.round(per_seed.mean(1), 12)  # float noise off, as in _interval
        agree = seed_agreement(per_seed, diff)
        return [
            {"diff": float(d), "ci_low": float(l), "ci_high": float(h), "n_seeds": self.shape[0], "agree": int(g)}
            for d, l, h, g in zip(diff, lo, hi, agree)
        ]


def seed_agreement(per_seed, diff) -> np.ndarray:
    """How many seeds agree in sign with the aggregate difference.

    Parameters
    ----------
    per_seed : array_like
        (m, S): each seed's mean difference.
    diff : array_like
        (m,): the aggregate difference.

    Returns
    -------
    numpy.ndarray
        (m,) int: the seeds whose difference has the (non-zero) sign of ``diff``; 0 where ``diff`` is 0.
    """
    per_seed, sign = np.atleast_2d(per_seed), np.sign(np.asarray(diff, dtype=float))
    return ((np.sign(per_seed) == sign[:, None]) & (sign[:, None] != 0)).sum(1)


def call(ci_low: float, ci_high: float) -> str:
    """The verdict of one interval.

    Parameters
    ----------
    ci_low, ci_high : float
        The interval of a difference (NaN: none).

    Returns
    -------
    str
        'win' when the interval lies above 0, 'loss' when below, 'tie' when it holds 0; '' without one.
    """
    if pd.isna(ci_low) or pd.isna(ci_high):
        return ""
    return "win" if ci_low > 0 else "loss" if ci_high < 0 else "tie"


def seed_call(ci_low: float, ci_high: float, agree: int, n_seeds: int) -> str:
    """The verdict of a seed-aggregated comparison (SPEC 7): ``call`` of its interval, kept only where the
    difference's sign holds on a majority of the seeds.

    Parameters
    ----------
    ci_low, ci_high : float
        The two-level interval (NaN: none).
    agree : int
        Seeds whose own difference has the aggregate's sign (``seed_agreement``).
    n_seeds : int
        Seeds compared.

    Returns
    -------
    str
        'win' / 'loss' when the interval excludes 0 and agree > n_seeds / 2; 'tie' otherwise; '' without an
        interval.
    """
    verdict = call(ci_low, ci_high)
    if verdict in ("win", "loss") and not 2 * int(agree) > int(n_seeds):
        return "tie"
    return verdict
