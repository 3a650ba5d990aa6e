"""SVG snapshots of the main screens (pytest-textual-snapshot; update them with
``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the report).

Deterministic by construction: a fixed terminal size, a saved conversation instead of a live
model answer, the bundle label pinned, and nothing on screen that shows a time or a temp path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import DataTable

from mrrec_edge.config import Settings
from mrrec_edge.conversations import Answer, Turn, memory_dict
from mrrec_edge.tui.app import MrrecApp
from mrrec_edge.tui.screens.chat import ChatScreen
from mrrec_edge.tui.screens.memory import MemoryScreen
from mrrec_edge.tui.widgets.cards import RecommendationCard
from mrrec_edge.workspace import Workspace
from tests.tui.conftest import SIZE, make_app, wait_for

#: pytest-textual-snapshot's fixture: compare(app, terminal_size=..., run_before=...) -> bool
SnapCompare = Callable[..., bool]
BUNDLE_LABEL = "SmolLM2-135M int8"


def _saved_conversation(home: Path) -> int:
    """A conversation as the chat saves one, from user 1's real memory and catalog items."""
    with Workspace.open(home) as ws:
        store = ws.store
        comedy = [
            p for p in store.list_memory(user="1", tiers=["pattern"]) if "Comedy" in p.categories
        ]
        # The "liked" pattern first: the one the cards cite.
        patterns = sorted(comedy, key=lambda p: " they liked: " not in p.text)
        items = store.search_items("love", k=4)
        answer = Answer(
            "a funny movie for a Friday night",
            status="done",
            turns=[
                Turn(
                    "<think>They want something funny; check which comedies they liked.</think>\n"
                    '<tool_call>{"name": "memory_retrieval", "arguments": {"aspects": '
                    '["comedies they liked"], "tier": "pattern"}}</tool_call>',
                    {"aspects": ["comedies they liked"], "tier": "pattern", "category": "Comedy"},
                    [memory_dict(p, 0.5) for p in patterns[:2]],
                ),
                Turn(
                    '<think>Light romantic comedy.</think>\n<answer>{"ideal_item_profile": '
                    '"A light, warm romantic comedy", "useful_memory_ids": []}</answer>'
                ),
            ],
            profile={
                "text": "A light, warm romantic comedy",
                "memory_ids": [patterns[0].id],
                "fallback": False,
                "reason": None,
            },
            recommendations=[
                {
                    "item": i.ext_id,
                    "title": i.title,
                    "year": i.year,
                    "categories": i.categories,
                    "score": 0.5,
                    "why": "Comedy, like what your memory says: " + patterns[0].text[:60],
                    "memories": [memory_dict(patterns[0])],
                }
                for i in items
            ],
            feedback={items[0].ext_id: "like"},
        )
        conversation = store.create_conversation("1", answer.query)
        store.add_message(conversation, "user", answer.query)
        store.add_message(conversation, "assistant", answer.text, json.dumps(answer.payload()))
        return conversation


def test_chat_screen(snap_compare: SnapCompare, home: Path) -> None:
    conversation = _saved_conversation(home)
    app = make_app(home)

    async def run_before(pilot: Pilot[None]) -> None:
        app.bundle_label = BUNDLE_LABEL
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        chat.load_conversation(conversation)
        await wait_for(pilot, lambda: len(chat.query(RecommendationCard)) == 4)
        chat.query(RecommendationCard).first().focus()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_memory_inspector(snap_compare: SnapCompare, home: Path) -> None:
    app = make_app(home)

    async def run_before(pilot: Pilot[None]) -> None:
        app.bundle_label = BUNDLE_LABEL
        await pilot.press("f3", "2")
        screen = app.screen
        assert isinstance(screen, MemoryScreen)
        await wait_for(pilot, lambda: screen.entries and screen.entries[0].tier == "pattern")

        def memory_column_fitted() -> bool:
            # DataTable sizes auto-width columns to their rows on its next idle: under load the
            # screenshot could otherwise come first, with the column as wide as its label.
            memory = list(screen.query_one(DataTable).columns.values())[-1]
            return memory.content_width > len("memory")

        await wait_for(pilot, memory_column_fitted)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_onboarding(snap_compare: SnapCompare, tmp_path: Path) -> None:
    # A fixed bundle path: the screen quotes it.
    app = MrrecApp(
        Settings(home=tmp_path / "home", bundle_path=Path("/nonexistent/mrrec-bundle")),
        preload_model=False,
    )
    assert snap_compare(app, terminal_size=SIZE)
