"""The memory inspector: browse tiers, search, forget (what depends on the entry is rebuilt)
and edit, on MovieLens 100K user 1 (no model needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.pilot import Pilot

from mrrec_edge.errors import InputError, NotFoundError
from mrrec_edge.tui.app import MrrecApp
from mrrec_edge.tui.screens.dialogs import ConfirmDialog, TextDialog
from mrrec_edge.tui.screens.memory import MemoryScreen
from mrrec_edge.workspace import Workspace
from tests.tui.conftest import SIZE, make_app, wait_for


def _liked_record(ws: Workspace) -> tuple[str, int, int]:
    """A category, a record its "liked" pattern cites, and that record's behavior entry id
    (from the largest category, which stays among the patterns with one record less)."""
    history = ws.store.user_history("1")
    liked = [
        p for p in ws.store.list_memory(user="1", tiers=["pattern"]) if " they liked: " in p.text
    ]
    p = max(liked, key=lambda p: sum(p.categories[0] in r["categories"] for r in history))
    record = p.source_ids[0]
    for e in ws.store.list_memory(user="1", tiers=["behavior"], limit=10_000):
        if e.source_ids == [record]:
            return p.categories[0], record, e.id
    raise AssertionError(f"no behavior entry for record {record}")


async def _open_inspector(app: MrrecApp, pilot: Pilot[None], tier_key: str) -> MemoryScreen:
    await pilot.press("f3")
    screen = app.screen
    assert isinstance(screen, MemoryScreen)
    await pilot.press(tier_key)
    tier = {"1": "behavior", "2": "pattern", "3": "profile", "4": "global"}[tier_key]
    await wait_for(
        pilot, lambda: screen.tier == tier and screen.entries and screen.entries[0].tier == tier
    )
    return screen


async def _select(screen: MemoryScreen, pilot: Pilot[None], memory_id: int) -> None:
    ids = [e.id for e in screen.entries]
    screen.query_one("DataTable").move_cursor(row=ids.index(memory_id))
    await pilot.pause()


def test_forgetting_a_record_rebuilds_its_patterns_and_the_profile(home: Path) -> None:
    async def run() -> None:
        app = make_app(home)
        async with app.run_test(size=SIZE) as pilot:
            ws = app.workspace
            category, record, entry = _liked_record(ws)
            profile_before = {e.id for e in ws.store.list_memory(user="1", tiers=["profile"])}
            screen = await _open_inspector(app, pilot, "1")
            await _select(screen, pilot, entry)
            await pilot.press("f")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("y")
            await wait_for(pilot, lambda: entry not in [e.id for e in screen.entries])
            await wait_for(pilot, lambda: app.state == "ready")
            with pytest.raises(NotFoundError):
                ws.store.get_memory(entry)
            patterns = [
                p
                for p in ws.store.list_memory(user="1", tiers=["pattern"])
                if category in p.categories
            ]
            assert patterns and all(record not in p.source_ids for p in patterns)
            profile = {e.id for e in ws.store.list_memory(user="1", tiers=["profile"])}
            assert profile and not profile & profile_before, "the profile was rebuilt"
            # A later rebuild does not bring the forgotten record back.
            ws.remembered_builder().build_user("1")
            for p in ws.store.list_memory(user="1", tiers=["pattern"]):
                assert record not in p.source_ids
            assert app.errors == []

    asyncio.run(run())


def test_forgetting_a_pattern_rebuilds_the_profile_and_edit_rewrites(home: Path) -> None:
    async def run() -> None:
        app = make_app(home)
        async with app.run_test(size=SIZE) as pilot:
            ws = app.workspace
            profile_before = {e.id for e in ws.store.list_memory(user="1", tiers=["profile"])}
            screen = await _open_inspector(app, pilot, "2")
            pattern = screen.entries[0]
            await pilot.press("delete")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("y")
            await wait_for(pilot, lambda: pattern.id not in [e.id for e in screen.entries])
            await wait_for(pilot, lambda: app.state == "ready")
            profile = ws.store.list_memory(user="1", tiers=["profile"])
            assert profile and not {e.id for e in profile} & profile_before
            # Edit a profile entry: forget + re-add with the new text.
            screen = await _open_inspector(app, pilot, "3")
            old = screen.entries[0]
            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, TextDialog))
            app.screen.query_one("TextArea").text = "Loves dry British comedies."  # type: ignore[attr-defined]
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: old.id not in [e.id for e in screen.entries])
            texts = [e.text for e in ws.store.list_memory(user="1", tiers=["profile"])]
            assert "Loves dry British comedies." in texts and old.text not in texts
            # Behavior records are not edited: a warning says what to do instead.
            screen = await _open_inspector(app, pilot, "1")
            await pilot.press("e")
            await pilot.pause()
            assert not isinstance(app.screen, TextDialog)
            assert any("forget it" in n.message for n in app._notifications)
            assert app.errors == []

    asyncio.run(run())


def test_search_finds_records_by_meaning_and_words(home: Path) -> None:
    async def run() -> None:
        app = make_app(home)
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open_inspector(app, pilot, "1")
            await pilot.press("slash", *"Star Wars", "enter")
            await wait_for(pilot, lambda: screen.searching and screen.entries)
            await wait_for(pilot, lambda: "Star Wars" in screen.entries[0].text)
            assert all(e.tier == "behavior" and e.user == "1" for e in screen.entries)
            assert app.errors == []

    asyncio.run(run())


def test_workspace_edit_refuses_records_and_empty_text(home: Path) -> None:
    with Workspace.open(home) as ws:
        record = ws.store.list_memory(user="1", tiers=["behavior"], limit=1)[0]
        with pytest.raises(InputError, match="behavior record"):
            ws.edit_memory(record.id, "made up")
        pattern = ws.store.list_memory(user="1", tiers=["pattern"], limit=1)[0]
        with pytest.raises(InputError, match="empty"):
            ws.edit_memory(pattern.id, "  ")
        assert ws.forget([10**9]) == {
            "forgotten": 0,
            "users": [],
            "patterns": 0,
            "profile_chunks": 0,
        }
