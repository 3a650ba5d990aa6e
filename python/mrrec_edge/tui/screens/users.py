"""Users and data: pick a user (Enter), create one, import history, build memory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, OptionList, Static
from textual.widgets.option_list import Option

from mrrec_edge.errors import MrrecError
from mrrec_edge.tui.screens.dialogs import TextDialog
from mrrec_edge.tui.text import printable
from mrrec_edge.tui.widgets.status import StatusBar

if TYPE_CHECKING:
    from mrrec_edge.tui.app import MrrecApp

#: Users listed at once (MovieLens has 943; filtering finds the rest).
MAX_LISTED = 1000


class UsersScreen(Screen[None]):
    BINDING_GROUP_TITLE = "Users and data"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter", key_display="/"),
        Binding("n", "new_user", "New user"),
        Binding("i", "import", "Import history"),
        Binding("b", "build", "Build memory"),
    ]

    @property
    def mrrec(self) -> MrrecApp:
        return cast("MrrecApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="users-body"):
            with Vertical(id="users-left"):
                yield Input(placeholder="Filter users (/)", id="user-filter")
                yield OptionList(id="user-list")
            with Vertical(id="users-right"):
                yield Static(id="user-info")
                yield Static(
                    Content.styled(
                        "enter use this user · n new user · i import history · b build memory",
                        "dim",
                    ),
                    id="users-hint",
                )
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Users and data"
        self.watch(self.mrrec, "user", lambda _u: self.refresh_users(), init=False)
        self.refresh_users()
        self.query_one("#user-list", OptionList).focus()

    def on_screen_resume(self) -> None:
        self.refresh_users()

    def refresh_users(self) -> None:
        try:
            users = self.mrrec.workspace.users()
        except MrrecError as exc:
            self.mrrec.report_error(exc)
            return
        needle = self.query_one("#user-filter", Input).value.strip().lower()
        shown = [u for u in users if needle in u.lower()][:MAX_LISTED]
        options = self.query_one("#user-list", OptionList)
        options.clear_options()
        current = self.mrrec.user
        options.add_options(
            Option(
                Content.assemble(printable(u), ("  (current)", "$success") if u == current else ""),
                id=u,
            )
            for u in shown
        )
        if current in shown:
            options.highlighted = shown.index(current)
        elif shown:
            options.highlighted = 0
        if not users:
            self.query_one("#user-info", Static).update(
                Content("No users yet: press i to import history, or n to start a new user.")
            )

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "user-filter":
            self.refresh_users()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        options = self.query_one("#user-list", OptionList)
        if options.option_count:
            options.focus()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show_info(event.option.id or "")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.mrrec.set_user(event.option.id or "")
        self.mrrec.switch_mode("chat")

    def _show_info(self, user: str) -> None:
        ws = self.mrrec.workspace
        try:
            history = ws.user_history(user)
            tiers: dict[str, int] = {}
            for e in ws.list_memory(user=user, tiers=["pattern", "profile"], limit=1000):
                tiers[e.tier] = tiers.get(e.tier, 0) + 1
            conversations = len(ws.conversations.for_user(user, limit=1000))
        except MrrecError as exc:
            self.mrrec.report_error(exc)
            return
        info: list[Any] = [
            Content.styled(f"user {user}\n", "bold"),
            f"{len(history)} behavior records, {tiers.get('pattern', 0)} patterns, "
            f"{tiers.get('profile', 0)} profile entries, {conversations} conversations\n",
        ]
        if history:
            recent = ", ".join(r["title"] for r in history[-3:])
            info.append(Content.styled(f"most recent: {recent}\n", "dim"))
        if history and not tiers:
            info.append(Content.styled("memory not built yet: b builds it\n", "$warning"))
        self.query_one("#user-info", Static).update(Content.assemble(*info))

    def _highlighted(self) -> str | None:
        options = self.query_one("#user-list", OptionList)
        if options.highlighted is None:
            return None
        return options.get_option_at_index(options.highlighted).id

    def action_focus_filter(self) -> None:
        self.query_one("#user-filter", Input).focus()

    def action_new_user(self) -> None:
        def create(name: str | None) -> None:
            if not name:
                return
            try:
                added = self.mrrec.workspace.add_user(name)
            except MrrecError as exc:
                self.mrrec.report_error(exc)
                return
            self.notify(f"Created user {name}." if added else f"User {name} already exists.")
            self.mrrec.set_user(name.strip())
            self.refresh_users()

        self.app.push_screen(TextDialog("New user", placeholder="a name or id"), create)

    def action_import(self) -> None:
        self.mrrec.open_import()

    def action_build(self) -> None:
        user = self._highlighted()
        if user is None:
            return

        def build() -> dict[str, int]:
            ws = self.mrrec.workspace
            out = ws.remembered_builder().build_user(user)
            if ws.has_embedder():
                ws.embed_pending()
            return out

        def done(out: dict[str, int]) -> None:
            self.notify(
                f"Built {out['patterns']} patterns and {out['profile_chunks']} profile entries "
                f"for user {user}."
            )
            self._show_info(user)

        self.mrrec.run_task(
            build, name="build-memory", label=f"building {user}'s memory", done=done
        )
