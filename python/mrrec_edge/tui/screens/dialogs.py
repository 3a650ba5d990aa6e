"""Small modal dialogs: confirm, enter text, pick a conversation, help."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from mrrec_edge.errors import MrrecError
from mrrec_edge.tui.text import printable

if TYPE_CHECKING:
    from mrrec_edge.tui.app import MrrecApp


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, title: str, body: str, yes: str = "Yes") -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.body = body
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Content.styled(self.title_text, "bold"), classes="dialog-title")
            yield Static(Content(self.body), classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class TextDialog(ModalScreen[str | None]):
    """Asks for a line (``multiline=False``) or a text; dismissed with it, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(
        self, title: str, *, text: str = "", placeholder: str = "", multiline: bool = False
    ) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.text = text
        self.placeholder = placeholder
        self.multiline = multiline

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Content.styled(self.title_text, "bold"), classes="dialog-title")
            if self.multiline:
                yield TextArea(self.text, id="dialog-text", soft_wrap=True)
            else:
                yield Input(self.text, placeholder=self.placeholder, id="dialog-text")
            hint = "ctrl+s save · esc cancel" if self.multiline else "enter save · esc cancel"
            yield Static(Content.styled(hint, "dim"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def action_save(self) -> None:
        widget = self.query_one("#dialog-text", TextArea | Input)
        text = widget.text if isinstance(widget, TextArea) else widget.value
        self.dismiss(text.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConversationsScreen(ModalScreen[int | None]):
    """The user's conversations, most recent first: Enter resumes, d deletes, n starts anew."""

    BINDING_GROUP_TITLE = "Conversations"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("n", "new", "New conversation"),
        Binding("d,delete", "delete", "Delete"),
    ]
    NEW = -1

    def __init__(self, conversations: list[dict[str, Any]]) -> None:
        super().__init__(classes="dialog-screen")
        self.conversations = conversations

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-wide"):
            yield Label(Content.styled("Conversations", "bold"), classes="dialog-title")
            options = [
                Option(
                    Content.assemble(
                        printable(c["title"]) or "(untitled)",
                        (f"  {c['messages']} messages", "dim"),
                    ),
                    id=str(c["id"]),
                )
                for c in self.conversations
            ]
            yield OptionList(*options, id="conversation-list")
            if not options:
                yield Static(Content.styled("No conversations yet.", "dim"))
            yield Static(
                Content.styled("enter resume · n new · d delete · esc close", "dim"),
            )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id or 0))

    def action_close(self) -> None:
        self.dismiss(None)

    def action_new(self) -> None:
        self.dismiss(self.NEW)

    def action_delete(self) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is None:
            return
        option = options.get_option_at_index(options.highlighted)

        def done(yes: bool | None) -> None:
            if not yes:
                return
            app = cast("MrrecApp", self.app)
            try:
                app.workspace.conversations.delete(int(option.id or 0))
            except MrrecError as exc:
                app.report_error(exc)
                return
            options.remove_option(option.id or "")
            self.notify("Conversation deleted.")

        self.app.push_screen(
            ConfirmDialog("Delete conversation?", str(option.prompt), yes="Delete"), done
        )


class HelpScreen(ModalScreen[None]):
    """Every key of the app, by where it works (built from the bindings themselves)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,f1,q", "close", "Close")]

    def __init__(self, sections: Iterable[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__(classes="dialog-screen")
        self.sections = list(sections)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-wide", id="help"):
            yield Label(Content.styled("mrrec-tui keys", "bold"), classes="dialog-title")
            with VerticalScroll():
                yield Static(Content(_HELP_INTRO), classes="help-intro")
                for title, keys in self.sections:
                    yield Static(Content.styled(title, "bold $accent"), classes="help-section")
                    for key, description in keys:
                        yield Static(
                            Content.assemble((f"{key:>14}  ", "bold"), description),
                            classes="help-key",
                        )
            yield Static(Content.styled("esc close · ctrl+p runs any of these by name", "dim"))

    def action_close(self) -> None:
        self.dismiss(None)


_HELP_INTRO = (
    "Ask for something in the chat; the answer streams, the reasoning panel shows each memory "
    "lookup, and ten cards follow, the first one focused: react with its keys or a click, and "
    "it goes into your memory at once. "
    "The memory inspector shows everything the assistant remembers, and forgets on request."
)
