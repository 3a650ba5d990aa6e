"""SIGKILL the real TUI while its worker streams and saves an answer (issue 7's kills inside
the TUI's workers): whatever moment the kill lands, the database passes its checks, and the
saved answer is a prefix of the uninterrupted one, turn by turn, marked interrupted when cut.
Greedy decoding makes the uninterrupted answer the same in every run. The kills land when the
saved answer has reached a share of the reference's length (read from a separate process),
so they fall mid-stream however loaded the machine is."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mrrec_edge._core import MemoryStore
from mrrec_edge.conversations import Answer
from tests.helpers import ROOT
from tests.reliability.crash import integrity_problems
from tests.reliability.sql import query

#: Kill once the saved answer holds this share of the reference answer's characters.
KILL_AT = (0.3, 0.8)


def _child(home: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.tui.kill_child", str(home)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _saved_answers(home: Path) -> list[Answer]:
    with MemoryStore(home) as store:
        return [
            Answer.from_payload(json.loads(m["payload"]), content=m["content"])
            for c in store.list_conversations("1")
            for m in store.conversation_messages(c["id"])
            if m["role"] == "assistant"
        ]


def _turns(answer: Answer) -> list[str]:
    return [t.text for t in answer.turns]


def _saved_chars(home: Path) -> int:
    rows = query(home, "SELECT payload FROM messages WHERE role = 'assistant'")
    payloads = [json.loads(p) for (p,) in rows if p]
    return sum(len(t["text"]) for p in payloads for t in p.get("turns") or [])


def _kill_when_saved(proc: subprocess.Popen[str], home: Path, chars: int) -> None:
    deadline = time.monotonic() + 600
    while _saved_chars(home) < chars:
        assert proc.poll() is None, "the app ended before the kill"
        assert time.monotonic() < deadline, "the answer never reached the kill point"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)


def test_killing_the_tui_mid_answer_keeps_a_clean_prefix(tui_home: Path, tmp_path: Path) -> None:
    reference_home = Path(shutil.copytree(tui_home, tmp_path / "reference"))
    proc = _child(reference_home)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "asked", proc.communicate()[1]
    assert proc.stdout.readline().split() == ["done", "done"], proc.communicate()[1]
    proc.communicate(timeout=120)
    (reference,) = _saved_answers(reference_home)
    full = _turns(reference)
    assert full and full[-1]

    total = sum(map(len, full))
    # Whole characters: the check below must use the very threshold the kill waited for.
    points = [int(share * total) for share in KILL_AT]
    outcomes: list[dict[str, Any]] = []
    for k, point in enumerate(points):
        home = Path(shutil.copytree(tui_home, tmp_path / f"kill{k}"))
        proc = _child(home)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "asked", proc.communicate()[1]
        _kill_when_saved(proc, home, point)
        assert integrity_problems(home) == [], k
        saved = _saved_answers(home)
        assert len(saved) <= 1
        turns = _turns(saved[0]) if saved else []
        # Every saved turn but the last is complete; the last is a prefix of the reference's.
        assert turns[:-1] == full[: len(turns) - 1], k
        if turns:
            assert full[len(turns) - 1].startswith(turns[-1]), (k, turns[-1], full)
        cut = turns != full
        if saved and cut:
            assert saved[0].status == "interrupted", (k, saved[0].status)
        outcomes.append({"turns": len(turns), "chars": sum(map(len, turns)), "cut": cut})
    # Each kill landed at or just after its point: a part of the answer saved, not all of it.
    for point, o in zip(points, outcomes, strict=True):
        assert point <= o["chars"] < total, (point, total, outcomes)
