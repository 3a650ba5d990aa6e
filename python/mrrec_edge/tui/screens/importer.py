"""Importing history: any importer the CLI has, a file picker, and a progress bar.

The import runs in a worker thread (one transaction: a bad row stops it and nothing is
written); then the new texts are embedded and, for a one-person import, that user's memory is
built. Esc stops a running import (rolled back) or the embedding after its current batch
(resumable: the rest is embedded on the next import or `mrrec index rebuild`).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label, ProgressBar, Select, Static

from mrrec_edge._core import import_kinds
from mrrec_edge.errors import MrrecError

if TYPE_CHECKING:
    from mrrec_edge.tui.app import MrrecApp

#: Importers of one person's export, which need to know whose history it is.
ONE_PERSON = {"letterboxd", "goodreads"}


class ImportCancelled(MrrecError):
    """The user stopped the import (Esc); nothing was written."""


class ImportScreen(ModalScreen[dict[str, Any] | None]):
    BINDING_GROUP_TITLE = "Import"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "start", "Import"),
        Binding("escape", "stop_or_close", "Stop / close"),
    ]

    def __init__(self, start: Path | None = None, user: str | None = None) -> None:
        super().__init__(classes="dialog-screen")
        self.start = start or Path.cwd()
        self.default_user = user or ""
        self._cancel = threading.Event()
        self.running = False

    @property
    def mrrec(self) -> MrrecApp:
        return cast("MrrecApp", self.app)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-wide", id="import"):
            yield Label(Content.styled("Import history", "bold"), classes="dialog-title")
            with Horizontal(classes="form-row"):
                yield Label("Kind", classes="form-label")
                kinds = import_kinds()
                yield Select(
                    [(k, k) for k in kinds], value=kinds[0], allow_blank=False, id="import-kind"
                )
            with Horizontal(classes="form-row"):
                yield Label("Path", classes="form-label")
                yield Input(
                    placeholder="a file or an export folder (type a folder to browse it)",
                    id="import-path",
                )
            yield DirectoryTree(self.start, id="import-tree")
            with Horizontal(classes="form-row"):
                yield Label("User", classes="form-label")
                yield Input(
                    self.default_user,
                    placeholder="whose history (letterboxd, goodreads); blank: as in the file",
                    id="import-user",
                )
            with Horizontal(classes="form-row"):
                yield Label("Keywords", classes="form-label")
                yield Input(
                    placeholder="optional: MovieLens 25M keyword CSV (movielens-100k only)",
                    id="import-keywords",
                )
            yield ProgressBar(id="import-progress", show_eta=False)
            yield Static(id="import-status")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Import (ctrl+s)", variant="primary", id="import-start")
                yield Button("Close (esc)", id="import-close")

    def on_mount(self) -> None:
        self.query_one("#import-progress").display = False
        self.query_one("#import-path", Input).focus()

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.query_one("#import-path", Input).value = str(event.path)

    def on_directory_tree_directory_selected(self, event: DirectoryTree.DirectorySelected) -> None:
        self.query_one("#import-path", Input).value = str(event.path)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "import-path":
            return
        folder = Path(event.value).expanduser()
        tree = self.query_one(DirectoryTree)
        if event.value and folder.is_dir() and folder.resolve() != Path(tree.path).resolve():
            tree.path = folder

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "import-start":
            self.action_start()
        else:
            self.action_stop_or_close()

    def _status(self, text: str, style: str = "") -> None:
        self.query_one("#import-status", Static).update(Content.styled(text, style))

    def action_stop_or_close(self) -> None:
        if self.running:
            self._cancel.set()
            self._status("stopping…", "$warning")
        else:
            self.dismiss(None)

    def action_start(self) -> None:
        if self.running:
            return
        kind = str(self.query_one("#import-kind", Select).value)
        raw = self.query_one("#import-path", Input).value.strip()
        user = self.query_one("#import-user", Input).value.strip() or None
        keywords = self.query_one("#import-keywords", Input).value.strip()
        path = Path(raw).expanduser()
        if not raw or not path.exists():
            self._status(f"no such file or folder: {raw or '(empty)'}", "$error")
            return
        if kind in ONE_PERSON and not user:
            self._status(f"a {kind} export is one person's: say whose in User", "$error")
            return
        keywords_path = Path(keywords).expanduser() if keywords else None
        if keywords_path is not None and not keywords_path.is_file():
            self._status(f"no such keyword file: {keywords}", "$error")
            return
        self.running = True
        self._cancel.clear()
        self.query_one("#import-start", Button).disabled = True
        bar = self.query_one("#import-progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        self._status(f"importing {path.name}…")
        self.mrrec.run_task(
            lambda: self._import(kind, path, user, keywords_path),
            name="import",
            label=f"importing {path.name}",
            done=self._done,
            failed=self._failed,
        )

    # -- the worker thread ----------------------------------------------------------------

    def _import(
        self, kind: str, path: Path, user: str | None, keywords: Path | None
    ) -> dict[str, Any]:
        ws = self.mrrec.workspace
        last = 0.0

        def throttled(fn: Any, *args: Any, force: bool = False) -> None:
            nonlocal last
            if self._cancel.is_set():
                raise ImportCancelled("import stopped: nothing was written")
            now = time.monotonic()
            if force or now - last >= 0.1:
                last = now
                self.app.call_from_thread(fn, *args)

        before = set(ws.users())
        report = ws.import_data(
            kind,
            path,
            user=user,
            keywords=keywords,
            progress=lambda done, total: throttled(self._progress, "importing", done, total),
        )
        report["embedded"] = 0
        pending = ws.pending_embeddings()
        if pending and ws.has_embedder():
            done = 0

            def embedded(n: int) -> None:
                nonlocal done
                done += n
                throttled(self._progress, "embedding", done, pending)

            try:
                report["embedded"] = ws.embed_pending(progress=embedded)
            except ImportCancelled:
                report["embedded"] = done  # what was embedded stays; the rest resumes later
            self.app.call_from_thread(self._progress, "indexing", 0, 0)
            ws.open_indexes()
        added = [u for u in ws.users() if u not in before]
        if user is None and len(added) == 1:
            user = added[0]  # one new person's history: switch to them, as for an export
        if user:
            self.app.call_from_thread(self._progress, f"building {user}'s memory", 0, 0)
            ws.ensure_user_memory(user)
        report["user"] = user
        return report

    def _progress(self, phase: str, done: int, total: int) -> None:
        bar = self.query_one("#import-progress", ProgressBar)
        bar.update(total=total or None, progress=done)
        self._status(f"{phase}…")

    # -- back on the UI thread ------------------------------------------------------------

    def _finish(self) -> None:
        self.running = False
        self.query_one("#import-start", Button).disabled = False

    def _done(self, report: dict[str, Any]) -> None:
        self._finish()
        summary = (
            f"imported {report['records_added']} interactions "
            f"({report['records_skipped']} already present), {report['items_added']} new items, "
            f"{report['users_added']} new users"
        )
        self.notify(summary, title="Import done")
        self.dismiss(report)

    def _failed(self, exc: BaseException) -> None:
        self._finish()
        self.query_one("#import-progress").display = False
        self._status(str(exc), "$error")
