"""Memory retrieval at 100k entries x 384-d: latency, recall against exact search, and the ratio
to numpy brute force, all measured in this one run.

    python benchmarks/retrieval.py [--entries 100000] [--queries 300]

The store is filled through the product's own paths (an interactions import whose rows carry
review text, so every entry gets a vector of its own; then `set_embeddings`). Vectors are
synthetic but clustered like real embeddings (topics + noise); texts are drawn from a Zipfian
vocabulary, so lexical search sees realistic posting-list lengths.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mrrec_edge import MemoryStore

DIMS = 384
USERS = 1000
ITEMS = 2000
CATEGORIES = [f"Genre{i}" for i in range(18)]


def synthetic_corpus(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Vectors shaped like sentence embeddings: topics, sub-topics, and variation that lives
    mostly in a low-dimensional subspace (real 384-d embeddings have an intrinsic dimension of a
    few dozen; isotropic Gaussian noise would be a much harder and unrealistic case)."""
    topics = rng.normal(size=(200, DIMS)).astype(np.float32)
    subtopics = 0.6 * rng.normal(size=(200, 20, DIMS)).astype(np.float32)
    topic_of = rng.integers(0, len(topics), n)
    sub_of = rng.integers(0, 20, n)
    basis, _ = np.linalg.qr(rng.normal(size=(DIMS, 48)))
    spectrum = np.geomspace(1.0, 0.05, 48)
    low_rank = (rng.normal(size=(n, 48)) * spectrum) @ basis.T * np.sqrt(DIMS) * 0.35
    vectors = topics[topic_of] + subtopics[topic_of, sub_of] + low_rank.astype(np.float32)
    vectors += 0.1 * rng.normal(size=(n, DIMS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vocab = np.array([f"w{i}" for i in range(20_000)])
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    words = rng.choice(len(vocab), size=(n, 12), p=zipf)
    # Each topic owns a few marker words, so text and vector agree on what an entry is about.
    markers = rng.choice(len(vocab), size=(len(topics), 3))
    texts = [" ".join(vocab[np.concatenate([words[i], markers[topic_of[i]]])]) for i in range(n)]
    return vectors, texts, topic_of


def fill_store(
    home: Path, n: int, rng: np.random.Generator
) -> tuple[MemoryStore, np.ndarray, list[str], dict]:
    vectors, texts, _ = synthetic_corpus(n, rng)
    items_csv = home / "items.csv"
    with items_csv.open("w") as f:
        f.write("item_id,title,categories\n")
        for i in range(ITEMS):
            f.write(
                f"i{i},Item {i},{CATEGORIES[i % len(CATEGORIES)]}|{CATEGORIES[(i * 7) % len(CATEGORIES)]}\n"
            )
    inter_csv = home / "inter.csv"
    users = rng.integers(0, USERS, n)
    item_of = rng.integers(0, ITEMS, n)
    with inter_csv.open("w") as f:
        f.write("user_id,item_id,rating,timestamp,text\n")
        for i in range(n):
            f.write(f"u{users[i]},i{item_of[i]},{1 + i % 5},{1_000_000 + i},{texts[i]}\n")
    store = MemoryStore(home / "store")
    store.import_file("items-csv", str(items_csv))
    started = time.perf_counter()
    store.import_file("interactions-csv", str(inter_csv))
    import_s = time.perf_counter() - started
    pending = store.pending_embeddings(n + ITEMS)
    item_ids = [i for t, i, _ in pending if t == "item"]
    item_vecs = rng.normal(size=(len(item_ids), DIMS)).astype(np.float32)
    store.set_embeddings("item", item_ids, item_vecs)
    mem = [(i, text) for t, i, text in pending if t == "memory"]
    # Pending memory comes back in id order, which is file order: vector i belongs to row i.
    ids = np.array([i for i, _ in mem], dtype=np.int64)
    started = time.perf_counter()
    for lo in range(0, len(ids), 20_000):
        store.set_embeddings("memory", ids[lo : lo + 20_000].tolist(), vectors[lo : lo + 20_000])
    index_s = time.perf_counter() - started
    store.flush()
    meta = {"import_s": import_s, "index_s": index_s, "users": users, "item_of": item_of}
    return store, ids, texts, {**meta, "vectors": vectors}


def pctl(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples), q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store, ids, texts, meta = fill_store(home, args.entries, rng)
        vectors = meta["vectors"]
        users = meta["users"]
        print(f"store: {args.entries} memory entries x {DIMS}-d, {USERS} users, {ITEMS} items")
        print(
            f"  import {meta['import_s']:.2f} s ({args.entries / meta['import_s']:,.0f} rows/s), "
            f"vector indexing {meta['index_s']:.2f} s ({args.entries / meta['index_s']:,.0f} vectors/s)"
        )

        q_rows = rng.integers(0, args.entries, args.queries)
        queries = vectors[q_rows] + 0.3 * rng.normal(size=(args.queries, DIMS)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        q_texts = [" ".join(texts[r].split()[:4]) for r in q_rows]

        # Warm the indexes (load from disk) outside the timed loops.
        store.search_memory(vector=queries[0], k=10, tiers=["behavior"], mode="dense")

        def time_ours(fn) -> tuple[list[float], list[list[int]]]:
            lat, results = [], []
            for qi in range(args.queries):
                t = time.perf_counter()
                hits = fn(qi)
                lat.append(time.perf_counter() - t)
                results.append([h.entry.id for h in hits])
            return lat, results

        def numpy_topk(qi: int, mask: np.ndarray | None) -> list[int]:
            scores = vectors @ queries[qi]
            if mask is not None:
                scores = np.where(mask, scores, -np.inf)
            top = np.argpartition(-scores, 10)[:10]
            return ids[top[np.argsort(-scores[top])]].tolist()

        def time_numpy(mask_of) -> tuple[list[float], list[list[int]]]:
            lat, results = [], []
            for qi in range(args.queries):
                t = time.perf_counter()
                results.append(numpy_topk(qi, mask_of(qi)))
                lat.append(time.perf_counter() - t)
            return lat, results

        def recall(ours: list[list[int]], exact: list[list[int]]) -> float:
            return statistics.mean(
                len(set(a[:10]) & set(b)) / 10 for a, b in zip(ours, exact, strict=True)
            )

        rows = []
        # 1. Dense, filtered by tier (spans all users: the HNSW graph walk).
        lat, res = time_ours(
            lambda qi: store.search_memory(
                vector=queries[qi], k=10, tiers=["behavior"], mode="dense"
            )
        )
        np_lat, exact = time_numpy(lambda qi: None)
        rows.append(("dense, tier filter (HNSW)", lat, np_lat, recall(res, exact)))
        # 2. Hybrid with the same broad filter.
        lat, _ = time_ours(
            lambda qi: store.search_memory(
                vector=queries[qi], text=q_texts[qi], k=10, tiers=["behavior"]
            )
        )
        rows.append(("hybrid, tier filter", lat, np_lat, None))
        # 3. Dense and hybrid filtered to the querying user (the assistant's case: exact scan).
        user_of_q = [f"u{users[r]}" for r in q_rows]
        masks = {u: users == int(u[1:]) for u in set(user_of_q)}
        lat, res = time_ours(
            lambda qi: store.search_memory(
                vector=queries[qi], k=10, user=user_of_q[qi], mode="dense"
            )
        )
        np_lat_u, exact_u = time_numpy(lambda qi: masks[user_of_q[qi]])
        rows.append(("dense, user filter (exact)", lat, np_lat_u, recall(res, exact_u)))
        lat, _ = time_ours(
            lambda qi: store.search_memory(
                vector=queries[qi], text=q_texts[qi], k=10, user=user_of_q[qi]
            )
        )
        rows.append(("hybrid, user filter", lat, np_lat_u, None))

        print(
            f"\n{'query':32} {'p50 ms':>8} {'p99 ms':>8} {'numpy p50':>10} {'speed-up':>9} {'recall@10':>10}"
        )
        for name, lat, base, rec in rows:
            p50, p99, b50 = pctl(lat, 50) * 1e3, pctl(lat, 99) * 1e3, pctl(base, 50) * 1e3
            r = f"{rec:.3f}" if rec is not None else "-"
            print(f"{name:32} {p50:8.3f} {p99:8.3f} {b50:10.3f} {b50 / p50:8.1f}x {r:>10}")
        print("\ntargets (DESIGN.md): p50 < 1 ms, recall@10 >= 0.95, >= 5x numpy brute force")


if __name__ == "__main__":
    main()
