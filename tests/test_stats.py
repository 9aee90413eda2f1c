"""The bootstraps (``paperlib.stats``): the resampling weights against their draws, the paired bootstrap against
hand-computed cases, a slow loop and ``scipy.stats.bootstrap``, the two-level bootstrap against a slow loop with
the same draws, its exact reduction to the paired one with one seed, and constructed cases with a known training
variance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from paperlib.stats import (
    SEED_STREAM,
    bootstrap_weights,
    call,
    paired_bootstrap,
    seed_agreement,
    seed_call,
    seed_weights,
    two_level_bootstrap,
)

# ---------------------------------------------------------------- the paired bootstrap


def test_bootstrap_weights_count_the_draws():
    w = bootstrap_weights(7, resamples=50, seed=3)
    draws = np.random.default_rng(3).integers(0, 7, size=(50, 7))
    for r in range(50):
        assert w[r] == pytest.approx(np.bincount(draws[r], minlength=7) / 7)
    assert w.sum(1) == pytest.approx(np.ones(50))
    assert not w.flags.writeable  # cached and shared: nobody may change it


def test_paired_bootstrap_hand_computed_cases():
    # n = 4, d = (1, 0, 0, 0): a resample mean is X/4 with X ~ Binomial(4, 1/4), so
    # P(X = 0) = 0.316 > 0.025 (2.5 % quantile 0) and P(X <= 2) = 0.949 < 0.975 <= P(X <= 3) = 0.996 (97.5 %: 3/4)
    ci = paired_bootstrap([[1, 1, 1, 0]], [0, 1, 1, 0], resamples=20000, seed=1).iloc[0]
    assert ci["diff"] == 0.25 and ci["ci_low"] == 0.0 and ci["ci_high"] == 0.75
    # a constant difference has no spread; equal models differ by exactly 0
    same = paired_bootstrap([[1, 1, 1], [1, 0, 1]], [[0, 0, 0], [1, 0, 1]], resamples=100)
    assert same.to_numpy().tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    assert call(0.01, 0.2) == "win" and call(-0.2, -0.01) == "loss"
    assert call(-0.1, 0.1) == "tie" and call(0.0, 0.1) == "tie" and call(np.nan, 0.1) == ""


def test_paired_bootstrap_equals_a_slow_reference_loop():
    rng = np.random.default_rng(0)
    a = rng.random((3, 60)) < [[0.8], [0.6], [0.7]]
    b = rng.random(60) < 0.7
    got = paired_bootstrap(a, b, resamples=400, seed=11)
    loop_rng = np.random.default_rng(11)
    boot = np.empty((3, 400))
    for r in range(400):  # one resample at a time, drawn one row at a time from the same stream
        idx = loop_rng.integers(0, 60, size=60)
        boot[:, r] = [np.mean(a[i, idx].astype(float) - b[idx].astype(float)) for i in range(3)]
    np.testing.assert_allclose(got["ci_low"], np.percentile(boot, 2.5, axis=1), atol=1e-12)
    np.testing.assert_allclose(got["ci_high"], np.percentile(boot, 97.5, axis=1), atol=1e-12)
    np.testing.assert_allclose(got["diff"], (a.astype(float) - b).mean(1), atol=1e-12)


def test_paired_bootstrap_agrees_with_scipy_within_monte_carlo_error():
    """Ours and scipy's percentile intervals draw different resamples, so they agree only up to Monte-Carlo error.
    The standard error of an estimated q-quantile from R resamples of a roughly normal statistic with spread s is
    sqrt(q (1 - q) / R) / phi(z_q) * s (2.67 s / sqrt(R) at q = 0.025); two independent estimates differ by
    sqrt(2) times that; we allow four of those (at R = 20,000: 0.107 s, 0.0022 here, a fifth of a percentage point)."""
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    n, resamples = 400, 20000
    a = (rng.random(n) < 0.72).astype(float)
    b = np.where(rng.random(n) < 0.8, a, 1 - a)  # correlated with a, as two models on the same examples are
    ours = paired_bootstrap(a, b, resamples=resamples, seed=0).iloc[0]
    ref = stats.bootstrap(
        (a, b),
        statistic=lambda x, y, axis=-1: np.mean(x - y, axis=axis),
        paired=True,
        method="percentile",
        n_resamples=resamples,
        random_state=np.random.default_rng(123),
    )
    spread = float(np.std(ref.bootstrap_distribution))
    q = 0.025
    se = math.sqrt(q * (1 - q) / resamples) / stats.norm.pdf(stats.norm.ppf(q)) * spread
    tolerance = 4 * math.sqrt(2) * se
    assert spread > 0 and tolerance < 0.11 * spread
    assert ours["ci_low"] == pytest.approx(ref.confidence_interval.low, abs=tolerance)
    assert ours["ci_high"] == pytest.approx(ref.confidence_interval.high, abs=tolerance)
    assert ours["diff"] == pytest.approx(np.mean(a - b), abs=1e-12)


# ---------------------------------------------------------------- the two-level bootstrap


def test_one_seed_is_the_paired_bootstrap_draw_for_draw():
    rng = np.random.default_rng(2)
    a, b = (rng.random((4, 1, 90)) < 0.7).astype(float), (rng.random((1, 90)) < 0.6).astype(float)
    assert (seed_weights(1, 300, 4) == 1).all()  # one seed is always drawn: the example draws decide alone
    two = two_level_bootstrap(a, b, resamples=300, seed=4)
    paired = paired_bootstrap(a[:, 0], b[0], resamples=300, seed=4)
    for column in ("diff", "ci_low", "ci_high"):
        np.testing.assert_array_equal(two[column].to_numpy(), paired[column].to_numpy())
    assert (two["n_seeds"] == 1).all()
    assert two["agree"].tolist() == (np.sign(paired["diff"]) != 0).astype(int).tolist()


def test_seed_weights_count_the_seed_draws():
    v = seed_weights(3, resamples=40, seed=7)
    picks = np.random.default_rng([7, SEED_STREAM]).integers(0, 3, size=(40, 3))
    for r in range(40):
        assert v[r] == pytest.approx(np.bincount(picks[r], minlength=3) / 3)
    assert v.sum(1) == pytest.approx(np.ones(40)) and not v.flags.writeable


def test_two_level_bootstrap_equals_a_slow_reference_loop():
    rng = np.random.default_rng(1)
    n_seeds, n, resamples = 3, 40, 300
    a = (rng.random((2, n_seeds, n)) < [[[0.8]], [[0.6]]]).astype(float)
    b = (rng.random((n_seeds, n)) < 0.7).astype(float)
    got = two_level_bootstrap(a, b, resamples=resamples, seed=9)
    examples_rng, seeds_rng = np.random.default_rng(9), np.random.default_rng([9, SEED_STREAM])
    picks = seeds_rng.integers(0, n_seeds, size=(resamples, n_seeds))
    boot = np.empty((2, resamples))
    for r in range(resamples):  # draw the seeds and one set of examples, which every drawn seed shares
        idx = examples_rng.integers(0, n, size=n)
        means = [[np.mean(a[m, picks[r, j], idx] - b[picks[r, j], idx]) for m in range(2)] for j in range(n_seeds)]
        boot[:, r] = np.mean(means, axis=0)
    np.testing.assert_allclose(got["ci_low"], np.percentile(boot, 2.5, axis=1), atol=1e-12)
    np.testing.assert_allclose(got["ci_high"], np.percentile(boot, 97.5, axis=1), atol=1e-12)
    np.testing.assert_allclose(got["diff"], (a - b).mean(axis=(1, 2)), atol=1e-12)
    per_seed = (a - b).mean(2)
    assert got["agree"].tolist() == [int((np.sign(p) == np.sign(p.mean())).sum()) for p in per_seed]


def test_identical_seeds_are_no_more_certain_than_one():
    """The examples are the same texts in every seed, so three copies of one run carry the test-set noise of one
    run: the interval equals the paired bootstrap's (drawing examples anew within each seed would shrink it by
    about sqrt(3))."""
    rng = np.random.default_rng(3)
    d = (rng.random(300) < 0.6).astype(float) - (rng.random(300) < 0.5).astype(float)
    one = paired_bootstrap(d, 0.0, resamples=1000).iloc[0]
    three = two_level_bootstrap(np.stack([d, d, d]), 0.0, resamples=1000).iloc[0]
    assert (three["ci_low"], three["ci_high"]) == pytest.approx((one["ci_low"], one["ci_high"]), abs=1e-12)


def test_a_difference_that_flips_sign_across_seeds_is_not_significant():
    """Known training variance: seed s differs by the constant delta_s on every example, so resampling examples
    changes nothing and the statistic is the mean of three seeds drawn from (+6, -4, +5) points.  Of the 27
    equally likely draws one gives -4 (3.7 % > 2.5 %) and one +6, so the 95 % interval is exactly [-4, +6]
    points, while each seed alone has no spread at all and is 'significant'."""
    deltas = np.array([0.06, -0.04, 0.05])
    d = np.repeat(deltas[:, None], 100, axis=1)
    alone = [paired_bootstrap(d[s], 0.0, resamples=2000).iloc[0] for s in range(3)]
    assert [call(r["ci_low"], r["ci_high"]) for r in alone] == ["win", "loss", "win"]
    two = two_level_bootstrap(d, 0.0, resamples=20000).iloc[0]
    assert two["diff"] == pytest.approx(deltas.mean())
    assert two["ci_low"] == pytest.approx(-0.04, abs=1e-12) and two["ci_high"] == pytest.approx(0.06, abs=1e-12)
    assert int(two["agree"]) == 2 and seed_call(two["ci_low"], two["ci_high"], two["agree"], 3) == "tie"


def test_a_majority_of_seeds_must_share_the_sign():
    """Seven seeds: three at +30 points, four at -1 (constant within each seed).  The statistic is below 0 only
    when no +30 seed is drawn, P = (4/7)^7 = 2.0 % < 2.5 %; with one drawn (P = 7 (3/7) (4/7)^6 = 10.4 %) it is
    (30 - 6) / 7 points, so the interval's lower end is 24/7 points > 0: significant, but only 3 of 7 seeds agree
    in sign, and the call is a tie."""
    deltas = np.array([0.30] * 3 + [-0.01] * 4)
    two = two_level_bootstrap(np.repeat(deltas[:, None], 50, axis=1), 0.0, resamples=20000).iloc[0]
    assert two["ci_low"] == pytest.approx(0.24 / 7, abs=1e-12) and call(two["ci_low"], two["ci_high"]) == "win"
    assert int(two["agree"]) == 3 and seed_call(two["ci_low"], two["ci_high"], two["agree"], 7) == "tie"


def test_seed_call_and_agreement_by_hand():
    assert seed_call(0.01, 0.2, 2, 3) == "win" and seed_call(0.01, 0.2, 1, 3) == "tie"
    assert seed_call(-0.2, -0.01, 3, 4) == "loss" and seed_call(-0.2, -0.01, 2, 4) == "tie"  # 2 of 4: no majority
    assert seed_call(0.01, 0.2, 1, 1) == "win" and seed_call(-0.1, 0.2, 3, 3) == "tie"
    assert seed_call(np.nan, np.nan, 0, 3) == ""
    per_seed = np.array([[0.1, -0.2, 0.3], [0.0, 0.0, 0.1], [0.0, 0.0, 0.0]])
    assert seed_agreement(per_seed, [0.1, 0.02, 0.0]).tolist() == [2, 1, 0]  # a zero agrees with nothing


def test_two_level_bootstrap_refuses_other_shapes():
    from paperlib.errors import PaperlibError

    with pytest.raises(PaperlibError, match="seeds, examples"):
        two_level_bootstrap(np.zeros(5), 0.0)
    with pytest.raises(PaperlibError, match="seed"):
        seed_weights(0)


def test_the_examples_in_the_stats_docstring_hold():
    import doctest

    from paperlib import stats

    result = doctest.testmod(stats)
    assert result.attempted >= 6 and result.failed == 0
