"""The model summarizer: the real bundle LLM writes patterns and the profile under a JSON schema,
and may cite only what it was shown; unusable output falls back to the statistical summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrrec_edge import MemoryStore
from mrrec_edge.memory import MemoryBuilder
from mrrec_edge.memory.model_summarizer import ModelSummarizer, parse_statements
from tests.helpers import ML100K


def test_parse_statements_keeps_only_allowed_citations() -> None:
    text = json.dumps(
        {
            "statements": [
                {"text": "Loves  dark\nsatire.", "cites": ["r1", "r1", "r99", "m1"]},
                {"text": "Cites nothing real.", "cites": ["r42"]},
                {"text": 7, "cites": ["r1"]},
            ]
        }
    )
    chunks = parse_statements(text, "r", {1, 2})
    assert [(c.text, c.source_ids) for c in chunks] == [("Loves dark satire.", [1])]
    for broken in ("", "not json", "[]", '{"statements": "x"}', '{"statements": [null]}'):
        assert parse_statements(broken, "r", {1}) == []


@pytest.fixture()
def store(tmp_path: Path) -> MemoryStore:
    store = MemoryStore(tmp_path / "home")
    store.import_file("movielens-100k", str(ML100K))
    return store


@pytest.fixture(scope="module")
def model(llm_bundle_dir: Path) -> object:
    from mrrec_edge.bundle import Bundle

    return Bundle.load(llm_bundle_dir).load_model()


def test_unusable_output_falls_back_to_the_statistical_summary(
    store: MemoryStore, model: object
) -> None:
    # Four tokens cannot finish the JSON: the model's output is unusable, as a runaway one is.
    summarizer = ModelSummarizer(model, max_new_tokens=4)
    out = MemoryBuilder(store, summarizer).build_user("1", categories=["Comedy"])
    assert out["patterns"] > 0 and out["profile_chunks"] > 0
    assert summarizer.fallbacks == 2  # the Comedy pattern and the profile
    texts = [e.text for e in store.list_memory(user="1", tiers=["pattern"], limit=50)]
    assert any(t.startswith("Comedy they liked:") for t in texts)


def test_real_model_cites_only_what_it_was_shown(store: MemoryStore, model: object) -> None:
    summarizer = ModelSummarizer(model)
    categories = ["Sci-Fi"]
    MemoryBuilder(store, summarizer).build_user("1", categories=categories)
    records = {r["record_id"]: r for r in store.user_history("1")}
    patterns = store.list_memory(user="1", tiers=["pattern"], limit=200)
    for entry in patterns:
        category = entry.categories[0]
        assert entry.text.lower().startswith(category.lower()) or category in entry.text
        for rid in entry.source_ids:
            assert category in records[rid]["categories"], (entry.text, rid)
    pattern_ids = {e.id for e in patterns}
    profile = store.list_memory(user="1", tiers=["profile"], limit=50)
    assert profile
    if summarizer.fallbacks < len(categories) + 1:  # the model wrote something we kept
        model_written = [e for e in patterns + profile if "they liked:" not in e.text]
        assert model_written
    for entry in profile:
        assert set(entry.source_ids) <= pattern_ids | set(records)
