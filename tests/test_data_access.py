"""The user-facing layers (the assistant, the CLI, the TUI) reach the store only through the
Workspace and its services (conversations, grounding, memory search, feedback)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "mrrec_edge"
LAYERS = [
    PACKAGE / "assistant.py",
    *(PACKAGE / "cli").rglob("*.py"),
    *(PACKAGE / "tui").rglob("*.py"),
]


def test_user_facing_layers_never_touch_the_store() -> None:
    assert len(LAYERS) > 15
    found = []
    for path in LAYERS:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "store":
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: .store")
            if isinstance(node, ast.ImportFrom) and any(
                a.name == "MemoryStore" for a in node.names
            ):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: imports MemoryStore")
    assert not found, "\n".join(found)


def test_sql_lives_in_the_store_module_only() -> None:
    """The Rust importers parse rows; the store (rust/src/store/) writes them."""
    importers = sorted((PACKAGE.parents[1] / "rust" / "src" / "import").glob("*.rs"))
    assert len(importers) >= 5
    sql = ("execute(", "prepare(", "prepare_cached(", "query_row(", "rusqlite")
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in importers
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if any(s in line for s in sql)
    ]
    assert not found, "\n".join(found)
