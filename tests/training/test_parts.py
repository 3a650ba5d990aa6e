"""The training loop's parts on small real inputs: recipes, batches per step, lockstep batching,
scored log-probabilities under left padding, and joining two LoRA adapters into one."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.conftest import require_module

torch = require_module("torch")
require_module("peft")

from mrrec_edge.errors import ConfigError  # noqa: E402
from mrrec_train.data import batch_for_step  # noqa: E402
from mrrec_train.lora import concat_adapters, merge_adapter  # noqa: E402
from mrrec_train.policy import Lockstep, Request, ScoredTurn, turn_logprobs  # noqa: E402
from mrrec_train.recipe import RECIPES_DIR, load_recipe  # noqa: E402
from tests.training.tiny import tiny_llama  # noqa: E402


def test_every_recipe_loads_and_overrides_apply() -> None:
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))
    assert {"tiny", "cpu", "gpu"} <= set(names)
    for name in names:
        r = load_recipe(name)
        assert r.name == name and r.grpo.group_size >= 4
        assert r.rewards.weights == {"format": 0.1, "ranking": 5.0, "memory": 0.1}
    r = load_recipe("tiny", ["grpo.steps=7", 'model.device="cuda"', "rewards.ndcg_hi=50"])
    assert (r.grpo.steps, r.model.device, r.rewards.ndcg_hi) == (7, "cuda", 50)
    with pytest.raises(ConfigError, match="unknown key 'stepz'"):
        load_recipe("tiny", ["grpo.stepz=1"])
    with pytest.raises(ConfigError, match="steps must be int"):
        load_recipe("tiny", ['grpo.steps="many"'])
    with pytest.raises(ConfigError, match="no recipe"):
        load_recipe("no-such-recipe")
    with pytest.raises(ConfigError, match=r"tiny\.toml: sft\.teacher_choice must be one of"):
        load_recipe("tiny", ['sft.teacher_choice="oracle"'])


def test_batches_follow_from_the_step_and_split_over_ranks() -> None:
    items = list(range(10))
    first = [batch_for_step(items, s, 4, seed=1) for s in range(5)]
    assert first == [batch_for_step(items, s, 4, seed=1) for s in range(5)]  # deterministic
    # Epoch 0 is steps 0-1 and half of step 2: every item once.
    assert sorted(first[0] + first[1] + first[2][:2]) == items
    for step in range(5):
        ranks = [batch_for_step(items, step, 4, seed=1, rank=r, world=2) for r in range(2)]
        assert sorted(ranks[0] + ranks[1]) == sorted(first[step])
        assert len(ranks[0]) == len(ranks[1]) == 2
    with pytest.raises(ValueError, match="does not split"):
        batch_for_step(items, 0, 3, seed=1, world=2)


def test_lockstep_batches_every_waiting_job_in_job_order() -> None:
    seen: list[list[str]] = []

    def generate(requests: list[Request]) -> list[str]:
        seen.append([r.prompt for r in requests])
        return [r.prompt.upper() for r in requests]

    lockstep = Lockstep(generate)

    def job(i: int) -> list[str]:
        # Job i asks i + 1 times; its own work between calls takes a varying time.
        out = []
        for turn in range(i + 1):
            threading.Event().wait(0.001 * ((i * 7 + turn * 3) % 5))
            out.append(lockstep.generate(Request(f"j{i}t{turn}", 8, 1.0)))
        return out

    results = lockstep.run([lambda i=i: job(i) for i in range(3)])
    assert results == [["J0T0"], ["J1T0", "J1T1"], ["J2T0", "J2T1", "J2T2"]]
    assert seen == [["j0t0", "j1t0", "j2t0"], ["j1t1", "j2t1"], ["j2t2"]]

    def failing() -> None:
        lockstep.generate(Request("x", 8, 1.0))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        lockstep.run([failing, lambda: lockstep.generate(Request("y", 8, 1.0))])


def test_turn_logprobs_match_unpadded_forward_passes() -> None:
    model = tiny_llama()
    turns = [
        ScoredTurn([5, 6, 7, 8, 9, 10], [11, 12]),
        ScoredTurn([20, 21], [22, 23, 24, 25]),
        ScoredTurn([30, 31, 32], [33]),
    ]
    logp, mask = turn_logprobs(model, turns, device=torch.device("cpu"), pad_id=0, autocast=None)
    assert logp.shape == mask.shape == (3, 4)
    assert mask.sum(-1).tolist() == [2, 4, 1]
    with torch.no_grad():
        for row, t in enumerate(turns):
            ids = torch.tensor([t.prompt_ids + t.completion_ids])
            full = torch.log_softmax(model(ids).logits[0].float(), -1)
            n = len(t.completion_ids)
            expected = [
                full[len(t.prompt_ids) - 1 + j, tok] for j, tok in enumerate(t.completion_ids)
            ]
            assert logp[row, 4 - n :].tolist() == pytest.approx(
                [float(e) for e in expected], abs=1e-5
            )
            assert float(logp[row, : 4 - n].abs().sum()) == 0.0


def test_a_fresh_adapter_on_the_last_layers_trains_those_layers_only() -> None:
    from mrrec_train.lora import frozen_layers, new_lora
    from mrrec_train.recipe import LoraSettings

    model = new_lora(tiny_llama(), LoraSettings(r=2, alpha=4), last_layers=1)
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all(".layers.1." in n for n in trained)
    assert frozen_layers(model) == 1
    everywhere = new_lora(tiny_llama(), LoraSettings(r=2, alpha=4))
    assert any(".layers.0." in n for n, p in everywhere.named_parameters() if p.requires_grad)
    assert frozen_layers(everywhere) == 0
    with pytest.raises(ValueError, match="the model has 2 decoder layers"):
        new_lora(tiny_llama(), LoraSettings(), last_layers=3)


@pytest.mark.parametrize("second_layers", [None, [1]], ids=["every-layer", "last-layer"])
def test_concat_adapters_equals_merging_one_then_applying_the_other(
    tmp_path: Path, second_layers: list[int] | None
) -> None:
    """Also when the second adapter covers the last layer only (GRPO's ``lora_layers``)."""
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "v_proj", "down_proj"]

    def lora(model, r: int, alpha: int, modules: list[str], layers: list[int] | None = None):
        # Random A and B (init_lora_weights=False): a non-trivial delta to compare.
        config = LoraConfig(
            r=r,
            lora_alpha=alpha,
            target_modules=modules,
            layers_to_transform=layers,
            init_lora_weights=False,
        )
        return get_peft_model(model, config)

    first, second = tmp_path / "first", tmp_path / "second"
    torch.manual_seed(1)
    lora(tiny_llama(), 4, 8, targets).save_pretrained(str(first))
    torch.manual_seed(2)
    lora(tiny_llama(), 2, 7, [*targets, "o_proj"], second_layers).save_pretrained(str(second))
    joined = concat_adapters(first, second, tmp_path / "joined")

    from peft import PeftModel

    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():
        stepwise = PeftModel.from_pretrained(merge_adapter(tiny_llama(), first), str(second))
        expected = stepwise(ids).logits
        once = PeftModel.from_pretrained(tiny_llama(), str(joined))
        got = once(ids).logits
        base = tiny_llama()(ids).logits
    assert not torch.allclose(expected, base, atol=1e-4)  # the adapters do something
    assert torch.allclose(got, expected, atol=1e-5)
    config = once.peft_config["default"]
    assert (config.r, config.lora_alpha) == (6, 6)


