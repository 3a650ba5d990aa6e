"""Packing a group of rollouts into one row scores every completion token exactly as scoring
each turn alone does."""

from __future__ import annotations

import pytest

from tests.conftest import require_module

torch = require_module("torch")

from mrrec_train.lora import frozen_layers, new_lora  # noqa: E402
from mrrec_train.packing import pack, packed_logprobs, rollout_paths, row_inputs  # noqa: E402
from mrrec_train.policy import ScoredTurn, _merged, turn_logprobs  # noqa: E402
from mrrec_train.recipe import LoraSettings  # noqa: E402
from mrrec_train.sampler import TokenTree  # noqa: E402
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


def _decode(tree: TokenTree, prompt: list[int], completion: list[int]) -> None:
    """Runs ``completion`` after ``prompt`` as :meth:`TokenTree.generate` does: the part of the
    prompt not in the tree yet (a prompt all there: its last token again, on a node of its
    own), then one token a pass; a completion's last token is never run."""
    node, matched = tree.locate(prompt)
    if matched == len(prompt):
        node, matched = tree.parent[node], matched - 1
        chain = tree.append(node, prompt[matched:], share=False)
    else:
        chain = tree.append(node, prompt[matched:])
    tree.forward([chain])
    leaf = chain.last
    for t in completion[:-1]:
        chain = tree.append(leaf, [t])
        tree.forward([chain])
        leaf = chain.last


def test_a_pass_from_the_inputs_decoding_kept_equals_the_whole_pass() -> None:
    """An adapter on the last layer: the tree that decoded the rollouts (over the merged copy)
    keeps each token's input to that layer, and the loss pass started there gives the same
    log-probabilities and the same gradient as the pass from the tokens up."""
    model = new_lora(tiny_llama(), LoraSettings(r=2, alpha=4), last_layers=1)
    torch.manual_seed(1)
    for name, weight in model.named_parameters():
        if "lora_B" in name:  # B = 0 would make the adapter a no-op
            torch.nn.init.normal_(weight, std=0.1)
    start = frozen_layers(model)
    assert start == 1
    tree = TokenTree(_merged(model), CPU, keep_inputs_of=start)
    prompt = [5, 6, 7, 8]
    rollouts = []
    # The second rollout's answer hangs below its prompt run again, and the third's first
    # completion below the first token the first one sampled too: nodes off the shared path.
    for completion, memory, answer in [
        ([9, 10], [30, 31], [11, 12]),
        ([9, 10], [30, 31], [15, 16, 19]),
        ([9, 21, 22], [32], [17, 18]),
    ]:
        second = [*prompt, *completion, *memory]
        _decode(tree, prompt, completion)
        _decode(tree, second, answer)
        rollouts.append([ScoredTurn(prompt, completion), ScoredTurn(second, answer)])
    paths = [p for i, r in enumerate(rollouts) for p in rollout_paths(r, owner=i)]
    row = pack(paths)
    inputs = row_inputs(row, tree.layer_inputs)
    assert inputs is not None and inputs.shape == (len(row.ids), 32)
    assert row_inputs(row, lambda ids: None) is None

    def scored(**start_at) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        logp = packed_logprobs(model, row, device=CPU, autocast=None, **start_at)
        logp.sum().backward()
        grads = [w.grad.clone() for w in model.parameters() if w.requires_grad]
        return logp.detach(), grads

    whole, whole_grads = scored()
    kept, kept_grads = scored(start_layer=start, inputs=inputs)
    assert torch.allclose(kept, whole, atol=1e-5)
    for a, b in zip(kept_grads, whole_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="starts at layer 0"):
        packed_logprobs(model, row, device=CPU, autocast=None, inputs=inputs)
