"""A child for tests/tui/test_kill.py: the real app, headless, asks one question with the real
bundle and waits for the answer. It prints ``asked`` just before the question is sent and ``done``
when the answer is finished; the test SIGKILLs it in between.

    python -m tests.tui.kill_child HOME
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from mrrec_edge.tui.widgets.transcript import AssistantMessage
from tests.tui.conftest import SIZE, make_app, wait_for

QUERY = "funny movie"


async def ask(home: Path) -> None:
    app = make_app(home, preload_model=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state == "ready", timeout=300, what="the model")
        await pilot.click("#prompt")
        await pilot.press(*QUERY)
        # Said before the enter: pressing it waits for the app to settle, and a fast machine can
        # stream and save the whole answer in that wait, before the test starts watching.
        print("asked", flush=True)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.query(AssistantMessage), what="the answer")
        view = app.screen.query_one(AssistantMessage)
        await wait_for(
            pilot,
            lambda: view.answer.status != "streaming" and app.state == "ready",
            timeout=600,
            what="the end of the answer",
        )
        print("done", view.answer.status, flush=True)


if __name__ == "__main__":
    asyncio.run(ask(Path(sys.argv[1])))
