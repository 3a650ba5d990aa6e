"""The torch policy behind the assistant's model interface, and the log-probabilities of turns.

Training rolls out through :meth:`mrrec_edge.assistant.Assistant.ask`, the device's own loop, so
prompts, parsing, memory retrieval and grounding are the very same code (METHOD.md §2). Two
things make that fast enough to train with:

* :class:`TorchPolicy` implements the loop's ``TurnModel`` interface (chat template, ``stream``,
  ``count_tokens``) over a Hugging Face causal LM. Guided decoding is the device's business: here
  the model may break the format, and the format reward is what teaches it not to.
* :class:`Lockstep` runs many ``ask`` loops at once, one thread each, and batches their model
  turns: a batch is generated when every live loop waits for the model, so the batches (and the
  sampled tokens, from a seeded generator on the calling thread) are the same on every run.
  Retrieval and grounding run in the loops' threads between batches (the Rust store and
  onnxruntime release the GIL).

:func:`turn_logprobs` scores the completion of each turn given its prompt. Retrieved memory
lives in the prompts of later turns, so it is never scored, and neither is anything else the
model did not write.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mrrec_edge._core import TURN_STOP_STRINGS

#: How rollouts are decoded: "tree" prefills each prompt token once per training step
#: (:mod:`mrrec_train.sampler`); "generate" is Hugging Face's ``generate``, every row's whole prompt
#: at every turn (the first loop, kept as the reference the benchmark and tests compare with).
ENGINES = ("tree", "generate")


@dataclass(frozen=True)
class Request:
    prompt: str
    max_new_tokens: int
    temperature: float


class Lockstep:
    """Runs jobs in threads and serves their :meth:`generate` calls in deterministic batches.

    ``generate_batch`` gets the waiting requests ordered by job index and returns one result
    each; it runs on the thread that called :meth:`run`.
    """

    def __init__(self, generate_batch: Callable[[list[Request]], list[Any]]) -> None:
        self._generate_batch = generate_batch
        self._cond = threading.Condition()
        self._local = threading.local()
        self._alive = 0
        self._waiting: dict[int, Request] = {}
        self._results: dict[int, Any] = {}

    def active(self) -> bool:
        """Whether the calling thread is one of :meth:`run`'s jobs."""
        return getattr(self._local, "index", None) is not None

    def generate(self, request: Request) -> Any:
        index = self._local.index
        with self._cond:
            self._waiting[index] = request
            self._cond.notify_all()
            while index not in self._results:
                self._cond.wait()
            return self._results.pop(index)

    def run(self, jobs: Sequence[Callable[[], Any]]) -> list[Any]:
        """Runs every job to the end and returns their results (re-raising the first error)."""
        outputs: list[Any] = [None] * len(jobs)
        errors: list[BaseException | None] = [None] * len(jobs)

        def work(i: int) -> None:
            self._local.index = i
            try:
                outputs[i] = jobs[i]()
            except BaseException as exc:
                errors[i] = exc
            finally:
                with self._cond:
                    self._alive -= 1
                    self._cond.notify_all()

        self._alive = len(jobs)
        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(jobs))]
        for t in threads:
            t.start()
        while True:
            with self._cond:
                while self._alive and len(self._waiting) < self._alive:
                    self._cond.wait()
                if not self._alive:
                    break
                batch = sorted(self._waiting.items())
                self._waiting.clear()
            try:
                results = self._generate_batch([r for _, r in batch])
            except BaseException as exc:
                results = [exc] * len(batch)
            with self._cond:
                self._results.update((i, r) for (i, _), r in zip(batch, results, strict=True))
                self._cond.notify_all()
        for t in threads:
            t.join()
        for e in errors:
            if e is not None:
                raise e
        return outputs


@dataclass(frozen=True)
class Generated:
    text: str
    prompt_ids: list[int]
    completion_ids: list[int]


