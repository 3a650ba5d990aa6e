"""The answer model behind the chat: parsing streamed turns, the saved payload, and saving as
it streams (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mrrec_edge._core import MemoryStore, partial_profile, split_turn
from mrrec_edge.assistant import Done, Profile, Token, ToolCall
from mrrec_edge.conversations import Answer, AnswerRecorder

CALL = '<think>They want comedy.</think>\n<tool_call>{"name": "memory_retrieval", "arguments": {"aspects": ["comedy"]}}</tool_call>'
ANSWER = '<think>Dry humour.</think>\n<answer>{"ideal_item_profile": "A dry \\"witty\\" comedy", "useful_memory_ids": ["m1"]}</answer>'


def test_split_turn_separates_reasoning_from_the_action() -> None:
    assert split_turn("<think>They want") == ("They want", "", "")
    think, kind, body = split_turn(CALL)
    assert (think, kind) == ("They want comedy.", "call")
    assert json.loads(body)["arguments"]["aspects"] == ["comedy"]
    assert split_turn(ANSWER)[:2] == ("Dry humour.", "answer")


def test_partial_profile_streams_the_json_string() -> None:
    body = split_turn(ANSWER)[2]
    assert partial_profile(body) == 'A dry "witty" comedy'
    # Every prefix of the stream gives a prefix of the final text: nothing flickers.
    final = partial_profile(body)
    for end in range(len(body)):
        assert final.startswith(partial_profile(body[:end]))


@given(st.text(max_size=80))
def test_partial_profile_never_fails_on_any_prefix(text: str) -> None:
    body = '{"ideal_item_profile": ' + json.dumps(text) + ', "useful_memory_ids": []}'
    assert partial_profile(body) == text
    for end in range(0, len(body), 3):
        assert text.startswith(partial_profile(body[:end]))


def _stream(answer: Answer, text: str, turn: int) -> None:
    for ch in text:
        answer.apply(Token(ch, turn))


def test_answer_folds_events_and_round_trips_through_its_payload() -> None:
    a = Answer("a comedy")
    _stream(a, "<think>They want", 0)
    assert a.thinking == "They want" and a.text == ""
    _stream(a, CALL.removeprefix("<think>They want"), 0)
    a.apply(ToolCall(["comedy"], "pattern", None))
    cut = ANSWER.index("wi") + 2
    _stream(a, ANSWER[:cut], 1)
    assert a.text == 'A dry "wi'
    _stream(a, ANSWER[cut:], 1)
    a.apply(Profile('A dry "witty" comedy', [1], False, None))
    a.apply(Done({}, {}))
    assert a.status == "done" and a.text == 'A dry "witty" comedy'
    assert a.turns[0].call == {"aspects": ["comedy"], "tier": "pattern", "category": None}
    a.feedback["ml100k:1"] = "like"
    again = Answer.from_payload(json.loads(json.dumps(a.payload())))
    assert again.payload() == a.payload()


def test_an_answer_saved_mid_stream_reads_as_interrupted() -> None:
    a = Answer("q")
    _stream(a, "<think>hm", 0)
    again = Answer.from_payload(a.payload())
    assert again.status == "interrupted" and again.turns[0].text == "<think>hm"


def test_recorder_saves_every_token_and_event_so_a_crash_loses_none(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path)
    store.add_user("ana")
    conversation = store.create_conversation("ana", "q")
    message = store.add_message(conversation, "assistant", "", "{}")
    a = Answer("q")
    recorder = AnswerRecorder(store, message, a)

    def saved() -> dict[str, Any]:
        # A fresh connection reads only what was committed, as a restarted app would.
        row = MemoryStore(tmp_path).conversation_messages(conversation)[0]
        return json.loads(row["payload"])

    streamed = ""
    for piece in ["<think>", "fun", "ny", " one"]:
        a.apply(Token(piece, 0))
        recorder.save()
        streamed += piece
        # Every token applied so far is on disk, the last one included.
        assert saved()["turns"][0]["text"] == streamed
        assert saved()["status"] == "streaming"
    assert recorder.saves == 4
    a.apply(ToolCall(["a"], None, None))
    recorder.save()
    assert saved()["turns"][0]["text"] == "<think>funny one"
    recorder.finish("cancelled")
    assert saved()["status"] == "cancelled"
