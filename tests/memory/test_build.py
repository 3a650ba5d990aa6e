"""Memory construction with the statistical summarizer over real MovieLens 100K users, feedback
refreshing only what it touches, and the CLI around both."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from mrrec_edge import InputError, MemoryStore, NotFoundError
from mrrec_edge.memory import MemoryBuilder, StatsSummarizer
from mrrec_edge.workspace import Workspace
from tests.helpers import ML100K, cli_json, run_cli


@pytest.fixture(scope="module")
def imported_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("ml100k")
    MemoryStore(home).import_file("movielens-100k", str(ML100K))
    return home


@pytest.fixture()
def store(imported_home: Path, tmp_path: Path) -> MemoryStore:
    shutil.copytree(imported_home, tmp_path / "home")
    return MemoryStore(tmp_path / "home")


def test_patterns_cite_only_the_users_own_records_and_say_nothing_else(store: MemoryStore) -> None:
    out = MemoryBuilder(store, StatsSummarizer()).build_user("1")
    assert out["patterns"] >= 12 and out["profile_chunks"] >= 4
    history = {r["record_id"]: r for r in store.user_history("1")}
    patterns = store.list_memory(user="1", tiers=["pattern"], limit=100)
    assert {e.categories[0] for e in patterns} >= {"Drama", "Comedy", "Action"}
    for e in patterns:
        assert e.text.startswith(e.categories[0])
        for rid in e.source_ids:
            record = history[rid]  # KeyError if it cited anyone else's record
            assert e.categories[0] in record["categories"]
            assert record["title"] in e.text
        if " they liked: " in e.text:
            assert all(history[rid]["rating"] >= 4 for rid in e.source_ids)
        if " they disliked: " in e.text:
            assert all(history[rid]["rating"] <= 2 for rid in e.source_ids)
    overview = next(e for e in patterns if e.categories == ["Drama"] and "in the history" in e.text)
    drama = [r for r in history.values() if "Drama" in r["categories"]]
    assert f"Drama: {len(drama)} in the history" in overview.text
    mean = sum(r["rating"] for r in drama) / len(drama)
    assert f"average {mean:.1f}/5" in overview.text
    # The profile's category claims cite pattern entries.
    pattern_ids = {e.id for e in patterns}
    favourite = next(
        e for e in store.list_memory(user="1", tiers=["profile"]) if "Favourite" in e.text
    )
    assert favourite.source_ids and set(favourite.source_ids) <= pattern_ids


def test_build_is_deterministic_and_resumable(store: MemoryStore) -> None:
    builder = MemoryBuilder(store, StatsSummarizer())
    builder.build_user("2")
    first = [e.text for e in store.list_memory(user="2", tiers=["pattern", "profile"], limit=200)]
    builder.build_user("2")
    again = [e.text for e in store.list_memory(user="2", tiers=["pattern", "profile"], limit=200)]
    assert sorted(first) == sorted(again)
    totals = builder.build_all(["2", "3"], resume=True)
    assert (totals["skipped"], totals["users"]) == (1, 1)


def test_feedback_refreshes_only_the_items_categories(store: MemoryStore, tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "home")
    ws.memory_builder().build_user("1")
    before = {e.id: e for e in store.list_memory(user="1", tiers=["pattern"], limit=100)}
    # Star Wars (ml100k:50): Action, Adventure, Romance, Sci-Fi, War. User 1 rated it 5.
    out = ws.feedback("1", "50", "rate=1", timestamp=900_000_000)
    assert out["record_id"] is not None and set(out["categories"]) == {
        "Action",
        "Adventure",
        "Romance",
        "Sci-Fi",
        "War",
    }
    after = {e.id: e for e in store.list_memory(user="1", tiers=["pattern"], limit=100)}
    untouched = [e for e in before.values() if e.categories[0] not in out["categories"]]
    assert untouched and all(e.id in after for e in untouched)
    changed = [e for e in after.values() if e.categories[0] == "Sci-Fi" and "disliked" in e.text]
    assert changed and "Star Wars (1977)" in changed[0].text
    assert store.get_memory(out["memory_id"]).text.startswith("Rated 1/5: Star Wars (1977)")
    # The same feedback twice is one record.
    assert ws.feedback("1", "50", "rate=1", timestamp=900_000_000)["record_id"] is None
    with pytest.raises(InputError, match="0 to 5"):
        ws.feedback("1", "50", "rate=9")
    with pytest.raises(InputError, match="unknown feedback"):
        ws.feedback("1", "50", "meh")
    with pytest.raises(NotFoundError, match="unknown item"):
        ws.feedback("1", "no-such-item", "like")


def test_memory_build_and_feedback_cli(imported_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(imported_home, home)
    out = cli_json(home, "memory", "build", "--user", "1", "--user", "2")
    assert out["users"] == 2 and out["patterns"] > 20
    assert cli_json(home, "stats")["memory"]["profile"] >= 8
    fb = cli_json(home, "feedback", "--user", "1", "ml100k:1", "like")
    assert fb["record_id"] and fb["patterns"] >= 1
    hits = cli_json(
        home, "memory", "search", "--user", "1", "liked toy story", "--mode", "lexical", "-k", "3"
    )
    assert any(
        re.match(r"Watched: Toy Story \(1995\).*Review: Liked it\.", h["text"]) for h in hits
    )
    proc = run_cli(home, "feedback", "--user", "1", "ml100k:1", "rate=7", check=False)
    assert proc.returncode == 1 and "0 to 5" in proc.stderr
