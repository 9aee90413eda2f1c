"""Tables (``paperlib.tables``, ``results``, ``tabulate`` and ``paperlib table``): Table 1 (selection-free,
seed-aggregated, and paper-style), the loader over seed roots, ATS factors, the coinciding pruning orders and the
printed table, on hand-made curves and predictions with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from results_support import (
    distill_rows,
    flat,
    make_results,
    make_run,
    make_seeded,
    scores,
    with_distill,
    write_results,
)

from paperlib.claims import claims_check
from paperlib.cli import table_command
from paperlib.errors import PaperlibError
from paperlib.io import write_json
from paperlib.results import DatasetResults, load_results, load_runs
from paperlib.stats import paired_bootstrap, two_level_bootstrap
from paperlib.tables import (
    ats,
    ats_factors,
    comparison_table,
    distill_summary,
    f2_depths,
    fraction_steps,
    orders_summary,
    pruning_orders,
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
    assert r["best_k"] == 1 and r["n_curves"] == 2 and r["n_seeds"] == 1  # mean curve (0.7, 0.6, 0.5) peaks at k=1
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


def test_table1_over_pipeline_seeds():
    two = pd.concat(
        [_curve("a", "Weight-Entropy", [0.80, 0.85, 0.70]).assign(pipeline_seed=0)]
        + [_curve("a", "Weight-Entropy", [0.90, 0.60, 0.50]).assign(pipeline_seed=1)]
    )
    r = table1(two).iloc[0]
    assert r["n_seeds"] == 2 and r["n_curves"] == 2 and r["max_test_acc"] == pytest.approx(0.875)
    assert r["max_test_acc_sd"] == pytest.approx(np.std([0.85, 0.90], ddof=1)) and r["best_k"] == 1  # (0.85, .725, .6)


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
    # F2 at k = L/4 and 3L/4 of L = 4 (k = 1, 3): a ratio of the mean accuracies, not a mean of ratios
    assert f["F2_depths"] == (1, 3) and f["F2"] == pytest.approx((0.92 + 0.80) / (0.80 + 0.40))  # 1.4333
    assert f["F3"] == pytest.approx((80 / 20) / 0.9)  # 4.4444
    assert f["F3_ceiling"] == pytest.approx(100 / 20)  # = F3 with the one-layer student as accurate as M_0
    assert f["F3"] == pytest.approx(f["F3_ceiling"] * 0.80 / 0.9)
    f_ce = ats_factors(hand_distill(), 0.9, 100e6, baseline="ce")
    assert f_ce["F2"] == pytest.approx((0.92 + 0.80) / (0.85 + 0.60))


def test_f2_does_not_explode_near_chance_and_needs_its_depths():
    # the untrained one-layer model at 2 % (below chance): the paper's mean of ratios would be (1.15 + 40) / 2
    near_chance = hand_distill(none=(0.80, 0.70, 0.02))
    f = ats_factors(near_chance, 0.9, 100e6)
    assert f["F2"] == pytest.approx((0.92 + 0.80) / (0.80 + 0.02))  # 2.10
    assert f2_depths(12) == (3, 9) and f2_depths(6) == (2, 5)  # the same fractions of every model
    without = hand_distill()
    without = without[without["depth"] != 3]  # k = 3L/4 not distilled
    g = ats_factors(without, 0.9, 100e6)
    assert np.isnan(g["F2"]) and g["F2_missing"] == [3] and np.isnan(g["F3"])


def test_distill_summary_has_the_control_the_ceiling_and_m0_continued():
    rows = pd.concat([hand_distill("a"), distill_rows("b", kd=0.9, ce=0.88, none=0.6, continued=0.87)])
    metrics = {"a": {"test_acc": 0.88, "bytes": 100e6}, "b": {"test_acc": 0.80, "bytes": 100e6}}
    summary = distill_summary(rows, metrics).set_index("dataset")
    assert summary.loc["a", "F2-control"] == pytest.approx((0.92 + 0.80) / (0.85 + 0.60))
    assert summary.loc["a", "F3_ceiling"] == pytest.approx(5.0) and np.isnan(summary.loc["a", "continued_test_acc"])
    assert summary.loc["b", "continued_test_acc"] == 0.87 and summary.loc["b", "kd_test_acc"] == 0.9
    assert summary.loc["b", "F3_ceiling"] == pytest.approx(10.0)  # M_0 continued is not a student: not counted


def test_distill_summary_averages_seeds_and_keeps_each_k_star():
    a0 = hand_distill("a")  # k* = 2
    a1 = hand_distill("a", kd=(0.90, 0.85, 0.70))
    a1["best_depth"] = a1["depth"] == 1  # k* = 1 in seed 1
    rows = pd.concat([a0.assign(pipeline_seed=0), a1.assign(pipeline_seed=1)])
    metrics = {("a", 0): {"test_acc": 0.88, "bytes": 100e6}, ("a", 1): {"test_acc": 0.86, "bytes": 100e6}}
    per_seed = distill_summary(rows, metrics, by_seed=True).set_index("pipeline_seed")
    assert per_seed["k_star"].tolist() == [2, 1] and per_seed["original_test_acc"].tolist() == [0.88, 0.86]
    assert per_seed.loc[1, "kd_test_acc"] == 0.90  # seed 1's student at its own k* = 1
    mean = distill_summary(rows, metrics).iloc[0]
    assert mean["n_seeds"] == 2 and mean["k_stars"] == "2/1" and np.isnan(mean["k_star"])
    assert mean["kd_test_acc"] == pytest.approx((0.91 + 0.90) / 2)
    assert mean["original_test_acc"] == pytest.approx(0.87)
    f2 = [(0.92 + 0.80) / (0.80 + 0.40), (0.90 + 0.70) / (0.80 + 0.40)]
    assert mean["F2"] == pytest.approx(np.mean(f2))
    assert bool(mean["beats_original"])  # 90.50 > 87.00 on the seed means


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


def test_reference_is_chosen_on_validation_not_test():
    res = make_results("a", {"Weight-Entropy": flat(0.80, 0.60), "Gradient-Fisher": flat(0.70, 0.90)})
    assert reference_strategy(res.curves) == "Weight-Entropy"  # the better validation curve, worse on test
    tied = make_results("a", {"Weight-Entropy": flat(0.80, 0.6), "Gradient-Fisher": flat(0.80, 0.9)})
    assert reference_strategy(tied.curves) == "Gradient-Fisher"  # a tie goes to SPEC 3's order


def test_comparison_table_by_hand():
    steps = [(scores(0.90), scores(0.85)), (scores(0.89), scores(0.80)), (scores(0.70), scores(0.60))]
    res = make_results(
        "a",
        {
            "Weight-Entropy": steps,  # the reference (val mean 0.83)
            "Gradient-Fisher": [(scores(0.5), scores(0.95))] * 3,
            "Random-Forest": [
                (scores(0.9), scores(0.85)),
                (scores(0.9), scores(0.90)),
                (scores(0.5), scores(0.70)),
            ],
            "Random": [flat(0.5, 0.5), flat(0.5, 0.7)],
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
    assert t.loc[("Random", "L/2"), "test_acc"] == pytest.approx(0.6) and t.loc[("Random", "mean"), "n_seeds"] == 1
    assert t.loc[("Random", "L/2"), "diff"] == pytest.approx(0.6 - 0.8)


def _win_or_tie_case(noisy: bool) -> DatasetResults:
    """RF 5 points above the reference on every k.  Clean: RF right on the reference's examples and 10
    more (10 discordant pairs).  Noisy: the same 5 points from 45 RF-only and 35 reference-only examples."""
    ref = scores(0.70)
    if noisy:
        rf = ref.copy()
        rf[:35] = 0.0  # the reference alone is right on 35 ...
        rf[140:185] = 1.0  # ... RF alone on 45
    else:
        rf = scores(0.75)
    assert rf.mean() - ref.mean() == pytest.approx(0.05)
    return make_results("a", {"Weight-Entropy": [(scores(0.8), ref)] * 3, "Random-Forest": [(scores(0.7), rf)] * 3})


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


def _one_seed(spec: dict, seed: int, original=(0.9, 0.9)):
    return make_run(spec, "a", original=original, seed=seed)


def seeded_case() -> DatasetResults:
    """Three seeds.  Validation: seed 0 alone prefers Gradient-Fisher (0.85 > 0.80), the seed mean Weight-Entropy
    (0.80 > 0.75).  Test: RF right on the reference's 70 % and 15 / 10 / 20 points more (0.85, 0.80, 0.90)."""
    specs = {}
    for s, (gf_val, rf_test) in enumerate(((0.85, 0.85), (0.70, 0.80), (0.70, 0.90))):
        specs[s] = {
            "Weight-Entropy": flat(0.80, 0.70),
            "Gradient-Fisher": flat(gf_val, 0.50),
            "Random-Forest": flat(0.75, rf_test),
            "Random": [flat(0.5, 0.5), flat(0.5, 0.7)] if s == 0 else flat(0.5, 0.6),
        }
    return make_seeded("a", specs)


