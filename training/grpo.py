"""GRPO with MR.Rec's rewards (METHOD.md §3), rolled out through the device's own loop.

Each step, every query of the step's batch gets ``group_size`` rollouts of
:meth:`mrrec_edge.assistant.Assistant.ask` with the torch policy in the model's place (see
:mod:`mrrec_train.rollout`): the Rust orchestrator's prompts and parser, hybrid memory retrieval and
catalog grounding are the device's code. Rewards (:mod:`mrrec_train.rewards`) score each rollout;
advantages are the rewards normalised within their group. The loss is PPO's clipped objective
per token of the model's own completions, plus ``beta`` times the k3 estimate of the KL to the
reference policy:

    ratio = exp(logp - logp_old)
    kl    = exp(r - logp) - (r - logp) - 1
    loss  = mean over completion tokens of  -min(ratio·A, clip(ratio, 1-eps, 1+eps)·A) + beta·kl

where ``r`` is the reference's log-probability. A turn is scored as its completion given its
prompt; retrieved memory sits in the prompts of later turns, so its tokens are never in the loss
(nor are the system prompt, global memory and query). The mean is over all completion tokens of
the step on a rank (token-level, as in DAPO), and DDP averages the ranks' gradients.

Rollouts are decoded on a token tree (:mod:`mrrec_train.sampler`) over a copy of the policy with
its adapter merged: the step's prompts share their prefilled tokens, so each prompt token runs
once. A query's rollouts are scored together (:mod:`mrrec_train.packing`): their shared first
prompt once, then each rollout's turns as one row of a batch behind its keys and values. A
group whose rewards are all equal has no advantage (only the KL term would reach it) and is left
out of the loss with ``skip_equal_groups`` (DAPO's filter); its share is the
``zero_std_groups`` metric.

The reference is the policy GRPO starts from: the SFT adapter is merged into the base weights
and GRPO trains a fresh LoRA adapter, so the reference is the same model with the adapter
disabled (no second copy). With ``beta = 0`` no reference pass runs. ``lora_layers`` puts the
fresh adapter on the top layers only, so the backward pass stops at the lowest of them, and the
loss's forward pass starts there too: the layers below are frozen, and the token tree that
decoded the rollouts kept each token's input to the lowest trained layer
(:meth:`mrrec_train.sampler.TokenTree.layer_inputs`). The shipped adapter joins both into one
(:func:`mrrec_train.lora.concat_adapters`).

Why not TRL's GRPOTrainer. Its generation and multi-turn machinery own the conversation: tools
are functions it calls from tool calls parsed in the chat template's own format, and custom
multi-turn episodes go through an experimental ``rollout_func``/environment hook built around its
vLLM generation path, returning one token sequence per episode. Our rollouts must be
``Assistant.ask`` itself, whose protocol (prompt, grammar, parsing, memory budget and escaping)
lives in the Rust orchestrator, whose turns get their memory as later prompts, and whose reward
needs the catalog ranking that grounding produced. Wrapping that inside TRL would mean
re-implementing the loop in its terms, which is exactly what must not happen; the loop here is
about 200 lines and runs the same on CPU, one GPU and under ``torchrun``.

Entry point: ``python -m mrrec_train.grpo --recipe tiny`` (also under ``torchrun``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mrrec_edge._core import ranking_metrics
from mrrec_train import data as data_mod
from mrrec_train.dist import Dist
from mrrec_train.lora import concat_adapters, frozen_layers, save_adapter
from mrrec_train.packing import PackedRow, PackedScorer, pack, rollout_paths, row_inputs
from mrrec_train.policy import ScoredTurn, TorchPolicy
from mrrec_train.recipe import Recipe
from mrrec_train.rewards import REWARDS, Rollout, check_weights
from mrrec_train.rollout import assistant_config, catalog_cutoffs, rollouts
from mrrec_train.sft import prepare
from mrrec_train.trainer import (
    Stage,
    autocast_dtype,
    backward_all,
    dummy_turn,
    grad_norm_step,
    load_policy,
    optimizer_for,
    stage_main,
    wrap,
)

log = logging.getLogger(__name__)

#: What the reward curve shows.
PLOT_KEYS = ("reward", "reward/ranking", "format_rate", "memory_call_rate", "kl", "loss")


def group_advantages(rewards: Sequence[float], group_size: int, *, scale: bool) -> list[float]:
    """Each reward minus its group's mean, divided by the group's standard deviation (sample
    std, as GRPO) when ``scale``; a group whose rewards are all equal gets zeros."""
    if len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not form groups of {group_size}")
    out: list[float] = []
    for start in range(0, len(rewards), group_size):
        group = rewards[start : start + group_size]
        mean = sum(group) / len(group)
        var = sum((r - mean) ** 2 for r in group) / max(1, len(group) - 1)
        std = math.sqrt(var)
        for r in group:
            if std < 1e-8:
                out.append(0.0)
            else:
                out.append((r - mean) / (std + 1e-4) if scale else r - mean)
    return out


@dataclass
class Group:
    """One query's rollouts packed in one row (see :mod:`mrrec_train.packing`), the advantage of
    each scored token, and, once computed, the reference's and the sampling policy's
    log-probabilities of those tokens. ``inputs``: each row token's input to the lowest trained
    layer, kept from decoding (see :func:`mrrec_train.packing.packed_logprobs`), or None."""

    row: PackedRow
    advantages: list[float]
    inputs: torch.Tensor | None = None
    ref: torch.Tensor | None = None
    old: torch.Tensor | None = None

    @property
    def tokens(self) -> int:
        return len(self.row.targets)


def pack_groups(
    turns: Sequence[Sequence[ScoredTurn]],
    advantages: Sequence[float],
    group_size: int,
    *,
    skip_equal: bool,
) -> list[Group]:
    """The rollouts' scored turns (``turns[i]`` those of rollout ``i``), one packed row per
    query; with ``skip_equal``, queries whose advantages are all zero are left out."""
    groups = []
    for start in range(0, len(turns), group_size):
        members = range(start, start + group_size)
        if skip_equal and all(advantages[i] == 0.0 for i in members):
            continue
        paths = [path for i in members for path in rollout_paths(turns[i], owner=i)]
        row = pack(paths)
        groups.append(Group(row, [advantages[i] for i in row.owners]))
    return groups


def _dummy_group(tokenizer: Any) -> Group:
    """A one-token group for a rank with nothing to train on, so DDP's all-reduce still meets."""
    t = dummy_turn(tokenizer)
    return Group(pack(rollout_paths([t], owner=0)), [0.0])


