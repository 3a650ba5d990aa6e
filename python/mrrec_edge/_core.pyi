"""Type stubs for the Rust extension ``mrrec_edge._core`` (hand-written; keep in step with
``rust/src/python.rs``). scripts/test checks them against the built module with stubtest
(names, parameters, defaults; scripts/stubtest-allowlist.txt says what it cannot see).

Parameter types follow what the binding extracts: a ``Vec<...>`` takes any sequence but a str
(pyo3 refuses to split one), a ``&PyList`` only a list, a ``HashMap`` only a dict."""

from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypedDict, final, type_check_only

import numpy as np
import numpy.typing as npt

__version__: str

# pyo3 lists every class, function and constant it adds.
__all__ = [
    "GROUNDING_SATURATION",
    "GROUNDING_SIGNALS",
    "TURN_STOP_STRINGS",
    "GroundRequest",
    "GroundedItem",
    "Item",
    "ItemHit",
    "MemoryEntry",
    "MemoryHit",
    "MemoryStore",
    "Orchestrator",
    "__version__",
    "escape_text",
    "import_kinds",
    "orchestrator_defaults",
    "partial_profile",
    "plan_request",
    "ranking_metrics",
    "render_answer",
    "render_call",
    "split_turn",
    "tool_responses",
]

Tier = Literal["behavior", "pattern", "profile", "global"]
SearchMode = Literal["hybrid", "dense", "lexical"]
EmbeddingTarget = Literal["item", "memory"]
# A Vec<String> argument: any sequence of str but a str itself, which pyo3 refuses at runtime
# and Sequence[str] would accept.
_Strings = list[str] | tuple[str, ...]

@type_check_only
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

@type_check_only
class IndexReport(TypedDict):
    memory_vectors: int
    catalog_vectors: int
    memory_rebuilt: bool
    catalog_rebuilt: bool

@final
class MemoryEntry:
    @property
    def id(self) -> int: ...
    @property
    def tier(self) -> Tier: ...
    @property
    def user(self) -> str | None: ...
    @property
    def categories(self) -> list[str]: ...
    @property
    def text(self) -> str: ...
    @property
    def source_ids(self) -> list[int]: ...
    @property
    def item(self) -> str | None: ...
    @property
    def created_at(self) -> int: ...
    @property
    def updated_at(self) -> int: ...
    def to_dict(self) -> dict[str, Any]: ...

@final
class MemoryHit:
    @property
    def entry(self) -> MemoryEntry: ...
    @property
    def score(self) -> float: ...
    @property
    def dense_score(self) -> float | None: ...
    @property
    def lexical_score(self) -> float | None: ...
    def to_dict(self) -> dict[str, Any]: ...

@final
class ItemHit:
    @property
    def item_id(self) -> int: ...
    @property
    def ext_id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def year(self) -> int | None: ...
    @property
    def categories(self) -> list[str]: ...
    @property
    def score(self) -> float: ...
    def to_dict(self) -> dict[str, Any]: ...

@final
class Item:
    @property
    def item_id(self) -> int: ...
    @property
    def ext_id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def year(self) -> int | None: ...
    @property
    def categories(self) -> list[str]: ...
    @property
    def keywords(self) -> list[str]: ...
    @property
    def description(self) -> str | None: ...
    @property
    def text(self) -> str: ...

@final
class MemoryStore:
    """The memory database in ``home`` (SQLite + FTS5 + usearch indexes beside it)."""

    def __new__(
        cls,
        home: str | PathLike[str],
        *,
        dimensions: int | None = None,
        exact_threshold: int | None = None,
        expansion_search: int | None = None,
        busy_timeout_ms: int | None = None,
    ) -> Self: ...
    @property
    def home(self) -> Path: ...
    @property
    def db_path(self) -> Path: ...
    def dimensions(self) -> int: ...
    def stats(self) -> dict[str, Any]: ...
    def users(self) -> list[str]: ...
    def category_names(self) -> list[str]: ...
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
        categories: _Strings | None = None,
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
        categories: _Strings | None = None,
        exclude: Sequence[int] | None = None,
    ) -> list[ItemHit]: ...
    def ground_fused(
        self, request: GroundRequest, *, weights: dict[str, float], k: int = 10
    ) -> list[GroundedItem]:
        """The ``k`` best catalog items for ``request`` by the fused grounding signals
        (GROUNDING_SIGNALS), each z-scored over the candidates (soft-clipped at
        ±GROUNDING_SATURATION) and weighted by ``weights``."""
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
        self, text: str, *, k: int = 10, categories: _Strings | None = None
    ) -> list[ItemHit]: ...
    def add_memory(
        self,
        tier: Tier,
        text: str,
        *,
        user: str | None = None,
        categories: _Strings | None = None,
        source_ids: Sequence[int] | None = None,
        vector: npt.ArrayLike | None = None,
    ) -> int: ...
    def user_history(self, user: str) -> list[dict[str, Any]]: ...
    def replace_memory(
        self,
        tier: Tier,
        drafts: list[dict[str, Any]],
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
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        _a: type[BaseException] | None,
        _b: BaseException | None,
        _c: TracebackType | None,
    ) -> Literal[False]: ...

