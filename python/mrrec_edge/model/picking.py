"""Choosing each next token: the grammar's mask, fast-forward of forced tokens, and sampling.

onnxruntime-genai runs the forward passes; the pick is ours. Its own guided decoding (llguidance
inside it) spends one forward pass per token even where the grammar leaves a single choice, and
in the assistant's protocol a third of the tokens are such: the memory call's fixed opening up to
its first aspect, the answer's keys and the closing tags. Here
the matcher (the llguidance package) hands them over as a run, and the runtime feeds the run to
the model in one pass. The run is the tokenizer's own spelling of the forced text, the one the
model saw in training, where token-by-token masking may spell it otherwise.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

GUIDANCE_KINDS = ("json_schema", "regex", "lark_grammar")
#: llguidance's names for our guidance kinds.
_FORMATS = {"json_schema": "json_schema", "regex": "regex", "lark_grammar": "lark"}


def guidance_spec(guidance: tuple[str, Any]) -> tuple[str, str]:
    """Checks a ``(kind, spec)`` pair; a JSON schema may be given as a dict."""
    try:
        kind, spec = guidance
    except (TypeError, ValueError):
        raise TypeError("guidance must be a (kind, spec) pair") from None
    if kind not in GUIDANCE_KINDS:
        raise ValueError(f"guidance kind must be one of {', '.join(GUIDANCE_KINDS)}, not {kind!r}")
    if kind == "json_schema" and isinstance(spec, Mapping):
        spec = json.dumps(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"the {kind} guidance must be a non-empty string")
    return kind, spec


class GrammarTokenizer:
    """The llguidance view of a model's vocabulary, built on first use (it takes ~0.5 s)."""

    def __init__(self, tokenizer_json: Path, vocab_size: int, eos: Collection[int]) -> None:
        self._path = tokenizer_json
        self._vocab_size = vocab_size
        self._eos = sorted(eos)
        self._built: Any = None
        self._lock = threading.Lock()

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def get(self) -> Any:
        with self._lock:
            if self._built is None:
                import llguidance

                self._built = llguidance.LLTokenizer(
                    self._path.read_text(encoding="utf-8"),
                    n_vocab=self._vocab_size,
                    eos_token=self._eos,
                )
            return self._built

    def matcher(self, kind: str, spec: str) -> Guide:
        """A fresh matcher for a checked ``(kind, spec)``; ValueError if it does not compile."""
        import llguidance

        try:
            grammar = llguidance.grammar_from(_FORMATS[kind], spec)
        except ValueError as exc:
            raise ValueError(f"invalid {kind} guidance: {exc}") from exc
        matcher = llguidance.LLMatcher(self.get(), grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(f"invalid {kind} guidance: {matcher.get_error()}")
        return Guide(matcher, self._vocab_size)


class Guide:
    """One call's grammar state."""

    def __init__(self, matcher: Any, vocab_size: int) -> None:
        self._matcher = matcher
        self._vocab_size = vocab_size
        self._bits = np.zeros((vocab_size + 31) // 32, dtype=np.int32)

    def mask(self, logits: np.ndarray) -> None:
        """Sets the logits of tokens the grammar forbids next to -inf, in place."""
        self._matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        allowed = np.unpackbits(self._bits.view(np.uint8), bitorder="little")[: self._vocab_size]
        logits[: self._vocab_size][allowed == 0] = -np.inf
        logits[self._vocab_size :] = -np.inf

    def consume(self, tokens: list[int]) -> None:
        if not self._matcher.consume_tokens(tokens):
            raise RuntimeError(f"the grammar rejected tokens {tokens}: {self._matcher.get_error()}")

    def forced(self) -> list[int]:
        """The tokens the grammar allows no alternative to, from here (may be empty)."""
        return list(self._matcher.compute_ff_tokens())

    @property
    def done(self) -> bool:
        """The grammar is complete and admits nothing more."""
        return bool(self._matcher.is_stopped())


def pick(
    logits: np.ndarray,
    *,
    temperature: float,
    top_p: float,
    top_k: int,
    rng: np.random.Generator | None,
) -> int | None:
    """The next token from 1-D ``logits`` (-inf: forbidden): the best when ``temperature`` is
    0, else a draw from the tempered distribution cut to ``top_k`` (0: no cut) and ``top_p``.
    None when every token is forbidden."""
    best = int(np.argmax(logits))
    if not np.isfinite(logits[best]):
        return None
    if temperature == 0 or rng is None:
        return best
    candidates = np.flatnonzero(np.isfinite(logits))
    scores = logits[candidates].astype(np.float64) / temperature
    if 0 < top_k < len(candidates):
        keep = np.argpartition(-scores, top_k - 1)[:top_k]
        candidates, scores = candidates[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    candidates, scores = candidates[order], scores[order]
    probs = np.exp(scores - scores[0])
    probs /= probs.sum()
    if top_p < 1:
        # The smallest head whose mass reaches top_p (at least one token).
        cut = int(np.searchsorted(np.cumsum(probs), top_p)) + 1
        candidates, probs = candidates[:cut], probs[:cut] / probs[:cut].sum()
    return int(rng.choice(candidates, p=probs))
