"""Limits: a model that says nothing, loops, or never stops calling memory is cut off with a
fallback answer; a turn cannot outgrow its token budget even if the runtime ignores it.

The real model cannot be made to misbehave on demand, so these few tests drive the real
Assistant, store and embedder with a scripted TurnModel (the only scripted model in the suite's
reliability tests). The real model's own limits are covered in tests/model and tests/assistant.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mrrec_edge.assistant import Assistant, AssistantConfig, Done, Profile, Recommendations, Token
from mrrec_edge.workspace import Workspace

CALL = (
    '<think>look</think><tool_call>{"name": "memory_retrieval", '
    '"arguments": {"aspects": ["comedy"]}}</tool_call>'
)


class ScriptedModel:
    """Streams ``script(turn)`` whatever the budget says: a misbehaving runtime."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.turns = 0
        self.pieces_streamed = 0
        self.closed = 0

    last_stats = None

    def apply_chat_template(self, messages: Sequence[Mapping[str, Any]]) -> str:
        return "\n".join(m["content"] for m in messages)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, prompt: str, **_: Any) -> Iterator[str]:
        turn, self.turns = self.turns, self.turns + 1
        try:
            for piece in self.script(turn):
                self.pieces_streamed += 1
                yield piece
        finally:
            self.closed += 1


def ask(home: Path, model: ScriptedModel, **config: Any) -> list[Any]:
    with Workspace.open(home) as ws:
        assistant = Assistant(ws, model, AssistantConfig(**config))  # type: ignore[arg-type]
        return list(assistant.ask("ann", "a funny movie", k=5, cancel=threading.Event()))


def _profile(events: list[Any]) -> Profile:
    return next(e for e in events if isinstance(e, Profile))


def test_a_silent_model_gets_a_fallback_answer(home: Path) -> None:
    model = ScriptedModel(lambda turn: iter(()))
    events = ask(home, model)
    profile = _profile(events)
    assert profile.fallback and "unreadable model turn" in (profile.reason or "")
    assert profile.profile.startswith("a funny movie")
    assert len(next(e for e in events if isinstance(e, Recommendations)).items) == 5
    assert model.turns == 1


def test_a_looping_model_is_cut_off_at_the_turn_budget(home: Path) -> None:
    model = ScriptedModel(lambda turn: itertools.repeat("ha "))  # never ends on its own
    events = ask(home, model, max_turn_tokens=50)
    assert sum(isinstance(e, Token) for e in events) == 50
    # One piece past the budget shows the overrun; then the stream is closed, not drained.
    assert model.pieces_streamed == 51 and model.closed == 1
    profile = _profile(events)
    assert profile.fallback and len(next(e for e in events if isinstance(e, Recommendations)).items)


def test_a_model_that_only_calls_memory_is_stopped_after_the_last_call(home: Path) -> None:
    model = ScriptedModel(lambda turn: iter([CALL]))
    events = ask(home, model, max_memory_calls=2)
    done = next(e for e in events if isinstance(e, Done))
    assert done.stats["memory_calls"] == 2 and done.stats["turns"] == 3
    profile = _profile(events)
    assert profile.fallback and "no calls left" in (profile.reason or "")
    # The fallback grounds the query plus what memory returned, and cites it.
    assert profile.memory_ids and len(profile.profile) <= AssistantConfig().max_profile_chars


class TooLongPromptModel(ScriptedModel):
    """Refuses the prompt before streaming, as the runtime does past its context window."""

    def stream(self, prompt: str, **_: Any) -> Iterator[str]:  # type: ignore[override]
        raise ValueError("the prompt has 9000 tokens; the model's context is 8192")


def test_a_prompt_past_the_context_window_gets_a_fallback_answer(home: Path) -> None:
    events = ask(home, TooLongPromptModel(None))
    profile = _profile(events)
    assert profile.fallback and "model turn failed" in (profile.reason or "")
    assert next(e for e in events if isinstance(e, Recommendations)).items
