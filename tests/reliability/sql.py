"""Plain SQL on a home's database from a separate process.

Python's sqlite3 is a second copy of SQLite. In a process that also has a MemoryStore open on
the same file, closing a sqlite3 connection drops the process's POSIX locks and can delete the
WAL under the store ("disk I/O error"), so the tests never open one beside a store.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

_CHILD = """
import json, sqlite3, sys
db, statements = json.loads(sys.stdin.read())
con = sqlite3.connect(db, isolation_level=None)
out = [[list(r) for r in con.execute(sql, params)] for sql, params in statements]
con.close()
print(json.dumps(out))
"""


def run_sql(home: Path, *statements: str | tuple[str, list[Any]]) -> list[list[list[Any]]]:
    """Runs each statement (autocommit) and returns the rows of each."""
    pairs = [(s, []) if isinstance(s, str) else s for s in statements]
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps([str(home / "memory.sqlite3"), pairs]),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(proc.stdout)


def query(home: Path, sql: str, params: list[Any] | None = None) -> list[list[Any]]:
    return run_sql(home, (sql, params or []))[0]
