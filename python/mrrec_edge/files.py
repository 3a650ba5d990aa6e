"""Small file-system helpers shared by everything that writes folders atomically."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


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
