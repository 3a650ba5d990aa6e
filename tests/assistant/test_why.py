"""The one-line reason shown with each recommendation."""

from __future__ import annotations

import shutil
from pathlib import Path

from mrrec_edge._core import MemoryEntry, plan_request
from mrrec_edge.assistant import _clip, _why
from mrrec_edge.workspace import Workspace

PROFILE = (
    "A funny movie like Delicatessen (1991), Truth About Cats & Dogs, The (1996) and "
    "Monty Python's Life of Brian (1979)."
)


def test_a_long_reason_is_cut_between_words_not_inside_a_title() -> None:
    reason = _clip(PROFILE, 110)
    assert len(reason) <= 110 and reason.endswith(" …")
    kept = reason.removesuffix(" …")
    assert PROFILE.startswith(kept) and PROFILE[len(kept)] == " "  # a whole word ends there
    assert not kept.endswith("(")  # the bug: "… Life of Brian ("
    assert _clip("A comedy\nfor  tonight", 110) == "A comedy for tonight"  # one line
    assert _clip("short", 110) == "short"


def test_each_card_says_what_drove_it(embedded_home: Path) -> None:
    """Reasons from the grounding signals: the liked films behind each card (they differ from
    card to card), the part of the request it fits, never one sentence on all ten."""
    ws = Workspace.open(embedded_home)
    query = "a funny comedy for tonight"
    items = ws.ground(user="1", request=query, k=10)
    supporters = sorted({i for g in items for i in g.because})
    titles = {it.item_id: it.title for it in ws.store.items_by_id(supporters)}
    wanted = plan_request(query, ws.category_names())["wanted"]
    assert wanted == ["Comedy"]  # "funny" and "comedy" both ask for it
    reasons = [_why(g, [], wanted, titles)[0] for g in items]
    assert len(set(reasons)) >= 5, reasons
    for g, reason in zip(items, reasons, strict=True):
        if g.because:
            assert reason.startswith("because you liked " + titles[g.because[0]])
        if "Comedy" in g.item.categories:
            assert "Comedy as you asked" in reason
        assert len(reason) <= 150


def test_cards_quote_different_memories_where_they_can(embedded_home: Path, tmp_path: Path) -> None:
    """Two cited memories share the cards' category: the second card quotes the one the first
    did not, so the reasons do not repeat one memory down the list."""
    home = tmp_path / "home"
    shutil.copytree(embedded_home, home)
    ws = Workspace.open(home)
    ws.memory_builder().build_user("1")
    patterns = ws.list_memory(user="1", tiers=["pattern"], limit=1000)
    by_category: dict[str, list[MemoryEntry]] = {}
    for m in patterns:
        for c in m.categories:
            by_category.setdefault(c, []).append(m)
    category, memories = max(by_category.items(), key=lambda kv: (len(kv[1]), kv[0]))
    assert len(memories) >= 2, by_category
    items = [
        g for g in ws.ground(user="1", request=category, k=50) if category in g.item.categories
    ]
    quoted: set[int] = set()
    one = _why(items[0], memories[:2], [], {}, quoted)
    two = _why(items[1], memories[:2], [], {}, quoted)
    assert one[1][0].id != two[1][0].id and quoted == {m.id for m in memories[:2]}
    assert one[0] != two[0]
