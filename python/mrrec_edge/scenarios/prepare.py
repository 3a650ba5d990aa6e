"""A prepared workspace: an mrrec home holding a scenario dataset's catalog and history-only
interactions, embedded, with every user's local memory and the train users' global memory.

Training and evaluation open it with ``Workspace.open(home)``. It is built in a partial folder
beside ``home`` (resumable: each step skips what an interrupted run finished) and renamed into
place with a marker written last, so a home with a marker is complete, and calling again with the
same dataset, embedder and summarizer returns at once.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mrrec_edge.config import CONFIG_FILE, load_settings
from mrrec_edge.errors import BundleError, InputError, StoreError
from mrrec_edge.files import atomic_file, replace_dir, sha256_file
from mrrec_edge.scenarios.build import (
    DATASET_VERSION,
    MANIFEST,
    history_dir,
    keywords_file,
    load_examples,
    load_manifest,
)
from mrrec_edge.workspace import Workspace

log = logging.getLogger(__name__)

MARKER = ".mrrec-prepared.json"
_PARTIAL_KEY = ".mrrec-prepare-key.json"
SUMMARIZERS = ("stats",)
#: Item pools a workspace can hold: the dataset's 1,682 MovieLens 100K items, or those plus the
#: 13.8k-item MovieLens 25M keyword catalog (evaluation over a larger pool, as the paper ranks
#: its full item set).
CATALOGS = ("ml100k", "ml25m-keywords")
#: The stages reported to ``progress(stage, done, total)``.
STAGES = ("import", "embed", "memory", "global", "pool", "index")

StageProgress = Callable[[str, int, int | None], None]


def prepared_marker(home: str | Path) -> dict[str, Any] | None:
    """The marker of a complete prepared workspace (its key, counts and timings), else None."""
    path = Path(home) / MARKER
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One preparer per home at a time (e.g. every rank of a torchrun job calls this)."""
    try:
        import fcntl
    except ImportError:  # Windows: one process at a time is the caller's business
        yield
        return
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f".{home.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def prepare_workspace(
    dataset_dir: str | Path,
    home: str | Path,
    *,
    keywords_csv: str | Path | None = None,
    summarizer: str = "stats",
    bundle: str | Path | None = None,
    catalog: str = "ml100k",
    progress: StageProgress | None = None,
) -> Path:
    """Makes ``home`` a ready workspace for ``dataset_dir`` and returns it.

    ``keywords_csv`` defaults to the dataset's own copy; ``bundle`` (a folder with ``embedder/``)
    defaults to the bundle of the current settings ($MRREC_HOME), and the home's config.toml
    points there so that the assistant and the embeddings use the same models.

    ``catalog="ml25m-keywords"`` also imports the keyword CSV as a catalog once the memory is
    built, as ``mrrec import movielens-csv`` does: the MovieLens 100K items it matches by title
    and year are merged (their genres joined), the others added and embedded. Users, local and
    global memory are the same as in the MovieLens 100K workspace; only the pool grows.
    """
    dataset = Path(dataset_dir)
    home = Path(home).expanduser()
    if summarizer not in SUMMARIZERS:
        raise InputError(f"unknown summarizer {summarizer!r} (one of: {', '.join(SUMMARIZERS)})")
    if catalog not in CATALOGS:
        raise InputError(f"unknown catalog {catalog!r} (one of: {', '.join(CATALOGS)})")
    manifest = load_manifest(dataset, verify=True)
    keywords = Path(keywords_csv) if keywords_csv is not None else keywords_file(dataset)
    if manifest["parameters"]["keywords"] and keywords is None:
        raise InputError(f"{dataset}: built with keywords, but its catalog/ copy is missing")
    if keywords is not None and not keywords.is_file():
        raise InputError(f"{keywords}: missing (the MovieLens 25M keyword CSV)", path=str(keywords))
    if catalog == "ml25m-keywords" and keywords is None:
        raise InputError(f"{dataset}: --catalog {catalog} needs the MovieLens 25M keyword CSV")
    bundle_path = (Path(bundle) if bundle is not None else load_settings().bundle_path).resolve()
    embedder_json = bundle_path / "embedder" / "embedder.json"
    if not embedder_json.is_file():
        raise BundleError(
            f"no embedder at {embedder_json.parent}; build it with `mrrec bundle embedder` "
            "(or pass the bundle folder that holds one)"
        )
    key = {
        "dataset_version": DATASET_VERSION,
        "dataset_manifest_sha256": sha256_file(dataset / MANIFEST),
        "keywords_sha256": sha256_file(keywords) if keywords else None,
        "embedder_sha256": sha256_file(embedder_json),
        "summarizer": summarizer,
        "global_split": "train",
    }
    if catalog != "ml100k":  # only then: homes prepared before pools existed stay valid
        key["catalog"] = catalog
    with _locked(home):
        marker = prepared_marker(home)
        if marker is not None and marker.get("key") == key:
            _write_config(home, bundle_path)  # the same embedder may have moved
            return home
        if marker is None and home.exists() and any(home.iterdir()):
            raise InputError(
                f"{home}: exists and is not a prepared workspace (no {MARKER}); "
                "give a new or empty folder"
            )
        partial = home.with_name(f".{home.name}.partial")
        if _partial_key(partial) != key:
            shutil.rmtree(partial, ignore_errors=True)  # another dataset's or embedder's leftovers
        partial.mkdir(parents=True, exist_ok=True)
        (partial / _PARTIAL_KEY).write_text(json.dumps(key, indent=2), encoding="utf-8")
        _write_config(partial, bundle_path)
        report = _build(partial, dataset, manifest, keywords, catalog, progress or _quiet)
        gc.collect()  # the store is closed before its folder moves
        (partial / _PARTIAL_KEY).unlink()
        # Written last: only a complete workspace carries it.
        (partial / MARKER).write_text(
            json.dumps({"key": key, **report}, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        if home.exists() and not any(home.iterdir()):
            home.rmdir()
        replace_dir(partial, home)
    log.info("prepared %s from %s: %s", home, dataset, report)
    return home


def _write_config(home: Path, bundle_path: Path) -> None:
    """Points the home at the bundle (a JSON string is a valid TOML basic string)."""
    text = f"[bundle]\npath = {json.dumps(str(bundle_path))}\n"
    path = home / CONFIG_FILE
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _quiet(stage: str, done: int, total: int | None) -> None:
    pass


def _partial_key(partial: Path) -> dict[str, Any] | None:
    try:
        return json.loads((partial / _PARTIAL_KEY).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _build(
    home: Path,
    dataset: Path,
    manifest: dict[str, Any],
    keywords: Path | None,
    catalog: str,
    progress: StageProgress,
) -> dict[str, Any]:
    # Imported here: global memory reads this package's keyword vocabulary (an import cycle).
    from mrrec_edge.memory.global_memory import build_global_memory

    timings: dict[str, float] = {}
    ws = Workspace(load_settings(home))
    with ws:
        start = time.perf_counter()
        if ws.store.stats()["users"] == 0:  # the import is one transaction: all or nothing
            ws.import_data(
                "movielens-100k",
                history_dir(dataset),
                keywords=keywords,
                progress=lambda done, total: progress("import", done, total or None),
            )
        stats = ws.store.stats()
        expected = manifest["counts"]["interactions"]["history"]
        if stats["interactions"] != expected:
            raise StoreError(
                f"{home}: {stats['interactions']} interactions after the import, the dataset has "
                f"{expected}; delete {home} and run again"
            )
        timings["import_s"] = time.perf_counter() - start

        start = time.perf_counter()
        _embed(ws, progress)
        timings["embed_items_s"] = time.perf_counter() - start
        start = time.perf_counter()
        users = ws.store.users()
        done = 0

        def on_user(n: int) -> None:
            nonlocal done
            done += n
            progress("memory", done, len(users))

        memory = ws.memory_builder().build_all(users, resume=True, progress=on_user)
        timings["memory_s"] = time.perf_counter() - start
        start = time.perf_counter()
        _embed(ws, progress)
        timings["embed_memory_s"] = time.perf_counter() - start

        start = time.perf_counter()
        examples = load_examples(dataset)
        train = sum(e["split"] == "train" for e in examples)
        seen = 0

        def on_choice(n: int) -> None:
            nonlocal seen
            seen += n
            progress("global", seen, train)

        global_report = build_global_memory(ws, examples, split="train", progress=on_choice)
        timings["global_s"] = time.perf_counter() - start

        if catalog == "ml25m-keywords":
            assert keywords is not None
            start = time.perf_counter()
            # After the memory: a larger pool must not change what the users' memory holds.
            # Re-importing adds nothing, so a resumed run just goes on to the embedding.
            ws.import_data(
                "movielens-csv",
                keywords,
                progress=lambda done, total: progress("pool", done, total or None),
            )
            _embed(ws, progress)
            timings["pool_s"] = time.perf_counter() - start

        start = time.perf_counter()
        progress("index", 0, None)
        ws.store.open_indexes()
        progress("index", 1, 1)
        timings["index_s"] = time.perf_counter() - start
        stats = ws.store.stats()
    return {
        "catalog": catalog,
        "stats": stats,
        "memory": memory,
        "global": global_report,
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }


def _embed(ws: Workspace, progress: StageProgress) -> None:
    total = ws.pending_embeddings()
    done = 0

    def on_batch(n: int) -> None:
        nonlocal done
        done += n
        progress("embed", done, total)

    ws.embed_pending(progress=on_batch)
