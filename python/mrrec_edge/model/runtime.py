"""Run the bundle's LLM with onnxruntime-genai: chat template, streaming, guided decoding.

A :class:`LanguageModel` holds one ``og.Model`` and its tokenizer. The generator's KV cache is
allocated up front for its ``max_length`` (for SmolLM2-135M it costs 46 KB per token: the model's
full 8192-token context would take 377 MB), so each call sizes it to what the call needs.

Prefix cache: a greedy call keeps its generator afterwards (one slot, 46 MB per 1,000 tokens), and
the next greedy call continues it (whatever its guidance) instead of prefilling from scratch when
- its prompt continues the kept call's prompt (the next turn of a conversation, such as the
  assistant's turn after a memory call): only the tokens past what they share run;
- or both start with the same pinned prefix (:meth:`LanguageModel.pin_prefix`, the assistant's
  instructions): the generator rewinds to it and the rest runs.
A prompt's pinned prefix is the longest start it shares with any pin (each assistant
configuration pins its own instructions, which match its prompts further than any other's), and
it is prefilled as a chunk of its own whether it comes from the cache or not, so the answer to a
new conversation never depends on what ran before it nor on which other assistants share the
model (chunking changes float rounding, which can flip a greedy pick: a continued turn may
differ from the same prompt run cold, as 13 of 40 assistant answers did, see docs/RESULTS.md).
Sampled calls always start fresh, so a seed means the same thing every time.

Guided decoding (the llguidance package, :mod:`mrrec_edge.model.picking`) constrains the tokens to
a JSON schema, a regex or a Lark grammar, so the orchestrator's answer format cannot break, and
feeds the tokens the grammar forces to the model in one pass. Lark grammars may embed JSON schemas
(``%json {...}``), e.g. ``start: "{" %json {"type": "object"} "}"``.
onnxruntime-genai runs the forward passes; picking each token (mask, greedy or sampled) is ours.

LoRA adapters (``og.Adapters``) need a graph whose LoRA weights are inputs (as Olive's
ExtractAdapters pass writes it); our export merges adapters into the weights instead, so bundles
built by ``mrrec bundle build`` carry none. A bundle may still ship ``adapters/*.onnx_adapter``
for such a graph: they are loaded by name and picked per call with ``stream(adapter=...)``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np

from mrrec_edge.errors import BundleError
from mrrec_edge.host import available_cpus
from mrrec_edge.model.picking import GrammarTokenizer, Guide, guidance_spec, pick

CHAT_TEMPLATE_FILE = "chat_template.jinja"
ADAPTER_SUFFIX = ".onnx_adapter"
#: Room a cached generator keeps past its call for the turns that extend it (46 MB for SmolLM2).
PREFIX_CACHE_RESERVE = 1024


def _common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """The number of leading tokens ``a`` and ``b`` share, at most ``limit``."""
    n, limit = 0, min(len(a), len(b), limit)
    while n < limit and a[n] == b[n]:
        n += 1
    return n


_FIX = "rebuild the bundle with `mrrec bundle build` (on a workstation: `pip install ./training`)"


@dataclass(frozen=True)
class GenerationStats:
    """What the last call cost. Times exclude the time the caller spent between pieces."""

    prompt_tokens: int
    new_tokens: int
    prefill_s: float  # the prompt's forward pass
    first_token_s: float  # from the call to the first token: tokenising, prefill, first pick
    decode_s: float  # every token after the first: one forward pass each
    finish_reason: str  # "stop" (EOS or grammar done), "length", "cancelled", "closed", "error"
    token_ids: tuple[int, ...] = ()
    cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache (not prefilled)

    @property
    def decode_tokens_per_s(self) -> float:
        """Decode speed: the first token comes from the prefill's logits, so it is not counted."""
        if self.new_tokens < 2 or self.decode_s <= 0:
            return 0.0
        return (self.new_tokens - 1) / self.decode_s


def _import_og() -> Any:
    try:
        import onnxruntime_genai as og
    except ImportError as exc:
        raise BundleError(
            "onnxruntime-genai is not installed (it runs the bundle's LLM): "
            "pip install onnxruntime-genai"
        ) from exc
    return og