class TorchPolicy:
    """The assistant's ``TurnModel`` over a torch causal LM (a PEFT model while training).

    :attr:`generated` maps ``(prompt, completion text)`` to the token ids actually sampled, so
    the loss scores exactly those tokens, not a re-tokenisation of the text. With
    ``keep_inputs_of`` (the lowest trained layer), the token tree keeps each token's input to
    that layer, so the loss need not run the frozen layers below it again (:meth:`layer_inputs`).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        device: torch.device,
        autocast: torch.dtype | None = None,
        max_batch: int = 64,
        engine: str = "tree",
        keep_inputs_of: int = 0,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown decoding engine {engine!r} (known: {', '.join(ENGINES)})")
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.autocast = autocast
        self.max_batch = max_batch
        self.engine = engine
        self.last_stats = None  # many loops share the policy; none of them gets timings
        self.lockstep = Lockstep(self._generate_batch)
        self.generated: dict[tuple[str, str], Generated] = {}
        self.seed = 0
        self._batches = 0
        self._tree: Any = None
        self.keep_inputs_of = keep_inputs_of

    # -- the TurnModel interface ---------------------------------------------------------

    def apply_chat_template(self, messages: Sequence[Mapping[str, Any]]) -> str:
        return self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
        )

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def stream(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        temperature: float,
        seed: int | None = None,
        guidance: tuple[str, Any] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """The whole turn as one piece. ``seed`` and ``guidance`` are ignored: sampling draws
        from :attr:`seed` per batch (see :meth:`new_step`), and the format is learnt, not forced."""
        request = Request(prompt, max_new_tokens, temperature)
        if self.lockstep.active():
            out = self.lockstep.generate(request)
        else:
            out = self._generate_batch([request])[0]
        if isinstance(out, BaseException):
            raise out
        yield out.text

    # -- generation ----------------------------------------------------------------------

    def new_step(self, seed: int) -> None:
        """Starts a training step: seeds the sampling of the batches that follow, and forgets
        the last step's turns and token tree (the weights may have changed since)."""
        self.seed = seed
        self._batches = 0
        self.generated.clear()
        if self._tree is not None:
            self._tree.close()
        self._tree = None

    def _generate_batch(self, requests: list[Request]) -> list[Generated]:
        out: list[Generated] = []
        for start in range(0, len(requests), self.max_batch):
            chunk = requests[start : start + self.max_batch]
            # One batch shares its sampling settings; the assistant's config makes them equal.
            groups: dict[tuple[int, float], list[int]] = {}
            for i, r in enumerate(chunk):
                groups.setdefault((r.max_new_tokens, r.temperature), []).append(i)
            results: list[Generated | None] = [None] * len(chunk)
            for (max_new, temperature), idx in groups.items():
                texts = self._sample([chunk[i].prompt for i in idx], max_new, temperature)
                for i, g in zip(idx, texts, strict=True):
                    results[i] = g
                    self.generated[(chunk[i].prompt, g.text)] = g
            out.extend(r for r in results if r is not None)
        return out

    @torch.no_grad()
    def _sample(
        self, prompts: list[str], max_new_tokens: int, temperature: float
    ) -> list[Generated]:
        tok = self.tokenizer
        encoded = [tok(p, add_special_tokens=False).input_ids for p in prompts]
        batch_seed = self.seed * 1_000_003 + self._batches
        self._batches += 1
        if self.engine == "tree":
            from mrrec_train.sampler import TokenTree  # (it imports this module)

            if self._tree is None:
                self._tree = TokenTree(
                    _merged(self.model),
                    self.device,
                    self.autocast,
                    keep_inputs_of=self.keep_inputs_of,
                )
            completions = self._tree.generate(
                encoded,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                generator=torch.Generator().manual_seed(batch_seed),
                eos=set(_eos_ids(tok)),
                stop=TURN_STOP_STRINGS,
                tokenizer=tok,
            )
            return [
                Generated(tok.decode(c, skip_special_tokens=True), e, c)
                for c, e in zip(completions, encoded, strict=True)
            ]
        width = max(len(e) for e in encoded)
        pad = tok.pad_token_id
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=self.device)
        mask = torch.tensor(
            [[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=self.device
        )
        torch.manual_seed(batch_seed)  # generate() uses the global RNG
        options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": pad}
        if temperature > 0:
            options.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
        else:
            options.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        model = self.model
        with autocast_context(self.device, self.autocast):
            sequences = model.generate(
                input_ids=ids,
                attention_mask=mask,
                stop_strings=list(TURN_STOP_STRINGS),
                tokenizer=tok,
                **options,
            )
        eos = set(_eos_ids(tok))
        results = []
        for row, prompt_ids in zip(sequences[:, width:].tolist(), encoded, strict=True):
            end = next((i for i, t in enumerate(row) if t in eos), len(row))
            completion = row[:end]
            text = tok.decode(completion, skip_special_tokens=True)
            # A row stopped by a stop string is padded with the pad (= end) token: that one was
            # not sampled. An end token after text with no stop string was.
            if end < len(row) and not any(s in text for s in TURN_STOP_STRINGS):
                completion = row[: end + 1]
            results.append(Generated(text, prompt_ids, completion))
        return results

    def layer_inputs(self, ids: Sequence[int]) -> torch.Tensor | None:
        """The inputs of decoder layer ``keep_inputs_of`` along ``ids`` kept by this step's
        token tree (:meth:`mrrec_train.sampler.TokenTree.layer_inputs`), or None."""
        return self._tree.layer_inputs(ids) if self._tree is not None else None

    def turn_ids(self, prompt: str, completion: str) -> tuple[list[int], list[int]]:
        """Token ids of a turn: those sampled when this policy wrote it, else the text's own."""
        found = self.generated.get((prompt, completion))
        if found is not None:
            return found.prompt_ids, found.completion_ids
        return encode_turn(self.tokenizer, prompt, completion)


def _merged(model: Any) -> Any:
    """``model`` with its LoRA adapter folded into plain weights (PEFT's own merge, on a copy):
    the same function, with no adapter branch beside each projection, so a batch-8 decode step
    of the 135M policy takes ~100 ms instead of ~130 (``benchmarks/grpo_throughput.py``). Made
    once per step (the tree is), from that step's weights, in ~0.4 s."""
    if not hasattr(model, "merge_and_unload"):
        return model
    return copy.deepcopy(model).merge_and_unload().eval()


def _eos_ids(tokenizer: Any) -> list[int]:
    eos = tokenizer.eos_token_id
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]


def encode_turn(
    tokenizer: Any, prompt: str, completion: str, *, end: bool = False
) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) of a turn written as text; ``end`` appends the end-of-turn
    token, as the chat template closes an assistant message (teacher traces end with it)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    completion_ids = tokenizer(completion, add_special_tokens=False).input_ids
    if end:
        completion_ids = [*completion_ids, _eos_ids(tokenizer)[0]]
    return prompt_ids, completion_ids


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


