"""``mrrec eval``: the evaluation harness of METHOD.md §4 on a prepared scenario workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from mrrec_edge.assistant import config_options
from mrrec_edge.cli._paths import UserPath
from mrrec_edge.cli._ui import emit_json, note, out_console, progress_bar
from mrrec_edge.config import Settings, load_settings
from mrrec_edge.evaluation import (
    CATALOGS,
    CATEGORY_BASIS,
    ROW_NAMES,
    EvalPlan,
    Evaluation,
    check_prepared,
    default_rows,
    metric_names,
    parse_rows,
    write_report,
)
from mrrec_edge.evaluation.fit import fit_model
from mrrec_edge.evaluation.report import HEADERS, gains_text, options_text
from mrrec_edge.evaluation.rows import ROWS
from mrrec_edge.grounding import load_fit, write_fit
from mrrec_edge.scenarios import SPLITS
from mrrec_edge.workspace import Workspace

_DIR = UserPath(file_okay=False)

EVAL_HELP = f"""Evaluate baselines, MR.Rec and its ablations on a scenario DATASET's held-out
items, every row in this one run.

Each row ranks the whole catalog for each query (the user's consumed items left out); the
held-out item's rank gives Recall and NDCG at 10 and 100, overall, per category
({CATEGORY_BASIS}) and per facet kind, with bootstrap 95% intervals from --seed. Memory tokens
and seconds per query are reported for every row. The LLM rows decode greedily, so two runs
give the same rankings.

\b
Rows (--rows, comma-separated; default: all whose model is given):
  {", ".join(ROW_NAMES[:7])},
  {", ".join(ROW_NAMES[7:11])},
  {", ".join(ROW_NAMES[11:])}
mrrec-sft and mrrec-rl need --bundle-sft / --bundle-rl; the ablations run on the most
trained model given (rl, else sft, else base).
"""


def _assistant_options(_ctx: Any, _param: Any, pairs: tuple[str, ...]) -> dict[str, Any]:
    try:
        return config_options(pairs)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("eval", help=EVAL_HELP)
@click.option(
    "--dataset",
    required=True,
    type=UserPath(exists=True, file_okay=False),
    help="The scenario dataset (`mrrec data build`).",
)
@click.option(
    "--home",
    "eval_home",
    type=_DIR,
    help="The workspace prepared from it (`mrrec data build --prepare`); "
    "default: mrrec --home, else $MRREC_HOME.",
)
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True)
@click.option("--rows", "rows_text", help="Comma-separated rows to run (default: all).")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N queries.")
@click.option(
    "--catalog",
    type=click.Choice(CATALOGS),
    default=CATALOGS[0],
    show_default=True,
    help="The item pool: the workspace must be prepared with it (`mrrec data build --prepare "
    "HOME --catalog ml25m-keywords` adds the 13.8k MovieLens 25M items).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option(
    "--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True, help="Resamples."
)
@click.option("--bundle-base", type=_DIR, help="Base model bundle (default: the home's bundle).")
@click.option("--bundle-sft", type=_DIR, help="SFT-only model bundle (for mrrec-sft).")
@click.option("--bundle-rl", type=_DIR, help="RL-tuned model bundle (for mrrec-rl).")
@click.option(
    "--resume",
    "resume_dir",
    type=_DIR,
    help="Keep per-query results in this folder and reuse those of an earlier run with the "
    "same rows, models and workspace.",
)
@click.option(
    "--set",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_assistant_options,
    help="An assistant setting for every LLM row, except where a row sets it itself "
    "(repeatable), e.g. --set global_k=1 --set memory_k=2: what leaner memory costs.",
)
@click.option(
    "--grounding",
    "grounding_file",
    type=UserPath(exists=True, dir_okay=False),
    help="Grounding weights for the MR.Rec rows (a fit file); default: each bundle's own.",
)
@click.option(
    "--fit-grounding",
    "fit_out",
    type=UserPath(dir_okay=False),
    help="After the run, fit every grounding signal's weight on the one MR.Rec row's profiles "
    "and write the fit here (run it on --split train; `mrrec bundle build --grounding` ships it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@click.option("--report", "report_dir", type=_DIR, help="Write results.md, eval.png and JSON here.")
@click.pass_obj
def eval_command(
    settings: Settings,
    dataset: Path,
    eval_home: Path | None,
    split: str,
    rows_text: str | None,
    limit: int | None,
    catalog: str,
    seed: int,
    bootstrap: int,
    bundle_base: Path | None,
    bundle_sft: Path | None,
    bundle_rl: Path | None,
    resume_dir: Path | None,
    options: dict[str, Any],
    grounding_file: Path | None,
    fit_out: Path | None,
    as_json: bool,
    report_dir: Path | None,
) -> None:
    home = eval_home.expanduser() if eval_home else settings.home
    bundles = {
        role: path.expanduser()
        for role, path in (("base", bundle_base), ("sft", bundle_sft), ("rl", bundle_rl))
        if path is not None
    }
    rows = parse_rows(rows_text) if rows_text else default_rows(bundles)
    model_rows = [r for r in rows if ROWS[r].kind == "assistant"]
    if fit_out is not None and len(model_rows) != 1:
        raise click.UsageError("--fit-grounding fits on one MR.Rec row: pass --rows with one")
    plan = EvalPlan(
        dataset=dataset,
        rows=rows,
        bundles=bundles,
        split=split,
        limit=limit,
        seed=seed,
        bootstrap=bootstrap,
        catalog=catalog,
        resume_dir=resume_dir,
        assistant_options=options,
        grounding_fit=load_fit(grounding_file) if grounding_file else None,
    )
    check_prepared(home, dataset)  # before opening: a store would be created in a wrong folder
    with Workspace(load_settings(home)) as ws:
        evaluation = Evaluation(ws, plan)
        with progress_bar() as bar:
            tasks = {r: bar.add_task(r, total=len(evaluation.examples)) for r in rows}
            results = evaluation.run(lambda row, done, _: bar.update(tasks[row], completed=done))
        if fit_out is not None:
            fit = fit_model(
                ws,
                dataset,
                evaluation.examples,
                evaluation.results[model_rows[0]],
                seed=seed,
                source=f"{model_rows[0]} profiles on {split} ({len(evaluation.examples)} queries)",
            )
            write_fit(fit_out, fit)
            note(f"grounding fit written to {fit_out}: {fit['weights']}")
    if report_dir is not None:
        paths = write_report(results, report_dir)
        note(f"wrote {', '.join(str(p) for p in paths)}")
    if as_json:
        emit_json(results)
        return
    _print_table(results)


def _print_table(results: dict[str, Any]) -> None:
    names = metric_names()
    table = Table("row", *(HEADERS[m] for m in names), "mem tok", "s/query", box=None)
    for name, row in results["rows"].items():
        cells = [f"{row[m]:.3f}" for m in names]
        cost = [f"{row['memory_tokens']:.0f}", f"{row['seconds_per_query']:.2f}"]
        table.add_row(name, *cells, *cost)
    out_console.print(
        f"{results['queries']} {results['split']} queries, catalog of "
        f"{results['catalog_size']} items"
    )
    if options := options_text(results):
        out_console.print(options.strip())
    out_console.print(table)
    out_console.print(gains_text(results))