def og_config(og: Any, folder: Path, provider: str, threads: int) -> Any:
    """onnxruntime-genai's configuration of the model in ``folder``: ``provider`` alone, with
    ``threads`` intra-op threads (benchmarks that drive onnxruntime-genai directly use it too, so
    their models run as the device's do)."""
    config = og.Config(str(folder))
    config.clear_providers()
    if provider != "cpu":
        config.append_provider(provider)
    session = {"intra_op_num_threads": threads}
    config.overlay(json.dumps({"model": {"decoder": {"session_options": session}}}))
    return config


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_chat_template(folder: Path) -> str | None:
    """The folder's chat template: chat_template.jinja, else tokenizer_config.json's entry."""
    path = folder / CHAT_TEMPLATE_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.is_file():
        try:
            template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        except (ValueError, AttributeError):
            return None
        if isinstance(template, str) and template:
            return template
    return None


def _check_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError("messages must be a list of {'role': ..., 'content': ...} dicts")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TypeError(f"messages[{i}] is not a dict")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role:
            raise ValueError(f"messages[{i}] has no role")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}] content must be a string")
        checked.append({"role": role, "content": content})
    if not checked:
        raise ValueError("messages is empty")
    return checked


@dataclass
class _CachedGenerator:
    """The prefix cache's one slot: a generator, the tokens its KV cache holds (its last call's
    prompt, then what it generated), and how long its pinned prefix chunk is (0: none)."""

    generator: Any
    tokens: list[int]
    prompt_length: int
    pinned: int
    adapter: str | None
    max_length: int

    def reusable(self, tokens: Sequence[int], pinned: int) -> int:
        """How many leading ``tokens`` the next call keeps (0: start fresh): all it shares when
        ``tokens`` continue the last call's prompt (the next turn of a conversation; its text
        may re-tokenise differently from what was generated), else the pinned chunk when both
        have the same one. The last token of the sequence may have been sampled but never run,
        and at least one prompt token must run to give the next logits, so neither is kept."""
        shared = _common_prefix(self.tokens, tokens, min(len(self.tokens), len(tokens)) - 1)
        if shared >= self.prompt_length > 0:
            return shared
        if pinned and self.pinned == pinned and shared >= pinned:
            return pinned
        return 0


@dataclass
class _Picking:
    """How one call picks its tokens."""

    temperature: float
    top_p: float
    top_k: int
    rng: np.random.Generator | None
    min_new_tokens: int
    guide: Guide | None
    fast_forward: bool

    def next_token(self, logits: np.ndarray, produced: int, eos: frozenset[int]) -> int | None:
        logits = np.array(logits, dtype=np.float32)  # ours to mask
        if self.guide is not None:
            self.guide.mask(logits)
        if produced < self.min_new_tokens:
            logits[list(eos)] = -np.inf
        return pick(
            logits, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, rng=self.rng
        )

    def run_from(self, token: int, eos: frozenset[int], room: int) -> tuple[list[int], bool]:
        """The picked ``token`` and the tokens the grammar forces after it (at most ``room`` in
        all), which share one forward pass; and whether the answer is complete with them."""
        if token in eos:
            return [token], True
        if self.guide is None:
            return [token], False
        run = [token]
        self.guide.consume(run)
        forced = self.guide.forced()[: room - 1] if self.fast_forward else []
        if forced:
            self.guide.consume(forced)
            run += forced
        return run, self.guide.done


