"""Weight quantizations of the tuned LLM side by side, in one run: each variant's size, decode
speed, memory-call rate, format failures and NDCG@10, with its paired difference from int8.

Every variant is the same model (the committed adapter merged, or ``--adapter``) exported by
onnxruntime-genai's builder with other quantization options; each becomes a whole bundle (the
int8 embedder is the same in all), cached under ``--cache`` by its builder arguments, adapter
and tool versions, so a second run only measures. Quality is ``mrrec eval``'s own ``mrrec-rl``
row on the first ``--limit`` queries of ``--split`` (each variant's answers kept in ``--cache``,
resumable); speed is ``benchmarks/decode.py``'s greedy generation (a ~300-token prompt, 128
new tokens), the variants alternating so that background load hits them alike.

    python benchmarks/quantization.py --home HOME --dataset DATASET [--split val] [--limit 300]
        [--variants int8,int4,int4-mixed] [--runs 5] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from decode import MAX_NEW_TOKENS, build_prompt, generate_stats
from mrrec_edge.files import user_path
from mrrec_train.export import PRECISION_EXTRA_OPTIONS

#: Variants: (precision, the builder's quantization options). ``int8`` and ``int4`` are what
#: `mrrec bundle build --precision` exports (int4: k-quant rounding, the lm_head in int8);
#: ``-mixed`` also keeps in int8 the MatMuls llama.cpp's Q4_K_M keeps in higher precision
#: (attention and down projections of the first and last eighth of the layers and every third
#: layer between); ``-asym`` adds a zero point per block.
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "int8": ("int8", PRECISION_EXTRA_OPTIONS["int8"]),
    "int4": ("int4", PRECISION_EXTRA_OPTIONS["int4"]),
    "int4-mixed": (
        "int4",
        ("algo_config=k_quant", "matmul_mixed_precision=last_matmul:int8,mixed_layers:int8"),
    ),
    "int4-mixed-asym": (
        "int4",
        (
            "algo_config=k_quant",
            "matmul_mixed_precision=last_matmul:int8,mixed_layers:int8",
            "is_symmetric=false",
        ),
    ),
    "int4-rtn": ("int4", ("algo_config=rtn", "matmul_mixed_precision=last_matmul:int8")),
}
REFERENCE = "int8"
CACHE = Path("~/.cache/mrrec-edge/quantization").expanduser()


def variant_key(name: str, adapter: Path | None) -> str:
    """What a variant's bundle depends on: the builder's arguments, the adapter and the export's
    tool versions (a change of the export's own code needs a fresh ``--cache``)."""
    from mrrec_edge.files import folder_records
    from mrrec_train.export import builder_args, versions

    precision, options = VARIANTS[name]
    facts = [builder_args(precision, "cpu", options), versions()]
    if adapter is not None:
        facts.append(folder_records(adapter))
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
    return f"{name}-{digest[:12]}"


def build_variant(name: str, folder: Path, adapter: Path | None) -> Path:
    from mrrec_train.bundle_writer import build_bundle

    if not (folder / "manifest.json").is_file():
        precision, options = VARIANTS[name]
        print(f"building {name} into {folder}", file=sys.stderr)
        build_bundle(
            folder,
            precision=precision,
            adapter=adapter,
            quant_options=options,
            progress=lambda m: print(f"  {m}", file=sys.stderr),
        )
    return folder


def folder_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def decode_speed(bundles: dict[str, Path], threads: int, runs: int) -> dict[str, dict[str, float]]:
    """Median TTFT and decode tokens/s of each variant's LLM, runs interleaved."""
    from mrrec_edge.model import LanguageModel

    models = {}
    for name, bundle in bundles.items():
        model = LanguageModel.load(bundle / "llm", threads=threads)
        model.prefix_cache = False  # every run prefills the whole prompt
        models[name] = model
    prompt = build_prompt(next(iter(models.values())))
    options = {"max_new_tokens": MAX_NEW_TOKENS, "min_new_tokens": MAX_NEW_TOKENS}
    for model in models.values():  # warm-up: first-run allocations and kernel selection
        generate_stats(model, prompt, **options)
    stats: dict[str, list[Any]] = {name: [] for name in models}
    for _ in range(runs):
        for name, model in models.items():
            stats[name].append(generate_stats(model, prompt, **options))
    return {
        name: {
            "ttft_ms": 1000 * statistics.median(s.first_token_s for s in runs_),
            "decode_tokens_per_s": statistics.median(s.decode_tokens_per_s for s in runs_),
        }
        for name, runs_ in stats.items()
    }


def evaluate(
    home: Path, dataset: Path, bundle: Path, split: str, limit: int, resume: Path
) -> tuple[dict[str, Any], np.ndarray]:
    """``mrrec eval``'s mrrec-rl row with this bundle: its summary and per-query NDCG@10."""
    from mrrec_edge.config import load_settings
    from mrrec_edge.evaluation.harness import EvalPlan, Evaluation
    from mrrec_edge.evaluation.metrics import per_query_metrics
    from mrrec_edge.workspace import Workspace

    plan = EvalPlan(
        dataset=dataset,
        rows=["mrrec-rl"],
        bundles={"rl": bundle},
        split=split,
        limit=limit,
        resume_dir=resume,
    )
    with Workspace(load_settings(home)) as ws:
        evaluation = Evaluation(ws, plan)
        summary = evaluation.run()["rows"]["mrrec-rl"]
        rankings = [r.ranking for r in evaluation.results["mrrec-rl"]]
        ndcg = per_query_metrics(rankings, evaluation.targets)["ndcg@10"]
    return summary, ndcg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=user_path, required=True, help="a prepared workspace")
    parser.add_argument("--dataset", type=user_path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--adapter", type=user_path, help="default: the committed adapter")
    parser.add_argument("--runs", type=int, default=5, help="timed generations per variant")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (all CPUs)")
    parser.add_argument("--cache", type=user_path, default=CACHE)
    parser.add_argument("--no-quality", action="store_true", help="size and speed only")
    parser.add_argument("--json", type=user_path, help="write the figures here")
    args = parser.parse_args()

    from mrrec_edge.evaluation.metrics import bootstrap_ci, bootstrap_indices
    from mrrec_edge.host import available_cpus
    from mrrec_train.export import default_adapter

    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    committed = default_adapter()
    adapter = args.adapter or (committed[0] if committed else None)
    threads = args.threads or available_cpus()
    keys = {name: variant_key(name, adapter) for name in names}
    bundles = {
        name: build_variant(name, args.cache / "bundles" / keys[name], adapter) for name in names
    }
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    speed = decode_speed(bundles, threads, args.runs)
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        rows[name] = {
            "options": list(VARIANTS[name][1]),
            "llm_mib": round(folder_mib(bundles[name] / "llm"), 1),
            **{k: round(v, 1) for k, v in speed[name].items()},
            "decode_vs_int8": round(
                speed[name]["decode_tokens_per_s"] / speed[REFERENCE]["decode_tokens_per_s"], 3
            ),
        }
    if not args.no_quality:
        ndcg: dict[str, np.ndarray] = {}
        for name in names:
            resume = args.cache / "eval" / keys[name] / args.split
            summary, ndcg[name] = evaluate(
                args.home, args.dataset, bundles[name], args.split, args.limit, resume
            )
            rows[name].update(
                {
                    key: summary[key]
                    for key in ("ndcg@10", "memory_calls", "malformed_turns", "fallback_rate")
                }
            )
        indices = bootstrap_indices(len(ndcg[REFERENCE]), 1000, 0)
        for name in names:
            diff = ndcg[name] - ndcg[REFERENCE]
            low, high = bootstrap_ci(diff, indices)
            rows[name]["ndcg_vs_int8"] = {
                "difference": round(float(diff.mean()), 4),
                "ci95": [round(low, 4), round(high, 4)],
                "ratio": round(float(ndcg[name].mean() / max(ndcg[REFERENCE].mean(), 1e-12)), 3),
            }
    load_after = os.getloadavg()[0]

    quality = not args.no_quality
    head = f"{'variant':17}{'LLM MiB':>8}{'decode tok/s':>13}{'vs int8':>8}{'TTFT ms':>8}"
    if quality:
        head += f"{'calls/q':>8}{'malformed':>10}{'fallback':>9}{'NDCG@10':>8}  vs int8 [95% CI]"
    print(f"{args.split}, first {args.limit} queries; {threads} threads, {args.runs} runs")
    print(head)
    for name, r in rows.items():
        line = (
            f"{name:17}{r['llm_mib']:8.0f}{r['decode_tokens_per_s']:13.1f}"
            f"{r['decode_vs_int8']:8.2f}{r['ttft_ms']:8.0f}"
        )
        if quality:
            d = r["ndcg_vs_int8"]
            line += (
                f"{r['memory_calls']:8.2f}{r['malformed_turns']:10.2f}{r['fallback_rate']:9.2f}"
                f"{r['ndcg@10']:8.3f}  {d['difference']:+.3f} [{d['ci95'][0]:+.3f}, "
                f"{d['ci95'][1]:+.3f}] ({d['ratio']:.2f}x)"
            )
        print(line)
    print(
        f"load average {load_before:.2f} -> {load_after:.2f}; {time.perf_counter() - started:.0f} s"
    )
    if args.json:
        out = {"split": args.split, "limit": args.limit, "threads": threads, "rows": rows}
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
