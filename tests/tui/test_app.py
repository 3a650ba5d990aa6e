"""App-wide behavior: every key is in the help screen and the command palette, and an error
anywhere is a notification, never a traceback that ends the session."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widgets import Static

from mrrec_edge.tui.app import KEYED, MrrecApp
from mrrec_edge.tui.screens.chat import ChatScreen
from mrrec_edge.tui.screens.dialogs import HelpScreen
from mrrec_edge.tui.screens.memory import MemoryScreen
from tests.tui.conftest import SIZE, make_app, wait_for


def _descriptions(cls: type) -> set[str]:
    return {b.description for b in cls.__dict__.get("BINDINGS", []) if b.description}


def test_help_and_palette_list_every_key(home: Path) -> None:
    async def run() -> None:
        app = make_app(home)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f1")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
            shown = " ".join(str(s.render()) for s in app.screen.query(Static))
            for _title, cls in KEYED:
                for description in _descriptions(MrrecApp if cls.__name__ == "App" else cls):
                    if not description.startswith("Rate ") or description == "Rate 1-5":
                        assert description in shown, description
            await pilot.press("escape")
            for key, screen_cls in (("f2", ChatScreen), ("f3", MemoryScreen)):
                await pilot.press(key)
                assert isinstance(app.screen, screen_cls)
                commands = {c.title for c in app.get_system_commands(app.screen)}
                expected = _descriptions(MrrecApp) | _descriptions(screen_cls)
                assert expected - {"Quit"} <= commands
                assert {"Import history", "New user", "Quit"} <= commands

    asyncio.run(run())


def test_an_unexpected_error_ends_the_app_with_one_line_not_a_traceback(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(self: MemoryScreen) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(MemoryScreen, "action_reload", boom)

    async def run() -> None:
        app = make_app(home)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f3")
            app.simulate_key("r")  # not pilot.press: it would wait on the screen that failed
            for _ in range(200):
                if app.return_code is not None:
                    break
                await asyncio.sleep(0.05)
        assert app.return_code == 1
        assert len(app.errors) == 1 and "boom" in app.errors[0]
        assert str(app.workspace.settings.log_path) in app.errors[0]
        printed = capfd.readouterr().err
        assert "mrrec-tui stopped on an unexpected error" in printed
        assert "Traceback" not in printed
        # The traceback goes to the log (a file under the home when run as mrrec-tui).
        assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)

    asyncio.run(run())