@dataclass(frozen=True)
class ScoredTurn:
    """One scored turn: the model sees ``prompt_ids + completion_ids`` and is scored on the
    completion only."""

    prompt_ids: list[int]
    completion_ids: list[int]


def turn_logprobs(
    model: Any,
    turns: Sequence[ScoredTurn],
    *,
    device: torch.device,
    pad_id: int,
    autocast: torch.dtype | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probabilities of each turn's completion, ``[n, K]``, and its mask.

    Sequences are left-padded so that every completion ends at the last position, and the LM
    head runs on the last ``K + 1`` positions only (K = the longest completion): the prompt's
    logits over a 49k vocabulary would cost more memory than the rest of the pass.
    """
    width = max(len(t.prompt_ids) + len(t.completion_ids) for t in turns)
    k = max(len(t.completion_ids) for t in turns)
    ids = torch.full((len(turns), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(turns), width), dtype=torch.long)
    scored = torch.zeros((len(turns), k), dtype=torch.bool)
    for row, t in enumerate(turns):
        seq = [*t.prompt_ids, *t.completion_ids]
        ids[row, width - len(seq) :] = torch.tensor(seq)
        attention[row, width - len(seq) :] = 1
        scored[row, k - len(t.completion_ids) :] = True
    # Positions count from each sequence's first real token, as in generation.
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    ids, attention, positions, scored = (x.to(device) for x in (ids, attention, positions, scored))
    with autocast_context(device, autocast):
        logits = model(
            input_ids=ids, attention_mask=attention, position_ids=positions, logits_to_keep=k + 1
        ).logits
    # The logit at position p predicts the token at p + 1.
    logits = logits[:, :-1].float()
    targets = ids[:, width - k :]
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return logp * scored, scored
