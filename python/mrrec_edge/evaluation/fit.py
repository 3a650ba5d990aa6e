"""Fitting the grounding weights on the train split (the procedure is
:func:`mrrec_edge.grounding.fit_weights`).

Two fits, both on train-split queries, whose targets the workspace never holds:

- the ``hybrid`` baseline's: request + user CF + popularity, no model (a seeded sample of
  :data:`FIT_QUERIES` train queries);
- MR.Rec's: every signal, with the profiles and citations a model wrote for train queries
  (``mrrec eval --split train --rows mrrec-rl --fit-grounding FILE``).
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


def fit_record(
    queries: Sequence[FitQuery], signals: Sequence[str], *, seed: int, source: str
) -> dict[str, Any]:
    """Fits ``signals`` and describes the fit as a fit file holds it."""
    weights, ndcg = fit_weights(queries, signals, seed=seed)
    return {
        "weights": weights,
        "fit": {
            "split": "train",
            "queries": len(queries),
            "signals": list(signals),
            "seed": seed,
            "train_ndcg@10": round(ndcg, 6),
            "procedure": "coordinate ascent over a grid, seeded restarts "
            "(mrrec_edge.grounding.fit_weights)",
            "source": source,
        },
    }


def fit_hybrid(ws: Workspace, dataset: Path, *, seed: int = 0) -> dict[str, Any]:
    """The ``hybrid`` row's fit: model-free signals on a seeded sample of train queries."""
    train = load_examples(dataset, "train")
    sample = random.Random(f"{seed}:hybrid-fit").sample(train, min(FIT_QUERIES, len(train)))
    queries = [fit_query(ws, e) for e in sample]
    return fit_record(queries, MODEL_FREE, seed=seed, source="hybrid baseline (no model)")


def fit_model(
    ws: Workspace,
    examples: Sequence[Mapping[str, Any]],
    results: Sequence[Any],
    *,
    seed: int = 0,
    signals: Sequence[str] = SIGNALS,
    source: str,
) -> dict[str, Any]:
    """MR.Rec's fit: ``results`` are a model row's per-query results (profile and citations)
    on the train ``examples``, in the same order."""
    queries = [
        fit_query(ws, e, profile=r.profile, cited_memory=r.cited_memory)
        for e, r in zip(examples, results, strict=True)
    ]
    fit = fit_record(queries, signals, seed=seed, source=source)
    # The evaluation's signal ablations: each signal dropped, the rest refit on the same queries.
    fit["ablations"] = {
        s: fit_weights(queries, [x for x in signals if x != s], seed=seed)[0] for s in signals
    }
    return fit
