"""The must-show flow with the real bundle and MovieLens 100K user 1, in one app session (the
model is slow on a shared CPU): ask, watch the answer stream into ten cards, like the first with
its key (the answer focused it), find the like in the memory inspector, resume the saved
conversation, ask a follow-up in it, and cancel an answer with Esc."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input, OptionList

from mrrec_edge.tui.screens.chat import ChatScreen
from mrrec_edge.tui.screens.dialogs import ConversationsScreen
from mrrec_edge.tui.screens.memory import MemoryScreen
from mrrec_edge.tui.widgets.transcript import AssistantMessage
from tests.tui.conftest import SIZE, make_app, wait_for

QUERY = "funny movie"
FOLLOW_UP = "something older"


@dataclass
class Session:
    """What the shared session saw, for the tests below to check."""

    streamed_texts: list[str] = field(default_factory=list)
    stream_updates: int = 0
    saved_mid_stream: dict[str, Any] | None = None
    answer_status: str = ""
    card_titles: list[str] = field(default_factory=list)
    trace_text: str = ""
    liked: dict[str, Any] = field(default_factory=dict)
    ack: str = ""
    focused_first_card: bool = False
    prompt_after_like: str | None = None
    top_behavior: list[str] = field(default_factory=list)
    behavior_ids_before: set[int] = field(default_factory=set)
    conversations: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    resumed_cards: int = 0
    resumed_feedback: dict[str, str] = field(default_factory=dict)
    follow_up_status: str = ""
    follow_up_items: list[str] = field(default_factory=list)
    conversations_after: list[dict[str, Any]] = field(default_factory=list)
    messages_after: list[dict[str, Any]] = field(default_factory=list)
    cancelled_status: str = ""
    cancelled_saved: str = ""
    errors: list[str] = field(default_factory=list)


def _text(widget: Any) -> str:
    return str(widget.render())


def _hold_after_two_tokens(model: Any) -> threading.Event:
    """Makes the model's next stream wait after its second token until the returned event is
    set; the streams after it run freely."""
    release = threading.Event()
    stream = model.stream

    def held(*args: Any, **kwargs: Any) -> Iterator[str]:
        del model.stream  # this answer only
        for n, piece in enumerate(stream(*args, **kwargs)):
            yield piece
            if n == 1:
                assert release.wait(timeout=60), "the test never released the stream"

    model.stream = held
    return release


async def _run(home: Path) -> Session:
    seen = Session()
    app = make_app(home, preload_model=True)
    async with app.run_test(size=SIZE) as pilot:
        store = app.workspace.store
        await wait_for(pilot, lambda: app.state == "ready", timeout=120, what="the model")
        seen.behavior_ids_before = {
            e.id for e in store.list_memory(user="1", tiers=["behavior"], limit=10_000)
        }
        # -- ask, and watch it stream
        await pilot.click("#prompt")
        await pilot.press(*QUERY)
        loop = asyncio.get_running_loop()

        async def watch() -> AssistantMessage:
            # Started before the enter key: pressing it waits for the app to settle, and a fast
            # machine streams the whole answer in that wait.
            deadline = loop.time() + 300
            while not app.screen.query(AssistantMessage):
                assert loop.time() < deadline, "no answer after 5 minutes"
                await asyncio.sleep(0.005)
            view = app.screen.query_one(AssistantMessage)
            while view.answer.status == "streaming" or app.state != "ready":
                assert loop.time() < deadline, "the answer took over 5 minutes"
                shown = _text(view.query_one(".thinking")) + _text(view.query_one(".answer-text"))
                if not seen.streamed_texts or seen.streamed_texts[-1] != shown:
                    seen.streamed_texts.append(shown)
                if seen.saved_mid_stream is None and view.answer.tokens > 40:
                    conversation = store.list_conversations("1")[0]["id"]
                    saved = store.conversation_messages(conversation)[-1]
                    seen.saved_mid_stream = {"tokens": view.answer.tokens, **saved}
                await asyncio.sleep(0.05)
            return view

        watcher = asyncio.create_task(watch())
        await pilot.press("enter")
        view = await watcher
        await pilot.pause()
        seen.stream_updates = view.stream_updates
        seen.answer_status = view.answer.status
        seen.card_titles = [_text(c.query_one(".card-title")) for c in view.cards]
        seen.trace_text = " ".join(_text(s) for s in app.screen.query("#trace Static"))
        # -- the answer moved focus to its first card: "l" likes it (it once went into the prompt)
        card = view.cards[0]
        seen.focused_first_card = app.focused is card
        transcript = app.screen.query_one("#transcript")
        await wait_for(
            pilot,
            lambda: transcript.region.contains_region(card.region),
            timeout=5,
            what="the first card in view",
        )
        await pilot.press("l")
        await wait_for(pilot, lambda: card.feedback == "like", what="the like")
        seen.prompt_after_like = app.screen.query_one("#prompt", Input).value
        seen.liked = dict(card.rec)
        seen.ack = _text(card.query_one(".card-ack"))
        # -- find it in the memory inspector
        await pilot.press("f3")
        memory = app.screen
        assert isinstance(memory, MemoryScreen)
        await wait_for(
            pilot,
            lambda: memory.entries and memory.entries[0].id not in seen.behavior_ids_before,
            what="the inspector to list the like",
        )
        table = memory.query_one(DataTable)
        seen.top_behavior = [str(c) for c in table.get_row_at(0)]
        # -- the conversation was saved; resume it
        seen.conversations = store.list_conversations("1")
        seen.messages = store.conversation_messages(seen.conversations[0]["id"])
        await pilot.press("f2")
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert not chat.query(AssistantMessage)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, ConversationsScreen))
        app.screen.query_one(OptionList).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: chat.query(AssistantMessage), what="the resumed answer")
        await pilot.pause()
        resumed = chat.query_one(AssistantMessage)
        seen.resumed_cards = len(resumed.cards)
        seen.resumed_feedback = {c.item: c.feedback for c in resumed.cards if c.feedback}
        # -- a follow-up continues the resumed conversation, in its context
        prompt = chat.query_one("#prompt", Input)
        assert app.focused is prompt
        await pilot.press(*FOLLOW_UP, "enter")
        await wait_for(pilot, lambda: len(chat.query(AssistantMessage)) == 2)
        follow = list(chat.query(AssistantMessage))[1]
        await wait_for(
            pilot,
            lambda: follow.answer.status != "streaming" and app.state == "ready",
            timeout=300,
            what="the follow-up",
        )
        seen.follow_up_status = follow.answer.status
        seen.follow_up_items = [r["item"] for r in follow.answer.recommendations]
        seen.conversations_after = store.list_conversations("1")
        seen.messages_after = store.conversation_messages(seen.conversations[0]["id"])
        # -- Esc cancels the next answer before its next token ("/" from the focused card).
        # The real model streams it, held after its second token until Esc has been handled:
        # otherwise a fast machine may finish the answer between the wait and the key.
        held = _hold_after_two_tokens(app.load_model())
        await pilot.press("slash")
        assert app.focused is prompt
        await pilot.press(*"tense", "enter")
        await wait_for(pilot, lambda: len(chat.query(AssistantMessage)) == 3)
        second = list(chat.query(AssistantMessage))[2]
        await wait_for(pilot, lambda: second.answer.tokens >= 2, timeout=120, what="tokens")
        await pilot.press("escape")
        await wait_for(pilot, lambda: chat.mrrec.state == "cancelling…", what="the cancel key")
        held.set()
        await wait_for(pilot, lambda: not chat.generating, timeout=30, what="the cancel")
        seen.cancelled_status = second.answer.status
        messages = store.conversation_messages(seen.conversations[0]["id"])
        seen.cancelled_saved = json.loads(messages[-1]["payload"])["status"]
        assert not prompt.disabled
        seen.errors = list(app.errors)
    return seen


@pytest.fixture(scope="module")
def session(tui_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Session:
    import shutil

    home = Path(shutil.copytree(tui_home, tmp_path_factory.mktemp("chat") / "home"))
    return asyncio.run(_run(home))


def test_the_answer_streams_then_shows_ten_cards(session: Session) -> None:
    assert session.errors == []
    assert session.answer_status == "done"
    # The text on screen changed many times while tokens arrived, not once at the end: the
    # widget counts its updates, and the screen, sampled every 50 ms, showed at least two
    # states before the final one (how many samples fit in the stream is the machine's).
    assert session.stream_updates > 5
    assert len(session.streamed_texts) >= 3
    assert len(session.card_titles) == 10
    assert all(t.strip() for t in session.card_titles)
    assert session.card_titles[0].lstrip().startswith("1.")
    # The reasoning panel shows the question and the ideal item profile.
    assert QUERY in session.trace_text and "ideal item" in session.trace_text


def test_a_like_is_written_at_once_and_found_in_the_inspector(session: Session) -> None:
    assert session.focused_first_card, "the answer's first card has focus"
    assert session.prompt_after_like == ""
    assert "liked" in session.ack
    memory_id, _categories, text = session.top_behavior
    assert int(memory_id) not in session.behavior_ids_before
    assert session.liked["title"] in text and "Liked it" in text


def test_the_conversation_was_saved_while_streaming_and_resumes(session: Session) -> None:
    mid = session.saved_mid_stream
    assert mid is not None and mid["role"] == "assistant"
    payload = json.loads(mid["payload"])
    assert payload["status"] == "streaming" and payload["query"] == QUERY
    saved_tokens = sum(len(t["text"]) for t in payload["turns"])
    assert saved_tokens > 0, "tokens were saved before the answer finished"
    assert session.conversations[0]["title"] == QUERY
    first = session.messages[:2]
    assert [m["role"] for m in first] == ["user", "assistant"]
    final = json.loads(first[1]["payload"])
    assert final["status"] == "done" and len(final["recommendations"]) == 10
    assert final["feedback"] == {session.liked["item"]: "like"}
    assert first[1]["content"] == final["profile"]["text"]
    # Resumed: the same ten cards, the like still acknowledged.
    assert session.resumed_cards == 10
    assert session.resumed_feedback == {session.liked["item"]: "like"}


def test_a_resumed_conversation_continues_with_its_context(session: Session) -> None:
    # Saved into the same conversation, not a new one.
    assert [c["id"] for c in session.conversations_after] == [
        c["id"] for c in session.conversations
    ]
    messages = session.messages_after[:4]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[2]["content"] == FOLLOW_UP
    assert json.loads(messages[3]["payload"])["query"] == FOLLOW_UP
    # Answered in that context: nothing the earlier answer showed is shown again.
    assert session.follow_up_status == "done" and len(session.follow_up_items) == 10
    shown = {r["item"] for r in json.loads(session.messages[1]["payload"])["recommendations"]}
    assert shown.isdisjoint(session.follow_up_items)


def test_escape_cancels_a_generation(session: Session) -> None:
    assert session.cancelled_status == "cancelled"
    assert session.cancelled_saved == "cancelled"
