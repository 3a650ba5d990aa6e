"""Rollout decoding that prefills each prompt token once: a token tree over one KV cache.

A GRPO step's rollouts repeat themselves. The ``G`` rollouts of a query start from the same
prompt, and each later turn's prompt is the earlier prompt, the completion the model just wrote
and the memory it retrieved. ``model.generate`` prefills every row's whole prompt at every
turn: for 2 queries x 4 rollouts x 2 turns about three times the tokens that are new.

:class:`TokenTree` keeps every token of the step's rollouts as a node of a trie (a prompt that
starts like an earlier sequence shares its nodes) and every node's key and value in one cache
of batch size 1. A forward pass appends new nodes for many rows at once; an attention mask lets
each new node see its ancestors and itself only, and its position id is its depth, so its
logits are those of its own sequence alone (float rounding aside:
``tests/training/test_sampler.py``). Decoding appends one node per live row per step.

Masked attention over the whole tree would cost every new node the whole step's nodes (~8,000
by the end of a step of 8 queries x 4 rollouts of 2 turns), where a row needs its ancestors
(~1,500). So a pass splits its new nodes by branch, the first node below the prefix they all
share (in a GRPO step: one group per query, its rollouts), and each group attends over the
nodes its members see only: a batch-32 step at 8,500 nodes 358 -> 256 ms, at 10,700 426 -> 302.

Groups are split again below their own shared prefix while that cuts their attention's work
(queries whose prompts start alike would fall in one group), the cache is a buffer each pass
writes into (not a concatenation per pass), and with ``keep_inputs_of`` every node's input to
one decoder layer is kept, for a loss pass that starts there (:meth:`TokenTree.layer_inputs`).

Sampling is plain: softmax of the logits over the temperature, one draw per row from a seeded
generator (temperature 0: argmax), the same distribution as ``generate`` with ``top_k=0`` and
``top_p=1``. A row ends at an end token, when its text contains a stop string, or at
``max_new_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mrrec_train.policy import autocast_context

#: Tokens decoded back when checking a row's text for a stop string (longer than any of them).
STOP_WINDOW = 12
#: The attention the tree's passes run (registered below).
TREE_ATTENTION = "sdpa_grouped_kv"
#: A group of a pass's rows is split when that cuts its attention's work by this share (each
#: group is one more attention call per layer, with its own gathers of keys and values).
SPLIT_GAIN = 0.25


def _grouped_kv_sdpa(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    tree_groups: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Transformers' SDPA attention, but with ``enable_gqa`` under a mask too. Transformers
    copies each key/value head out to its query heads whenever a mask is given on CPU, and a
    tree pass always has one: at 8,000 nodes that copy made a batch-32 decode step ~1.2x slower.
    Same arithmetic, same logits.

    ``tree_groups`` (from :meth:`TokenTree.forward`): ``(rows, columns, visible)`` per group of
    new nodes, which then attend over their ``columns`` only, under ``visible``."""
    if tree_groups is not None:
        out = torch.empty_like(query)
        for rows, columns, visible in tree_groups:  # (index_select: ~2x advanced indexing)
            attended = torch.nn.functional.scaled_dot_product_attention(
                query.index_select(2, rows),
                key.index_select(2, columns),
                value.index_select(2, columns),
                attn_mask=visible,
                scale=scaling,
                enable_gqa=True,
            )
            out.index_copy_(2, rows, attended)
        return out.transpose(1, 2).contiguous(), None
    if attention_mask is not None:
        attention_mask = attention_mask[:, :, :, : key.shape[-2]]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    out = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        is_causal=query.shape[2] > 1 and attention_mask is None and causal,
        enable_gqa=True,
    )
    return out.transpose(1, 2).contiguous(), None


def _register_tree_attention() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(TREE_ATTENTION, _grouped_kv_sdpa)
    AttentionMaskInterface.register(TREE_ATTENTION, sdpa_mask)


class _TreeKV:
    """The tree's keys and values, per layer ``[1, heads, nodes, head_dim]``: a pass writes its
    new nodes' after the others' into a buffer with room to spare (grown by doubling) and
    attends over a view of the filled part. Transformers' ``DynamicCache`` concatenates a
    layer's whole cache with the new nodes at every pass: ~4.6 s of a 56 s rollout phase of 8
    queries, at ~8,000 nodes by its end."""

    def __init__(self) -> None:
        self.buffers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.filled: dict[int, int] = {}

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, **_: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.filled.get(layer_idx, 0)
        end = start + key.shape[2]
        k, v = self.buffers.get(layer_idx, (key[:, :, :0], value[:, :, :0]))
        if end > k.shape[2]:
            room = max(end, 2 * k.shape[2], 256)
            grown = []
            for old, new in ((k, key), (v, value)):
                buffer = new.new_empty(new.shape[0], new.shape[1], room, new.shape[3])
                buffer[:, :, :start] = old[:, :, :start]
                grown.append(buffer)
            k, v = grown
            self.buffers[layer_idx] = (k, v)
        k[:, :, start:end] = key
        v[:, :, start:end] = value
        self.filled[layer_idx] = end
        return k[:, :, :end], v[:, :, :end]