def test_grpo_gradient_is_the_policy_gradient_on_policy() -> None:
    """With one pass (ratio 1) and the reference equal to the policy, the clipped objective's
    gradient is that of -mean_tokens(A · log p): the clip and the KL add nothing yet. The
    packed group (shared prompt, two-turn rollouts) gives the gradient of the turns scored
    one by one."""
    from types import SimpleNamespace

    from peft import LoraConfig, get_peft_model

    from mrrec_train.dist import Dist
    from mrrec_train.grpo import _fill, grpo_backward, pack_groups
    from mrrec_train.packing import PackedScorer

    torch.manual_seed(0)
    model = get_peft_model(
        tiny_llama(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    tok = SimpleNamespace(pad_token_id=0, eos_token_id=1)
    d = Dist(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    prompt = [5, 6, 7]
    rollouts = [
        [ScoredTurn(prompt, [8, 9]), ScoredTurn([*prompt, 8, 9, 40, 41], [12, 13, 14])],
        [ScoredTurn(prompt, [10]), ScoredTurn([*prompt, 10, 42], [15, 16])],
    ]
    advantages = [1.0, -0.5]
    groups = pack_groups(rollouts, advantages, 2, skip_equal=True)
    assert len(groups) == 1 and groups[0].tokens == 8
    scorer = PackedScorer(model, device=d.device, autocast=None)
    _fill(scorer, groups, "ref")
    grpo_backward(scorer, d, tok, groups, epsilon=0.2, beta=0.1)
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()

    turns = [t for r in rollouts for t in r]
    logp, mask = turn_logprobs(model, turns, device=d.device, pad_id=0, autocast=None)
    adv = torch.tensor([1.0, 1.0, -0.5, -0.5]).unsqueeze(-1)
    (-(adv * logp * mask).sum() / mask.sum()).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(got[name], p.grad, atol=1e-6), name
    assert any(float(g.abs().sum()) > 0 for g in got.values())


def test_groups_with_equal_rewards_are_left_out_of_the_loss() -> None:
    from mrrec_train.grpo import group_advantages, pack_groups

    rollouts = [[ScoredTurn([5, 6], [7 + i])] for i in range(4)]
    advantages = group_advantages([1.0, 1.0, 0.0, 2.0], 2, scale=True)
    kept = pack_groups(rollouts, advantages, 2, skip_equal=True)
    assert [g.row.owners for g in kept] == [[2, 3]]
    assert len(pack_groups(rollouts, advantages, 2, skip_equal=False)) == 2
