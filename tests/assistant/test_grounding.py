"""Grounding a profile for the user: MovieLens 100K lists 18 films twice under two ids, and the
assistant must neither show one twice nor recommend the twin of a film the user has seen."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from mrrec_edge.grounding import PROFILE_ONLY
from mrrec_edge.workspace import Workspace


@pytest.fixture(scope="module")
def ws(embedded_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    home = tmp_path_factory.mktemp("grounding") / "home"
    shutil.copytree(embedded_home, home)
    return Workspace.open(home)


def _keys(hits: list) -> list[tuple[str, int | None]]:
    return [(h.title, h.year) for h in hits]


def ground_profile(ws: Workspace, profile: str, **options: object) -> list:
    """The profile alone (the twins are what is tested, not the other signals)."""
    return [g.item for g in ws.ground(profile=profile, weights=PROFILE_ONLY, **options)]


def _watcher_of_one_twin(ws: Workspace, title: str, year: int) -> str:
    """A user who rated exactly one of the two ids of ``title`` (``year``)."""
    hits = ws.store.ground(ws.embed_query(f"{title} ({year})"), k=50)
    twins = {h.item_id for h in hits if (h.title, h.year) == (title, year)}
    assert len(twins) == 2, twins
    for user in map(str, range(1, 944)):
        seen = set(ws.store.consumed_item_ids(user)) & twins
        if len(seen) == 1:
            return user
    raise AssertionError(f"nobody rated just one {title}")


def test_a_film_listed_twice_is_recommended_once(ws: Workspace) -> None:
    profile = "That Darn Cat! (1997), a family comedy about a cat"
    raw = ws.store.ground(ws.embed_query(profile), k=10)
    assert Counter(_keys(raw))[("That Darn Cat!", 1997)] == 2  # the catalog's twins
    items = ground_profile(ws, profile, user=None, k=10)
    assert len(items) == 10 and len(set(_keys(items))) == 10
    assert Counter(_keys(items))[("That Darn Cat!", 1997)] == 1


def test_the_twin_of_a_seen_film_is_not_recommended(ws: Workspace) -> None:
    user = _watcher_of_one_twin(ws, "Fly Away Home", 1996)
    profile = "Fly Away Home (1996), a family adventure with geese"
    raw = ground_profile(ws, profile, user=user, k=10, distinct_titles=False)
    assert ("Fly Away Home", 1996) in _keys(raw)  # the other id of what they saw
    items = ground_profile(ws, profile, user=user, k=10)
    assert len(items) == 10 and ("Fly Away Home", 1996) not in _keys(items)
    seen = {(r["title"], r["year"]) for r in ws.store.user_history(user)}
    assert not seen & set(_keys(items))
    # Asking to include what they saw brings it back, once.
    with_seen = ground_profile(ws, profile, user=user, k=10, include_seen=True)
    assert Counter(_keys(with_seen))[("Fly Away Home", 1996)] == 1
