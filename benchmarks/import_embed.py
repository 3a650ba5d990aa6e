"""MovieLens 100K end to end: import (parse + write + FTS), embed, build the vector indexes.

    python benchmarks/import_embed.py [--keywords]

Needs an embedder bundle (`mrrec bundle embedder`, or --embedder DIR). Prints the time of each
stage, interactions/s for the import and texts/s for the embedder, against the 10 s target for
"import and index 100k interactions, embeddings included" (DESIGN.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from mrrec_edge.config import load_settings
from mrrec_edge.embedder import Embedder
from mrrec_edge.files import user_path
from mrrec_edge.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TARGET_S = 10.0  # DESIGN.md: import and index 100k interactions, embeddings included


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=user_path, default=DATA / "movielens-100k")
    ap.add_argument("--keywords", action="store_true", help="enrich with the 25M keyword file")
    ap.add_argument(
        "--embedder", type=user_path, help="embedder folder (default: the user's bundle)"
    )
    ap.add_argument("--json", type=user_path, help="write the figures here")
    args = ap.parse_args()
    embedder_dir = args.embedder or load_settings().embedder_path

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(load_settings(Path(tmp)))
        ws._embedder = Embedder.load(embedder_dir)  # the bundle being measured, not the user's
        keywords = (
            DATA / "movielens-25m-keywords" / "movies_w_keywords.csv" if args.keywords else None
        )
        t0 = time.perf_counter()
        report = ws.import_data("movielens-100k", args.data, keywords=keywords)
        t1 = time.perf_counter()
        embedded = ws.embed_pending()
        t2 = time.perf_counter()
        index = ws.store.open_indexes()
        t3 = time.perf_counter()

    n = report["records_added"]
    print(f"import     {t1 - t0:6.2f} s  {n / (t1 - t0):>10,.0f} interactions/s ({n} rows)")
    print(f"embed      {t2 - t1:6.2f} s  {embedded / (t2 - t1):>10,.0f} texts/s ({embedded} texts)")
    print(f"index      {t3 - t2:6.2f} s  ({index['catalog_vectors']} catalog vectors, saved)")
    print(f"total      {t3 - t0:6.2f} s  (target: under {TARGET_S:.0f} s)")
    if args.json:
        figures = {"interactions": n, "texts": embedded, "import_s": t1 - t0}
        figures.update(embed_s=t2 - t1, index_s=t3 - t2, total_s=t3 - t0, target_s=TARGET_S)
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
