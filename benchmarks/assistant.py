"""The assistant over held-out scenario queries: robustness (crashes, format failures, memory-call
rate, turns) and latency of query -> first recommendation, split into retrieval / prefill /
decode / grounding, next to the dense baseline (query embedded and grounded directly) in the
same run, and what collaborative grounding adds to an answer against grounding its profile
alone (``grounding_added_ms``). With ``--compare FEATURE`` every query is also answered with that
runtime feature off (``prefix_cache``, or ``fast_forward`` of grammar-forced tokens; the same
model, in alternating order), giving the feature's speed-up as a ratio, the share of answers that
came out identical and hit@10 without it. ``--compare-bundle DIR`` does the same with another
bundle's model in place of the feature (say, the previous adapter against the new one),
``--compare-set KEY=VALUE`` with other assistant settings (say, ``global_k=1``: less memory in the
prompt). ``--set KEY=VALUE`` changes the assistant's settings for the whole run.

Needs a prepared workspace (``mrrec data build --prepare HOME``, or
``mrrec_edge.scenarios.prepare_workspace``) and a bundle with the LLM (``--bundle``, else the
home's). Queries are those of ``--splits`` (default val,test: every user there is held out from
training and from global memory), the first ``--limit`` in file order.

    python benchmarks/assistant.py --home HOME --dataset DATASET [--limit 200] [--threads 2]
        [--bundle DIR] [--json OUT] [--set KEY=VALUE ...]
        [--compare prefix_cache|fast_forward | --compare-bundle DIR | --compare-set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from mrrec_edge.assistant import (
    Assistant,
    AssistantConfig,
    Done,
    Profile,
    Recommendations,
    config_options,
)
from mrrec_edge.bundle import Bundle
from mrrec_edge.config import load_settings
from mrrec_edge.files import user_path
from mrrec_edge.grounding import PROFILE_ONLY, REQUEST_ONLY
from mrrec_edge.scenarios import load_examples
from mrrec_edge.workspace import Workspace
from process_memory import rss_kib

TARGET_S = 1.5  # DESIGN.md: query -> first recommendation on 2 cores


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


LATENCY_PARTS = ("total", "prefill", "decode")
#: Runtime features (LanguageModel attributes) ``--compare`` can turn off for the compared arm.
FEATURES = ("prefix_cache", "fast_forward")


def outcome(events: list) -> tuple[Done, list[str], list[str]]:
    """An answer's Done event, its model turns' text and the recommended item ids."""
    done = next(e for e in events if isinstance(e, Done))
    recs = next(e for e in events if isinstance(e, Recommendations)).items
    return done, [t[1] for t in done.turns], [r.item.ext_id for r in recs]


def compared_arm(
    assistant: Assistant,
    feature: str | None,
    bundle: Path | None,
    options: dict | None,
    threads: int,
):
    """What ``--compare`` / ``--compare-bundle`` / ``--compare-set`` answers each query with
    besides ``assistant``: the same model with ``feature`` off (the prefix cache's slot is left
    as it was), another bundle's model over the same workspace, or the same model with these
    assistant settings. None when nothing is compared."""
    if bundle is not None or options:
        model = Bundle.load(bundle).load_model(threads=threads) if bundle else assistant.model
        config = dataclasses.replace(assistant.config, **(options or {}))
        other = Assistant(assistant.ws, model, config)
        return lambda ex: list(other.ask(ex["user"], ex["query"], k=10))
    if feature is None:
        return None
    model = assistant.model

    def without(ex: dict) -> list:
        setattr(model, feature, False)
        try:
            return list(assistant.ask(ex["user"], ex["query"], k=10))
        finally:
            setattr(model, feature, True)

    return without


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=user_path, required=True)
    parser.add_argument("--dataset", type=user_path, required=True)
    parser.add_argument("--bundle", type=user_path)
    parser.add_argument("--splits", default="val,test")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=user_path, help="Write every figure and per-query row here.")
    compared = parser.add_mutually_exclusive_group()
    compared.add_argument("--compare", choices=FEATURES, help="answer each query without it too")
    compared.add_argument(
        "--compare-bundle", type=user_path, help="answer each query with this bundle's model too"
    )
    compared.add_argument(
        "--compare-set",
        action="append",
        metavar="KEY=VALUE",
        help="answer each query with this assistant setting too (repeatable)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="an assistant setting"
    )
    args = parser.parse_args()
    try:
        options = config_options(args.set)
        compared_options = config_options(args.compare_set or [])
    except ValueError as exc:
        parser.error(str(exc))

    settings = load_settings(args.home)
    if args.bundle:
        settings = dataclasses.replace(settings, bundle_path=args.bundle)
    ws = Workspace(settings)
    model = ws.bundle().load_model(threads=args.threads)
    _ = ws.embedder
    examples = [e for s in args.splits.split(",") for e in load_examples(args.dataset, s)]
    examples = examples[: args.limit]
    config = AssistantConfig.from_settings(settings)  # the home's [assistant], then --set
    assistant = Assistant(ws, model, dataclasses.replace(config, **options))
    compare = compared_arm(
        assistant, args.compare, args.compare_bundle, compared_options, args.threads
    )

    rows, crashes = [], []
    for n, ex in enumerate(examples, 1):
        # The baseline first: the query alone, embedded and grounded (BLaIR-style dense retrieval).
        t = time.perf_counter()
        dense = ws.ground(request=ex["query"], user=ex["user"], k=10, weights=REQUEST_ONLY)
        dense_s = time.perf_counter() - t
        other = None
        try:  # the two arms in alternating order, so that neither always runs on a warm cache
            if compare and n % 2:
                other = compare(ex)
            events = list(assistant.ask(ex["user"], ex["query"], k=10))
            if compare and not n % 2:
                other = compare(ex)
        except Exception:  # a crash is what this benchmark counts; it must not stop the run
            crashes.append({"id": ex["id"], "error": traceback.format_exc(limit=3)})
            continue
        done, answer, ids = outcome(events)
        profile = next(e for e in events if isinstance(e, Profile))
        # Grounding before collaborative grounding: the profile alone, on the same answer.
        t = time.perf_counter()
        ws.ground(profile=profile.profile, user=ex["user"], k=10, weights=PROFILE_ONLY)
        profile_only_s = time.perf_counter() - t
        rows.append(
            {
                "id": ex["id"],
                "turns": done.stats["turns"],
                "memory_calls": done.stats["memory_calls"],
                "memory_tokens": done.stats["memory_tokens"],
                "malformed_turns": done.stats["malformed_turns"],
                "fallback": profile.reason if profile.fallback else None,
                "recommendations": len(ids),
                "hit@10": ex["target_item"] in ids,
                "dense_hit@10": ex["target_item"] in [g.item.ext_id for g in dense],
                "dense_s": dense_s,
                "profile_only_grounding_s": profile_only_s,
                **{f"{k}_s": v for k, v in done.timings.items()},
            }
        )
        if other is not None:
            other_done, other_answer, other_ids = outcome(other)
            rows[-1]["same_answer"] = answer == other_answer and ids == other_ids
            rows[-1]["compared_hit@10"] = ex["target_item"] in other_ids
            rows[-1].update({f"compared_{k}_s": other_done.timings[k] for k in LATENCY_PARTS})
        if n % 20 == 0:
            print(f"{n}/{len(examples)} queries", file=sys.stderr, flush=True)

    def col(name: str) -> list[float]:
        return [r[name] for r in rows]

    total = col("total_s")
    summary = {
        "settings": " ".join(args.set) or "default",
        "queries": len(examples),
        "completed": len(rows),
        "crashes": len(crashes),
        "format_failures": sum(r["malformed_turns"] > 0 for r in rows),
        "malformed_turns": sum(col("malformed_turns")),
        "fallback_answers": sum(r["fallback"] is not None for r in rows),
        "short_answers": sum(r["recommendations"] < 10 for r in rows),
        "memory_call_rate": statistics.mean(r["memory_calls"] > 0 for r in rows),
        "memory_calls_mean": statistics.mean(col("memory_calls")),
        "turns_mean": statistics.mean(col("turns")),
        "memory_tokens_mean": statistics.mean(col("memory_tokens")),
        "hit@10": statistics.mean(col("hit@10")),
        "dense_hit@10": statistics.mean(col("dense_hit@10")),
        "p50_total_s": percentile(total, 50),
        "p90_total_s": percentile(total, 90),
        **{f"p50_{k}_s": percentile(col(f"{k}_s"), 50) for k in ("retrieval", "prefill", "decode")},
        "p50_grounding_s": percentile(col("grounding_s"), 50),
        "p50_profile_only_grounding_s": percentile(col("profile_only_grounding_s"), 50),
        "p50_dense_baseline_s": percentile(col("dense_s"), 50),
        "threads": args.threads,
        # The whole process: workspace, embedder, LLM and this benchmark's bookkeeping.
        "peak_rss_mib": rss_kib()["VmHWM"] / 1024,
    }
    if compare and rows:
        summary["compared"] = (
            args.compare
            or (args.compare_bundle and f"bundle {args.compare_bundle}")
            or " ".join(args.compare_set)
        )
        for k in LATENCY_PARTS:
            summary[f"p50_compared_{k}_s"] = percentile(col(f"compared_{k}_s"), 50)
        summary["speedup"] = summary["p50_compared_total_s"] / summary["p50_total_s"]
        summary["same_answer_rate"] = statistics.mean(col("same_answer"))
        summary["compared_hit@10"] = statistics.mean(col("compared_hit@10"))
    summary["ratio_to_target"] = summary["p50_total_s"] / TARGET_S
    # What collaborative grounding adds to an answer (DESIGN.md: at most 20 ms).
    summary["grounding_added_ms"] = 1000 * (
        summary["p50_grounding_s"] - summary["p50_profile_only_grounding_s"]
    )
    summary["ratio_to_dense"] = summary["p50_total_s"] / summary["p50_dense_baseline_s"]
    for key, value in summary.items():
        print(f"{key:<22} {value:.4g}" if isinstance(value, float) else f"{key:<22} {value}")
    for crash in crashes[:5]:
        print(f"crash in {crash['id']}:\n{crash['error']}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows, "crashes": crashes}))
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
