"""The MR.Rec assistant loop (METHOD.md §2): the model reasons, calls memory retrieval over
several turns, and writes an ideal item profile that dense retrieval grounds to the catalog.

The Rust :class:`~mrrec_edge._core.Orchestrator` owns the protocol (prompts, grammar, parsing,
budgets, escaping); this loop only moves text between it, the model and the memory store, and
reports what happens as events, so the CLI and the TUI show the same thing.
"""

from __future__ import annotations

import logging
import textwrap
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from time import perf_counter
from typing import Any, Protocol

from mrrec_edge._core import (
    GroundedItem,
    ItemHit,
    MemoryEntry,
    MemoryHit,
    Orchestrator,
    orchestrator_defaults,
    plan_request,
)
from mrrec_edge.config import Settings
from mrrec_edge.workspace import Workspace

log = logging.getLogger(__name__)

LOCAL_TIERS = ["behavior", "pattern", "profile"]


class TurnModel(Protocol):
    """What the loop needs of a model: the device's onnxruntime-genai
    :class:`~mrrec_edge.model.LanguageModel`, or the torch policy that training rolls out, so
    both run the very same orchestration and retrieval."""

    @property
    def last_stats(self) -> Any: ...  # GenerationStats-like, or None

    def apply_chat_template(self, messages: Sequence[Mapping[str, Any]]) -> str: ...

    def stream(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
        guidance: tuple[str, Any] | None,
        cancel: threading.Event | None,
    ) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...


#: The turn loop's limits, owned by the Rust orchestrator (``OrchestratorConfig::default``).
TURN_DEFAULTS = orchestrator_defaults()


@dataclass(frozen=True)
class TurnLimits:
    """The limits of the turn loop: the device's, the teacher's and the rollouts' alike."""

    max_memory_calls: int = TURN_DEFAULTS["max_memory_calls"]
    memory_token_budget: int = TURN_DEFAULTS["memory_token_budget"]
    memory_k: int = TURN_DEFAULTS["memory_k"]
    global_k: int = TURN_DEFAULTS["global_k"]
    max_think_chars: int = TURN_DEFAULTS["max_think_chars"]
    max_profile_chars: int = TURN_DEFAULTS["max_profile_chars"]
    max_turn_tokens: int = TURN_DEFAULTS["max_turn_tokens"]


@dataclass(frozen=True)
class AssistantConfig(TurnLimits):
    temperature: float = 0.0
    seed: int | None = None
    #: Local tiers memory calls search (the evaluation's single-tier ablations narrow it); a call
    #: naming a tier outside them searches these instead.
    memory_tiers: tuple[str, ...] = tuple(LOCAL_TIERS)

    @classmethod
    def from_settings(cls, settings: Settings) -> AssistantConfig:
        """The defaults with the home's ``[assistant]`` overrides (config.toml)."""
        overrides = {k: v for k, v in asdict(settings.assistant).items() if v is not None}
        return cls(**overrides)


def config_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs naming :class:`AssistantConfig` fields (``global_k=1``,
    ``memory_tiers=pattern,profile``, ``seed=none``), each typed like the field's default, for
    the tools that try the assistant with other settings. ValueError names the bad pair."""
    defaults = AssistantConfig()
    known = [f.name for f in fields(AssistantConfig)]
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = (part.strip() for part in pair.partition("="))
        if not sep or key not in known:
            raise ValueError(f"{pair!r}: expected KEY=VALUE, KEY one of {', '.join(known)}")
        default = getattr(defaults, key)
        try:
            if isinstance(default, tuple):
                value: Any = tuple(p.strip() for p in text.split(",") if p.strip())
                if not value or not set(value) <= set(LOCAL_TIERS):
                    raise ValueError(value)
            elif isinstance(default, float):
                value = float(text)
            elif default is None and text.lower() == "none":
                value = None
            else:
                value = int(text)
                if value < 0:
                    raise ValueError(value)
        except ValueError:
            wants = {
                tuple: f"a comma-separated list of {', '.join(LOCAL_TIERS)}",
                float: "a non-negative number",
            }.get(type(default), "a non-negative whole number")
            if default is None:
                wants += " or none"
            raise ValueError(f"{pair!r}: {key} takes {wants}") from None
        options[key] = value
    return options


@dataclass(frozen=True)
class Token:
    """A piece of the model's turn as it streams."""

    text: str
    turn: int


@dataclass(frozen=True)
class ToolCall:
    aspects: list[str]
    tier: str | None
    category: str | None


@dataclass(frozen=True)
class Memories:
    """What a memory call returned (the orchestrator shows the model those within budget)."""

    hits: list[MemoryHit]


@dataclass(frozen=True)
class Profile:
    profile: str
    memory_ids: list[int]
    fallback: bool
    reason: str | None


@dataclass(frozen=True)
class Recommendation:
    item: ItemHit
    why: str
    memories: list[MemoryEntry]


@dataclass(frozen=True)
class Recommendations:
    items: list[Recommendation]


