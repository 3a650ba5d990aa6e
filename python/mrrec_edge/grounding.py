"""Collaborative grounding's weights: which signals rank the catalog, how much each counts, and
the seeded procedure that fits them on the train split.

The Rust core owns the signals and the fusion (``MemoryStore.ground_fused``: each signal
z-scored over the candidates and soft-clipped at ±``GROUNDING_SATURATION``, so the
heavy-tailed collaborative scores cannot drown the rest, then summed with these weights);
:class:`~mrrec_edge.workspace.Workspace.ground` is the one entry point the assistant, the
evaluation and training call.

The signals (``GROUNDING_SIGNALS``):

- ``profile``: cosine of the model's ideal item profile to the item;
- ``request``: cosine of the user's raw request to the item;
- ``user_cf``: the user's collaborative score from their whole history (EASE, or item-kNN on
  large catalogs; a dislike counts against);
- ``seed_cf``: the same, seeded by the items the profile names and the records it cites;
- ``popularity``: log(1 + users who interacted with the item).

Where the weights come from, first found: the home's ``[grounding]`` table in config.toml, the
bundle's manifest (``grounding``, written by ``mrrec bundle build`` from the fit committed with
the adapter), else :data:`DEFAULT_WEIGHTS`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrrec_edge._core import GROUNDING_SIGNALS
from mrrec_edge.errors import InputError
from mrrec_edge.files import atomic_file

SIGNALS: tuple[str, ...] = tuple(GROUNDING_SIGNALS)
#: The model-free signals: what the ``hybrid`` baseline fuses (no profile, no seeds).
MODEL_FREE = ("request", "user_cf", "popularity")
#: Dense retrieval of the request alone (the ``dense`` row, BLaIR-style).
REQUEST_ONLY = {"request": 1.0}
#: The profile alone: MR.Rec's original grounding, before the collaborative signals.
PROFILE_ONLY = {"profile": 1.0}

#: The fit committed with the RL adapter (``training/adapter/grounding.json``: the hybrid
#: weights from 1,000 train queries, then profile and seed_cf on the model's answers to 250;
#: docs/RESULTS.md, "soft-clipped signals"), for a bundle built without a fit (the device
#: cannot read training/).
DEFAULT_WEIGHTS: dict[str, float] = {
    "profile": 1.0,
    "request": 1.5,
    "user_cf": 1.0,
    "seed_cf": 0.5,
    "popularity": 0.5,
}

#: A fit's file name, beside the adapter whose profiles it was fit on (``mrrec bundle build``
#: takes it into the bundle's manifest).
GROUNDING_FIT = "grounding.json"

#: The values coordinate ascent tries for each weight (the scale is free: one weight of 1
#: anchors it).
GRID = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
#: Queries a fit ranks by at most this depth (NDCG@10 is what it maximises).
FIT_K = 10


@dataclass(frozen=True)
class Weights:
    """Signal weights and where they came from (for ``mrrec bundle info`` and the logs)."""

    weights: dict[str, float]
    source: str

    def describe(self) -> str:
        parts = ", ".join(f"{s} {self.weights.get(s, 0.0):g}" for s in SIGNALS)
        return f"{parts} ({self.source})"


def resolve_weights(
    config: Mapping[str, float] | None, bundle_fit: Mapping[str, Any] | None
) -> Weights:
    """The weights in force: config.toml's ``[grounding]``, else the bundle's fit, else
    :data:`DEFAULT_WEIGHTS`."""
    if config:
        return Weights(dict(config), "config.toml [grounding]")
    if bundle_fit is not None:
        return Weights(dict(bundle_fit["weights"]), "the bundle's fit")
    return Weights(dict(DEFAULT_WEIGHTS), "the package default")


def check_weights(raw: Any, where: str) -> dict[str, float]:
    """``raw`` as signal weights; :class:`InputError` naming ``where`` and the bad key."""
    if not isinstance(raw, Mapping) or not raw:
        raise InputError(f"{where}: grounding weights must be a table of signal = weight")
    out: dict[str, float] = {}
    for key, value in raw.items():
        if key not in SIGNALS:
            raise InputError(
                f"{where}: unknown grounding signal {key!r} (one of {', '.join(SIGNALS)})",
                field=str(key),
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise InputError(f"{where}: {key} must be a non-negative number", field=str(key))
        out[key] = float(value)
    if not any(out.values()):
        raise InputError(f"{where}: at least one grounding weight must be above 0")
    return out


def load_fit(path: Path) -> dict[str, Any]:
    """A fit file written by :func:`write_fit`, its weights checked."""
    try:
        fit = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read grounding weights ({exc})", path=str(path)) from exc
    if not isinstance(fit, dict):
        raise InputError(f"{path}: not a grounding fit (expected a JSON object)", path=str(path))
    fit["weights"] = check_weights(fit.get("weights"), str(path))
    return fit


def write_fit(path: Path, fit: Mapping[str, Any]) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(fit, indent=2) + "\n", encoding="utf-8")


# -- fitting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitQuery:
    """One train query as the fit sees it: its z-scored signals over the candidates
    (``signals[s]`` in :data:`SIGNALS` order) and the target's position among them."""

    signals: np.ndarray  # (len(SIGNALS), candidates), float32
    target: int  # position of the target among the candidates, -1 if it is not one


