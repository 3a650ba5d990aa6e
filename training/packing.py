"""Scoring a group of rollouts in one pass: their shared prompt once, each branch after it.

The ``G`` rollouts of a query share their first prompt (system prompt, global memory, query),
and each later turn's prompt is the earlier prompt, the model's completion and the memory it
retrieved. Scored turn by turn, as the first GRPO loop did, a query costs ``G`` copies of the
first prompt for the first turns, and ``G`` copies of it plus the first completions again for
the second turns. Here a rollout's turns collapse into one *path* (the last turn's sequence,
with every turn's completion marked as scored) whenever each prompt starts with the tokens
before it, and a query's paths are packed into one row: the prefix they share, then each
path's own tail. The prefix runs once; its keys and values are repeated for every tail, and the
tails run after it as one padded batch, position ids continuing from the prefix, so every
scored token gets exactly the logits it would get alone (float rounding aside;
``tests/training/test_packing.py`` checks it against :func:`mrrec_train.policy.turn_logprobs`).
The gradient reaches the shared prefix from all branches through the repeated keys and values,
as it would from separate copies. (The tails once ran in the same row as the prefix under a
block mask; attention then costs every pair of the row's tokens, half of the pass at ~3,400
tokens, where a tail needs the prefix and itself only.)

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
    """Log-probability of each of ``row``'s scored tokens, in ``row.targets`` order: the shared
    prefix once, then every branch's tail in one padded batch behind the prefix's keys and
    values.

    ``model`` is a Hugging Face causal LM (or a PEFT model around one). The LM head runs only at
    the predicting positions (a 49k-vocabulary logit per prompt token would cost more memory
    than the rest of the pass)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder, head = base.get_decoder(), base.get_output_embeddings()
    shared = row.branch.count(-1)  # the prefix is the row's first tokens
    tails: dict[int, list[int]] = {}  # branch -> its row indices, in order
    for i in range(shared, len(row.ids)):
        tails.setdefault(row.branch[i], []).append(i)
    width = max(len(t) for t in tails.values())
    where: dict[int, int] = {}  # row index -> index into the flattened hidden states
    ids, positions, keep = [], [], []
    for b, tail in enumerate(tails.values()):
        pad = width - len(tail)
        ids.append([row.ids[i] for i in tail] + [0] * pad)  # pads: never seen, never read
        last = row.position_ids[tail[-1]]
        positions.append(
            [row.position_ids[i] for i in tail] + list(range(last + 1, last + 1 + pad))
        )
        keep.append([1] * (shared + len(tail)) + [0] * pad)
        where.update((i, shared + b * width + j) for j, i in enumerate(tail))
    where.update((i, i) for i in range(shared))

    def tensor(x: list) -> torch.Tensor:
        return torch.tensor(x, device=device)

    hidden = []
    cache = None
    with autocast_context(device, autocast):
        if shared:
            out = decoder(
                input_ids=tensor([row.ids[:shared]]),
                position_ids=tensor([row.position_ids[:shared]]),
                use_cache=True,
            )
            hidden.append(out.last_hidden_state[0])
            cache = out.cache
            cache.batch_repeat_interleave(len(tails))
        out = decoder(
            input_ids=tensor(ids),
            position_ids=tensor(positions),
            attention_mask=tensor(keep),
            cache=cache,
            use_cache=cache is not None,
        )
        hidden.append(out.last_hidden_state.reshape(-1, out.last_hidden_state.shape[-1]))
        states = torch.cat(hidden)[tensor([where[p] for p in row.predictors])]
        logits = head(states)
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tensor(row.targets)[:, None])[:, 0]


class PackedScorer(torch.nn.Module):
    """:func:`packed_logprobs` as one module call: DDP must see a training pass as a single
    forward of the module it wraps, and this pass calls the decoder twice."""

    def __init__(
        self, model: torch.nn.Module, *, device: torch.device, autocast: torch.dtype | None
    ) -> None:
        super().__init__()
        self.model = model
        self.device = device
        self.autocast = autocast

    def forward(self, row: PackedRow) -> torch.Tensor:
        return packed_logprobs(self.model, row, device=self.device, autocast=self.autocast)
