"""Small file-system helpers: paths a user gives, folders and files written atomically, file
checksums.

Every folder this project writes whole (a model bundle, its embedder and LLM, a scenario dataset,
a published adapter, a cached checkpoint, a fetched dataset, a training checkpoint) is built in a
temporary folder beside its target and renamed into place with :func:`atomic_dir`, so it is
either complete or absent; a small file rewritten whole (a run summary, a config) goes through
:func:`atomic_file` the same way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mrrec_edge.errors import DiskError, disk_error


def user_path(path: str | os.PathLike[str]) -> Path:
    """A path as a user gave it (on the command line, in a config file), made absolute: ``~``
    expanded, a relative path taken from the current directory now.

    Every entry point turns user paths into absolute ones here, where they enter: a relative path
    would name another folder for code that runs elsewhere (the bundle builder's subprocess runs
    in a scratch folder). Symbolic links are kept as named (``absolute``, not ``resolve``): a
    ``--out`` that is a link is replaced, not the folder it points to.
    """
    return Path(path).expanduser().absolute()


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    """What a manifest stores for one file: ``{"size", "sha256"}``."""
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def folder_records(folder: Path, prefix: str = "") -> dict[str, dict[str, Any]]:
    """``{relative posix path: file_record}`` for every file under ``folder``, sorted."""
    return {
        prefix + path.relative_to(folder).as_posix(): file_record(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def fsync_path(path: Path) -> None:
    """Flushes one file's, or one folder's entries', writes to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """:func:`fsync_path` on every file and folder under ``folder``, and ``folder`` itself."""
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if not path.is_symlink():
            fsync_path(path)
    fsync_path(folder)


@contextmanager
def _disk_errors_name(target: Path) -> Iterator[None]:
    """A full or read-only disk, met while writing ``target`` through a temporary path, is raised
    as a :class:`~mrrec_edge.errors.DiskError` that names ``target``."""
    try:
        yield
    except Exception as exc:
        disk = disk_error(exc)
        # Another disk's error (a cache elsewhere) keeps its own path.
        if disk is None or (disk.path and not Path(disk.path).is_relative_to(target.parent)):
            raise
        raise DiskError(target, full=disk.full) from exc


def replace_dir(new: Path, target: Path) -> None:
    """Rename ``new`` onto ``target``; an existing ``target`` is moved aside first, then deleted.

    ``new`` must be on the same filesystem (a temporary folder beside ``target``), so each rename
    is atomic; if the second one fails, the previous ``target`` is put back.
    """
    old: Path | None = None
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        old.rmdir()
        target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        if old is not None:
            old.rename(target)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


@contextmanager
def atomic_dir(
    target: Path, *, keep_existing: bool = False, durable: bool = False
) -> Iterator[Path]:
    """A new, empty folder beside ``target`` to fill; renamed onto ``target`` when the block ends.

    The folder is ``.<name>.tmp-*`` in ``target``'s parent (created if needed), mode 0755 (not
    mkdtemp's private 0700). When the block raises, it is deleted and ``target`` is untouched.
    Otherwise it replaces ``target`` (:func:`replace_dir`), or, with ``keep_existing``, it is
    discarded when a ``target`` is already there (another process built the same folder first).

    With ``durable``, every file and folder in it is fsynced before the rename and the parent
    after it, so a power cut cannot leave a complete-looking ``target`` whose files were never
    written (a training checkpoint that resume would trust). A kill (SIGKILL) leaves the previous
    ``target``, or none if there was none, and at most a ``.<name>.tmp-*`` or ``.<name>.old-*``
    folder beside it: never a part-written ``target``.

    A full or read-only disk (:func:`~mrrec_edge.errors.disk_error`) is raised as a
    :class:`~mrrec_edge.errors.DiskError` that names ``target``: it fails a build somewhere deep
    inside (an ONNX save, a builder subprocess, an inner ``atomic_dir``), where the only path
    known is a temporary one.
    """
    target = Path(target)
    tmp: Path | None = None
    try:
        with _disk_errors_name(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
            tmp.chmod(0o755)
            yield tmp
            if durable:
                fsync_tree(tmp)
            if not keep_existing:
                replace_dir(tmp, target)
            elif not target.exists():
                try:
                    tmp.rename(target)
                except OSError:  # another process's rename won the race
                    if not target.exists():
                        raise
            if durable:
                fsync_path(target.parent)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` to write; when the block ends it is fsynced and renamed
    onto ``target`` (``os.replace``, atomic), and the folder fsynced.

    Readers (and a process that starts after a kill) see the previous ``target`` or the new one
    whole, never a truncated one. The file is ``.<name>.tmp-*``, mode 0644; when the block
    raises, it is deleted and ``target`` is untouched. Disk errors name ``target`` as in
    :func:`atomic_dir`.
    """
    target = Path(target)
    tmp: Path | None = None
    try:
        with _disk_errors_name(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
            os.close(fd)
            tmp = Path(name)
            tmp.chmod(0o644)
            yield tmp
            fsync_path(tmp)
            os.replace(tmp, target)
            fsync_path(target.parent)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
