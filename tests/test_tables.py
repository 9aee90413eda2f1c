"""Tables, statistics and claims (``paperlib.tables``, ``stats``, ``results``, ``claims``, and ``paperlib table``):
Table 1 (selection-free and paper-style), the paired bootstrap, ATS factors, the claims check and the
direction check on hand-made curves and predictions with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from paperlib.claims import VERDICT_RULES, claims_check, direction_check
from paperlib.cli import table_command
from paperlib.errors import PaperlibError
from paperlib.io import write_json
from paperlib.results import DatasetResults, load_results, load_runs
from paperlib.stats import bootstrap_weights, call, paired_bootstrap
from paperlib.tables import (
    ats,
    ats_factors,
    comparison_table,
    distill_summary,
    fraction_steps,
    reference_strategy,
    table1,
    table1_wide,
    val_chosen_k,
)


def _curve(dataset, strategy, accs, seed=0):
    return pd.DataFrame(
        {
            "dataset": dataset,
            "strategy": strategy,
            "seed": seed,
            "step": range(1, len(accs) + 1),
            "removed": 0,
            "kept": "",
            "val_acc": accs,
            "test_acc": accs,
            "n_params": 1,
            "bytes": 4,
        }
    )


def hand_curves() -> pd.DataFrame:
    return pd.concat(
        [
            # dataset a: Weight-Entropy, RF and LR tie at 85.00 (LR's 0.850049 rounds to 85.00)
            _curve("a", "Weight-Entropy", [0.80, 0.85, 0.70]),
            _curve("a", "Random-Forest", [0.85, 0.85, 0.60]),
            _curve("a", "Linear-Regression", [0.850049, 0.50, 0.50]),
            _curve("a", "Gradient-Fisher", [0.70, 0.84, 0.80]),
            _curve("a", "Random", [0.90, 0.50, 0.50], seed=0),
            _curve("a", "Random", [0.50, 0.70, 0.50], seed=1),
            _curve("a", "Oracle", [0.95, 0.95, 0.90]),
            # dataset b: LR best, RF 2 points behind
            _curve("b", "Weight-Entropy", [0.71, 0.60, 0.50]),
            _curve("b", "Random-Forest", [0.60, 0.70, 0.65]),
            _curve("b", "Linear-Regression", [0.72, 0.60, 0.50]),
            # dataset c: Gradient-Fisher beats both fusions; RF within 1 point of LR but 5 of the best
            _curve("c", "Gradient-Fisher", [0.65, 0.50, 0.50]),
            _curve("c", "Random-Forest", [0.60, 0.50, 0.50]),
            _curve("c", "Linear-Regression", [0.61, 0.50, 0.50]),
        ],
        ignore_index=True,
    )


METRICS = {
    "a": {"test_acc": 0.88, "bytes": 100e6},
    "b": {"test_acc": 0.75, "bytes": 100e6},
    "c": {"test_acc": 0.70, "bytes": 100e6},
}


def test_table1_by_hand():
    t = table1(hand_curves(), METRICS).set_index(["dataset", "strategy"])
    assert t.loc[("a", "Weight-Entropy"), ["max_test_acc", "best_k"]].tolist() == [0.85, 2]
    assert t.loc[("a", "Weight-Entropy"), "mean_test_acc"] == pytest.approx((0.80 + 0.85 + 0.70) / 3)
    assert t.loc[("a", "Random-Forest"), "best_k"] == 1  # first k on ties
    # Random: per-seed max (0.9, 0.7) and mean (0.6333, 0.5667), then mean and sample sd across seeds
    r = t.loc[("a", "Random")]
    assert r["max_test_acc"] == pytest.approx(0.8) and r["max_test_acc_sd"] == pytest.approx(math.sqrt(0.02))
    assert r["mean_test_acc"] == pytest.approx(0.6) and r["mean_test_acc_sd"] == pytest.approx(math.sqrt(2 / 900))
    assert r["best_k"] == 1 and r["n_seeds"] == 2  # seed-mean curve (0.7, 0.6, 0.5) peaks at k=1
    best = t[t["best"]].index.tolist()
    assert best == [
        ("a", "Weight-Entropy"),
        ("a", "Linear-Regression"),
        ("a", "Random-Forest"),
        ("b", "Linear-Regression"),
        ("c", "Gradient-Fisher"),
    ]
    # Random and Oracle beat everything on a but do not compete
    assert not t.loc[("a", "Random"), "best"] and not t.loc[("a", "Oracle"), "best"]
    assert t.loc[("a", "Gradient-Fisher"), "gap_pp"] == pytest.approx(1.0)
    assert t.loc[("b", "Random-Forest"), "gap_pp"] == pytest.approx(2.0)
    assert t.loc[("c", "Random-Forest"), "original_test_acc"] == 0.70


def test_table1_wide_marks_ties_and_random_sd():
    t = table1(hand_curves(), METRICS)
    wide = table1_wide(t)
    assert wide.loc["b", "Linear-Regression"] == 0.72 and wide.loc["a", "Original"] == 0.88
    assert np.isnan(wide.loc["b", "Oracle"])
    marked = table1_wide(t, marked=True)
    assert marked.loc["a", "Weight-Entropy"] == "85.00*"
    assert marked.loc["a", "Linear-Regression"] == "85.00*"
    assert marked.loc["a", "Gradient-Fisher"] == "84.00"
    assert marked.loc["a", "Random"] == "80.00±14.14"
    assert marked.loc["a", "Original"] == "88.00"
    # the paper's column order: signals, fusion, then references
    cols = list(wide.columns)
    assert (
        cols.index("Gradient-Fisher")
        < cols.index("Weight-Entropy")
        < cols.index("Linear-Regression")
        < cols.index("Random-Forest")
        < cols.index("Random")
        < cols.index("Oracle")
        < cols.index("Original")
    )


def test_ats_uses_decimal_megabytes():
    assert ats(0.9, 100e6) == pytest.approx(0.9)
    assert ats(0.5, 2_000_000) == pytest.approx(25.0)


def hand_distill(dataset="a", kd=(0.92, 0.91, 0.80), none=(0.80, 0.70, 0.40), ce=(0.85, 0.80, 0.60)):
    rows = []
    sizes = {1: 80e6, 2: 50e6, 3: 20e6}
    for mode, accs in (("kd", kd), ("none", none), ("ce", ce)):
        for depth, acc in zip((1, 2, 3), accs):
            rows.append(
                {
                    "dataset": dataset,
                    "strategy": "Random-Forest",
                    "depth": depth,
                    "n_layers": 4 - depth,
                    "kept": "",
                    "mode": mode,
                    "alpha": 0.5,
                    "val_acc": acc,
                    "test_acc": acc,
                    "n_params": 1,
                    "bytes": sizes[depth],
                    "ats": np.nan,
                    "best_depth": depth == 2,
                }
            )
    rows.append({**rows[0], "strategy": "Top-Drop", "test_acc": 0.01})  # another strategy: ignored
    return pd.DataFrame(rows)


def test_ats_factors_by_hand():
    f = ats_factors(hand_distill(), original_test_acc=0.9, original_bytes=100e6)
    assert f["k_star"] == 2 and f["ats_original"] == pytest.approx(0.9)
    assert f["F1"] == pytest.approx((91 / 50) / 0.9)  # 2.0222
    assert f["F2"] == pytest.approx((0.92 / 0.80 + 0.91 / 0.70 + 0.80 / 0.40) / 3)  # 1.4833
    assert f["F3"] == pytest.approx((80 / 20) / 0.9)  # 4.4444
    f_ce = ats_factors(hand_distill(), 0.9, 100e6, baseline="ce")
    assert f_ce["F2"] == pytest.approx((0.92 / 0.85 + 0.91 / 0.80 + 0.80 / 0.60) / 3)


def test_distill_summary_has_f2_against_the_control():
    summary = distill_summary(pd.concat([hand_distill("a")], ignore_index=True), METRICS).set_index("dataset")
    assert summary.loc["a", "F2-control"] == pytest.approx((0.92 / 0.85 + 0.91 / 0.80 + 0.80 / 0.60) / 3)
    assert summary.loc["a", "F2"] == pytest.approx((0.92 / 0.80 + 0.91 / 0.70 + 0.80 / 0.40) / 3)


# ---------------------------------------------------------------- depths


def test_fraction_steps_round_half_up():
    assert fraction_steps(12) == {"L/4": 3, "L/2": 6, "3L/4": 9}
    assert fraction_steps(6) == {"L/4": 2, "L/2": 3, "3L/4": 5}  # 1.5 -> 2, 4.5 -> 5
    assert fraction_steps(4) == {"L/4": 1, "L/2": 2, "3L/4": 3}
    assert fraction_steps(2) == {"L/4": 1, "L/2": 1, "3L/4": 1}  # kept in 1..L-1


def test_val_chosen_k_by_hand():
    val = pd.Series([0.905, 0.89, 0.895, 0.87], index=[1, 2, 3, 4])
    assert val_chosen_k(val, 0.90, 0.01) == 3  # 0.895 >= 0.89; k=4 is 3 points below
    assert val_chosen_k(val, 0.90, 0.0) == 1
    assert val_chosen_k(val, 0.95, 0.01) == 0  # no k within a point: M_0 itself
    assert val_chosen_k(val, 0.90, 0.05) == 4


# ---------------------------------------------------------------- the bootstrap


def test_bootstrap_weights_count_the_draws():
    w = bootstrap_weights(7, resamples=50, seed=3)
    draws = np.random.default_rng(3).integers(0, 7, size=(50, 7))
    for r in range(50):
        assert w[r] == pytest.approx(np.bincount(draws[r], minlength=7) / 7)
    assert w.sum(1) == pytest.approx(np.ones(50))


def test_paired_bootstrap_hand_computed_cases():
    # n = 4, d = (1, 0, 0, 0): a resample mean is X/4 with X ~ Binomial(4, 1/4), so
    # P(X = 0) = 0.316 > 0.025 (2.5 % quantile 0) and P(X <= 2) = 0.949 < 0.975 <= P(X <= 3) = 0.996 (97.5 %: 3/4)
    ci = paired_bootstrap([[1, 1, 1, 0]], [0, 1, 1, 0], resamples=20000, seed=1).iloc[0]
    assert ci["diff"] == 0.25 and ci["ci_low"] == 0.0 and ci["ci_high"] == 0.75
    # a constant difference has no spread; equal models differ by exactly 0
    same = paired_bootstrap([[1, 1, 1], [1, 0, 1]], [[0, 0, 0], [1, 0, 1]], resamples=100)
    assert same.to_numpy().tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    assert (
        call(0.01, 0.2) == "win"
        and call(-0.2, -0.01) == "loss"
        and call(-0.1, 0.1) == "tie"
        and call(0.0, 0.1) == "tie"
    )


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


# ---------------------------------------------------------------- hand-made runs with predictions

N = 200  # test (and validation) examples


def _scores(acc: float, n: int = N, shift: int = 0) -> np.ndarray:
    """A correctness vector with round(acc*n) ones placed from position ``shift`` (cyclically)."""
    c = np.zeros(n)
    c[(np.arange(round(acc * n)) + shift) % n] = 1.0
    return c


def make_results(name: str, spec: dict, n_layers: int = 4, original=(0.9, 0.9), tolerance=0.01) -> DatasetResults:
    """``spec``: strategy -> list over k = 1..L-1 of (val scores, test scores) (or a list per seed)."""
    rows, scores = [], {}
    for strategy, per_seed in spec.items():
        per_seed = per_seed if isinstance(per_seed[0], list) else [per_seed]
        for seed, steps in enumerate(per_seed):
            for k, (v, t) in enumerate(steps, start=1):
                rows.append(
                    {
                        "dataset": name,
                        "strategy": strategy,
                        "seed": seed,
                        "step": k,
                        "removed": 0,
                        "kept": "",
                        "val_acc": float(np.mean(v)),
                        "test_acc": float(np.mean(t)),
                        "n_params": 1,
                        "bytes": 4,
                    }
                )
        for split, j in (("val", 0), ("test", 1)):
            scores[(strategy, split)] = np.mean([[step[j] for step in steps] for steps in per_seed], axis=0)
    metrics = {"val_acc": original[0], "test_acc": original[1], "n_layers": n_layers, "bytes": 100e6}
    return DatasetResults(
        name,
        n_layers,
        metrics,
        tolerance,
        pd.DataFrame(rows),
        pd.DataFrame(),
        scores,
        {"val": _scores(original[0]), "test": _scores(original[1])},
        {},
    )


def _flat(val: float, test: float, shift: int = 0, steps: int = 3) -> list:
    return [(_scores(val), _scores(test, shift=shift))] * steps


def test_reference_is_chosen_on_validation_not_test():
    res = make_results("a", {"Weight-Entropy": _flat(0.80, 0.60), "Gradient-Fisher": _flat(0.70, 0.90)})
    assert reference_strategy(res.curves) == "Weight-Entropy"  # the better validation curve, worse on test
    tied = make_results("a", {"Weight-Entropy": _flat(0.80, 0.6), "Gradient-Fisher": _flat(0.80, 0.9)})
    assert reference_strategy(tied.curves) == "Gradient-Fisher"  # a tie goes to SPEC 3's order


def test_comparison_table_by_hand():
    steps = [(_scores(0.90), _scores(0.85)), (_scores(0.89), _scores(0.80)), (_scores(0.70), _scores(0.60))]
    res = make_results(
        "a",
        {
            "Weight-Entropy": steps,  # the reference (val mean 0.83)
            "Gradient-Fisher": [(_scores(0.5), _scores(0.95))] * 3,
            "Random-Forest": [
                (_scores(0.9), _scores(0.85)),
                (_scores(0.9), _scores(0.90)),
                (_scores(0.5), _scores(0.70)),
            ],
            "Random": [_flat(0.5, 0.5), _flat(0.5, 0.7)],
        },
    )
    t = comparison_table([res], resamples=300).set_index(["strategy", "view"])
    assert t.loc[("Weight-Entropy", "mean"), "call"] == "ref" and (t["reference"] == "Weight-Entropy").all()
    assert t.loc[("Weight-Entropy", "L/4"), "k"] == 1 and t.loc[("Weight-Entropy", "3L/4"), "k"] == 3
    assert t.loc[("Weight-Entropy", "mean"), "test_acc"] == pytest.approx((0.85 + 0.80 + 0.60) / 3)
    assert t.loc[("Weight-Entropy", "val-k"), ["k", "test_acc"]].tolist() == [2, pytest.approx(0.80)]  # 0.89 >= 0.89
    assert t.loc[("Weight-Entropy", "max"), ["k", "test_acc"]].tolist() == [1, pytest.approx(0.85)]
    assert t.loc[("Gradient-Fisher", "val-k"), ["k", "test_acc"]].tolist() == [0, pytest.approx(0.9)]  # M_0
    # RF vs the reference at k = L/2 (k=2): 0.90 - 0.80, every difference on the same 20 examples
    rf = t.loc[("Random-Forest", "L/2")]
    assert rf["diff"] == pytest.approx(0.10) and rf["ci_low"] > 0 and rf["call"] == "win"
    assert t.loc[("Random-Forest", "mean"), "diff"] == pytest.approx((0.85 + 0.90 + 0.70 - 0.85 - 0.80 - 0.60) / 3)
    # Random: the mean of its seeds, accuracy and per-example scores alike
    assert t.loc[("Random", "L/2"), "test_acc"] == pytest.approx(0.6) and t.loc[("Random", "mean"), "n_seeds"] == 2
    assert t.loc[("Random", "L/2"), "diff"] == pytest.approx(0.6 - 0.8)


def _win_or_tie_case(noisy: bool) -> DatasetResults:
    """RF 5 points above the reference on every k.  Clean: RF right on the reference's examples and 10
    more (10 discordant pairs).  Noisy: the same 5 points from 45 RF-only and 35 reference-only examples."""
    ref = _scores(0.70)
    if noisy:
        rf = ref.copy()
        rf[:35] = 0.0  # the reference alone is right on 35 ...
        rf[140:185] = 1.0  # ... RF alone on 45
    else:
        rf = _scores(0.75)
    assert rf.mean() - ref.mean() == pytest.approx(0.05)
    return make_results("a", {"Weight-Entropy": [(_scores(0.8), ref)] * 3, "Random-Forest": [(_scores(0.7), rf)] * 3})


def test_a_verdict_flips_when_the_same_difference_falls_inside_the_noise():
    clean, noisy = (comparison_table([_win_or_tie_case(n)]).set_index(["strategy", "view"]) for n in (False, True))
    for t in (clean, noisy):
        assert t.loc[("Random-Forest", "mean"), "diff"] == pytest.approx(0.05)
    assert clean.loc[("Random-Forest", "mean"), "call"] == "win"
    assert noisy.loc[("Random-Forest", "mean"), "call"] == "tie"
    # the claims: the point count (paper's reading) counts both, the significant count only the clean one
    for case, significant in ((False, 1), (True, 0)):
        res = _win_or_tie_case(case)
        row = (
            claims_check([res], comparison_table([res])).set_index("claim").loc["Random-Forest fusion is best (within)"]
        )
        assert row["point_count"] == 1 and row["significant_count"] == significant


# ---------------------------------------------------------------- claims


def _distill_rows(name: str, kd: float, ce: float, none: float) -> pd.DataFrame:
    rows = []
    for mode, acc in (("kd", kd), ("ce", ce), ("none", none)):
        for depth, n_layers in ((1, 3), (3, 1)):
            rows.append(
                {
                    "dataset": name,
                    "strategy": "Random-Forest",
                    "depth": depth,
                    "n_layers": n_layers,
                    "kept": "",
                    "mode": mode,
                    "alpha": 0.5,
                    "val_acc": acc,
                    "test_acc": acc,
                    "n_params": 1,
                    "bytes": 50e6 if depth == 1 else 10e6,
                    "ats": np.nan,
                    "best_depth": depth == 1,
                }
            )
    return pd.DataFrame(rows)


def test_claims_split_protocols_kd_and_factors():
    # dataset a: within RF significantly best; transfer RF 5 points below the reference everywhere
    ref = _scores(0.70)
    spec = {
        "Weight-Entropy": [(_scores(0.8), ref)] * 3,
        "Random-Forest": [(_scores(0.7), _scores(0.85))] * 3,
        "Linear-Regression": [(_scores(0.6), ref)] * 3,
        "Random-Forest (transfer)": [(_scores(0.7), _scores(0.65))] * 3,
    }
    res = make_results("a", spec, original=(0.9, 0.80))
    # distillation at k* = 1: KD 0.90 vs M_0 0.80 (win), control 0.88 (KD - control: 2 points on 4 discordant)
    res.distill = _distill_rows("a", kd=0.90, ce=0.88, none=0.60)
    res.distill_scores = {
        ("Random-Forest", 1, "kd", "test"): _scores(0.90),
        ("Random-Forest", 1, "ce", "test"): _scores(0.88),
        ("Random-Forest", 1, "none", "test"): _scores(0.60),
    }
    table = comparison_table([res])
    summary = distill_summary(res.distill, {"a": res.metrics})
    c = claims_check([res], table, summary).set_index("claim")
    assert c.loc["Random-Forest fusion is best (within)", ["point_count", "significant_count"]].tolist() == [1, 1]
    assert c.loc["Random-Forest fusion is best (transfer)", ["point_count", "significant_count"]].tolist() == [0, 0]
    assert (
        c.loc["Random-Forest fusion is best or near-optimal (transfer)", "significant_count"] == 0
    )  # significantly below
    assert c.loc["Linear-Regression fusion leads (is best) (within)", "point_count"] == 0
    assert c.loc["Fusion reaches every single-signal strategy's best (within)", "significant_count"] == 1
    assert c.loc["Random-Forest fusion is best (within)", "verdict"] == "reproduced"  # 1 of 1, need ceil(7/9) = 1
    kd = c.loc["Pruned + distilled (KD) at k* beats the original M_0"]
    assert kd[["point_count", "significant_count"]].tolist() == [1, 1] and "control beats M_0: point 1" in kd["detail"]
    teacher = c.loc["The teacher adds accuracy over the alpha = 0 control (KD vs control at k*)"]
    assert (
        teacher["point_count"] == 1 and teacher["significant_count"] == 1
    )  # 4 discordant pairs, all for KD: no spread
    # factors each against 18.84, none picked for being closest
    f1 = (90 / 50) / (80 / 100)
    assert c.loc["Accuracy-to-size factor F1 reaches 18.84", "detail"].startswith(f"F1 = {f1:.2f}")
    # F3 = ATS(KD, one layer) / ATS(M_0) = (90/10) / (80/100) = 11.25: 0.60 of 18.84, within a factor of 2
    assert c.loc["Accuracy-to-size factor F3 reaches 18.84", "verdict"] == "partly"
    assert c.loc["Accuracy-to-size factor F1 reaches 18.84", "verdict"] == "not reproduced"  # 2.25
    assert {"F1", "F2", "F2-control", "F3"} == {r.split()[2] for r in c.index if r.startswith("Accuracy-to-size")}
    assert "closest" not in " ".join(c["detail"])


def test_claims_without_predictions_or_stages_say_not_measured():
    res = make_results("a", {"Weight-Entropy": _flat(0.8, 0.7)})
    res.scores, res.original = {}, {}
    c = claims_check([res], comparison_table([res]))
    assert (c["verdict"] == "not measured").all()


# ---------------------------------------------------------------- direction check


def test_direction_check_on_validation():
    spec = {
        "Weight-Entropy": _flat(0.80, 0.5),
        "Weight-Entropy (flipped)": _flat(0.70, 0.9),  # SPEC better on val
        "Gradient-Fisher": _flat(0.70, 0.9),
        "Gradient-Fisher (flipped)": _flat(0.70, 0.5),  # tie on val
        "Gradient-Norm": _flat(0.70, 0.5),
    }  # no flipped run: left out
    check = direction_check([make_results("a", spec)]).set_index("signal")
    assert sorted(check.index) == ["Gradient-Fisher", "Weight-Entropy"]
    assert check.loc["Weight-Entropy", "verdict"] == "SPEC" and check.loc["Weight-Entropy", "diff"] == pytest.approx(
        0.1
    )
    assert check.loc["Gradient-Fisher", "verdict"] == "tie"  # test accuracy (0.9 vs 0.5) is never read


# ---------------------------------------------------------------- from run folders to the printed table


def _write_folder(root, res: DatasetResults, with_predictions: bool = True):
    from paperlib.pruning import prediction_rows

    folder = root / res.name
    folder.mkdir(parents=True)
    res.curves.drop(columns="dataset").to_parquet(folder / "curves.parquet")
    write_json(res.metrics, folder / "metrics.json")
    write_json({"preset": {"val_tolerance": res.tolerance}}, folder / "config.json")
    if not with_predictions:
        return folder
    labels = {split: np.arange(N) % 3 for split in ("val", "test")}
    parts = []
    for (strategy, split), sc in res.scores.items():
        for k, row in enumerate(sc, start=1):
            parts.append(
                prediction_rows(np.where(row == 1, labels[split], (labels[split] + 1) % 3), strategy, 0, k, split)
            )
    for split, sc in res.original.items():
        parts.append(prediction_rows(np.where(sc == 1, labels[split], (labels[split] + 1) % 3), "M_0", 0, 0, split))
    pd.concat(parts).to_parquet(folder / "predictions.parquet")
    pd.DataFrame(
        [(s, i, l) for s, y in labels.items() for i, l in enumerate(y)], columns=["split", "example", "label"]
    ).to_parquet(folder / "labels.parquet")
    return folder


def test_load_results_reads_predictions_back(tmp_path):
    res = _win_or_tie_case(noisy=False)
    _write_folder(tmp_path, res)
    (loaded,) = load_results(tmp_path)
    assert loaded.has_predictions and loaded.tolerance == 0.01 and loaded.n_layers == 4
    for key, sc in res.scores.items():
        np.testing.assert_array_equal(loaded.scores[key], sc)
    np.testing.assert_array_equal(loaded.original["test"], res.original["test"])


def test_table_command_prints_intervals_claims_and_rules(tmp_path, capsys):
    a = _win_or_tie_case(noisy=False)
    flipped = make_results("a", {"Weight-Entropy (flipped)": _flat(0.6, 0.9)})  # worse on validation
    a.curves = pd.concat([a.curves, flipped.curves], ignore_index=True)
    a.scores |= flipped.scores
    _write_folder(tmp_path, a)
    b = _win_or_tie_case(noisy=True)
    b.name = "b"
    b.curves["dataset"] = "b"
    _write_folder(tmp_path, b)
    old = make_results("c", {"Weight-Entropy": _flat(0.8, 0.7), "Random-Forest": _flat(0.7, 0.75)})
    _write_folder(tmp_path, old, with_predictions=False)  # a folder from before predictions were saved
    write_json({"method": "TF-IDF+LR", "test_acc": 0.6125, "val_acc": 0.6}, tmp_path / "a" / "baseline.json")
    out = table_command(tmp_path, out=tmp_path / "summary")
    printed = capsys.readouterr().out
    assert "Table 1 (selection-free)" in printed and "75.00+" in printed and "70.00R" in printed
    # the classical reference's row: dataset a's baseline.json, nothing for the folders without one
    row = [line for line in printed.splitlines() if line.startswith("TF-IDF+LR (classical reference)")]
    assert len(row) == 1 and row[0].split()[3:] == ["61.25"]
    assert "+5.00 [" in printed and "Claims check" in printed and VERDICT_RULES.splitlines()[1] in printed
    assert "c: L=4, k=1/2/3, reference Weight-Entropy (no predictions.parquet: no intervals)" in printed
    assert "SECONDARY, selected on test" in printed
    assert "Direction check" in printed and "SPEC +20.00" in printed and "SPEC 1, flip 0 of 1" in printed
    assert "(flipped)" not in out["table"]["strategy"].str.cat()  # not a Table 1 strategy
    saved = pd.read_csv(tmp_path / "summary" / "table1.csv")
    assert len(saved) == len(out["table"]) and set(saved["view"]) == {"L/4", "L/2", "3L/4", "mean", "val-k", "max"}
    assert {"claims.csv", "table1_mean.csv", "table1_max.csv", "direction.csv"} <= {
        p.name for p in (tmp_path / "summary").iterdir()
    }
    with pytest.raises(PaperlibError, match="paperlib prune"):
        load_results(tmp_path / "summary")


def test_load_runs_still_reads_curves_metrics_and_distill(tmp_path):
    curves = hand_curves()
    for name in ("a", "b", "c"):
        folder = tmp_path / name
        folder.mkdir()
        curves[curves["dataset"] == name].drop(columns="dataset").to_parquet(folder / "curves.parquet")
        write_json(METRICS[name], folder / "metrics.json")
    hand_distill("a").drop(columns="dataset").to_parquet(tmp_path / "a" / "distill.parquet")
    loaded, metrics, distill = load_runs(tmp_path)
    assert sorted(loaded["dataset"].unique()) == ["a", "b", "c"] and metrics["b"]["test_acc"] == 0.75
    assert set(distill["dataset"]) == {"a"}


def test_the_examples_in_the_stats_docstring_hold():
    import doctest

    from paperlib import stats

    assert doctest.testmod(stats).attempted >= 4 and doctest.testmod(stats).failed == 0
