"""The concurrency soak's short version: the real TUI (real bundle, under Pilot) chats, likes and
saves conversations while `mrrec import`, `mrrec feedback`, `mrrec memory build` and reads run
from the CLI on the same home. See tests/reliability/soak.py for what counts as a failure;
`scripts/reliability.py soak` runs it for minutes (docs/RELIABILITY.md, section 5)."""

from __future__ import annotations

from pathlib import Path

from mrrec_edge._core import MemoryStore
from tests.reliability import soak
from tests.reliability.sql import query, run_sql

#: Long enough for a few answers and every kind of CLI command beside them.
SECONDS = 25


def test_the_tui_and_the_cli_share_a_home(home: Path) -> None:
    report = soak.run(home, SECONDS, seed=1)
    assert report.failures == [], report.as_dict()
    ops = report.operations
    kinds = [
        "tui answer",
        "tui feedback",
        "cli import interactions",
        "cli import items",
        "cli feedback",
        "cli memory build",
        "cli memory search",
    ]
    assert all(ops[kind] >= 1 for kind in kinds), report.as_dict()
    # The answers ran while the CLI wrote, and the app's own store was checked against SQLite
    # (at least once: with the CLI stopped at the end, that check cannot be inconclusive).
    assert report.overlapped_answers >= 1, report.as_dict()
    assert report.index_checks >= 1, report.as_dict()


def test_the_app_side_check_notices_a_stale_index(home: Path) -> None:
    """The soak's check of the app's store can fail: a pattern added behind the store's back,
    the generation put back so that the store does not reload, is missed by both searches.
    (A deleted entry never shows: hits are read back from SQLite.)"""
    with MemoryStore(home) as store:
        assert soak.app_index_problems(store, home, ["ann"]) == []
        (generation,) = query(home, soak.GENERATION_SQL)[0]
        copy = (
            "INSERT INTO memory (tier, user_id, categories, text, source_ids, embedding, scope, "
            "created_at, updated_at) SELECT tier, user_id, categories, text || ' again', "
            "source_ids, embedding, scope, created_at, updated_at FROM memory WHERE tier = 1 "
            "AND embedding IS NOT NULL AND user_id = (SELECT id FROM users WHERE ext_id = 'ann') "
            "LIMIT 1"
        )
        _, [[added]], _ = run_sql(
            home,
            copy,
            "SELECT max(id) FROM memory",
            ("UPDATE meta SET value = ? WHERE key = 'memory_generation'", [generation]),
        )
        problems = soak.app_index_problems(store, home, ["ann"])
    assert problems is not None, "nothing else writes: the check is conclusive"
    assert any("dense" in p and f"missing {{{added}}}" in p for p in problems), problems
    assert any("lexical" in p and f"pattern {added} found: False" in p for p in problems)
