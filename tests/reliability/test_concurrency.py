"""Two processes on one $MRREC_HOME: feedback written while a memory build runs lands, nothing
is corrupted, and a writer that cannot get the lock says so in one clear line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mrrec_edge._core import MemoryStore
from mrrec_edge.workspace import Workspace, parse_feedback
from tests.helpers import run_cli
from tests.reliability.crash import Bases, index_problems, integrity_problems
from tests.reliability.plans import write_interactions

HOLD_WRITE_LOCK = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
con.execute("ROLLBACK")
"""
#: Users whose memory the background build writes (long enough to overlap 30 feedbacks).
USERS = 600
#: Writes feedback and saves the dense indexes in a loop, rebuilding them every fifth time, as
#: `mrrec` commands and the TUI do when they close (the soak found these saves colliding).
SAVER = """
import sys
from mrrec_edge._core import MemoryStore
home, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with MemoryStore(home) as store:
    for k in range(n):
        store.add_feedback(f"u{k % 3}", f"i{k * 7 % 600}", source="feedback:like",
                           timestamp=2_000_000_000 + k * 10 + int(name))
        store.flush()
        if k % 5 == 4:
            store.rebuild_indexes()
"""


def test_feedback_while_a_memory_build_runs(bases: Bases, tmp_path: Path) -> None:
    """`mrrec memory build --all` over 600 users in one process; feedback from this process
    (and one `mrrec feedback`) while it writes."""
    home = tmp_path / "home"
    shutil.copytree(bases.items_only, home)
    ratings = write_interactions(tmp_path / "ratings.csv", USERS * 25, users=USERS)
    run_cli(home, "import", "interactions-csv", str(ratings), "--no-embed")
    build = subprocess.Popen(
        [sys.executable, "-m", "mrrec_edge", "memory", "build", "--all", "--no-embed", "--json"],
        env={**os.environ, "MRREC_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ws = Workspace.open(home)
    while not ws.store.stats()["memory"]["pattern"]:  # wait until the build is writing
        assert build.poll() is None, build.communicate()
        time.sleep(0.05)
    given: list[tuple[str, str, str]] = []
    overlapped = 0
    for n in range(30):
        user, item, action = f"u{n * 71 % USERS}", f"i{n * 13 % 600}", ("like", "rate=3")[n % 2]
        ws.feedback(user, item, action, timestamp=2_000_000_000 + n)
        given.append((user, item, action))
        overlapped += build.poll() is None
    run_cli(home, "feedback", "--user", "u7", "i9", "dislike")
    given.append(("u7", "i9", "dislike"))
    overlapped += build.poll() is None
    ws.close()
    _, stderr = build.communicate(timeout=600)
    assert build.returncode == 0, stderr
    assert overlapped >= 5, f"only {overlapped} writes ran beside the build"
    assert integrity_problems(home) == []
    with MemoryStore(home) as store:
        for user, item, action in given:
            sources = {(r["item"], r["source"]) for r in store.user_history(user)}
            assert (item, f"feedback:{parse_feedback(action)[2]}") in sources
        assert all(store.list_memory(user=u, tiers=["profile"], limit=1) for u, _, _ in given)
    assert index_problems(home, sorted({u for u, _, _ in given})[:10]) == []


def test_a_writer_that_cannot_get_the_lock_says_so(bases: Bases, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(bases.built, home)
    with MemoryStore(home) as store:
        before = store.stats()
    # Another process mid-write, for longer than the store's 5 s busy timeout.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITE_LOCK, str(home / "memory.sqlite3")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    try:
        out = run_cli(home, "feedback", "--user", "u1", "i2", "like", check=False)
    finally:
        holder.communicate("release\n", timeout=60)
    assert out.returncode == 1
    assert "locked by another process" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    with MemoryStore(home) as store:
        assert store.stats() == before, "nothing of the refused write was kept"
    # Once the lock is free the same command succeeds.
    run_cli(home, "feedback", "--user", "u1", "i2", "like")


def test_processes_saving_the_indexes_at_once(bases: Bases, tmp_path: Path) -> None:
    """Three processes write and save the dense indexes at the same moments: every save
    succeeds (they once shared one temporary file, and a save failed with "No such file or
    directory"), no temporary file is left, and what loads next matches SQLite (a sidecar
    renamed in by one save beside another's index file once vouched for it)."""
    home = tmp_path / "home"
    shutil.copytree(bases.built, home)
    savers = [
        subprocess.Popen(
            [sys.executable, "-c", SAVER, str(home), str(n), "25"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for saver in savers:
        _, stderr = saver.communicate(timeout=600)
        assert saver.returncode == 0, stderr
    assert not [p.name for p in home.iterdir() if p.name.endswith(".tmp")]
    assert integrity_problems(home) == []
    assert index_problems(home, ["u0", "u1", "u2"]) == []
