"""Saved conversations: one service for the TUI and ``mrrec ask``.

:class:`Answer` folds :mod:`mrrec_edge.assistant` events into plain data (turns, memory calls,
the ideal item profile, recommendations, feedback given on them). The same data is the JSON
payload of the saved assistant message, so a resumed conversation shows exactly what streamed.
:class:`AnswerRecorder` writes it to the conversation as it streams, and :class:`Conversations`
is the way in: start or continue a conversation, list, load and delete them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mrrec_edge._core import MemoryEntry, MemoryStore, partial_profile, split_turn
from mrrec_edge.assistant import (
    Done,
    Event,
    Memories,
    PriorTurn,
    Profile,
    Recommendations,
    Token,
    ToolCall,
)
from mrrec_edge.errors import NotFoundError
from mrrec_edge.workspace import parse_feedback

PAYLOAD_VERSION = 1
#: A new conversation is titled with the start of its first question.
TITLE_CHARS = 60


def memory_dict(entry: MemoryEntry, score: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": entry.id,
        "tier": entry.tier,
        "categories": list(entry.categories),
        "text": entry.text,
    }
    if score is not None:
        out["score"] = round(score, 6)
    return out


@dataclass
class Turn:
    text: str = ""
    call: dict[str, Any] | None = None
    memories: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Answer:
    """Everything one question produced, as plain JSON-able data."""

    query: str
    status: str = "streaming"  # streaming | done | cancelled | error
    error: str | None = None
    turns: list[Turn] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    feedback: dict[str, str] = field(default_factory=dict)
    tokens: int = 0
    #: How the request was read in its conversation (``_core.plan_request``).
    plan: dict[str, Any] | None = None

    def apply(self, event: Event) -> None:
        match event:
            case Token(text=text, turn=turn):
                while len(self.turns) <= turn:
                    self.turns.append(Turn())
                self.turns[turn].text += text
                self.tokens += 1
            case ToolCall(aspects=aspects, tier=tier, category=category):
                self._last_turn().call = {"aspects": aspects, "tier": tier, "category": category}
            case Memories(hits=hits):
                self._last_turn().memories = [memory_dict(h.entry, h.score) for h in hits]
            case Profile(profile=profile, memory_ids=ids, fallback=fallback, reason=reason):
                self.profile = {
                    "text": profile,
                    "memory_ids": ids,
                    "fallback": fallback,
                    "reason": reason,
                }
            case Recommendations(items=items):
                self.recommendations = [
                    {
                        "item": r.item.ext_id,
                        "item_id": r.item.item_id,
                        "title": r.item.title,
                        "year": r.item.year,
                        "categories": list(r.item.categories),
                        "score": round(r.item.score, 6),
                        "why": r.why,
                        "memories": [memory_dict(m) for m in r.memories],
                    }
                    for r in items
                ]
            case Done(plan=plan):
                self.plan = plan or None
                self.status = "done"

    def _last_turn(self) -> Turn:
        if not self.turns:
            self.turns.append(Turn())
        return self.turns[-1]

    @property
    def text(self) -> str:
        """What the chat shows as the answer: the ideal item profile, streamed as it is written."""
        if self.profile is not None:
            return self.profile["text"]
        if self.turns:
            _think, kind, body = split_turn(self.turns[-1].text)
            if kind == "answer":
                return partial_profile(body)
        return ""

    @property
    def thinking(self) -> str:
        """The reasoning of the turn now streaming (empty once the answer is written)."""
        if not self.turns or self.profile is not None:
            return ""
        return split_turn(self.turns[-1].text)[0]

    def payload(self) -> dict[str, Any]:
        return {
            "v": PAYLOAD_VERSION,
            "query": self.query,
            "status": self.status,
            "error": self.error,
            "turns": [{"text": t.text, "call": t.call, "memories": t.memories} for t in self.turns],
            "profile": self.profile,
            "recommendations": self.recommendations,
            "feedback": self.feedback,
            "plan": self.plan,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], *, content: str = "") -> Answer:
        """An answer as saved; one whose stream never finished (a crash) reads as interrupted."""
        status = payload.get("status") or "done"
        answer = cls(
            query=payload.get("query", ""),
            status="interrupted" if status == "streaming" else status,
            error=payload.get("error"),
            turns=[
                Turn(t.get("text", ""), t.get("call"), t.get("memories") or [])
                for t in payload.get("turns") or []
            ],
            profile=payload.get("profile"),
            recommendations=payload.get("recommendations") or [],
            feedback=payload.get("feedback") or {},
            plan=payload.get("plan"),
        )
        if answer.profile is None and content and not answer.text:
            answer.profile = {"text": content, "memory_ids": [], "fallback": False, "reason": None}
        return answer


def _sentiment(action: str) -> int:
    """+1 for feedback that says "more like this" (like, 4 or 5 stars), -1 for "not this"
    (dislike, 0 to 2 stars), 0 otherwise (seen, 3 stars)."""
    rating, _text, kind = parse_feedback(action)
    if rating is not None:
        return 1 if rating >= 4 else -1 if rating <= 2 else 0
    return {"like": 1, "dislike": -1}.get(kind, 0)


def _write_answer(store: MemoryStore, message_id: int, answer: Answer) -> None:
    """The answer's text and payload into its assistant message (one small transaction)."""
    store.update_message(message_id, answer.text, json.dumps(answer.payload(), ensure_ascii=False))