@dataclass(frozen=True)
class Done:
    timings: dict[str, float]
    stats: dict[str, int]
    used_memories: list[MemoryEntry] = field(default_factory=list)
    #: (prompt, completion) of every model turn: what training scores and learns from.
    turns: list[tuple[str, str]] = field(default_factory=list)
    #: The global memory shown in the system prompt (the evaluation counts its tokens).
    global_memories: list[MemoryEntry] = field(default_factory=list)
    #: How the request was read in its conversation (``_core.plan_request``).
    plan: dict[str, Any] = field(default_factory=dict)


Event = Token | ToolCall | Memories | Profile | Recommendations | Done


@dataclass(frozen=True)
class PriorTurn:
    """An earlier exchange of the conversation, as a follow-up sees it: what was asked, what the
    answer showed (store item ids, in rank order) and what the user did with it."""

    query: str
    shown: tuple[int, ...] = ()
    liked: tuple[int, ...] = ()
    disliked: tuple[int, ...] = ()


def _why(
    grounded: GroundedItem,
    cited: Sequence[MemoryEntry],
    wanted_categories: Sequence[str],
    titles: Mapping[int, str],
    quoted: set[int] | None = None,
) -> tuple[str, list[MemoryEntry]]:
    """A one-line reason that says what drove this item: the liked items that support it
    ("because you liked X and Y"), the part of the request it fits (its categories the request
    asked for, synonyms folded: "scary" asks for Horror), and the cited memory closest to it,
    strongest signal first. ``quoted``: memory ids earlier cards quoted; a card quotes one
    of those only when no other cited memory shares its categories (ten cards should not read
    alike), and adds the one it quotes."""
    item = grounded.item
    parts: list[str] = []
    liked = [titles[i] for i in grounded.because if i in titles]
    if liked:
        parts.append("because you liked " + " and ".join(liked))
    wanted = [c for c in item.categories if c in wanted_categories]
    if wanted:
        parts.append(f"{', '.join(wanted)} as you asked")
    quoted = quoted if quoted is not None else set()
    shared = sorted(
        (m for m in cited if set(m.categories) & set(item.categories)),
        key=lambda m: (m.id in quoted, -len(set(m.categories) & set(item.categories))),
    )
    if shared:
        parts.append(f"your memory: {_clip(shared[0].text, 70)}")
        quoted.add(shared[0].id)
    if not parts:
        strongest = max(grounded.contributions, key=lambda kv: kv[1])[0]
        parts.append(WHY_SIGNAL.get(strongest, "fits your request"))
    return _clip("; ".join(parts), 150), shared[:2]


#: What a signal says when it is the strongest reason for an item and nothing more specific is.
WHY_SIGNAL = {
    "profile": "close to the profile the assistant wrote",
    "request": "close to what you asked for",
    "user_cf": "liked by people with tastes like yours",
    "seed_cf": "liked by people who liked the films it named",
    "popularity": "widely watched",
}


def _clip(text: str, width: int) -> str:
    """``text`` on one line, cut at a word boundary to ``width`` characters (never mid-title
    like "Brian (")."""
    return textwrap.shorten(text, width, placeholder=" …")


