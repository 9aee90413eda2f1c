"""The strategy registry: every pruning rule by its SPEC name, category and direction.

A strategy looks at the signals of the *current* (already pruned) model, one row per remaining
layer, and names the original index of the layer to remove next.  Single-signal rules rank by one
column (direction = which end goes first; ties go to the lowest original index).  Random, Oracle,
Top-Drop and the fusion strategies share the same ``choose`` interface, so one engine runs them all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import PaperlibError

SIGNALS: tuple[str, ...] = (
    "Activation-Mean",
    "Activation-Intensity",
    "Activation-Energy",
    "Task-Relevance-MI",
    "Redundancy-MI",
    "Gradient-Norm",
    "Gradient-Fisher",
    "Gradient-Taylor",
    "Weight-Magnitude",
    "Weight-Entropy",
    "Attention-Weight",
    "Attention-Entropy",
)
REFERENCE_SIGNALS: tuple[str, ...] = ("Block-Influence",)
CATEGORY = {
    "Activation-Mean": "activation",
    "Activation-Intensity": "activation",
    "Activation-Energy": "activation",
    "Task-Relevance-MI": "mutual information",
    "Redundancy-MI": "mutual information",
    "Gradient-Norm": "gradient",
    "Gradient-Fisher": "gradient",
    "Gradient-Taylor": "gradient",
    "Weight-Magnitude": "weight",
    "Weight-Entropy": "weight",
    "Attention-Weight": "attention",
    "Attention-Entropy": "attention",
}
# which end of a signal is pruned first (SPEC 3)
DIRECTION = {name: "lowest" for name in SIGNALS} | {
    "Redundancy-MI": "highest",
    "Attention-Entropy": "highest",
    "Block-Influence": "lowest",
}


@dataclass
class Strategy:
    """A pruning rule.  ``kind``: signal, random, oracle, reference or fusion."""

    name: str
    category: str
    kind: str
    direction: str | None = None  # "lowest" / "highest" for ranked rules
    column: str | None = None  # signal column a ranked rule reads
    predictor: Callable | None = field(default=None, repr=False)  # fusion: z-scored signals -> predicted gain

    def choose(self, signals: pd.DataFrame, rng: np.random.Generator | None = None) -> int:
        """Original index of the layer to remove, from the current model's signals (one row per layer)."""
        layers = signals["layer"].to_numpy()
        if self.kind == "random":
            if rng is None:
                raise PaperlibError("the Random strategy needs a seeded numpy Generator")
            return int(rng.choice(np.sort(layers)))
        if self.name == "Top-Drop":
            return int(layers.max())
        if self.kind == "fusion":
            scores = np.asarray(self.predictor(zscore(signals)), dtype=float)
            return rank_choice(layers, scores, "highest")
        if self.kind in ("signal", "reference"):
            return rank_choice(layers, signals[self.column].to_numpy(dtype=float), self.direction)
        raise PaperlibError(f"strategy {self.name!r} is chosen by the pruning engine, not from signals")


def rank_choice(layers: np.ndarray, values: np.ndarray, direction: str) -> int:
    """The layer whose value is lowest/highest; ties (and NaNs last) go to the lowest original index."""
    values = np.where(np.isnan(values), np.inf if direction == "lowest" else -np.inf, values)
    key = values if direction == "lowest" else -values
    order = np.lexsort((layers, key))
    return int(layers[order[0]])


def zscore(signals: pd.DataFrame, columns=SIGNALS) -> pd.DataFrame:
    """Each signal z-scored across the layers in ``signals`` (a constant signal scores 0), SPEC 5."""
    x = signals[list(columns)].to_numpy(dtype=float)
    mu, sd = x.mean(0), x.std(0)
    z = np.where(sd > 0, (x - mu) / np.where(sd > 0, sd, 1.0), 0.0)
    return pd.DataFrame(z, columns=list(columns), index=signals.index)


REGISTRY: dict[str, Strategy] = {
    **{s: Strategy(s, CATEGORY[s], "signal", DIRECTION[s], s) for s in SIGNALS},
    "Random": Strategy("Random", "baseline", "random"),
    "Oracle": Strategy("Oracle", "baseline", "oracle"),
    "Block-Influence": Strategy("Block-Influence", "reference", "reference", "lowest", "Block-Influence"),
    "Top-Drop": Strategy("Top-Drop", "reference", "reference", "highest"),
}
FLIPPED = " (flipped)"
OPPOSITE = {"lowest": "highest", "highest": "lowest"}
# "<signal> (flipped)": the same ranked rule with the opposite direction, for the direction check
# (direction.direction_check).  Run only when named (or with 'flipped'); 'all' does not include them.
REGISTRY |= {s + FLIPPED: Strategy(s + FLIPPED, CATEGORY[s], "signal", OPPOSITE[DIRECTION[s]], s) for s in SIGNALS}
FLIPPED_ALL = tuple(s + FLIPPED for s in SIGNALS)
FUSION_NAMES = ("Linear-Regression", "Random-Forest")
TRANSFER = " (transfer)"  # fusion fitted on the other datasets only (leave-one-dataset-out, SPEC 5)
REFERENCES = ("Random", "Oracle", "Block-Influence", "Top-Drop")  # baselines and peers' criteria
PRUNE_ALL = SIGNALS + REFERENCES  # what `paperlib prune --strategies all` runs


def transfer_name(name: str) -> str:
    """'Random-Forest' -> 'Random-Forest (transfer)'."""
    return name + TRANSFER


def fusion_names(protocol: str = "within") -> tuple[str, str]:
    """(LR, RF) strategy names of a fusion protocol: suffixed ' (transfer)' for the transfer protocol."""
    return FUSION_NAMES if protocol == "within" else tuple(transfer_name(n) for n in FUSION_NAMES)


DISPLAY_ORDER = (*SIGNALS, *FUSION_NAMES, *fusion_names("transfer"), *REFERENCES, *FLIPPED_ALL)


def display_order(names) -> list[str]:
    """The one order in which tables and figures list strategies: the twelve signals in SPEC order, fusion
    (within, then transfer), Random, Oracle, the peers' criteria, the flipped twins, then any other name
    alphabetically."""
    rank = {n: i for i, n in enumerate(DISPLAY_ORDER)}
    return sorted(dict.fromkeys(names), key=lambda n: (rank.get(n, len(rank)), n))


def parse_strategies(spec: str | list[str]) -> list[str]:
    """'all', 'flipped' (the 12 signals with their direction reversed) or a comma list of names and of
    those two words -> validated list of names (fusion strategies come from ``paperlib fuse``)."""
    items = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    groups = {"all": PRUNE_ALL, "flipped": FLIPPED_ALL}
    names = list(dict.fromkeys(n for item in items for n in groups.get(item, (item,))))
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        hint = " (fusion strategies run through `paperlib fuse`)" if set(unknown) & set(FUSION_NAMES) else ""
        raise PaperlibError(f"unknown strategy {unknown}{hint}; choose from {list(REGISTRY)} or 'all'")
    return names


def strategy_table() -> pd.DataFrame:
    """The registry as a DataFrame: name, category, kind, direction."""
    rows = [(s.name, s.category, s.kind, s.direction) for s in REGISTRY.values() if not s.name.endswith(FLIPPED)]
    rows += [(n, "fusion", "fusion", "highest predicted gain") for n in FUSION_NAMES]
    return pd.DataFrame(rows, columns=["strategy", "category", "kind", "direction"])
