"""Scoring a group of rollouts in one pass: their shared prompt once, each branch after it.

The ``G`` rollouts of a query share their first prompt (system prompt, global memory, query),
and each later turn's prompt is the earlier prompt, the model's completion and the memory it
retrieved. Scored turn by turn, as the first GRPO loop did, a query costs ``G`` copies of the
first prompt for the first turns, and ``G`` copies of it plus the first completions again for
the second turns. Here a rollout's turns collapse into one *path* (the last turn's sequence,
with every turn's completion marked as scored) whenever each prompt starts with the tokens
before it, and a query's paths are packed into one row: the prefix they share, then each
path's own tail. A block attention mask lets a tail see the prefix and itself only, and
position ids continue from the prefix, so every scored token gets exactly the logits it would
get alone (float rounding aside; ``tests/training/test_packing.py`` checks it against
:func:`mrrec_train.policy.turn_logprobs`). The gradient reaches the shared prefix from all
branches, as it would from separate copies.

The shared prefix stops before the first scored token of any path, so every scored token sits
in exactly one branch and carries that rollout's advantage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mrrec_train.policy import ScoredTurn, autocast_context


@dataclass(frozen=True)
class Path:
    """One token sequence and the spans of it that are scored, ``(start, length)`` each."""

    ids: list[int]
    spans: list[tuple[int, int]]
    owner: int


def rollout_paths(turns: Sequence[ScoredTurn], owner: int) -> list[Path]:
    """A rollout's turns as few paths as possible: a turn whose prompt starts with the path so
    far extends it (its tokens re-tokenised the same way); any other starts a new path."""
    paths: list[Path] = []
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    for t in turns:
        prompt = list(t.prompt_ids)
        if ids and prompt[: len(ids)] != ids:
            paths.append(Path(ids, spans, owner))
            spans = []
        ids = [*prompt, *t.completion_ids]
        spans = [*spans, (len(prompt), len(t.completion_ids))]
    if ids:
        paths.append(Path(ids, spans, owner))
    return paths


@dataclass(frozen=True)
class PackedRow:
    """Paths packed behind their shared prefix, and where each scored token is."""

    ids: list[int]
    position_ids: list[int]
    #: The branch each token belongs to (``-1`` for the shared prefix).
    branch: list[int]
    #: Per scored token: its id, the row index of the logit that predicts it, and its owner.
    targets: list[int]
    predictors: list[int]
    owners: list[int]

    def attention_mask(self, dtype: torch.dtype) -> torch.Tensor:
        """``[1, 1, L, L]`` additive mask: causal, and a branch sees the prefix and itself."""
        branch = torch.tensor(self.branch)
        index = torch.arange(len(self.ids))
        causal = index[None, :] <= index[:, None]
        visible = (branch[None, :] == -1) | (branch[None, :] == branch[:, None])
        mask = torch.zeros((len(self.ids), len(self.ids)), dtype=dtype)
        mask.masked_fill_(~(causal & visible), torch.finfo(dtype).min)
        return mask[None, None]


def _common_prefix(paths: Sequence[Path]) -> int:
    first = paths[0].ids
    n = min(len(p.ids) for p in paths)
    # Never into a scored token: each one must belong to one branch (one owner).
    n = min([n, *(start for p in paths for start, _ in p.spans)])
    for i in range(n):
        if any(p.ids[i] != first[i] for p in paths):
            return i
    return n


def pack(paths: Sequence[Path], *, share: bool = True) -> PackedRow:
    """``paths`` in one row: their common prefix once (``share``), then each path's tail."""
    if not paths:
        raise ValueError("nothing to pack")
    shared = _common_prefix(paths) if share and len(paths) > 1 else 0
    ids = list(paths[0].ids[:shared])
    positions = list(range(shared))
    branch = [-1] * shared
    targets: list[int] = []
    predictors: list[int] = []
    owners: list[int] = []
    for b, path in enumerate(paths):
        offset = len(ids) - shared  # row index of path position j >= shared: offset + j
        tail = path.ids[shared:]
        ids.extend(tail)
        positions.extend(range(shared, shared + len(tail)))
        branch.extend([b] * len(tail))
        for start, length in path.spans:
            for j in range(start, start + length):
                if j == 0:
                    raise ValueError("a scored token needs a token before it")
                targets.append(path.ids[j])
                predictors.append(j - 1 if j - 1 < shared else offset + j - 1)
                owners.append(path.owner)
    return PackedRow(ids, positions, branch, targets, predictors, owners)


def packed_logprobs(
    model: torch.nn.Module,
    row: PackedRow,
    *,
    device: torch.device,
    autocast: torch.dtype | None,
) -> torch.Tensor:
    """Log-probability of each of ``row``'s scored tokens, in ``row.targets`` order.

    The LM head runs only at the predicting positions (a 49k-vocabulary logit per prompt token
    would cost more memory than the rest of the pass)."""
    ids = torch.tensor([row.ids], device=device)
    positions = torch.tensor([row.position_ids], device=device)
    keep = sorted(set(row.predictors))
    where = {p: i for i, p in enumerate(keep)}
    mask = row.attention_mask(torch.float32).to(device)
    with autocast_context(device, autocast):
        logits = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            logits_to_keep=torch.tensor(keep, device=device),
        ).logits[0]
    rows = torch.tensor([where[p] for p in row.predictors], device=device)
    targets = torch.tensor(row.targets, device=device)
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp[rows, targets]
