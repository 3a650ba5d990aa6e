"""Cross-user global memory (METHOD.md §1), built by a deterministic statistical summarizer.

Each training example is a choice: a query, the item the user chose (the held-out target), and
similar items not chosen (the top catalog items by dense similarity to the query, other than the
user's held-out targets and what the user had already seen). A user may have several examples,
one per target; each is a choice of its own. Per category (the genre the query asks for, or the
chosen item's genres when it asks for a keyword) the summarizer compares the chosen items with the
alternatives and writes short entries about the aspects that set them apart: era, genre mix and
themes over- or under-represented among the chosen. Entries name no user and no item, cite no
record, and are merged and de-duplicated per category before they replace the store's global
memory in one call.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mrrec_edge._core import Item
from mrrec_edge.errors import InputError, NotFoundError
from mrrec_edge.scenarios.queries import NOISE_KEYWORDS, canonical_keyword, content_words

if TYPE_CHECKING:
    from mrrec_edge.workspace import Workspace

#: Similar items not chosen, per choice.
ALTERNATIVES = 20
#: A category needs this many choices before anything is said about it.
MIN_CHOICES = 15
#: A favoured feature must show up on this many distinct chosen items (never one product's trait).
MIN_ITEMS = 4
#: Shares below this say nothing either way.
MIN_SHARE = 0.1
#: Chosen share at least this many times the alternatives' (or at most its inverse).
MIN_LIFT = 1.5
#: And at least this far from chance, in standard errors of the alternatives' share.
MIN_Z = 2.0
MAX_WORDS = 40
#: Content-word Jaccard similarity at which two entries of a category are one (a word or two apart).
NEAR_DUPLICATE = 0.8
ASPECTS = ("era", "genre mix", "themes")

ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class ItemFacts:
    """What the summarizer compares: an item's decade, genres and themes."""

    item_id: int
    year: int | None
    genres: tuple[str, ...]
    themes: tuple[str, ...]

    @classmethod
    def of(cls, item: Item) -> ItemFacts:
        themes = {canonical_keyword(k) for k in item.keywords} - NOISE_KEYWORDS
        return cls(item.item_id, item.year, tuple(item.categories), tuple(sorted(themes)))

    def features(self, aspect: str, category: str | None) -> set[str]:
        if aspect == "era":
            return {f"{self.year // 10 * 10}s"} if self.year else set()
        if aspect == "genre mix":
            return set(self.genres) - {category} if category else set(self.genres)
        return set(self.themes)


@dataclass(frozen=True)
class Choice:
    """One training triple: a query, the chosen item and similar items not chosen."""

    user: str
    query: str
    categories: tuple[str, ...]
    chosen: ItemFacts
    alternatives: tuple[ItemFacts, ...]


@dataclass
class GlobalEntry:
    category: str | None  # None: about every request
    aspect: str
    text: str
    support: int  # the choices it rests on


class GlobalSummarizer(Protocol):
    name: str

    def summarize(self, choices: Sequence[Choice]) -> list[GlobalEntry]: ...


def choice_categories(example: dict[str, Any], chosen: ItemFacts) -> tuple[str, ...]:
    """The scenario of a request: the genre it asks for, else the chosen item's genres."""
    facet = example["facet"]
    return (facet["value"],) if facet["kind"] == "genre" else chosen.genres


