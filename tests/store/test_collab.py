"""Collaborative grounding on the real MovieLens 100K store: the collaborative index against an
independent computation, feedback reaching it at once, the fused ranking's rules, and what a
person asking for a comedy gets."""

from __future__ import annotations

import math
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from mrrec_edge import InputError
from mrrec_edge._core import GROUNDING_SATURATION, GroundRequest
from mrrec_edge.grounding import DEFAULT_WEIGHTS, SIGNALS
from mrrec_edge.workspace import Workspace


@pytest.fixture(scope="module")
def ws(embedded_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    home = tmp_path_factory.mktemp("collab") / "home"
    shutil.copytree(embedded_home, home)
    return Workspace.open(home)


def _cf(ws: Workspace, user: str, similarity: str, k: int = 100) -> list:
    return ws.ground(
        user=user, k=k, weights={"user_cf": 1.0}, similarity=similarity, distinct_titles=False
    )


def test_the_index_covers_every_interacted_item_and_builds_ease(ws: Workspace) -> None:
    report = ws.store.rebuild_collab()
    assert report["items"] == 1682 and report["interactions"] == 100_000
    assert report["ease"] and report["seconds"] > 0


def test_item_knn_sums_cosine_similarities_to_the_users_items(ws: Workspace) -> None:
    histories = {u: set(ws.store.consumed_item_ids(u)) for u in ws.store.users()}
    users_of: dict[int, set[str]] = defaultdict(set)
    for user, items in histories.items():
        for item in items:
            users_of[item].add(user)
    for user in ["1", "2", "3"]:
        ranking = [g.item.item_id for g in _cf(ws, user, "knn", k=20)]
        scores = {
            j: sum(
                len(users_of[i] & users_of[j]) / math.sqrt(len(users_of[i]) * len(users_of[j]))
                for i in histories[user]
                if i != j
            )
            for j in users_of
            if j not in histories[user]
        }
        expected = sorted(scores, key=lambda j: (-scores[j], j))[:20]
        # Below EASE's size limit the index keeps every neighbour. Equal up to near-ties: the same scores position by position (f32 sums against f64 here).
        for got, want in zip(ranking, expected, strict=True):
            assert math.isclose(scores[got], scores[want], rel_tol=1e-5)
        assert not set(ranking) & histories[user]


def test_ease_ranks_differently_from_knn_and_leaves_out_the_seen(ws: Workspace) -> None:
    seen = set(ws.store.consumed_item_ids("1"))
    ease = [g.item.item_id for g in _cf(ws, "1", "ease")]
    knn = [g.item.item_id for g in _cf(ws, "1", "knn")]
    assert len(ease) == 100 and not seen & set(ease)
    assert ease != knn


def test_feedback_reaches_the_users_cf_at_once(ws: Workspace) -> None:
    user = "2"  # 62 ratings: one more like moves their scores visibly
    before = [g.item.item_id for g in _cf(ws, user, "ease", k=30)]
    liked = ws.store.item("ml100k:82")  # Jurassic Park, not rated by user 2
    assert liked.item_id not in ws.store.consumed_item_ids(user)
    ws.feedback(user, "ml100k:82", "like")
    after = [g.item.item_id for g in _cf(ws, user, "ease", k=30)]
    assert liked.item_id not in after and after != before

    # A dislike is a negative: the films most like it drop in that user's ranking.
    disliked = _cf(ws, "3", "knn", k=1)[0].item
    named = f"{disliked.title} ({disliked.year})"
    alike = [
        g.item.item_id
        for g in ws.ground(profile=named, k=10, weights={"seed_cf": 1.0}, distinct_titles=False)
    ]

    def mean_rank() -> float:
        ranking = [g.item.item_id for g in _cf(ws, "3", "knn", k=1682)]
        return float(np.mean([ranking.index(i) for i in alike if i in ranking]))

    before_dislike = mean_rank()
    ws.feedback("3", disliked.ext_id, "dislike")
    # One negative among user 3's 54 positives: a small move, but down.
    assert mean_rank() > before_dislike


def test_reasons_name_the_liked_items_that_support_each_card(ws: Workspace) -> None:
    items = ws.ground(user="1", k=10, weights={"user_cf": 1.0})
    liked = set(ws.store.consumed_item_ids("1"))
    assert all(g.because and set(g.because) <= liked for g in items)
    assert len({tuple(g.because) for g in items}) > 1, "not one reason on every card"
    for g in items:
        parts = dict(g.contributions)
        assert list(parts) == list(SIGNALS)
        assert math.isclose(sum(parts.values()), g.item.score, rel_tol=1e-4, abs_tol=1e-4)


def test_a_profile_names_items_that_seed_cf(ws: Workspace) -> None:
    profile = "A comedy like Monty Python and the Holy Grail (1974) and Fargo (1996)."
    _, _, seeds = ws.store.grounding_signals(GroundRequest(profile_text=profile))
    titles = [it.title for it in ws.store.items_by_id(seeds)]
    assert titles == ["Monty Python and the Holy Grail", "Fargo"]
    items = ws.ground(profile=profile, k=5, weights={"seed_cf": 1.0}, distinct_titles=False)
    assert all(set(g.because) <= set(seeds) and g.because for g in items)


def test_a_guest_with_no_history_gets_request_and_popularity(ws: Workspace) -> None:
    items = ws.ground(request="a musical with songs and dancing", k=10)
    assert len(items) == 10
    assert sum("Musical" in g.item.categories for g in items) >= 5
    for g in items:
        parts = dict(g.contributions)
        assert parts["user_cf"] == 0 and parts["seed_cf"] == 0


def test_a_comedy_request_from_a_comedy_fan_puts_comedies_first(ws: Workspace) -> None:
    # The user whose well-rated films are most often comedies (and who rated enough of them).
    def comedy_share(user: str) -> float:
        liked = [r for r in ws.store.user_history(user) if (r["rating"] or 0) >= 4]
        return sum("Comedy" in r["categories"] for r in liked) / max(len(liked), 20)

    fan = max(map(str, range(1, 944)), key=lambda u: (comedy_share(u), -int(u)))
    items = ws.ground(request="a funny movie for a Friday night", user=fan, k=10)
    comedies = ["Comedy" in g.item.categories for g in items]
    assert all(comedies[:3]) and sum(comedies) >= 7, [g.item.title for g in items]


def test_bad_weights_and_similarities_are_named(ws: Workspace) -> None:
    with pytest.raises(InputError, match='unknown grounding signal "profil"'):
        ws.store.ground_fused(GroundRequest(), weights={"profil": 1.0})
    with pytest.raises(InputError, match="unknown similarity"):
        GroundRequest(similarity="svd")  # type: ignore[arg-type]
    bad = GroundRequest(request=np.ones(5, dtype=np.float32))
    with pytest.raises(InputError, match="dimensions"):
        ws.store.ground_fused(bad, weights=DEFAULT_WEIGHTS)


def test_signals_are_soft_clipped_z_scores_over_the_candidates(ws: Workspace) -> None:
    request = ws.ground_request(user="1", request="a western", similarity="ease")
    items, signals, _ = ws.store.grounding_signals(request)
    assert len(items) == 1682 - len(ws.store.consumed_item_ids("1"))
    for name, values in zip(SIGNALS, signals, strict=True):
        if name in ("profile", "seed_cf"):
            assert not values.any()  # nothing to say without a profile
        else:
            assert np.abs(values).max() < GROUNDING_SATURATION
            z = GROUNDING_SATURATION * np.arctanh(values.astype(np.float64) / GROUNDING_SATURATION)
            assert abs(z.mean()) < 1e-3 and abs(z.std() - 1) < 1e-3
