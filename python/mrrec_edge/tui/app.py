"""The mrrec-edge terminal app: chat, memory inspector, users and data, onboarding.

State lives in one :class:`~mrrec_edge.workspace.Workspace`; the screens are modes (F2 chat,
F3 memory, F4 users) over it. Slow work (generation, import, embedding, memory builds, bundle
builds) runs in worker threads through :meth:`MrrecApp.run_task`, which is also where errors
become notifications: the app never shows a traceback (they go to the log file).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, ClassVar, TypeVar

from rich.text import Text
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import Worker

from mrrec_edge.config import Settings
from mrrec_edge.errors import BundleError, MrrecError
from mrrec_edge.model import LanguageModel
from mrrec_edge.tui.screens.chat import ChatScreen
from mrrec_edge.tui.screens.dialogs import ConversationsScreen, HelpScreen
from mrrec_edge.tui.screens.importer import ImportScreen
from mrrec_edge.tui.screens.memory import MemoryScreen
from mrrec_edge.tui.screens.onboarding import OnboardingScreen
from mrrec_edge.tui.screens.users import UsersScreen
from mrrec_edge.tui.widgets.cards import RecommendationCard
from mrrec_edge.workspace import Workspace

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The classes whose keys the help screen and the command palette list, in this order.
KEYED: tuple[tuple[str, type], ...] = (
    ("Everywhere", App),  # replaced by MrrecApp below
    ("Chat", ChatScreen),
    ("Recommendation card", RecommendationCard),
    ("Memory inspector", MemoryScreen),
    ("Users and data", UsersScreen),
    ("Conversations", ConversationsScreen),
    ("Import", ImportScreen),
    ("Getting started", OnboardingScreen),
)


def short_model_name(name: str) -> str:
    return name.rsplit("/", 1)[-1].removesuffix("-Instruct")


class MrrecApp(App[None]):
    TITLE = "mrrec-edge"
    CSS_PATH = "mrrec.tcss"
    ENABLE_COMMAND_PALETTE = True
    MODES: ClassVar[dict[str, Any]] = {
        "chat": ChatScreen,
        "memory": MemoryScreen,
        "users": UsersScreen,
    }
    DEFAULT_MODE = "chat"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help"),
        Binding("f2", "switch_mode('chat')", "Chat"),
        Binding("f3", "switch_mode('memory')", "Memory"),
        Binding("f4", "switch_mode('users')", "Users"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    user: reactive[str | None] = reactive(None)
    state: reactive[str] = reactive("ready")
    bundle_label: reactive[str] = reactive("none")

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        user: str | None = None,
        workspace: Workspace | None = None,
        preload_model: bool = True,
    ) -> None:
        super().__init__()
        self.workspace = workspace or Workspace(settings)
        self.preload_model = preload_model
        self.bundle_error: str | None = None
        #: Every error shown to the user, in order (the tests assert there are none).
        self.errors: list[str] = []
        self._model_lock = threading.Lock()
        self._busy: dict[int, str] = {}
        self._task_ids = 0
        self._initial_user = user

    # -- startup ----------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.check_bundle()
        users = self.workspace.users()
        if self._initial_user is not None:
            if self._initial_user in users:
                self.user = self._initial_user
            else:
                self.report_error(MrrecError(f"unknown user {self._initial_user!r}"))
        if self.user is None and users:
            self.user = users[0]
        if self.bundle_error is not None or not users:
            self.push_screen(OnboardingScreen())
        else:
            self.preload()

    def check_bundle(self) -> None:
        try:
            bundle = self.workspace.bundle()
        except BundleError as exc:
            self.bundle_error = str(exc)
            self.bundle_label = "missing"
            return
        self.bundle_error = None
        tuned = "" if bundle.training is None else " tuned"
        self.bundle_label = f"{short_model_name(bundle.base_model)} {bundle.precision}{tuned}"

    def preload(self) -> None:
        """Loads the model in the background, so the first answer starts at once."""
        if self.preload_model and self.bundle_error is None:
            self.run_task(self.load_model, name="load-model", label="loading the model…")

    def load_model(self) -> LanguageModel:
        """The bundle's LLM, the embedder and the collaborative index, loaded once (from any
        thread): the first answer pays none of them."""
        with self._model_lock:
            model = self.workspace.model
            _ = self.workspace.embedder
            self.workspace.open_collab()
        return model

    def set_user(self, user: str) -> None:
        self.user = user
        if self.user is not None:
            self.notify(f"Now user {user}.", timeout=2)

    # -- running work -----------------------------------------------------------------------

    def run_task(
        self,
        fn: Callable[[], T],
        *,
        name: str,
        label: str,
        done: Callable[[T], Any] | None = None,
        failed: Callable[[BaseException], Any] | None = None,
        exclusive: bool = False,
    ) -> Worker[None]:
        """Runs ``fn`` in a worker thread; ``done(result)`` or ``failed(error)`` then run on the
        UI thread. ``label`` shows in the status line while it runs (empty: not shown). Errors
        are reported as notifications, never raised."""
        self._task_ids += 1
        task = self._task_ids
        if label:
            self._busy[task] = label
            self._update_state()

        def finish(callback: Callable[..., Any] | None, value: Any) -> None:
            self._busy.pop(task, None)
            self._update_state()
            if callback is not None:
                callback(value)

        def body() -> None:
            try:
                result = fn()
            except Exception as exc:
                log.exception("%s failed", name)
                self.call_from_thread(self.report_error, exc)
                self.call_from_thread(finish, failed, exc)
                return
            self.call_from_thread(finish, done, result)

        return self.run_worker(
            body, name=name, group=name, thread=True, exit_on_error=False, exclusive=exclusive
        )

    def _update_state(self) -> None:
        self.state = next(reversed(self._busy.values()), "ready") if self._busy else "ready"

    def report_error(self, exc: BaseException) -> None:
        """Shows an error as a notification (one line; the log has the details)."""
        if isinstance(exc, MrrecError | OSError | ValueError):
            message = str(exc)
        else:
            message = f"unexpected error ({type(exc).__name__}: {exc}); details in the log"
        self.errors.append(message)
        self.notify(message, title="Error", severity="error", timeout=8)

    def _handle_exception(self, error: Exception) -> None:
        # Textual's default prints a traceback with locals. An error that reaches here (a bug:
        # expected errors are reported where they happen) stops the widget that raised it, so
        # the app cannot go on: it exits with one line, and the traceback goes to the log.
        log.error("unexpected error in the TUI", exc_info=error)
        message = (
            f"mrrec-tui stopped on an unexpected error ({type(error).__name__}: {error}); "
            f"the details are in {self.workspace.settings.log_path}"
        )
        self.errors.append(message)
        self._return_code = 1
        self.panic(Text(message))

    # -- dialogs ----------------------------------------------------------------------------

    def open_import(self, done: Callable[[dict[str, Any]], Any] | None = None) -> None:
        def imported(report: dict[str, Any] | None) -> None:
            if report is None:
                return
            users = self.workspace.users()
            if report.get("user"):
                self.user = report["user"]
            elif self.user is None and users:
                self.user = users[0]
            for screen in self.screen_stack:
                if isinstance(screen, UsersScreen):
                    screen.refresh_users()
            if self.bundle_error is None:
                self.preload()
            if done is not None:
                done(report)

        self.push_screen(ImportScreen(user=None), imported)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.key_sections()))

    def action_new_user(self) -> None:
        self.switch_mode("users")
        self.call_after_refresh(lambda: self.screen.run_action("new_user"))

    # -- keys: the help screen and the command palette list the same bindings -------------------

    def key_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        sections = []
        for title, cls in ((t, MrrecApp if c is App else c) for t, c in KEYED):
            keys = [
                (_key_label(b), b.description)
                for b in _bindings(cls)
                # "Rate 1-5" stands for the keys 2-5 too.
                if b.description and not (b.key in "2345" and b.description.startswith("Rate"))
            ]
            if cls is MrrecApp:
                keys.append(("ctrl+p", "Command palette"))
            sections.append((title, keys))
        return sections

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Import history", "Import a history file (any importer)", self.open_import
        )
        yield SystemCommand("New user", "Create a user with no history", self.action_new_user)
        seen: set[str] = set()
        targets: list[Any] = [self, screen]
        if screen.focused is not None:
            targets.append(screen.focused)
        for target in targets:
            for b in _bindings(type(target)):
                if not b.description or b.action in seen or b.action == "quit":
                    continue
                seen.add(b.action)
                yield SystemCommand(
                    b.description,
                    f"key {_key_label(b)}",
                    partial(self._run_bound, target, b.action),
                )

    def _run_bound(self, target: Any, action: str) -> None:
        self.call_later(target.run_action, action)


def _bindings(cls: type) -> list[Binding]:
    out = []
    for b in cls.__dict__.get("BINDINGS", []):
        if isinstance(b, Binding):
            out.append(b)
    return out


def _key_label(b: Binding) -> str:
    return b.key_display or b.key.replace(",", " / ")
