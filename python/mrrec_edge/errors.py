"""The exception hierarchy of mrrec-edge.

Every error the package raises on purpose derives from :class:`MrrecError`. The Rust core maps
its single error enum onto these classes (see ``rust/src/python.rs``), so Python callers catch one
hierarchy whichever side failed.
"""

from __future__ import annotations


class MrrecError(Exception):
    """Base class of every mrrec-edge error."""


class InputError(MrrecError, ValueError):
    """A bad input file or value: the message names the file, line and field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.field = field


class StoreError(MrrecError):
    """The memory database could not be opened, read or written."""


class StoreLockedError(StoreError):
    """Another process holds the memory database for writing."""


class DenseIndexError(MrrecError):
    """The dense (vector) index could not be built, loaded or queried."""


class NotFoundError(MrrecError, KeyError):
    """A user, item or memory entry that does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class BundleError(MrrecError):
    """A model bundle is missing or broken; the message says how to build one."""


class ConfigError(MrrecError):
    """The configuration file is invalid."""
