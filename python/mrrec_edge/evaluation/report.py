"""The report of an evaluation run: a markdown page of tables and a PNG plot.

The plot needs matplotlib, which the installed assistant does not: without it the report says
so clearly instead of failing half-way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mrrec_edge.errors import MrrecError
from mrrec_edge.evaluation.metrics import metric_names
from mrrec_edge.evaluation.rows import ROW_NAMES

HEADERS = {"recall@10": "R@10", "recall@100": "R@100", "ndcg@10": "N@10", "ndcg@100": "N@100"}
PLOT = "eval.png"
TABLE = "results.md"
RESULTS = "results.json"


class ReportError(MrrecError):
    """The report could not be written (e.g. matplotlib is missing for the plot)."""


def ordered(results: Mapping[str, Any]) -> list[str]:
    """The row names of ``results`` in the table's order (JSON written with sorted keys loses
    it)."""
    return [n for n in ROW_NAMES if n in results["rows"]]


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _ci(pair: list[float | None] | None) -> str:
    return "" if pair is None else f" [{_num(pair[0])}, {_num(pair[1])}]"


def main_table(results: Mapping[str, Any]) -> str:
    """One line per row: the four metrics with their 95% intervals, memory tokens, seconds."""
    names = metric_names()
    head = ["row", *(HEADERS[m] for m in names), "memory tokens", "s/query"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in ordered(results):
        row = results["rows"][name]
        cells = [f"`{name}`"]
        cells += [_num(row[m]) + _ci(row["ci95"][m]) for m in names]
        cells += [f"{row['memory_tokens']:.0f}", f"{row['seconds_per_query']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def group_table(
    results: Mapping[str, Any], groups: str = "per_category", metric: str = "ndcg@10"
) -> str:
    """``metric`` of each row in each group (``per_category`` or ``per_facet_kind``: columns,
    with their query counts)."""
    rows = results["rows"]
    counts: dict[str, int] = {}
    for row in rows.values():
        for group, m in row[groups].items():
            counts[group] = int(m["queries"])
    order = sorted(counts, key=lambda c: (-counts[c], c))
    head = ["row", *(f"{c} ({counts[c]})" for c in order)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in ordered(results):
        cells = [_num(rows[name][groups][c][metric]) for c in order]
        lines.append("| " + " | ".join([f"`{name}`", *cells]) + " |")
    return "\n".join(lines)


def differences_table(results: Mapping[str, Any]) -> str:
    """Each row's NDCG@10 minus the reference MR.Rec row's, paired, with the 95% interval."""
    d = results.get("differences") or {}
    reference = d.get("reference")
    if not reference:
        return "No MR.Rec row in this run: no paired differences."
    lines = [
        f"| row | NDCG@10 minus `{reference}` | 95% CI | within noise |",
        "|---|---|---|---|",
    ]
    for name in ordered(results):
        if name in d:
            diff, ci = d[name]["difference"], d[name]["ci95"]
            noise = "yes" if ci is None or ci[0] <= 0 <= ci[1] else "no"
            lines.append(f"| `{name}` | {diff:+.4f} | {_ci(ci).strip()} | {noise} |")
    return "\n".join(lines)


def gains_text(results: Mapping[str, Any]) -> str:
    g = results.get("gains") or {}
    best = g.get("best_baseline")
    models = [n for n in ordered(results) if n in g]
    if not best or not models:
        return "No MR.Rec row next to a baseline row in this run: no gain to report."
    base = results["rows"][best]["ndcg@10"]
    out = [f"Best baseline on NDCG@10: `{best}` ({_num(base)})."]
    for name in models:
        gain, ci = g[name]["gain"], g[name]["ci95"]
        value = "n/a" if gain is None else f"{gain:+.1%}"
        interval = "" if ci is None else f" (95% CI {ci[0]:+.1%} to {ci[1]:+.1%})"
        out.append(f"`{name}`: NDCG@10 {value} relative to it{interval}.")
    return " ".join(out)


def options_text(results: Mapping[str, Any]) -> str:
    """A line saying which assistant settings the run changed (``mrrec eval --set``), or ""."""
    options = results.get("assistant_options") or {}
    if not options:
        return ""
    listed = ", ".join(f"{k}={v}" for k, v in options.items())
    return f"Assistant rows ran with {listed} (except where a row sets one itself).\n\n"


def markdown(results: Mapping[str, Any]) -> str:
    rows = results["rows"]
    described = "\n".join(
        f"- `{n}`: {rows[n]['description']}"
        + (f" (model: {rows[n]['model']})" if rows[n]["model"] else "")
        for n in ordered(results)
    )
    return (
        f"# Evaluation: {results['queries']} {results['split']} queries, "
        f"catalog of {results['catalog_size']} items\n\n"
        f"{options_text(results)}"
        "Metrics of the held-out item over the full catalog, the user's consumed items left "
        f"out; in brackets the 95% bootstrap interval ({results['bootstrap']} resamples of the "
        f"queries, seed {results['seed']}). Memory tokens: per query, local and global memory "
        "the model saw.\n\n"
        f"{main_table(results)}\n\n{gains_text(results)}\n\n"
        "## Paired differences\n\n"
        f"{differences_table(results)}\n\n"
        f"## NDCG@10 per category ({results['category_basis']}; queries in brackets)\n\n"
        f"{group_table(results)}\n\n"
        "## NDCG@10 per facet kind (what the query names)\n\n"
        f"{group_table(results, 'per_facet_kind')}\n\n## Rows\n\n{described}\n"
    )


def plot(results: Mapping[str, Any], path: Path) -> Path:
    """A PNG, a bar per row: NDCG@10 and Recall@100 with their 95% intervals, memory tokens."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ReportError(
            "the report's plot needs matplotlib: `pip install matplotlib` (or run without --report)"
        ) from exc
    rows = results["rows"]
    names = ordered(results)[::-1]  # top to bottom in table order
    y = list(range(len(names)))
    fig, axes = plt.subplots(
        1, 3, figsize=(12, 0.4 * len(names) + 1.6), sharey=True,
        gridspec_kw={"width_ratios": [2, 2, 1]},
    )  # fmt: skip
    for ax, metric, color in zip(
        axes, ("ndcg@10", "recall@100"), ("tab:blue", "tab:orange"), strict=False
    ):
        values = [rows[n][metric] for n in names]
        cis = [rows[n]["ci95"][metric] for n in names]
        errors = None
        if all(cis):
            errors = [
                [v - ci[0] for v, ci in zip(values, cis, strict=True)],
                [ci[1] - v for v, ci in zip(values, cis, strict=True)],
            ]
        ax.barh(y, values, xerr=errors, color=color, capsize=2)
        ax.set_xlim(left=0)
        ax.set_xlabel(f"{HEADERS[metric]} (95% bootstrap CI)")
    axes[0].set_yticks(y, names)
    axes[2].barh(y, [rows[n]["memory_tokens"] for n in names], color="tab:gray")
    axes[2].set_xlim(left=0)
    axes[2].set_xlabel("memory tokens / query")
    queries, items = results["queries"], results["catalog_size"]
    fig.suptitle(f"{queries} {results['split']} queries, catalog of {items} items")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(results: Mapping[str, Any], folder: Path) -> list[Path]:
    """Writes results.json, results.md and eval.png into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    png = plot(results, folder / PLOT)  # first: a missing matplotlib writes nothing
    md = folder / TABLE
    md.write_text(markdown(results) + f"\n![evaluation]({PLOT})\n", encoding="utf-8")
    data = folder / RESULTS
    data.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return [md, png, data]
