"""``mrrec memory search`` and ``mrrec index rebuild``."""

from __future__ import annotations

import click
from rich.table import Table

from mrrec_edge.cli._ui import emit_json, out_console, progress_bar
from mrrec_edge.config import Settings
from mrrec_edge.workspace import Workspace

TIERS = ("behavior", "pattern", "profile", "global")


@click.group("memory")
def memory_group() -> None:
    """Inspect what the assistant remembers."""


@memory_group.command("search")
@click.argument("text")
@click.option("--user", help="Only this user's memory (global memory always matches).")
@click.option("--tier", "tiers", multiple=True, type=click.Choice(TIERS), help="Repeatable.")
@click.option("--category", "categories", multiple=True, help="Repeatable, e.g. Comedy.")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--mode", type=click.Choice(["hybrid", "dense", "lexical"]), default="hybrid", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def search_command(
    settings: Settings,
    text: str,
    user: str | None,
    tiers: tuple[str, ...],
    categories: tuple[str, ...],
    k: int,
    mode: str,
    as_json: bool,
) -> None:
    """Hybrid (dense + lexical) search of memory for TEXT."""
    ws = Workspace(settings)
    hits = ws.search_memory(text, user=user, k=k, tiers=tiers, categories=categories, mode=mode)
    if as_json:
        emit_json([h.to_dict() for h in hits])
        return
    table = Table("id", "tier", "score", "text", box=None)
    for h in hits:
        table.add_row(str(h.entry.id), h.entry.tier, f"{h.score:.4f}", h.entry.text)
    out_console.print(table)


@memory_group.command("build")
@click.option("--user", "users", multiple=True, help="Repeatable; default: --all.")
@click.option("--all", "all_users", is_flag=True, help="Every user in the store.")
@click.option(
    "--summarizer",
    type=click.Choice(["stats", "model"]),
    default="stats",
    show_default=True,
    help="stats: counts, averages and the user's own favourites, no model (instant). model: the "
    "bundle's LLM writes each pattern and the profile, citing records (seconds per category).",
)
@click.option("--resume", is_flag=True, help="Skip users whose memory is already built.")
@click.option("--no-embed", is_flag=True, help="Leave the new entries for `mrrec index rebuild`.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def build_command(
    settings: Settings,
    users: tuple[str, ...],
    all_users: bool,
    summarizer: str,
    resume: bool,
    no_embed: bool,
    as_json: bool,
) -> None:
    """Build preference patterns (per category) and profiles from behavior records."""
    from mrrec_edge.cli.data import embed_with_progress

    if users and all_users:
        raise click.UsageError("give --user or --all, not both")
    with Workspace(settings) as ws:
        targets = list(users) or ws.users()
        with progress_bar() as bar:
            task = bar.add_task("building memory", total=len(targets))
            totals = ws.memory_builder(summarizer).build_all(
                targets, resume=resume, progress=lambda n: bar.advance(task, n)
            )
        totals["embedded"] = 0 if no_embed else embed_with_progress(ws)
    if as_json:
        emit_json(totals)
    else:
        out_console.print(
            f"built {totals['patterns']} pattern and {totals['profile_chunks']} profile entries "
            f"for {totals['users']} users ({totals['skipped']} skipped)"
        )


@click.command("feedback")
@click.argument("item")
@click.argument("action", metavar="like|dislike|seen|rate=N")
@click.option("--user", required=True, help="Whose feedback it is.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def feedback_command(settings: Settings, item: str, action: str, user: str, as_json: bool) -> None:
    """Tell the assistant what you thought of ITEM; the affected memory is refreshed at once."""
    with Workspace(settings) as ws:
        out = ws.feedback(user, item, action)
    if as_json:
        emit_json(out)
    elif out["record_id"] is None:
        out_console.print("already recorded")
    else:
        out_console.print(
            f"recorded as record {out['record_id']}; refreshed {out['patterns']} pattern and "
            f"{out['profile_chunks']} profile entries"
        )


@click.group("items")
def items_group() -> None:
    """The catalog."""


@items_group.command("search")
@click.argument("text")
@click.option("--category", "categories", multiple=True, help="Repeatable, e.g. Comedy.")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def items_search_command(
    settings: Settings, text: str, categories: tuple[str, ...], k: int, as_json: bool
) -> None:
    """Find catalog items by title, genre or keyword."""
    hits = Workspace(settings).search_items(text, k=k, categories=list(categories) or None)
    if as_json:
        emit_json([h.to_dict() for h in hits])
        return
    table = Table("id", "title", "year", "genres", box=None)
    for h in hits:
        table.add_row(h.ext_id, h.title, str(h.year or ""), ", ".join(h.categories))
    out_console.print(table)


@click.group("index")
def index_group() -> None:
    """The search indexes (always rebuildable from the database)."""


@index_group.command("rebuild")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def rebuild_command(settings: Settings, as_json: bool) -> None:
    """Embed whatever is pending, then rebuild the dense and collaborative indexes from the
    database."""
    from mrrec_edge.cli.data import embed_with_progress

    with Workspace(settings) as ws:
        embedded = embed_with_progress(ws)
        with progress_bar(counts=False) as bar:
            bar.add_task("rebuilding dense indexes", total=None)
            report = ws.rebuild_indexes()
            collab = ws.rebuild_collab()
    report["embedded"] = embedded
    report["collab"] = collab
    if as_json:
        emit_json(report)
    else:
        out_console.print(
            f"indexed {report['catalog_vectors']} catalog and {report['memory_vectors']} memory "
            f"vectors (embedded {embedded} texts); collaborative index: {collab['items']} items "
            f"from {collab['interactions']} interactions"
            f"{', EASE' if collab['ease'] else ''} in {collab['seconds']:.2f} s"
        )
