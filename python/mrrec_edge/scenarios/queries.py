"""Scenario queries: one coarse facet of the held-out item plus a use case, never its title.

A facet is one of the item's MovieLens genres, or a keyword of the MovieLens 25M enrichment that
is *coarse*: it tags at least ``min_items`` catalog items, so the query alone fits many items and
only the user's memory can pick among them. Every choice is drawn from a seeded generator, and a
query that shares a content word with the title is never produced.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Why someone asks; appended to the facet by a template.
USE_CASES: tuple[str, ...] = (
    "for a Friday night",
    "to watch with friends",
    "for a rainy Sunday",
    "for date night",
    "to watch with my family",
    "for a long flight",
    "for a lazy weekend afternoon",
    "to unwind after work",
    "for a cozy night in",
    "to watch alone tonight",
    "for a sleepover",
    "for a holiday evening",
    "for a quiet weeknight",
    "to watch with my partner",
    "for a movie night at home",
)

#: Phrasings; ``{facet}`` is a noun phrase ("a comedy", "something tense").
TEMPLATES: tuple[str, ...] = (
    "Recommend {facet} {use_case}.",
    "I'm in the mood for {facet} {use_case}.",
    "Can you suggest {facet} {use_case}?",
    "Looking for {facet} {use_case}, any ideas?",
    "What's {facet} I'd enjoy {use_case}?",
    "Find me {facet} {use_case}.",
)

GENRE_PHRASES: dict[str, str] = {
    "Action": "an action movie",
    "Adventure": "an adventure movie",
    "Animation": "an animated movie",
    "Children's": "a children's movie",
    "Comedy": "a comedy",
    "Crime": "a crime movie",
    "Documentary": "a documentary",
    "Drama": "a drama",
    "Fantasy": "a fantasy movie",
    "Film-Noir": "a film noir",
    "Horror": "a horror movie",
    "Musical": "a musical",
    "Mystery": "a mystery",
    "Romance": "a romance",
    "Sci-Fi": "a sci-fi movie",
    "Thriller": "a thriller",
    "War": "a war movie",
    "Western": "a western",
}

# Tag-genome keywords as a person would ask for them; others read "a <keyword> movie".
KEYWORD_PHRASES: dict[str, str] = {
    "action packed": "something action-packed",
    "animals": "a movie with animals",
    "based on a book": "a movie based on a book",
    "brutality": "something brutal",
    "cartoon": "a cartoon",
    "chase": "a movie with a big chase",
    "chick flick": "a chick flick",
    "childhood": "a movie about childhood",
    "classic": "a classic",
    "coming of age": "a coming-of-age story",
    "cult classic": "a cult classic",
    "death": "a movie about death",
    "disney animated feature": "a Disney animated feature",
    "dysfunctional family": "a movie about a dysfunctional family",
    "enigmatic": "something enigmatic",
    "friendship": "a movie about friendship",
    "funny": "something funny",
    "future": "a movie set in the future",
    "futuristic": "something futuristic",
    "gay": "a movie with gay characters",
    "goofy": "something goofy",
    "good action": "a movie with good action",
    "greed": "a movie about greed",
    "gunfight": "a movie with gunfights",
    "independent film": "an independent film",
    "kids": "a movie for kids",
    "kids and family": "a movie for kids and family",
    "lawyer": "a movie about lawyers",
    "life philosophy": "a philosophical movie",
    "loneliness": "a movie about loneliness",
    "los angeles": "a movie set in Los Angeles",
    "love": "a movie about love",
    "love story": "a love story",
    "melancholic": "something melancholic",
    "mentor": "a movie with a mentor figure",
    "murder": "a murder story",
    "music": "a movie about music",
    "new york": "a movie set in New York",
    "obsession": "a movie about obsession",
    "off-beat comedy": "an off-beat comedy",
    "period piece": "a period piece",
    "political": "something political",
    "relationships": "a movie about relationships",
    "romantic": "something romantic",
    "romantic comedy": "a romantic comedy",
    "silly fun": "something silly and fun",
    "small town": "a small-town story",
    "suspense": "something full of suspense",
    "tense": "something tense",
    "violence": "a violent movie",
    "visually appealing": "something visually appealing",
    "weird": "something weird",
    "women": "a movie about women",
}

#: Spellings of one tag folded into one facet (an item fits when it has any of them).
KEYWORD_SYNONYMS: dict[str, str] = {
    "adapted from:book": "based on a book",
    "based on book": "based on a book",
    "gangsters": "gangster",
    "gay character": "gay",
    "scifi": "sci-fi",
    "sequels": "sequel",
}

#: Tags that are noise in this catalog (wrong fuzzy matches, the tag source's own labels, content
#: ratings): never a facet, never a global-memory aspect.
NOISE_KEYWORDS = frozenset(
    {"bollywood", "nudity (topless - notable)", "original", "pornography", "sexual"}
)
#: Tags about a film's reception or its series, not what it is: nobody asks for "a sequel", but
#: they do separate chosen films from the rest, so global memory keeps them.
META_KEYWORDS = frozenset(
    {
        "criterion",
        "franchise",
        "great acting",
        "imdb top 250",
        "masterpiece",
        "predictable",
        "sequel",
    }
)
META_PREFIXES = ("oscar",)

#: Function words a query and a title may share; every other shared word rules the query out.
STOPWORDS = frozenset(
    (  # noqa: SIM905 (a word list reads better as words)
        "a an the of and or for to in on at by with from about as is it its i im me my we our "
        "you your some something any can what whats that this be would id d ll m re s t ve up "
        "out no not all so do"
    ).split()
)

_WORD = re.compile(r"[^\W_]+")


def _stem(word: str) -> str:
    # Crude plural folding, so "Aliens" rules out "alien" and "kids" rules out "kid".
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


_STOP_STEMS = frozenset(_stem(w) for w in STOPWORDS)


def content_words(text: str) -> set[str]:
    """Lower-cased, plural-folded words of ``text`` without stopwords or possessive 's."""
    text = text.lower().replace("'s", "").replace("\u2019s", "")
    return {s for w in _WORD.findall(text) if (s := _stem(w)) not in _STOP_STEMS}