def test_comparison_table_over_seeds_by_hand():
    res = seeded_case()
    assert reference_strategy(res.only([0]).curves) == "Gradient-Fisher"
    assert reference_strategy(res.curves) == "Weight-Entropy"  # validation curve mean averaged over seeds
    t = comparison_table([res], resamples=400).set_index(["strategy", "view"])
    rf = t.loc[("Random-Forest", "mean")]
    assert rf["test_acc"] == pytest.approx(0.85) and rf["diff"] == pytest.approx(0.15)
    assert rf["n_seeds"] == 3 and rf["agree"] == 3 and rf["call"] == "win"
    # the interval is the two-level bootstrap of the per-seed differences stacked by hand
    d = np.stack([scores(a) - scores(0.70) for a in (0.85, 0.80, 0.90)])
    ref = two_level_bootstrap(d, 0.0, resamples=400).iloc[0]
    assert (rf["ci_low"], rf["ci_high"]) == pytest.approx((ref["ci_low"], ref["ci_high"]), abs=1e-12)
    # Random: each seed's replicate mean (0.6 in every seed), then the mean over seeds
    assert t.loc[("Random", "L/2"), "test_acc"] == pytest.approx(0.6) and t.loc[("Random", "L/2"), "n_seeds"] == 3
    assert t.loc[("Random", "mean"), "diff"] == pytest.approx(0.6 - 0.7)
    # the M_0 row of the val-k view is M_0's seed mean (0.9 in every seed here)
    assert t.loc[("Gradient-Fisher", "val-k"), ["k", "test_acc"]].tolist() == [0, pytest.approx(0.9)]


