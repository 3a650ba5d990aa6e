"""Homes for the TUI tests: MovieLens 100K imported and embedded, user 1's memory built, and
the real small bundle configured (or none, for onboarding)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from mrrec_edge.config import load_settings
from mrrec_edge.conversations import Answer, Turn, memory_dict
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


def saved_conversation(home: Path) -> int:
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
