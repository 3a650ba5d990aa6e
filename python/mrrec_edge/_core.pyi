"""Type stubs for the Rust extension ``mrrec_edge._core`` (hand-written; keep in step with
``rust/src/python.rs``)."""

from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
import numpy.typing as npt

__version__: str

Tier = Literal["behavior", "pattern", "profile", "global"]
SearchMode = Literal["hybrid", "dense", "lexical"]
EmbeddingTarget = Literal["item", "memory"]

class ImportReport(TypedDict):
    kind: str
    files: list[str]
    rows: int
    items_added: int
    items_matched: int
    users_added: int
    records_added: int
    records_skipped: int
    memory_added: int
    keywords_matched: int

class IndexReport(TypedDict):
    memory_vectors: int
    catalog_vectors: int
    memory_rebuilt: bool
    catalog_rebuilt: bool

class MemoryEntry:
    id: int
    tier: Tier
    user: str | None
    categories: list[str]
    text: str
    source_ids: list[int]
    item: str | None
    created_at: int
    updated_at: int
    def to_dict(self) -> dict[str, Any]: ...

class MemoryHit:
    entry: MemoryEntry
    score: float
    dense_score: float | None
    lexical_score: float | None
    def to_dict(self) -> dict[str, Any]: ...

class ItemHit:
    item_id: int
    ext_id: str
    title: str
    year: int | None
    categories: list[str]
    score: float
    def to_dict(self) -> dict[str, Any]: ...

class Item:
    item_id: int
    ext_id: str
    title: str
    year: int | None
    categories: list[str]
    keywords: list[str]
    description: str | None
    text: str

class MemoryStore:
    """The memory database in ``home`` (SQLite + FTS5 + usearch indexes beside it)."""

    def __init__(
        self,
        home: str | PathLike[str],
        *,
        dimensions: int | None = None,
        exact_threshold: int | None = None,
        expansion_search: int | None = None,
        busy_timeout_ms: int | None = None,
    ) -> None: ...
    @property
    def home(self) -> Path: ...
    @property
    def db_path(self) -> Path: ...
    def dimensions(self) -> int: ...
    def stats(self) -> dict[str, Any]: ...
    def users(self) -> list[str]: ...
    def import_file(
        self,
        kind: str,
        path: str | PathLike[str],
        *,
        user: str | None = None,
        keywords: str | PathLike[str] | None = None,
        progress: Callable[[int, int], object] | None = None,
    ) -> ImportReport: ...
    def pending_embeddings(self, limit: int) -> list[tuple[EmbeddingTarget, int, str]]: ...
    def set_embeddings(
        self, target: EmbeddingTarget, ids: Sequence[int], vectors: npt.ArrayLike
    ) -> int: ...
    def search_memory(
        self,
        *,
        vector: npt.ArrayLike | None = None,
        text: str | None = None,
        k: int = 10,
        user: str | None = None,
        tiers: Sequence[Tier] | None = None,
        categories: Sequence[str] | None = None,
        exclude: Sequence[int] | None = None,
        mode: SearchMode = "hybrid",
    ) -> list[MemoryHit]: ...
    def ground(
        self,
        vector: npt.ArrayLike,
        *,
        k: int = 10,
        user: str | None = None,
        include_seen: bool = False,
        categories: Sequence[str] | None = None,
        exclude: Sequence[int] | None = None,
    ) -> list[ItemHit]: ...
    def ground_fused(
        self, request: GroundRequest, *, weights: dict[str, float], k: int = 10
    ) -> list[GroundedItem]:
        """The ``k`` best catalog items for ``request`` by the fused grounding signals
        (GROUNDING_SIGNALS), each z-scored over the candidates and weighted by ``weights``."""
    def grounding_signals(
        self, request: GroundRequest
    ) -> tuple[
        np.ndarray[Any, np.dtype[np.int64]], list[np.ndarray[Any, np.dtype[np.float32]]], list[int]
    ]:
        """(candidate item ids, each signal's z-scores over them, the seeds of seed_cf)."""
    def open_collab(self) -> CollabReport | None:
        """Loads the collaborative index ahead of the first grounding (the saved one, or
        rebuilt when stale); what a rebuild did, or None."""
    def rebuild_collab(self) -> CollabReport:
        """Rebuilds the collaborative index (item-kNN, EASE) from the interactions now."""
    def search_items(
        self, text: str, *, k: int = 10, categories: Sequence[str] | None = None
    ) -> list[ItemHit]: ...
    def add_memory(
        self,
        tier: Tier,
        text: str,
        *,
        user: str | None = None,
        categories: Sequence[str] | None = None,
        source_ids: Sequence[int] | None = None,
        vector: npt.ArrayLike | None = None,
    ) -> int: ...
    def user_history(self, user: str) -> list[dict[str, Any]]: ...
    def replace_memory(
        self,
        tier: Tier,
        drafts: Sequence[dict[str, Any]],
        *,
        user: str | None = None,
        category: str | None = None,
    ) -> list[int]: ...
    def add_feedback(
        self,
        user: str,
        item: str,
        *,
        rating: float | None = None,
        text: str | None = None,
        source: str = "feedback",
        timestamp: int | None = None,
    ) -> dict[str, Any]: ...
    def get_memory(self, id: int) -> MemoryEntry: ...
    def forget_memory(self, ids: Sequence[int]) -> int:
        """Deletes the entries from SQLite and both indexes (a behavior entry's record too);
        returns how many existed."""
    def list_memory(
        self, *, user: str | None = None, tiers: Sequence[Tier] | None = None, limit: int = 100
    ) -> list[MemoryEntry]: ...
    def add_user(self, user: str) -> bool: ...
    def create_conversation(self, user: str, title: str = "") -> int: ...
    def rename_conversation(self, id: int, title: str) -> None: ...
    def delete_conversation(self, id: int) -> bool: ...
    def list_conversations(self, user: str, *, limit: int = 100) -> list[dict[str, Any]]: ...
    def add_message(
        self, conversation_id: int, role: str, content: str, payload: str = "{}"
    ) -> int: ...
    def update_message(self, id: int, content: str, payload: str | None = None) -> None: ...
    def conversation_messages(self, conversation_id: int) -> list[dict[str, Any]]: ...
    def item(self, alias: str) -> Item: ...
    def items_by_id(self, ids: Sequence[int]) -> list[Item]: ...
    def consumed_item_ids(self, user: str) -> list[int]: ...
    def open_indexes(self) -> IndexReport: ...
    def rebuild_indexes(self) -> IndexReport: ...
    def flush(self) -> None: ...
    def check_integrity(self) -> list[str]: ...
    def __enter__(self) -> MemoryStore: ...
    def __exit__(self, *exc: object) -> bool: ...

