"""The scenario data builder and the prepared workspace, on the real MovieLens 100K and 25M keyword
files: up to K targets per user after one cutoff, no leakage, disjoint seeded splits, queries that
never give the title away, counts that match the files, global memory from train users only, and
clear errors on bad input."""

from __future__ import annotations

import bisect
import random
import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from mrrec_edge import InputError
from mrrec_edge.files import folder_records
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
    find_targets,
    load_catalog,
    read_interactions,
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


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower().replace("'s", "")))


def _sources() -> dict[str, list[tuple[str, str, float, int]]]:
    """Each user's source rows, in chronological order (ties in file order)."""
    out: dict[str, list[tuple[str, str, float, int]]] = defaultdict(list)
    for row in _rows(ML100K / "ml-100k.inter"):
        out[row[0]].append(row)
    return {u: sorted(rows, key=lambda r: r[3]) for u, rows in out.items()}


def _reference_targets(
    rows: list[tuple[str, str, float, int]], k: int, min_history: int = 10, liked: float = 4
) -> tuple[list[int], int] | None:
    """The K-target rule, stated without the walk: an interaction can be a target when it is
    liked, has ``min_history`` strictly earlier interactions and its item is not among them; of
    several such rows of one item (only possible at one timestamp) the latest counts; the last
    ``k`` of those are the targets, and the history is everything before the earliest."""
    stamps = [r[3] for r in rows]

    def before(i: int) -> int:
        return bisect.bisect_left(stamps, stamps[i])

    eligible = [
        i
        for i, r in enumerate(rows)
        if before(i) >= min_history
        and r[2] >= liked
        and r[1] not in {x[1] for x in rows[: before(i)]}
    ]
    latest = {rows[i][1]: i for i in eligible}  # later rows win
    chosen = sorted(latest.values())[-k:]
    return (chosen, before(chosen[0])) if chosen else None


@pytest.fixture(scope="module")
def full_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scenarios") / "full"
    build_scenarios(ML100K, out, keywords_csv=KEYWORDS_CSV, seed=0)
    return out


@pytest.fixture(scope="module")
def examples(full_dataset: Path) -> list[dict[str, Any]]:
    return load_examples(full_dataset)


