"""The Rust orchestrator through its Python binding, fed real memory entries."""

from __future__ import annotations

from mrrec_edge import MemoryStore
from mrrec_edge._core import Orchestrator
from tests.helpers import ML100K

CALL = (
    '<think>Check their comedies.</think><tool_call>{"name": "memory_retrieval", '
    '"arguments": {"aspects": ["comedy"], "tier": "behavior"}}</tool_call>'
)


def test_loop_with_real_memory(tmp_path) -> None:
    store = MemoryStore(tmp_path)
    store.import_file("movielens-100k", str(ML100K))
    o = Orchestrator("a funny movie for Friday", memory_token_budget=60)
    assert "%json" in o.grammar() and o.messages()[1] == {
        "role": "user",
        "content": "a funny movie for Friday",
    }
    action = o.feed(CALL)
    assert action == {
        "kind": "retrieve",
        "aspects": ["comedy"],
        "tier": "behavior",
        "category": None,
        "k": 3,
    }
    hits = store.search_memory(
        text="comedy", user="1", tiers=[action["tier"]], k=action["k"], mode="lexical"
    )
    o.add_memories(hits, token_count=lambda text: len(text.split()))
    shown = o.shown_ids()
    assert shown and set(shown) <= {h.entry.id for h in hits}
    assert o.stats()["memory_tokens"] <= 60
    response = o.messages()[-1]["content"]
    assert response.startswith("<tool_response>") and f"[m{shown[0]}]" in response
    answer = o.feed(
        f'<think>ok</think><answer>{{"ideal_item_profile": "A light 90s comedy", '
        f'"useful_memory_ids": ["m{shown[0]}", "m424242"]}}</answer>'
    )
    assert answer == {
        "kind": "answer",
        "profile": "A light 90s comedy",
        "memory_ids": [shown[0]],
        "fallback": False,
        "reason": None,
    }
    assert o.is_done and o.stats()["turns"] == 2


def test_finish_gives_a_fallback() -> None:
    o = Orchestrator("scary but not gory")
    out = o.finish("cancelled")
    assert (
        out["fallback"] and out["profile"] == "scary but not gory" and out["reason"] == "cancelled"
    )
