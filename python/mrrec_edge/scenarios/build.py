"""Building the scenario dataset: targets, disjoint user splits, queries and history-only files.

The leakage rule: each user has one cutoff and up to K held-out targets at or after it, and
everything the dataset keeps of that user (the history file, hence the user's memory) lies
strictly before the cutoff. Interactions at or after it that are not targets are dropped
everywhere.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrrec_edge import __version__
from mrrec_edge._core import MemoryStore
from mrrec_edge.errors import InputError
from mrrec_edge.files import atomic_dir, folder_records, sha256_file
from mrrec_edge.scenarios.datasheet import render_datasheet
from mrrec_edge.scenarios.queries import (
    TEMPLATES,
    USE_CASES,
    CatalogItem,
    FacetCatalog,
    make_query,
)

DATASET_VERSION = "ml100k-scenarios-v2"
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
EXAMPLES = "examples.jsonl"
DATASHEET = "datasheet.md"
HISTORY_DIR = "history"
CATALOG_DIR = "catalog"
KEYWORDS_FILE = "movies_w_keywords.csv"

#: The two layouts the movielens-100k importer reads: (interactions, items, users).
LAYOUTS: dict[str, tuple[str, str, str]] = {
    "recbole": ("ml-100k.inter", "ml-100k.item", "ml-100k.user"),
    "grouplens": ("u.data", "u.item", "u.user"),
}
_GROUPLENS_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


@dataclass(frozen=True)
class Source:
    """A MovieLens 100K folder: which layout, and its three files."""

    layout: str
    inter: Path
    item: Path
    user: Path

    @property
    def files(self) -> tuple[Path, Path, Path]:
        return (self.inter, self.item, self.user)


@dataclass(frozen=True)
class Interaction:
    line: int  # 1-based line in the source file: the tie-break, and how errors name a row
    user: str
    item: str
    rating: float
    timestamp: int
    raw: str  # the row as read, copied verbatim into the history file


def find_source(ml100k_dir: Path) -> Source:
    """The MovieLens 100K files in ``ml100k_dir``; :class:`InputError` naming what is missing."""
    if not ml100k_dir.is_dir():
        raise InputError(f"{ml100k_dir}: no such folder", path=str(ml100k_dir))
    for layout, names in LAYOUTS.items():
        if (ml100k_dir / names[0]).is_file():
            paths = [ml100k_dir / n for n in names]
            for p in paths:
                if not p.is_file():
                    raise InputError(
                        f"{p}: missing (a MovieLens 100K folder needs {', '.join(names)})",
                        path=str(p),
                    )
            return Source(layout, *paths)
    raise InputError(
        f"{ml100k_dir}: not a MovieLens 100K folder (expected ml-100k.inter/.item/.user in "
        "recbole format, or GroupLens' u.data/u.item/u.user)",
        path=str(ml100k_dir),
    )


def _row_error(path: Path, line: int, field: str | None, message: str) -> InputError:
    where = f"{path}:{line}" + (f": {field}" if field else "")
    return InputError(f"{where}: {message}", path=str(path), line=line, field=field)


def read_interactions(source: Source) -> list[Interaction]:
    """Every rating row of the source, validated; bad rows raise with file:line: field."""
    path = source.inter
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    if source.layout == "recbole":
        if not lines:
            raise _row_error(path, 1, None, "empty file (expected a typed header)")
        columns = [c.split(":")[0].strip().lower() for c in lines[0].rstrip("\r\n").split("\t")]
        missing = [c for c in _GROUPLENS_COLUMNS if c not in columns]
        if missing:
            raise _row_error(path, 1, None, f"header lacks column(s) {', '.join(missing)}")
        first = 1
    else:
        columns, first = list(_GROUPLENS_COLUMNS), 0
    at = {c: columns.index(c) for c in _GROUPLENS_COLUMNS}
    rows: list[Interaction] = []
    for n, raw in enumerate(lines[first:], start=first + 1):
        row = raw.rstrip("\r\n")
        if not row.strip():
            continue
        parts = row.split("\t")
        if len(parts) != len(columns):
            raise _row_error(
                path, n, None, f"expected {len(columns)} tab-separated fields, found {len(parts)}"
            )
        for c in ("user_id", "item_id"):
            if not parts[at[c]].strip():
                raise _row_error(path, n, c, "empty")
        rating = _number(path, n, "rating", parts[at["rating"]])
        if not 0 <= rating <= 5:
            raise _row_error(path, n, "rating", f"{rating:g} is not in 0..5")
        timestamp = _number(path, n, "timestamp", parts[at["timestamp"]])
        if timestamp < 0:
            raise _row_error(path, n, "timestamp", f"{timestamp:g} is negative")
        rows.append(
            Interaction(
                line=n,
                user=parts[at["user_id"]].strip(),
                item=parts[at["item_id"]].strip(),
                rating=rating,
                timestamp=int(timestamp),
                raw=row + "\n",
            )
        )
    return rows


def _number(path: Path, line: int, field: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not math.isfinite(x):
        raise _row_error(path, line, field, f"{json.dumps(value.strip())} is not a number")
    return x


def load_catalog(source: Source, keywords_csv: Path | None) -> dict[str, CatalogItem]:
    """The items as the movielens-100k importer makes them, keyword enrichment included.

    The catalog file is imported into a throwaway store (the interactions left empty), so the
    titles, years, genres and fuzzy keyword matches are exactly those of `mrrec import`.
    """
    with tempfile.TemporaryDirectory(prefix="mrrec-catalog-") as tmp:
        folder = Path(tmp) / "ml100k"
        folder.mkdir()
        inter, item, user = LAYOUTS[source.layout]
        shutil.copyfile(source.item, folder / item)
        header = source.layout == "recbole"
        for name, src in ((inter, source.inter), (user, source.user)):
            with open(src, encoding="utf-8") as f:
                (folder / name).write_text(f.readline() if header else "", encoding="utf-8")
        store = MemoryStore(Path(tmp) / "home")
        try:
            store.import_file(
                "movielens-100k", folder, keywords=str(keywords_csv) if keywords_csv else None
            )
        except InputError as exc:
            # Name the user's file, not the throwaway copy.
            message = str(exc).replace(str(folder / item), str(source.item))
            raise InputError(
                message,
                path=str(source.item) if exc.path == str(folder / item) else exc.path,
                line=exc.line,
                field=exc.field,
            ) from None
        count = int(store.stats()["items"])
        items = store.items_by_id(list(range(1, count + 1)))
        del store  # closes the database before the folder goes
    if len(items) != count:
        raise InputError(
            f"{source.item}: the catalog import returned {len(items)} of {count} items"
        )
    return {
        it.ext_id.removeprefix("ml100k:"): CatalogItem(
            item_id=it.ext_id.removeprefix("ml100k:"),
            title=it.title,
            year=it.year,
            genres=tuple(it.categories),
            keywords=tuple(it.keywords),
        )
        for it in items
    }


def find_target(
    ordered: Sequence[Interaction], *, min_history: int, liked: float
) -> tuple[int, int] | None:
    """(index of the target, history size) for one user's chronologically ordered interactions.

    The target is the last interaction rated ``liked`` or more with at least ``min_history``
    interactions strictly earlier (by timestamp) and whose item is not among them (a re-watch is
    no new recommendation). The history is exactly those strictly earlier interactions.

    This is the single-target rule of ``ml100k-scenarios-v1``; :func:`find_targets` with ``k=1``
    gives the same target and history.
    """
    stamps = [r.timestamp for r in ordered]
    for i in range(len(ordered) - 1, -1, -1):
        r = ordered[i]
        before = bisect.bisect_left(stamps, r.timestamp)
        if before < min_history:
            break  # earlier candidates have no more history than this one
        if r.rating >= liked and all(h.item != r.item for h in ordered[:before]):
            return i, before
    return None


def find_targets(
    ordered: Sequence[Interaction], *, k: int, min_history: int, liked: float
) -> tuple[list[int], int] | None:
    """(indices of up to ``k`` targets in chronological order, history size) for one user's
    chronologically ordered interactions; ``None`` when there is no target.

    The walk goes back from the last interaction, as :func:`find_target` does, and collects each
    interaction rated ``liked`` or more whose item is neither an already collected target's nor
    among the interactions strictly earlier (by timestamp) than it. It stops at ``k`` targets, or
    at the first candidate with fewer than ``min_history`` strictly earlier interactions (earlier
    ones have no more). The cutoff is the earliest target's timestamp and the history is exactly
    the interactions strictly before it, so every target's item is outside the history: moving
    the cutoff earlier only shrinks the history. With ``k=1`` this is :func:`find_target`.
    """
    if k < 1:
        raise InputError(f"targets per user must be at least 1, not {k}")
    stamps = [r.timestamp for r in ordered]
    found: list[int] = []
    items: set[str] = set()
    for i in range(len(ordered) - 1, -1, -1):
        r = ordered[i]
        before = bisect.bisect_left(stamps, r.timestamp)
        if before < min_history:
            break  # earlier candidates have no more history than this one
        if (
            r.rating >= liked
            and r.item not in items
            and all(h.item != r.item for h in ordered[:before])
        ):
            found.append(i)
            items.add(r.item)
            if len(found) == k:
                break
    if not found:
        return None
    found.reverse()
    return found, bisect.bisect_left(stamps, ordered[found[0]].timestamp)


def user_key(user: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order, any others after them."""
    return (0, int(user), "") if user.isdigit() else (1, 0, user)


