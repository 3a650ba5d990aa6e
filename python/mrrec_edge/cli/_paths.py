"""The one parameter type of every path a user gives the command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from mrrec_edge.files import user_path


class UserPath(click.Path):
    """``click.Path`` that hands the command an absolute :class:`~pathlib.Path`
    (:func:`mrrec_edge.files.user_path`): ``~`` expanded, a relative path taken from the
    directory the command was run in, whatever the command does with it later."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(path_type=Path, **kwargs)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str | os.PathLike):
            value = os.path.expanduser(value)  # a quoted ~ (MRREC_HOME="~/x") reaches us as is
        return user_path(super().convert(value, param, ctx))