class CollabReport(TypedDict):
    items: int
    interactions: int
    ease: bool
    seconds: float

class GroundRequest:
    """What a grounding request knows; every part is optional."""

    def __init__(
        self,
        *,
        profile: npt.ArrayLike | None = None,
        request: npt.ArrayLike | None = None,
        profile_text: str | None = None,
        user: str | None = None,
        cited_memory: list[int] | None = None,
        include_seen: bool = False,
        exclude: list[int] | None = None,
        categories: list[str] | None = None,
        similarity: Literal["knn", "ease"] | None = None,
    ) -> None: ...

class GroundedItem:
    """A fused-grounding item: the hit, each signal's weighted contribution (they sum to the
    hit's score), and the liked items or seeds that most support it."""

    @property
    def item(self) -> ItemHit: ...
    @property
    def contributions(self) -> list[tuple[str, float]]: ...
    @property
    def because(self) -> list[int]: ...

#: The signals fused grounding weighs, in order.
GROUNDING_SIGNALS: list[str]

class Action(TypedDict, total=False):
    kind: Literal["retrieve", "answer"]
    # retrieve
    aspects: list[str]
    tier: Tier | None
    category: str | None
    k: int
    # answer
    profile: str
    memory_ids: list[int]
    fallback: bool
    reason: str | None

class Orchestrator:
    """The reasoning-retrieval state machine: prompts, turn grammar, parsing, memory budget."""

    def __init__(
        self,
        query: str,
        *,
        global_memory: Sequence[MemoryEntry | MemoryHit] | None = None,
        max_memory_calls: int | None = None,
        memory_token_budget: int | None = None,
        memory_k: int | None = None,
        max_think_chars: int | None = None,
        max_profile_chars: int | None = None,
    ) -> None: ...
    def messages(self) -> list[dict[str, str]]: ...
    def grammar(self) -> str: ...
    def feed(self, output: str) -> Action: ...
    def add_memories(
        self,
        hits: Sequence[MemoryEntry | MemoryHit],
        token_count: Callable[[str], int] | None = None,
    ) -> None: ...
    def finish(self, reason: str) -> Action: ...
    @property
    def is_done(self) -> bool: ...
    def shown_ids(self) -> list[int]: ...
    def stats(self) -> dict[str, int]: ...

def ranking_metrics(
    rankings: Sequence[Sequence[int]], relevant: Sequence[Sequence[int]], ks: Sequence[int]
) -> dict[str, np.ndarray[Any, np.dtype[np.float64]]]: ...
def import_kinds() -> list[str]: ...
def escape_text(text: str) -> str: ...
