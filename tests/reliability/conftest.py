"""A small home that runs the whole assistant: a generated catalog and history, memory built,
everything embedded by the real bundle's embedder, the real LLM bundle in config.toml."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mrrec_edge.workspace import Workspace
from tests.reliability.crash import Bases, prepare

GENRES = ["Comedy", "Drama", "Horror", "Sci-Fi", "Romance", "Animation"]


def write_catalog(folder: Path) -> tuple[Path, Path]:
    """60 items and three users' ratings, as the JSONL importers read them."""
    items = folder / "items.jsonl"
    with items.open("w", encoding="utf-8") as f:
        for i in range(60):
            genres = f"{GENRES[i % 6]}|{GENRES[(i * 5 + 1) % 6]}"
            title = f"{GENRES[i % 6]} story number {i}"
            f.write(json.dumps({"item_id": f"g{i}", "title": title, "categories": genres}) + "\n")
    ratings = folder / "ratings.jsonl"
    with ratings.open("w", encoding="utf-8") as f:
        for user in ("ann", "bob", "cid"):
            for i in range(0, 60, 3 if user == "ann" else 4):
                rating = 1 + (i * 7 + len(user)) % 5
                f.write(json.dumps({"user_id": user, "item_id": f"g{i}", "rating": rating}) + "\n")
    return items, ratings


@pytest.fixture(scope="session")
def small_home(tmp_path_factory: pytest.TempPathFactory, llm_bundle_dir: Path) -> Path:
    """Built once per session; copy it before changing it."""
    return build_small_home(tmp_path_factory.mktemp("small-home"), llm_bundle_dir)


def build_small_home(home: Path, bundle: Path) -> Path:
    """:func:`small_home` in ``home`` (also what `scripts/reliability.py soak` starts from)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f'[bundle]\npath = "{bundle}"\n', encoding="utf-8")
    data = home.parent / f"{home.name}-data"
    data.mkdir(exist_ok=True)
    items, ratings = write_catalog(data)
    with Workspace.open(home) as ws:
        ws.import_data("items-jsonl", items)
        ws.import_data("interactions-jsonl", ratings)
        ws.memory_builder().build_all(ws.store.users())
        ws.embed_pending()
        ws.store.open_indexes()
    return home


@pytest.fixture()
def home(small_home: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(small_home, copy)
    return copy


@pytest.fixture(scope="session")
def bases(tmp_path_factory: pytest.TempPathFactory) -> Bases:
    """The crash harness's starting homes (generated data, deterministic vectors)."""
    return prepare(tmp_path_factory.mktemp("crash"), import_rows=12_000)