@dataclass(frozen=True)
class _Chain:
    """Nodes ``first..last`` appended in a row below ``base`` (the path above ``first``)."""

    first: int
    last: int
    base: list[int]


def _split(chains: Sequence[_Chain]) -> list[list[_Chain]]:
    """``chains`` grouped by the first node below the prefix of base nodes they all share (a
    chain with no base node below it in a group of its own)."""
    bases = [c.base for c in chains]
    shared, shortest = 0, min(len(b) for b in bases)
    while shared < shortest and all(b[shared] == bases[0][shared] for b in bases):
        shared += 1
    members: dict[int, list[_Chain]] = {}
    for c in chains:
        members.setdefault(c.base[shared] if len(c.base) > shared else c.first, []).append(c)
    return list(members.values())


class TokenTree:
    """Token sequences as a trie whose nodes' keys and values sit in one KV cache."""

    def __init__(
        self, model: Any, device: torch.device, autocast: Any = None, *, keep_inputs_of: int = 0
    ) -> None:
        """``model``'s attention is switched to :data:`TREE_ATTENTION` (the same function).
        With ``keep_inputs_of`` above 0, every node's input to that decoder layer is kept (see
        :meth:`layer_inputs`)."""
        _register_tree_attention()
        model.set_attn_implementation(TREE_ATTENTION)
        self.model = model
        self.device = device
        self.autocast = autocast
        self.cache = _TreeKV()
        self.token: list[int] = []
        self.parent: list[int] = []
        self.depth: list[int] = []
        self._child: dict[tuple[int, int], int] = {}  # the shared node below, per token
        self._below: dict[tuple[int, int], list[int]] = {}  # every node below, per token
        self._forwarded = 0  # nodes already in the cache
        self._inputs: list[torch.Tensor] = []  # per pass, [new nodes, hidden]
        self._hook = None
        if keep_inputs_of:
            layer = model.get_decoder().layers[keep_inputs_of]
            self._hook = layer.register_forward_pre_hook(self._keep_inputs, with_kwargs=True)

    def close(self) -> None:
        """Stops keeping layer inputs (the model may outlive the tree: one with no adapter to
        merge is decoded as is)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _keep_inputs(self, _layer: Any, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        self._inputs.append(hidden[0].detach())

    def layer_inputs(self, ids: Sequence[int]) -> torch.Tensor | None:
        """The kept layer inputs (see ``keep_inputs_of``) of the tree's nodes along ``ids``,
        ``[len(ids), hidden]``: those of a sequence decoded here, as its own pass would compute
        them (float rounding aside). The last token may have no node (a completion's last
        sampled token is never run): its input is zeros, which only that token's own output,
        never read, depends on. None when no input was kept or another token has no node."""
        if not self._inputs:
            return None
        # Several nodes may hold one path (rows that sampled the same token, a prompt run
        # again for its logits): follow them all, any of them has the inputs.
        nodes: list[int] = []
        frontier = [-1]
        for t in ids:
            frontier = [c for n in frontier for c in self._below.get((n, t), ())]
            if not frontier:
                break
            nodes.append(frontier[0])
        if len(nodes) < len(ids) - 1:
            return None
        if len(self._inputs) > 1:
            self._inputs = [torch.cat(self._inputs)]
        if nodes and max(nodes) >= len(self._inputs[0]):
            return None  # appended, not run yet
        out = self._inputs[0][torch.tensor(nodes, dtype=torch.long)]
        if len(nodes) < len(ids):
            out = torch.cat([out, out.new_zeros(1, out.shape[1])])
        return out

    def __len__(self) -> int:
        return len(self.token)

    def path(self, node: int) -> list[int]:
        """The nodes from the root to ``node``, both included (none for the root, ``-1``)."""
        out = []
        while node >= 0:
            out.append(node)
            node = self.parent[node]
        return out[::-1]

    def locate(self, ids: Sequence[int]) -> tuple[int, int]:
        """(the deepest node on ``ids``'s path already in the tree, the tokens it covers)."""
        node = -1
        for i, t in enumerate(ids):
            nxt = self._child.get((node, t))
            if nxt is None:
                return node, i
            node = nxt
        return node, len(ids)

    def append(self, node: int, tokens: Sequence[int], *, share: bool = True) -> _Chain:
        """Adds ``tokens`` below ``node`` (not yet run: see :meth:`forward`); with ``share``,
        later sequences that start the same way find them."""
        if not tokens:
            raise ValueError("nothing to append")
        base = self.path(node)
        first = len(self)
        parent = node
        for t in tokens:
            self.token.append(t)
            self.parent.append(parent)
            self.depth.append(self.depth[parent] + 1 if parent >= 0 else 0)
            parent = len(self) - 1
            self._below.setdefault((self.parent[parent], t), []).append(parent)
            if share:
                self._child.setdefault((self.parent[parent], t), parent)
        return _Chain(first, parent, base)

    def forward(self, chains: Sequence[_Chain]) -> torch.Tensor:
        """Runs every appended node not run yet, in one pass; returns the logits after each
        chain's last node, ``[len(chains), vocab]``."""
        old, total = self._forwarded, len(self)
        visible = torch.zeros((total - old, total), dtype=torch.bool)
        for c in chains:
            block = slice(c.first - old, c.last - old + 1)
            if c.base:
                visible[block, torch.tensor(c.base)] = True
            n = c.last - c.first + 1
            visible[block, c.first : c.last + 1] = torch.ones((n, n), dtype=torch.bool).tril()
        mask = torch.zeros(visible.shape, dtype=torch.float32)
        mask.masked_fill_(~visible, torch.finfo(torch.float32).min)
        groups = self._groups(chains, visible)
        with torch.no_grad(), autocast_context(self.device, self.autocast):
            out = self.model(
                input_ids=torch.tensor([self.token[old:]], device=self.device),
                position_ids=torch.tensor([self.depth[old:]], device=self.device),
                attention_mask=mask[None, None].to(self.device),
                cache=self.cache,
                use_cache=True,
                logits_to_keep=torch.tensor([c.last - old for c in chains], device=self.device),
                tree_groups=groups,
            )
        self._forwarded = total
        return out.logits[0].float()

    def _groups(
        self, chains: Sequence[_Chain], visible: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None:
        """The pass's new nodes grouped by the first node below the prefix every chain shares,
        each group with the nodes its members see (see :func:`_grouped_kv_sdpa`); None when
        there is one group. A group is split again below its own shared prefix while that cuts
        its attention's work (rows x columns seen) by :data:`SPLIT_GAIN`: queries whose prompts
        start alike fall in one group at first, and each of their rows would attend over all
        of their nodes."""
        old = self._forwarded
        # Every new node must sit in one group (its output is written by its group only).
        if sum(c.last - c.first + 1 for c in chains) != len(self) - old:
            return None
        top = _split(chains)
        if len(top) < 2:
            return None
        seen_by: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

        def attended(group: list[_Chain]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            key = tuple(c.first for c in group)  # (not id(): a dropped split's list is freed)
            if key not in seen_by:
                rows = torch.cat([torch.arange(c.first - old, c.last - old + 1) for c in group])
                seen = visible[rows]
                seen_by[key] = (rows, seen.any(0).nonzero()[:, 0], seen)
            return seen_by[key]

        def work(groups: list[list[_Chain]]) -> int:
            return sum(len(attended(g)[0]) * len(attended(g)[1]) for g in groups)

        done, todo = [], top
        while todo:
            group = todo.pop(0)
            parts = _split(group) if len(group) > 1 else [group]
            if len(parts) > 1 and work(parts) < (1 - SPLIT_GAIN) * work([group]):
                todo.extend(parts)
            else:
                done.append(group)
        out = []
        for group in done:
            rows, columns, seen = attended(group)
            out.append(
                (
                    rows.to(self.device),
                    columns.to(self.device),
                    seen[:, columns][None, None].to(self.device),
                )
            )
        return out

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        temperature: float,
        generator: torch.Generator,
        eos: set[int],
        stop: Sequence[str],
        tokenizer: Any,
    ) -> list[list[int]]:
        """The sampled completion of each prompt (ids; an end token, when sampled, included).

        Only the part of each prompt that is not in the tree yet is run, and a prompt that
        repeats one before it in the batch shares its nodes."""
        chains = []
        for ids in prompts:
            node, matched = self.locate(ids)
            if matched == len(ids):  # all there, but its logits are not kept: its last again
                node, matched = self.parent[node], len(ids) - 1
                chains.append(self.append(node, ids[matched:], share=False))
            else:
                chains.append(self.append(node, ids[matched:]))
        logits = self.forward(chains)
        leaves = [c.last for c in chains]
        completions: list[list[int]] = [[] for _ in prompts]
        live = list(range(len(prompts)))
        for step in range(max_new_tokens):
            going = []
            for i, token in zip(live, _sample(logits, temperature, generator), strict=True):
                completions[i].append(token)
                text = tokenizer.decode(completions[i][-STOP_WINDOW:], skip_special_tokens=True)
                if token not in eos and not any(s in text for s in stop):
                    going.append(i)
            if not going or step + 1 == max_new_tokens:
                break
            chains = [self.append(leaves[i], [completions[i][-1]]) for i in going]
            logits = self.forward(chains)
            for i, c in zip(going, chains, strict=True):
                leaves[i] = c.last
            live = going
        return completions


def _sample(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> list[int]:
    """One token per row from softmax(logits / temperature) (temperature 0: the argmax). By
    the inverse of the cumulative distribution: the first token whose cumulative probability
    exceeds a uniform draw; ``torch.multinomial`` draws the same distribution in ~33 ms at 32
    rows of a 49k vocabulary on this CPU, this in ~0.7."""
    if temperature <= 0:
        return logits.argmax(-1).tolist()
    cdf = torch.softmax(logits / temperature, dim=-1).cumsum(-1)
    u = torch.rand(cdf.shape[0], 1, generator=generator, dtype=cdf.dtype) * cdf[:, -1:]
    # right=True: a token of probability 0 (a flat step of the cdf) is never drawn.
    drawn = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[1] - 1)
    return drawn[:, 0].tolist()
