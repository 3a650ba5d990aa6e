"""Helpers shared by the tests: where the real data is, and running the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
ML100K = SHARED_DATA / "movielens-100k"
KEYWORDS_CSV = SHARED_DATA / "movielens-25m-keywords" / "movies_w_keywords.csv"


def run_cli(
    home: Path | str,
    *args: str,
    check: bool = True,
    timeout: float = 300,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs ``mrrec`` in a subprocess with ``MRREC_HOME=home`` (relative: from ``cwd``): real
    exit codes, real output."""
    env = {**os.environ, "MRREC_HOME": str(home), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "mrrec_edge", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"mrrec {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def cli_json(home: Path, *args: str) -> Any:
    return json.loads(run_cli(home, *args, "--json").stdout)


def assert_one_error_line(proc: subprocess.CompletedProcess[str], *phrases: str) -> str:
    """The command failed with exit 1 and one ``error:`` line holding every phrase, and no
    traceback (logging's own included); returns the line. Other stderr lines are progress
    notes (bars are silent without a terminal)."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Logging error" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for phrase in phrases:
        assert phrase in errors[0], errors[0]
    return errors[0]
