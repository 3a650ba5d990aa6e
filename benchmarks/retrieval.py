"""Memory retrieval at 100k entries x 384-d: latency, recall@10 against exact search, and the
ratio to numpy brute force, all measured in this one run.

    python benchmarks/retrieval.py [--vectors minilm|synthetic] [--entries 100000] [--queries 300]

The store is filled through the product's own paths: an interactions import whose rows carry a
review text (so every entry gets a vector of its own), `set_embeddings`, and an index rebuild.

Vectors:
- ``minilm`` (default): the real embedder (int8 MiniLM bundle) over memory-like texts built from
  the 13.8k-movie MovieLens 25M catalog (title, genres, a rating and a few of its keywords per
  entry). Embedding 100k texts takes minutes once; they are cached under ~/.cache/mrrec-edge.
- ``synthetic``: clustered Gaussian vectors with a low-rank spread plus isotropic noise; harder
  for HNSW than real embeddings (a stress case).

Queries are held-out texts of the same kind (not stored entries), embedded the same way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mrrec_edge import MemoryStore
from mrrec_edge.config import load_settings
from mrrec_edge.embedder import Embedder
from mrrec_edge.files import user_path

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT.parent / "shared" / "data" / "movielens-25m-keywords" / "movies_w_keywords.csv"
CACHE = Path.home() / ".cache" / "mrrec-edge" / "bench"
DIMS = 384
USERS = 1000
ITEMS = 2000
CATEGORIES = [f"Genre{i}" for i in range(18)]


def memory_texts(n: int, rng: np.random.Generator) -> list[str]:
    """Behavior-memory-like sentences about real movies."""
    import csv

    with CATALOG.open(encoding="utf-8") as f:
        movies = [
            (r["title"], r["genres"].split("|"), r["keywords"].split("|"))
            for r in csv.DictReader(f)
        ]
    texts = []
    for _ in range(n):
        title, genres, keywords = movies[rng.integers(len(movies))]
        kws = rng.choice(keywords, size=min(len(keywords), int(rng.integers(1, 4))), replace=False)
        texts.append(
            f"Rated {int(rng.integers(1, 6))}/5: {title} [{', '.join(genres)}]. "
            f"Liked: {', '.join(kws)}."
        )
    return texts


def minilm_vectors(texts: list[str], embedder_dir: Path) -> np.ndarray:
    embedder = Embedder.load(embedder_dir)
    key = hashlib.sha256(
        ("\n".join(texts) + embedder.meta["sha256"]["model.onnx"]).encode()
    ).hexdigest()
    path = CACHE / f"minilm-{len(texts)}-{key[:16]}.npy"
    if path.is_file():
        return np.load(path)
    print(f"embedding {len(texts)} texts with {embedder_dir} (cached afterwards in {CACHE})")
    vectors = embedder.embed(texts, batch_size=128)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def synthetic_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    topics = rng.normal(size=(200, DIMS)).astype(np.float32)
    subtopics = 0.6 * rng.normal(size=(200, 20, DIMS)).astype(np.float32)
    topic_of, sub_of = rng.integers(0, 200, n), rng.integers(0, 20, n)
    basis, _ = np.linalg.qr(rng.normal(size=(DIMS, 48)))
    spread = (rng.normal(size=(n, 48)) * np.geomspace(1.0, 0.05, 48)) @ basis.T
    vectors = topics[topic_of] + subtopics[topic_of, sub_of] + 6.9 * spread.astype(np.float32)
    vectors += 0.1 * rng.normal(size=(n, DIMS)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def fill_store(home: Path, texts: list[str], vectors: np.ndarray, rng: np.random.Generator):
    """Imports one interaction per text and stores its vector; returns the store, the memory ids
    in text order, each entry's user, and timings."""
    n = len(texts)
    items_csv = home / "items.csv"
    with items_csv.open("w") as f:
        f.write("item_id,title,categories\n")
        for i in range(ITEMS):
            a, b = CATEGORIES[i % len(CATEGORIES)], CATEGORIES[(i * 7) % len(CATEGORIES)]
            f.write(f"i{i},Item {i},{a}|{b}\n")
    users = rng.integers(0, USERS, n)
    inter_csv = home / "inter.csv"
    with inter_csv.open("w", encoding="utf-8") as f:
        f.write("user_id,item_id,rating,timestamp,text\n")
        for i, text in enumerate(texts):
            quoted = text.replace('"', '""')
            f.write(f'u{users[i]},i{rng.integers(ITEMS)},{1 + i % 5},{1_000_000 + i},"{quoted}"\n')
    store = MemoryStore(home / "store")
    store.import_file("items-csv", str(items_csv))
    t = time.perf_counter()
    store.import_file("interactions-csv", str(inter_csv))
    import_s = time.perf_counter() - t
    pending = store.pending_embeddings(n + ITEMS)
    item_ids = [i for kind, i, _ in pending if kind == "item"]
    store.set_embeddings(
        "item", item_ids, rng.normal(size=(len(item_ids), DIMS)).astype(np.float32)
    )
    # Pending memory comes back in id order, which is file order: vector i belongs to text i.
    ids = np.array([i for kind, i, _ in pending if kind == "memory"], dtype=np.int64)
    for lo in range(0, n, 20_000):
        store.set_embeddings("memory", ids[lo : lo + 20_000].tolist(), vectors[lo : lo + 20_000])
    # The vector indexes are derived state: build them from SQLite, as a fresh process would.
    t = time.perf_counter()
    store.rebuild_indexes()
    build_s = time.perf_counter() - t
    return store, ids, users, import_s, build_s


