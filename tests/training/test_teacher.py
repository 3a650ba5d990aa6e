"""The SFT teacher on a real prepared workspace: its traces are well-formed for the Rust
orchestrator, use only the query for their calls, cite only memories they were shown, name
only remembered items (never the held-out one), and put only the model's own tokens in the
loss."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def setup(small_data: tuple[Path, Path]):
    """The workspace of the first 24 users, the base tokenizer, 8 train examples (one per user:
    each user's first target) and the device's assistant settings."""
    from transformers import AutoTokenizer

    from mrrec_edge.scenarios import load_examples
    from mrrec_edge.workspace import Workspace
    from mrrec_train.base import base_checkpoint
    from mrrec_train.recipe import RolloutConfig
    from mrrec_train.rollout import assistant_config

    dataset, home = small_data
    tokenizer = AutoTokenizer.from_pretrained(str(base_checkpoint()))
    ws = Workspace.open(home)
    examples = [e for e in load_examples(dataset, "train") if e["target_index"] == 0][:8]
    yield ws, tokenizer, examples, assistant_config(RolloutConfig())
    ws.close()


def test_traces_are_well_formed_and_honest(setup) -> None:
    from mrrec_train.sft import teacher_trace, trace_turns

    ws, tokenizer, examples, config = setup
    eos = tokenizer.eos_token_id
    for example in examples:
        for calls in (1, 2):
            trace = teacher_trace(ws, tokenizer, example, config=config, calls=calls)
            assert not trace.fallback, trace
            assert len(trace.turns) == calls + 1
            first_call = trace.turns[0][1]
            args = json.loads(re.search(r"<tool_call>(.*)</tool_call>", first_call).group(1))
            aspects = args["arguments"]["aspects"]
            query = example["query"].lower()
            words = set(re.findall(r"[\w']+", query)) | {"they", "liked"}
            assert all(set(a.lower().split()) <= words for a in aspects), aspects
            prompt, answer = trace.turns[-1]
            body = json.loads(re.search(r"<answer>(.*)</answer>", answer).group(1))
            shown = {int(i) for i in re.findall(r"^\[m(\d+)\] ", prompt, re.MULTILINE)}
            cited = {int(m.removeprefix("m")) for m in body["useful_memory_ids"]}
            assert cited and cited <= shown, "cites only memories it was shown"
            profile = body["ideal_item_profile"]
            assert profile == trace.profile
            assert example["target_title"] not in profile, profile
            rest = profile
            for r in sorted(ws.store.user_history(example["user"]), key=lambda r: -len(r["title"])):
                rest = rest.replace(f"{r['title']} ({r['year']})", "")
            assert not re.search(r"\(\d{4}\)", rest), f"names only remembered items: {profile!r}"
            for (p, c), turn in zip(trace.turns, trace_turns(tokenizer, trace), strict=True):
                assert "<" not in c[len("<think>") : c.index("</think>")]
                assert turn.prompt_ids == tokenizer(p, add_special_tokens=False).input_ids
                assert turn.completion_ids[-1] == eos  # the model learns to end its turn
                assert tokenizer.decode(turn.completion_ids[:-1]) == c
                # Memory text is in the prompt, never in what is scored.
                assert "<tool_response>" not in tokenizer.decode(turn.completion_ids)


def test_teacher_profiles_rank_the_target_high(setup) -> None:
    """The teacher's profile, written from memory alone, grounds its target better than the
    query alone does: SFT imitates useful answers."""
    from mrrec_edge.assistant import Assistant
    from mrrec_edge.grounding import PROFILE_ONLY, REQUEST_ONLY
    from mrrec_train.rollout import ask, catalog_cutoffs
    from mrrec_train.sft import Teacher

    ws, tokenizer, examples, config = setup
    cuts = catalog_cutoffs(ws)
    ranks, query_ranks = [], []
    for example in examples:
        target = ws.store.item(example["target_item"]).item_id
        hits = ws.ground(
            request=example["query"], k=cuts[0], user=example["user"], weights=REQUEST_ONLY
        )
        ids = [h.item.item_id for h in hits]
        query_ranks.append(ids.index(target) + 1 if target in ids else cuts[0] + 1)
        teacher = Teacher(tokenizer, ws, example, calls=1, config=config)
        r = ask(Assistant(ws, teacher, config, grounding=PROFILE_ONLY), example, cuts=cuts)
        assert r.stats["memory_calls"] == 1 and r.stats["malformed_turns"] == 0
        ranks.append(r.ranking.index(r.target) + 1 if r.target in r.ranking else cuts[0] + 1)
    assert sum(ranks) < sum(query_ranks), (ranks, query_ranks)


def test_the_strength_teacher_names_the_most_liked_titles_that_fit(setup) -> None:
    """``choice="strength"`` names no hindsight: of the well-rated items the shown memories
    cite, those that fit the facet first, then by rating and recency (the order the memory
    lists them in)."""
    from mrrec_edge.memory.records import signal
    from mrrec_edge.memory.stats import LIKED
    from mrrec_train.sft import Teacher, teacher_trace

    ws, tokenizer, examples, config = setup
    with pytest.raises(ValueError, match="unknown teacher choice 'oracle'"):
        Teacher(tokenizer, ws, examples[0], calls=1, config=config, choice="oracle")
    named_any = 0
    for example in examples:
        teacher = Teacher(tokenizer, ws, example, calls=1, config=config, choice="strength")
        trace = teacher_trace(ws, tokenizer, example, config=config, calls=1, choice="strength")
        assert not trace.fallback, trace
        prompt = trace.turns[-1][0]
        shown = [int(i) for i in re.findall(r"^\[m(\d+)\] ", prompt, re.MULTILINE)]
        history = {r["record_id"]: r for r in ws.store.user_history(example["user"])}
        liked = {
            history[s]["item_id"]: history[s]
            for m in shown
            for s in ws.store.get_memory(m).source_ids
            if s in history and (signal(history[s]) or 0.0) >= LIKED
        }
        # The teacher's order: fitting first, then the highest rating, then the most recent.
        key = {
            i: (not teacher.fits(r), -signal(r), -(r["timestamp"] or 0)) for i, r in liked.items()
        }
        named = [i for i, r in liked.items() if f"{r['title']} ({r['year']})" in trace.profile]
        others = [i for i in liked if i not in named]
        assert len(named) == min(3, len(liked)), (trace.profile, len(liked))
        if named and others:
            assert max(key[i] for i in named) <= min(key[i] for i in others), trace.profile
        named_any += bool(named)
    assert named_any >= len(examples) // 2