def ndcg_at_k(queries: Sequence[FitQuery], weights: Mapping[str, float], k: int = FIT_K) -> float:
    """Mean NDCG@k of the targets when every query is ranked by ``Σ w_s z_s``, as the core ranks
    (ties go against the target: the conservative reading of a tie)."""
    w = np.array([weights.get(s, 0.0) for s in SIGNALS], dtype=np.float32)
    total = 0.0
    for q in queries:
        if q.target < 0:
            continue
        scores = w @ q.signals
        rank = int(np.count_nonzero(scores >= scores[q.target])) - 1
        if rank < k:
            total += 1.0 / np.log2(rank + 2)
    return total / max(len(queries), 1)


def fit_weights(
    queries: Sequence[FitQuery],
    signals: Sequence[str],
    *,
    fixed: Mapping[str, float] | None = None,
    seed: int = 0,
    restarts: int = 4,
    rounds: int = 6,
) -> tuple[dict[str, float], float]:
    """Weights for ``signals`` that maximise NDCG@10 on ``queries``, the ``fixed`` weights held
    as given (every other signal stays 0). Returns all the weights and the NDCG@10.

    Coordinate ascent over :data:`GRID`: starting from equal weights (and, when ``fixed`` has
    weights, from the fixed part alone), and from ``restarts - 1`` seeded random points on the
    grid, each round sets every weight in turn (in a seeded order) to its best grid value given
    the others, until a round changes nothing. The best start wins; ties keep the earlier start.
    Deterministic for a given ``seed``.
    """
    fixed = {s: w for s, w in (fixed or {}).items() if s not in signals}
    unknown = [s for s in [*signals, *fixed] if s not in SIGNALS]
    if unknown or not signals:
        raise InputError(f"cannot fit signals {list(signals)}: choose from {', '.join(SIGNALS)}")
    rng = random.Random(f"{seed}:grounding-fit")
    starts = [dict.fromkeys(signals, 1.0)]
    if any(fixed.values()):
        starts.append(dict.fromkeys(signals, 0.0))
    for _ in range(restarts - 1):
        starts.append({s: rng.choice(GRID[1:]) for s in signals})
    best: tuple[dict[str, float], float] | None = None
    for start in starts:
        weights = {**fixed, **start}
        score = ndcg_at_k(queries, weights)
        for _ in range(rounds):
            changed = False
            order = list(signals)
            rng.shuffle(order)
            for s in order:
                for value in GRID:
                    if value == weights[s]:
                        continue
                    trial = {**weights, s: value}
                    if not any(trial.values()):
                        continue
                    trial_score = ndcg_at_k(queries, trial)
                    if trial_score > score + 1e-12:
                        weights, score, changed = trial, trial_score, True
            if not changed:
                break
        if best is None or score > best[1] + 1e-12:
            best = (weights, score)
    assert best is not None
    return {s: best[0].get(s, 0.0) for s in SIGNALS if best[0].get(s, 0.0) > 0}, best[1]
