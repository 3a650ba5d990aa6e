"""What saving a streaming answer on every token costs, next to decoding that token.

The TUI saves the assistant message after each token (a crash loses no finished token). This
streams one answer greedily with the bundle's model (``--tokens`` new tokens, the end of sequence
held back), then replays exactly those pieces into an ``AnswerRecorder`` on a fresh SQLite store,
saving after each one as the chat does. It prints the median decode time per token, the median
save time per token and their ratio, in one run.

    .venv/bin/python benchmarks/tui_save.py [--bundle DIR] [--tokens 512]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from mrrec_edge._core import MemoryStore
from mrrec_edge.assistant import Token
from mrrec_edge.bundle import Bundle
from mrrec_edge.config import load_settings
from mrrec_edge.conversations import Answer, AnswerRecorder
from mrrec_edge.files import user_path

PROMPT = "Describe, in detail, three comedies from the 1990s that a family would enjoy together."


def decode_pieces(bundle: Path, tokens: int) -> tuple[list[str], list[float]]:
    """The pieces a greedy generation streams and the seconds between consecutive pieces."""
    model = Bundle.load(bundle).load_model()
    prompt = model.apply_chat_template([{"role": "user", "content": PROMPT}])
    pieces: list[str] = []
    gaps: list[float] = []
    last = None
    for piece in model.stream(prompt, max_new_tokens=tokens, min_new_tokens=tokens):
        now = time.perf_counter()
        if last is not None:  # the first gap holds the prompt's forward pass
            gaps.append(now - last)
        last = now
        pieces.append(piece)
    return pieces, gaps


def save_times(pieces: list[str]) -> list[float]:
    with tempfile.TemporaryDirectory() as home:
        store = MemoryStore(home)
        store.add_user("bench")
        conversation = store.create_conversation("bench", PROMPT[:40])
        message = store.add_message(conversation, "assistant", "", "{}")
        answer = Answer(PROMPT)
        recorder = AnswerRecorder(store, message, answer)
        times = []
        for piece in pieces:
            answer.apply(Token(piece, 0))
            started = time.perf_counter()
            recorder.save()
            times.append(time.perf_counter() - started)
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=user_path, default=None)
    parser.add_argument("--tokens", type=int, default=512)
    args = parser.parse_args()
    pieces, gaps = decode_pieces(args.bundle or load_settings().bundle_path, args.tokens)
    saves = save_times(pieces)
    decode_ms = statistics.median(gaps) * 1e3
    save_ms = statistics.median(saves) * 1e3
    last_ms = statistics.median(saves[-32:]) * 1e3  # the payload is largest at the end
    print(f"tokens: {len(pieces)}")
    print(f"decode per token (p50): {decode_ms:.3f} ms")
    print(f"save per token (p50):   {save_ms:.3f} ms  (last 32 tokens: {last_ms:.3f} ms)")
    print(f"save / decode: {save_ms / decode_ms:.3f}  (last 32 tokens: {last_ms / decode_ms:.3f})")


if __name__ == "__main__":
    main()