class AnswerRecorder:
    """Saves a streaming answer into its assistant message: call :meth:`save` after applying
    each event, each token included, so a crash loses no finished token. One small WAL
    transaction per token is cheap next to decoding it (``benchmarks/tui_save.py``: about
    0.1% of a token's decode time)."""

    def __init__(
        self,
        store: MemoryStore,
        message_id: int,
        answer: Answer,
        conversation_id: int | None = None,
    ) -> None:
        self.store = store
        self.message_id = message_id
        self.answer = answer
        self.conversation_id = conversation_id
        self.saves = 0

    def save(self) -> None:
        _write_answer(self.store, self.message_id, self.answer)
        self.saves += 1

    def finish(self, status: str, error: str | None = None) -> None:
        self.answer.status = status
        self.answer.error = error
        self.save()


@dataclass(frozen=True)
class SavedMessage:
    """One message of a saved conversation: the question's text, or the answer as it streamed."""

    id: int
    role: str
    text: str
    answer: Answer | None


class Conversations:
    """The conversations of one store (``Workspace.conversations``)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def for_user(self, user: str, limit: int = 100) -> list[dict[str, Any]]:
        """The user's conversations, the latest first."""
        return self.store.list_conversations(user, limit=limit)

    def latest(self, user: str) -> int | None:
        """The id of the user's most recent conversation, or None."""
        found = self.for_user(user, limit=1)
        return found[0]["id"] if found else None

    def belongs_to(self, conversation_id: int, user: str) -> bool:
        """Whether ``conversation_id`` is one of ``user``'s conversations."""
        return any(c["id"] == conversation_id for c in self.for_user(user, limit=2**31 - 1))

    def delete(self, conversation_id: int) -> bool:
        return self.store.delete_conversation(conversation_id)

    def messages(self, conversation_id: int) -> list[SavedMessage]:
        """The conversation in order; an answer whose stream never finished reads as interrupted."""
        out = []
        for m in self.store.conversation_messages(conversation_id):
            answer = None
            if m["role"] == "assistant":
                try:
                    payload = json.loads(m["payload"] or "{}")
                except json.JSONDecodeError:
                    payload = {}
                answer = Answer.from_payload(payload, content=m["content"])
            out.append(SavedMessage(m["id"], m["role"], m["content"], answer))
        return out

    def context(self, conversation_id: int) -> list[PriorTurn]:
        """The conversation so far as a follow-up sees it (``Assistant.ask``'s ``context``):
        each question, the items its answer showed and the feedback given on them."""
        out: list[PriorTurn] = []
        for m in self.messages(conversation_id):
            if m.role == "user":
                out.append(PriorTurn(m.text))
            elif m.answer is not None and out:
                ids = [self._item_id(r) for r in m.answer.recommendations]
                by_ext = {r["item"]: i for r, i in zip(m.answer.recommendations, ids, strict=True)}
                reacted = {
                    by_ext[ext]: _sentiment(action)
                    for ext, action in m.answer.feedback.items()
                    if by_ext.get(ext) is not None
                }
                out[-1] = PriorTurn(
                    out[-1].query,
                    shown=tuple(i for i in ids if i is not None),
                    liked=tuple(i for i, s in reacted.items() if s > 0),
                    disliked=tuple(i for i, s in reacted.items() if s < 0),
                )
        return out

    def _item_id(self, rec: dict[str, Any]) -> int | None:
        """A saved card's store id (answers saved before ids were kept name only the alias)."""
        if rec.get("item_id") is not None:
            return int(rec["item_id"])
        try:
            return self.store.item(rec["item"]).item_id
        except NotFoundError:  # the item is gone from the catalog
            return None

    def ask(
        self, conversation_id: int | None, user: str, query: str, answer: Answer | None = None
    ) -> AnswerRecorder:
        """Saves ``query`` into the conversation (a new one, titled by the query, when None) with
        ``answer`` (empty: a new one) after it, and returns the recorder that fills it in."""
        if conversation_id is None:
            conversation_id = self.store.create_conversation(user, query[:TITLE_CHARS])
        self.store.add_message(conversation_id, "user", query)
        answer = answer if answer is not None else Answer(query)
        message_id = self.store.add_message(
            conversation_id, "assistant", "", json.dumps(answer.payload())
        )
        return AnswerRecorder(self.store, message_id, answer, conversation_id)

    def save_answer(self, message_id: int, answer: Answer) -> None:
        """Saves an answer again after a change (feedback on one of its cards)."""
        _write_answer(self.store, message_id, answer)
