"""Users and data: import through the dialog (progress, errors), create and switch users, and
the first-run onboarding. No model is needed here."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Log, Select, Static

from mrrec_edge.config import Settings, load_settings
from mrrec_edge.tui.app import MrrecApp
from mrrec_edge.tui.screens.chat import ChatScreen
from mrrec_edge.tui.screens.dialogs import HelpScreen, TextDialog
from mrrec_edge.tui.screens.importer import ImportScreen
from mrrec_edge.tui.screens.onboarding import OnboardingScreen, missing_train_modules
from mrrec_edge.tui.screens.users import UsersScreen
from tests.conftest import unavailable
from tests.tui.conftest import SIZE, make_app, wait_for

# ana's history: MovieLens items by their ids, three comedies so she gets a Comedy pattern.
ANA = """user_id,item_id,rating,timestamp
ana,ml100k:1,5,880000000
ana,ml100k:4,4,880000100
ana,ml100k:13,5,880000200
ana,ml100k:50,2,880000300
"""
BAD = "user_id,item_id,rating\nbob,ml100k:1,4\nbob,ml100k:2,9\n"


async def _import(app: MrrecApp, pilot: Pilot[None], kind: str, path: Path) -> ImportScreen:
    await pilot.press("f4")
    await pilot.press("i")
    await wait_for(pilot, lambda: isinstance(app.screen, ImportScreen))
    dialog = app.screen
    assert isinstance(dialog, ImportScreen)
    dialog.query_one("#import-kind", Select).value = kind
    dialog.query_one("#import-path", Input).value = str(path)
    await pilot.press("ctrl+s")
    return dialog


def test_import_a_history_switches_to_its_user_and_builds_memory(
    home: Path, tmp_path: Path
) -> None:
    ratings = tmp_path / "ana.csv"
    ratings.write_text(ANA, encoding="utf-8")

    async def run() -> None:
        app = make_app(home)
        async with app.run_test(size=SIZE) as pilot:
            await _import(app, pilot, "interactions-csv", ratings)
            await wait_for(pilot, lambda: app.user == "ana", what="the import")
            await wait_for(pilot, lambda: app.state == "ready")
            assert not isinstance(app.screen, ImportScreen)
            assert app.errors == []
            store = app.workspace.store
            assert [r["item"] for r in store.user_history("ana")] == [
                "ml100k:1",
                "ml100k:4",
                "ml100k:13",
                "ml100k:50",
            ]
            patterns = store.list_memory(user="ana", tiers=["pattern"])
            assert any("Comedy" in p.categories for p in patterns)
            assert store.pending_embeddings(1) == []
            # The users screen lists her as current.
            users = app.screen
            assert isinstance(users, UsersScreen)
            await pilot.pause()
            assert "user ana" in str(users.query_one("#user-info", Static).render())

    asyncio.run(run())


def test_a_bad_file_is_one_clear_error_and_writes_nothing(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD, encoding="utf-8")

    async def run() -> None:
        app = make_app(home)
        async with app.run_test(size=SIZE) as pilot:
            users_before = app.workspace.store.users()
            dialog = await _import(app, pilot, "interactions-csv", bad)
            await wait_for(pilot, lambda: app.errors, what="the error")
            await wait_for(pilot, lambda: not dialog.running)
            assert len(app.errors) == 1 and "bad.csv" in app.errors[0]
            assert "rating" in app.errors[0]
            status = str(dialog.query_one("#import-status", Static).render())
            assert "bad.csv" in status
            assert app.workspace.store.users() == users_before
            assert app.screen is dialog, "the dialog stays open to fix the input"
            # A missing path is caught before any work starts.
            dialog.query_one("#import-path", Input).value = str(tmp_path / "missing.csv")
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert "no such file" in str(dialog.query_one("#import-status", Static).render())
            await pilot.press("escape")
            assert isinstance(app.screen, UsersScreen)

    asyncio.run(run())


def test_create_and_switch_users(home: Path) -> None:
    async def run() -> None:
        app = make_app(home)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f4")
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, TextDialog))
            await pilot.press(*"zoe", "enter")
            await wait_for(pilot, lambda: app.user == "zoe")
            assert "zoe" in app.workspace.store.users()
            # Back to user 42: filter, then Enter on the list.
            await pilot.press("slash", *"42", "enter")
            await pilot.pause()
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.user == "42")
            assert isinstance(app.screen, ChatScreen)
            hint = str(app.screen.query_one("#chat-empty", Static).render())
            assert "user 42" in hint
            assert "42" in str(app.screen.query_one("StatusBar", Static).render())
            assert app.errors == []

    asyncio.run(run())


def test_first_run_without_bundle_or_data_onboards(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", bundle_path=tmp_path / "no-bundle")
    movies = tmp_path / "ml" / "movies.csv"
    movies.parent.mkdir()
    movies.write_text(
        "movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n2,Heat (1995),Action\n",
        encoding="utf-8",
    )
    (movies.parent / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n7,1,5,1\n7,2,3,2\n", encoding="utf-8"
    )

    async def run() -> None:
        app = MrrecApp(settings, preload_model=False)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            onboarding = app.screen
            assert isinstance(onboarding, OnboardingScreen)
            bundle = str(onboarding.query_one("#bundle-state", Static).render())
            assert "Model bundle missing" in bundle and str(settings.bundle_path) in bundle
            assert "mrrec bundle build" in str(onboarding.query_one("#bundle-how", Static).render())
            assert "No history yet" in str(onboarding.query_one("#data-state", Static).render())
            # Import from here, then the step is ticked.
            await pilot.press("i")
            await wait_for(pilot, lambda: isinstance(app.screen, ImportScreen))
            app.screen.query_one("#import-kind", Select).value = "movielens-csv"
            app.screen.query_one("#import-path", Input).value = str(movies.parent)
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: app.screen is onboarding, what="the import")
            await pilot.pause()
            assert "1 users imported" in str(onboarding.query_one("#data-state", Static).render())
            assert app.user == "7"
            # Continue into the chat; asking without a bundle says how to get one.
            await pilot.press("c")
            assert isinstance(app.screen, ChatScreen)
            await pilot.press(*"hello", "enter")
            await pilot.pause()
            assert app.errors == []  # a warning notification, not an error
            assert any("bundle" in n.message for n in app._notifications)
            assert app.return_code is None

    asyncio.run(run())


@pytest.mark.slow
def test_onboarding_builds_the_bundle_in_the_background(tmp_path: Path) -> None:
    """`b` runs the real `mrrec bundle build` (minutes; needs the workstation package) while the UI
    stays responsive, and the app then uses the new bundle."""
    if missing := missing_train_modules():
        unavailable(f"the workstation package is not installed (no {', '.join(missing)})")
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'[bundle]\npath = "{tmp_path / "bundle"}"\n')

    async def run() -> None:
        app = MrrecApp(load_settings(home), preload_model=False)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            onboarding = app.screen
            assert isinstance(onboarding, OnboardingScreen)
            await pilot.press("b")
            await wait_for(pilot, lambda: app.state == "building the bundle")
            await pilot.press("f1")  # the UI answers while the build runs
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.state == "ready", timeout=900, what="the build")
            assert app.errors == []
            assert app.bundle_error is None and app.bundle_label.startswith("SmolLM2")
            log = str(onboarding.query_one(Log).lines)
            assert "bundle written to" in log

    asyncio.run(run())