def p(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples), q)) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", choices=["minilm", "synthetic"], default="minilm")
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument(
        "--embedder", type=user_path, help="embedder folder (default: the user's bundle)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=user_path, help="write the figures here")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    n, nq = args.entries, args.queries

    texts = memory_texts(n + nq, rng)
    if args.vectors == "minilm":
        all_vectors = minilm_vectors(texts, args.embedder or load_settings().embedder_path)
    else:
        all_vectors = synthetic_vectors(n + nq, rng)
    vectors, queries = all_vectors[:n], all_vectors[n:]
    q_texts = texts[n:]

    with tempfile.TemporaryDirectory() as tmp:
        store, ids, users, import_s, build_s = fill_store(Path(tmp), texts[:n], vectors, rng)
        print(f"{n} memory entries x {DIMS}-d ({args.vectors} vectors), {USERS} users")
        print(f"import {import_s:.2f} s ({n / import_s:,.0f} rows/s); HNSW build {build_s:.1f} s")

        def ours(search: Callable[[int], list]) -> tuple[list[float], list[list[int]]]:
            search(0)  # warm caches outside the timed loop
            lat, out = [], []
            for qi in range(nq):
                t = time.perf_counter()
                hits = search(qi)
                lat.append(time.perf_counter() - t)
                out.append([h.entry.id for h in hits])
            return lat, out

        def brute(
            mask_of: Callable[[int], np.ndarray | None],
        ) -> tuple[list[float], list[list[int]]]:
            lat, out = [], []
            for qi in range(nq):
                t = time.perf_counter()
                scores = vectors @ queries[qi]
                mask = mask_of(qi)
                if mask is not None:
                    scores = np.where(mask, scores, -np.inf)
                top = np.argpartition(-scores, 10)[:10]
                out.append(ids[top[np.argsort(-scores[top])]].tolist())
                lat.append(time.perf_counter() - t)
            return lat, out

        def recall(got: list[list[int]], exact: list[list[int]]) -> float:
            return statistics.mean(
                len(set(a[:10]) & set(b)) / 10 for a, b in zip(got, exact, strict=True)
            )

        q_user = [f"u{u}" for u in rng.integers(0, USERS, nq)]
        masks = {u: users == int(u[1:]) for u in set(q_user)}
        np_all, exact_all = brute(lambda qi: None)
        np_user, exact_user = brute(lambda qi: masks[q_user[qi]])
        rows = []
        lat, got = ours(
            lambda qi: store.search_memory(
                vector=queries[qi], k=10, tiers=["behavior"], mode="dense"
            )
        )
        rows.append(("dense, tier filter (HNSW)", lat, np_all, recall(got, exact_all)))
        lat, got = ours(
            lambda qi: store.search_memory(
                vector=queries[qi], text=q_texts[qi], k=10, tiers=["behavior"]
            )
        )
        rows.append(("hybrid, tier filter", lat, np_all, None))
        lat, got = ours(
            lambda qi: store.search_memory(vector=queries[qi], k=10, user=q_user[qi], mode="dense")
        )
        rows.append(("dense, user filter (exact scan)", lat, np_user, recall(got, exact_user)))
        lat, got = ours(
            lambda qi: store.search_memory(
                vector=queries[qi], text=q_texts[qi], k=10, user=q_user[qi]
            )
        )
        rows.append(("hybrid, user filter", lat, np_user, None))

        header = ("query", "p50 ms", "p99 ms", "numpy p50", "speed-up", "recall@10")
        print("\n{:34}{:>8}{:>8}{:>11}{:>10}{:>11}".format(*header))
        figures = {}
        for name, lat, base, rec in rows:
            ours_p50, numpy_p50 = p(lat, 50), p(base, 50)
            cells = (name, ours_p50, p(lat, 99), numpy_p50, numpy_p50 / ours_p50)
            r = f"{rec:.3f}" if rec is not None else "-"
            print("{:34}{:8.3f}{:8.3f}{:11.3f}{:9.1f}x".format(*cells) + f"{r:>11}")
            figures[name] = {"p50_ms": ours_p50, "p99_ms": p(lat, 99), "numpy_p50_ms": numpy_p50}
            figures[name]["recall@10"] = rec
        print("\ntargets (DESIGN.md): p50 < 1 ms, recall@10 >= 0.95, >= 5x numpy brute force")
        print("numpy baseline: one float32 matrix-vector product + argpartition, same filter")
        if args.json:
            args.json.write_text(json.dumps({"entries": n, "queries": figures}, indent=1))


if __name__ == "__main__":
    main()
