"""SVG snapshots of the main screens (pytest-textual-snapshot; update them with
``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the report).

Deterministic by construction: a fixed terminal size, a saved conversation instead of a live
model answer, the bundle label pinned, and nothing on screen that shows a time or a temp path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import DataTable

from mrrec_edge.config import Settings
from mrrec_edge.tui.app import MrrecApp
from mrrec_edge.tui.screens.chat import ChatScreen
from mrrec_edge.tui.screens.memory import MemoryScreen
from mrrec_edge.tui.widgets.cards import RecommendationCard
from tests.tui.conftest import SIZE, make_app, saved_conversation, wait_for

#: pytest-textual-snapshot's fixture: compare(app, terminal_size=..., run_before=...) -> bool
SnapCompare = Callable[..., bool]
BUNDLE_LABEL = "SmolLM2-135M int8"


def test_chat_screen(snap_compare: SnapCompare, home: Path) -> None:
    conversation = saved_conversation(home)
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
