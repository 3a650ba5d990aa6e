"""The scenario data builder and the prepared workspace, on the real MovieLens 100K and 25M keyword
files: no leakage, disjoint seeded splits, queries that never give the title away, counts that
match the files, global memory from train users only, and clear errors on bad input."""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from mrrec_edge import InputError
from mrrec_edge.bundle import folder_records
from mrrec_edge.memory.global_memory import (
    MAX_WORDS,
    GlobalEntry,
    GlobalStatsSummarizer,
    build_global_memory,
    collect_choices,
    dedupe_entries,
)
from mrrec_edge.scenarios import (
    SPLITS,
    build_scenarios,
    load_examples,
    load_manifest,
    prepare_workspace,
    prepared_marker,
)
from mrrec_edge.scenarios.build import (
    DEFAULT_FRACTIONS,
    Interaction,
    find_source,
    find_target,
    load_catalog,
)
from mrrec_edge.scenarios.queries import STOPWORDS, USE_CASES, fits
from mrrec_edge.workspace import Workspace
from tests.helpers import KEYWORDS_CSV, ML100K, cli_json, run_cli


def _rows(path: Path) -> list[tuple[str, str, float, int]]:
    """(user, item, rating, timestamp) of a recbole .inter file, read independently."""
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    out = []
    for line in lines:
        u, i, r, t = line.split("\t")
        out.append((u, i, float(r), int(float(t))))
    return out


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower().replace("'s", "")))


@pytest.fixture(scope="module")
def full_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scenarios") / "full"
    build_scenarios(ML100K, out, keywords_csv=KEYWORDS_CSV, seed=0)
    return out


@pytest.fixture(scope="module")
def examples(full_dataset: Path) -> list[dict[str, Any]]:
    return load_examples(full_dataset)


# -- targets and leakage --------------------------------------------------------------------


def _ix(line: int, ts: int, rating: float, item: str | None = None) -> Interaction:
    return Interaction(line, "u", item or f"i{line}", rating, ts, "")


def test_target_is_the_last_liked_with_enough_strictly_earlier_history() -> None:
    rows = [_ix(n, ts=n, rating=3) for n in range(1, 11)]  # ten at distinct times
    rows += [_ix(11, ts=20, rating=5), _ix(12, ts=20, rating=4), _ix(13, ts=30, rating=2)]
    # Both rows at ts=20 have 10 earlier rows; the later in file order wins; ts=30 is rated 2.
    assert find_target(rows, min_history=10, liked=4) == (11, 10)
    # Ties do not count as history: with 11 needed, nothing qualifies.
    assert find_target(rows, min_history=11, liked=4) is None
    # A re-watch of an earlier item is not a target; the previous liked one is.
    rewatch = [*rows[:11], _ix(12, ts=20, rating=4, item="i1")]
    assert find_target(rewatch, min_history=10, liked=4) == (10, 10)


def test_files_hold_nothing_at_or_after_a_target(
    full_dataset: Path, examples: list[dict[str, Any]]
) -> None:
    source = defaultdict(list)
    for row in _rows(ML100K / "ml-100k.inter"):
        source[row[0]].append(row)
    history = defaultdict(list)
    for row in _rows(full_dataset / "history" / "ml-100k.inter"):
        history[row[0]].append(row)
    assert set(history) == {e["user"] for e in examples}
    for e in examples:
        user, cutoff, target = e["user"], e["cutoff_timestamp"], e["target_item"]
        item = target.removeprefix("ml100k:")
        kept = history[user]
        assert len(kept) == e["history_size"] >= 10
        assert all(ts < cutoff for _, _, _, ts in kept)
        assert item not in {i for _, i, _, _ in kept}
        # The history is every source row strictly before the cutoff, and nothing else.
        assert sorted(kept) == sorted(r for r in source[user] if r[3] < cutoff)
        rated = [r for r in source[user] if r[1] == item and r[3] == cutoff]
        assert rated and rated[0][2] >= 4
        # No later liked interaction could have been the target.
        for r in source[user]:
            if r[3] > cutoff and r[2] >= 4:
                assert sum(x[3] < r[3] for x in source[user]) >= 10  # it had history...
                assert r[1] in {x[1] for x in source[user] if x[3] < r[3]}  # ...so a re-watch


# -- splits ---------------------------------------------------------------------------------