@type_check_only
class CollabReport(TypedDict):
    items: int
    interactions: int
    ease: bool
    seconds: float

@final
class GroundRequest:
    """What a grounding request knows; every part is optional."""

    def __new__(
        cls,
        *,
        profile: npt.ArrayLike | None = None,
        request: npt.ArrayLike | None = None,
        profile_text: str | None = None,
        user: str | None = None,
        cited_memory: Sequence[int] | None = None,
        include_seen: bool = False,
        exclude: Sequence[int] | None = None,
        categories: _Strings | None = None,
        similarity: Literal["knn", "ease"] | None = None,
        avoid: npt.ArrayLike | None = None,
        avoid_categories: _Strings | None = None,
        prefer_categories: _Strings | None = None,
        seeds: Sequence[int] | None = None,
        negative_seeds: Sequence[int] | None = None,
        min_year: int | None = None,
        max_year: int | None = None,
    ) -> Self: ...

@final
class GroundedItem:
    """A fused-grounding item: the hit, each signal's weighted contribution (with the adjustment,
    they sum to the hit's score), what the conversation's constraints added (a preferred
    category) or took off (closeness to what the user ruled out), and the liked items or seeds
    that most support it."""

    @property
    def item(self) -> ItemHit: ...
    @property
    def contributions(self) -> list[tuple[str, float]]: ...
    @property
    def adjustment(self) -> float: ...
    @property
    def because(self) -> list[int]: ...

#: The signals fused grounding weighs, in order.
GROUNDING_SIGNALS: list[str]
#: Where a normalised grounding signal saturates: ``z -> S * tanh(z / S)``.
GROUNDING_SATURATION: float

# Entries or hits for the orchestrator: the binding takes a list (&PyList), no other sequence.
_Memories = list[MemoryEntry] | list[MemoryHit] | list[MemoryEntry | MemoryHit]

@type_check_only
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

@final
class Orchestrator:
    """The reasoning-retrieval state machine: prompts, turn grammar, parsing, memory budget."""

    def __new__(
        cls,
        query: str,
        *,
        global_memory: _Memories | None = None,
        max_memory_calls: int | None = None,
        memory_token_budget: int | None = None,
        memory_k: int | None = None,
        max_think_chars: int | None = None,
        max_profile_chars: int | None = None,
    ) -> Self: ...
    def messages(self) -> list[dict[str, str]]: ...
    def grammar(self) -> str: ...
    def feed(self, output: str) -> Action: ...
    def add_memories(
        self,
        hits: _Memories,
        token_count: Callable[[str], int] | None = None,
    ) -> None: ...
    def finish(self, reason: str) -> Action: ...
    @property
    def is_done(self) -> bool: ...
    def shown_ids(self) -> list[int]: ...
    def stats(self) -> dict[str, int]: ...

# The turn protocol (rust/src/orchestrator/protocol.rs owns it; nothing in Python restates it).

@type_check_only
class OrchestratorDefaults(TypedDict):
    """The assistant's one set of defaults; every Python config derives from it."""

    max_memory_calls: int
    memory_token_budget: int
    memory_k: int
    max_aspects: int
    max_think_chars: int
    max_profile_chars: int
    global_k: int
    max_turn_tokens: int

def orchestrator_defaults() -> OrchestratorDefaults: ...

#: Where a sampler without the grammar stops a turn: the end of either action.
TURN_STOP_STRINGS: tuple[str, ...]

def render_call(
    reasoning: str, aspects: list[str], *, tier: str | None = None, category: str | None = None
) -> str:
    """A memory-call turn exactly as the model writes it (the SFT teacher's traces)."""

def render_answer(reasoning: str, profile: str, memory_ids: list[int]) -> str:
    """An answer turn exactly as the model writes it, citing memories by id."""

def split_turn(text: str) -> tuple[str, Literal["", "call", "answer"], str]:
    """A (possibly partial) turn as (reasoning, action kind, action body so far)."""

def partial_profile(body: str) -> str:
    """The ideal item profile of a possibly unfinished answer body, as far as it has streamed."""

def tool_responses(prompt: str) -> list[list[int]]:
    """The memory ids each tool-response block of a rendered prompt shows, block by block."""

# An earlier exchange: (query, shown (item id, year), liked ids, disliked ids).
_Exchange = tuple[str, Sequence[tuple[int, int | None]], Sequence[int], Sequence[int]]

def plan_request(
    text: str,
    categories: list[str],
    earlier: Sequence[_Exchange] = ...,
) -> dict[str, Any]:
    """What ``text``, the latest request of a conversation, asks for, given the earlier
    exchanges (oldest first: query, shown (item id, year) in rank order, liked ids, disliked
    ids) and the catalog's categories: request, follow_up (new | replace | refine), wanted,
    avoided, preferred, avoid_phrases, anchors, exclude, liked, disliked, min_year, max_year."""

def ranking_metrics(
    rankings: Sequence[Sequence[int]], relevant: Sequence[Sequence[int]], ks: Sequence[int]
) -> dict[str, np.ndarray[Any, np.dtype[np.float64]]]: ...
def import_kinds() -> list[str]: ...
def escape_text(text: str) -> str: ...