def collect_choices(
    ws: Workspace,
    examples: Iterable[dict[str, Any]],
    *,
    split: str = "train",
    alternatives: int = ALTERNATIVES,
    progress: ProgressFn | None = None,
) -> list[Choice]:
    """The choices of ``split``'s examples (every other split is ignored), with alternatives
    retrieved from ``ws``'s catalog by the embedded query."""
    chosen_split = [e for e in examples if e["split"] == split]
    if not chosen_split:
        return []
    store = ws.store
    known = set(store.users())
    try:
        targets = [store.item(e["target_item"]) for e in chosen_split]
    except NotFoundError as exc:
        raise InputError(
            f"the catalog lacks a target item ({exc}); import the dataset's catalog first "
            "(`mrrec import movielens-100k DATASET/history --keywords ...`)"
        ) from None
    # A user's other targets were chosen too (at another time): never "not chosen".
    chosen_by_user: dict[str, set[int]] = defaultdict(set)
    for e, target in zip(chosen_split, targets, strict=True):
        chosen_by_user[e["user"]].add(target.item_id)
    vectors = ws.embedder.embed([e["query"] for e in chosen_split])
    alt_ids: list[list[int]] = []
    for e, vector in zip(chosen_split, vectors, strict=True):
        # The user's own history is excluded, as the assistant excludes it when it recommends.
        hits = store.ground(
            vector,
            k=alternatives,
            user=e["user"] if e["user"] in known else None,
            exclude=sorted(chosen_by_user[e["user"]]),  # the target among them
        )
        alt_ids.append([h.item_id for h in hits])
        if progress:
            progress(1)
    facts = {
        it.item_id: ItemFacts.of(it)
        for it in store.items_by_id(sorted({i for ids in alt_ids for i in ids}))
    }
    out = []
    for e, target, ids in zip(chosen_split, targets, alt_ids, strict=True):
        chosen = ItemFacts.of(target)
        out.append(
            Choice(
                user=e["user"],
                query=e["query"],
                categories=choice_categories(e, chosen),
                chosen=chosen,
                alternatives=tuple(facts[i] for i in ids),
            )
        )
    return out


@dataclass(frozen=True)
class _Contrast:
    feature: str
    chosen_share: float
    other_share: float
    z: float


def _contrasts(
    choices: Sequence[Choice], aspect: str, category: str | None
) -> tuple[list[_Contrast], list[_Contrast]]:
    """Features over- and under-represented among the chosen items, strongest first."""
    scored = [c for c in choices if c.alternatives]
    n = len(scored)
    chosen: Counter[str] = Counter()
    distinct: dict[str, set[int]] = defaultdict(set)
    other: Counter[str] = Counter()
    for c in scored:
        for f in c.chosen.features(aspect, category):
            chosen[f] += 1
            distinct[f].add(c.chosen.item_id)
        # Each choice weighs the same, however many alternatives it has.
        for alt in c.alternatives:
            for f in alt.features(aspect, category):
                other[f] += 1 / len(c.alternatives)
    favoured, avoided = [], []
    for f in sorted(set(chosen) | set(other)):
        p1, p0 = chosen[f] / n, other[f] / n
        q = min(max(p0, 0.02), 0.98)
        z = (p1 - p0) / math.sqrt(q * (1 - q) / n)
        item = _Contrast(f, p1, p0, z)
        if len(distinct[f]) >= MIN_ITEMS and p1 >= MIN_SHARE and p1 >= MIN_LIFT * p0 and z >= MIN_Z:
            favoured.append(item)
        elif p0 >= MIN_SHARE and p1 * MIN_LIFT <= p0 and z <= -MIN_Z:
            avoided.append(item)
    favoured.sort(key=lambda x: (-x.z, x.feature))
    avoided.sort(key=lambda x: (x.z, x.feature))
    return favoured[:3], avoided[:2]


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _phrase(aspect: str, lead: str, fav: list[str], avoid: list[str], category: str | None) -> str:
    if aspect == "era":
        fav, avoid = [f"the {d}" for d in fav], [f"the {d}" for d in avoid]
        head, what = "films from ", "ones from "
    elif aspect == "genre mix" and category:
        head, what = "films that are also ", "ones that are also "
    elif aspect == "genre mix":
        head, what = "", ""
        avoid = [f"{_join(avoid)} {'ones' if fav else 'films'}"] if avoid else []
        fav = [f"{_join(fav)} films"] if fav else []
    else:
        head, what = "films tagged ", "ones tagged "
    if fav and avoid:
        return f"{lead}, people chose {head}{_join(fav)} over {what}{_join(avoid)}."
    if fav:
        return f"{lead}, people favoured {head}{_join(fav)} over similar alternatives."
    return f"{lead}, people passed over {head}{_join(avoid)}."


