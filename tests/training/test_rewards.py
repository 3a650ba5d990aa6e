"""The reward functions, cut-off scaling and GRPO's advantage and loss arithmetic, checked
against values computed by hand."""

from __future__ import annotations

import math

import pytest

from tests.conftest import require_module

torch = require_module("torch")

from mrrec_train.grpo import group_advantages, policy_loss  # noqa: E402
from mrrec_train.rewards import (  # noqa: E402
    REWARDS,
    Rollout,
    cutoffs,
    format_reward,
    memory_reward,
    ranking_reward,
    score,
)


def rollout(
    *,
    ranking: list[int] | None = None,
    target: int = 3,
    cuts: tuple[int, int] = (10, 1),
    fallback: bool = False,
    malformed: int = 0,
    calls: int = 1,
) -> Rollout:
    return Rollout(
        example_id="e",
        user="1",
        target=target,
        turns=[("prompt", "completion")],
        profile="A 1990s comedy.",
        fallback=fallback,
        reason="unreadable model turn" if fallback else None,
        stats={
            "turns": 2,
            "memory_calls": calls,
            "memory_tokens": 40,
            "malformed_turns": malformed,
        },
        ranking=ranking if ranking is not None else [5, 3, 9],
        cutoffs=cuts,
    )


def test_registry_names_the_three_rewards() -> None:
    assert set(REWARDS) == {"format", "ranking", "memory"}


def test_format_reward() -> None:
    assert format_reward(rollout()) == 1.0
    assert format_reward(rollout(fallback=True)) == 0.0
    # A malformed turn always ends in a fallback, but either alone fails the format.
    assert format_reward(rollout(malformed=1)) == 0.0


def test_memory_reward() -> None:
    assert memory_reward(rollout(calls=0)) == 0.0
    assert memory_reward(rollout(calls=1)) == 1.0
    assert memory_reward(rollout(calls=3)) == 1.0


def test_ranking_reward_by_hand() -> None:
    # Target second: nDCG@10 = 1/log2(3) = 0.63093; nDCG@1 = 0.
    assert ranking_reward(rollout()) == pytest.approx(1 / math.log2(3))
    # Target first: 1 + 1.
    assert ranking_reward(rollout(ranking=[3, 5, 9])) == pytest.approx(2.0)
    # Absent: 0.
    assert ranking_reward(rollout(ranking=[5, 9])) == 0.0
    # Twelfth with cut-offs (20, 2): 1/log2(13) = 0.27023 + 0.
    ranked = [*range(100, 111), 3]
    assert ranking_reward(rollout(ranking=ranked, cuts=(20, 2))) == pytest.approx(0.270238, 1e-5)
    # Twelfth with cut-offs (10, 1): outside both.
    assert ranking_reward(rollout(ranking=ranked, cuts=(10, 1))) == 0.0


def test_cutoffs_scale_with_the_catalog() -> None:
    assert cutoffs(1682) == (169, 17)  # MovieLens 100K
    assert cutoffs(13_816) == (1000, 100)  # the 25M keyword catalog: the paper's values
    assert cutoffs(1_060_000) == (1000, 100)  # the paper's pool
    assert cutoffs(50) == (10, 1)  # never below 10
    assert cutoffs(1682, hi=100) == (100, 10)
    assert cutoffs(1682, hi=100, lo=5) == (100, 5)
    with pytest.raises(ValueError):
        cutoffs(0)


def test_score_weights_each_reward() -> None:
    parts = score(rollout(), {"format": 0.1, "ranking": 5.0, "memory": 0.1})
    assert parts["format"] == 1.0 and parts["memory"] == 1.0
    assert parts["total"] == pytest.approx(0.1 + 5 / math.log2(3) + 0.1)
    assert score(rollout(calls=0, fallback=True), {"memory": 0.1})["total"] == 0.0
    with pytest.raises(ValueError, match="unknown rewards"):
        score(rollout(), {"length": 1.0})


def test_group_advantages() -> None:
    # Mean 0.5, sample std sqrt(1/3) = 0.57735 (+1e-4 in the division).
    adv = group_advantages([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0], 4, scale=True)
    assert adv[:4] == pytest.approx([0.86588, -0.86588, -0.86588, 0.86588], abs=1e-5)
    assert adv[4:] == [0.0, 0.0, 0.0, 0.0]  # a group with one reward teaches nothing
    assert group_advantages([3.0, 1.0], 2, scale=False) == [1.0, -1.0]
    with pytest.raises(ValueError):
        group_advantages([1.0, 2.0, 3.0], 2, scale=True)


def test_policy_loss_clips_and_adds_kl() -> None:
    old = torch.zeros(2, 3)
    # Ratio 1.5 on every token; the third token of row 1 is padding.
    logp = torch.full((2, 3), math.log(1.5))
    mask = torch.tensor([[True, True, True], [True, True, False]])
    adv = torch.tensor([[1.0], [-1.0]])  # one per row, broadcast over its tokens
    loss, parts = policy_loss(logp, mask, adv, old, None, epsilon=0.2, beta=0.0)
    # A > 0: min(1.5, 1.2) = 1.2 per token -> -1.2 x 3; A < 0: min(-1.5, -1.2) = -1.5 -> +1.5 x 2.
    assert float(loss) == pytest.approx(-1.2 * 3 + 1.5 * 2)
    assert float(parts["clipped"]) == 5 and float(parts["kl"]) == 0
    # Ratio 1 (on-policy) and a reference twice as likely: kl = 2 - ln 2 - 1 per token.
    kl = 2 - math.log(2) - 1
    ref = logp + math.log(2)
    loss, parts = policy_loss(logp, mask, adv, logp, ref, epsilon=0.2, beta=0.5)
    assert float(parts["kl"]) == pytest.approx(5 * kl, 1e-5)
    assert float(loss) == pytest.approx(-3 + 2 + 0.5 * 5 * kl, 1e-5)
    assert float(parts["clipped"]) == 0
