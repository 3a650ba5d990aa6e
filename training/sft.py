"""SFT warm start: teach the small model the tool protocol on well-formed teacher traces.

A 135M model does not discover the protocol from RL alone (METHOD.md §3), so GRPO starts from a
policy fine-tuned on traces in exactly the device's format. The traces are made by driving the
assistant's own loop (``Assistant.ask``) with a scripted *teacher* in the model's place, so the
prompts, the memory shown and its escaping are byte-for-byte what the model will see.

The teacher procedure, per training example (query, user, held-out target item):

1. **Reason and call memory.** The reasoning names what to look up ("Check which comedy they
   liked."), then ``memory_retrieval`` is called with aspects taken from the query: what the
   user liked in the facet ("comedy they liked") and the use case ("a long flight"). With
   ``teacher_calls = 2`` a second call reads the profile tier ("favourite categories", "era").
2. **Receive real memory.** The loop runs the real hybrid search over the user's history-only
   memory (built from interactions before the target), within the real token budget.
3. **Answer.** The profile is written from the shown memory only: "A comedy like T1, T2 and
   T3.", where the T are items the user rated well (4/5 or more) that the shown memories cite,
   those that fit the facet first. The hindsight is in the choice: of those items, the three
   closest to the target are named, closeness being the sum of two z-scores over the
   candidates: catalog text (by the embedder) and item-kNN similarity (grounding's seed CF,
   which the named titles feed). (``sft.teacher_choice = "strength"`` names the most liked
   instead, without hindsight: its traces rank worse and its student is no better,
   docs/RESULTS.md.) The reasoning and
   ``useful_memory_ids`` cite the memories that name them (at most three, and only ids the model
   was shown); the reasoning only names them ("Use m12."), since the profile already lists
   the items and every token is decoded on the device's CPU (an earlier teacher listed them in
   both: 40 more tokens, 0.6 s a query).

So every word of a trace is something the model could have written from the query and its
memory; the held-out item only decides which of the remembered items the profile names, as a
reward would. (The first teacher wrote the target's own genres and keywords: grounded, those
profiles put the target in the top 10 for 76% of 50 validation queries, and a model that cannot
see the target learned only their shape. Under fused grounding this one reaches NDCG@10 0.181
on the 689 val queries of ml100k-scenarios-v2, against 0.172 when it chose by text alone
(paired +0.008, 95% CI +0.003 to +0.015) and 0.020 for the query alone:
``benchmarks/teacher.py``; and each step of it can be imitated.) Loss is on the model's own
tokens only: each turn's completion and its end-of-turn token, never the prompt, the global
memory or the retrieved memory (which live in later prompts).

Entry point: ``python -m mrrec_train.sft --recipe tiny`` (also under ``torchrun``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrrec_edge._core import (
    GROUNDING_SIGNALS,
    GroundRequest,
    MemoryEntry,
    render_answer,
    render_call,
    tool_responses,
)
from mrrec_edge.assistant import Assistant, AssistantConfig, Done, Profile
from mrrec_edge.files import atomic_file
from mrrec_edge.memory.records import Record, label, signal
from mrrec_edge.memory.stats import LIKED, by_strength
from mrrec_edge.scenarios import Facet
from mrrec_edge.scenarios.queries import CatalogItem, fits
from mrrec_edge.workspace import Workspace
from mrrec_train import data as data_mod
from mrrec_train.dist import Dist
from mrrec_train.lora import save_adapter
from mrrec_train.policy import ScoredTurn, encode_turn
from mrrec_train.recipe import TEACHER_CHOICES, Recipe
from mrrec_train.rollout import assistant_config
from mrrec_train.trainer import (
    Stage,
    autocast_dtype,
    backward_all,
    dummy_turn,
    grad_norm_step,
    load_policy,
    logprobs,
    micro_batches,
    optimizer_for,
    stage_main,
    wrap,
)

log = logging.getLogger(__name__)

TRACES = "traces.jsonl"
_SEED_CF = GROUNDING_SIGNALS.index("seed_cf")


class ChatTokenizer:
    """The chat template and token counts of a Hugging Face tokenizer (the model interface's
    text side, shared by the teacher; the policy has the same methods)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.last_stats = None

    def apply_chat_template(self, messages: Sequence[Mapping[str, Any]]) -> str:
        return self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
        )

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)


