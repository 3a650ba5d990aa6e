"""The one-line reason shown with each recommendation."""

from __future__ import annotations

from mrrec_edge.assistant import _clip

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
