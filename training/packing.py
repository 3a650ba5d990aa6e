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

The pass runs the decoder's layers itself (embeddings or given layer inputs, each layer with the
prefix's keys and values kept for the branches, the final norm), so it can start above layer 0:
GRPO's adapter covers the top layers, and the token tree that decoded the rollouts kept every
token's input to the lowest of them (:func:`row_inputs`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

    @property
    def shared(self) -> int:
        """Length of the shared prefix (the row's first tokens)."""
        return self.branch.count(-1)

    def tails(self) -> list[list[int]]:
        """Each branch's row indices after the prefix, in order (the row holds the prefix,
        then each branch's tail in turn)."""
        out: dict[int, list[int]] = {}
        for i in range(self.shared, len(self.ids)):
            out.setdefault(self.branch[i], []).append(i)
        return list(out.values())


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


def row_inputs(
    row: PackedRow, inputs_along: Callable[[list[int]], torch.Tensor | None]
) -> torch.Tensor | None:
    """The layer inputs of ``row``'s tokens for :func:`packed_logprobs`, from ``inputs_along``
    (those of one token sequence, or None: see
    :meth:`mrrec_train.sampler.TokenTree.layer_inputs`); None when a branch has none."""
    shared = row.shared
    prefix = row.ids[:shared]
    pieces = []
    for tail in row.tails():
        got = inputs_along(prefix + [row.ids[i] for i in tail])
        if got is None:
            return None
        pieces.extend([got[:shared], got[shared:]] if not pieces else [got[shared:]])
    return torch.cat(pieces)


class _SharedPrefixKV:
    """The cache a packed pass's attention layers write to: the prefix pass stores each
    layer's keys and values, and the branches' pass puts them before every branch's own
    (expanded, not copied, so the gradient reaches the prefix from every branch)."""

    def __init__(self) -> None:
        self.kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.branches = 0  # 0 while the prefix runs

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, **_: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.branches:
            self.kv[layer_idx] = (key, value)
            return key, value
        k, v = self.kv[layer_idx]
        k, v = (x.expand(self.branches, -1, -1, -1) for x in (k, v))
        return torch.cat([k, key], dim=2), torch.cat([v, value], dim=2)


def packed_logprobs(
    model: torch.nn.Module,
    row: PackedRow,
    *,
    device: torch.device,
    autocast: torch.dtype | None,
    start_layer: int = 0,
    inputs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-probability of each of ``row``'s scored tokens, in ``row.targets`` order: the shared
    prefix once, then every branch's tail in one padded batch behind the prefix's keys and
    values.

    With ``inputs`` (``[len(row.ids), hidden]``: the input of decoder layer ``start_layer`` at
    each row token, kept when the rollouts were decoded, see
    :meth:`mrrec_train.sampler.TokenTree.layer_inputs`), the pass starts at that layer. Below
    the lowest trained layer nothing is trained, so the layers there would compute the same
    states again with no gradient to give.

    ``model`` is a Hugging Face causal LM (or a PEFT model around one). The LM head runs only at
    the predicting positions (a 49k-vocabulary logit per prompt token would cost more memory
    than the rest of the pass)."""
    if (inputs is None) != (start_layer == 0):
        raise ValueError("a pass starts at layer 0 from the tokens, or above it from its inputs")
    if inputs is not None:
        inputs = inputs.to(device)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder, head = base.get_decoder(), base.get_output_embeddings()
    shared = row.shared
    tails = row.tails()
    width = max(len(t) for t in tails)
    where: dict[int, int] = {}  # row index -> index into the flattened hidden states
    # Row indices of the branches' batch, ``width`` each; a pad repeats its branch's last
    # token, never seen by a real token (pads sit after them), never read.
    index, positions = [], []
    for b, tail in enumerate(tails):
        pad = width - len(tail)
        index.append(tail + [tail[-1]] * pad)
        last = row.position_ids[tail[-1]]
        positions.append(
            [row.position_ids[i] for i in tail] + list(range(last + 1, last + 1 + pad))
        )
        where.update((i, shared + b * width + j) for j, i in enumerate(tail))
    where.update((i, i) for i in range(shared))

    def tensor(x: list) -> torch.Tensor:
        return torch.tensor(x, device=device)

    def states_of(rows: torch.Tensor) -> torch.Tensor:
        if inputs is None:
            return decoder.embed_tokens(tensor(row.ids)[rows])
        return inputs[rows]

    def run(hidden: torch.Tensor, position_ids: torch.Tensor, mask: torch.Tensor | None):
        rotary = decoder.rotary_emb(hidden, position_ids=position_ids)
        for layer in decoder.layers[start_layer : decoder.config.num_hidden_layers]:
            hidden = layer(
                hidden,
                attention_mask=mask,
                position_ids=position_ids,
                position_embeddings=rotary,
                cache=cache,
                use_cache=True,
            )
        return decoder.norm(hidden)

    hidden = []
    cache = _SharedPrefixKV()
    with autocast_context(device, autocast):
        if shared:
            prefix = torch.arange(shared, device=device)
            out = run(states_of(prefix)[None], tensor([row.position_ids[:shared]]), None)
            hidden.append(out[0])
        cache.branches = len(tails) if shared else 0
        # Each branch token sees the whole prefix and its branch up to itself.
        mask = torch.ones(width, shared + width, dtype=torch.bool, device=device).tril(shared)
        out = run(states_of(tensor(index)), tensor(positions), mask[None, None])
        hidden.append(out.reshape(-1, out.shape[-1]))
        states = torch.cat(hidden)[tensor([where[p] for p in row.predictors])]
        logits = head(states)
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tensor(row.targets)[:, None])[:, 0]


class PackedScorer(torch.nn.Module):
    """:func:`packed_logprobs` as one module call: DDP must see a training pass as a single
    forward of the module it wraps, and this pass runs the layers twice. ``start_layer``: where
    a pass given its inputs starts (see :func:`packed_logprobs`)."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: torch.device,
        autocast: torch.dtype | None,
        start_layer: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        self.device = device
        self.autocast = autocast
        self.start_layer = start_layer

    def forward(self, row: PackedRow, inputs: torch.Tensor | None = None) -> torch.Tensor:
        return packed_logprobs(
            self.model,
            row,
            device=self.device,
            autocast=self.autocast,
            start_layer=self.start_layer if inputs is not None else 0,
            inputs=inputs,
        )
