"""The evaluation harness (METHOD.md §4, issue 5): baselines, MR.Rec and its ablations on the
scenario dataset's held-out items, with bootstrap intervals, in one run (``mrrec eval``)."""

from mrrec_edge.evaluation.harness import (
    CATALOGS,
    CATEGORY_BASIS,
    DEPTH,
    EvalPlan,
    Evaluation,
    QueryResult,
    check_prepared,
    default_rows,
    parse_rows,
)
from mrrec_edge.evaluation.metrics import (
    KS,
    bootstrap_ci,
    bootstrap_indices,
    group_means,
    metric_names,
    per_query_metrics,
    relative_gain,
)
from mrrec_edge.evaluation.report import ReportError, write_report
from mrrec_edge.evaluation.rows import ROW_NAMES, ROWS, Popularity, Row, static_memory

__all__ = [
    "CATALOGS",
    "CATEGORY_BASIS",
    "DEPTH",
    "KS",
    "ROWS",
    "ROW_NAMES",
    "EvalPlan",
    "Evaluation",
    "Popularity",
    "QueryResult",
    "ReportError",
    "Row",
    "bootstrap_ci",
    "bootstrap_indices",
    "check_prepared",
    "default_rows",
    "group_means",
    "metric_names",
    "parse_rows",
    "per_query_metrics",
    "relative_gain",
    "static_memory",
    "write_report",
]
