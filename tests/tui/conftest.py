"""Homes for the TUI tests: MovieLens 100K imported and embedded, user 1's memory built, and
the real small bundle configured (or none, for onboarding)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from mrrec_edge.config import load_settings
from mrrec_edge.tui.app import MrrecApp
from mrrec_edge.workspace import Workspace

#: One terminal size for every test, so layouts (and snapshots) never depend on the machine.
SIZE = (120, 36)


@pytest.fixture(scope="session")
def tui_home(
    tmp_path_factory: pytest.TempPathFactory, embedded_home: Path, llm_bundle_dir: Path
) -> Path:
    """ML100K with user 1's memory built and the real int8 bundle; copy it before changing it
    (see :func:`home`)."""
    home = tmp_path_factory.mktemp("tui-home")
    shutil.copytree(embedded_home, home, dirs_exist_ok=True)
    shutil.rmtree(home / "bundle")
    (home / "config.toml").write_text(f'[bundle]\npath = "{llm_bundle_dir}"\n', encoding="utf-8")
    with Workspace.open(home) as ws:
        ws.ensure_user_memory("1")
    return home


@pytest.fixture
def home(tui_home: Path, tmp_path: Path) -> Path:
    """A private copy of :func:`tui_home` that a test may change."""
    return Path(shutil.copytree(tui_home, tmp_path / "home"))


def make_app(home: Path, **kwargs: object) -> MrrecApp:
    kwargs.setdefault("user", "1")
    kwargs.setdefault("preload_model", False)
    return MrrecApp(load_settings(home), **kwargs)  # type: ignore[arg-type]


async def wait_for(
    pilot: Pilot[None], ready: Callable[[], object], *, timeout: float = 60, what: str = ""
) -> None:
    """Lets the app run until ``ready()`` is true (workers are threads: pilot.pause alone does
    not wait for them)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not ready():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or ready}")
        await pilot.pause(0.05)