def test_one_seed_gives_the_paired_bootstrap_interval():
    res = make_results("a", {"Weight-Entropy": flat(0.8, 0.7), "Random-Forest": flat(0.7, 0.75, shift=3)})
    rf = comparison_table([res], resamples=500).set_index(["strategy", "view"]).loc[("Random-Forest", "mean")]
    ref = paired_bootstrap(scores(0.75, shift=3), scores(0.70), resamples=500).iloc[0]
    assert (rf["diff"], rf["ci_low"], rf["ci_high"]) == pytest.approx(
        (ref["diff"], ref["ci_low"], ref["ci_high"]), abs=1e-12
    )
    assert rf["n_seeds"] == 1 and rf["agree"] == 1


def _order_curves(orders: dict, n_layers: int = 4) -> pd.DataFrame:
    rows = [
        {"dataset": "a", "strategy": s, "seed": 0, "step": k, "removed": layer, "val_acc": 0.5, "test_acc": 0.5}
        for s, order in orders.items()
        for k, layer in enumerate(order, start=1)
    ]
    return pd.DataFrame(rows)


def test_pruning_orders_name_the_strategies_that_coincide():
    orders = {
        "Weight-Magnitude": [3, 2, 1],
        "Weight-Entropy": [3, 2, 1],
        "Top-Drop": [3, 2, 1],
        "Gradient-Norm": [0, 2, 1],
        "Activation-Mean": [0, 2, 3],
        "Random": [3, 2, 1],  # random: never a shared order
        "Oracle": [0, 2],  # unfinished: left out
    }
    runs = {}
    for s, change in ((0, {}), (1, {"Top-Drop": [3, 1, 2]})):
        run = make_run({})
        run.seed, run.curves = s, _order_curves(orders | change)
        runs[s] = run
    got = pruning_orders([DatasetResults("a", runs)]).set_index("pipeline_seed")
    assert got.loc[0, "n_strategies"] == 5 and got.loc[0, "n_orders"] == 3
    assert got.loc[0, "shared"] == "Weight-Magnitude = Weight-Entropy = Top-Drop"
    assert got.loc[1, "n_orders"] == 4 and got.loc[1, "shared"] == "Weight-Magnitude = Weight-Entropy"
    summary = orders_summary(got.reset_index()).iloc[0]
    assert (
        summary["distinct_orders"] == "3/4 of 5"
        and summary["shared_in_every_seed"] == "Weight-Magnitude = Weight-Entropy"
    )