def test_splits_are_disjoint_shares_stable_for_a_seed_and_differ_for_another(
    examples: list[dict[str, Any]], tmp_path: Path
) -> None:
    by_split = {s: {e["user"] for e in examples if e["split"] == s} for s in SPLITS}
    assert (
        sum(len(v) for v in by_split.values())
        == len(examples)
        == len({e["user"] for e in examples})
    )
    assert not (by_split["train"] & by_split["val"] or by_split["train"] & by_split["test"])
    assert not by_split["val"] & by_split["test"]
    n = len(examples)
    assert len(by_split["val"]) == len(by_split["test"]) == round(n * DEFAULT_FRACTIONS[1])

    def build(name: str, seed: int) -> dict[str, Any]:
        return build_scenarios(
            ML100K, tmp_path / name, keywords_csv=KEYWORDS_CSV, seed=seed, users_limit=150
        )

    a, b, c = build("a", 0), build("b", 0), build("c", 1)
    assert a["files"] == b["files"]  # byte-identical, datasheet and history included
    ea, ec = load_examples(tmp_path / "a"), load_examples(tmp_path / "c")
    assert [e["user"] for e in ea] == [e["user"] for e in ec]
    assert [e["split"] for e in ea] != [e["split"] for e in ec]
    assert [e["query"] for e in ea] != [e["query"] for e in ec]
    # The seed changes the draw, never the held-out target.
    assert [e["target_item"] for e in ea] == [e["target_item"] for e in ec]
    assert c["files"]["history/ml-100k.inter"] == a["files"]["history/ml-100k.inter"]


# -- queries --------------------------------------------------------------------------------


def test_queries_name_a_coarse_facet_of_the_target_and_never_its_title(
    examples: list[dict[str, Any]],
) -> None:
    catalog = load_catalog(find_source(ML100K), KEYWORDS_CSV)
    fitting: dict[tuple[str, str], int] = {}
    kinds = set()
    for e in examples:
        item = catalog[e["target_item"].removeprefix("ml100k:")]
        assert item.title == e["target_title"]
        shared = _words(e["query"]) & _words(item.title)
        assert shared <= STOPWORDS, (e["query"], item.title)
        assert e["target_title"].lower() not in e["query"].lower()
        assert fits(e["facet"], item)
        facet = (e["facet"]["kind"], e["facet"]["value"])
        if facet not in fitting:
            fitting[facet] = sum(fits(e["facet"], other) for other in catalog.values())
        assert e["fitting_items"] == fitting[facet] >= 20
        assert e["use_case"] in USE_CASES and e["use_case"] in e["query"]
        kinds.add(e["facet"]["kind"])
    assert kinds == {"genre", "keyword"}


# -- manifest and datasheet -----------------------------------------------------------------


def test_manifest_counts_and_checksums_match_the_files(
    full_dataset: Path, examples: list[dict[str, Any]]
) -> None:
    manifest = load_manifest(full_dataset, verify=True)
    counts = manifest["counts"]
    assert manifest["dataset_version"] == "ml100k-scenarios-v1" and manifest["seed"] == 0
    assert counts["examples"] == len(examples)
    for split in SPLITS:
        mine = [e for e in examples if e["split"] == split]
        assert counts["splits"][split]["users"] == len(mine)
        assert counts["splits"][split]["history_interactions"] == sum(
            e["history_size"] for e in mine
        )
    history = _rows(full_dataset / "history" / "ml-100k.inter")
    assert (
        counts["interactions"]["history"]
        == len(history)
        == sum(e["history_size"] for e in examples)
    )
    inter = counts["interactions"]
    skipped_rows = inter["source"] - inter["considered_users"]
    assert skipped_rows == 0  # no users_limit
    assert counts["users_in_source"] == 943
    assert counts["examples"] + sum(counts["users_skipped"].values()) == 943
    users_file = (full_dataset / "history" / "ml-100k.user").read_text().splitlines()[1:]
    assert {ln.split("\t")[0] for ln in users_file} == {e["user"] for e in examples}
    assert manifest["files"] == {
        k: v for k, v in folder_records(full_dataset).items() if k != "manifest.json"
    }
    sheet = (full_dataset / "datasheet.md").read_text()
    assert f"{counts['examples']} with an example" in sheet
    for split in SPLITS:
        section = sheet.split(f"### {split}\n")[1].split("###")[0]
        rows = [ln for ln in section.splitlines() if ln.startswith("| ") and "query" not in ln]
        assert len(rows) == 5
        assert all(any(e["query"] in r for e in examples if e["split"] == split) for r in rows)


# -- the prepared workspace -----------------------------------------------------------------