def _z(values: Mapping[int, float]) -> dict[int, float]:
    """``values`` z-scored (so the two closeness measures weigh the same)."""
    v = np.array([x if np.isfinite(x) else np.nan for x in values.values()], dtype=np.float64)
    if np.isnan(v).all():
        return dict.fromkeys(values, 0.0)
    v = np.nan_to_num(v, nan=np.nanmin(v))
    std = v.std() or 1.0
    return {k: float((x - v.mean()) / std) for k, x in zip(values, v, strict=True)}


def _clip(text: str, limit: int) -> str:
    text = text.replace("<", "").replace(">", "")  # the grammar's reasoning admits no '<'
    return text if len(text) <= limit else text[: limit - 1].rstrip(" ,;") + "."


def _strip_use_case(use_case: str) -> str:
    for prefix in ("for ", "to "):
        if use_case.startswith(prefix):
            return use_case[len(prefix) :]
    return use_case


def _and_list(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


class Teacher(ChatTokenizer):
    """Writes the turns of one example's trace (see the module doc); a ``TurnModel``."""

    def __init__(
        self,
        tokenizer: Any,
        ws: Workspace,
        example: Mapping[str, Any],
        *,
        calls: int,
        config: AssistantConfig,
        choice: str = "hindsight",
    ) -> None:
        super().__init__(tokenizer)
        if choice not in TEACHER_CHOICES:
            raise ValueError(
                f"unknown teacher choice {choice!r} (one of {', '.join(TEACHER_CHOICES)})"
            )
        self.store = ws.store
        self.embed = ws.embed_query
        self.example = example
        self.choice = choice
        self.calls = max(1, min(calls, config.max_memory_calls))
        self.config = config
        self.target = self.store.item(example["target_item"])

    def stream(self, prompt: str, **_: Any) -> Iterator[str]:
        responses = tool_responses(prompt)
        if len(responses) < self.calls:
            yield self.call(len(responses))
        else:
            shown = dict.fromkeys(i for ids in responses for i in ids)
            yield self.answer([self.store.get_memory(i) for i in shown])

    def call(self, index: int) -> str:
        facet = self.example["facet"]
        use = _strip_use_case(self.example["use_case"])
        if index == 0:
            what = facet["value"].lower()
            think = _clip(f"Check which {what} they liked.", self.config.max_think_chars)
            return render_call(think, [f"{what} they liked", use])
        think = _clip("Check the eras and categories they favour.", self.config.max_think_chars)
        return render_call(think, ["favourite categories", "era"], tier="profile")

    def fits(self, record: Record) -> bool:
        item = CatalogItem(
            str(record["item_id"]),
            record["title"],
            record["year"],
            tuple(record["categories"]),
            tuple(record["keywords"]),
        )
        return fits(self.example["facet"], item)

    def chosen(self, shown: Sequence[MemoryEntry]) -> list[tuple[Record, MemoryEntry]]:
        """Up to three well-rated items the shown memories cite, with the first memory citing
        each: those that fit the facet first, then (``choice``) the closest to the target
        ("hindsight": the sum of two z-scores, catalog text and item-kNN) or the most liked
        ("strength": rating, then the most recent, the order the memory lists them in)."""
        history = {r["record_id"]: r for r in self.store.user_history(self.example["user"])}
        liked: dict[int, tuple[Record, MemoryEntry]] = {}
        for m in shown:
            for rid in m.source_ids:
                r = history.get(rid)
                if r is not None and (signal(r) or 0.0) >= LIKED:
                    liked.setdefault(r["item_id"], (r, m))
        if not liked:
            return []
        if self.choice == "strength":
            order = {
                r["item_id"]: n
                for n, r in enumerate(by_strength([r for r, _ in liked.values()], liked=True))
            }
            return sorted(
                liked.values(), key=lambda rm: (not self.fits(rm[0]), order[rm[0]["item_id"]])
            )[:3]
        items = self.store.items_by_id(list(liked))
        target = self.embed(self.target.text)
        text = {i.item_id: float(np.dot(self.embed(i.text), target)) for i in items}
        collab = {i: self.seed_closeness(r) for i, (r, _) in liked.items()}
        by_text, by_collab = _z(text), _z(collab)
        closeness = {i: by_text[i] + by_collab[i] for i in liked}
        ranked = sorted(
            liked.values(), key=lambda rm: (not self.fits(rm[0]), -closeness[rm[0]["item_id"]])
        )
        return ranked[:3]

    def seed_closeness(self, record: Record) -> float:
        """How far grounding's seed CF, seeded by ``record``'s item alone, lifts the target
        above the rest of the catalog (its z-score)."""
        request = GroundRequest(profile_text=label(record), include_seen=True)
        items, signals, _ = self.store.grounding_signals(request)
        hit = np.flatnonzero(items == self.target.item_id)
        return float(signals[_SEED_CF][hit[0]]) if hit.size else float("-inf")

    def profile(self, chosen: Sequence[tuple[Record, MemoryEntry]]) -> str:
        facet = self.example["facet"]
        phrase = Facet(facet["kind"], facet["value"]).phrase()
        text = phrase[:1].upper() + phrase[1:]
        if chosen:
            text += " like " + _and_list([label(r) for r, _ in chosen])
        else:  # nothing to go on but the request (and "A drama." is too short to be an answer)
            text += " " + self.example["use_case"]
        return _clip(text + ".", self.config.max_profile_chars)

    def answer(self, shown: Sequence[MemoryEntry]) -> str:
        chosen = self.chosen(shown)
        ids = list(dict.fromkeys(m.id for _, m in chosen))
        if ids:
            think = "Use " + _and_list([f"m{i}" for i in ids]) + "."
        else:
            ids = [m.id for m in shown[:1]]
            think = "Nothing they rated well fits; go by the request."
        think = _clip(think, self.config.max_think_chars)
        return render_answer(think, self.profile(chosen), ids)


@dataclass(frozen=True)
class Trace:
    example_id: str
    turns: list[tuple[str, str]]
    profile: str
    fallback: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "example_id": self.example_id,
            "turns": [list(t) for t in self.turns],
            "profile": self.profile,
            "fallback": self.fallback,
        }


