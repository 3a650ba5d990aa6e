"""Fitting the grounding weights: the procedure on queries whose answer is known, its
determinism, the fit on the small prepared workspace, and the errors a bad weights table gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mrrec_edge import InputError
from mrrec_edge.config import load_settings
from mrrec_edge.errors import ConfigError
from mrrec_edge.evaluation.fit import fit_hybrid
from mrrec_edge.grounding import (
    DEFAULT_WEIGHTS,
    MODEL_FREE,
    SIGNALS,
    FitQuery,
    check_weights,
    fit_weights,
    load_fit,
    ndcg_at_k,
    resolve_weights,
    write_fit,
)
from mrrec_edge.workspace import Workspace
from tests.helpers import ROOT


def _queries(seed: int, n: int = 60, candidates: int = 200) -> list[FitQuery]:
    """The target is found by request + user CF together (each alone is noisy); the other
    signals are noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        signals = rng.standard_normal((len(SIGNALS), candidates)).astype(np.float32)
        target = int(rng.integers(candidates))
        signals[SIGNALS.index("request"), target] += 2.0
        signals[SIGNALS.index("user_cf"), target] += 2.0
        out.append(FitQuery(signals, target))
    return out


def test_ndcg_ranks_like_the_core_with_ties_against_the_target() -> None:
    signals = np.zeros((len(SIGNALS), 4), dtype=np.float32)
    signals[0] = [0.1, 0.9, 0.5, 0.9]
    assert ndcg_at_k([FitQuery(signals, 1)], {"profile": 1.0}) == pytest.approx(1 / np.log2(3))
    assert ndcg_at_k([FitQuery(signals, 0)], {"profile": 1.0}, k=3) == 0.0
    assert ndcg_at_k([FitQuery(signals, -1)], {"profile": 1.0}) == 0.0  # not a candidate


def test_the_fit_finds_the_informative_signals_and_is_deterministic() -> None:
    queries = _queries(0)
    weights, score = fit_weights(queries, SIGNALS, seed=0)
    assert set(weights) <= set(SIGNALS) and weights["request"] > 0 and weights["user_cf"] > 0
    noise = max(weights.get(s, 0.0) for s in ("profile", "seed_cf", "popularity"))
    assert noise < min(weights["request"], weights["user_cf"])
    alone = ndcg_at_k(queries, {"request": 1.0})
    assert score == pytest.approx(ndcg_at_k(queries, weights)) and score > alone
    assert fit_weights(queries, SIGNALS, seed=0) == (weights, score)
    # Signals left out of a fit stay out.
    hybrid, _ = fit_weights(queries, MODEL_FREE, seed=0)
    assert set(hybrid) <= set(MODEL_FREE)
    # Fixed weights are held; the fit starts from them alone, so it never does worse.
    staged, staged_score = fit_weights(queries, ["user_cf"], fixed={"request": 0.5}, seed=0)
    assert staged["request"] == 0.5 and set(staged) <= {"request", "user_cf"}
    assert staged_score >= ndcg_at_k(queries, {"request": 0.5})


def test_bad_weights_are_named() -> None:
    with pytest.raises(InputError, match="unknown grounding signal 'profil'"):
        check_weights({"profil": 1.0}, "here")
    with pytest.raises(InputError, match="request must be a non-negative number"):
        check_weights({"request": -1}, "here")
    with pytest.raises(InputError, match="at least one grounding weight must be above 0"):
        check_weights({"request": 0}, "here")
    with pytest.raises(InputError, match="cannot fit signals"):
        fit_weights([], ["nope"])


def test_a_bad_fit_file_is_named_and_a_good_one_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "grounding.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match=r"grounding.json: cannot read grounding weights"):
        load_fit(path)
    path.write_text('{"weights": {"request": 1, "popularity": "a lot"}}')
    with pytest.raises(InputError, match=r"grounding.json: popularity must be a non-negative"):
        load_fit(path)
    write_fit(path, {"weights": {"request": 1.0}, "fit": {"queries": 3}})
    assert load_fit(path) == {"weights": {"request": 1.0}, "fit": {"queries": 3}}
    assert [p.name for p in tmp_path.iterdir()] == ["grounding.json"]  # no temp file left


def test_config_grounding_overrides_the_bundle_and_bad_tables_fail(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[grounding]\nrequest = 1\nuser_cf = 0.5\n")
    settings = load_settings(home)
    assert settings.grounding == {"request": 1.0, "user_cf": 0.5}
    weights = resolve_weights(settings.grounding, {"weights": {"profile": 1.0}})
    assert weights.weights == {"request": 1.0, "user_cf": 0.5}
    assert "config.toml" in weights.source
    assert resolve_weights({}, {"weights": {"profile": 1.0}}).weights == {"profile": 1.0}
    (home / "config.toml").write_text("[grounding]\nuser_fc = 1\n")
    with pytest.raises(ConfigError, match=r"config.toml: \[grounding\]: unknown grounding signal"):
        load_settings(home)


def test_the_hybrid_fit_on_the_prepared_workspace(prepared_home: Path, small_dataset: Path) -> None:
    with Workspace.open(prepared_home) as ws:
        first = fit_hybrid(ws, small_dataset, seed=0)
        again = fit_hybrid(ws, small_dataset, seed=0)
    assert first == again
    assert set(first["weights"]) <= set(MODEL_FREE) and first["weights"]
    assert first["fit"]["queries"] > 50 and 0 < first["fit"]["train_ndcg@10"] <= 1


def test_the_package_default_is_the_fit_committed_with_the_adapter() -> None:
    # The device cannot read training/, so the default repeats the committed fit: keep them equal.
    assert load_fit(ROOT / "training/adapter/grounding.json")["weights"] == DEFAULT_WEIGHTS