class GlobalStatsSummarizer:
    """Aspects from counts: what chosen items share that similar alternatives lack."""

    name = "stats"

    def __init__(self, *, min_choices: int = MIN_CHOICES) -> None:
        self.min_choices = min_choices

    def summarize(self, choices: Sequence[Choice]) -> list[GlobalEntry]:
        by_category: dict[str | None, list[Choice]] = defaultdict(list)
        for c in choices:
            by_category[None].append(c)
            for cat in c.categories:
                by_category[cat].append(c)
        order = sorted(by_category, key=lambda k: (k is not None, -len(by_category[k]), k or ""))
        entries: list[GlobalEntry] = []
        for category in order:
            group = by_category[category]
            if len(group) < self.min_choices:
                continue
            lead = f"For {category} requests" if category else "Across all requests"
            found: list[GlobalEntry] = []
            highlights: list[str] = []
            for aspect in ASPECTS:
                favoured, avoided = _contrasts(group, aspect, category)
                fav = [x.feature for x in favoured]
                avoid = [x.feature for x in avoided]
                if not fav and not avoid:
                    continue
                text = _phrase(aspect, lead, fav, avoid, category)
                while len(text.split()) > MAX_WORDS and len(fav) + len(avoid) > 1:
                    (fav if len(fav) >= len(avoid) else avoid).pop()
                    text = _phrase(aspect, lead, fav, avoid, category)
                found.append(GlobalEntry(category, aspect, text, len(group)))
                highlights.append(f"{aspect} ({fav[0] if fav else 'not ' + avoid[0]})")
            if found:
                overview = (
                    f"{lead}, what set the chosen film apart from similar ones: "
                    + ", ".join(highlights)
                    + "."
                )
                entries.append(GlobalEntry(category, "aspects", overview, len(group)))
                entries.extend(found)
        return entries


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def dedupe_entries(
    entries: Sequence[GlobalEntry], *, threshold: float = NEAR_DUPLICATE
) -> list[GlobalEntry]:
    """One entry per statement and category: exact and near duplicates (content-word Jaccard at
    least ``threshold``) merge into the best-supported one, which adds up their support."""
    kept: list[tuple[int, GlobalEntry, set[str]]] = []
    ranked = sorted(enumerate(entries), key=lambda x: -x[1].support)  # stable: ties keep order
    for index, entry in ranked:
        words = content_words(entry.text)
        twin = next(
            (
                k
                for _, k, kw in kept
                if k.category == entry.category
                and (k.text.strip() == entry.text.strip() or _jaccard(words, kw) >= threshold)
            ),
            None,
        )
        if twin is not None:
            twin.support += entry.support
            continue
        kept.append(
            (index, GlobalEntry(entry.category, entry.aspect, entry.text, entry.support), words)
        )
    return [e for _, e, _ in sorted(kept, key=lambda x: x[0])]


def build_global_memory(
    ws: Workspace,
    examples: Iterable[dict[str, Any]],
    *,
    split: str = "train",
    alternatives: int = ALTERNATIVES,
    summarizer: GlobalSummarizer | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Replaces the store's global memory (one transaction) with what ``split``'s choices show,
    then embeds the new entries. Re-runnable: the same inputs give the same entries."""
    choices = collect_choices(
        ws, examples, split=split, alternatives=alternatives, progress=progress
    )
    entries = dedupe_entries((summarizer or GlobalStatsSummarizer()).summarize(choices))
    drafts = [
        {"text": e.text, "categories": [e.category] if e.category else [], "source_ids": []}
        for e in entries
    ]
    ids = ws.store.replace_memory("global", drafts)
    embedded = ws.embed_pending()
    return {
        "split": split,
        "choices": len(choices),
        "users": len({c.user for c in choices}),
        "categories": len({e.category for e in entries}),
        "entries": len(ids),
        "embedded": embedded,
    }
