"""Ranking metrics of a held-out item, bootstrap confidence intervals and per-group means.

The per-query values come from the Rust core (:func:`mrrec_edge._core.ranking_metrics`); this
module only aggregates them. Every interval uses one matrix of resampled query indices drawn
from a fixed seed and shared by all rows, so intervals are reproducible and comparisons between
rows are paired (the same resampled queries on both sides).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mrrec_edge._core import ranking_metrics

#: The cut-offs of METHOD.md §4 (Recall and NDCG at 10 and 100).
KS: tuple[int, ...] = (10, 100)
LEVEL = 0.95


def metric_names(ks: Sequence[int] = KS) -> list[str]:
    """``recall@k`` for every k, then ``ndcg@k`` (the column order of every table)."""
    return [f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks]


def per_query_metrics(
    rankings: Sequence[Sequence[int]], targets: Sequence[int], ks: Sequence[int] = KS
) -> dict[str, np.ndarray]:
    """``{metric: values}``, one value per query, for one relevant (held-out) item per query."""
    raw = ranking_metrics([list(r) for r in rankings], [[t] for t in targets], list(ks))
    # + 0.0: the Rust sum of no gains is -0.0, which would print as such.
    return {name: raw[name] + 0.0 for name in metric_names(ks)}


def bootstrap_indices(queries: int, resamples: int, seed: int) -> np.ndarray:
    """Query indices drawn with replacement, ``resamples`` rows of ``queries`` (0 rows: none)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, queries, size=(resamples, queries))


def bootstrap_ci(
    values: np.ndarray, indices: np.ndarray, level: float = LEVEL
) -> tuple[float, float] | None:
    """The percentile interval of the mean of ``values`` over the resamples (None without any)."""
    if indices.size == 0:
        return None
    means = np.asarray(values, dtype=np.float64)[indices].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def relative_gain(
    values: np.ndarray, baseline: np.ndarray, indices: np.ndarray, level: float = LEVEL
) -> tuple[float, tuple[float, float] | None]:
    """``mean(values) / mean(baseline) - 1`` and its paired bootstrap interval.

    NaN when the baseline's mean is 0 (no relative gain exists); resamples where it is 0 are
    left out of the interval.
    """
    base = float(np.mean(baseline))
    gain = float(np.mean(values)) / base - 1 if base > 0 else float("nan")
    if indices.size == 0:
        return gain, None
    a = np.asarray(values, dtype=np.float64)[indices].mean(axis=1)
    b = np.asarray(baseline, dtype=np.float64)[indices].mean(axis=1)
    ratios = a[b > 0] / b[b > 0] - 1
    if ratios.size == 0:
        return gain, None
    lo, hi = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return gain, (float(lo), float(hi))


def group_means(
    values: Mapping[str, np.ndarray], groups: Sequence[Sequence[str]]
) -> dict[str, dict[str, float]]:
    """Means of each metric over the queries of each group, with their count under ``queries``.

    ``groups[q]`` lists the groups of query ``q``; a query may be in several (a target with two
    genres counts in both) or in none.
    """
    out: dict[str, dict[str, float]] = {}
    for name in sorted({g for gs in groups for g in gs}):
        mask = np.array([name in gs for gs in groups])
        out[name] = {"queries": int(mask.sum())}
        for metric, v in values.items():
            out[name][metric] = float(np.asarray(v)[mask].mean())
    return out
