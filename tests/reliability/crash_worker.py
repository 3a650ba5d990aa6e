"""A child process for the crash harness (tests/reliability/crash.py): it writes in a loop and
prints one ``ack`` line, flushed, after each write returns. A line on stdout is therefore a
promise that the write is durable; the harness SIGKILLs this process and checks the promises.

    python -m tests.reliability.crash_worker feedback|conversation|index|collab|training HOME SEED

(``training`` takes a training run folder for HOME.)
"""

from __future__ import annotations

import sys
from pathlib import Path

from mrrec_edge.assistant import Profile, Token
from mrrec_edge.conversations import Answer, AnswerRecorder
from mrrec_edge.workspace import Workspace
from tests.reliability.plans import (
    FLUSH_EVERY,
    conversation_plan,
    embed_pending_deterministic,
    feedback_plan,
)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def feedback(home: Path, seed: int) -> None:
    with Workspace.open(home) as ws:
        ws.store.open_indexes()  # loaded, so each write also updates them in memory
        say("ready")
        for n, (user, item, action) in enumerate(feedback_plan(home, seed)):
            out = ws.feedback(user, item, action, timestamp=2_000_000_000 + n)
            # The embedder's part, without loading it: vectors for the refreshed memory.
            embed_pending_deterministic(ws.store)
            say(f"ack {n} {out['record_id']}")
            if n % FLUSH_EVERY == FLUSH_EVERY - 1:
                ws.store.flush()  # saving the dense indexes is a kill point too


def conversation(home: Path, seed: int) -> None:
    with Workspace.open(home) as ws:
        say("ready")
        for n, (query, pieces) in enumerate(conversation_plan(seed)):
            conv = ws.store.create_conversation("chat", query[:30])
            q = ws.store.add_message(conv, "user", query)
            say(f"msg {n} {conv} {q}")
            m = ws.store.add_message(conv, "assistant", "", "{}")
            answer = Answer(query)
            recorder = AnswerRecorder(ws.store, m, answer)
            say(f"msg {n} {conv} {m}")
            for j, piece in enumerate(pieces):
                answer.apply(Token(piece, 0))
                recorder.save()
                say(f"tok {n} {m} {j + 1}")
            answer.apply(Profile(query, [], False, None))
            recorder.save()
            say(f"end {n} {m}")


def index(home: Path, seed: int) -> None:
    """Rebuilds and saves the dense indexes over and over (``mrrec index rebuild``'s work)."""
    with Workspace.open(home) as ws:
        say("ready")
        for n in range(10_000):
            ws.store.rebuild_indexes()
            ws.store.flush()
            say(f"ack {n}")


def collab(home: Path, seed: int) -> None:
    """Rebuilds and saves the collaborative index over and over (``mrrec index rebuild``'s
    other half)."""
    with Workspace.open(home) as ws:
        say("ready")
        for n in range(10_000):
            ws.store.rebuild_collab()
            say(f"ack {n}")


def training(out: Path, seed: int) -> None:
    """Resumes the tiny training run in ``out`` and trains it to the end, a checkpoint after
    every step (tests/reliability/checkpoints.py); ``ready`` comes before the resume, so kills
    land in it too."""
    import matplotlib.pyplot  # noqa: F401  (imported now: the kill window is the run's writes)

    from tests.reliability.checkpoints import open_run, train

    run = open_run(out)
    say("ready")
    train(run, say)


if __name__ == "__main__":
    kind, home, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    workers = {
        "feedback": feedback,
        "conversation": conversation,
        "index": index,
        "collab": collab,
        "training": training,
    }
    workers[kind](home, seed)