#: Train / val / test shares of the users: val and test each hold ~141 users.
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
#: Held-out targets per user (at most): val and test each hold ~680 queries.
DEFAULT_TARGETS_PER_USER = 5


def assign_splits(users: Sequence[str], *, seed: int, fractions: Sequence[float]) -> dict[str, str]:
    """Disjoint train/val/test users: a seeded shuffle, then exact shares (val, test rounded)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise InputError(f"split fractions {list(fractions)} must be 3 non-negative shares of 1")
    order = sorted(users, key=user_key)
    random.Random(f"{seed}:split").shuffle(order)
    n_val = round(len(order) * fractions[1])
    n_test = round(len(order) * fractions[2])
    out = {u: "val" for u in order[:n_val]}
    out.update({u: "test" for u in order[n_val : n_val + n_test]})
    out.update({u: "train" for u in order[n_val + n_test :]})
    return out


def _filtered_user_file(source: Source, users: set[str]) -> str:
    sep = "\t" if source.layout == "recbole" else "|"
    lines = source.user.read_text(encoding="utf-8").splitlines(keepends=True)
    header = lines[:1] if source.layout == "recbole" else []
    body = lines[len(header) :]
    kept = [ln if ln.endswith("\n") else ln + "\n" for ln in body if ln.split(sep)[0] in users]
    return "".join(header + kept)


def build_scenarios(
    ml100k_dir: str | Path,
    out_dir: str | Path,
    *,
    keywords_csv: str | Path | None = None,
    seed: int = 0,
    min_history: int = 10,
    liked: float = 4.0,
    min_facet_items: int = 20,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    users_limit: int | None = None,
    targets_per_user: int = DEFAULT_TARGETS_PER_USER,
) -> dict[str, Any]:
    """Builds the scenario dataset in ``out_dir`` (atomically) and returns its manifest.

    Each user gets up to ``targets_per_user`` held-out targets after one cutoff
    (:func:`find_targets`), each with its own query. ``users_limit`` keeps only the first N users
    by id (for fast tests); the splits are then drawn among those. The same inputs and parameters
    always give byte-identical files.
    """
    source = find_source(Path(ml100k_dir))
    keywords = Path(keywords_csv) if keywords_csv is not None else None
    if keywords is not None and not keywords.is_file():
        raise InputError(f"{keywords}: missing (the MovieLens 25M keyword CSV)", path=str(keywords))
    if min_history < 1:
        raise InputError(f"min_history must be at least 1, not {min_history}")
    if targets_per_user < 1:
        raise InputError(f"targets per user must be at least 1, not {targets_per_user}")
    catalog = load_catalog(source, keywords)
    facets = FacetCatalog(catalog.values(), min_items=min_facet_items)
    interactions = read_interactions(source)
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    for r in interactions:
        if r.item not in catalog:
            raise _row_error(
                source.inter, r.line, "item_id", f"{json.dumps(r.item)} is not in {source.item}"
            )
        by_user[r.user].append(r)
    users = sorted(by_user, key=user_key)
    considered = users[:users_limit] if users_limit is not None else users

    skipped: Counter[str] = Counter()
    dropped_targets = 0  # targets of kept or skipped users whose query could not be made
    records: dict[str, list[dict[str, Any]]] = {}  # per user, in chronological order
    history_sizes: dict[str, int] = {}
    history: list[Interaction] = []
    for user in considered:
        # Stable sort: rows with the same timestamp keep their file order.
        ordered = sorted(by_user[user], key=lambda r: r.timestamp)
        found = find_targets(ordered, k=targets_per_user, min_history=min_history, liked=liked)
        if found is None:
            skipped["no_target"] += 1
            continue
        indices, size = found
        cutoff = ordered[indices[0]].timestamp  # the earliest target's, kept if it is dropped
        mine: list[dict[str, Any]] = []
        for index in indices:
            target = ordered[index]
            item = catalog[target.item]
            # Whether a query exists does not depend on the draw, so the index it is seeded
            # with is the one its example gets.
            n = len(mine)
            query = make_query(random.Random(f"{seed}:query:{user}:{n}"), item, facets)
            if query is None:
                dropped_targets += 1
                continue
            mine.append(
                {
                    "id": f"{DATASET_VERSION}:{user}:{n}",
                    "split": "",
                    "user": user,
                    "target_index": n,
                    "target_item": item.alias,
                    "target_title": item.title,
                    "query": query.text,
                    "facet": query.facet.to_dict(),
                    "use_case": query.use_case,
                    "cutoff_timestamp": cutoff,
                    "history_size": size,
                    "fitting_items": facets.fitting[query.facet],
                }
            )
        if not mine:
            skipped["no_facet"] += 1
            continue
        history.extend(ordered[:size])
        records[user] = mine
        history_sizes[user] = size
    splits = assign_splits(list(records), seed=seed, fractions=fractions)
    for user, split in splits.items():
        for e in records[user]:
            e["split"] = split
    examples = [e for u in sorted(records, key=user_key) for e in records[u]]
    history.sort(key=lambda r: r.line)  # the source's own order

    parameters = {
        "min_history": min_history,
        "liked_rating": liked,
        "min_facet_items": min_facet_items,
        "fractions": list(fractions),
        "users_limit": users_limit,
        "targets_per_user": targets_per_user,
        "use_cases": list(USE_CASES),
        "templates": list(TEMPLATES),
        "keywords": keywords is not None,
    }
    considered_rows = sum(len(by_user[u]) for u in considered)
    kept_rows = sum(len(by_user[u]) for u in records)
    counts = {
        "users_in_source": len(users),
        "users_considered": len(considered),
        "users_skipped": {"no_target": skipped["no_target"], "no_facet": skipped["no_facet"]},
        "users": len(records),
        "examples": len(examples),
        "targets_dropped_no_facet": dropped_targets,
        # How many users have 1, 2, ... examples (string keys: as the JSON file has them).
        "users_by_examples": {
            str(n): c for n, c in sorted(Counter(len(v) for v in records.values()).items())
        },
        "splits": {
            s: {
                "users": sum(split == s for split in splits.values()),
                "examples": sum(e["split"] == s for e in examples),
                "history_interactions": sum(
                    history_sizes[u] for u, split in splits.items() if split == s
                ),
            }
            for s in SPLITS
        },
        "interactions": {
            "source": len(interactions),
            "considered_users": considered_rows,
            "history": len(history),
            "targets": len(examples),
            "dropped_at_or_after_cutoff": kept_rows - len(history) - len(examples),
        },
        "facets": dict(sorted(Counter(e["facet"]["kind"] for e in examples).items())),
        "catalog": {
            "items": len(catalog),
            "with_keywords": sum(bool(it.keywords) for it in catalog.values()),
            "coarse_keywords": len(facets.keywords()),
        },
    }
    manifest: dict[str, Any] = {
        "dataset_version": DATASET_VERSION,
        "builder": f"mrrec_edge.scenarios {__version__}",
        "seed": seed,
        "parameters": parameters,
        "sources": {
            "layout": source.layout,
            "files": {p.name: sha256_file(p) for p in source.files},
            "keywords": {keywords.name: sha256_file(keywords)} if keywords else {},
        },
        "counts": counts,
        "coarse_keywords": facets.keywords(),
    }

    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        hist = tmp / HISTORY_DIR
        hist.mkdir()
        inter_name, item_name, user_name = LAYOUTS[source.layout]
        with open(source.inter, encoding="utf-8") as f:
            header = f.readline() if source.layout == "recbole" else ""
        (hist / inter_name).write_text(header + "".join(r.raw for r in history), encoding="utf-8")
        shutil.copyfile(source.item, hist / item_name)
        (hist / user_name).write_text(_filtered_user_file(source, set(records)), encoding="utf-8")
        if keywords is not None:
            (tmp / CATALOG_DIR).mkdir()
            shutil.copyfile(keywords, tmp / CATALOG_DIR / KEYWORDS_FILE)
        with open(tmp / EXAMPLES, "w", encoding="utf-8") as f:
            for e in examples:
                f.write(json.dumps(e, ensure_ascii=False) + "\n")
        (tmp / DATASHEET).write_text(render_datasheet(manifest, examples), encoding="utf-8")
        manifest["files"] = folder_records(tmp)
        # Written last: a folder with a manifest is complete.
        (tmp / MANIFEST).write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return manifest


def load_manifest(dataset_dir: str | Path, *, verify: bool = False) -> dict[str, Any]:
    """The manifest of a built dataset; with ``verify``, every file's sha256 is checked too."""
    folder = Path(dataset_dir)
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(
            f"{folder}: not a scenario dataset (no {MANIFEST}); build one with `mrrec data build`",
            path=str(path),
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: {exc}", path=str(path)) from exc
    if manifest.get("dataset_version") != DATASET_VERSION:
        raise InputError(
            f"{path}: dataset version {manifest.get('dataset_version')!r} is not {DATASET_VERSION}",
            path=str(path),
        )
    if verify:
        for name, record in manifest.get("files", {}).items():
            file = folder / name
            if not file.is_file() or sha256_file(file) != record["sha256"]:
                raise InputError(
                    f"{file}: missing or changed since the build; rebuild the dataset",
                    path=str(file),
                )
    return manifest


def load_examples(dataset_dir: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """The examples of a built dataset (one split, or all), in user order, then target order."""
    path = Path(dataset_dir) / EXAMPLES
    if split is not None and split not in SPLITS:
        raise InputError(f"unknown split {split!r} (one of {', '.join(SPLITS)})")
    if not path.is_file():
        load_manifest(dataset_dir)  # says what the folder is not
        raise InputError(f"{path}: missing; rebuild the dataset", path=str(path))
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            try:
                example = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _row_error(path, n, None, f"not JSON ({exc.msg})") from None
            if split is None or example["split"] == split:
                out.append(example)
    return out


def history_dir(dataset_dir: str | Path) -> Path:
    """The history-only interactions, importable with ``mrrec import movielens-100k``."""
    return Path(dataset_dir) / HISTORY_DIR


def keywords_file(dataset_dir: str | Path) -> Path | None:
    """The dataset's copy of the keyword CSV, if it was built with one."""
    path = Path(dataset_dir) / CATALOG_DIR / KEYWORDS_FILE
    return path if path.is_file() else None
