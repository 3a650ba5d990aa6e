"""Fuzzing the parsed-turn path on the Python side: whatever a model streams, the Rust
orchestrator (through its binding) and the TUI's turn splitting give a bounded result and never
raise. ``MRREC_FUZZ_EXAMPLES`` raises the example count for a long run (docs/RELIABILITY.md)."""

from __future__ import annotations

import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from mrrec_edge._core import Orchestrator, split_turn
from mrrec_edge.assistant import Profile, Token
from mrrec_edge.conversations import Answer

FUZZ = settings(
    max_examples=int(os.environ.get("MRREC_FUZZ_EXAMPLES", "300")),
    derandomize=True,
    deadline=None,
)
MAX_PROFILE = 120

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
calls = st.builds(
    lambda aspects, tier, extra: json.dumps(
        {"name": "memory_retrieval", "arguments": {"aspects": aspects, "tier": tier, **extra}}
    ),
    st.lists(st.text(max_size=100), max_size=6) | json_values,
    st.sampled_from([None, "behavior", "pattern", "profile", "global", "nonsense"]) | json_values,
    st.dictionaries(st.sampled_from(["category", "k", "name"]), json_values, max_size=2),
)
answers = st.builds(
    lambda profile, ids: json.dumps({"ideal_item_profile": profile, "useful_memory_ids": ids}),
    st.text(max_size=400) | json_values,
    st.lists(st.integers() | st.from_regex(r"m-?[0-9]{1,22}", fullmatch=True) | json_values),
)
turns = st.builds(
    lambda think, body, noise, cut: (f"<think>{think}</think>{body}{noise}")[: cut or None],
    st.text(max_size=80),
    calls.map(lambda c: f"<tool_call>{c}</tool_call>")
    | answers.map(lambda a: f"<answer>{a}</answer>")
    | st.text(max_size=200),
    st.text(max_size=20),
    st.integers(min_value=-50, max_value=0),
)


@FUZZ
@given(first=turns | st.text(max_size=300), second=turns)
def test_any_turn_gives_a_bounded_action(first: str, second: str) -> None:
    o = Orchestrator("a query", max_memory_calls=1, max_profile_chars=MAX_PROFILE)
    action = o.feed(first)
    if action["kind"] == "retrieve":
        assert action["aspects"] and all(len(a) <= 80 for a in action["aspects"])
        assert action["tier"] in (None, "behavior", "pattern", "profile")
        o.add_memories([])  # nothing found
        action = o.feed(second)
    assert action["kind"] in ("retrieve", "answer")
    if action["kind"] == "answer":
        assert o.is_done
        assert len(action["profile"]) <= MAX_PROFILE
        assert set(action["memory_ids"]) <= set(o.shown_ids())
        assert action["fallback"] == (action["reason"] is not None)


@FUZZ
@given(text=turns | st.text(), cuts=st.lists(st.integers(min_value=1, max_value=12), max_size=40))
def test_streamed_turn_splits_at_any_token_boundary(text: str, cuts: list[int]) -> None:
    """The TUI folds a turn streamed in arbitrary pieces without raising, and the reasoning it
    shows is always a prefix of the model's text."""
    answer = Answer("q")
    pos = 0
    for n in [*cuts, len(text)]:
        piece, pos = text[pos : pos + n], pos + n
        answer.apply(Token(piece, 0))
        assert isinstance(answer.text, str)
        assert answer.turns[0].text.removeprefix("<think>").startswith(answer.thinking)
        if pos >= len(text):
            break
    think, kind, _body = split_turn(text)
    assert kind in ("", "call", "answer")
    assert text.removeprefix("<think>").startswith(think)
    answer.apply(Profile("final", [], True, "x"))
    assert answer.text == "final"
