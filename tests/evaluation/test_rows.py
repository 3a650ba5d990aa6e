"""The baselines on the small prepared workspace, checked against independent computations from
the dataset's files: popularity (item-kNN: tests/store/test_collab.py), the memory the naive and static rows show, and the
harness's resume folder."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from mrrec_edge.evaluation import DEPTH, EvalPlan, Evaluation, Popularity, static_memory
from mrrec_edge.evaluation.rows import RECENT, ROWS
from mrrec_edge.scenarios import load_examples
from mrrec_edge.workspace import Workspace


@pytest.fixture(scope="module")
def ws(prepared_home: Path) -> Workspace:
    return Workspace.open(prepared_home)


def _histories(dataset: Path, ws: Workspace) -> dict[str, set[int]]:
    """Each user's consumed items (store ids), read from the dataset's history file."""
    lines = (dataset / "history" / "ml-100k.inter").read_text(encoding="utf-8").splitlines()[1:]
    out: dict[str, set[int]] = defaultdict(set)
    for line in lines:
        user, item = line.split("\t")[:2]
        out[user].add(ws.store.item(f"ml100k:{item}").item_id)
    return out


def _expected_ranking(scores: dict[int, float], consumed: set[int]) -> list[int]:
    kept = [i for i in scores if i not in consumed]
    return sorted(kept, key=lambda i: (-scores[i], i))[:DEPTH]


def test_popularity_counts_train_users_and_leaves_out_what_the_user_consumed(
    ws: Workspace, small_dataset: Path
) -> None:
    examples = load_examples(small_dataset)
    histories = _histories(small_dataset, ws)
    train = [e["user"] for e in examples if e["split"] == "train"]
    counts: dict[int, float] = defaultdict(float)
    for user in train:
        for item in histories[user]:
            counts[item] += 1
    model = Popularity(ws.store, train)
    for e in examples:
        ranking = model.rank(e["user"], DEPTH)
        assert ranking == _expected_ranking(counts, histories[e["user"]])
        assert len(ranking) == DEPTH


def test_naive_memory_is_the_ten_latest_interactions_newest_first(ws: Workspace) -> None:
    user = ws.store.users()[0]
    history = sorted(ws.store.user_history(user), key=lambda r: (r["timestamp"], r["record_id"]))
    shown = static_memory(ws.store, user, "recent")
    assert len(shown) == RECENT
    assert all(m.tier == "behavior" and m.user == user for m in shown)
    assert [m.source_ids[0] for m in shown] == [r["record_id"] for r in history[::-1][:RECENT]]


def test_static_memory_is_the_whole_profile_tier(ws: Workspace) -> None:
    user = ws.store.users()[0]
    shown = static_memory(ws.store, user, "profile")
    profile = ws.store.list_memory(user=user, tiers=["profile"], limit=10_000)
    assert shown and sorted(m.id for m in profile) == [m.id for m in shown]


def test_resumed_rows_reuse_finished_queries_and_skip_a_cut_off_line(
    prepared_home: Path, small_dataset: Path, tmp_path: Path
) -> None:
    plan = EvalPlan(
        dataset=small_dataset,
        rows=["popularity", "dense", "cf"],
        bundles={},
        split="train",
        limit=6,
        resume_dir=tmp_path / "runs",
    )
    with Workspace.open(prepared_home) as ws:
        first = Evaluation(ws, plan).run()
        files = sorted((tmp_path / "runs").iterdir())
        assert [f.name.split(".")[0] for f in files] == ["cf", "dense", "popularity"]
        for f in files:
            lines = f.read_text().splitlines()
            assert len(lines) == 6
            # An interrupted run leaves its last query cut off: it is run again.
            f.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
        second = Evaluation(ws, plan).run()
        sizes = [len(f.read_text().splitlines()) for f in files]
        assert sizes == [7, 7, 7]  # 5 kept, the cut-off line, the query run again
        third = Evaluation(ws, plan).run()["rows"]
        assert third == {n: {**r, "setup_seconds": 0.0} for n, r in second["rows"].items()}
        assert [len(f.read_text().splitlines()) for f in files] == sizes  # nothing run again
    for name, row in first["rows"].items():
        for metric in ("recall@10", "recall@100", "ndcg@10", "ndcg@100", "ci95"):
            assert second["rows"][name][metric] == row[metric]
    for f in files:
        records = [json.loads(x) for x in f.read_text().splitlines() if x.endswith("}")]
        assert len({r["id"] for r in records}) == len(records) == 6


def test_assistant_options_change_the_llm_rows_but_not_what_a_row_sets_itself(
    ws: Workspace, small_dataset: Path, llm_bundle_dir: Path
) -> None:
    bundles = {"rl": llm_bundle_dir}
    plain = Evaluation(ws, EvalPlan(dataset=small_dataset, rows=["popularity"], bundles=bundles))
    plan = EvalPlan(
        dataset=small_dataset,
        rows=["popularity"],
        bundles=bundles,
        assistant_options={"global_k": 1, "memory_k": 2},
    )
    lean = Evaluation(ws, plan)
    rl = lean.row("mrrec-rl").config
    assert (rl.global_k, rl.memory_k) == (1, 2)
    assert rl.max_memory_calls == ROWS["mrrec-rl"].config.max_memory_calls
    # The ablation keeps what it ablates; the option it does not set still applies.
    no_global = lean.row("ablation-no-global").config
    assert (no_global.global_k, no_global.memory_k) == (0, 2)
    assert lean.row("cf") is ROWS["cf"] and plain.row("mrrec-rl") is ROWS["mrrec-rl"]
    # Results kept for --resume are keyed by the settings: a lean run never reuses plain ones.
    assert lean._fingerprint(lean.row("mrrec-rl")) != plain._fingerprint(plain.row("mrrec-rl"))
