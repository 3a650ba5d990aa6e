"""The memory inspector: everything the assistant remembers about the user, by tier; search it,
forget an entry (what was derived from it is rebuilt) or edit one.

Editing is forget + re-add (``Workspace.edit_memory``): patterns, profile entries and global
memory can be rewritten; behavior records are what the user did, so they are forgotten, not
edited (react to the item again on a card to record something new).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static, Tab, Tabs

from mrrec_edge._core import MemoryEntry
from mrrec_edge.tui.screens.dialogs import ConfirmDialog, TextDialog
from mrrec_edge.tui.text import printable
from mrrec_edge.tui.widgets.status import StatusBar

if TYPE_CHECKING:
    from mrrec_edge.tui.app import MrrecApp

TIERS = {
    "behavior": "Records",
    "pattern": "Patterns",
    "profile": "Profile",
    "global": "Global",
}
#: Entries listed per tier (newest first); search reaches the rest.
LIST_LIMIT = 500
SEARCH_K = 50


def dependents(entry: MemoryEntry) -> str:
    """What forgetting ``entry`` refreshes, for the confirmation."""
    if entry.tier == "behavior":
        return "Your patterns and profile will be rebuilt without it."
    if entry.tier == "pattern":
        return "The profile will be rebuilt without it."
    return "Nothing else depends on it."


class MemoryScreen(Screen[None]):
    BINDING_GROUP_TITLE = "Memory inspector"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_search", "Search", key_display="/"),
        Binding("f,delete", "forget", "Forget"),
        Binding("e", "edit", "Edit"),
        Binding("r", "reload", "Reload"),
        Binding("1", "tier('behavior')", "Records", show=False),
        Binding("2", "tier('pattern')", "Patterns", show=False),
        Binding("3", "tier('profile')", "Profile", show=False),
        Binding("4", "tier('global')", "Global", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.tier = "behavior"
        self.entries: list[MemoryEntry] = []
        self.searching = ""

    @property
    def mrrec(self) -> MrrecApp:
        return cast("MrrecApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="memory-body"):
            with Horizontal(id="memory-top"):
                yield Tabs(*(Tab(f"{label}", id=tier) for tier, label in TIERS.items()))
                yield Input(placeholder="Search memory (/), enter", id="memory-search")
            table: DataTable[str] = DataTable(id="memory-table", cursor_type="row")
            yield table
            yield Static(id="memory-detail")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Memory inspector"
        table = self.query_one(DataTable)
        self.watch(self.mrrec, "user", lambda _u: self.reload(), init=False)
        self.reload()
        table.focus()

    def on_screen_resume(self) -> None:
        self.reload()

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tab.id and event.tab.id != self.tier:
            self.tier = event.tab.id
            self.reload()

    def action_tier(self, tier: str) -> None:
        self.query_one(Tabs).active = tier

    def action_focus_search(self) -> None:
        self.query_one("#memory-search", Input).focus()

    def action_reload(self) -> None:
        self.reload()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.searching = event.value.strip()
        self.reload()
        self.query_one(DataTable).focus()

    def reload(self) -> None:
        """Lists the tier (or searches it) in a worker; the table fills when it is done."""
        user = self.mrrec.user
        tier, text = self.tier, self.searching
        if user is None and tier != "global":
            self._fill([], None)
            self._detail(Content("No user yet: pick or create one (F4)."))
            return
        ws = self.mrrec.workspace
        owner = None if tier == "global" else user

        def load() -> tuple[list[MemoryEntry], list[float] | None]:
            if text:
                hits = ws.search_memory(text, user=owner, k=SEARCH_K, tiers=[tier])
                return [h.entry for h in hits], [h.score for h in hits]
            return ws.list_memory(user=owner, tiers=[tier], limit=LIST_LIMIT), None

        self.mrrec.run_task(
            load,
            name="memory-list",
            label="",
            done=lambda out: self._fill(*out),
            exclusive=True,
        )

    def _fill(self, entries: list[MemoryEntry], scores: list[float] | None) -> None:
        self.entries = entries
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear(columns=True)
        table.add_column("id", width=7)
        table.add_column("categories", width=22)
        if scores is not None:
            table.add_column("score", width=6)
        table.add_column("memory")
        for i, e in enumerate(entries):
            # rich Text: user data is never read as markup.
            cells = [Text(str(e.id)), Text(printable(", ".join(e.categories)))]
            if scores is not None:
                cells.append(Text(f"{scores[i]:.3f}"))
            cells.append(Text(printable(e.text.replace("\n", " "))))
            table.add_row(*cells, key=str(e.id))
        if entries:
            table.move_cursor(row=min(row, len(entries) - 1))
        what = f"matching “{self.searching}”" if self.searching else "newest first"
        table.border_title = f"{TIERS[self.tier]}: {len(entries)} {what}"
        self._show_selected()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_selected()

    def _selected(self) -> MemoryEntry | None:
        table = self.query_one(DataTable)
        if not self.entries or table.cursor_row >= len(self.entries):
            return None
        return self.entries[table.cursor_row]

    def _detail(self, content: Content) -> None:
        self.query_one("#memory-detail", Static).update(content)

    def _show_selected(self) -> None:
        e = self._selected()
        if e is None:
            self._detail(Content.styled("Nothing here.", "dim"))
            return
        sources = ", ".join(f"#{s}" for s in e.source_ids[:12]) or "none"
        self._detail(
            Content.assemble(
                (f"#{e.id} {e.tier}", "bold"),
                (printable(f"  categories: {', '.join(e.categories) or '-'}"), "dim"),
                (printable(f"  item: {e.item}") if e.item else "", "dim"),
                (f"  sources: {sources}\n", "dim"),
                printable(e.text),
            )
        )

    def action_forget(self) -> None:
        entry = self._selected()
        if entry is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.mrrec.run_task(
                    lambda: self.mrrec.workspace.forget([entry.id]),
                    name="forget",
                    label=f"forgetting #{entry.id}",
                    done=lambda out: self._forgotten(entry, out),
                )

        body = f"{entry.text[:300]}\n\n{dependents(entry)}"
        self.app.push_screen(
            ConfirmDialog(f"Forget #{entry.id} ({entry.tier})?", body, yes="Forget"), confirmed
        )

    def _forgotten(self, entry: MemoryEntry, out: dict[str, int]) -> None:
        rebuilt = ""
        if out["patterns"] or out["profile_chunks"]:
            rebuilt = (
                f"; rebuilt {out['patterns']} pattern and {out['profile_chunks']} profile entries"
            )
        self.notify(f"Forgot #{entry.id}{rebuilt}.", title="Memory")
        self.reload()

    def action_edit(self) -> None:
        entry = self._selected()
        if entry is None:
            return
        if entry.tier == "behavior":
            self.notify(
                "A behavior record is what you did: forget it (f), or react to the item on a card.",
                severity="warning",
            )
            return

        def save(text: str | None) -> None:
            if not text or text == entry.text:
                return
            self.mrrec.run_task(
                lambda: self.mrrec.workspace.edit_memory(entry.id, text),
                name="edit",
                label=f"editing #{entry.id}",
                done=lambda new: (self.notify(f"Saved as #{new}.", title="Memory"), self.reload()),
            )

        self.app.push_screen(
            TextDialog(f"Edit #{entry.id} ({entry.tier})", text=entry.text, multiline=True), save
        )
