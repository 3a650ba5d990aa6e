"""``mrrec ask``: one question to the assistant, streamed, or as one JSON object, saved as a
conversation (the TUI's conversation list shows it)."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from mrrec_edge.assistant import (
    Assistant,
    Done,
    Memories,
    Profile,
    Recommendations,
    Token,
    ToolCall,
)
from mrrec_edge.cli._ui import emit_json, err_console, out_console
from mrrec_edge.config import Settings
from mrrec_edge.workspace import Workspace


def _memory_json(entry: Any) -> dict[str, Any]:
    return {
        "id": entry.id,
        "tier": entry.tier,
        "categories": entry.categories,
        "text": entry.text,
    }


def answer_json(
    user: str, query: str, events: list[Any], conversation_id: int | None = None
) -> dict[str, Any]:
    """The one JSON object of ``mrrec ask --json`` from a finished stream of events."""
    profile = next(e for e in events if isinstance(e, Profile))
    recs = next(e for e in events if isinstance(e, Recommendations))
    done = next(e for e in events if isinstance(e, Done))
    calls = [e for e in events if isinstance(e, ToolCall)]
    return {
        "user": user,
        "query": query,
        "conversation_id": conversation_id,
        "recommendations": [
            {
                "item_id": r.item.ext_id,
                "title": r.item.title,
                "year": r.item.year,
                "categories": r.item.categories,
                "score": round(r.item.score, 6),
                "why": r.why,
                "memory_ids": [m.id for m in r.memories],
            }
            for r in recs.items
        ],
        "used_memories": [_memory_json(m) for m in done.used_memories],
        "ideal_item_profile": profile.profile,
        "fallback": profile.reason if profile.fallback else None,
        "memory_calls": [
            {"aspects": c.aspects, "tier": c.tier, "category": c.category} for c in calls
        ],
        "timings": {name: round(seconds, 4) for name, seconds in done.timings.items()},
        "stats": done.stats,
        "plan": done.plan,
    }


@click.command("ask")
@click.argument("query")
@click.option("--user", required=True, help="Whose memory to use.")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1, 100))
@click.option("--include-seen", is_flag=True, help="Also recommend items the user has consumed.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
@click.option(
    "--continue",
    "continue_last",
    is_flag=True,
    help="A follow-up in USER's latest conversation: it refines or replaces the request before "
    "it, and leaves out what was shown.",
)
@click.option(
    "--conversation",
    "conversation_id",
    type=int,
    metavar="ID",
    help="A follow-up in conversation ID (mrrec ask --json and mrrec-tui ctrl+o show ids).",
)
@click.pass_obj
def ask_command(
    settings: Settings,
    query: str,
    user: str,
    k: int,
    include_seen: bool,
    as_json: bool,
    continue_last: bool,
    conversation_id: int | None,
) -> None:
    """Ask the assistant for K recommendations for QUERY, from USER's memory.

    Without --json the model's reasoning and memory calls stream to stderr and the
    recommendations print as a table.
    """
    if not query.strip():
        raise click.UsageError("the query is empty")
    if continue_last and conversation_id is not None:
        raise click.UsageError("give --continue or --conversation ID, not both")
    with Workspace(settings) as ws:
        ws.require_user(user)
        conversation_id = _conversation(ws, user, conversation_id, continue_last)
        model = ws.model  # fails here, before any output, if the bundle is missing
        _ = ws.embedder  # loaded now, so the timings are the query's own
        if ws.ensure_user_memory(user):
            err_console.print(f"built the memory of user {user} first", style="dim")
        events = []
        context = ws.conversations.context(conversation_id) if conversation_id else []
        recorder = ws.conversations.ask(conversation_id, user, query)
        assistant = Assistant(ws, model)
        try:
            for event in assistant.ask(
                user, query, k=k, include_seen=include_seen, context=context
            ):
                events.append(event)
                recorder.answer.apply(event)
                recorder.save()
                if not as_json:
                    _show(event)
        except BaseException as exc:
            recorder.finish("error", str(exc))
            raise
        recorder.finish("done")
    if as_json:
        emit_json(answer_json(user, query, events, recorder.conversation_id))
    else:
        err_console.print(
            f"saved as conversation {recorder.conversation_id} (mrrec-tui: ctrl+o)", style="dim"
        )


def _conversation(
    ws: Workspace, user: str, conversation_id: int | None, continue_last: bool
) -> int | None:
    """The conversation a follow-up continues: USER's latest with --continue, the one named by
    --conversation (it must be USER's), or None for a new one."""
    if continue_last:
        latest = ws.conversations.latest(user)
        if latest is None:
            raise click.UsageError(f"--continue: user {user!r} has no conversation yet")
        return latest
    if conversation_id is not None and not ws.conversations.belongs_to(conversation_id, user):
        raise click.UsageError(
            f"--conversation {conversation_id}: no such conversation of user {user!r}"
        )
    return conversation_id


def _describe_plan(plan: dict[str, Any]) -> str:
    """How a follow-up was read, in one line ("" for a first request)."""
    if plan.get("follow_up", "new") == "new":
        return ""
    parts = [f"{plan['follow_up']}: {plan['request']}"]
    ruled_out = [*plan["avoided"], *plan["avoid_phrases"]]
    if ruled_out:
        parts.append("not " + ", ".join(ruled_out))
    if plan["exclude"]:
        parts.append(f"{len(plan['exclude'])} shown before left out")
    return "; ".join(parts)


def _show(event: Any) -> None:
    """Streams one event to the terminal: progress on stderr, the answer table on stdout."""
    match event:
        case Token(text=text):
            err_console.print(text, end="", style="dim", markup=False, highlight=False)
        case ToolCall(aspects=aspects, tier=tier, category=category):
            scope = ", ".join(x for x in (tier, category) if x)
            err_console.print(
                f"\n→ memory_retrieval({'; '.join(aspects)}){f' [{scope}]' if scope else ''}",
                markup=False,
                highlight=False,
            )
        case Memories(hits=hits):
            for hit in hits:
                err_console.print(
                    f"  #{hit.entry.id} {hit.entry.tier}: {hit.entry.text[:100]}",
                    style="dim",
                    markup=False,
                    highlight=False,
                )
        case Profile(profile=profile, fallback=fallback, reason=reason):
            note = f" (fallback: {reason})" if fallback else ""
            err_console.print(f"\nideal item: {profile}{note}", markup=False, highlight=False)
        case Recommendations(items=items):
            table = Table("#", "id", "title", "year", "why", box=None)
            for rank, rec in enumerate(items, 1):
                year = str(rec.item.year or "")
                table.add_row(str(rank), rec.item.ext_id, rec.item.title, year, rec.why)
            out_console.print(table)
        case Done(timings=timings, plan=plan):
            if read := _describe_plan(plan):
                err_console.print(f"read as {read}", style="dim", markup=False, highlight=False)
            parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timings.items())
            err_console.print(parts, style="dim", markup=False, highlight=False)