def test_prepared_workspace_holds_only_history_and_is_cached(
    prepared_home: Path, small_dataset: Path, embedder_dir: Path
) -> None:
    small = load_examples(small_dataset)
    ws = Workspace.open(prepared_home)
    assert sorted(ws.store.users(), key=int) == [e["user"] for e in small]
    for e in small:
        records = ws.store.user_history(e["user"])
        assert len(records) == e["history_size"]
        assert all(r["timestamp"] < e["cutoff_timestamp"] for r in records)
        assert e["target_item"] not in {r["item"] for r in records}
        assert ws.store.list_memory(user=e["user"], tiers=["profile"], limit=1)
    stats = ws.store.stats()
    assert stats["pending_embeddings"] == {"items": 0, "memory": 0}
    assert stats["memory"]["global"] > 0
    # Enriched, as `mrrec import movielens-100k --keywords` does.
    assert "pixar animation" in ws.store.item("ml100k:1").keywords
    marker = prepared_home / ".mrrec-prepared.json"
    before = marker.stat().st_mtime_ns
    assert prepare_workspace(small_dataset, prepared_home, bundle=embedder_dir.parent)
    assert marker.stat().st_mtime_ns == before  # complete: nothing redone
    assert prepared_marker(prepared_home)["stats"]["users"] == len(small)


