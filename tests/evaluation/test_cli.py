"""`mrrec eval` end to end: the real CLI on the small prepared workspace with the real model,
in range and deterministic across two runs (the issue's CI check), the report, and clear errors.

The LLM rows cost seconds to minutes per query on 2 loaded cores, so the default run evaluates
one query with mrrec-base; the issue's `--limit 20` with the model is marked slow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mrrec_edge.evaluation import metric_names
from mrrec_edge.grounding import SIGNALS
from mrrec_edge.scenarios import load_examples
from tests.helpers import run_cli

CHEAP = "popularity,dense,cf,ease,hybrid"
EXACT = [*metric_names(), "ci95", "per_category", "per_facet_kind"]


def _eval(state: Path, prepared_home: Path, dataset: Path, *args: str) -> dict[str, Any]:
    proc = run_cli(
        state, "eval", "--dataset", str(dataset), "--home", str(prepared_home), *args, "--json",
        timeout=1800,
    )  # fmt: skip
    return json.loads(proc.stdout)


def _check_in_range(
    out: dict[str, Any], rows: list[str], queries: int, catalog_size: int = 1682
) -> None:
    assert set(out["rows"]) == set(rows)  # --json sorts keys
    assert out["queries"] == queries and out["catalog_size"] == catalog_size
    for row in out["rows"].values():
        for metric in metric_names():
            assert 0 <= row[metric] <= 1
            lo, hi = row["ci95"][metric]
            assert 0 <= lo <= row[metric] <= hi <= 1
        assert row["recall@10"] <= row["recall@100"] and row["ndcg@10"] <= row["ndcg@100"]
        assert row["memory_tokens"] >= 0 and row["seconds_per_query"] >= 0


def _same(a: dict[str, Any], b: dict[str, Any], keys: list[str]) -> None:
    for name, row in a["rows"].items():
        assert {k: row[k] for k in keys} == {k: b["rows"][name][k] for k in keys}, name


def test_eval_baselines_on_20_queries_are_in_range_and_deterministic(
    prepared_home: Path, small_dataset: Path, tmp_path: Path
) -> None:
    args = ("--split", "train", "--limit", "20", "--rows", CHEAP)
    first = _eval(tmp_path, prepared_home, small_dataset, *args)
    second = _eval(tmp_path, prepared_home, small_dataset, *args)
    queries = min(20, len(load_examples(small_dataset, "train")))
    _check_in_range(first, CHEAP.split(","), queries)
    _same(first, second, EXACT)
    assert first["gains"] == {} and first["differences"] == {}  # no MR.Rec row, no claim
    hybrid = first["grounding"]["hybrid"]
    assert set(hybrid["weights"]) <= {"request", "user_cf", "popularity"}
    assert hybrid["fit"]["split"] == "train" and hybrid["fit"]["seed"] == 0
    cf = first["rows"]["cf"]
    # Each query counts once per facet kind and once in each genre of its target.
    assert sum(g["queries"] for g in cf["per_facet_kind"].values()) == queries
    assert sum(g["queries"] for g in cf["per_category"].values()) >= queries
    assert first["category_basis"] == "target genres"


def test_eval_with_the_real_model_is_in_range_deterministic_and_reported(
    prepared_home: Path, small_dataset: Path, llm_bundle_dir: Path, tmp_path: Path
) -> None:
    rows = [*CHEAP.split(","), "mrrec-base"]
    args = ("--limit", "1", "--rows", ",".join(rows), "--bundle-base", str(llm_bundle_dir))
    report = tmp_path / "report"
    first = _eval(tmp_path, prepared_home, small_dataset, *args, "--report", str(report))
    second = _eval(tmp_path, prepared_home, small_dataset, *args)
    _check_in_range(first, rows, 1)
    # Greedy decoding: the same profiles, rankings and memory use in both runs.
    _same(first, second, [*EXACT, "memory_tokens", "memory_calls", "turns", "fallback_rate"])
    mrrec = first["rows"]["mrrec-base"]
    assert mrrec["global_memory_tokens"] > 0  # the prepared home has global memory
    assert mrrec["memory_tokens"] == mrrec["local_memory_tokens"] + mrrec["global_memory_tokens"]
    assert mrrec["seconds_per_query"] > 0 and mrrec["model"] == "base"
    assert first["models"] == {"base": str(llm_bundle_dir)}
    assert first["gains"]["best_baseline"] in CHEAP.split(",")
    assert set(first["gains"]) == {"metric", "best_baseline", "mrrec-base"}
    md = (report / "results.md").read_text()
    assert all(f"`{r}`" in md for r in rows) and "![evaluation](eval.png)" in md
    assert (report / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((report / "results.json").read_text())["rows"].keys() == set(rows)
    # --set reaches the assistant rows: no global memory shown with global_k=0.
    lean = _eval(tmp_path, prepared_home, small_dataset, *args, "--set", "global_k=0")
    assert lean["assistant_options"] == {"global_k": 0} and first["assistant_options"] == {}
    assert lean["rows"]["mrrec-base"]["global_memory_tokens"] == 0
    assert {k: lean["rows"]["cf"][k] for k in EXACT} == {k: first["rows"]["cf"][k] for k in EXACT}
    assert first["differences"]["reference"] == "mrrec-base"
    assert set(first["differences"]) == {"metric", "reference", *CHEAP.split(",")}


def test_grounding_fit_on_the_models_answers_and_the_signal_ablations(
    prepared_home: Path, small_dataset: Path, llm_bundle_dir: Path, tmp_path: Path
) -> None:
    fit = tmp_path / "grounding.json"
    base = ("--bundle-base", str(llm_bundle_dir))
    _eval(
        tmp_path, prepared_home, small_dataset, "--split", "train", "--limit", "2",
        "--rows", "mrrec-base", *base, "--fit-grounding", str(fit),
    )  # fmt: skip
    saved = json.loads(fit.read_text())
    assert saved["fit"]["queries"] == 2 and saved["fit"]["split"] == "train"
    assert set(saved["weights"]) <= set(SIGNALS) and set(saved["ablations"]) == set(SIGNALS)
    assert all(s not in w for s, w in saved["ablations"].items())
    rows = ["mrrec-base", "ablation-no-profile", "ablation-no-user_cf"]
    out = _eval(
        tmp_path, prepared_home, small_dataset, "--limit", "1", "--rows", ",".join(rows),
        *base, "--grounding", str(fit),
    )  # fmt: skip
    _check_in_range(out, rows, 1)
    assert out["grounding"]["base"] == saved["weights"]
    # The ablations reground the model's own answer: no model turns of their own.
    assert out["rows"]["ablation-no-profile"]["memory_calls"] == 0
    assert out["differences"]["reference"] == "mrrec-base"


@pytest.mark.slow
def test_eval_limit_20_with_the_real_model_is_deterministic(
    prepared_home: Path, small_dataset: Path, llm_bundle_dir: Path, tmp_path: Path
) -> None:
    """The issue's CI check as written: 20 queries, MR.Rec with the real model, twice."""
    rows = [*CHEAP.split(","), "llm", "mrrec-base"]
    args = ("--split", "train", "--limit", "20", "--rows", ",".join(rows))
    args += ("--bundle-base", str(llm_bundle_dir))
    first = _eval(tmp_path, prepared_home, small_dataset, *args)
    second = _eval(tmp_path, prepared_home, small_dataset, *args)
    _check_in_range(first, rows, min(20, len(load_examples(small_dataset, "train"))))
    _same(first, second, [*EXACT, "memory_tokens", "memory_calls"])
    llm = first["rows"]["llm"]
    assert llm["memory_tokens"] == 0 and llm["memory_calls"] == 0


