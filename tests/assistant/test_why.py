"""The one-line reason shown with each recommendation."""

from __future__ import annotations

from pathlib import Path

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
    reasons = [_why(g, [], query, titles)[0] for g in items]
    assert len(set(reasons)) >= 5, reasons
    for g, reason in zip(items, reasons, strict=True):
        if g.because:
            assert reason.startswith("because you liked " + titles[g.because[0]])
        if "Comedy" in g.item.categories:
            assert "Comedy as you asked" in reason
        assert len(reason) <= 150
