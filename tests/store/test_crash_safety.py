"""SIGKILL during an import: the database stays valid and holds all of the import or none."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from mrrec_edge import MemoryStore
from tests.helpers import run_cli

ROWS = 120_000


def make_files(d: Path) -> tuple[Path, Path]:
    rng = random.Random(7)
    items = d / "items.csv"
    with items.open("w") as f:
        f.write("item_id,title,year,categories\n")
        for i in range(2000):
            f.write(f"i{i},Title number {i},{1950 + i % 70},Genre{i % 17}|Genre{i % 5}\n")
    inter = d / "inter.csv"
    with inter.open("w") as f:
        f.write("user_id,item_id,rating,timestamp\n")
        for n in range(ROWS):
            f.write(f"u{n % 3000},i{rng.randrange(2000)},{rng.randint(1, 5)},{1_000_000 + n}\n")
    return items, inter


def start_import(home: Path, path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MRREC_HOME": str(home)}
    cmd = [
        sys.executable,
        "-m",
        "mrrec_edge",
        "import",
        "interactions-csv",
        str(path),
        "--no-embed",
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_mid_import_leaves_all_or_nothing(tmp_path: Path) -> None:
    items, inter = make_files(tmp_path)
    # How long a whole import takes here, to aim the kills inside it.
    timing_home = tmp_path / "timing"
    run_cli(timing_home, "import", "items-csv", str(items), "--no-embed")
    started = time.monotonic()
    proc = start_import(timing_home, inter)
    assert proc.wait(timeout=600) == 0
    full = time.monotonic() - started
    complete = MemoryStore(timing_home).stats()["interactions"]
    assert complete > 0

    home = tmp_path / "home"
    run_cli(home, "import", "items-csv", str(items), "--no-embed")
    outcomes = []
    for fraction in (0.15, 0.35, 0.55, 0.75, 0.9):
        proc = start_import(home, inter)
        time.sleep(full * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        store = MemoryStore(home)
        assert store.check_integrity() == []
        stats = store.stats()
        assert stats["interactions"] in (0, complete), stats
        assert stats["memory"]["behavior"] == stats["interactions"]
        outcomes.append(stats["interactions"])
        del store
        if stats["interactions"]:
            break  # it committed before the kill; later kills would find nothing new to write
    assert outcomes[0] == 0, "the first kill should land before the commit"
    # Whatever was killed, finishing the import afterwards gives the complete result.
    run_cli(home, "import", "interactions-csv", str(inter), "--no-embed")
    store = MemoryStore(home)
    assert store.stats()["interactions"] == complete
    assert store.check_integrity() == []
