"""GRPO throughput on this CPU: the first loop against the current one, in one run.

- The first loop: rollouts decoded by Hugging Face ``generate`` (every row's whole prompt at
  every turn), and every turn scored on its own, in left-padded batches of four; 2 queries a
  step, rollouts in batches of 8, an adapter on every layer and a KL term (the cpu recipe of
  the time).
- The current loop: rollouts decoded on a token tree (:mod:`mrrec_train.sampler`: each prompt
  token prefilled once a step, the LoRA adapter merged into the decoding copy), a query's
  rollouts scored after their shared prompt (:mod:`mrrec_train.packing`), groups whose
  rewards are all equal left out of the loss, and the recipe's objective (``grpo.lora_layers``
  and ``grpo.beta``: the cpu recipe trains the top layers only, without a reference pass); the
  loss pass starts at the lowest trained layer, from the inputs the decoding kept.
  Run twice: at the first loop's batch (2 queries), and at the recipe's ``queries_per_step``
  and ``max_batch`` (more rows per decode step cost little more than fewer on this CPU).

Each of ``--steps`` steps rolls out each loop's queries ``group_size`` times (the policy: the
recipe's SFT adapter), then runs that loop's loss phase on its rollouts: the reference's
log-probabilities where the loop has a KL term, and the clipped objective's forward and
backward. No optimizer step is taken,
so every loop samples from the same policy. Reported: where a step's time goes, and per loop
the queries with signal (groups whose rewards differ) and rollouts per CPU-hour (wall time x
threads).

    python benchmarks/grpo_throughput.py --recipe cpu [--steps 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from mrrec_edge.files import user_path
from mrrec_train import data as data_mod
from mrrec_train.dist import Dist, seed_everything
from mrrec_train.grpo import (
    _fill,
    group_advantages,
    grpo_backward,
    init_adapter,
    keep_layer_inputs,
    pack_groups,
    policy_loss,
)
from mrrec_train.lora import frozen_layers
from mrrec_train.packing import PackedScorer
from mrrec_train.policy import ScoredTurn, TorchPolicy, turn_logprobs
from mrrec_train.recipe import add_recipe_args, load_recipe
from mrrec_train.rewards import REWARDS
from mrrec_train.rollout import assistant_config, catalog_cutoffs, rollouts
from mrrec_train.sft import prepare
from mrrec_train.trainer import load_policy, micro_batches

#: Turns per forward pass in the first loop (the cpu recipe's former ``micro_batch``).
TURN_BATCH = 4
#: The first loop's queries a step and rollouts per decoding batch (the cpu recipe's former
#: ``queries_per_step`` and ``max_batch``), and its objective: an adapter on every layer, and
#: the KL term to the reference at the cpu recipe's former ``beta``.
FIRST_QUERIES = 2
FIRST_BATCH = 8
FIRST_BETA = 0.04


def turnwise_loss(model, tok, turns, advantages, *, epsilon: float, beta: float) -> int:
    """The first loop's loss phase: each turn a sequence of its own, left-padded in batches of
    similar length, the reference's pass, then forward and backward. Returns the tokens
    scored."""
    cpu = torch.device("cpu")
    items = [(t, a) for ts, a in zip(turns, advantages, strict=True) for t in ts]
    batches = micro_batches([t for t, _ in items], TURN_BATCH)
    adv_of = {id(t): a for t, a in items}
    tokens = sum(len(t.completion_ids) for t, _ in items)
    refs = []
    with torch.no_grad(), model.disable_adapter():
        for b in batches:
            refs.append(turn_logprobs(model, b, device=cpu, pad_id=tok.pad_token_id, autocast=None))
    for b, (ref, _) in zip(batches, refs, strict=True):
        logp, mask = turn_logprobs(model, b, device=cpu, pad_id=tok.pad_token_id, autocast=None)
        adv = torch.tensor([adv_of[id(t)] for t in b]).unsqueeze(-1)
        loss, _ = policy_loss(logp, mask, adv, logp.detach(), ref, epsilon=epsilon, beta=beta)
        (loss / tokens).backward()
    return tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_args(parser)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument(
        "--queries", type=int, help="The current loop's queries per step (the recipe's)."
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=user_path, help="Also write the figures here.")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe, args.set)
    cfg = recipe.grpo
    d = Dist(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    ws, examples = prepare(recipe, d)
    # Both adapters start at zero, so both loops sample from the same policy.
    tok, first_model = load_policy(recipe, d, merge=init_adapter(recipe))
    _, model = load_policy(recipe, d, merge=init_adapter(recipe), lora_layers=cfg.lora_layers)
    seed_everything(recipe.seed)
    first_policy = TorchPolicy(first_model, tok, device=d.device, max_batch=FIRST_BATCH)
    frozen = frozen_layers(model)
    policy = TorchPolicy(
        model, tok, device=d.device, max_batch=recipe.rollout.max_batch, keep_inputs_of=frozen
    )
    scorer = PackedScorer(model, device=d.device, autocast=None, start_layer=frozen)
    config = assistant_config(recipe.rollout)
    cuts = catalog_cutoffs(ws, hi=recipe.rewards.ndcg_hi, lo=recipe.rewards.ndcg_lo)
    weights = recipe.rewards.weights

    queries = args.queries or cfg.queries_per_step
    # name: (decoding engine, loss, queries a step, rollout batch)
    loops = {
        "first": ("generate", "turnwise", FIRST_QUERIES, FIRST_BATCH),
        f"current@{FIRST_QUERIES}": ("tree", "packed", FIRST_QUERIES, FIRST_BATCH),
        f"current@{queries}": ("tree", "packed", queries, recipe.rollout.max_batch),
    }
    seconds = {loop: {"rollout": 0.0, "loss": 0.0} for loop in loops}
    counts = {
        loop: {
            "queries": 0,
            "signal": 0,
            "rollouts": 0,
            "loss_tokens": 0,
            "from_kept_inputs": 0,
            "reward": 0.0,
        }
        for loop in loops
    }
    formats = {loop: 0.0 for loop in loops}
    for step in range(args.steps):
        for loop, (engine, loss, n, max_batch) in loops.items():
            batch = data_mod.batch_for_step(examples, step, n, seed=recipe.seed)
            first = loss == "turnwise"
            loop_policy, loop_model = (first_policy, first_model) if first else (policy, model)
            loop_policy.engine, loop_policy.max_batch = engine, max_batch
            loop_policy.new_step(step)
            loop_model.eval()
            t0 = time.perf_counter()
            rs = rollouts(
                ws, loop_policy, batch, config=config, group_size=cfg.group_size, cuts=cuts
            )
            seconds[loop]["rollout"] += time.perf_counter() - t0
            totals = [sum(weights[n] * REWARDS[n](r) for n in weights) for r in rs]
            advantages = group_advantages(totals, cfg.group_size, scale=cfg.scale_rewards)
            turns = [[ScoredTurn(*loop_policy.turn_ids(p, c)) for p, c in r.turns] for r in rs]

            loop_model.train()
            t0 = time.perf_counter()
            if first:
                turnwise_loss(
                    first_model, tok, turns, advantages, epsilon=cfg.epsilon, beta=FIRST_BETA
                )
                tokens = sum(len(t.prompt_ids) + len(t.completion_ids) for ts in turns for t in ts)
                kept = 0
            else:
                groups = pack_groups(
                    turns, advantages, cfg.group_size, skip_equal=cfg.skip_equal_groups
                )
                keep_layer_inputs(groups, policy)
                if groups and cfg.beta > 0:
                    with model.disable_adapter():
                        _fill(scorer, groups, "ref")
                grpo_backward(scorer, d, tok, groups, epsilon=cfg.epsilon, beta=cfg.beta)
                tokens = sum(len(g.row.ids) for g in groups)
                kept = sum(g.inputs is not None for g in groups)
            seconds[loop]["loss"] += time.perf_counter() - t0
            loop_model.zero_grad(set_to_none=True)

            c = counts[loop]
            c["queries"] += len(batch)
            c["signal"] += sum(
                len(set(totals[i : i + cfg.group_size])) > 1
                for i in range(0, len(totals), cfg.group_size)
            )
            c["rollouts"] += len(rs)
            c["loss_tokens"] += tokens
            c["from_kept_inputs"] += kept
            c["reward"] += sum(totals)
            formats[loop] += sum(REWARDS["format"](r) for r in rs)
            print(
                f"step {step + 1} {loop}: rollouts {seconds[loop]['rollout']:.1f}s, "
                f"loss {seconds[loop]['loss']:.1f}s (totals so far)",
                flush=True,
            )

    def per_cpu_hour(loop: str, n: int) -> float:
        return n / (sum(seconds[loop].values()) * args.threads / 3600)

    rows = {
        loop: {
            "rollout_seconds_per_step": round(seconds[loop]["rollout"] / args.steps, 1),
            "loss_seconds_per_step": round(seconds[loop]["loss"] / args.steps, 1),
            "groups_with_signal": f"{counts[loop]['signal']}/{counts[loop]['queries']}",
            "tokens_through_the_loss": counts[loop]["loss_tokens"],
            # Groups whose loss pass started at the lowest trained layer, from the inputs the
            # rollouts' decoding kept (the rest ran every layer).
            "groups_from_kept_inputs": "{from_kept_inputs}/{signal}".format(**counts[loop]),
            # The same policy either way: these differ by sampling noise only.
            "mean_reward": round(counts[loop]["reward"] / counts[loop]["rollouts"], 3),
            "format_rate": round(formats[loop] / counts[loop]["rollouts"], 3),
            "queries_with_signal_per_cpu_hour": round(
                per_cpu_hour(loop, counts[loop]["signal"]), 1
            ),
            "rollouts_per_cpu_hour": round(per_cpu_hour(loop, counts[loop]["rollouts"]), 1),
        }
        for loop in loops
    }
    print(
        f"\n{args.steps} steps, {cfg.group_size} rollouts a query, {args.threads} threads, "
        f"policy: {init_adapter(recipe) or 'the base model'}; the current loop's adapter on "
        f"{cfg.lora_layers or 'all'} layers, KL coefficient {cfg.beta} (first: all, {FIRST_BETA})"
    )
    names = list(rows["first"])
    print(f"{'':34}" + "".join(f"{loop:>12}" for loop in loops))
    for name in names:
        print(f"{name:34}" + "".join(f"{rows[loop][name]!s:>12}" for loop in loops))
    ratios = {}
    for loop in list(loops)[1:]:
        if counts["first"]["signal"] and counts[loop]["signal"]:
            ratios[loop] = (
                rows[loop]["queries_with_signal_per_cpu_hour"]
                / rows["first"]["queries_with_signal_per_cpu_hour"]
            )
            print(f"{loop} / first, queries with signal per CPU-hour: {ratios[loop]:.2f}x")
        else:
            print(f"{loop} / first: n/a (a loop had no group with signal)")
    if args.json:
        out = {"seconds": seconds, "counts": counts, "rows": rows, "ratios": ratios}
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
