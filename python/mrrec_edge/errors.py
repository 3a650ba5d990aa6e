"""The exception hierarchy of mrrec-edge.

Every error the package raises on purpose derives from :class:`MrrecError`. The Rust core maps
its single error enum onto these classes (see ``rust/src/python.rs``), so Python callers catch one
hierarchy whichever side failed.
"""

from __future__ import annotations

import errno
import os


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


class DiskError(MrrecError):
    """A write failed because its disk is full (``full``) or its file system or folder cannot
    be written. What was being written was undone (a transaction rolled back, a temporary folder
    deleted), and the message says what to do. Raised by the Rust core too, with ``path``."""

    def __init__(self, path: str | os.PathLike[str] | None, *, full: bool) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.full = full
        if full:
            where = f" for {self.path}" if self.path else ""
            message = (
                f"no space left on device{where}: the unfinished write was undone; "
                "free some space and run the command again"
            )
        else:
            where = f" to {self.path}" if self.path else ""
            message = (
                f"cannot write{where}: the file system is read-only or the folder is not "
                "writable; nothing was written"
            )
        super().__init__(message)


#: errno values of a write that failed for the disk, not for the data: full, read-only.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_READ_ONLY = frozenset({errno.EROFS})


def disk_error(exc: BaseException, path: str | os.PathLike[str] | None = None) -> DiskError | None:
    """``exc`` as a :class:`DiskError` when a full or read-only disk caused it, else None; the
    one test of "the disk, not the data" on the Python side (the Rust core has its own,
    ``Error::disk_full``). ``path`` names what was being written (default: the OS error's file).

    An OSError says so by its errno. Libraries that wrap it in their own exception (safetensors,
    onnx) or print it (a builder subprocess) keep only its text, the OS's own wording of it.
    """
    if isinstance(exc, DiskError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _FULL | _READ_ONLY:
        return DiskError(path or exc.filename, full=exc.errno in _FULL)
    text = str(exc)
    for code in sorted(_FULL | _READ_ONLY):
        if os.strerror(code) in text:
            return DiskError(path, full=code in _FULL)
    return None


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