def keep_layer_inputs(groups: list[Group], policy: TorchPolicy) -> None:
    """Gives each group the layer inputs its rollouts' decoding kept, where it kept them."""
    for g in groups:
        g.inputs = row_inputs(g.row, policy.layer_inputs)


@torch.no_grad()
def _fill(scorer: PackedScorer, groups: list[Group], attr: str) -> None:
    """Stores each group's scored log-probabilities (no gradient) in ``attr``."""
    for g in groups:
        setattr(g, attr, scorer(g.row, g.inputs).detach().cpu())


def policy_loss(
    logp: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    old: torch.Tensor,
    ref: torch.Tensor | None,
    *,
    epsilon: float,
    beta: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum over masked tokens of the clipped objective (+ KL); and the sums for the metrics.
    ``advantages`` broadcast against ``logp`` (one per token, or one per row as ``[n, 1]``)."""
    ratio = torch.exp(logp - old)
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon)
    a = advantages
    per_token = -torch.minimum(ratio * a, clipped * a)
    kl = torch.zeros_like(logp)
    if ref is not None:
        delta = ref - logp
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + beta * kl
    m = mask.float()
    was_clipped = ((ratio - clipped).abs() > 1e-6).float()
    return (per_token * m).sum(), {
        "kl": (kl.detach() * m).sum(),
        "clipped": (was_clipped * m).sum(),
    }


def grpo_backward(
    trained: Any,
    d: Dist,
    tokenizer: Any,
    groups: list[Group],
    *,
    epsilon: float,
    beta: float,
) -> dict[str, float]:
    """One pass of backward over ``groups``, one forward each (scaled to the mean over their
    scored tokens). ``trained`` is a :class:`~mrrec_train.packing.PackedScorer` (under DDP
    when distributed)."""
    tokens = sum(g.tokens for g in groups)
    batches = groups or [_dummy_group(tokenizer)]
    scale = 1.0 / tokens if tokens else 0.0
    sums = {"loss": 0.0, "kl": 0.0, "clipped": 0.0}

    def loss_of(i: int) -> torch.Tensor:
        g = batches[i]
        logp = trained(g.row, g.inputs)
        adv = torch.tensor(g.advantages, device=logp.device)
        old = g.old.to(logp.device) if g.old is not None else logp.detach()
        ref = g.ref.to(logp.device) if beta > 0 and g.ref is not None else None
        mask = torch.ones_like(logp, dtype=torch.bool)
        loss, parts = policy_loss(logp, mask, adv, old, ref, epsilon=epsilon, beta=beta)
        if tokens:
            sums["loss"] += float(loss.detach())
            for k, v in parts.items():
                sums[k] += float(v)
        return loss * scale

    backward_all(trained, d, batches, loss_of)
    n = max(1, tokens)
    out = {"loss": sums["loss"] / n, "clip_frac": sums["clipped"] / n}
    if beta > 0:  # without a reference there is no KL to report
        out["kl"] = sums["kl"] / n
    return out


def rollout_metrics(rs: Sequence[Rollout], totals: Sequence[float], group_size: int) -> dict:
    """Means over this rank's rollouts (every registered reward, weighted or not)."""
    n = len(rs)
    parts = {name: [fn(r) for r in rs] for name, fn in REWARDS.items()}
    wide, narrow = rs[0].cutoffs
    ranked = ranking_metrics([r.ranking for r in rs], [[r.target] for r in rs], [wide, narrow, 10])
    stds = []
    for start in range(0, n, group_size):
        g = totals[start : start + group_size]
        m = sum(g) / len(g)
        stds.append(math.sqrt(sum((x - m) ** 2 for x in g) / len(g)))
    turns = [r.stats.get("turns", 0) for r in rs]
    out = {
        "reward": sum(totals) / n,
        "reward_std": sum(stds) / len(stds),
        "zero_std_groups": sum(s < 1e-8 for s in stds) / len(stds),
        "format_rate": sum(parts["format"]) / n,
        "memory_call_rate": sum(parts["memory"]) / n,
        "fallback_rate": sum(r.fallback for r in rs) / n,
        "ndcg_hi": float(ranked[f"ndcg@{wide}"].mean()),
        "ndcg_lo": float(ranked[f"ndcg@{narrow}"].mean()),
        "ndcg@10": float(ranked["ndcg@10"].mean()),
        "recall@10": float(ranked["recall@10"].mean()),
        "turns": sum(turns) / n,
        "memory_calls": sum(r.stats.get("memory_calls", 0) for r in rs) / n,
        "memory_tokens": sum(r.stats.get("memory_tokens", 0) for r in rs) / n,
        "malformed_turns": sum(r.stats.get("malformed_turns", 0) for r in rs) / max(1, sum(turns)),
    }
    out.update({f"reward/{name}": sum(v) / n for name, v in parts.items()})
    return out


def init_adapter(recipe: Recipe) -> Path | None:
    """The adapter GRPO starts from (merged into the base), per ``grpo.init_adapter``."""
    name = recipe.grpo.init_adapter
    if not name:
        return None
    path = recipe.sft_dir / "adapter" if name == "sft" else Path(name)
    if not (path / "adapter_config.json").is_file():
        hint = " (run `python -m mrrec_train.sft` with this recipe first)" if name == "sft" else ""
        raise FileNotFoundError(f"no adapter at {path}{hint}")
    return path


def train(recipe: Recipe, d: Dist) -> dict[str, Any] | None:
    """Runs (or resumes) GRPO into ``recipe.grpo_dir``; returns the summary on rank 0."""
    cfg = recipe.grpo
    check_weights(recipe.rewards.weights)
    if cfg.group_size < 2:
        raise ValueError("GRPO needs a group size of at least 2 (advantages are within groups)")
    stage = Stage(recipe, "grpo", recipe.grpo_dir, d)
    ws, examples = prepare(recipe, d)
    start_from = init_adapter(recipe)
    tokenizer, model = load_policy(recipe, d, merge=start_from, lora_layers=cfg.lora_layers)
    autocast = autocast_dtype(recipe, d.device)
    frozen = frozen_layers(model)
    policy = TorchPolicy(
        model,
        tokenizer,
        device=d.device,
        autocast=autocast,
        max_batch=recipe.rollout.max_batch,
        engine=recipe.rollout.engine,
        keep_inputs_of=frozen,
    )
    config = assistant_config(recipe.rollout)
    cuts = catalog_cutoffs(ws, hi=recipe.rewards.ndcg_hi, lo=recipe.rewards.ndcg_lo)
    weights = recipe.rewards.weights
    scorer = PackedScorer(model, device=d.device, autocast=autocast, start_layer=frozen)
    trained = wrap(scorer, d)
    optimizer, scheduler = optimizer_for(
        model, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps
    )
    start = stage.resume(model, optimizer, scheduler)
    for step in range(start, cfg.steps):
        t0 = time.perf_counter()
        batch = data_mod.batch_for_step(
            examples, step, cfg.queries_per_step, seed=recipe.seed, rank=d.rank, world=d.world
        )
        # Sampling depends on the step and rank alone, so a resumed run samples the same.
        policy.new_step((recipe.seed * 1_000_003 + step) * 1_009 + d.rank)
        model.eval()
        rs = rollouts(ws, policy, batch, config=config, group_size=cfg.group_size, cuts=cuts)
        totals = [sum(weights[n] * REWARDS[n](r) for n in weights) for r in rs]
        advantages = group_advantages(totals, cfg.group_size, scale=cfg.scale_rewards)
        turns = [[ScoredTurn(*policy.turn_ids(p, c)) for p, c in r.turns] for r in rs]
        groups = pack_groups(turns, advantages, cfg.group_size, skip_equal=cfg.skip_equal_groups)
        keep_layer_inputs(groups, policy)
        t_rollout = time.perf_counter() - t0

        if cfg.beta > 0 and groups:
            with model.disable_adapter():
                _fill(scorer, groups, "ref")
        if cfg.ppo_epochs > 1:
            _fill(scorer, groups, "old")
        model.train()
        losses: dict[str, float] = {}
        norm = 0.0
        for _ in range(cfg.ppo_epochs):
            losses = grpo_backward(
                trained,
                d,
                tokenizer,
                groups,
                epsilon=cfg.epsilon,
                beta=cfg.beta,
            )
            norm = grad_norm_step(model, optimizer, scheduler, cfg.max_grad_norm)
        seconds = time.perf_counter() - t0
        local = rollout_metrics(rs, totals, cfg.group_size)
        local.update(losses)
        completions = sum(len(t.completion_ids) for ts in turns for t in ts)
        local["completion_tokens"] = completions / len(rs)
        local["scored_tokens"] = sum(g.tokens for g in groups) / len(rs)
        local["packed_tokens"] = sum(len(g.row.ids) for g in groups) / len(rs)
        # Groups whose loss pass started at the lowest trained layer (the rest ran every layer).
        local["kept_inputs_rate"] = sum(g.inputs is not None for g in groups) / max(1, len(groups))
        local.update(seconds_rollout=t_rollout, seconds_train=seconds - t_rollout, seconds=seconds)
        metrics = d.mean(local)
        metrics.update(
            step=step + 1,
            epoch=step * cfg.queries_per_step / len(examples),
            lr=scheduler.get_last_lr()[0],
            grad_norm=norm,
        )
        stage.log(metrics)
        if d.main:
            _log_sample(stage.out, step + 1, rs[0])
            log.info(
                "grpo step %d/%d reward %.3f format %.2f memory %.2f ndcg@10 %.3f%s (%.1fs)",
                step + 1,
                cfg.steps,
                metrics["reward"],
                metrics["format_rate"],
                metrics["memory_call_rate"],
                metrics["ndcg@10"],
                f" kl {metrics['kl']:.4f}" if "kl" in metrics else "",
                seconds,
            )
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            stage.save_checkpoint(step + 1, model, optimizer, scheduler)
    if d.main:
        delta = save_adapter(model, stage.out / "grpo_adapter")
        if start_from is not None:
            concat_adapters(start_from, delta, stage.adapter_dir)
        else:
            save_adapter(model, stage.adapter_dir)
    d.barrier()
    return stage.finish(
        data=data_mod.data_version(recipe.data),
        plot_keys=PLOT_KEYS,
        png="reward_curve.png",
        extra={
            "examples": len(examples),
            "ndcg_cutoffs": list(cuts),
            "init_adapter": str(start_from) if start_from else None,
            "reward_weights": dict(weights),
        },
    )


def _log_sample(out: Path, step: int, r: Rollout) -> None:
    """One rollout per step in samples.jsonl, to read what the policy writes."""
    row = {
        "step": step,
        "example": r.example_id,
        "completions": [c for _, c in r.turns],
        "profile": r.profile,
        "fallback": r.fallback,
        "reason": r.reason,
        "target_rank": r.ranking.index(r.target) + 1 if r.target in r.ranking else None,
    }
    with open(out / "samples.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("python -m mrrec_train.grpo", __doc__.split("\n")[0], train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
