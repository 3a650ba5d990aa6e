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

RowKind = Literal["popularity", "dense", "cf", "assistant"]
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

    @property
    def is_mrrec(self) -> bool:
        """MR.Rec itself or one of its ablations (not a baseline)."""
        return self.name.startswith(("mrrec-", "ablation-"))


ROWS: dict[str, Row] = {
    r.name: r
    for r in [
        Row("popularity", "popularity", "most-interacted items in train-split users' histories"),
        Row("dense", "dense", "the query alone, embedded and matched to the catalog"),
        Row("cf", "cf", "item-kNN (cosine) on all users' histories; ignores the query"),
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


def item_cosine(interactions: np.ndarray) -> np.ndarray:
    """Cosine similarity between the item columns of a 0/1 matrix (users by items), with a zero
    diagonal (an item does not recommend itself) and 0 for items nobody consumed."""
    co = interactions.T @ interactions
    norms = np.sqrt(np.diag(co))
    norms[norms == 0] = 1.0
    similarity = co / norms[:, None] / norms[None, :]
    np.fill_diagonal(similarity, 0.0)
    return similarity


class ItemKNN:
    """Item-based collaborative filtering: a user's score for an item is the sum of its cosine
    similarities (over binary user-item interactions, any rating) to the items they consumed.
    Deterministic: no sampling, no training."""

    def __init__(self, store: MemoryStore, users: Sequence[str]) -> None:
        self.store = store
        histories = _histories(store, users)
        self.candidates = np.array(sorted({i for h in histories.values() for i in h}), np.int64)
        self.rows = {u: n for n, u in enumerate(histories)}
        self.interactions = np.zeros((len(histories), int(self.candidates.max(initial=0)) + 1))
        for n, h in enumerate(histories.values()):
            self.interactions[n, h] = 1.0
        self.similarity = item_cosine(self.interactions)

    def rank(self, user: str, k: int) -> list[int]:
        scores = self.interactions[self.rows[user]] @ self.similarity
        return top_k(scores, self.candidates, self.store.consumed_item_ids(user), k)
