"""Console output shared by the CLI commands: progress bars on stderr, JSON or tables on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

err_console = Console(stderr=True)
# Results quote user data ("[Sci-Fi]", paths): never read them as rich markup.
out_console = Console(markup=False, highlight=False)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


@contextmanager
def progress_bar(*, counts: bool = True) -> Iterator[Progress]:
    """A rich progress display on stderr (silent when stderr is not a terminal)."""
    columns = [TextColumn("[progress.description]{task.description}"), BarColumn()]
    columns += [MofNCompleteColumn()] if counts else [TaskProgressColumn()]
    columns.append(TimeRemainingColumn())
    with Progress(
        *columns, console=err_console, transient=False, disable=not sys.stderr.isatty()
    ) as p:
        yield p


def note(message: str) -> None:
    err_console.print(message, highlight=False)
