"""Fitting the grounding weights on the train split (the search is
:func:`mrrec_edge.grounding.fit_weights`).

Two fits, both on train-split queries, whose targets the workspace never holds:

- the ``hybrid`` baseline's: request + user CF + popularity, no model, on a seeded sample of
  :data:`FIT_QUERIES` train queries;
- MR.Rec's, in two stages (``mrrec eval --split train --rows mrrec-rl --fit-grounding FILE``):
  the model-free weights are the hybrid fit's, and only the model's own signals (profile,
  seed_cf) are fit on the answers the model wrote for train queries. A model's answers cost
  seconds each on a CPU, so they are few (250 for the committed fit); fitting all five weights
  on them overfit (val NDCG@10 0.140 against 0.155 for the two stages, docs/RESULTS.md).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrrec_edge.grounding import MODEL_FREE, SIGNALS, FitQuery, fit_weights
from mrrec_edge.scenarios import load_examples
from mrrec_edge.workspace import Workspace

#: Train queries the model-free fit samples (seeded): enough to separate weights, ~1 min.
FIT_QUERIES = 1000
#: The signals only a model's answer gives.
MODEL_SIGNALS = tuple(s for s in SIGNALS if s not in MODEL_FREE)
PROCEDURE = "coordinate ascent over a grid with seeded restarts (mrrec_edge.grounding.fit_weights)"


def fit_query(
    ws: Workspace,
    example: Mapping[str, Any],
    *,
    profile: str | None = None,
    cited_memory: Sequence[int] = (),
) -> FitQuery:
    """One query's z-scored signals over its candidates, as grounding computes them."""
    request = ws.ground_request(
        user=example["user"],
        request=example["query"],
        profile=profile or None,
        cited_memory=cited_memory,
    )
    items, signals, _seeds = ws.store.grounding_signals(request)
    target = ws.store.item(example["target_item"]).item_id
    hit = np.flatnonzero(items == target)
    return FitQuery(np.stack(signals), int(hit[0]) if hit.size else -1)


def hybrid_queries(ws: Workspace, dataset: Path, *, seed: int = 0) -> list[FitQuery]:
    """The model-free fit's queries: a seeded sample of the train split."""
    train = load_examples(dataset, "train")
    sample = random.Random(f"{seed}:hybrid-fit").sample(train, min(FIT_QUERIES, len(train)))
    return [fit_query(ws, e) for e in sample]


def fit_hybrid(
    ws: Workspace,
    dataset: Path,
    *,
    seed: int = 0,
    queries: Sequence[FitQuery] | None = None,
    signals: Sequence[str] = MODEL_FREE,
) -> dict[str, Any]:
    """The ``hybrid`` row's fit: the model-free ``signals`` on :func:`hybrid_queries`."""
    queries = queries if queries is not None else hybrid_queries(ws, dataset, seed=seed)
    weights, ndcg = fit_weights(queries, signals, seed=seed)
    return {
        "weights": weights,
        "fit": {
            "split": "train",
            "queries": len(queries),
            "signals": list(signals),
            "seed": seed,
            "train_ndcg@10": round(ndcg, 6),
            "procedure": PROCEDURE,
            "source": "hybrid baseline (no model)",
        },
    }


def fit_model(
    ws: Workspace,
    dataset: Path,
    examples: Sequence[Mapping[str, Any]],
    results: Sequence[Any],
    *,
    seed: int = 0,
    source: str,
) -> dict[str, Any]:
    """MR.Rec's fit in two stages: ``results`` are a model row's per-query results (profile and
    citations) on the train ``examples``, in the same order. Also refits without each signal,
    for the evaluation's signal ablations (``ablations``)."""
    answers = [
        fit_query(ws, e, profile=r.profile, cited_memory=r.cited_memory)
        for e, r in zip(examples, results, strict=True)
    ]
    sample = hybrid_queries(ws, dataset, seed=seed)

    def two_stages(dropped: str | None = None) -> tuple[dict[str, float], float, dict]:
        free = [s for s in MODEL_FREE if s != dropped]
        hybrid = fit_hybrid(ws, dataset, seed=seed, queries=sample, signals=free)
        own = [s for s in MODEL_SIGNALS if s != dropped]
        weights, ndcg = fit_weights(answers, own, fixed=hybrid["weights"], seed=seed)
        return weights, ndcg, hybrid

    weights, ndcg, hybrid = two_stages()
    return {
        "weights": weights,
        "fit": {
            "split": "train",
            "queries": len(answers),
            "signals": list(SIGNALS),
            "seed": seed,
            "train_ndcg@10": round(ndcg, 6),
            "procedure": f"two stages: {', '.join(MODEL_FREE)} as the hybrid fit on "
            f"{len(sample)} train queries, then {', '.join(MODEL_SIGNALS)} on the model's "
            f"answers; {PROCEDURE}",
            "hybrid": hybrid["fit"],
            "source": source,
        },
        "ablations": {s: two_stages(s)[0] for s in SIGNALS},
    }
