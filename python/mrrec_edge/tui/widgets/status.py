"""The status line above the footer: the bundle in use, the current user, what is running."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.content import Content
from textual.widgets import Static

if TYPE_CHECKING:
    from mrrec_edge.tui.app import MrrecApp


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
    }
    """

    def on_mount(self) -> None:
        app = cast("MrrecApp", self.app)
        for name in ("user", "state", "bundle_label"):
            self.watch(app, name, self._changed, init=False)
        self._changed()

    def _changed(self, _value: object = None) -> None:
        app = cast("MrrecApp", self.app)
        busy = app.state != "ready"
        self.update(
            Content.assemble(
                ("bundle ", "dim"),
                (app.bundle_label, "bold"),
                ("  │  user ", "dim"),
                (app.user or "none", "bold"),
                ("  │  ", "dim"),
                (app.state, "bold $warning" if busy else "bold $success"),
            )
        )
