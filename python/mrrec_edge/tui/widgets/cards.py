"""A recommendation card: the item, why it fits, the memories it rests on, and the keys (or
clicks) that write the user's reaction to memory at once.

A focused card takes its own keys (l, d, 1-5, s, ↑↓); any other printable key is meant for the
prompt, so the card hands it over (:class:`RecommendationCard.Ask`) and a follow-up can be typed
straight away.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from mrrec_edge.tui.text import printable

ACK = {
    "like": ("liked", "$success"),
    "dislike": ("disliked", "$error"),
    "seen": ("marked as seen", "$accent"),
}


def _link(label: str, action: str) -> Content:
    return Content.styled(label, f"@click=feedback({action!r})")


#: A card's keys, each also a link that does the same for the mouse.
ACTIONS_LINE = (
    Content(" · ")
    .join(
        [
            _link("l like", "like"),
            _link("d dislike", "dislike"),
            Content.assemble(
                "rate ", Content(" ").join(_link(str(n), f"rate={n}") for n in range(1, 6))
            ),
            _link("s seen it", "seen"),
        ]
    )
    .stylize_before("dim")
)


def ack_text(action: str) -> tuple[str, str]:
    """How a card acknowledges feedback already written: ("rated 4/5", style)."""
    if action.startswith("rate="):
        return f"rated {action.removeprefix('rate=')}/5", "$warning"
    return ACK.get(action, (action, "$accent"))


class RecommendationCard(Widget, can_focus=True):
    """One recommended item. ``rec`` is a recommendation as saved in the answer payload."""

    BINDING_GROUP_TITLE = "Recommendation card"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "feedback('like')", "Like"),
        Binding("d", "feedback('dislike')", "Dislike"),
        Binding("s", "feedback('seen')", "Seen it"),
        Binding("1", "feedback('rate=1')", "Rate 1-5", key_display="1-5"),
        Binding("2", "feedback('rate=2')", "Rate 2", show=False),
        Binding("3", "feedback('rate=3')", "Rate 3", show=False),
        Binding("4", "feedback('rate=4')", "Rate 4", show=False),
        Binding("5", "feedback('rate=5')", "Rate 5", show=False),
        Binding("down,j", "move(1)", "Next card", show=False),
        Binding("up,k", "move(-1)", "Previous card", show=False),
        Binding("slash", "ask", "Ask a follow-up", key_display="/"),
    ]

    class Feedback(Message):
        """The user reacted to a card; the chat screen writes it to memory."""

        def __init__(self, card: RecommendationCard, action: str) -> None:
            super().__init__()
            self.card = card
            self.action = action

    class Ask(Message):
        """The user turned to the prompt from a card; ``text`` is what they started typing.
        Where no question can be typed now, the chat sets ``card.typing`` back to False."""

        def __init__(self, card: RecommendationCard, text: str = "") -> None:
            super().__init__()
            self.card = card
            self.text = text

    def __init__(self, rank: int, rec: dict[str, Any], feedback: str | None = None) -> None:
        super().__init__(classes="card")
        self.rank = rank
        self.rec = rec
        self.feedback = feedback
        self.pending: str | None = None
        #: A key of this card went to the prompt. Until the card has focus again, every key
        #: that reaches it goes there too: keys typed in a burst ("Warm films") are delivered
        #: here before the focus moves, and a card key among them is part of the question.
        self.typing = False

    @property
    def item(self) -> str:
        return str(self.rec["item"])

    def compose(self) -> ComposeResult:
        rec = self.rec
        year = f" ({rec['year']})" if rec.get("year") else ""
        title = Content.assemble(
            (f"{self.rank:>2}. ", "dim"), (printable(f"{rec['title']}{year}"), "bold")
        )
        yield Static(title, classes="card-title")
        if rec.get("categories"):
            yield Static(Content(printable(" · ".join(rec["categories"]))), classes="card-genres")
        yield Static(
            Content.assemble(("why ", "dim italic"), printable(rec.get("why") or "")),
            classes="card-why",
        )
        for m in rec.get("memories") or []:
            cite = Content.assemble((f"#{m['id']} {m['tier']} ", "dim"), printable(m["text"][:120]))
            yield Static(cite, classes="card-cite")
        yield CardActions(ACTIONS_LINE, classes="card-actions")
        yield Static(classes="card-ack")

    def on_mount(self) -> None:
        self._show_ack()

    def _show_ack(self) -> None:
        ack = self.query_one(".card-ack", Static)
        ack.display = bool(self.pending or self.feedback)
        if self.pending:
            ack.update(Content.styled(f"saving {self.pending}…", "dim"))
        elif self.feedback:
            text, style = ack_text(self.feedback)
            ack.update(Content.styled(f"✓ {text}: saved to your memory", style))

    def action_feedback(self, action: str) -> None:
        if self.pending:
            return
        self.pending = action
        self._show_ack()
        self.post_message(self.Feedback(self, action))

    def acknowledge(self, action: str | None) -> None:
        """Feedback ``action`` was written (``None``: it failed and nothing changed)."""
        if action is not None:
            self.feedback = action
        self.pending = None
        self._show_ack()

    def action_move(self, step: int) -> None:
        cards = list(self.screen.query(RecommendationCard))
        i = cards.index(self) + step
        if 0 <= i < len(cards):
            cards[i].focus()
        elif i == len(cards):  # down from the last card: the prompt is right below it
            self.post_message(self.Ask(self))

    def action_ask(self) -> None:
        self.post_message(self.Ask(self))

    def on_focus(self, _event: events.Focus) -> None:
        self.typing = False

    def on_key(self, event: events.Key) -> None:
        # Runs before the bindings (they are checked once the key bubbles up to the app), so
        # only keys that nothing on screen binds go to the prompt: typing "Actually…" on a card
        # starts the follow-up instead of being lost.
        if not (event.is_printable and event.character):
            return
        if self.typing or (self.has_focus and event.key not in self.screen.active_bindings):
            self.typing = True
            event.stop()
            event.prevent_default()
            self.post_message(self.Ask(self, event.character))


class CardActions(Static):
    """A card's action line; its links run the card's feedback action (a link's action runs on
    the widget that shows it)."""

    def action_feedback(self, action: str) -> None:
        card = self.parent
        assert isinstance(card, RecommendationCard)
        card.action_feedback(action)
