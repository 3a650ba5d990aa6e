"""``mrrec import``, ``mrrec data fetch`` and ``mrrec stats``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import TaskID

from mrrec_edge._core import import_kinds
from mrrec_edge.cli._paths import UserPath
from mrrec_edge.cli._ui import emit_json, note, out_console, progress_bar
from mrrec_edge.config import Settings
from mrrec_edge.datasets import DATASETS, fetch_movielens_100k
from mrrec_edge.scenarios.build import DEFAULT_TARGETS_PER_USER
from mrrec_edge.scenarios.prepare import CATALOGS
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
@click.argument("path", type=UserPath(exists=True))
@click.option("--user", help="Who the rows belong to (exports of one person).")
@click.option(
    "--keywords",
    type=UserPath(exists=True, dir_okay=False),
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
        # The collaborative index follows the new interactions now (saved for every process),
        # not on the first answer.
        with progress_bar(counts=False) as bar:
            bar.add_task("updating the collaborative index", total=None)
            report["collab"] = ws.open_collab()
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
        ws.open_indexes()
    return done


@click.group("data")
def data_group() -> None:
    """Public datasets for trying mrrec-edge out."""


@data_group.command("fetch")
@click.argument("dataset", type=click.Choice(DATASETS))
@click.option(
    "--dest",
    type=UserPath(file_okay=False),
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
    stats = Workspace(settings).stats()
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


BUILD_HELP = """Build the scenario dataset (versioned splits and queries) from MovieLens 100K.

\b
Per user, up to --targets-per-user targets are held out: walking back from the last
interaction, each one rated 4+ whose item is new (not rated before it, not another
target), while at least --min-history interactions lie strictly before it. The
user's cutoff is the earliest target's timestamp; the history is everything strictly
before it, and nothing else at or after it is kept (no leakage). Users are split
70/15/15 (train/val/test) by --seed, all of a user's examples together; each target
gets its own query naming a coarse facet of it (a genre or keyword) and a use case,
never its title.

