"""The performance suite in one command: every figure next to its baseline, with the ratio.

Runs the benchmarks below one after another, each in its own process (so one's memory and
threads do not weigh on the next), reads the figures each writes with ``--json``, and prints
one table of ours / baseline:

- decode.py: decode tokens/s and time to first token of the bundle's LLM in onnxruntime-genai
  (int8, and int4) against llama.cpp on the GGUF they are exported from (``[bench]`` extra);
  peak RSS of the LLM alone;
- retrieval.py: memory search p50 against numpy brute force with the same filter;
- import_embed.py: MovieLens 100K import + embed + index against the 10 s target;
- assistant.py: query -> first recommendation p50 against grounding the query alone (dense
  retrieval, the paper's BLaIR row) and against the 1.5 s target; peak RSS of the assistant
  with the model loaded against the LLM alone.

    python benchmarks/suite.py --home HOME --dataset DATASET [--bundle DIR] [--queries 40]
        [--entries 100000] [--threads 2] [--out DIR]

Nothing here runs in the test suite; the figures in docs/RESULTS.md come from this command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mrrec_edge.config import load_settings
from mrrec_edge.files import user_path

HERE = Path(__file__).resolve().parent
TARGET_QUERY_S = 1.5  # DESIGN.md: query -> first recommendation on 2 cores


def run(script: str, args: list[str], out: Path) -> dict[str, Any]:
    """Runs benchmarks/<script> with ``--json out``; its own output streams through."""
    cmd = [sys.executable, str(HERE / script), *args, "--json", str(out)]
    print(f"\n$ {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def table(rows: list[tuple[str, float, str, float, str]]) -> str:
    """``(figure, ours, baseline name, baseline, unit)`` rows as a markdown table."""
    lines = [
        "| figure | ours | baseline | ours / baseline |",
        "|---|---|---|---|",
    ]
    for figure, ours, name, base, unit in rows:
        cells = (figure, f"{ours:.4g} {unit}", f"{name}: {base:.4g} {unit}", f"{ours / base:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=user_path, required=True, help="a prepared workspace")
    parser.add_argument("--dataset", type=user_path, required=True, help="its scenario dataset")
    parser.add_argument("--bundle", type=user_path, help="model bundle (default: the home's)")
    parser.add_argument("--queries", type=int, default=40, help="assistant queries")
    parser.add_argument("--entries", type=int, default=100_000, help="memory entries to search")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out", type=user_path, help="keep each benchmark's JSON and table.md here"
    )
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="mrrec-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    threads = ["--threads", str(args.threads)]
    # Every benchmark measures the same bundle: its LLM, its embedder.
    bundle = args.bundle or load_settings(args.home).bundle_path
    embedder = ["--embedder", str(bundle / "embedder")]

    decode = run("decode.py", ["--int8", str(bundle), *threads], out / "decode.json")
    entries = ["--entries", str(args.entries)]
    retrieval = run("retrieval.py", [*entries, *embedder], out / "retrieval.json")
    imports = run("import_embed.py", embedder, out / "import_embed.json")
    home = ["--home", str(args.home), "--dataset", str(args.dataset), "--bundle", str(bundle)]
    assistant = run(
        "assistant.py", [*home, *threads, "--limit", str(args.queries)], out / "assistant.json"
    )["summary"]

    rows: list[tuple[str, float, str, float, str]] = []
    engines = decode["engines"]
    if "llama.cpp" in engines:
        base = engines["llama.cpp"]
        for name in ("int8", "int4"):
            ours = engines[name]
            speed = ours["decode_tokens_per_s"], "llama.cpp", base["decode_tokens_per_s"], "tok/s"
            rows.append((f"decode tokens/s, onnxruntime-genai {name}", *speed))
            ttft = ours["ttft_s"], "llama.cpp", base["ttft_s"], "s"
            rows.append((f"time to first token, onnxruntime-genai {name}", *ttft))
    else:
        print("\nllama.cpp row skipped: pip install 'mrrec-edge[bench]'", file=sys.stderr)
    for name, figures in retrieval["queries"].items():
        figure = f"memory search p50, {name} ({retrieval['entries']:,} entries)"
        rows.append((figure, figures["p50_ms"], "numpy brute force", figures["numpy_p50_ms"], "ms"))
    total = imports["total_s"], "target", imports["target_s"], "s"
    rows.append(("MovieLens 100K import + embed + index", *total))
    latency = assistant["p50_total_s"]
    figure = f"query -> first recommendation p50 ({assistant['completed']} queries)"
    rows.append((figure, latency, "query alone, grounded", assistant["p50_dense_baseline_s"], "s"))
    rows.append((figure, latency, "target", TARGET_QUERY_S, "s"))
    llm_alone = decode["peak_rss_mib"]["peak"]
    figure = "peak RSS, assistant with the model loaded"
    rows.append((figure, assistant["peak_rss_mib"], "the LLM alone", llm_alone, "MiB"))

    text = table(rows)
    load = os.getloadavg()
    text += f"\n\n{args.threads} threads; load average at the end {load[0]:.2f} (1 min)."
    print("\n" + text)
    (out / "table.md").write_text(text + "\n")
    print(f"\nfigures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
