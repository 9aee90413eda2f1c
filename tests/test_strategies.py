"""The strategy registry: direction and tie-breaking of every rule, against SPEC 3's table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from paperlib.errors import PaperlibError
from paperlib.strategies import (
    FUSION_NAMES,
    PRUNE_ALL,
    REGISTRY,
    SIGNALS,
    Strategy,
    parse_strategies,
    rank_choice,
    strategy_table,
    zscore,
)

# SPEC 3, column "prunes first", copied by hand (an independent reference for strategies.DIRECTION)
SPEC_PRUNES_FIRST = {
    "Activation-Mean": "lowest",
    "Activation-Intensity": "lowest",
    "Activation-Energy": "lowest",
    "Task-Relevance-MI": "lowest",
    "Redundancy-MI": "highest",
    "Gradient-Norm": "lowest",
    "Gradient-Fisher": "lowest",
    "Gradient-Taylor": "lowest",
    "Weight-Magnitude": "lowest",
    "Weight-Entropy": "lowest",
    "Attention-Weight": "lowest",
    "Attention-Entropy": "highest",
    "Block-Influence": "lowest",
}
LAYERS = [7, 2, 5, 9]  # deliberately unsorted: choices must be original indices, not positions


def frame(values: dict[str, list[float]], layers=LAYERS) -> pd.DataFrame:
    """A signal frame: every column 0.5 except the ones given."""
    df = pd.DataFrame({"layer": layers, "position": range(len(layers))})
    for name in (*SIGNALS, "Block-Influence"):
        df[name] = values.get(name, [0.5] * len(layers))
    return df


def test_registry_holds_the_spec_strategies():
    assert set(SIGNALS) == set(SPEC_PRUNES_FIRST) - {"Block-Influence"}
    assert set(PRUNE_ALL) == set(SIGNALS) | {"Random", "Oracle", "Block-Influence", "Top-Drop"}
    assert set(REGISTRY) == set(PRUNE_ALL) | {f"{s} (flipped)" for s in SIGNALS}
    table = strategy_table()
    assert set(FUSION_NAMES) <= set(table["strategy"]) and len(table) == len(PRUNE_ALL) + 2


@pytest.mark.parametrize("name", sorted(set(SPEC_PRUNES_FIRST) - {"Block-Influence"}))
def test_flipped_variant_prunes_the_other_end(name):
    values = [3.0, 1.0, 4.0, 2.0]  # layer 2 holds the lowest, layer 5 the highest
    expected = 5 if SPEC_PRUNES_FIRST[name] == "lowest" else 2  # the SPEC direction's opposite end
    assert REGISTRY[f"{name} (flipped)"].choose(frame({name: values})) == expected


def test_flipped_runs_only_when_asked():
    assert not any(n.endswith("(flipped)") for n in parse_strategies("all"))
    flipped = parse_strategies("flipped")
    assert flipped == [f"{s} (flipped)" for s in SIGNALS]
    assert parse_strategies("Top-Drop,flipped,Top-Drop") == ["Top-Drop", *flipped]


@pytest.mark.parametrize("name", sorted(SPEC_PRUNES_FIRST))
def test_ranked_strategy_direction(name):
    values = [3.0, 1.0, 4.0, 2.0]  # layer 2 holds the lowest, layer 5 the highest
    expected = 2 if SPEC_PRUNES_FIRST[name] == "lowest" else 5
    assert REGISTRY[name].choose(frame({name: values})) == expected
    # the other columns do not matter
    others = {c: [9.0, -9.0, 0.0, 1.0] for c in (*SIGNALS, "Block-Influence") if c != name}
    assert REGISTRY[name].choose(frame({name: values, **others})) == expected


@pytest.mark.parametrize("name", sorted(SPEC_PRUNES_FIRST))
def test_ties_go_to_the_lowest_original_index(name):
    best = 1.0 if SPEC_PRUNES_FIRST[name] == "lowest" else 4.0
    values = [best, 2.5, 3.0, best]  # layers 7 and 9 tie at the extreme; 7 is lower
    assert REGISTRY[name].choose(frame({name: values})) == 7
    assert REGISTRY[name].choose(frame({name: [0.3] * 4})) == 2  # all tied


@pytest.mark.parametrize("name", sorted(SPEC_PRUNES_FIRST))
def test_nan_is_never_chosen_before_a_number(name):
    nan = float("nan")
    values = [nan, nan, 2.0, nan] if SPEC_PRUNES_FIRST[name] == "lowest" else [nan, nan, -5.0, nan]
    assert REGISTRY[name].choose(frame({name: values})) == 5
    assert REGISTRY[name].choose(frame({name: [nan] * 4})) == 2  # nothing known: lowest index


def test_top_drop_removes_the_topmost_remaining_layer():
    assert REGISTRY["Top-Drop"].choose(frame({})) == 9
    assert REGISTRY["Top-Drop"].choose(pd.DataFrame({"layer": [0, 4, 1]})) == 4


def test_random_draws_from_the_sorted_remaining_layers():
    df = pd.DataFrame({"layer": LAYERS})
    got = [REGISTRY["Random"].choose(df, np.random.default_rng(s)) for s in range(20)]
    want = [int(np.random.default_rng(s).choice(sorted(LAYERS))) for s in range(20)]
    assert got == want and set(got) <= set(LAYERS) and len(set(got)) > 1
    with pytest.raises(PaperlibError):
        REGISTRY["Random"].choose(df)


def test_oracle_is_left_to_the_engine():
    with pytest.raises(PaperlibError, match="engine"):
        REGISTRY["Oracle"].choose(frame({}))


def test_fusion_prunes_the_highest_prediction_from_zscored_signals():
    seen = {}

    def predictor(z: pd.DataFrame):
        seen["z"] = z
        return -z["Weight-Entropy"].to_numpy()  # predicted gain: low entropy is harmless

    fusion = Strategy("Linear-Regression", "fusion", "fusion", predictor=predictor)
    assert fusion.choose(frame({"Weight-Entropy": [3.0, 1.0, 4.0, 2.0]})) == 2
    z = seen["z"]
    assert list(z.columns) == list(SIGNALS)
    x = np.array([3.0, 1.0, 4.0, 2.0])
    np.testing.assert_allclose(z["Weight-Entropy"], (x - x.mean()) / x.std())
    assert (z["Gradient-Norm"] == 0).all()  # a constant signal scores 0
    tie = Strategy("RF", "fusion", "fusion", predictor=lambda z: np.array([1.0, 0.0, 1.0, 1.0]))
    assert tie.choose(frame({})) == 5  # ties: lowest original index among 7, 5, 9


def test_rank_choice_and_zscore_by_hand():
    assert rank_choice(np.array([4, 1, 3]), np.array([0.2, 0.2, 0.1]), "highest") == 1
    assert rank_choice(np.array([4, 1, 3]), np.array([0.2, 0.2, 0.1]), "lowest") == 3
    z = zscore(pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [7.0, 7.0, 7.0]}), columns=["a", "b"])
    np.testing.assert_allclose(z["a"], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    np.testing.assert_array_equal(z["b"], [0.0, 0.0, 0.0])


def test_parse_strategies():
    assert parse_strategies("all") == list(PRUNE_ALL)
    assert parse_strategies("Oracle, Random") == ["Oracle", "Random"]
    assert parse_strategies(["Top-Drop"]) == ["Top-Drop"]
    with pytest.raises(PaperlibError, match="unknown strategy"):
        parse_strategies("Weight-Entropi")
    with pytest.raises(PaperlibError, match="paperlib fuse"):
        parse_strategies("Random-Forest")