class LanguageModel:
    """A loaded onnxruntime-genai model. Open a folder with :meth:`LanguageModel.load`.

    Several streams may run at once (each has its own generator and KV cache; only one of them
    can use the prefix cache); ``last_stats`` is then that of the last one to end. Set
    ``prefix_cache`` to False to give every call a fresh generator, ``fast_forward`` to False to
    run a grammar's forced tokens one forward pass each.
    """

    def __init__(
        self,
        og: Any,
        model: Any,
        tokenizer: Any,
        *,
        folder: Path,
        chat_template: str,
        provider: str,
        context_length: int,
        vocab_size: int,
        adapters: Any = None,
        adapter_names: tuple[str, ...] = (),
    ) -> None:
        self._og = og
        self._model = model
        self._tokenizer = tokenizer
        self._chat_template = chat_template
        self._adapters = adapters
        self._eos = frozenset(int(t) for t in tokenizer.eos_token_ids)
        self._grammar_tokenizer = GrammarTokenizer(folder / "tokenizer.json", vocab_size, self._eos)
        self.folder = folder
        self.provider = provider
        self.context_length = context_length
        self.adapter_names = adapter_names
        self.last_stats: GenerationStats | None = None
        self.prefix_cache = True
        #: Feed the tokens a grammar forces to the model in one pass (False: one pass each, as
        #: token-by-token masking does; benchmarks compare the two).
        self.fast_forward = True
        self._cached: _CachedGenerator | None = None
        self._pins: set[tuple[int, ...]] = set()
        self._cache_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        llm_dir: Path,
        *,
        provider: str = "cpu",
        threads: int | None = None,
        adapters_dir: Path | None = None,
    ) -> LanguageModel:
        """Open the onnxruntime-genai folder ``llm_dir`` (a bundle's ``llm/``).

        ``provider`` is the execution provider ("cpu", or e.g. "cuda", "qnn", "openvino" where
        the matching onnxruntime-genai package is installed); ``threads`` onnxruntime's intra-op
        threads (default: the CPUs this process may use). ``adapters_dir`` holds LoRA adapters
        (``<name>.onnx_adapter``) for a graph exported with LoRA inputs. Raises
        :class:`BundleError` naming the folder and what is missing or broken.
        """
        folder = Path(llm_dir)

        def broken(what: str) -> BundleError:
            return BundleError(f"LLM folder {folder}: {what}; {_FIX}")

        if not folder.is_dir():
            raise broken("the folder does not exist")
        config_path = folder / "genai_config.json"
        if not config_path.is_file():
            raise broken("genai_config.json is missing")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            filename = str(config["model"]["decoder"]["filename"])
            context_length = int(config["model"]["context_length"])
            vocab_size = int(config["model"]["vocab_size"])
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise broken(f"genai_config.json is unreadable ({exc})") from exc
        except (KeyError, TypeError) as exc:
            what = (
                "genai_config.json lacks model.decoder.filename, model.context_length or "
                "model.vocab_size"
            )
            raise broken(what) from exc
        for name in (filename, "tokenizer.json"):
            if not (folder / name).is_file():
                raise broken(f"{name} is missing")
        chat_template = read_chat_template(folder)
        if chat_template is None:
            raise broken(f"it has no chat template ({CHAT_TEMPLATE_FILE})")

        og = _import_og()
        where = f"onnxruntime-genai {og.__version__} ({provider})"
        try:
            model = og.Model(og_config(og, folder, provider, threads or available_cpus()))
        except Exception as exc:  # og raises RuntimeError with ORT's message
            hint = ""
            if provider != "cpu":
                hint = f"; is the onnxruntime-genai package for {provider} installed?"
            what = f"{filename} cannot be loaded by {where}: {_first_line(exc)}{hint}"
            raise broken(what) from exc
        try:
            tokenizer = og.Tokenizer(model)
        except Exception as exc:
            raise broken(f"its tokenizer cannot be loaded ({_first_line(exc)})") from exc

        adapters, names = None, ()
        files = sorted(Path(adapters_dir).glob(f"*{ADAPTER_SUFFIX}")) if adapters_dir else []
        if files:
            try:
                adapters = og.Adapters(model)
                for path in files:
                    adapters.load(str(path), path.name.removesuffix(ADAPTER_SUFFIX))
            except Exception as exc:
                raise broken(f"adapter {path.name} cannot be loaded ({_first_line(exc)})") from exc
            names = tuple(path.name.removesuffix(ADAPTER_SUFFIX) for path in files)
        return cls(
            og,
            model,
            tokenizer,
            folder=folder,
            chat_template=chat_template,
            provider=provider,
            context_length=context_length,
            vocab_size=vocab_size,
            adapters=adapters,
            adapter_names=names,
        )

    @property
    def model_type(self) -> str:
        return str(self._model.type)

    @property
    def chat_template(self) -> str:
        return self._chat_template

    def apply_chat_template(
        self, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = True
    ) -> str:
        """The prompt for ``messages`` (``[{"role": "user", "content": "..."}]``) in the
        bundle's chat template (ChatML for SmolLM2), ending with the assistant's turn."""
        checked = _check_messages(messages)
        return self._tokenizer.apply_chat_template(
            json.dumps(checked),
            template_str=self._chat_template,
            add_generation_prompt=add_generation_prompt,
        )

    def encode(self, text: str) -> list[int]:
        return [int(t) for t in self._tokenizer.encode(text)]

    def decode(self, token_ids: Sequence[int]) -> str:
        return self._tokenizer.decode(np.asarray(token_ids, dtype=np.int32))

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text))

    def stream(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        min_new_tokens: int = 0,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
        guidance: tuple[str, Any] | None = None,
        cancel: threading.Event | None = None,
        adapter: str | None = None,
    ) -> Iterator[str]:
        """Generate a continuation of ``prompt`` (already templated), yielding text pieces.

        Greedy when ``temperature`` is 0 (the default, deterministic); otherwise samples with
        ``top_p``/``top_k`` (0: no top-k cut), from ``seed`` when given. ``min_new_tokens``
        holds the end-of-sequence token back until that many tokens are out (benchmarks time
        equal lengths with it). ``guidance`` is ``(kind, spec)`` with kind in
        :data:`~mrrec_edge.model.picking.GUIDANCE_KINDS` (a JSON schema may be a dict). Setting
        ``cancel`` stops before the next token (the prompt's forward pass cannot be
        interrupted). Arguments are checked here, before the first piece; :attr:`last_stats`
        holds the timings once the iterator is exhausted, stopped or closed.
        """
        started = perf_counter()
        og = self._og
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if not 0 <= min_new_tokens <= max_new_tokens:
            raise ValueError("min_new_tokens must be between 0 and max_new_tokens")
        if temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if top_k < 0:
            raise ValueError("top_k must be >= 0")
        if adapter is not None and adapter not in self.adapter_names:
            known = ", ".join(self.adapter_names) or "none"
            raise ValueError(f"unknown adapter {adapter!r} (this bundle has: {known})")
        tokens = [int(t) for t in self._tokenizer.encode(prompt)]
        if len(tokens) == 0:
            raise ValueError("the prompt is empty")
        if len(tokens) >= self.context_length:
            raise ValueError(
                f"the prompt has {len(tokens)} tokens; the model's context is {self.context_length}"
            )
        # Compiling the grammar here reports a bad one before the first piece.
        guide = self._grammar_tokenizer.matcher(*guidance_spec(guidance)) if guidance else None
        picking = _Picking(
            temperature=float(temperature),
            top_p=float(top_p),
            top_k=int(top_k),
            rng=np.random.default_rng(seed) if temperature > 0 else None,
            min_new_tokens=min_new_tokens,
            guide=guide,
            fast_forward=self.fast_forward,
        )
        cacheable = self.prefix_cache and temperature == 0 and min_new_tokens == 0
        # The pinned chunk this prompt prefills first (0: none).
        pinned = 0
        if cacheable:
            shared = (_common_prefix(pin, tokens, len(tokens) - 1) for pin in self._pins)
            pinned = max(shared, default=0)
            taken = self._take_cached(tokens, max_new_tokens, adapter, pinned)
            if taken is not None:
                slot, keep = taken
                slot.generator.rewind_to(keep)
                return self._run(
                    slot.generator,
                    tokens,
                    picking,
                    max_new_tokens,
                    slot.max_length,
                    cancel,
                    perf_counter() - started,
                    cached=keep,
                    cache_as=(slot.pinned, adapter),
                )
        needed = len(tokens) + max_new_tokens + (PREFIX_CACHE_RESERVE if cacheable else 0)
        max_length = min(needed, self.context_length)
        params = og.GeneratorParams(self._model)
        params.set_search_options(max_length=max_length, batch_size=1)
        generator = og.Generator(self._model, params)
        if adapter is not None:
            generator.set_active_adapter(self._adapters, adapter)
        return self._run(
            generator,
            tokens,
            picking,
            max_new_tokens,
            max_length,
            cancel,
            perf_counter() - started,
            pinned=pinned,
            cache_as=(pinned, adapter) if cacheable else None,
        )

    def pin_prefix(self, text: str) -> None:
        """Declares ``text`` (templated) a start many prompts share, e.g. an assistant's
        instructions: prompts starting with it prefill it as a chunk of its own, which the
        prefix cache keeps from one call to the next. Pins add up; see :meth:`unpin_prefix`."""
        self._pins.add(tuple(int(t) for t in self._tokenizer.encode(text)))

    def unpin_prefix(self, text: str) -> None:
        """Withdraws a pin made with :meth:`pin_prefix` (no error if there is none)."""
        self._pins.discard(tuple(int(t) for t in self._tokenizer.encode(text)))

    def _take_cached(
        self,
        tokens: Sequence[int],
        max_new_tokens: int,
        adapter: str | None,
        pinned: int,
    ) -> tuple[_CachedGenerator, int] | None:
        """Empties the cache; returns its generator and how many tokens to keep if this call
        can continue it."""
        with self._cache_lock:
            slot, self._cached = self._cached, None
        if slot is None or slot.adapter != adapter:
            return None
        keep = slot.reusable(tokens, pinned)
        if keep == 0 or len(tokens) + max_new_tokens > slot.max_length:
            return None
        return slot, keep

    def clear_cache(self) -> None:
        """Frees the prefix cache's generator and its KV cache."""
        with self._cache_lock:
            self._cached = None

    def _run(
        self,
        generator: Any,
        tokens: Sequence[int],
        picking: _Picking,
        max_new_tokens: int,
        max_length: int,
        cancel: threading.Event | None,
        prepare_s: float,
        *,
        cached: int = 0,
        pinned: int = 0,
        cache_as: tuple[int, str | None] | None = None,
    ) -> Iterator[str]:
        """Prefills ``tokens[cached:]`` (the generator holds the KV of the first ``cached``;
        a fresh one runs the first ``pinned`` as a chunk of their own) and generates up to
        ``max_new_tokens``. ``cache_as`` (pinned, adapter) keeps the generator in the prefix
        cache afterwards."""
        # Runs from the first next(): time spent before it by the caller is not counted.
        started = perf_counter() - prepare_s
        decoder = self._tokenizer.create_stream()
        new: list[int] = []
        prefill_s = first_token_s = decode_s = 0.0
        finish = "closed"
        try:
            if cancel is not None and cancel.is_set():
                finish = "cancelled"
                return
            t = perf_counter()
            # The prompt's forward pass: only what the cache lacks.
            for chunk in (tokens[cached:pinned], tokens[max(cached, pinned) :]):
                if chunk:
                    generator.append_tokens(np.asarray(chunk, dtype=np.int32))
            prefill_s = perf_counter() - t
            while True:
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                if len(new) >= max_new_tokens:
                    finish = "length"
                    break
                t = perf_counter()
                token = picking.next_token(generator.get_logits()[0, -1], len(new), self._eos)
                if token is None:  # the grammar allows nothing more
                    finish = "stop"
                    break
                run, done = picking.run_from(token, self._eos, max_new_tokens - len(new))
                room = generator.token_count() + len(run) <= max_length
                last = done or not room or len(new) + len(run) >= max_new_tokens
                # The call's last tokens need no forward pass: nothing is picked after them.
                if not last:
                    generator.append_tokens(np.asarray(run, dtype=np.int32))
                if new:
                    decode_s += perf_counter() - t
                else:
                    first_token_s = perf_counter() - started
                new += run
                for piece in map(decoder.decode, run):
                    if piece:
                        yield piece
                if done or not room:
                    finish = "stop" if done else "length"
                    break
        except Exception:
            finish = "error"
            cache_as = None
            raise
        finally:
            self.last_stats = GenerationStats(
                prompt_tokens=len(tokens),
                new_tokens=len(new),
                prefill_s=prefill_s,
                first_token_s=first_token_s,
                decode_s=decode_s,
                finish_reason=finish,
                token_ids=tuple(new),
                cached_tokens=cached,
            )
            if cache_as is not None:
                sequence = [int(t) for t in generator.get_sequence(0)]
                slot = _CachedGenerator(generator, sequence, len(tokens), *cache_as, max_length)
                with self._cache_lock:
                    self._cached = slot

    def generate(self, prompt: str, **options: Any) -> str:
        """The whole continuation of ``prompt`` at once; takes :meth:`stream`'s options."""
        return "".join(self.stream(prompt, **options))

    def __repr__(self) -> str:
        return f"LanguageModel({self.model_type!r}, {self.provider}, {self.folder})"
