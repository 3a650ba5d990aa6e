"""The Rust orchestrator is the one owner of the turn protocol and of the assistant's defaults:
no Python source restates a tag or a default, and every config derives from the core's."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from mrrec_edge._core import (
    TURN_STOP_STRINGS,
    Orchestrator,
    orchestrator_defaults,
    partial_profile,
    render_answer,
    render_call,
    split_turn,
    tool_responses,
)
from mrrec_edge.assistant import AssistantConfig

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [p for d in ("python", "training", "benchmarks") for p in (ROOT / d).rglob("*.py")]
TAG = re.compile(r"</?(think|tool_call|answer|tool_response)>")
# A turn-limit field declared with a number, e.g. ``max_memory_calls: int = 2`` (an override such
# as an ablation row's ``max_memory_calls=0`` is no default).
LITERAL_DEFAULT = re.compile(
    r"\b(max_memory_calls|memory_token_budget|memory_k|global_k|max_think_chars|"
    r"max_profile_chars|max_aspects|max_turn_tokens)\s*:\s*int\s*=\s*\d"
)


def test_no_python_source_writes_a_turn_tag_or_a_default() -> None:
    assert len(SOURCES) > 50
    found = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in SOURCES
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if TAG.search(line) or LITERAL_DEFAULT.search(line)
    ]
    assert not found, "\n".join(found)


def test_every_config_derives_the_core_defaults() -> None:
    defaults = orchestrator_defaults()
    config = AssistantConfig()
    shared = [f.name for f in fields(AssistantConfig) if f.name in defaults]
    assert len(shared) >= 7
    assert {name: getattr(config, name) for name in shared} == {n: defaults[n] for n in shared}
    from mrrec_train.recipe import RolloutConfig  # plain Python: no torch needed

    rollout = RolloutConfig()
    turn_limits = [n for n in shared if n != "max_turn_tokens"]
    assert {n: getattr(rollout, n) for n in turn_limits} == {n: defaults[n] for n in turn_limits}


def test_rendered_turns_drive_the_orchestrator() -> None:
    """What the teacher renders is what the orchestrator reads, and what the TUI streams."""
    orch = Orchestrator("a funny movie")
    call = render_call("Check which comedy they liked.", ["comedy they liked"], tier="pattern")
    assert call.endswith(TURN_STOP_STRINGS[0])
    assert split_turn(call)[:2] == ("Check which comedy they liked.", "call")
    action = orch.feed(call)
    assert action["kind"] == "retrieve" and action["aspects"] == ["comedy they liked"]
    assert action["tier"] == "pattern"
    orch.add_memories([])
    prompt = "\n".join(m["content"] for m in orch.messages())
    assert tool_responses(prompt) == [[]]

    answer = render_answer("Use m4.", 'A dry "witty" comedy', [4])
    assert answer.endswith(TURN_STOP_STRINGS[1])
    reasoning, kind, body = split_turn(answer)
    assert (reasoning, kind) == ("Use m4.", "answer")
    assert partial_profile(body) == 'A dry "witty" comedy'
    # Cited ids count only when shown: none were.
    assert orch.feed(answer) == {
        "kind": "answer",
        "profile": 'A dry "witty" comedy',
        "memory_ids": [],
        "fallback": False,
        "reason": None,
    }
