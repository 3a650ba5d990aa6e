"""The rows of the evaluation table (METHOD.md §4): what each one is, and the baselines that do
not need the LLM.

Every row ranks the whole catalog for a query and leaves out the items the user consumed (the
same rule as the assistant's grounding). The LLM rows run the real :class:`Assistant` with a
row-specific configuration, so they differ from MR.Rec only in what the row says.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from mrrec_edge._core import MemoryEntry, MemoryStore
from mrrec_edge.assistant import AssistantConfig
from mrrec_edge.grounding import SIGNALS

RowKind = Literal["popularity", "grounding", "hybrid", "assistant", "signal-ablation"]
#: Which model bundle an assistant row runs on; "ablation" is the most trained one given.
ModelRole = Literal["base", "sft", "rl", "ablation"]
StaticMemory = Literal["recent", "profile"]

#: Interactions shown by the naive-memory row (the paper's "recent 10").
RECENT = 10
#: The memory budget of the rows that show memory up front: large enough never to cut it, so
#: their token counts are what that memory really costs.
UNCUT_BUDGET = 8192

_NO_CALLS = {"max_memory_calls": 0, "global_k": 0}


@dataclass(frozen=True)
class Row:
    name: str
    kind: RowKind
    description: str
    model: ModelRole | None = None
    config: AssistantConfig = field(default_factory=AssistantConfig)
    static_memory: StaticMemory | None = None
    #: A ``grounding`` row: its fixed signal weights and CF similarity (mrrec_edge.grounding).
    weights: tuple[tuple[str, float], ...] = ()
    similarity: str | None = None
    #: A ``signal-ablation`` row: the grounding signal it drops (the others refit on train).
    dropped: str | None = None

    @property
    def is_mrrec(self) -> bool:
        """MR.Rec itself or one of its ablations (not a baseline)."""
        return self.name.startswith(("mrrec-", "ablation-"))


ROWS: dict[str, Row] = {
    r.name: r
    for r in [
        Row("popularity", "popularity", "most-interacted items in train-split users' histories"),
        Row(
            "dense",
            "grounding",
            "the query alone, embedded and matched to the catalog",
            weights=(("request", 1.0),),
        ),
        Row(
            "cf",
            "grounding",
            "item-kNN (cosine) on all users' histories; ignores the query",
            weights=(("user_cf", 1.0),),
            similarity="knn",
        ),
        Row(
            "ease",
            "grounding",
            "EASE (closed-form item-item, λ = 1000) on all users' histories; ignores the query",
            weights=(("user_cf", 1.0),),
            similarity="ease",
        ),
        Row(
            "hybrid",
            "hybrid",
            "request + user CF + popularity, fused with weights fit on the train split (no LLM)",
        ),
        Row(
            "llm",
            "assistant",
            "the LLM writes the profile from the query alone (no memory, no calls)",
            "base",
            AssistantConfig(**_NO_CALLS),
        ),
        Row(
            "llm-naive",
            "assistant",
            f"the LLM with the {RECENT} most recent interactions shown (no calls)",
            "base",
            AssistantConfig(**_NO_CALLS, memory_token_budget=UNCUT_BUDGET),
            "recent",
        ),
        Row(
            "llm-static",
            "assistant",
            "the LLM with the user's whole profile tier shown (no calls)",
            "base",
            AssistantConfig(**_NO_CALLS, memory_token_budget=UNCUT_BUDGET),
            "profile",
        ),
        Row("mrrec-base", "assistant", "MR.Rec, base model", "base"),
        Row("mrrec-sft", "assistant", "MR.Rec, SFT-only model", "sft"),
        Row("mrrec-rl", "assistant", "MR.Rec, RL-tuned model", "rl"),
        Row(
            "ablation-no-local",
            "assistant",
            "MR.Rec with global memory only (no memory calls)",
            "ablation",
            AssistantConfig(max_memory_calls=0),
        ),
        Row(
            "ablation-no-global",
            "assistant",
            "MR.Rec without global memory",
            "ablation",
            AssistantConfig(global_k=0),
        ),
        *[
            Row(
                f"ablation-{tier}",
                "assistant",
                f"MR.Rec with memory calls limited to the {tier} tier",
                "ablation",
                AssistantConfig(memory_tiers=(tier,)),
            )
            for tier in ("behavior", "pattern", "profile")
        ],
        *[
            Row(
                f"ablation-no-{signal}",
                "signal-ablation",
                f"MR.Rec's answers grounded without the {signal} signal (the rest refit on train)",
                "ablation",
                dropped=signal,
            )
            for signal in SIGNALS
        ],
    ]
}
ROW_NAMES: tuple[str, ...] = tuple(ROWS)


def static_memory(store: MemoryStore, user: str, kind: StaticMemory) -> list[MemoryEntry]:
    """The memory a naive or static row shows up front.

    ``recent``: the behavior records of the user's :data:`RECENT` latest interactions, newest
    first. ``profile``: every chunk of the user's profile tier, in the order it was written.
    """
    if kind == "profile":
        return sorted(store.list_memory(user=user, tiers=["profile"], limit=1_000_000), key=_id)
    history = sorted(store.user_history(user), key=lambda r: (r["timestamp"], r["record_id"]))
    latest = [r["record_id"] for r in reversed(history[-RECENT:])]
    behavior = store.list_memory(user=user, tiers=["behavior"], limit=1_000_000)
    by_record = {m.source_ids[0]: m for m in behavior if m.source_ids}
    return [by_record[r] for r in latest if r in by_record]


def _id(entry: MemoryEntry) -> int:
    return entry.id


# -- baselines without the LLM --------------------------------------------------------------


def top_k(scores: np.ndarray, candidates: np.ndarray, exclude: Iterable[int], k: int) -> list[int]:
    """The ``k`` best candidate item ids by score, ties by smaller id, without ``exclude``."""
    excluded = np.fromiter(exclude, dtype=np.int64)
    keep = candidates[~np.isin(candidates, excluded)]
    # lexsort's last key is the primary one: score descending, then id ascending.
    order = np.lexsort((keep, -scores[keep]))
    return [int(i) for i in keep[order[:k]]]


def _histories(store: MemoryStore, users: Sequence[str]) -> dict[str, list[int]]:
    return {u: [int(r["item_id"]) for r in store.user_history(u)] for u in users}


class Popularity:
    """Items ranked by how many of the given users (the train split's) interacted with them."""

    def __init__(self, store: MemoryStore, users: Sequence[str]) -> None:
        self.store = store
        counts = Counter(i for items in _histories(store, users).values() for i in set(items))
        self.candidates = np.array(sorted(counts), dtype=np.int64)
        self.scores = np.zeros(int(self.candidates.max(initial=0)) + 1)
        for item, n in counts.items():
            self.scores[item] = n

    def rank(self, user: str, k: int) -> list[int]:
        return top_k(self.scores, self.candidates, self.store.consumed_item_ids(user), k)