# ---------------------------------------------------------------- from run folders to the printed table


def test_load_results_reads_predictions_back(tmp_path):
    res = _win_or_tie_case(noisy=False)
    write_results(tmp_path, res)  # one seed: the flat layout written before seeds
    (loaded,) = load_results(tmp_path)
    assert loaded.has_predictions and loaded.tolerance == 0.01 and loaded.n_layers == 4 and loaded.seeds == (0,)
    for key, sc in res.runs[0].scores.items():
        np.testing.assert_array_equal(loaded.runs[0].scores[key], sc)
    np.testing.assert_array_equal(loaded.runs[0].original["test"], res.runs[0].original["test"])


def test_load_results_reads_every_seed_root_and_pairs_the_examples(tmp_path):
    res = seeded_case()
    for run in res.runs.values():
        with_distill(run, kd=0.9, ce=0.88, none=0.6, continued=0.86)
    write_results(tmp_path, res)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed-0", "seed-1", "seed-2"]
    (loaded,) = load_results(tmp_path)
    assert loaded.seeds == (0, 1, 2) and loaded.has_predictions
    for s in (0, 1, 2):
        np.testing.assert_array_equal(
            loaded.seed_scores("Random-Forest")[s], res.runs[s].scores[("Random-Forest", "test")]
        )
        np.testing.assert_array_equal(loaded.seed_distill(("M_0", 0, "ce", "test"))[s], scores(0.86))
    np.testing.assert_array_equal(loaded.seed_scores("Random")[0], np.stack([(scores(0.5) + scores(0.7)) / 2] * 3))
    assert set(loaded.curves["pipeline_seed"]) == {0, 1, 2} and set(loaded.distill["pipeline_seed"]) == {0, 1, 2}
    assert load_results(tmp_path, seeds=[2])[0].seeds == (2,)
    with pytest.raises(PaperlibError, match="no seed"):
        load_results(tmp_path, seeds=[7])
    curves, metrics, distill = load_runs(tmp_path)
    assert len(curves) == sum(len(r.curves) for r in res.runs.values()) and metrics["a"]["test_acc"] == 0.9
    # seed 1 scored on other examples: its labels differ, so nothing may be paired across seeds
    labels = pd.read_parquet(tmp_path / "seed-1" / "a" / "labels.parquet")
    labels.loc[labels["split"] == "test", "label"] = (labels["label"] + 1) % 3
    labels.to_parquet(tmp_path / "seed-1" / "a" / "labels.parquet")
    with pytest.raises(PaperlibError, match="test labels of seed 1 differ"):
        load_results(tmp_path)