def test_eval_over_the_ml25m_keyword_pool(
    prepared_home: Path, prepared_pool_home: Path, small_dataset: Path, tmp_path: Path
) -> None:
    """The larger pool holds every MovieLens 100K item and the 25M items they do not match;
    the rows that ignore the query rank only items someone consumed, so they do not change."""
    from mrrec_edge.scenarios import prepared_marker

    args = ("--split", "train", "--limit", "10", "--rows", CHEAP)
    pool = _eval(tmp_path, prepared_pool_home, small_dataset, *args, "--catalog", "ml25m-keywords")
    small = _eval(tmp_path, prepared_home, small_dataset, *args)
    stats = prepared_marker(prepared_pool_home)["stats"]
    items = stats["items"]
    assert stats["pending_embeddings"]["items"] == 0  # every pool item is embedded
    assert 13_816 <= items < 13_816 + 1682
    _check_in_range(pool, CHEAP.split(","), 10, catalog_size=items)
    for row in ("popularity", "cf"):
        assert pool["rows"][row]["ndcg@100"] == small["rows"][row]["ndcg@100"], row


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--rows", "popularity,mrrec-sft"),
            "row mrrec-sft needs the sft model: pass --bundle-sft",
        ),
        (("--rows", "mrrec-rl"), "pass --bundle-rl DIR"),
        (("--rows", "popularity,bpr"), "unknown row(s) bpr"),
        (
            ("--catalog", "ml25m-keywords"),
            "holds the ml100k catalog; prepare a workspace with it",
        ),
        (("--bundle-base", "/nonexistent"), "model bundle /nonexistent: the folder does not exist"),
        (("--set", "global_k=some"), "'global_k=some': global_k takes a non-negative whole number"),
        (("--set", "beam=4"), "'beam=4': expected KEY=VALUE, KEY one of"),
        (
            ("--rows", "ablation-no-profile"),
            "row ablation-no-profile regrounds the answers of mrrec-base: add that row",
        ),
    ],
)
def test_eval_refuses_what_it_cannot_do_clearly(
    prepared_home: Path, small_dataset: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    proc = run_cli(
        tmp_path, "eval", "--dataset", str(small_dataset), "--home", str(prepared_home),
        "--rows", "popularity,llm", *args, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert message in " ".join(proc.stderr.split()), proc.stderr
    assert "Traceback" not in proc.stderr


def test_eval_refuses_a_home_that_is_not_prepared_and_writes_nothing_there(
    small_dataset: Path, tmp_path: Path
) -> None:
    home = tmp_path / "empty"
    proc = run_cli(
        tmp_path, "eval", "--dataset", str(small_dataset), "--home", str(home), check=False
    )
    assert proc.returncode == 1
    assert "not a prepared workspace" in proc.stderr and "mrrec data build --prepare" in proc.stderr
    assert not home.exists()
