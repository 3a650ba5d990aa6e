"""Token picking: sampling, the grammar's mask and its forced tokens (mrrec_edge.model.picking),
on the real test bundle's vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mrrec_edge.model.picking import GrammarTokenizer, guidance_spec, pick

GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "rng": None}


def sampled(**options: float) -> dict:
    return {"top_p": 1.0, "top_k": 0, "rng": np.random.default_rng(0), **options}


@pytest.fixture(scope="module")
def grammars(llm_bundle_dir: Path) -> GrammarTokenizer:
    llm = llm_bundle_dir / "llm"
    vocab = json.loads((llm / "genai_config.json").read_text())["model"]["vocab_size"]
    return GrammarTokenizer(llm / "tokenizer.json", vocab, {2})


def test_greedy_and_forbidden() -> None:
    logits = np.array([0.5, 3.0, -np.inf, 2.9], dtype=np.float32)
    assert pick(logits, **GREEDY) == 1
    assert pick(np.full(4, -np.inf, dtype=np.float32), **GREEDY) is None
    # A forbidden token is never drawn, however hot the sampling.
    draws = {pick(logits, **sampled(temperature=50.0)) for _ in range(200)}
    assert 2 not in draws and draws <= {0, 1, 3}


def test_top_k_and_top_p_cut_the_tail() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    rng = np.random.default_rng(1)
    top2 = {pick(logits, temperature=1.0, top_p=1.0, top_k=2, rng=rng) for _ in range(300)}
    assert top2 == {0, 1}
    # top_p 0.7: the smallest head reaching 0.7 is {0, 1}; 0.85 adds token 2 (0.5+0.3 < 0.85).
    head = {pick(logits, temperature=1.0, top_p=0.7, top_k=0, rng=rng) for _ in range(300)}
    assert head == {0, 1}
    wider = {pick(logits, temperature=1.0, top_p=0.85, top_k=0, rng=rng) for _ in range(300)}
    assert wider == {0, 1, 2}
    # The draw follows the distribution: token 0 about half the time.
    counts = np.bincount(
        [pick(logits, temperature=1.0, top_p=1.0, top_k=0, rng=rng) for _ in range(4000)],
        minlength=4,
    )
    assert abs(counts[0] / 4000 - 0.5) < 0.03 and abs(counts[3] / 4000 - 0.05) < 0.015


def test_same_seed_same_draws() -> None:
    logits = np.random.default_rng(5).normal(size=300).astype(np.float32)

    def draws(seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        return [pick(logits, temperature=0.9, top_p=0.9, top_k=40, rng=rng) for _ in range(50)]

    assert draws(3) == draws(3) and draws(3) != draws(4)


def test_guidance_spec_checks() -> None:
    assert guidance_spec(("json_schema", {"type": "object"})) == (
        "json_schema",
        '{"type": "object"}',
    )
    with pytest.raises(ValueError, match="guidance kind"):
        guidance_spec(("ebnf", "x"))
    with pytest.raises(ValueError, match="non-empty"):
        guidance_spec(("regex", "  "))
    with pytest.raises(TypeError, match="pair"):
        guidance_spec("regex")  # type: ignore[arg-type]


def test_mask_allows_only_what_the_grammar_does(grammars: GrammarTokenizer) -> None:
    guide = grammars.matcher("regex", "(yes|no)")
    tokenizer = grammars.get()
    logits = np.zeros(grammars.vocab_size, dtype=np.float32)
    guide.mask(logits)
    allowed = {int(i) for i in np.flatnonzero(np.isfinite(logits))}
    spelled = {tokenizer.decode_str([t]) for t in allowed}
    assert allowed and all("yes".startswith(s) or "no".startswith(s) for s in spelled), spelled
    assert not guide.done


def test_forced_tokens_are_the_tokenizers_own_spelling(grammars: GrammarTokenizer) -> None:
    guide = grammars.matcher(
        "lark_grammar",
        'start: "<think>" /[a-z]{1,5}/ "</think>\\n<answer>" %json {"type": "object", '
        '"properties": {"ideal_item_profile": {"type": "string", "maxLength": 20}}, '
        '"required": ["ideal_item_profile"], "additionalProperties": false, '
        '"x-guidance": {"whitespace_flexible": false, "key_separator": ": "}} "</answer>"',
    )
    tokenizer = grammars.get()
    # "<think>" is forced from the start, then the model has a choice.
    start = guide.forced()
    assert tokenizer.decode_str(start) == "<think>"
    guide.consume(start)
    assert guide.forced() == []
    guide.consume(tokenizer.tokenize_str("abc"))
    # Closing the word is the model's choice; what follows it is not, up to the string's text.
    logits = np.zeros(grammars.vocab_size, dtype=np.float32)
    guide.mask(logits)
    closing = next(
        t for t in np.flatnonzero(np.isfinite(logits)) if tokenizer.decode_str([int(t)]) == "</"
    )
    guide.consume([int(closing)])
    rest = guide.forced()
    # The run stops where the next token could merge forced text with free text (` "g...`).
    text = tokenizer.decode_str([int(closing), *rest])
    assert text == '</think>\n<answer>{"ideal_item_profile":', text
    assert rest == tokenizer.tokenize_str(text[2:])
    guide.consume(rest)
    guide.consume(tokenizer.tokenize_str(' "great"}</answer>'))
    assert guide.done


def test_invalid_grammar_names_the_kind(grammars: GrammarTokenizer) -> None:
    with pytest.raises(ValueError, match="invalid lark_grammar guidance"):
        grammars.matcher("lark_grammar", "start: undefined_rule")
    with pytest.raises(ValueError, match="invalid json_schema guidance"):
        grammars.matcher("json_schema", "{not json")