def teacher_trace(
    ws: Workspace,
    tokenizer: Any,
    example: Mapping[str, Any],
    *,
    config: AssistantConfig,
    calls: int,
    choice: str = "hindsight",
) -> Trace:
    teacher = Teacher(tokenizer, ws, example, calls=calls, config=config, choice=choice)
    events = list(Assistant(ws, teacher, config).ask(example["user"], example["query"], k=10))
    done = next(e for e in events if isinstance(e, Done))
    profile = next(e for e in events if isinstance(e, Profile))
    return Trace(example["id"], list(done.turns), profile.profile, profile.fallback)


def build_traces(
    ws: Workspace, tokenizer: Any, examples: Sequence[Mapping[str, Any]], *, recipe: Recipe
) -> list[Trace]:
    """Teacher traces for ``examples``; a trace the orchestrator did not accept is dropped."""
    config = assistant_config(recipe.rollout)
    out = []
    for e in examples:
        trace = teacher_trace(
            ws,
            tokenizer,
            e,
            config=config,
            calls=recipe.sft.teacher_calls,
            choice=recipe.sft.teacher_choice,
        )
        if trace.fallback:
            log.warning("teacher trace of %s fell back; skipped", e["id"])
            continue
        out.append(trace)
    return out


def trace_turns(tokenizer: Any, trace: Trace) -> list[ScoredTurn]:
    """The scored sequences of a trace: each turn's completion plus its end-of-turn token."""
    return [ScoredTurn(*encode_turn(tokenizer, p, c, end=True)) for p, c in trace.turns]