def canonical_keyword(keyword: str) -> str:
    k = keyword.strip().lower()
    return KEYWORD_SYNONYMS.get(k, k)


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower().replace("'s", ""))


def is_meta_keyword(keyword: str) -> bool:
    return keyword in META_KEYWORDS or keyword.startswith(META_PREFIXES)


@dataclass(frozen=True)
class CatalogItem:
    """What query building needs to know about one catalog item."""

    item_id: str  # the id in the source files ("50"); its store alias is "ml100k:50"
    title: str
    year: int | None
    genres: tuple[str, ...]
    keywords: tuple[str, ...]

    @property
    def alias(self) -> str:
        return f"ml100k:{self.item_id}"


@dataclass(frozen=True)
class Facet:
    kind: str  # "genre" | "keyword"
    value: str

    def phrase(self) -> str:
        if self.kind == "genre":
            return GENRE_PHRASES.get(self.value, f"a {self.value.lower()} movie")
        return KEYWORD_PHRASES.get(self.value, f"a {self.value} movie")

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "value": self.value}


class FacetCatalog:
    """The coarse facets of a catalog and the items that fit each."""

    def __init__(self, items: Iterable[CatalogItem], *, min_items: int = 20) -> None:
        self.min_items = min_items
        by_facet: dict[Facet, set[str]] = defaultdict(set)
        for item in items:
            for g in item.genres:
                by_facet[Facet("genre", g)].add(item.item_id)
            for k in item.keywords:
                by_facet[Facet("keyword", canonical_keyword(k))].add(item.item_id)
        genre_keys = {_squash(f.value) for f in by_facet if f.kind == "genre"}
        self.fitting: dict[Facet, int] = {}
        for facet, ids in by_facet.items():
            if facet.kind == "keyword" and (
                len(ids) < min_items
                or facet.value in NOISE_KEYWORDS
                or is_meta_keyword(facet.value)
                # "comedy" as a keyword would be the Comedy genre with fewer items that fit.
                or _squash(facet.value) in genre_keys
            ):
                continue
            self.fitting[facet] = len(ids)

    def keywords(self) -> list[str]:
        return sorted(f.value for f in self.fitting if f.kind == "keyword")

    def facets_of(self, item: CatalogItem) -> list[Facet]:
        """The item's coarse facets whose words do not occur in its title, in a fixed order."""
        title = content_words(item.title)
        candidates = [Facet("genre", g) for g in item.genres]
        candidates += sorted(
            {Facet("keyword", canonical_keyword(k)) for k in item.keywords},
            key=lambda f: f.value,
        )
        return [f for f in candidates if f in self.fitting and not content_words(f.value) & title]


