"""MR.Rec's rewards (METHOD.md §3), one function each, in a registry.

    r = 0.1 · format + 5 · ranking + 0.1 · memory

The weights live in the recipe (``[rewards] weights``); :data:`REWARDS` maps the names a recipe
may use to the functions. Each function reads one finished :class:`Rollout` (what
``Assistant.ask`` did for one query) and returns a number; none of them calls a model.

Ranking cut-offs. The paper sums nDCG@1000 and nDCG@100 of the true item over a pool of 1.06M
items. On our catalogs (1,682 MovieLens 100K items) a cut-off of 1000 would cover most of the
catalog and reward nearly any profile, so :func:`cutoffs` scales them (ours): the wide cut-off is
a tenth of the catalog, at most the paper's 1000 (so a paper-sized pool keeps the paper's
values) and at least 10; the narrow one keeps the paper's ratio of 10 below it. MovieLens 100K
gives (169, 17); the 13.8k-item catalog (1000, 100). A recipe may fix them instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mrrec_edge._core import ranking_metrics

PAPER_CUTOFFS = (1000, 100)


@dataclass(frozen=True)
class Rollout:
    """One conversation of the assistant with the policy, and where its answer ranked."""

    example_id: str
    user: str
    #: The true item's catalog id.
    target: int
    #: (prompt, completion) of every model turn.
    turns: list[tuple[str, str]]
    profile: str
    #: True when the orchestrator had to write the answer itself.
    fallback: bool
    reason: str | None
    #: The orchestrator's counters: turns, memory_calls, memory_tokens, malformed_turns.
    stats: Mapping[str, int]
    #: Catalog ids grounded from the profile, best first (items the user consumed left out).
    ranking: list[int]
    #: (wide, narrow) nDCG cut-offs.
    cutoffs: tuple[int, int]
    group: int = 0
    extra: dict[str, float] = field(default_factory=dict)


RewardFn = Callable[[Rollout], float]
REWARDS: dict[str, RewardFn] = {}


def reward(name: str) -> Callable[[RewardFn], RewardFn]:
    def register(fn: RewardFn) -> RewardFn:
        REWARDS[name] = fn
        return fn

    return register


def cutoffs(catalog_size: int, *, hi: int = 0, lo: int = 0) -> tuple[int, int]:
    """(wide, narrow) nDCG cut-offs for a catalog of ``catalog_size`` items (see the module doc);
    a positive ``hi`` or ``lo`` is taken as given."""
    if catalog_size < 1:
        raise ValueError("the catalog is empty")
    wide = hi or max(10, min(PAPER_CUTOFFS[0], math.ceil(catalog_size / 10)))
    narrow = lo or max(1, round(wide * PAPER_CUTOFFS[1] / PAPER_CUTOFFS[0]))
    return wide, narrow


def ndcg(ranking: list[int], target: int, k: int) -> float:
    """nDCG@k of one relevant item (the Rust metric the evaluation uses)."""
    return float(ranking_metrics([ranking], [[target]], [k])[f"ndcg@{k}"][0])


@reward("format")
def format_reward(r: Rollout) -> float:
    """1 when every model turn parsed and the model wrote the answer itself, else 0."""
    return float(not r.fallback and r.stats.get("malformed_turns", 0) == 0)


@reward("ranking")
def ranking_reward(r: Rollout) -> float:
    """nDCG@wide + nDCG@narrow of the true item in the catalog ranking of the profile (0..2)."""
    wide, narrow = r.cutoffs
    return ndcg(r.ranking, r.target, wide) + ndcg(r.ranking, r.target, narrow)


@reward("memory")
def memory_reward(r: Rollout) -> float:
    """1 when the model called memory_retrieval at least once."""
    return float(r.stats.get("memory_calls", 0) >= 1)


def check_weights(weights: Mapping[str, float]) -> None:
    unknown = sorted(set(weights) - set(REWARDS))
    if unknown:
        raise ValueError(f"unknown rewards {unknown} (known: {', '.join(REWARDS)})")


def score(r: Rollout, weights: Mapping[str, float]) -> dict[str, float]:
    """Each weighted reward's raw value, and ``total`` = their weighted sum."""
    check_weights(weights)
    parts = {name: REWARDS[name](r) for name in weights}
    parts["total"] = sum(weights[name] * value for name, value in parts.items())
    return parts