def _load_traces(path: Path) -> list[Trace]:
    rows = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return [
        Trace(r["example_id"], [tuple(t) for t in r["turns"]], r["profile"], r["fallback"])
        for r in rows
    ]


def prepare(recipe: Recipe, d: Dist) -> tuple[Workspace, list[dict[str, Any]]]:
    """The dataset and workspace (built by rank 0, prepared under a lock) and the examples."""
    if d.main:
        data_mod.build_dataset(recipe.data)
    d.barrier()
    data_mod.prepare_home(recipe.data)
    return data_mod.open_workspace(recipe.data), data_mod.examples(recipe.data)


def sft_backward(
    trained: Any,
    d: Dist,
    tokenizer: Any,
    turns: Sequence[ScoredTurn],
    micro: int,
    autocast: torch.dtype | None,
) -> tuple[float, int]:
    """Backward of the mean negative log-likelihood of the completions' tokens; returns (sum of
    the NLL, completion tokens)."""
    groups = micro_batches(turns, micro) or [[dummy_turn(tokenizer)]]
    tokens = sum(len(t.completion_ids) for t in turns)
    scale = 1.0 / tokens if tokens else 0.0  # a rank's dummy batch adds nothing
    total = 0.0

    def loss_of(i: int) -> torch.Tensor:
        nonlocal total
        logp, mask = logprobs(trained, groups[i], d=d, tokenizer=tokenizer, autocast=autocast)
        nll = -(logp * mask).sum()
        if tokens:
            total += float(nll.detach())
        return nll * scale

    backward_all(trained, d, groups, loss_of)
    return total, tokens


def train(recipe: Recipe, d: Dist) -> dict[str, Any] | None:
    """Runs (or resumes) the SFT stage into ``recipe.sft_dir``; returns the summary on rank 0."""
    cfg = recipe.sft
    stage = Stage(recipe, "sft", recipe.sft_dir, d)
    ws, examples = prepare(recipe, d)
    tokenizer, model = load_policy(recipe, d)
    traces_path = stage.out / TRACES
    if d.main and not traces_path.is_file():
        traces = build_traces(ws, tokenizer, examples, recipe=recipe)
        with atomic_file(traces_path) as tmp:
            lines = "".join(json.dumps(t.to_dict()) + "\n" for t in traces)
            tmp.write_text(lines, encoding="utf-8")
    d.barrier()
    traces = _load_traces(traces_path)
    autocast = autocast_dtype(recipe, d.device)
    trained = wrap(model, d)
    optimizer, scheduler = optimizer_for(
        model, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps
    )
    start = stage.resume(model, optimizer, scheduler)
    model.train()
    for step in range(start, cfg.steps):
        t0 = time.perf_counter()
        batch = data_mod.batch_for_step(
            traces, step, cfg.batch_size, seed=recipe.seed, rank=d.rank, world=d.world
        )
        turns = [t for trace in batch for t in trace_turns(tokenizer, trace)]
        nll, tokens = sft_backward(trained, d, tokenizer, turns, cfg.micro_batch, autocast)
        norm = grad_norm_step(model, optimizer, scheduler, cfg.max_grad_norm)
        seconds = time.perf_counter() - t0
        metrics = d.mean({"loss": nll / max(1, tokens), "completion_tokens": tokens})
        metrics.update(
            step=step + 1,
            epoch=(step * cfg.batch_size) / max(1, len(traces)),
            lr=scheduler.get_last_lr()[0],
            grad_norm=norm,
            seconds=seconds,
        )
        stage.log(metrics)
        if d.main:
            log.info(
                "sft step %d/%d loss %.4f (%.1fs)", step + 1, cfg.steps, metrics["loss"], seconds
            )
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            stage.save_checkpoint(step + 1, model, optimizer, scheduler)
    if d.main:
        save_adapter(model, stage.adapter_dir)
    d.barrier()
    return stage.finish(
        data=data_mod.data_version(recipe.data),
        plot_keys=["loss", "grad_norm"],
        png="loss_curve.png",
        extra={"traces": len(traces), "examples": len(examples)},
    )


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("python -m mrrec_train.sft", __doc__.split("\n")[0], train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
