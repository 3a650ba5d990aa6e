"""Generated data and seeded write plans shared by the crash harness and its child process: the
harness regenerates a child's plan from the seed to know which write was in flight at a kill."""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mrrec_edge._core import MemoryStore

GENRES = [f"Genre{g}" for g in range(12)]
ITEMS = 600
USERS = 100
RECORDS_PER_USER = 30
#: The feedback child saves the dense indexes after this many writes.
FLUSH_EVERY = 5
DIMENSIONS = 384


def write_items(path: Path, n: int = ITEMS) -> Path:
    with path.open("w", encoding="utf-8") as f:
        f.write("item_id,title,year,categories\n")
        for i in range(n):
            genres = "|".join(dict.fromkeys([GENRES[i % 12], GENRES[(i * 7) % 12]]))
            f.write(f"i{i},Title number {i},{1950 + i % 70},{genres}\n")
    return path


def write_interactions(path: Path, rows: int, *, users: int = USERS, seed: int = 7) -> Path:
    """``rows`` ratings of the generated items, timestamps increasing (no two rows alike)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        f.write("user_id,item_id,rating,timestamp\n")
        for n in range(rows):
            f.write(f"u{n % users},i{rng.randrange(ITEMS)},{rng.randint(1, 5)},{1_000_000 + n}\n")
    return path


def vector_for(text: str) -> np.ndarray:
    """A fixed unit vector per text: a stand-in for the embedder that costs no model load."""
    v = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(DIMENSIONS)
    return (v / np.linalg.norm(v)).astype(np.float32)


def embed_pending_deterministic(store: MemoryStore) -> int:
    """What ``Workspace.embed_pending`` does, with :func:`vector_for` as the embedder."""
    done = 0
    while batch := store.pending_embeddings(512):
        for target in ("item", "memory"):
            rows = [(i, text) for t, i, text in batch if t == target]
            if rows:
                vectors = np.stack([vector_for(text) for _, text in rows])
                store.set_embeddings(target, [i for i, _ in rows], vectors)
        done += len(batch)
    return done


def feedback_plan(home: Path, seed: int, n: int = 100_000) -> Iterator[tuple[str, str, str]]:
    """(user, item, action) of each feedback write, in order."""
    del home  # the plan depends on the generated data only
    rng = random.Random(seed)
    for _ in range(n):
        action = rng.choice(["like", "dislike", "seen", f"rate={rng.randint(0, 5)}"])
        yield f"u{rng.randrange(USERS)}", f"i{rng.randrange(ITEMS)}", action


def conversation_plan(seed: int, n: int = 100_000) -> Iterator[tuple[str, list[str]]]:
    """(question, streamed pieces of the answer) of each exchange, in order."""
    rng = random.Random(seed)
    for q in range(n):
        words = [f"w{rng.randrange(1000)} " for _ in range(rng.randint(5, 40))]
        yield f"question {q} from seed {seed}", ["<think>", *words, "</think>"]
