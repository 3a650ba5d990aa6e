"""Packing a group of rollouts into one row scores every completion token exactly as scoring
each turn alone does."""

from __future__ import annotations

import pytest

from tests.conftest import require_module

torch = require_module("torch")

from mrrec_train.packing import pack, packed_logprobs, rollout_paths  # noqa: E402
from mrrec_train.policy import ScoredTurn, turn_logprobs  # noqa: E402
from tests.training.tiny import tiny_llama  # noqa: E402

CPU = torch.device("cpu")


def test_a_rollouts_turns_collapse_into_one_path_when_each_prompt_extends_the_last() -> None:
    first = ScoredTurn([1, 2, 3], [4, 5])
    second = ScoredTurn([1, 2, 3, 4, 5, 9], [6])
    (path,) = rollout_paths([first, second], owner=7)
    assert path.ids == [1, 2, 3, 4, 5, 9, 6]
    assert path.spans == [(3, 2), (6, 1)] and path.owner == 7
    # Re-tokenised differently: the second turn starts a path of its own.
    other = ScoredTurn([1, 2, 3, 45, 9], [6])
    assert [p.ids for p in rollout_paths([first, other], owner=0)] == [
        [1, 2, 3, 4, 5],
        [1, 2, 3, 45, 9, 6],
    ]


def test_the_shared_prefix_stops_before_any_scored_token() -> None:
    a = rollout_paths([ScoredTurn([1, 2, 3], [4, 5])], owner=0)
    b = rollout_paths([ScoredTurn([1, 2, 3], [4, 6])], owner=1)
    row = pack([*a, *b])
    assert row.ids == [1, 2, 3, 4, 5, 4, 6]
    assert row.branch == [-1, -1, -1, 0, 0, 1, 1]
    assert row.position_ids == [0, 1, 2, 3, 4, 3, 4]
    assert row.predictors == [2, 3, 2, 5] and row.owners == [0, 0, 1, 1]


@pytest.mark.parametrize("share", [True, False])
def test_packed_log_probabilities_equal_each_turn_scored_alone(share: bool) -> None:
    torch.manual_seed(0)
    model = tiny_llama()
    prompt = [5, 6, 7, 8]
    rollouts = [
        [ScoredTurn(prompt, [9, 10]), ScoredTurn([*prompt, 9, 10, 30, 31], [11, 12, 13])],
        [ScoredTurn(prompt, [14]), ScoredTurn([*prompt, 14, 32], [15])],
        # Its second prompt does not extend the first turn: a path of its own.
        [ScoredTurn(prompt, [16, 17]), ScoredTurn([*prompt, 18, 33], [19, 20])],
    ]
    paths = [p for i, r in enumerate(rollouts) for p in rollout_paths(r, owner=i)]
    assert len(paths) == 4
    row = pack(paths, share=share)
    with torch.no_grad():
        got = packed_logprobs(model, row, device=CPU, autocast=None)
        turns = [t for r in rollouts for t in r]
        logp, mask = turn_logprobs(model, turns, device=CPU, pad_id=0, autocast=None)
    expected = logp[mask]
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)
    assert row.owners == [0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert len(row.ids) < sum(len(t.prompt_ids) + len(t.completion_ids) for t in turns)
