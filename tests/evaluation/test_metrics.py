"""The metric code on hand-computed cases: per-query Recall/NDCG of a held-out item, bootstrap
intervals, paired relative gains, per-category means, and the row selection rules."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mrrec_edge import InputError
from mrrec_edge.evaluation import (
    ROW_NAMES,
    bootstrap_ci,
    bootstrap_indices,
    default_rows,
    group_means,
    metric_names,
    parse_rows,
    per_query_metrics,
    relative_gain,
)
from mrrec_edge.evaluation.harness import gains, model_role
from mrrec_edge.evaluation.rows import ROWS, top_k


def test_metrics_of_one_held_out_item_match_the_formulas() -> None:
    ranked_50th = [*range(1000, 1049), 7]
    out = per_query_metrics([[5, 3, 9], [1, 2], [7], ranked_50th], [3, 8, 7, 7])
    assert list(out) == ["recall@10", "recall@100", "ndcg@10", "ndcg@100"] == metric_names()
    np.testing.assert_allclose(out["recall@10"], [1, 0, 1, 0])
    np.testing.assert_allclose(out["recall@100"], [1, 0, 1, 1])
    # One relevant item: NDCG = 1 / log2(rank + 1).
    np.testing.assert_allclose(out["ndcg@10"], [1 / math.log2(3), 0, 1, 0])
    np.testing.assert_allclose(out["ndcg@100"], [1 / math.log2(3), 0, 1, 1 / math.log2(51)])
    # A miss is +0.0, never -0.0 (which JSON would print as such).
    assert math.copysign(1, out["ndcg@10"][1]) == 1


def test_bootstrap_interval_contains_the_mean_and_is_reproducible() -> None:
    values = np.array([0.0, 0.0, 1.0, 0.5, 0.0, 1.0, 0.25, 0.0])
    idx = bootstrap_indices(len(values), 1000, seed=0)
    assert idx.shape == (1000, 8)
    lo, hi = bootstrap_ci(values, idx)
    assert lo < values.mean() < hi
    assert lo >= 0 and hi <= 1
    assert bootstrap_ci(values, bootstrap_indices(8, 1000, seed=0)) == (lo, hi)
    assert bootstrap_ci(values, bootstrap_indices(8, 1000, seed=1)) != (lo, hi)
    # A constant metric has no spread; no resamples, no interval.
    assert bootstrap_ci(np.full(8, 0.5), idx) == (0.5, 0.5)
    assert bootstrap_ci(values, bootstrap_indices(8, 0, seed=0)) is None


def test_relative_gain_is_paired_and_undefined_over_a_zero_baseline() -> None:
    base = np.array([0.1, 0.2, 0.0, 0.3])
    idx = bootstrap_indices(4, 500, seed=0)
    # Twice the baseline on every query: +100% in every resample where the baseline is not 0.
    gain, ci = relative_gain(2 * base, base, idx)
    assert gain == pytest.approx(1.0)
    assert ci == pytest.approx((1.0, 1.0))
    gain, ci = relative_gain(base, np.zeros(4), idx)
    assert math.isnan(gain) and ci is None


def test_group_means_count_a_query_in_each_of_its_groups() -> None:
    values = {"ndcg@10": np.array([1.0, 0.0, 0.5])}
    groups = [["Comedy", "Drama"], ["Drama"], []]
    assert group_means(values, groups) == {
        "Comedy": {"queries": 1, "ndcg@10": 1.0},
        "Drama": {"queries": 2, "ndcg@10": 0.5},
    }


def test_the_best_baseline_excludes_mrrec_and_its_ablations() -> None:
    values = {
        "popularity": {"ndcg@10": np.array([0.2, 0.0])},
        "dense": {"ndcg@10": np.array([0.1, 0.1])},
        "ablation-no-local": {"ndcg@10": np.array([0.9, 0.9])},
        "mrrec-base": {"ndcg@10": np.array([0.3, 0.0])},
    }
    out = gains(values, bootstrap_indices(2, 0, seed=0))
    # popularity and dense tie at 0.1: the earlier row in the table wins, deterministically.
    assert out["best_baseline"] == "popularity"
    assert out["mrrec-base"] == {"gain": pytest.approx(0.5), "ci95": None}
    assert "ablation-no-local" not in out


def test_top_k_breaks_ties_by_id_and_leaves_out_consumed_items() -> None:
    scores = np.array([0.0, 5.0, 3.0, 5.0, 1.0, 3.0])
    assert top_k(scores, np.arange(1, 6), exclude=[3], k=3) == [1, 2, 5]
    assert top_k(scores, np.arange(1, 6), exclude=[], k=10) == [1, 3, 2, 5, 4]


def test_rows_are_parsed_in_table_order_and_unknown_ones_are_named() -> None:
    assert parse_rows("cf, popularity,mrrec-base") == ["popularity", "cf", "mrrec-base"]
    with pytest.raises(InputError, match=r"unknown row.*bpr.*choose from: popularity"):
        parse_rows("popularity,bpr")
    assert len(ROW_NAMES) == 21
    base_only = default_rows({})
    assert "mrrec-sft" not in base_only and "mrrec-rl" not in base_only
    assert len(base_only) == 14
    # The signal ablations reground a model row's answers with a fit's refits: asked for only.
    everything = default_rows({"sft": Path("s"), "rl": Path("r")})
    assert everything == [n for n in ROW_NAMES if ROWS[n].kind != "signal-ablation"]
    assert len(everything) == 16 and "ablation-no-local" in everything


def test_ablations_run_on_the_most_trained_model_given() -> None:
    ablation = ROWS["ablation-pattern"]
    assert ablation.config.memory_tiers == ("pattern",)
    assert model_role(ablation, {"base": Path("b")}) == "base"
    assert model_role(ablation, {"base": Path("b"), "sft": Path("s")}) == "sft"
    assert model_role(ablation, {"base": Path("b"), "sft": Path("s"), "rl": Path("r")}) == "rl"
    assert model_role(ROWS["llm"], {"rl": Path("r")}) == "base"
    assert model_role(ROWS["cf"], {}) is None
