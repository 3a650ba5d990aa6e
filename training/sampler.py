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
        for rows, columns, visible in tree_groups:
            out[:, :, rows] = torch.nn.functional.scaled_dot_product_attention(
                query[:, :, rows],
                key[:, :, columns],
                value[:, :, columns],
                attn_mask=visible,
                scale=scaling,
                enable_gqa=True,
            )
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


@dataclass(frozen=True)
class _Chain:
    """Nodes ``first..last`` appended in a row below ``base`` (the path above ``first``)."""

    first: int
    last: int
    base: list[int]


class TokenTree:
    """Token sequences as a trie whose nodes' keys and values sit in one KV cache."""

    def __init__(self, model: Any, device: torch.device, autocast: Any = None) -> None:
        """``model``'s attention is switched to :data:`TREE_ATTENTION` (the same function)."""
        from transformers import DynamicCache

        _register_tree_attention()
        model.set_attn_implementation(TREE_ATTENTION)
        self.model = model
        self.device = device
        self.autocast = autocast
        self.cache = DynamicCache()
        self.token: list[int] = []
        self.parent: list[int] = []
        self.depth: list[int] = []
        self._child: dict[tuple[int, int], int] = {}
        self._forwarded = 0  # nodes already in the cache

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
        there is one group."""
        bases = [c.base for c in chains]
        shared, shortest = 0, min(len(b) for b in bases)
        while shared < shortest and all(b[shared] == bases[0][shared] for b in bases):
            shared += 1
        members: dict[int, list[_Chain]] = {}
        for c in chains:  # a chain with no base node below the shared prefix starts its own
            members.setdefault(c.base[shared] if len(c.base) > shared else c.first, []).append(c)
        old = self._forwarded
        # Every new node must sit in one group (its output is written by its group only).
        if len(members) < 2 or sum(c.last - c.first + 1 for c in chains) != len(self) - old:
            return None
        out = []
        for group in members.values():
            rows = torch.cat([torch.arange(c.first - old, c.last - old + 1) for c in group])
            seen = visible[rows]
            columns = seen.any(0).nonzero()[:, 0]
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
    if temperature <= 0:
        return logits.argmax(-1).tolist()
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).tolist()
