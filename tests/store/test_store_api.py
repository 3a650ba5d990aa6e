"""The Python API of the memory store over real MovieLens 100K with real embeddings."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mrrec_edge import InputError, MemoryStore, NotFoundError, ranking_metrics
from mrrec_edge.grounding import REQUEST_ONLY
from mrrec_edge.workspace import Workspace


@pytest.fixture()
def ws(embedded_home: Path, tmp_path: Path) -> Workspace:
    home = tmp_path / "home"
    shutil.copytree(embedded_home, home)
    return Workspace.open(home)


def test_hybrid_search_respects_user_tier_and_category(ws: Workspace) -> None:
    hits = ws.search_memory("animated film for kids", user="1", k=10, tiers=["behavior"])
    assert len(hits) == 10
    assert all(h.entry.user == "1" and h.entry.tier == "behavior" for h in hits)
    assert any("Animation" in h.entry.categories for h in hits[:3])
    comedies = ws.search_memory("something funny", user="1", categories=["Comedy"], k=5)
    assert comedies and all("Comedy" in h.entry.categories for h in comedies)
    # Without a user filter the behavior tier spans every user: the graph path, not the scan.
    broad = ws.search_memory("toys come alive pixar", tiers=["behavior"], k=20, mode="dense")
    assert len({h.entry.user for h in broad}) > 1
    assert broad[0].entry.text.split(": ", 1)[1].startswith("Toy Story")


def test_forget_deletes_from_sqlite_fts_and_vectors(ws: Workspace) -> None:
    text = "Prefers quiet zyzzyva documentaries about the sea"
    mid = ws.store.add_memory(
        "pattern", text, user="1", categories=["Documentary"], vector=ws.embed_query(text)
    )
    assert [h.entry.id for h in ws.search_memory("zyzzyva", user="1", mode="lexical")] == [mid]
    assert ws.search_memory(text, user="1", mode="dense", k=1)[0].entry.id == mid
    assert ws.store.forget_memory([mid]) == 1
    with pytest.raises(NotFoundError):
        ws.store.get_memory(mid)
    assert ws.search_memory("zyzzyva", user="1", mode="lexical") == []
    assert all(h.entry.id != mid for h in ws.search_memory(text, user="1", mode="dense", k=50))
    ws.close()
    # ...and after a restart, from the saved dense index too.
    again = Workspace.open(ws.settings.home)
    assert all(h.entry.id != mid for h in again.search_memory(text, user="1", mode="dense", k=50))


def test_grounding_leaves_out_what_the_user_has_seen(ws: Workspace) -> None:
    seen = set(ws.store.consumed_item_ids("1"))
    request = "a space opera with jedi and the empire"
    hits = ws.ground(request=request, user="1", k=10)
    assert len(hits) == 10 and not seen & {h.item.item_id for h in hits}
    with_seen = ws.ground(request=request, user="1", k=3, include_seen=True, weights=REQUEST_ONLY)
    assert with_seen[0].item.title in {
        "Star Wars",
        "Empire Strikes Back, The",
        "Return of the Jedi",
    }


@pytest.mark.parametrize("damage", ["delete", "corrupt", "stale"])
def test_damaged_dense_index_is_rebuilt_on_open(ws: Workspace, damage: str) -> None:
    query = ws.embed_query("a heist thriller")
    expected = [h.item_id for h in ws.store.ground(query, k=10)]
    ws.close()
    path = ws.settings.home / "catalog.usearch"
    if damage == "delete":
        path.unlink()
    elif damage == "corrupt":
        path.write_bytes(b"\0garbage" * 1000)
    else:
        sidecar = path.with_name("catalog.usearch.meta.json")
        sidecar.write_text(sidecar.read_text().replace('"generation":', '"generation":1000000+'))
    store = MemoryStore(ws.settings.home)
    report = store.open_indexes()
    assert report["catalog_rebuilt"] and report["catalog_vectors"] == 1682
    assert [h.item_id for h in store.ground(query, k=10)] == expected
    assert not MemoryStore(ws.settings.home).open_indexes()["catalog_rebuilt"]


def test_bad_arguments_raise_clear_errors(ws: Workspace) -> None:
    with pytest.raises(NotFoundError, match="unknown user"):
        ws.search_memory("x", user="nobody")
    with pytest.raises(InputError, match="unknown memory tier"):
        ws.store.search_memory(text="x", tiers=["nonsense"])  # type: ignore[list-item]
    with pytest.raises(InputError, match="dimensions"):
        ws.store.ground(np.ones(5, dtype=np.float32))
    with pytest.raises(InputError, match="global memory has no user"):
        ws.store.add_memory("global", "tone: dark vs light", user="1")


def test_ranking_metrics_match_definitions() -> None:
    out = ranking_metrics([[5, 3, 9], [1, 2, 3]], [[3], [7]], [1, 2, 10])
    assert out["recall@1"].tolist() == [0.0, 0.0]
    assert out["recall@2"].tolist() == [1.0, 0.0]
    assert out["ndcg@10"][0] == pytest.approx(1 / np.log2(3))


def test_forgetting_a_behavior_record_deletes_the_record_it_remembers(ws: Workspace) -> None:
    entry = ws.store.list_memory(user="1", tiers=["behavior"], limit=1)[0]
    history = {r["record_id"]: r for r in ws.store.user_history("1")}
    [record] = entry.source_ids
    item_id = history[record]["item_id"]
    assert item_id in ws.store.consumed_item_ids("1")
    result = ws.forget([entry.id])
    assert result["forgotten"] == 1 and result["users"] == ["1"]
    after = {r["record_id"] for r in ws.store.user_history("1")}
    assert after == set(history) - {record}
    assert item_id not in ws.store.consumed_item_ids("1")
    # Rebuilding the memory does not bring it back, and nothing derived cites it.
    ws.remembered_builder().build_user("1")
    behavior = ws.store.list_memory(user="1", tiers=["behavior"], limit=100_000)
    assert entry.item not in {e.item for e in behavior}
    derived = ws.store.list_memory(user="1", tiers=["pattern", "profile"], limit=100_000)
    assert all(record not in e.source_ids for e in derived)


def test_query_vectors_are_cached_safely_from_many_threads(ws: Workspace) -> None:
    """Training rolls out many answers at once, each embedding its request from its own
    thread: the cache of recent query vectors stays bounded and right under that. (Unlocked,
    a thread's eviction raced another's insertion, "dictionary changed size during
    iteration", in about half of these runs.)"""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from mrrec_edge.workspace import RECENT_VECTORS

    # One more text than the cache holds, in a seeded random order: mostly hits (each a pop
    # and an insert), and an eviction every few calls.
    texts = [f"a film about heists, number {i}" for i in range(RECENT_VECTORS + 1)]
    expected = {t: ws.embedder.embed([t])[0] for t in texts}
    calls = [texts[i] for i in np.random.default_rng(0).integers(0, len(texts), 4000)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            got = list(pool.map(ws.embed_query, calls))
    finally:
        sys.setswitchinterval(interval)
    for text, vector in zip(calls, got, strict=True):
        np.testing.assert_allclose(vector, expected[text], atol=1e-6)
    assert len(ws._recent_vectors) <= RECENT_VECTORS