@dataclass(frozen=True)
class Query:
    text: str
    facet: Facet
    use_case: str
    template: int


def make_query(rng: random.Random, item: CatalogItem, facets: FacetCatalog) -> Query | None:
    """A query for ``item``: a seeded facet, template and use case whose words miss the title.

    ``None`` when every facet of the item shares a word with its title.
    """
    title = content_words(item.title)
    candidates = facets.facets_of(item)
    rng.shuffle(candidates)
    for facet in candidates:
        combos = [(t, u) for t in range(len(TEMPLATES)) for u in USE_CASES]
        rng.shuffle(combos)
        for t, use_case in combos:
            text = TEMPLATES[t].format(facet=facet.phrase(), use_case=use_case)
            if not content_words(text) & title:
                return Query(text=text, facet=facet, use_case=use_case, template=t)
    return None


def fits(facet: Facet | Mapping[str, str], item: CatalogItem) -> bool:
    """Whether ``item`` has the facet (a genre, or a keyword up to its synonyms)."""
    kind, value = (
        (facet.kind, facet.value) if isinstance(facet, Facet) else (facet["kind"], facet["value"])
    )
    if kind == "genre":
        return value in item.genres
    return value in {canonical_keyword(k) for k in item.keywords}


#: A second turn that changes the subject to the final facet, and one that rules a genre out.
REPLACE_TEMPLATES: tuple[str, ...] = (
    "Actually, {facet} instead.",
    "Hmm, something else: {facet} instead.",
    "Let's do {facet} instead.",
)
NEGATIVE_TEMPLATES: tuple[str, ...] = (
    "But not {facet}.",
    "Not {facet}, please.",
    "Something that isn't {facet}.",
)
FOLLOW_UP_KINDS = ("replace", "negative")


@dataclass(frozen=True)
class FollowUp:
    """A two-turn conversation whose final request ``item`` fits: a first request, then a
    follow-up that replaces its subject with ``final`` ("replace") or keeps the request and
    rules a genre out ("negative"). ``ruled_out`` is the genre the conversation rules out (the
    first subject, or the one named), which ``item`` lacks."""

    kind: str
    first: str
    second: str
    final: Facet
    ruled_out: Facet


def make_follow_up(
    rng: random.Random, item: CatalogItem, query: Query, facets: FacetCatalog, kind: str
) -> FollowUp | None:
    """A ``kind`` follow-up conversation around ``query`` (``item``'s scenario query): the
    ruled-out genre is drawn among the genres ``item`` lacks, weighted by how many catalog
    items have it (a constraint that rules out many items is the one worth testing). ``None``
    when ``item`` has every genre or every candidate shares a word with its title."""
    if kind not in FOLLOW_UP_KINDS:
        raise ValueError(f"unknown follow-up kind {kind!r} (one of {', '.join(FOLLOW_UP_KINDS)})")
    title = content_words(item.title)
    others = [
        f
        for f in sorted(facets.fitting, key=lambda f: f.value)
        if f.kind == "genre" and f.value not in item.genres and not content_words(f.value) & title
    ]
    if not others:
        return None
    other = rng.choices(others, weights=[facets.fitting[f] for f in others])[0]
    if kind == "replace":
        first = TEMPLATES[query.template].format(facet=other.phrase(), use_case=query.use_case)
        second = rng.choice(REPLACE_TEMPLATES).format(facet=query.facet.phrase())
    else:
        first = query.text
        second = rng.choice(NEGATIVE_TEMPLATES).format(facet=other.phrase())
    return FollowUp(kind, first, second, query.facet, other)
