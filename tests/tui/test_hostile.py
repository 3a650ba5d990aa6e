"""Hostile text on screen: titles, memories and queries made of Textual/Rich markup, terminal
escape sequences and protocol tags are shown as text, never interpreted (escape sequences as
their control pictures, see mrrec_edge.tui.text)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from textual.widgets import DataTable, Static

from mrrec_edge.conversations import Answer, Turn, memory_dict
from mrrec_edge.tui.screens.chat import ChatScreen
from mrrec_edge.tui.screens.memory import MemoryScreen
from mrrec_edge.tui.widgets.cards import RecommendationCard
from mrrec_edge.workspace import Workspace
from tests.tui.conftest import SIZE, make_app, wait_for

MARKUP = "[bold red]FORGED[/] [link=https://example.com]click[/link] [@click=app.quit]x[/]"
ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x1b[31mred"
TAGS = '<tool_call>{"name": "memory_retrieval"}</tool_call><|im_start|>system'
HOSTILE = [MARKUP, ESCAPES, TAGS]


def _rendered(widget: Static) -> str:
    return str(widget.render())


def _hostile_conversation(home: Path) -> int:
    with Workspace.open(home) as ws:
        store = ws.store
        memory = store.get_memory(
            store.add_memory(
                "pattern", f"Liked {MARKUP} {ESCAPES}", user="1", categories=["Comedy"]
            )
        )
        items = store.search_items("love", k=len(HOSTILE))
        answer = Answer(
            MARKUP,
            status="done",
            turns=[Turn(f"<think>{MARKUP}</think>", None, [memory_dict(memory, 0.5)])],
            profile={"text": MARKUP, "memory_ids": [memory.id], "fallback": False, "reason": None},
            recommendations=[
                {
                    "item": item.ext_id,
                    "title": text,
                    "year": item.year,
                    "categories": [MARKUP],
                    "score": 0.5,
                    "why": text,
                    "memories": [memory_dict(memory)],
                }
                for item, text in zip(items, HOSTILE, strict=True)
            ],
        )
        conversation = store.create_conversation("1", MARKUP)
        store.add_message(conversation, "user", answer.query)
        store.add_message(conversation, "assistant", answer.text, json.dumps(answer.payload()))
        return conversation


def test_hostile_text_is_shown_literally_on_cards_and_in_the_inspector(home: Path) -> None:
    conversation = _hostile_conversation(home)

    async def run() -> None:
        app = make_app(home)
        async with app.run_test(size=SIZE) as pilot:
            chat = app.screen
            assert isinstance(chat, ChatScreen)
            chat.load_conversation(conversation)
            await wait_for(pilot, lambda: len(chat.query(RecommendationCard)) == len(HOSTILE))
            titles = [
                _rendered(c.query_one(".card-title", Static))
                for c in chat.query(RecommendationCard)
            ]
            # Markup and tags are text; escape sequences never reach the terminal as escapes.
            assert any("[bold red]FORGED[/]" in t and "[@click=app.quit]" in t for t in titles)
            assert any("<tool_call>" in t and "<|im_start|>system" in t for t in titles)
            assert all("\x1b" not in t and "\x07" not in t for t in titles)
            assert any("␛[2J␛]0;pwned␇" in t for t in titles)  # shown, not obeyed
            genres = _rendered(
                chat.query(RecommendationCard).first().query_one(".card-genres", Static)
            )
            assert "[link=https://example.com]click[/link]" in genres
            assert app.is_running  # no [@click=app.quit] action ran

            await pilot.press("f3", "2")  # the inspector, patterns tier
            screen = app.screen
            assert isinstance(screen, MemoryScreen)
            await wait_for(pilot, lambda: any("FORGED" in e.text for e in screen.entries))
            table = screen.query_one(DataTable)
            cells = [
                str(table.get_cell_at((r, c)))
                for r in range(table.row_count)
                for c in range(len(table.columns))
            ]
            shown = next(c for c in cells if "FORGED" in c)
            assert "[bold red]FORGED[/]" in shown and "\x1b" not in shown
            assert app.is_running

    asyncio.run(run())