def test_table_command_prints_intervals_claims_and_rules(tmp_path, capsys):
    from paperlib.claims import VERDICT_RULES

    a = _win_or_tie_case(noisy=False)
    flipped = make_run({"Weight-Entropy (flipped)": flat(0.6, 0.9)})  # worse on validation
    a.runs[0].curves = pd.concat([a.runs[0].curves, flipped.curves], ignore_index=True)
    a.runs[0].scores |= flipped.scores
    write_results(tmp_path, a)
    b = _win_or_tie_case(noisy=True)
    b.name = "b"
    b.runs[0].curves["dataset"] = "b"
    write_results(tmp_path, b)
    old = make_results("c", {"Weight-Entropy": flat(0.8, 0.7), "Random-Forest": flat(0.7, 0.75)})
    write_results(tmp_path, old, with_predictions=False)  # a folder from before predictions were saved
    write_json({"method": "TF-IDF+LR", "test_acc": 0.6125, "val_acc": 0.6}, tmp_path / "a" / "baseline.json")
    out = table_command(tmp_path, out=tmp_path / "summary")
    printed = capsys.readouterr().out
    assert "Table 1 (selection-free)" in printed and "75.00+" in printed and "70.00R" in printed
    assert "One pipeline seed (seed 0)" in printed and "test-set noise only" in printed
    # the classical reference's row: dataset a's baseline.json, nothing for the folders without one
    row = [line for line in printed.splitlines() if line.startswith("TF-IDF+LR (classical reference)")]
    assert len(row) == 1 and row[0].split()[3:] == ["61.25"]
    assert "+5.00 [" in printed and "Claims check" in printed and VERDICT_RULES.splitlines()[1] in printed
    assert "c: L=4, k=1/2/3, reference Weight-Entropy (no predictions.parquet: no intervals)" in printed
    assert "SECONDARY, selected on test" in printed and "Pruning orders that coincide" in printed
    assert "Direction check" in printed and "SPEC +20.00" in printed and "SPEC 1, flip 0 of 1" in printed
    assert "(flipped)" not in out["table"]["strategy"].str.cat()  # not a Table 1 strategy
    assert " 1/1" not in printed  # one seed: no agreement to show
    saved = pd.read_csv(tmp_path / "summary" / "table1.csv")
    assert len(saved) == len(out["table"]) and set(saved["view"]) == {"L/4", "L/2", "3L/4", "mean", "val-k", "max"}
    assert {"claims.csv", "claims_by_seed.csv", "table1_mean.csv", "table1_max.csv", "direction.csv", "orders.csv"} <= {
        p.name for p in (tmp_path / "summary").iterdir()
    }
    with pytest.raises(PaperlibError, match="paperlib prune"):
        load_results(tmp_path / "summary")


def test_table_command_over_seeds_shows_agreement_and_what_the_intervals_cover(tmp_path, capsys):
    res = seeded_case()
    for run in res.runs.values():
        with_distill(run, kd=0.9, ce=0.88, none=0.6, continued=0.86)
    write_results(tmp_path, res)
    out = table_command(tmp_path, out=tmp_path / "summary")
    printed = capsys.readouterr().out
    assert "3 pipeline seeds (0, 1, 2)" in printed and "training and test-set noise" in printed
    assert "85.00+ 3/3" in printed  # RF's seed-mean curve mean, a win on 3 of 3 seeds
    pairs = out["distill_pairs"].iloc[0]  # KD 90 % against M_0 continued 86 % in every seed: +4 points, 3 of 3
    assert "KD vs M_0 continued" in printed and pairs["kd-M_0c_diff"] == pytest.approx(0.04)
    assert pairs["kd-M_0c_agree"] == 3 and f"+4.00 [{100 * pairs['kd-M_0c_ci_low']:+.2f}, " in printed
    by_seed = pd.read_csv(tmp_path / "summary" / "claims_by_seed.csv")
    assert sorted(by_seed["pipeline_seed"].unique()) == [0, 1, 2]
    assert set(pd.read_csv(tmp_path / "summary" / "table1_by_seed.csv")["pipeline_seed"]) == {0, 1, 2}
    assert (out["table"]["n_seeds"] == 3).all()


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
    assert set(distill["dataset"]) == {"a"} and set(loaded["pipeline_seed"]) == {0}
