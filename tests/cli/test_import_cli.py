"""The front door: `mrrec import` of real MovieLens 100K, then `mrrec stats --json`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.helpers import KEYWORDS_CSV, ML100K, cli_json, run_cli


def test_import_movielens_100k_reports_real_counts(tmp_path: Path) -> None:
    report = cli_json(
        tmp_path, "import", "movielens-100k", str(ML100K), "--keywords", str(KEYWORDS_CSV)
    )
    assert report["records_added"] == 100_000
    assert report["keywords_matched"] >= 1390  # exact title+year matches; fuzzy adds more
    stats = cli_json(tmp_path, "stats")
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100_000)
    assert stats["memory"]["behavior"] == 100_000
    # No embedder bundle here: the import still lands, with the texts waiting for vectors.
    assert stats["pending_embeddings"]["items"] == 1682

    again = cli_json(tmp_path, "import", "movielens-100k", str(ML100K))
    assert (again["records_added"], again["records_skipped"]) == (0, 100_000)
    assert cli_json(tmp_path, "stats") == stats


def test_import_embeds_and_memory_search_finds_the_users_films(
    tmp_path: Path, embedder_dir: Path
) -> None:
    shutil.copytree(embedder_dir, tmp_path / "bundle" / "embedder")
    report = cli_json(tmp_path, "import", "movielens-100k", str(ML100K))
    assert report["embedded"] == 1682 and report["pending_embeddings"] == 0
    hits = cli_json(tmp_path, "memory", "search", "--user", "1", "star wars space opera", "-k", "3")
    assert len(hits) == 3
    assert all(h["user"] == "1" and h["tier"] == "behavior" for h in hits)
    assert any("Star Wars" in h["text"] or "Empire Strikes Back" in h["text"] for h in hits)
    # The dense index was saved: a fresh process loads it instead of rebuilding.
    rebuilt = cli_json(tmp_path, "index", "rebuild")
    assert rebuilt["catalog_vectors"] == 1682 and rebuilt["embedded"] == 0


def test_missing_path_and_unknown_user_fail_cleanly(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "import", "items-csv", str(tmp_path / "nope.csv"), check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    run_cli(tmp_path, "import", "movielens-100k", str(ML100K), "--no-embed")
    proc = run_cli(tmp_path, "memory", "search", "--user", "no-such-user", "x", check=False)
    assert proc.returncode == 1
    assert "unknown user" in proc.stderr and "Traceback" not in proc.stderr
    json.loads(run_cli(tmp_path, "stats", "--json").stdout)
