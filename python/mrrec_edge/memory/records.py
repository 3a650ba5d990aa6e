"""What a behavior record says, as every summarizer reads it."""

from __future__ import annotations

from collections.abc import Sequence
from statistics import mean
from typing import Any

Record = dict[str, Any]

# Feedback without a number still says which way the user leans.
FEEDBACK_SIGNAL = {"feedback:like": 4.5, "feedback:dislike": 1.5}


def signal(record: Record) -> float | None:
    """How much the user liked the item: the rating, else what the feedback implies."""
    if record["rating"] is not None:
        return float(record["rating"])
    return FEEDBACK_SIGNAL.get(record["source"])


def mean_signal(records: Sequence[Record]) -> float | None:
    values = [s for r in records if (s := signal(r)) is not None]
    return mean(values) if values else None


def label(record: Record) -> str:
    return f"{record['title']} ({record['year']})" if record.get("year") else record["title"]
