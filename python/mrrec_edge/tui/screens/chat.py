"""The chat: ask, watch the answer stream, react to the cards.

Generation runs in a worker thread (Elia's pattern): the input is locked while the model
answers, Esc cancels it before the next token, and the answer is saved into the conversation
as it streams, through the workspace's conversations (:mod:`mrrec_edge.conversations`), the same
service ``mrrec ask`` saves through.

Focus follows the flow: when an answer arrives its first card has focus, so the card keys act
at once (l, d, 1-5, s; ↑↓ between cards). "/", Esc, ↓ past the last card or any other printable
key (typed into it) return to the prompt; ↑ from the prompt returns to the cards. A hint line
above the prompt says which keys work where focus is.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from mrrec_edge.assistant import Assistant, Event
from mrrec_edge.conversations import Answer
from mrrec_edge.errors import MrrecError
from mrrec_edge.tui.screens.dialogs import ConversationsScreen
from mrrec_edge.tui.widgets.cards import RecommendationCard
from mrrec_edge.tui.widgets.status import StatusBar
from mrrec_edge.tui.widgets.transcript import AssistantMessage, TracePanel, UserMessage

if TYPE_CHECKING:
    from mrrec_edge.tui.app import MrrecApp

#: Recommendations per answer.
K = 10

#: The hint line above the prompt, by where focus is.
CARD_HINT = "↑↓ card · l like · d dislike · 1-5 rate · s seen · / or Esc: ask"
PROMPT_HINT = "Enter sends · ↑ back to the cards"
GENERATING_HINT = "Esc cancels the answer"


class ChatScreen(Screen[None]):
    BINDING_GROUP_TITLE = "Chat"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel answer"),
        Binding("up", "to_cards", "Back to the cards", show=False),
        Binding("ctrl+n", "new_conversation", "New chat"),
        Binding("ctrl+o", "conversations", "Conversations"),
        Binding("ctrl+b", "toggle_trace", "Reasoning panel"),
        Binding("ctrl+l", "focus_prompt", "Ask", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.conversation_id: int | None = None
        self.conversation_user: str | None = None
        self.generating = False
        self._cancel = threading.Event()
        #: Counts chat resets, so an answer still running into a cleared chat writes nowhere.
        self._epoch = 0
        #: The card that had focus last, for ↑ from the prompt.
        self._last_card: RecommendationCard | None = None

    @property
    def mrrec(self) -> MrrecApp:
        return cast("MrrecApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="chat-body"):
            with Vertical(id="chat-main"):
                with VerticalScroll(id="transcript"):
                    yield Static(id="chat-empty")
                yield Static(id="chat-hint")
                yield Input(
                    placeholder="Ask for something, e.g. a funny movie for a Friday night",
                    id="prompt",
                    # Back from the cards, a key adds to the question: it must not replace it.
                    select_on_focus=False,
                )
            yield TracePanel(id="trace")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Chat"
        self.query_one("#trace", TracePanel).border_title = "Reasoning and memory"
        self.watch(self.mrrec, "user", self._user_changed, init=False)
        self._show_empty()
        self._show_hint()
        self.query_one("#prompt", Input).focus()

    def _user_changed(self, user: str | None) -> None:
        if user != self.conversation_user:
            self.new_conversation()

    def _show_empty(self) -> None:
        empty = self.query_one("#chat-empty", Static)
        empty.display = self.conversation_id is None and not self.query(AssistantMessage)
        user = self.mrrec.user
        hint = (
            f"Ask for something as user {user}. Enter sends; the reasoning panel (ctrl+b) shows "
            "every memory lookup. ctrl+o resumes a conversation, F3 opens your memory, F1 help."
            if user
            else "No user yet: F4 picks or creates one, or imports a history."
        )
        empty.update(Content.styled(hint, "dim"))

    def _show_hint(self) -> None:
        hint = self.query_one("#chat-hint", Static)
        if isinstance(self.focused, RecommendationCard):
            text = CARD_HINT
        elif self.generating:
            text = GENERATING_HINT
        elif any(m.answer.recommendations for m in self.query(AssistantMessage)):
            # The answers, not their cards: a resumed answer mounts its cards a moment later.
            text = PROMPT_HINT
        else:
            text = ""
        hint.display = bool(text)
        hint.update(Content.styled(text, "dim"))

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if isinstance(event.widget, RecommendationCard):
            self._last_card = event.widget
        self._show_hint()

    def on_descendant_blur(self, _event: events.DescendantBlur) -> None:
        self._show_hint()

    # -- conversations ----------------------------------------------------------------------

    def new_conversation(self) -> None:
        if self.generating:
            self.action_cancel()
        self.conversation_id = None
        self.conversation_user = self.mrrec.user
        self._epoch += 1
        self.query_one("#transcript").query(".user-message, .assistant-message").remove()
        self.query_one("#trace").remove_children()
        self._last_card = None
        self._show_empty()
        self._show_hint()

    def action_new_conversation(self) -> None:
        self.new_conversation()
        self.query_one("#prompt", Input).focus()

    def action_conversations(self) -> None:
        user = self.mrrec.user
        if user is None:
            self.notify("Pick a user first (F4).", severity="warning")
            return
        try:
            conversations = self.mrrec.workspace.conversations.for_user(user)
        except MrrecError as exc:
            self.mrrec.report_error(exc)
            return

        def chosen(choice: int | None) -> None:
            if choice == ConversationsScreen.NEW:
                self.action_new_conversation()
            elif choice is not None:
                self.load_conversation(choice)

        self.app.push_screen(ConversationsScreen(conversations), chosen)

    def load_conversation(self, conversation_id: int) -> None:
        """Shows a saved conversation and continues it."""
        try:
            messages = self.mrrec.workspace.conversations.messages(conversation_id)
        except MrrecError as exc:
            self.mrrec.report_error(exc)
            return
        self.new_conversation()
        self.conversation_id = conversation_id
        transcript = self.query_one("#transcript")
        trace = self.query_one(TracePanel)
        for m in messages:
            if m.answer is None:
                transcript.mount(UserMessage(m.text))
            else:
                transcript.mount(AssistantMessage(m.answer, m.id))
                trace.add(m.answer)
        self._show_empty()
        self._show_hint()
        transcript.scroll_end(animate=False)
        self.query_one("#prompt", Input).focus()

    # -- asking ---------------------------------------------------------------------------

    def action_focus_prompt(self) -> None:
        self.query_one("#prompt", Input).focus()

    def on_recommendation_card_ask(self, event: RecommendationCard.Ask) -> None:
        prompt = self.query_one("#prompt", Input)
        if prompt.disabled:  # an answer is streaming: nothing can be asked yet
            event.card.typing = False
            return
        # set_focus now, not focus() (deferred): the next key typed must already reach the prompt.
        self.set_focus(prompt)
        if event.text:
            prompt.insert_text_at_cursor(event.text)

    def action_to_cards(self) -> None:
        card = self._last_card
        if card is None or not card.is_attached:
            answers = self.query(AssistantMessage)
            cards = answers.last().cards if answers else []
            card = cards[0] if cards else None
        if card is not None:
            card.focus()

    def action_toggle_trace(self) -> None:
        trace = self.query_one(TracePanel)
        trace.display = not trace.display

    def action_cancel(self) -> None:
        """Cancels the answer being written; otherwise Esc goes back to the prompt (from a
        card)."""
        if self.generating:
            self._cancel.set()
            self.mrrec.state = "cancelling…"
        else:
            self.action_focus_prompt()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "prompt":
            return
        query = event.value.strip()
        if not query or self.generating:
            return
        if self.mrrec.user is None:
            self.notify("Pick or create a user first (F4).", severity="warning")
            return
        if self.mrrec.bundle_error is not None:
            self.notify(self.mrrec.bundle_error, title="No model bundle", severity="error")
            return
        event.input.value = ""
        self.ask(query)

    def ask(self, query: str) -> None:
        user = self.mrrec.user
        assert user is not None
        self.generating = True
        self._cancel = threading.Event()
        prompt = self.query_one("#prompt", Input)
        prompt.disabled = True
        answer = Answer(query)
        transcript = self.query_one("#transcript")
        transcript.mount(UserMessage(query))
        view = AssistantMessage(answer)
        transcript.mount(view)
        trace = self.query_one(TracePanel).add(answer)
        self._show_empty()
        self._show_hint()
        transcript.scroll_end(animate=False)
        cancel = self._cancel
        conversation_id, epoch = self.conversation_id, self._epoch

        panel = self.query_one(TracePanel)

        def show(event: Event) -> None:
            if not view.is_attached:  # the chat was cleared (new conversation, other user)
                return
            view.sync()
            trace.sync()
            transcript.scroll_end(animate=False)
            panel.scroll_end(animate=False)

        def finished(_result: Any = None) -> None:
            self.generating = False
            prompt.disabled = False
            self._show_hint()
            if not view.is_attached:
                return
            view.sync()
            trace.sync()
            cards = view.cards
            if not cards:
                transcript.scroll_end(animate=False)
                if self.is_current:
                    prompt.focus()
                return
            # The cards are what the user acts on next: the first has focus, so their keys work
            # without a Tab, and the answer is shown from its start, not from its last card
            # (after the refresh that lays out cards mounted just now, and after the streaming's
            # own deferred scrolls to the end).
            if self.is_current:
                cards[0].focus(scroll_visible=False)
            self.call_after_refresh(transcript.scroll_to_widget, view, animate=False, top=True)

        def generate() -> None:
            ws = self.mrrec.workspace
            model = self.mrrec.load_model()
            if ws.ensure_user_memory(user):
                self.app.call_from_thread(self.notify, f"Built the memory of user {user} first.")
            # A follow-up (a resumed conversation, or this chat's earlier answers) is read in its
            # conversation: the earlier requests, what was shown and the reactions to it. Read
            # before this question is recorded, which would otherwise count as its own context.
            context = [] if conversation_id is None else ws.conversations.context(conversation_id)
            recorder = ws.conversations.ask(conversation_id, user, query, answer)
            if conversation_id is None and self._epoch == epoch:
                # Still the same chat: the next question continues this conversation.
                self.conversation_id = recorder.conversation_id
            view.message_id = recorder.message_id
            status = "done"
            try:
                events = Assistant(ws, model).ask(user, query, k=K, cancel=cancel, context=context)
                for event in events:
                    if cancel.is_set():
                        status = "cancelled"
                        break
                    answer.apply(event)
                    recorder.save()
                    self.app.call_from_thread(show, event)
            except BaseException as exc:
                recorder.finish("error", str(exc))
                raise
            recorder.finish(status)

        def failed(_exc: BaseException) -> None:
            if answer.status == "streaming":
                answer.status = "error"
                answer.error = str(_exc)
            finished()

        self.mrrec.run_task(
            generate,
            name="answer",
            label="thinking…",
            done=finished,
            failed=failed,
        )

    # -- feedback on cards ----------------------------------------------------------------

    def on_recommendation_card_feedback(self, event: RecommendationCard.Feedback) -> None:
        card, action = event.card, event.action
        user = self.mrrec.user
        if user is None:
            card.acknowledge(None)
            return
        message = next((m for m in card.ancestors if isinstance(m, AssistantMessage)), None)
        ws = self.mrrec.workspace

        def write() -> dict[str, Any]:
            out = ws.feedback(user, card.item, action)
            if message is not None and message.message_id is not None:
                # The card shows the same acknowledgment when the conversation is resumed.
                message.answer.feedback[card.item] = action
                ws.conversations.save_answer(message.message_id, message.answer)
            return out

        def done(out: dict[str, Any]) -> None:
            card.acknowledge(action)
            title = card.rec["title"]
            if out.get("record_id") is None:
                self.notify(f"{title}: already recorded.", title="Memory")
            else:
                self.notify(
                    f"{title}: saved as behavior record #{out['memory_id']}; "
                    f"refreshed {out['patterns']} pattern entries and the profile.",
                    title="Memory",
                )

        self.mrrec.run_task(
            write,
            name="feedback",
            label=f"saving {action}",
            done=done,
            failed=lambda _exc: card.acknowledge(None),
        )