\b
Writes examples.jsonl, history/ (importable with `mrrec import movielens-100k`),
manifest.json and datasheet.md to --out, atomically. With --prepare HOME it also
makes HOME a ready workspace for training and evaluation: the catalog and histories
imported and embedded, every user's local memory (statistical summarizer), and global
memory from the train users only. A complete HOME for the same dataset and embedder
is kept as is; an interrupted one resumes. The embedder comes from this home's bundle.
With --catalog ml25m-keywords the prepared HOME's catalog also holds the MovieLens 25M
keyword catalog (13.8k items; `mrrec eval --catalog ml25m-keywords` needs it); the
memory is the same.
"""


def _scenario_sources(
    source: Path, keywords: Path | None, no_keywords: bool
) -> tuple[Path, Path | None]:
    ml100k = source / "movielens-100k" if (source / "movielens-100k").is_dir() else source
    if no_keywords:
        return ml100k, None
    if keywords is None:
        default = source / "movielens-25m-keywords" / "movies_w_keywords.csv"
        keywords = default if default.is_file() else None
        if keywords is None:
            note(f"[yellow]no keyword file at {default}[/]: every facet will be a genre")
    return ml100k, keywords


@data_group.command("build", help=BUILD_HELP)
@click.option(
    "--source",
    type=UserPath(file_okay=False),
    default=Path("../shared/data"),
    show_default=True,
    help="Folder with movielens-100k/ and movielens-25m-keywords/, or a MovieLens 100K folder.",
)
@click.option(
    "--keywords",
    type=UserPath(exists=True, dir_okay=False),
    help="MovieLens 25M keyword CSV (default: in SOURCE/movielens-25m-keywords/).",
)
@click.option("--no-keywords", is_flag=True, help="No keyword enrichment: genre facets only.")
@click.option(
    "--out",
    type=UserPath(file_okay=False),
    help="Dataset folder (default: <home>/datasets/ml100k-scenarios-v2).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Splits and queries.")
@click.option("--min-history", default=10, show_default=True, type=click.IntRange(1))
@click.option(
    "--targets-per-user",
    default=DEFAULT_TARGETS_PER_USER,
    show_default=True,
    type=click.IntRange(1),
    help="Held-out targets (queries) per user, at most.",
)
@click.option(
    "--users-limit", type=click.IntRange(1), help="Only the first N users by id (trials)."
)
@click.option(
    "--prepare",
    "prepare_home",
    type=UserPath(file_okay=False),
    metavar="HOME",
    help="Also prepare HOME as a workspace for this dataset (see above).",
)
@click.option(
    "--catalog",
    type=click.Choice(CATALOGS),
    default=CATALOGS[0],
    show_default=True,
    help="The item pool of the prepared HOME.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest's counts as JSON.")
@click.pass_obj
def build_command(
    settings: Settings,
    source: Path,
    keywords: Path | None,
    no_keywords: bool,
    out: Path | None,
    seed: int,
    min_history: int,
    targets_per_user: int,
    users_limit: int | None,
    prepare_home: Path | None,
    catalog: str,
    as_json: bool,
) -> None:
    from mrrec_edge.scenarios import DATASET_VERSION, build_scenarios

    ml100k, keywords = _scenario_sources(source, keywords, no_keywords)
    out = out or settings.datasets_path / DATASET_VERSION
    with progress_bar(counts=False) as bar:
        bar.add_task("building scenarios", total=None)
        manifest = build_scenarios(
            ml100k,
            out,
            keywords_csv=keywords,
            seed=seed,
            min_history=min_history,
            users_limit=users_limit,
            targets_per_user=targets_per_user,
        )
    result: dict[str, object] = {"out": str(out), "counts": manifest["counts"]}
    if prepare_home is not None:
        result["prepared"] = _prepare_with_progress(settings, out, prepare_home, catalog)
    if as_json:
        emit_json(result)
        return
    counts = manifest["counts"]
    splits = "; ".join(
        f"{s}: {v['examples']} queries, {v['users']} users" for s, v in counts["splits"].items()
    )
    out_console.print(
        f"built {counts['examples']} examples for {counts['users']} users ({splits}) in {out}"
    )
    out_console.print(
        f"histories: {counts['interactions']['history']} interactions; "
        f"{counts['interactions']['dropped_at_or_after_cutoff']} at or after a cutoff dropped"
    )
    if prepare_home is not None:
        out_console.print(f"workspace ready: {prepare_home}")


def _prepare_with_progress(
    settings: Settings, dataset: Path, home: Path, catalog: str
) -> dict[str, object]:
    from mrrec_edge.scenarios import prepare_workspace, prepared_marker

    labels = {
        "import": "importing histories",
        "embed": "embedding",
        "memory": "building local memory",
        "global": "building global memory",
        "pool": "importing the larger catalog",
        "index": "indexing",
    }
    with progress_bar() as bar:
        tasks: dict[str, TaskID] = {}

        def on_progress(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(labels.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        prepare_workspace(
            dataset, home, bundle=settings.bundle_path, catalog=catalog, progress=on_progress
        )
    return prepared_marker(home) or {}


@data_group.command("global-memory")
@click.argument("dataset", type=UserPath(exists=True, file_okay=False))
@click.option(
    "--split",
    type=click.Choice(["train"]),
    default="train",
    show_default=True,
    help="Whose choices to learn from (val and test never feed global memory).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def global_memory_command(settings: Settings, dataset: Path, split: str, as_json: bool) -> None:
    """Replace this home's global memory with what DATASET's train users chose.

    The home needs the dataset's catalog (`mrrec import movielens-100k DATASET/history
    --keywords DATASET/catalog/movies_w_keywords.csv`) and an embedder. Re-runnable.
    """
    from mrrec_edge.memory.global_memory import build_global_memory
    from mrrec_edge.scenarios import load_examples, load_manifest

    load_manifest(dataset)
    examples = load_examples(dataset)
    with Workspace(settings) as ws:
        _ = ws.embedder  # no embedder: say how to build one before any work
        with progress_bar() as bar:
            task = bar.add_task(
                "building global memory", total=sum(e["split"] == split for e in examples)
            )
            report = build_global_memory(
                ws, examples, split=split, progress=lambda n: bar.advance(task, n)
            )
        ws.open_indexes()
    if as_json:
        emit_json(report)
    else:
        out_console.print(
            f"global memory: {report['entries']} entries in {report['categories']} categories "
            f"from {report['choices']} {split} choices"
        )