class Assistant:
    def __init__(
        self,
        workspace: Workspace,
        model: TurnModel,
        config: AssistantConfig | None = None,
        *,
        grounding: Mapping[str, float] | None = None,
    ) -> None:
        self.ws = workspace
        self.model = model
        #: Grounding signal weights; None: the workspace's (config, else the bundle's fit).
        self.grounding = dict(grounding) if grounding is not None else None
        # Without an explicit config, the home's [assistant] settings (what a user chose).
        self.config = config or AssistantConfig.from_settings(workspace.settings)
        pin_prefix = getattr(model, "pin_prefix", None)
        if pin_prefix is not None:
            # The device runtime's prefix cache keeps the instructions every request starts
            # with (training's torch policy has no such cache).
            pin_prefix(model.apply_chat_template(self._orchestrator("", []).messages()[:1]))

    def ask(
        self,
        user: str,
        query: str,
        *,
        k: int = 10,
        include_seen: bool = False,
        cancel: threading.Event | None = None,
        static_memory: Sequence[MemoryEntry] = (),
        distinct_titles: bool = True,
        context: Sequence[PriorTurn] = (),
    ) -> Iterator[Event]:
        """Answers ``query`` for ``user`` with ``k`` catalog items, as a stream of events.

        ``context``: the earlier exchanges of the conversation, oldest first. The core reads the
        query in it (``_core.plan_request``): a refinement ("nothing too gory", "older ones")
        extends the request before it, a new subject ("a comedy instead") replaces it, and what
        was shown is not shown again. The model answers the request so composed.
        ``static_memory`` is shown to the model before its first turn, as if retrieved (the
        evaluation's naive and static memory baselines); it counts in ``memory_tokens``.
        ``distinct_titles``: see :meth:`Workspace.ground` (the evaluation and training rank item
        ids as the store does, like every baseline, and turn it off).
        """
        c = self.config
        timings = {"retrieval": 0.0, "prefill": 0.0, "decode": 0.0, "grounding": 0.0}
        started = perf_counter()

        t = perf_counter()
        plan = self.plan(query, context)
        request = plan["request"]
        global_hits = self.ws.search_memory(request, tiers=["global"], k=c.global_k)
        timings["retrieval"] += perf_counter() - t
        orch = self._orchestrator(request, global_hits)
        retrieved: dict[int, MemoryEntry] = {}
        if static_memory:
            orch.add_memories(list(static_memory), token_count=self.model.count_tokens)
            retrieved.update((m.id, m) for m in static_memory)
        turns: list[tuple[str, str]] = []
        action: dict[str, Any] | None = None
        turn = 0
        while action is None or action["kind"] == "retrieve":
            if cancel is not None and cancel.is_set():
                action = orch.finish("cancelled")
                break
            prompt = self.model.apply_chat_template(orch.messages())
            pieces: list[str] = []
            stream = None
            try:
                stream = self.model.stream(
                    prompt,
                    max_new_tokens=c.max_turn_tokens,
                    temperature=c.temperature,
                    seed=c.seed,
                    guidance=("lark_grammar", orch.grammar()),
                    cancel=cancel,
                )
                for piece in stream:
                    if len(pieces) >= c.max_turn_tokens:
                        # A piece past the budget: the runtime overran its token limit (or a
                        # training policy has none). Stop it rather than stream forever.
                        log.warning("model turn cut off at %d pieces", len(pieces))
                        break
                    pieces.append(piece)
                    yield Token(piece, turn)
            except ValueError as exc:  # e.g. the prompt outgrew the context window
                log.warning("model turn failed: %s", exc)
                action = orch.finish(f"model turn failed: {exc}")
                break
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            gen = self.model.last_stats
            if gen is not None:
                timings["prefill"] += gen.first_token_s
                timings["decode"] += gen.decode_s
            if gen is not None and gen.finish_reason == "cancelled":
                action = orch.finish("cancelled")
                break
            completion = "".join(pieces)
            turns.append((prompt, completion))
            action = orch.feed(completion)
            turn += 1
            if action["kind"] == "retrieve":
                yield ToolCall(action["aspects"], action["tier"], action["category"])
                t = perf_counter()
                hits = self._retrieve(user, action, exclude=orch.shown_ids())
                timings["retrieval"] += perf_counter() - t
                orch.add_memories(hits, token_count=self.model.count_tokens)
                for h in hits:
                    retrieved[h.entry.id] = h.entry
                yield Memories(hits)

        yield Profile(action["profile"], action["memory_ids"], action["fallback"], action["reason"])
        t = perf_counter()
        cited = [retrieved[i] for i in action["memory_ids"] if i in retrieved]
        grounded = self.ws.ground(
            k=k,
            user=user,
            profile=action["profile"],
            request=request,
            cited_memory=[m.id for m in cited],
            weights=self.grounding,
            include_seen=include_seen,
            distinct_titles=distinct_titles,
            plan=plan,
        )
        timings["grounding"] = perf_counter() - t
        supporters = sorted({i for g in grounded for i in g.because})
        titles = {it.item_id: it.title for it in self.ws.items_by_id(supporters)}
        recommendations = []
        quoted: set[int] = set()
        for g in grounded:
            why, memories = _why(g, cited, plan["wanted"], titles, quoted)
            recommendations.append(Recommendation(g.item, why, memories))
        yield Recommendations(recommendations)
        timings["total"] = perf_counter() - started
        yield Done(timings, orch.stats(), cited, turns, [h.entry for h in global_hits], plan)

    def plan(self, query: str, context: Sequence[PriorTurn] = ()) -> dict[str, Any]:
        """How the core reads ``query`` after ``context`` (see :meth:`ask`)."""
        shown = sorted({i for turn in context for i in turn.shown})
        years = {it.item_id: it.year for it in self.ws.items_by_id(shown)} if shown else {}
        earlier = [
            (t.query, [(i, years.get(i)) for i in t.shown], list(t.liked), list(t.disliked))
            for t in context
        ]
        return plan_request(query, self.ws.category_names(), earlier)

    def _orchestrator(self, query: str, global_hits: list[MemoryHit]) -> Orchestrator:
        c = self.config
        return Orchestrator(
            query,
            global_memory=global_hits,
            max_memory_calls=c.max_memory_calls,
            memory_token_budget=c.memory_token_budget,
            memory_k=c.memory_k,
            max_think_chars=c.max_think_chars,
            max_profile_chars=c.max_profile_chars,
        )

    def _retrieve(self, user: str, action: dict[str, Any], exclude: list[int]) -> list[MemoryHit]:
        text = "; ".join(action["aspects"])
        allowed = list(self.config.memory_tiers)
        tiers = [action["tier"]] if action["tier"] in allowed else allowed
        search = {"user": user, "k": action["k"], "tiers": tiers, "exclude": exclude}
        if action["category"]:
            hits = self.ws.search_memory(text, **search, categories=[action["category"]])
            if hits:
                return hits
            # A category the user has no memory of: search without it rather than return nothing.
        return self.ws.search_memory(text, **search)
