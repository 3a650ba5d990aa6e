"""The concurrency soak: one $MRREC_HOME used by the TUI and the CLI at the same time, for a
given duration.

In this process the real app runs headless under Textual's Pilot with the real bundle: it asks
questions in a loop, likes, dislikes, rates or marks seen a card or two of every answer (each a
feedback write and a save of the answer), and starts a new conversation every few answers. Beside
it, threads run real ``mrrec`` subprocesses in loops:

- ``mrrec import interactions-csv`` of fresh rows (new users now and then), and every fourth time
  ``mrrec import items-jsonl`` of new items;
- ``mrrec feedback`` on known users and items;
- ``mrrec memory build`` of one user (the TUI's user most often, so its memory changes under
  it) or ``--all``, alternating with reads (``mrrec stats``, ``mrrec memory search``).

While they run, a task in the app's process checks every few seconds that the app's own store,
open since the start, searches exactly the memory SQLite holds (dense: every vector of the user;
lexical: every pattern found by its own text, nothing deleted), i.e. that it noticed what the CLI
wrote. A check whose snapshot changed while it ran is inconclusive and counted apart.

What the user would see counts as an error: a ``mrrec`` exit code other than 0 or any line on its
stderr, an error the app reported (``MrrecApp.errors``: notifications and crashes), an answer
that did not end ``done``, feedback a card did not acknowledge. At the end, with everything
stopped: the app's store is checked once more, then every acknowledged write is looked for
(imports row by row, feedback, memory builds, each answer's saved payload equal to what the app
showed), nothing is left unembedded, the dense indexes as loaded and as rebuilt hold exactly
SQLite's vectors, and the database passes its integrity checks.

tests/reliability/test_soak.py runs it for half a minute; ``scripts/reliability.py soak`` for
minutes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrrec_edge._core import MemoryStore
from mrrec_edge.workspace import Workspace, parse_feedback
from tests.helpers import ROOT
from tests.reliability.crash import dense_mismatch, index_problems, integrity_problems
from tests.reliability.sql import run_sql

#: The user the app chats as; the catalog's other users (see tests/reliability/conftest.py).
TUI_USER = "ann"
BASE_USERS = ("ann", "bob", "cid")
BASE_ITEMS = 60
GENRES = ("Comedy", "Drama", "Horror", "Sci-Fi", "Romance", "Animation")
QUESTIONS = (
    "a funny movie for tonight",
    "something scary",
    "a warm romance",
    "science fiction with big ideas",
    "an animated film for the family",
    "a serious drama",
    "more like the last one",
    "something older",
)
#: Card keys and the feedback each writes.
CARD_KEYS = {"l": "like", "d": "dislike", "s": "seen", "1": "rate=1", "3": "rate=3", "5": "rate=5"}
#: Seconds between the app-side index checks.
CHECK_EVERY = 3.0

#: A user's memory ids that dense search must find (as in crash.index_problems), the user's
#: patterns (id, text) for the lexical check, and the generation that says whether it changed.
DENSE_IDS_SQL = (
    "SELECT m.id FROM memory m JOIN users u ON u.id = m.user_id "
    "LEFT JOIN items i ON i.id = m.item_id WHERE u.ext_id = ? AND "
    "(m.embedding IS NOT NULL OR (m.vector_from_item = 1 AND i.embedding IS NOT NULL))"
)
PATTERNS_SQL = (
    "SELECT m.id, m.text FROM memory m JOIN users u ON u.id = m.user_id "
    "WHERE u.ext_id = ? AND m.tier = 1"
)
GENERATION_SQL = "SELECT value FROM meta WHERE key = 'memory_generation'"


@dataclass
class SoakReport:
    seed: int
    seconds: float = 0.0
    operations: Counter[str] = field(default_factory=Counter)
    #: What the user would have seen go wrong (CLI exit codes and stderr, the app's errors).
    user_errors: list[str] = field(default_factory=list)
    #: Acknowledged writes that are not in the home at the end.
    lost_writes: list[str] = field(default_factory=list)
    #: Index checks (in the app's process during and after the run, from fresh processes at
    #: the end) that found an index disagreeing with SQLite.
    stale_index: list[str] = field(default_factory=list)
    #: Conclusive index checks in the app's process, and those a concurrent write made
    #: inconclusive (not counted as passed or failed).
    index_checks: int = 0
    index_checks_inconclusive: int = 0
    integrity: list[str] = field(default_factory=list)
    #: Answers given while at least one CLI command ran.
    overlapped_answers: int = 0
    #: Acknowledged writes looked for at the end, by kind.
    acknowledged: dict[str, int] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        return [*self.user_errors, *self.lost_writes, *self.stale_index, *self.integrity]

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "seconds": round(self.seconds, 1),
            "operations": dict(sorted(self.operations.items())),
            "operations_total": sum(self.operations.values()),
            "overlapped_answers": self.overlapped_answers,
            "acknowledged_writes": self.acknowledged,
            "index_checks": self.index_checks,
            "index_checks_inconclusive": self.index_checks_inconclusive,
            "user_errors": self.user_errors,
            "lost_writes": self.lost_writes,
            "stale_index": self.stale_index,
            "integrity": self.integrity,
        }


@dataclass
class Acks:
    """Writes that were acknowledged to the user (a command exited 0, a card said saved)."""

    #: (user, item, timestamp) of every imported row.
    imported_rows: list[tuple[str, str, int]] = field(default_factory=list)
    imported_items: list[str] = field(default_factory=list)
    #: (user, item, action, by) of every feedback.
    feedback: list[tuple[str, str, str, str]] = field(default_factory=list)
    built_users: set[str] = field(default_factory=set)
    #: (message id, payload) of each answer as the app showed it when the run ended.
    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    #: conversation id -> messages it had when the run ended.
    conversations: dict[int, int] = field(default_factory=dict)


class Shared:
    """State the loops share: who and what exists (for the next command to use), what was
    acknowledged, what went wrong, and how many CLI commands are running now."""

    def __init__(self, home: Path, seed: int, deadline: float) -> None:
        self.home = home
        self.seed = seed
        self.deadline = deadline
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.users = list(BASE_USERS)
        self.items = [f"g{i}" for i in range(BASE_ITEMS)]
        self.acks = Acks()
        self.report = SoakReport(seed)
        self.running = 0
        self.threads: list[threading.Thread] = []

    def count(self, kind: str) -> None:
        with self.lock:
            self.report.operations[kind] += 1

    def error(self, message: str) -> None:
        with self.lock:
            self.report.user_errors.append(message)

    def pick(self, rng: random.Random) -> tuple[str, str]:
        with self.lock:
            return rng.choice(self.users), rng.choice(self.items)

    def done(self) -> bool:
        return self.stop.is_set() or time.monotonic() >= self.deadline

    def wait_for_cli(self) -> None:
        for t in self.threads:
            t.join()


def _env(home: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "MRREC_HOME": str(home), "PYTHONPATH": path, "COLUMNS": "200"}


def _mrrec(shared: Shared, kind: str, *args: str) -> Any | None:
    """Runs ``mrrec ARGS --json``; returns its output, or None after recording what the user saw
    go wrong (an exit code other than 0, or anything at all on stderr)."""
    with shared.lock:
        shared.running += 1
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mrrec_edge", *args, "--json"],
            env=_env(shared.home),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        with shared.lock:
            shared.running -= 1
    shared.count(kind)
    stderr = [line for line in proc.stderr.splitlines() if line.strip()]
    if proc.returncode != 0 or stderr:
        first = stderr[0] if stderr else "(no output)"
        shared.error(f"mrrec {' '.join(args[:2])}: exit {proc.returncode}: {first}")
        return None
    return json.loads(proc.stdout)


# -- the CLI loops ---------------------------------------------------------------------------


def import_loop(shared: Shared, work: Path) -> None:
    """Imports a few fresh rows at a time (unique timestamps), with a new user every third
    time, and new items every fourth (the second time first)."""
    rng = random.Random(f"{shared.seed}-import")
    n = 0
    while not shared.done():
        n += 1
        if n % 4 == 2:
            items = [f"x{n}-{j}" for j in range(2)]
            path = work / f"items-{n}.jsonl"
            with path.open("w", encoding="utf-8") as f:
                for j, item in enumerate(items):
                    genres = f"{GENRES[(n + j) % 6]}|{GENRES[(n * 5 + j) % 6]}"
                    row = {"item_id": item, "title": f"New arrival {n}-{j}", "categories": genres}
                    f.write(json.dumps(row) + "\n")
            out = _mrrec(shared, "cli import items", "import", "items-jsonl", str(path))
            if out is not None:
                with shared.lock:
                    shared.acks.imported_items += items
                    shared.items += items
            continue
        new_user = f"s{n}" if n % 3 == 0 else None
        rows = []
        for j in range(rng.randint(5, 40)):
            user, item = shared.pick(rng)
            rows.append((new_user if new_user and j % 2 == 0 else user, item, rng.randint(1, 5)))
        path = work / f"rows-{n}.csv"
        # Fresh timestamps: no row is a duplicate the importer would skip.
        stamped = [(u, i, r, 1_900_000_000 + n * 1000 + j) for j, (u, i, r) in enumerate(rows)]
        with path.open("w", encoding="utf-8") as f:
            f.write("user_id,item_id,rating,timestamp\n")
            f.writelines(f"{u},{i},{r},{t}\n" for u, i, r, t in stamped)
        out = _mrrec(shared, "cli import interactions", "import", "interactions-csv", str(path))
        if out is None:
            continue
        if out["records_added"] != len(rows):
            shared.error(f"import {path.name}: {out['records_added']} of {len(rows)} rows added")
        with shared.lock:
            shared.acks.imported_rows += [(u, i, t) for u, i, _, t in stamped]
            if new_user and new_user not in shared.users:
                shared.users.append(new_user)


def feedback_loop(shared: Shared) -> None:
    rng = random.Random(f"{shared.seed}-feedback")
    while not shared.done():
        user, item = shared.pick(rng)
        action = rng.choice(["like", "dislike", "seen", f"rate={rng.randint(0, 5)}"])
        out = _mrrec(shared, "cli feedback", "feedback", "--user", user, item, action)
        if out is not None:
            with shared.lock:
                shared.acks.feedback.append((user, item, action, "cli"))


def memory_loop(shared: Shared) -> None:
    """Builds memory (the app's user half the time), and reads between builds."""
    rng = random.Random(f"{shared.seed}-memory")
    n = 0
    while not shared.done():
        n += 1
        if n % 2 == 0:
            if n % 4 == 0:
                _mrrec(shared, "cli stats", "stats")
            else:
                user = rng.choice(shared.users)
                _mrrec(shared, "cli memory search", "memory", "search", "films", "--user", user)
            continue
        if n % 7 == 1:
            with shared.lock:
                users = list(shared.users)
            out = _mrrec(shared, "cli memory build", "memory", "build", "--all")
        else:
            user = TUI_USER if rng.random() < 0.5 else shared.pick(rng)[0]
            users = [user]
            out = _mrrec(shared, "cli memory build", "memory", "build", "--user", user)
        if out is not None:
            with shared.lock:
                shared.acks.built_users.update(users)


def _guard(shared: Shared, name: str, fn: Callable[..., None], *args: Any) -> None:
    """A loop that fails in the harness itself is a finding too, never a silent stop."""
    try:
        fn(shared, *args)
    except Exception as exc:
        shared.error(f"{name} loop stopped: {type(exc).__name__}: {exc}")


# -- the app's side ---------------------------------------------------------------------------


def _snapshot(home: Path, users: list[str]) -> tuple[int, dict[str, set[int]], dict[str, dict]]:
    """(memory generation, dense ids per user, patterns per user) in one read transaction."""
    statements: list[Any] = ["BEGIN", GENERATION_SQL]
    for user in users:
        statements += [(DENSE_IDS_SQL, [user]), (PATTERNS_SQL, [user])]
    out = run_sql(home, *statements, "COMMIT")
    generation = out[1][0][0]
    dense = {u: {r[0] for r in out[2 + 2 * k]} for k, u in enumerate(users)}
    patterns = {u: {r[0]: r[1] for r in out[3 + 2 * k]} for k, u in enumerate(users)}
    return generation, dense, patterns


def app_index_problems(store: MemoryStore, home: Path, users: list[str]) -> list[str] | None:
    """What the app's long-lived store gets wrong against SQLite for ``users``: dense search
    must return exactly every vector of the user (one user's memory is scored exactly), lexical
    search of each pattern's own text must find it and nothing deleted. None when SQLite changed
    during the check (inconclusive)."""
    before, dense, patterns = _snapshot(home, users)
    problems = []
    for user in users:
        if problem := dense_mismatch(store, user, dense[user], "app's dense index"):
            problems.append(problem)
        for pid, text in patterns[user].items():
            found = store.search_memory(
                text=text, user=user, tiers=["pattern"], k=1000, mode="lexical"
            )
            ids = {h.entry.id for h in found}
            if pid not in ids or not ids <= patterns[user].keys():
                stale = ids - patterns[user].keys()
                problems.append(f"app's lexical index of {user}: pattern {pid} found: "
                                f"{pid in ids}, deleted ones returned: {stale}")  # fmt: skip
    after = run_sql(home, GENERATION_SQL)[0][0][0]
    return problems if before == after else None


async def _check_app(shared: Shared, store: MemoryStore, users: list[str]) -> None:
    problems = await asyncio.to_thread(app_index_problems, store, shared.home, users)
    with shared.lock:
        if problems is None:
            shared.report.index_checks_inconclusive += 1
        else:
            shared.report.index_checks += 1
            shared.report.stale_index += problems


async def _index_checker(shared: Shared, store: MemoryStore) -> None:
    rng = random.Random(f"{shared.seed}-checks")
    while not shared.done():
        await asyncio.sleep(CHECK_EVERY)
        with shared.lock:
            users = sorted({TUI_USER, rng.choice(shared.users)})
        await _check_app(shared, store, users)


async def tui_loop(shared: Shared) -> None:
    """The real app: ask, react to cards, new conversation every third answer; then, once the
    CLI loops are stopped, check its store against everything they wrote."""
    from textual.widgets import Input

    from mrrec_edge.tui.widgets.transcript import AssistantMessage
    from tests.tui.conftest import SIZE, make_app, wait_for

    rng = random.Random(f"{shared.seed}-tui")
    app = make_app(shared.home, user=TUI_USER, preload_model=True)
    views: list[Any] = []
    async with app.run_test(size=SIZE) as pilot:
        store = app.workspace.store
        await wait_for(pilot, lambda: app.state == "ready", timeout=600, what="the model")
        checker = asyncio.create_task(_index_checker(shared, store))
        n = 0
        while not shared.done():
            n += 1
            app.screen.query_one("#prompt", Input).focus()
            await pilot.pause()
            shown = len(app.screen.query(AssistantMessage))
            # What the user had rated before asking (the CLI's writes included): never
            # recommended, however stale a cache of the app's might be.
            seen = {r["item"] for r in store.user_history(TUI_USER)}
            await pilot.press(*rng.choice(QUESTIONS), "enter")
            await wait_for(pilot, lambda n=shown: len(app.screen.query(AssistantMessage)) > n)
            view = list(app.screen.query(AssistantMessage))[-1]
            views.append(view)
            overlapped = False
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 600
            while view.answer.status == "streaming" or app.state != "ready":
                assert loop.time() < deadline, "an answer took over 10 minutes"
                overlapped = overlapped or shared.running > 0
                await pilot.pause(0.05)
            shared.count("tui answer")
            shared.report.overlapped_answers += overlapped
            if view.answer.status != "done":
                shared.error(f"answer {n} ended {view.answer.status}: {view.answer.error}")
            if again := seen & {r["item"] for r in view.answer.recommendations}:
                with shared.lock:
                    shared.report.stale_index.append(f"answer {n} recommended seen items {again}")
            # React to one or two cards, as the keys do (the answer focused the first card).
            for card in view.cards[: rng.randint(1, 2)]:
                card.focus()
                await pilot.pause()
                key = rng.choice(sorted(CARD_KEYS))
                await pilot.press(key)
                await wait_for(pilot, lambda c=card: c.pending is None, what="the feedback")
                shared.count("tui feedback")
                if card.feedback != CARD_KEYS[key]:
                    shared.error(f"answer {n}: {CARD_KEYS[key]} on {card.item} not acknowledged")
                else:
                    with shared.lock:
                        shared.acks.feedback.append((TUI_USER, card.item, CARD_KEYS[key], "tui"))
            if n % 3 == 0:
                await pilot.press("ctrl+n")
                shared.count("tui new conversation")
        # The CLI loops stop at the same deadline; wait for them, then the app must see it all.
        await asyncio.to_thread(shared.wait_for_cli)
        checker.cancel()
        with shared.lock:
            users = list(shared.users)
        await _check_app(shared, store, users)
        for view in views:
            if view.message_id is not None:
                shared.acks.answers.append((view.message_id, view.answer.payload()))
    for message in app.errors:
        shared.error(f"the app showed: {message}")


# -- the final checks ---------------------------------------------------------------------


def lost_writes(home: Path, acks: Acks) -> list[str]:
    lost: list[str] = []
    with Workspace.open(home) as ws:
        store = ws.store
        users = set(store.users())
        history: dict[str, list[dict[str, Any]]] = {}

        def of(user: str) -> list[dict[str, Any]]:
            if user not in history:
                history[user] = store.user_history(user) if user in users else []
            return history[user]

        for user, item, stamp in acks.imported_rows:
            if not any(r["item"] == item and r["timestamp"] == stamp for r in of(user)):
                lost.append(f"imported row {user} {item} @{stamp}")
        catalog = {i.ext_id for i in store.search_items("New arrival", k=10_000)}
        lost += [f"imported item {i}" for i in acks.imported_items if i not in catalog]
        for user, item, action, by in acks.feedback:
            source = f"feedback:{parse_feedback(action)[2]}"
            if not any(r["item"] == item and r["source"] == source for r in of(user)):
                lost.append(f"{by} feedback {action} on {item} by {user}")
        for user in sorted(acks.built_users):
            if not store.list_memory(user=user, tiers=["profile"], limit=1):
                lost.append(f"memory build of {user}: no profile")
        for message_id, payload in acks.answers:
            saved = _message(store, TUI_USER, message_id)
            if saved is None:
                lost.append(f"answer {message_id}: no saved message")
            elif json.loads(saved["payload"]) != json.loads(json.dumps(payload)):
                lost.append(f"answer {message_id}: saved payload differs from the app's")
        pending = store.stats()["pending_embeddings"]
        if pending["items"] or pending["memory"]:
            lost.append(f"left unembedded: {pending}")
    return lost


def _message(store: MemoryStore, user: str, message_id: int) -> dict[str, Any] | None:
    for c in store.list_conversations(user, limit=100_000):
        for m in store.conversation_messages(c["id"]):
            if m["id"] == message_id:
                return m
    return None


def run(home: Path, seconds: float, seed: int) -> SoakReport:
    """Soaks ``home`` (a copy of the reliability suite's small home: see conftest.py) for
    ``seconds``; returns the figures and every failure."""
    work = home.parent / f"{home.name}-soak-files"
    work.mkdir(exist_ok=True)
    started = time.monotonic()
    shared = Shared(home, seed, started + seconds)
    shared.threads = [
        threading.Thread(target=_guard, args=(shared, "import", import_loop, work)),
        threading.Thread(target=_guard, args=(shared, "feedback", feedback_loop)),
        threading.Thread(target=_guard, args=(shared, "memory", memory_loop)),
    ]
    for t in shared.threads:
        t.start()
    try:
        asyncio.run(tui_loop(shared))
    except BaseException:
        shared.stop.set()
        shared.wait_for_cli()
        raise
    report = shared.report
    report.seconds = time.monotonic() - started
    acks = shared.acks
    report.acknowledged = {
        "imported rows": len(acks.imported_rows),
        "imported items": len(acks.imported_items),
        "feedback": len(acks.feedback),
        "users built": len(acks.built_users),
        "answers saved": len(acks.answers),
    }
    report.lost_writes = lost_writes(home, acks)
    with shared.lock:
        users = list(shared.users)
    report.stale_index += index_problems(home, users)
    report.integrity = integrity_problems(home)
    shutil.rmtree(work, ignore_errors=True)
    return report
