"""Rollouts: the assistant's own loop (``Assistant.ask``) run for training examples.

Every rollout goes through :meth:`mrrec_edge.assistant.Assistant.ask`, exactly as on the device:
global memory in the system prompt, the Rust orchestrator's prompts and parser, hybrid memory
retrieval and catalog grounding that leaves out what the user has consumed. Only the model
differs (the torch policy, or the SFT teacher), and the ranking of the grounded catalog is what
the ranking reward scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from mrrec_edge.assistant import Assistant, AssistantConfig, Done, Profile, Recommendations
from mrrec_edge.workspace import Workspace
from mrrec_train.policy import TorchPolicy
from mrrec_train.recipe import RolloutConfig
from mrrec_train.rewards import Rollout, cutoffs

Example = dict[str, Any]


def assistant_config(rollout: RolloutConfig, **override: Any) -> AssistantConfig:
    """The assistant's settings from the recipe's ``[rollout]`` table."""
    names = {f.name for f in fields(AssistantConfig)}
    values = {f.name: getattr(rollout, f.name) for f in fields(rollout) if f.name in names}
    return AssistantConfig(**{**values, **override})


def catalog_cutoffs(ws: Workspace, *, hi: int = 0, lo: int = 0) -> tuple[int, int]:
    return cutoffs(int(ws.store.stats()["items"]), hi=hi, lo=lo)


def ask(
    assistant: Assistant, example: Example, *, cuts: tuple[int, int], group: int = 0
) -> Rollout:
    """One conversation for ``example``; the catalog is grounded to the wide cut-off."""
    profile = recommendations = done = None
    # Ranked like the evaluation: item ids as the store grounds them.
    for event in assistant.ask(example["user"], example["query"], k=cuts[0], distinct_titles=False):
        if isinstance(event, Profile):
            profile = event
        elif isinstance(event, Recommendations):
            recommendations = event
        elif isinstance(event, Done):
            done = event
    assert profile is not None and recommendations is not None and done is not None
    target = assistant.ws.store.item(example["target_item"]).item_id
    return Rollout(
        example_id=example["id"],
        user=example["user"],
        target=target,
        turns=list(done.turns),
        profile=profile.profile,
        fallback=profile.fallback,
        reason=profile.reason,
        stats=dict(done.stats),
        ranking=[r.item.item_id for r in recommendations.items],
        cutoffs=cuts,
        group=group,
    )


def rollouts(
    ws: Workspace,
    policy: TorchPolicy,
    examples: Sequence[Example],
    *,
    config: AssistantConfig,
    group_size: int,
    cuts: tuple[int, int],
) -> list[Rollout]:
    """``group_size`` rollouts of each example, all in lockstep (their turns batched).

    Returned grouped: rollouts ``[g * group_size, (g + 1) * group_size)`` answer example ``g``.
    """
    assistant = Assistant(ws, policy, config)
    jobs = [
        (lambda e=e, g=g: ask(assistant, e, cuts=cuts, group=g))
        for g, e in enumerate(examples)
        for _ in range(group_size)
    ]
    return policy.lockstep.run(jobs)
