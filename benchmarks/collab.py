"""The collaborative index and fused grounding on a real store: what a rebuild costs (item-kNN +
EASE from every interaction), what a feedback costs before the next answer reflects it, and the
grounding itself against the old profile-only grounding (usearch) in the same run.

    python benchmarks/collab.py --home HOME [--queries 200] [--rebuilds 3]

HOME: any workspace with imported, embedded data (``mrrec data build --prepare HOME``, or the
demo's). It is not changed: feedback is written to a copy.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mrrec_edge._core import GroundRequest
from mrrec_edge.config import load_settings
from mrrec_edge.files import user_path
from mrrec_edge.grounding import DEFAULT_WEIGHTS
from mrrec_edge.workspace import Workspace


def p50_ms(values: list[float]) -> float:
    return 1000 * float(np.percentile(values, 50))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=user_path, required=True)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rebuilds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mrrec-collab-bench-") as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(args.home, home)
        ws = Workspace(load_settings(home))
        store = ws.store
        _ = ws.embedder
        users = store.users()
        rng = np.random.default_rng(0)
        picked = [users[i] for i in rng.integers(len(users), size=args.queries)]
        texts = ["a funny movie for a Friday night", "something tense and dark", "a love story"]
        vectors = [ws.embed_query(t) for t in texts]

        rebuilds = [store.rebuild_collab() for _ in range(args.rebuilds)]
        seconds = [r["seconds"] for r in rebuilds]
        report = rebuilds[-1]

        fused, dense = [], []
        for n, user in enumerate(picked):  # alternate which runs first
            v = vectors[n % len(vectors)]
            for arm in ("fused", "dense") if n % 2 else ("dense", "fused"):
                t = time.perf_counter()
                if arm == "fused":
                    request = GroundRequest(user=user, profile=v)
                    store.ground_fused(request, weights=DEFAULT_WEIGHTS)
                else:
                    store.ground(v, k=10, user=user)
                (fused if arm == "fused" else dense).append(time.perf_counter() - t)

        # A feedback, then the next grounding: the user's vector is read live (no rebuild).
        updates = []
        for user in picked[:50]:
            history = set(store.consumed_item_ids(user))
            item = next(i for i in range(1, 1000) if i not in history)
            t = time.perf_counter()
            store.add_feedback(user, store.items_by_id([item])[0].ext_id, source="feedback:like")
            store.ground_fused(
                GroundRequest(user=user, profile=vectors[0]), weights=DEFAULT_WEIGHTS
            )
            updates.append(time.perf_counter() - t)

    print(f"collaborative index: {report['items']} items, {report['interactions']} interactions")
    print(f"  rebuild (item-kNN + EASE={report['ease']}): {statistics.median(seconds):.3f} s")
    print(f"  feedback -> next grounding reflects it: p50 {p50_ms(updates):.1f} ms")
    print(f"grounding, {args.queries} queries (top 10, the user's seen items left out):")
    print(f"  fused (5 signals): p50 {p50_ms(fused):.2f} ms")
    print(f"  profile only (before, usearch): p50 {p50_ms(dense):.2f} ms")
    added, ratio = p50_ms(fused) - p50_ms(dense), p50_ms(fused) / p50_ms(dense)
    print(f"  added by fusion: {added:.2f} ms (ratio {ratio:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