def _by_user(examples: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in examples:
        out[e["user"]].append(e)
    return dict(out)


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


def _ixs(rows: list[tuple[str, str, float, int]]) -> list[Interaction]:
    return [Interaction(n, u, i, r, t, "") for n, (u, i, r, t) in enumerate(rows, start=1)]


def test_targets_are_the_last_k_liked_new_items_after_one_cutoff() -> None:
    rows = [_ix(n, ts=n, rating=3) for n in range(1, 11)]  # ten at distinct times: no targets
    rows += [
        _ix(11, ts=11, rating=5),  # 10 earlier: the earliest possible target
        _ix(12, ts=12, rating=2),  # not liked
        _ix(13, ts=13, rating=4, item="i3"),  # a re-watch
        _ix(14, ts=14, rating=4),
        _ix(15, ts=20, rating=5),
        _ix(16, ts=20, rating=4, item="i15"),  # the same item at the same time: one target
        _ix(17, ts=30, rating=4),
    ]
    # (Indices into rows; the history size is the count strictly before the earliest target.)
    assert find_targets(rows, k=1, min_history=10, liked=4) == ([16], 16)
    # Of the two rows of i15 at ts=20, the later in file order is the target, as in find_target.
    assert find_targets(rows, k=2, min_history=10, liked=4) == ([15, 16], 14)
    assert find_targets(rows, k=3, min_history=10, liked=4) == ([13, 15, 16], 13)
    # Fewer eligible than K: all of them, the cutoff at the earliest (ts=11, 10 before it).
    assert find_targets(rows, k=9, min_history=10, liked=4) == ([10, 13, 15, 16], 10)
    # A longer minimum history stops the walk earlier.
    assert find_targets(rows, k=9, min_history=13, liked=4) == ([13, 15, 16], 13)
    assert find_targets(rows, k=9, min_history=17, liked=4) is None
    with pytest.raises(InputError, match="at least 1"):
        find_targets(rows, k=0, min_history=10, liked=4)


def test_find_targets_agrees_with_the_rule_and_k1_with_find_target() -> None:
    """Random users (ties, re-watches, duplicate rows): the walk equals the rule stated without
    it, K=1 is find_target, more targets only add earlier ones, and moving the cutoff to the
    earliest target keeps every target's item out of the history."""
    rng = random.Random(7)
    for case in range(400):
        n = rng.randint(0, 40)
        stamps = sorted(rng.randint(0, 25) for _ in range(n))
        rows = [("u", f"i{rng.randint(0, 15)}", float(rng.randint(1, 5)), t) for t in stamps]
        ordered = _ixs(rows)
        min_history = rng.randint(1, 12)
        previous: set[int] = set()
        for k in range(1, 8):
            found = find_targets(ordered, k=k, min_history=min_history, liked=4)
            assert found == _reference_targets(rows, k, min_history), (case, k)
            single = find_target(ordered, min_history=min_history, liked=4)
            if found is None:
                assert single is None
                continue
            if k == 1:
                assert (found[0][0], found[1]) == single
            indices, size = found
            assert previous <= set(indices) and len(indices) <= k
            previous = set(indices)
            assert indices == sorted(indices) and size >= min_history
            assert size == sum(r[3] < rows[indices[0]][3] for r in rows)
            items = [rows[i][1] for i in indices]
            assert len(set(items)) == len(items)
            assert not set(items) & {r[1] for r in rows[:size]}


def test_files_hold_nothing_at_or_after_a_cutoff_but_the_targets(
    full_dataset: Path, examples: list[dict[str, Any]]
) -> None:
    source = _sources()
    history = defaultdict(list)
    for row in _rows(full_dataset / "history" / "ml-100k.inter"):
        history[row[0]].append(row)
    mine = _by_user(examples)
    assert set(history) == set(mine)
    dropped = 0
    for user, rows in mine.items():
        cutoff, size = rows[0]["cutoff_timestamp"], rows[0]["history_size"]
        assert {(e["cutoff_timestamp"], e["history_size"]) for e in rows} == {(cutoff, size)}
        assert [e["target_index"] for e in rows] == list(range(len(rows)))
        assert [e["id"] for e in rows] == [
            f"ml100k-scenarios-v2:{user}:{n}" for n in range(len(rows))
        ]
        kept = history[user]
        assert len(kept) == size >= 10
        # No history interaction at or after the cutoff: the history is every source row
        # strictly before it, and nothing else.
        assert all(ts < cutoff for _, _, _, ts in kept)
        assert sorted(kept) == sorted(r for r in source[user] if r[3] < cutoff)
        seen = {i for _, i, _, _ in kept}
        stamps = []
        for e in rows:
            item = e["target_item"].removeprefix("ml100k:")
            assert item not in seen  # no target item in the history
            rated = [r for r in source[user] if r[1] == item and r[3] >= cutoff]
            assert len(rated) == 1 and rated[0][2] >= 4
            stamps.append(rated[0][3])
        assert stamps == sorted(stamps) and len({e["target_item"] for e in rows}) == len(rows)
        # The targets are the rule's (less any whose query could not be made), and the cutoff
        # is the earliest of the rule's targets.
        expected = _reference_targets(source[user], 5)
        assert expected is not None and expected[1] == size
        wanted = [source[user][i] for i in expected[0]]
        assert source[user][expected[0][0]][3] == cutoff
        got = [f"ml100k:{r[1]}" for r in wanted]
        assert [e["target_item"] for e in rows] == [
            t for t in got if t in {e["target_item"] for e in rows}
        ]
        dropped += len(wanted) - len(rows)
    for user in set(source) - set(mine):  # skipped: no target, or no query for any
        expected = _reference_targets(source[user], 5)
        dropped += len(expected[0]) if expected else 0
    manifest = load_manifest(full_dataset)
    assert dropped == manifest["counts"]["targets_dropped_no_facet"]


def test_one_target_per_user_is_the_single_target_rule(tmp_path: Path) -> None:
    """K=1 holds out what find_target (the rule of ml100k-scenarios-v1) holds out."""
    build_scenarios(ML100K, tmp_path / "k1", keywords_csv=KEYWORDS_CSV, targets_per_user=1)
    examples = load_examples(tmp_path / "k1")
    assert len({e["user"] for e in examples}) == len(examples)
    assert all(e["target_index"] == 0 and e["id"].endswith(":0") for e in examples)
    got = {e["user"]: e for e in examples}
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    for r in read_interactions(find_source(ML100K)):
        by_user[r.user].append(r)
    skipped = 0
    for user, rows in by_user.items():
        ordered = sorted(rows, key=lambda r: r.timestamp)
        found = find_target(ordered, min_history=10, liked=4)
        if user not in got:
            skipped += 1
            continue
        assert found is not None
        index, size = found
        e = got[user]
        assert e["target_item"] == f"ml100k:{ordered[index].item}"
        assert (e["cutoff_timestamp"], e["history_size"]) == (ordered[index].timestamp, size)
    counts = load_manifest(tmp_path / "k1")["counts"]
    assert skipped == sum(counts["users_skipped"].values())
    assert counts["interactions"]["history"] == sum(e["history_size"] for e in examples)


# -- splits ---------------------------------------------------------------------------------


def test_splits_are_disjoint_shares_stable_for_a_seed_and_differ_for_another(
    examples: list[dict[str, Any]], tmp_path: Path
) -> None:
    by_split = {s: {e["user"] for e in examples if e["split"] == s} for s in SPLITS}
    users = _by_user(examples)
    assert sum(len(v) for v in by_split.values()) == len(users)
    assert not (by_split["train"] & by_split["val"] or by_split["train"] & by_split["test"])
    assert not by_split["val"] & by_split["test"]
    assert all(len({e["split"] for e in rows}) == 1 for rows in users.values())
    n = len(users)
    assert len(by_split["val"]) == len(by_split["test"]) == round(n * DEFAULT_FRACTIONS[1])
    # Several queries per user: enough held-out queries to tell evaluation rows apart.
    assert all(1 <= len(rows) <= 5 for rows in users.values())
    assert sum(e["split"] == "val" for e in examples) >= 600
    assert sum(e["split"] == "test" for e in examples) >= 600

    def build(name: str, seed: int) -> dict[str, Any]:
        return build_scenarios(
            ML100K, tmp_path / name, keywords_csv=KEYWORDS_CSV, seed=seed, users_limit=150
        )

    a, b, c = build("a", 0), build("b", 0), build("c", 1)
    assert a["files"] == b["files"]  # byte-identical, datasheet and history included
    for name in ("examples.jsonl", "datasheet.md", "history/ml-100k.inter"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
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
        # Nor the whole title as a run of words (a substring test would trip on the title "M").
        title, query = _tokens(e["target_title"]), _tokens(e["query"])
        assert not any(
            query[i : i + len(title)] == title for i in range(len(query) - len(title) + 1)
        )
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
    assert manifest["dataset_version"] == "ml100k-scenarios-v2" and manifest["seed"] == 0
    assert manifest["parameters"]["targets_per_user"] == 5
    users = _by_user(examples)
    sizes = {u: rows[0]["history_size"] for u, rows in users.items()}
    assert counts["examples"] == len(examples) and counts["users"] == len(users)
    assert counts["users_by_examples"] == {
        str(n): sum(len(rows) == n for rows in users.values())
        for n in sorted({len(rows) for rows in users.values()})
    }
    for split in SPLITS:
        mine = [e for e in examples if e["split"] == split]
        held = {e["user"] for e in mine}
        assert counts["splits"][split]["examples"] == len(mine)
        assert counts["splits"][split]["users"] == len(held)
        assert counts["splits"][split]["history_interactions"] == sum(sizes[u] for u in held)
    history = _rows(full_dataset / "history" / "ml-100k.inter")
    inter = counts["interactions"]
    assert inter["history"] == len(history) == sum(sizes.values())
    assert inter["targets"] == len(examples)
    skipped_rows = inter["source"] - inter["considered_users"]
    assert skipped_rows == 0  # no users_limit
    kept_rows = sum(r[0] in users for r in _rows(ML100K / "ml-100k.inter"))
    assert inter["dropped_at_or_after_cutoff"] == kept_rows - len(history) - len(examples)
    assert counts["users_in_source"] == 943
    assert counts["users"] + sum(counts["users_skipped"].values()) == 943
    users_file = (full_dataset / "history" / "ml-100k.user").read_text().splitlines()[1:]
    assert {ln.split("\t")[0] for ln in users_file} == set(users)
    assert manifest["files"] == {
        k: v for k, v in folder_records(full_dataset).items() if k != "manifest.json"
    }
    sheet = (full_dataset / "datasheet.md").read_text()
    assert f"{counts['users']} with examples" in sheet
    assert f"Examples (queries): {counts['examples']}, up to 5 per user" in sheet
    for split in SPLITS:
        v = counts["splits"][split]
        assert (
            f"| {split} | {v['users']} | {v['examples']} | {v['history_interactions']} |" in sheet
        )
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
    assert sorted(ws.store.users(), key=int) == list(dict.fromkeys(e["user"] for e in small))
    assert len(small) > len(ws.store.users())  # several examples per user
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
    assert prepared_marker(prepared_home)["stats"]["users"] == len({e["user"] for e in small})


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
        assert report["choices"] == len(train)  # one per example: several per user
        assert report["users"] == len({e["user"] for e in train}) < len(train)
        assert report["split"] == "train"
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
    # A user's other targets were chosen too: never among the alternatives "not chosen".
    chosen_of: dict[str, set[int]] = defaultdict(set)
    for c in choices:
        chosen_of[c.user].add(c.chosen.item_id)
    assert max(len(v) for v in chosen_of.values()) > 1
    assert all(not chosen_of[c.user] & {a.item_id for a in c.alternatives} for c in choices)
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


def test_targets_per_user_below_one_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    for k in (0, -3):
        with pytest.raises(InputError, match=f"targets per user must be at least 1, not {k}"):
            build_scenarios(ML100K, tmp_path / "out", targets_per_user=k, users_limit=5)
    assert list(tmp_path.iterdir()) == []


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


def test_cli_targets_per_user(tmp_path: Path) -> None:
    out = tmp_path / "k2"
    args = ("data", "build", "--source", str(ML100K.parent), "--users-limit", "30")
    result = cli_json(tmp_path / "home", *args, "--out", str(out), "--targets-per-user", "2")
    manifest = load_manifest(out, verify=True)
    assert manifest["parameters"]["targets_per_user"] == 2
    assert result["counts"] == manifest["counts"]
    per_user = _by_user(load_examples(out))
    assert len(per_user) == manifest["counts"]["users"] <= 30
    assert {len(rows) for rows in per_user.values()} <= {1, 2}
    assert manifest["counts"]["examples"] > len(per_user)
    for k in ("0", "-1", "two"):
        bad = run_cli(
            tmp_path / "home", *args, "--out", str(tmp_path / "bad"), "--targets-per-user", k,
            check=False,
        )  # fmt: skip
        assert bad.returncode == 2 and "--targets-per-user" in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()
    assert (
        "0 is not in the range x>=1"
        in run_cli(tmp_path / "home", *args, "--targets-per-user", "0", check=False).stderr
    )


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
