"""Table 1, ATS factors and the claims check on hand-made curves with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from paperlib.errors import PaperlibError
from paperlib.io import write_json
from paperlib.metrics import (ats, ats_factors, claims_check, distill_summary, load_runs, table1, table1_wide,
                              table_command)


def _curve(dataset, strategy, accs, seed=0):
    return pd.DataFrame({"dataset": dataset, "strategy": strategy, "seed": seed, "step": range(1, len(accs) + 1),
                         "removed": 0, "kept": "", "val_acc": accs, "test_acc": accs, "n_params": 1, "bytes": 4})


def hand_curves() -> pd.DataFrame:
    return pd.concat([
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
    ], ignore_index=True)


METRICS = {"a": {"test_acc": 0.88, "bytes": 100e6}, "b": {"test_acc": 0.75, "bytes": 100e6},
           "c": {"test_acc": 0.70, "bytes": 100e6}}


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
    assert best == [("a", "Weight-Entropy"), ("a", "Linear-Regression"), ("a", "Random-Forest"),
                    ("b", "Linear-Regression"), ("c", "Gradient-Fisher")]
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
    assert cols.index("Gradient-Fisher") < cols.index("Weight-Entropy") < cols.index("Linear-Regression") \
        < cols.index("Random-Forest") < cols.index("Random") < cols.index("Oracle") < cols.index("Original")


def test_ats_uses_decimal_megabytes():
    assert ats(0.9, 100e6) == pytest.approx(0.9)
    assert ats(0.5, 2_000_000) == pytest.approx(25.0)


def hand_distill(dataset="a", kd=(0.92, 0.91, 0.80), none=(0.80, 0.70, 0.40), ce=(0.85, 0.80, 0.60)):
    rows = []
    sizes = {1: 80e6, 2: 50e6, 3: 20e6}
    for mode, accs in (("kd", kd), ("none", none), ("ce", ce)):
        for depth, acc in zip((1, 2, 3), accs):
            rows.append({"dataset": dataset, "strategy": "Random-Forest", "depth": depth, "n_layers": 4 - depth,
                         "kept": "", "mode": mode, "alpha": 0.5, "val_acc": acc, "test_acc": acc,
                         "n_params": 1, "bytes": sizes[depth], "ats": np.nan, "best_depth": depth == 2})
    rows.append({**rows[0], "strategy": "Top-Drop", "test_acc": 0.01})  # another strategy: ignored
    return pd.DataFrame(rows)


def test_ats_factors_by_hand():
    f = ats_factors(hand_distill(), original_test_acc=0.9, original_bytes=100e6)
    assert f["k_star"] == 2 and f["ats_original"] == pytest.approx(0.9)
    assert f["F1"] == pytest.approx((91 / 50) / 0.9)            # 2.0222
    assert f["F2"] == pytest.approx((0.92 / 0.80 + 0.91 / 0.70 + 0.80 / 0.40) / 3)  # 1.4833
    assert f["F3"] == pytest.approx((80 / 20) / 0.9)            # 4.4444
    f_ce = ats_factors(hand_distill(), 0.9, 100e6, baseline="ce")
    assert f_ce["F2"] == pytest.approx((0.92 / 0.85 + 0.91 / 0.80 + 0.80 / 0.60) / 3)


def test_claims_check_by_hand():
    t = table1(hand_curves(), METRICS)
    distill = pd.concat([hand_distill("a"),                                       # 0.91 at k* > 0.88: beats
                         hand_distill("b", kd=(0.7, 0.74, 0.6)),                  # 0.74 < 0.75, > 0.70: narrows
                         hand_distill("c", kd=(0.5, 0.60, 0.5), none=(0.7, 0.65, 0.6))],  # neither
                        ignore_index=True)
    summary = distill_summary(distill, METRICS).set_index("dataset")
    assert summary["beats_original"].tolist() == [True, False, False]
    assert summary["narrows_drop"].tolist() == [False, True, False]
    assert summary.loc["a", "F1"] == pytest.approx((91 / 50) / 0.88)
    c = claims_check(t, summary.reset_index()).set_index("claim")["verdict"]
    verdicts = c.tolist()
    # n = 3: RF best on a only, need ceil(7/3)=3, partly from 2 -> not reproduced
    assert c["Random-Forest fusion is best"] == "not reproduced"
    # RF best or within 1 point: a only (b 2 pp, c 5 pp) -> 1 of 3, need 3 -> not reproduced
    assert verdicts[1] == "not reproduced"
    # LR best on a (tie) and b: 2 of 3, need ceil(5/3) = 2 -> reproduced
    assert c["Linear-Regression fusion leads (is best)"] == "reproduced"
    measured = claims_check(t, summary.reset_index()).set_index("claim")["measured"]
    assert measured["Random-Forest fusion is best"].endswith("sole best on 0")  # a: three-way tie
    assert measured["Linear-Regression fusion leads (is best)"].endswith("sole best on 1")  # b alone
    # fusion reaches every signal on a and b, not c (Gradient-Fisher): 2 of 3, need 3 -> partly
    row = claims_check(t, summary.reset_index()).iloc[3]
    assert row["verdict"] == "partly" and "c: short of Gradient-Fisher" in row["measured"]
    # beats: 1 of 3, need ceil(2) = 2, partly from 1 -> partly; beats-or-narrows 2 of 3, need 3 -> partly
    assert verdicts[4] == "partly" and verdicts[5] == "partly"
    # F3 = ATS(kd, one layer) / ATS(original): (80/20)/0.88, (60/20)/0.75, (50/20)/0.70; mean 4.04 is the closest
    f3 = np.mean([(80 / 20) / 0.88, (60 / 20) / 0.75, (50 / 20) / 0.70])
    assert summary["F3"].mean() == pytest.approx(f3)
    assert c["Average accuracy-to-size improvement factor"] == "not reproduced"  # 4.04 is below 18.84/2
    assert "closest: F3" in claims_check(t, summary.reset_index()).iloc[6]["measured"]


def test_ats_factor_verdict_names_the_closest_factor():
    t = table1(hand_curves(), METRICS)
    summary = pd.DataFrame({"dataset": ["a", "b"], "kd_test_acc": 0.9, "beats_original": True, "narrows_drop": False,
                            "F1": [2.0, 3.0], "F2": [1.1, 1.2], "F3": [17.0, 19.0]})
    row = claims_check(t, summary).iloc[6]
    assert row["verdict"] == "reproduced" and "closest: F3" in row["measured"]  # 18 within 25 % of 18.84
    summary["F3"] = [9.0, 11.0]  # 10: within a factor of 2
    assert claims_check(t, summary).iloc[6]["verdict"] == "partly"


def test_claims_check_without_distillation_or_fusion_says_not_measured():
    curves = _curve("a", "Weight-Entropy", [0.8, 0.7])
    c = claims_check(table1(curves, {"a": {"test_acc": 0.9}}))
    assert (c["verdict"] == "not measured").all()
    assert len(c) == 7


def test_load_runs_and_table_command(tmp_path, capsys):
    curves = hand_curves()
    for name in ("a", "b", "c"):
        folder = tmp_path / name
        folder.mkdir()
        curves[curves["dataset"] == name].drop(columns="dataset").to_parquet(folder / "curves.parquet")
        write_json(METRICS[name], folder / "metrics.json")
    hand_distill("a").drop(columns="dataset").to_parquet(tmp_path / "a" / "distill.parquet")
    (tmp_path / "summary").mkdir()
    loaded, metrics, distill = load_runs(tmp_path)
    assert sorted(loaded["dataset"].unique()) == ["a", "b", "c"] and metrics["b"]["test_acc"] == 0.75
    assert set(distill["dataset"]) == {"a"}
    out = table_command(tmp_path, out=tmp_path / "summary")
    printed = capsys.readouterr().out
    assert "85.00*" in printed and "Claims check" in printed and "F1" in printed
    saved = pd.read_csv(tmp_path / "summary" / "table1.csv")
    assert len(saved) == len(out["table1"]) and saved["best"].sum() == 5
    assert {p.name for p in (tmp_path / "summary").iterdir()} == {"table1.csv", "table1_wide.csv",
                                                                    "distill_summary.csv", "claims.csv"}
    with pytest.raises(PaperlibError, match="paperlib prune"):
        load_runs(tmp_path / "summary")
