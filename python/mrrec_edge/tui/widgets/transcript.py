"""The chat transcript (questions and streamed answers with their cards) and the reasoning
panel (each turn's thinking, memory_retrieval calls and the memories they returned).

Both render from an :class:`~mrrec_edge.conversations.Answer` with ``sync``, which is idempotent:
the live stream calls it after every event and a resumed conversation calls it once.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Collapsible, Static

from mrrec_edge._core import split_turn
from mrrec_edge.conversations import Answer, Turn
from mrrec_edge.tui.text import printable
from mrrec_edge.tui.widgets.cards import RecommendationCard

STATUS_NOTES = {
    "cancelled": ("Cancelled (Esc).", "$warning"),
    "interrupted": ("Interrupted: the app stopped while this answer streamed.", "$warning"),
}


class UserMessage(Static):
    def __init__(self, text: str) -> None:
        super().__init__(
            Content.assemble(("you  ", "bold $accent"), printable(text)), classes="user-message"
        )


class AssistantMessage(Vertical):
    """One answer: the streamed ideal item profile, a status note and the cards."""

    def __init__(self, answer: Answer, message_id: int | None = None) -> None:
        super().__init__(classes="assistant-message")
        self.answer = answer
        self.message_id = message_id
        #: How often the streamed text changed on screen (the tests check it really streams).
        self.stream_updates = 0
        self._shown: tuple[str, str] = ("", "")

    def compose(self) -> ComposeResult:
        yield Static(Content.styled("mrrec", "bold $primary"), classes="speaker")
        yield Static(classes="thinking")
        yield Static(classes="answer-text")
        yield Static(classes="answer-note")
        yield Vertical(classes="cards")

    def on_mount(self) -> None:
        self.sync()

    def sync(self) -> None:
        a = self.answer
        streaming = a.status == "streaming"
        thinking = self.query_one(".thinking", Static)
        thinking.display = streaming and not a.text
        if thinking.display:
            thinking.update(
                Content.styled(f"thinking… {printable(a.thinking[-160:])}", "dim italic")
            )
        text = a.text
        body = self.query_one(".answer-text", Static)
        if text:
            cursor = "▍" if streaming and a.profile is None else ""
            body.update(Content.assemble(("Looking for: ", "bold"), printable(text) + cursor))
        body.display = bool(text)
        shown = (a.thinking, text)
        if streaming and shown != self._shown:
            self.stream_updates += 1
        self._shown = shown
        self._sync_note()
        cards = self.query_one(".cards", Vertical)
        if a.recommendations and not cards.children:
            cards.mount_all(
                RecommendationCard(rank, rec, a.feedback.get(rec["item"]))
                for rank, rec in enumerate(a.recommendations, 1)
            )

    def _sync_note(self) -> None:
        a = self.answer
        note = self.query_one(".answer-note", Static)
        parts: list[tuple[str, str]] = []
        if a.profile and a.profile.get("fallback"):
            parts.append(
                (
                    f"The model gave no usable answer ({a.profile.get('reason')}); "
                    "these picks come from your question alone.",
                    "$warning",
                )
            )
        if a.status in STATUS_NOTES:
            parts.append(STATUS_NOTES[a.status])
        if a.status == "error":
            parts.append((f"Failed: {a.error}", "$error"))
        if a.recommendations and a.status != "streaming":
            # The keys are on each card and in the hint line above the prompt.
            parts.append((f"{len(a.recommendations)} picks.", "dim"))
        note.display = bool(parts)
        note.update(Content("\n").join(Content.styled(t, s) for t, s in parts))

    @property
    def cards(self) -> list[RecommendationCard]:
        return list(self.query(RecommendationCard))


class TurnTrace(Vertical):
    """One model turn in the reasoning panel."""

    def __init__(self, index: int) -> None:
        super().__init__(classes="turn-trace")
        self.index = index
        self._calls_shown = False
        self._think = Static(classes="turn-think")
        # A turn that streams in before this widget is mounted is shown once it is.
        self._pending: Turn | None = None
        self._ready = False

    def compose(self) -> ComposeResult:
        yield self._think

    def on_mount(self) -> None:
        self._ready = True
        if self._pending is not None:
            turn, self._pending = self._pending, None
            self.sync(turn)

    def sync(self, turn: Turn) -> None:
        if not self._ready:
            self._pending = turn
            return
        think = split_turn(turn.text)[0]
        label = Content.styled(f"turn {self.index + 1} ", "bold")
        self._think.update(Content.assemble(label, (printable(think.strip()) or "…", "italic")))
        if turn.call is not None and turn.memories and not self._calls_shown:
            self._calls_shown = True
            scope = ", ".join(x for x in (turn.call.get("tier"), turn.call.get("category")) if x)
            title = "memory_retrieval(" + printable("; ".join(turn.call.get("aspects") or [])) + ")"
            if scope:
                title += f" [{scope}]"
            lines = Content("\n").join(
                Content.assemble((f"#{m['id']} {m['tier']} ", "dim"), printable(m["text"][:200]))
                for m in turn.memories
            )
            self.mount(
                Collapsible(
                    Static(lines, classes="trace-memories"),
                    # Content, not a str: a str title is read as markup ("[pattern]").
                    title=Content(f"{title} → {len(turn.memories)} memories"),  # type: ignore[arg-type]
                    collapsed=False,
                )
            )


class AnswerTrace(Vertical):
    """The reasoning panel's section for one question."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(classes="answer-trace")
        self.answer = answer

    def compose(self) -> ComposeResult:
        yield Static(
            Content.assemble(("Q ", "bold $accent"), printable(self.answer.query)),
            classes="trace-q",
        )
        yield Static(classes="trace-profile")

    def on_mount(self) -> None:
        self.sync()

    def sync(self) -> None:
        traces = list(self.query(TurnTrace))
        for i, turn in enumerate(self.answer.turns):
            if i >= len(traces):
                trace = TurnTrace(i)
                self.mount(trace, before=self.query_one(".trace-profile"))
                traces.append(trace)
                trace.sync(turn)
            else:
                traces[i].sync(turn)
        profile = self.query_one(".trace-profile", Static)
        p = self.answer.profile
        profile.display = p is not None
        if p is not None:
            ids = ", ".join(f"#{i}" for i in p.get("memory_ids") or []) or "none"
            profile.update(
                Content.assemble(
                    ("ideal item ", "bold"), printable(p["text"]), (f"\ncited {ids}", "dim")
                )
            )


class TracePanel(VerticalScroll):
    """The collapsible side panel (ctrl+b) with the reasoning of every answer."""

    def add(self, answer: Answer) -> AnswerTrace:
        trace = AnswerTrace(answer)
        self.mount(trace)
        return trace
