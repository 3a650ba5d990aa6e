"""Follow-ups: the core's reading of a request in its conversation (``plan_request``), the
context saved answers give a follow-up, and grounding that acts on it, on the real catalog."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mrrec_edge._core import plan_request
from mrrec_edge.assistant import PriorTurn, Recommendation, Recommendations
from mrrec_edge.conversations import Answer
from mrrec_edge.scenarios.queries import GENRE_PHRASES, KEYWORD_PHRASES, TEMPLATES, USE_CASES
from mrrec_edge.workspace import Workspace


@pytest.fixture(scope="module")
def ws(embedded_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    home = tmp_path_factory.mktemp("followup") / "home"
    shutil.copytree(embedded_home, home)
    return Workspace.open(home)


def test_the_evaluation_queries_are_read_as_they_are() -> None:
    """Every phrasing the scenario builder can write is a new request that rules nothing out,
    so the evaluation's and training's rankings do not move."""
    categories = list(GENRE_PHRASES)
    facets = [*GENRE_PHRASES.values(), *KEYWORD_PHRASES.values()]
    checked = 0
    for template in TEMPLATES:
        for facet in facets:
            for use_case in USE_CASES:
                text = template.format(facet=facet, use_case=use_case)
                plan = plan_request(text, categories)
                assert plan["request"] == text and plan["follow_up"] == "new", text
                ruled_out = plan["avoided"] or plan["avoid_phrases"] or plan["anchors"]
                assert not ruled_out and plan["min_year"] is plan["max_year"] is None, text
                checked += 1
    assert checked == len(TEMPLATES) * len(facets) * len(USE_CASES)


def _categories(ws: Workspace, items: list) -> list[set[str]]:
    return [set(g.item.categories) for g in items]


def test_a_ruled_out_category_is_never_shown(ws: Workspace) -> None:
    request = "a war movie, but not a drama"
    plan = plan_request(request, ws.category_names())
    assert plan["wanted"] == plan["preferred"] == ["War"] and plan["avoided"] == ["Drama"]
    before = _categories(ws, ws.ground(user="1", request=request, k=10))
    after = _categories(ws, ws.ground(user="1", request=request, k=10, plan=plan))
    assert sum("Drama" in c for c in before) >= 3  # what the request embedding alone does
    assert sum("Drama" in c for c in after) == 0
    assert sum("War" in c for c in after) >= 7


def test_a_toned_down_phrase_pulls_close_items_down(ws: Workspace) -> None:
    request = "I want a scary movie for Halloween, nothing too gory"
    plan = plan_request(request, ws.category_names())
    assert plan["wanted"] == ["Horror"] and plan["avoid_phrases"] == ["gory"]
    gory = {h.item_id: h.score for h in ws.store.ground(ws.embed_query("gory"), k=2000)}
    before = ws.ground(user="1", request=request, k=10)
    after = ws.ground(user="1", request=request, k=10, plan=plan)
    assert all(g.adjustment == 0 for g in before)
    goriest = max(before, key=lambda g: gory[g.item.item_id]).item.item_id
    assert goriest not in {g.item.item_id for g in after}
    # Horror is preferred, less so the closer an item is to "gory".
    assert all(g.adjustment <= 1.0 for g in after)
    assert sum("Horror" in c for c in _categories(ws, after)) >= 8


def test_shown_items_and_years_bound_the_candidates(ws: Workspace) -> None:
    first = ws.ground(user="1", request="a thriller", k=10)
    shown = [g.item.item_id for g in first]
    years = {g.item.item_id: g.item.year for g in first}
    earlier = [("a thriller", [(i, years[i]) for i in shown], [], [])]
    plan = plan_request("older ones", ws.category_names(), earlier)
    assert plan["follow_up"] == "refine" and plan["request"] == "a thriller; older ones"
    middle = sorted(y for y in years.values() if y is not None)[len(shown) // 2]
    assert plan["max_year"] == middle - 1 and plan["exclude"] == shown
    older = ws.ground(user="1", request=plan["request"], k=10, plan=plan)
    assert len(older) == 10
    assert not {g.item.item_id for g in older} & set(shown)
    assert all(g.item.year is not None and g.item.year < middle for g in older)


def test_more_like_a_shown_item_seeds_the_ranking(ws: Workspace) -> None:
    first = ws.ground(user="1", request="a comedy", k=10)
    shown = [(g.item.item_id, g.item.year) for g in first]
    plan = plan_request("more like #3", ws.category_names(), [("a comedy", shown, [], [])])
    assert plan["anchors"] == [shown[2][0]]
    liked_like_3 = ws.ground(user="1", request=plan["request"], k=10, plan=plan)
    assert any(shown[2][0] in g.because for g in liked_like_3), "the anchor is the reason"


def test_the_context_of_a_saved_conversation(ws: Workspace) -> None:
    """The questions, the cards each answer showed and the feedback on them, in order; an
    answer saved before cards kept their store id resolves them by alias."""
    first = ws.ground(user="1", request="a comedy", k=4)
    answer = Answer("a comedy")
    answer.apply(Recommendations([Recommendation(g.item, "", []) for g in first]))
    answer.feedback = {first[0].item.ext_id: "like", first[1].item.ext_id: "rate=1"}
    answer.feedback[first[2].item.ext_id] = "seen"
    conversations = ws.conversations
    recorder = conversations.ask(None, "1", "a comedy", answer)
    recorder.finish("done")
    old_style = Answer("older ones")
    old_style.recommendations = [{"item": first[3].item.ext_id, "title": "x"}]
    conversations.ask(recorder.conversation_id, "1", "older ones", old_style).finish("done")

    context = conversations.context(recorder.conversation_id)
    ids = [g.item.item_id for g in first]
    assert context == [
        PriorTurn("a comedy", shown=tuple(ids), liked=(ids[0],), disliked=(ids[1],)),
        PriorTurn("older ones", shown=(ids[3],)),
    ]
    assert conversations.belongs_to(recorder.conversation_id, "1")
    assert not conversations.belongs_to(recorder.conversation_id, "2")


def test_a_disliked_card_pulls_similar_items_down(ws: Workspace) -> None:
    """Liking a card brings its neighbours in; disliking it keeps them out."""
    first = ws.ground(user="1", request="a comedy", k=10)
    shown = [(g.item.item_id, g.item.year) for g in first]
    liked, disliked = (
        plan_request("something else", ws.category_names(), [("a comedy", shown, *feedback)])
        for feedback in (([shown[0][0]], []), ([], [shown[0][0]]))
    )
    assert liked["liked"] == disliked["disliked"] == [shown[0][0]]
    near = {g.item.item_id for g in ws.ground(user="1", request="a comedy", k=10, plan=liked)}
    far = {g.item.item_id for g in ws.ground(user="1", request="a comedy", k=10, plan=disliked)}
    assert len(near & far) <= 3, (near, far)