def test_prepare_refuses_a_folder_that_is_not_a_prepared_workspace(
    small_dataset: Path, embedder_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a prepared workspace"):
        prepare_workspace(small_dataset, tmp_path / "home", bundle=embedder_dir.parent)
    assert (tmp_path / "home" / "notes.txt").read_text() == "mine"


# -- global memory --------------------------------------------------------------------------


def _global(ws: Workspace) -> list[tuple[str, tuple[str, ...]]]:
    entries = ws.store.list_memory(tiers=["global"], limit=1000)
    assert all(e.user is None and e.source_ids == [] for e in entries)
    return sorted((e.text, tuple(e.categories)) for e in entries)


def test_global_memory_comes_from_train_users_only(
    prepared_home: Path, small_dataset: Path, tmp_path: Path
) -> None:
    shutil.copytree(prepared_home, tmp_path / "home")
    small = load_examples(small_dataset)
    train = [e for e in small if e["split"] == "train"]
    held_out = [e for e in small if e["split"] != "train"]
    assert held_out
    with Workspace.open(tmp_path / "home") as ws:
        built = _global(ws)
        assert built and len({t for t, _ in built}) == len(built)
        assert {c.user for c in collect_choices(ws, small)} == {e["user"] for e in train}
        # Val and test examples, even with other targets, change nothing: they are never read.
        tampered = [
            {**e, "target_item": "ml100k:50", "query": "Recommend a western for date night."}
            for e in held_out
        ]
        report = build_global_memory(ws, train + tampered)
        assert report["users"] == len(train) and report["split"] == "train"
        assert _global(ws) == built
        titles = {e["target_title"].lower() for e in small}
        assert not any(t in text.lower() for text, _ in built for t in titles if len(t) > 4)


def test_summarizer_writes_short_deduplicated_entries_per_category(
    prepared_home: Path, examples: list[dict[str, Any]]
) -> None:
    # The full dataset's first 300 train choices, grounded in the prepared catalog.
    train = [e for e in examples if e["split"] == "train"][:300]
    with Workspace.open(prepared_home) as ws:
        choices = collect_choices(ws, train)
    assert len(choices) == 300 and all(len(c.alternatives) == 20 for c in choices)
    assert all(c.chosen.item_id not in {a.item_id for a in c.alternatives} for c in choices)
    entries = GlobalStatsSummarizer().summarize(choices)
    assert entries == GlobalStatsSummarizer().summarize(choices)  # deterministic
    categories = {e.category for e in entries}
    assert None in categories and len(categories) >= 4
    for e in entries:
        assert len(e.text.split()) <= MAX_WORDS
        lead = f"For {e.category} requests," if e.category else "Across all requests,"
        assert e.text.startswith(lead)
    assert dedupe_entries(entries) == entries  # nothing to merge in what it writes


def test_dedupe_merges_exact_and_near_duplicates_per_category() -> None:
    a = "For Comedy requests, people chose films from the 1990s over ones from the 1950s."
    near = "For Comedy requests, people chose films from the 1990s over ones from the 1960s."
    other = "For Comedy requests, people chose films tagged satire over ones tagged slapstick."
    entries = [
        GlobalEntry("Comedy", "era", a, 10),
        GlobalEntry("Comedy", "era", a, 5),
        GlobalEntry("Comedy", "era", near, 30),
        GlobalEntry("Drama", "era", a.replace("Comedy", "Drama"), 7),
        GlobalEntry("Comedy", "themes", other, 3),
    ]
    out = dedupe_entries(entries)
    assert [(e.category, e.text, e.support) for e in out] == [
        ("Comedy", near, 45),  # the best-supported statement absorbs its twins
        ("Drama", a.replace("Comedy", "Drama"), 7),
        ("Comedy", other, 3),
    ]
    assert entries[0].support == 10  # the input is left as it was


# -- bad input ------------------------------------------------------------------------------


@pytest.fixture()
def ml100k_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "ml100k"
    shutil.copytree(ML100K, folder)
    for f in folder.iterdir():
        f.chmod(0o644)
    return folder


def _corrupt(path: Path, line: int, old: str, new: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_text("".join(lines), encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "line", "old", "new", "message"),
    [
        (
            "ml-100k.inter",
            5,
            "\t2\t",
            "\tlots\t",
            r'ml-100k\.inter:5: rating: "lots" is not a number',
        ),
        (
            "ml-100k.inter",
            3,
            "\t891717742",
            "",
            r"ml-100k\.inter:3: expected 4 tab-separated fields, found 3",
        ),
        (
            "ml-100k.inter",
            6,
            "166\t346",
            "166\t99999",
            r'ml-100k\.inter:6: item_id: "99999" is not in',
        ),
        ("ml-100k.item", 4, "\t1995\t", "\t19x5\t", r"ml-100k\.item:4: release_year"),
    ],
)
def test_bad_rows_name_file_line_and_field_and_write_nothing(
    ml100k_copy: Path, tmp_path: Path, file: str, line: int, old: str, new: str, message: str
) -> None:
    _corrupt(ml100k_copy / file, line, old, new)
    with pytest.raises(InputError, match=message) as info:
        build_scenarios(ml100k_copy, tmp_path / "out", users_limit=5)
    assert info.value.path == str(ml100k_copy / file) and info.value.line == line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml100k"]  # no output, no temp folder


def test_missing_files_are_named(ml100k_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        build_scenarios(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(InputError, match=r"movies\.csv: missing"):
        build_scenarios(ml100k_copy, tmp_path / "out", keywords_csv=tmp_path / "movies.csv")
    (ml100k_copy / "ml-100k.user").unlink()
    with pytest.raises(InputError, match=r"ml-100k\.user: missing"):
        build_scenarios(ml100k_copy, tmp_path / "out")
    with pytest.raises(InputError, match="not a scenario dataset"):
        load_manifest(tmp_path)


# -- CLI ------------------------------------------------------------------------------------


def test_cli_builds_a_dataset_and_rebuilds_global_memory(
    prepared_home: Path, small_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cli-ds"
    result = cli_json(
        tmp_path / "home",
        "data",
        "build",
        "--source",
        str(ML100K.parent),
        "--out",
        str(out),
        "--users-limit",
        "30",
    )
    assert result["counts"]["users_considered"] == 30 and result["out"] == str(out)
    assert load_manifest(out, verify=True)["sources"]["keywords"]  # found beside the source
    shutil.copytree(prepared_home, tmp_path / "prepared")
    report = cli_json(tmp_path / "prepared", "data", "global-memory", str(small_dataset))
    assert report["split"] == "train" and report["entries"] > 0
    with Workspace.open(tmp_path / "prepared") as ws:
        assert len(_global(ws)) == report["entries"]
    bad = run_cli(
        tmp_path / "home", "data", "build", "--source", str(tmp_path / "nowhere"), check=False
    )
    assert bad.returncode == 1 and "no such folder" in bad.stderr and "Traceback" not in bad.stderr


# -- the full build (slow) ------------------------------------------------------------------


@pytest.mark.slow
def test_full_prepared_workspace(
    full_dataset: Path, examples: list[dict[str, Any]], embedder_dir: Path, tmp_path: Path
) -> None:
    home = prepare_workspace(full_dataset, tmp_path / "home", bundle=embedder_dir.parent)
    with Workspace.open(home) as ws:
        for e in examples:
            records = ws.store.user_history(e["user"])
            assert len(records) == e["history_size"]
            assert all(r["timestamp"] < e["cutoff_timestamp"] for r in records)
        entries = ws.store.list_memory(tiers=["global"], limit=1000)
        assert len({c for e in entries for c in e.categories}) >= 10
        assert len({e.text for e in entries}) == len(entries)
