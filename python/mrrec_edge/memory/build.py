"""Building and refreshing a user's derived memory (patterns and profile) with a summarizer."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mrrec_edge._core import MemoryStore
from mrrec_edge.memory.records import mean_signal

log = logging.getLogger(__name__)

#: A category needs this many records before it gets a pattern of its own.
MIN_CATEGORY_RECORDS = 3
#: At most this many patterns per user (the largest categories).
MAX_PATTERNS = 12


@dataclass
class Chunk:
    """One small, self-contained memory entry and the ids it rests on."""

    text: str
    source_ids: list[int] = field(default_factory=list)


@dataclass
class PatternSummary:
    """A category's preference pattern, cut into chunks that each name the category."""

    category: str
    chunks: list[Chunk]
    mean: float | None = None
    count: int = 0


class Summarizer(Protocol):
    name: str

    def pattern(
        self, category: str, records: Sequence[dict[str, Any]], user_mean: float | None
    ) -> PatternSummary: ...

    def profile(
        self, records: Sequence[dict[str, Any]], patterns: Sequence[tuple[int, PatternSummary]]
    ) -> list[Chunk]: ...


class MemoryBuilder:
    """Writes a user's patterns (one per category) and profile, each tier replaced in one
    transaction. New entries are embedded afterwards by ``Workspace.embed_pending``."""

    def __init__(self, store: MemoryStore, summarizer: Summarizer) -> None:
        self.store = store
        self.summarizer = summarizer

    def build_user(self, user: str, categories: Iterable[str] | None = None) -> dict[str, int]:
        """(Re)builds the patterns of ``categories`` (all when ``None``) and the profile."""
        records = self.store.user_history(user)
        by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in records:
            for c in r["categories"]:
                by_category[c].append(r)
        eligible = sorted(
            (c for c, rs in by_category.items() if len(rs) >= MIN_CATEGORY_RECORDS),
            key=lambda c: (-len(by_category[c]), c),
        )[:MAX_PATTERNS]
        user_mean = mean_signal(records)
        targets = eligible if categories is None else [c for c in categories if c in eligible]
        written = 0
        # One transaction for all patterns on a full build; one per category on a refresh, so
        # the patterns of other categories stay as they are.
        scopes = [(None, targets)] if categories is None else [(c, [c]) for c in categories]
        for scope, cats in scopes:
            drafts = [
                d
                for c in cats
                if c in targets
                for d in self._drafts(self.summarizer.pattern(c, by_category[c], user_mean))
            ]
            self.store.replace_memory("pattern", drafts, user=user, category=scope)
            written += len(drafts)
        # The profile summarizes the patterns as stored (one entry id per category to cite).
        patterns: dict[str, tuple[int, PatternSummary]] = {}
        for e in self.store.list_memory(user=user, tiers=["pattern"], limit=MAX_PATTERNS * 8):
            c = e.categories[0] if e.categories else None
            if c is not None and c not in patterns:
                recs = by_category.get(c, [])
                patterns[c] = (
                    e.id,
                    PatternSummary(c, [Chunk(e.text)], mean_signal(recs), len(recs)),
                )
        chunks = self.summarizer.profile(records, list(patterns.values()))
        self.store.replace_memory(
            "profile",
            [{"text": c.text, "categories": [], "source_ids": c.source_ids} for c in chunks],
            user=user,
        )
        return {"patterns": written, "profile_chunks": len(chunks)}

    @staticmethod
    def _drafts(p: PatternSummary) -> list[dict[str, Any]]:
        return [
            {"text": c.text, "categories": [p.category], "source_ids": c.source_ids}
            for c in p.chunks
        ]

    def build_all(
        self,
        users: Sequence[str],
        *,
        resume: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """Builds every user's memory. With ``resume``, users that already have a profile (an
        interrupted run got that far) are skipped."""
        totals = {"users": 0, "skipped": 0, "patterns": 0, "profile_chunks": 0}
        for user in users:
            if resume and self.store.list_memory(user=user, tiers=["profile"], limit=1):
                totals["skipped"] += 1
                if progress:
                    progress(1)
                continue
            out = self.build_user(user)
            totals["users"] += 1
            totals["patterns"] += out["patterns"]
            totals["profile_chunks"] += out["profile_chunks"]
            if progress:
                progress(1)
        return totals
