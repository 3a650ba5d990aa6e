"""The statistical summarizer: patterns and profile from counts, averages and the user's own
favourites, with no model. Deterministic, fast, and it never states what the records do not
show (every named item is cited by its record id)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from mrrec_edge.memory.build import Chunk, PatternSummary
from mrrec_edge.memory.records import Record, label, mean_signal, signal

LIKED = 4.0
DISLIKED = 2.0


def _decade_phrase(records: Sequence[Record]) -> str | None:
    decades = Counter(r["year"] // 10 * 10 for r in records if r.get("year"))
    if not decades:
        return None
    decade, count = decades.most_common(1)[0]
    share = count / sum(decades.values())
    return f"mostly from the {decade}s ({share:.0%})" if share >= 0.4 else None


def _themes(records: Sequence[Record], top: int = 4) -> list[str]:
    counts = Counter(k for r in records for k in r.get("keywords") or [])
    return [k for k, c in counts.most_common(top) if c >= 2]


def by_strength(records: Sequence[Record], liked: bool) -> list[Record]:
    # Strongest feeling first; among equals, the most recent.
    def key(r: Record) -> tuple[float, int]:
        s = signal(r) or 0.0
        return (-s if liked else s, -(r["timestamp"] or 0))

    return sorted(records, key=key)


class StatsSummarizer:
    name = "stats"

    def pattern(
        self, category: str, records: Sequence[Record], user_mean: float | None
    ) -> PatternSummary:
        scored = [r for r in records if signal(r) is not None]
        liked = by_strength([r for r in scored if signal(r) >= LIKED], liked=True)[:4]
        disliked = by_strength([r for r in scored if signal(r) <= DISLIKED], liked=False)[:3]
        avg = mean_signal(scored)
        overview = f"{category}: {len(records)} in the history"
        if avg is not None:
            overview += f", average {avg:.1f}/5"
            if user_mean is not None and abs(avg - user_mean) >= 0.3:
                overview += (
                    f" ({'above' if avg > user_mean else 'below'} their {user_mean:.1f} overall)"
                )
        if era := _decade_phrase(records):
            overview += f", {era}"
        chunks = [Chunk(overview + ".")]
        if liked:
            text = f"{category} they liked: " + ", ".join(label(r) for r in liked)
            if themes := _themes(liked):
                text += "; recurring themes: " + ", ".join(themes)
            chunks.append(Chunk(text + ".", [r["record_id"] for r in liked]))
        if disliked:
            text = f"{category} they disliked: " + ", ".join(label(r) for r in disliked) + "."
            chunks.append(Chunk(text, [r["record_id"] for r in disliked]))
        return PatternSummary(category=category, chunks=chunks, mean=avg, count=len(records))

    def profile(
        self, records: Sequence[Record], patterns: Sequence[tuple[int, PatternSummary]]
    ) -> list[Chunk]:
        scored = [r for r in records if signal(r) is not None]
        chunks: list[Chunk] = []
        avg = mean_signal(scored)
        if avg is not None:
            kind = "a generous" if avg >= 3.8 else "a strict" if avg <= 3.0 else "a balanced"
            # An aggregate over the whole history: no single record to cite.
            text = f"Has {len(records)} items in the history; {kind} rater (average {avg:.1f}/5)."
            chunks.append(Chunk(text, []))
        rated = [(pid, p) for pid, p in patterns if p.mean is not None and p.count >= 3]
        if rated:
            best = sorted(rated, key=lambda x: (-x[1].mean, -x[1].count))[:3]
            chunks.append(
                Chunk(
                    "Favourite categories: "
                    + ", ".join(f"{p.category} ({p.mean:.1f}/5 over {p.count})" for _, p in best)
                    + ".",
                    [pid for pid, _ in best],
                )
            )
            worst = sorted(rated, key=lambda x: (x[1].mean, -x[1].count))[0]
            if worst[1].mean <= 3.2 and worst not in best:
                w = worst[1]
                text = f"Least liked category: {w.category} ({w.mean:.1f}/5 over {w.count})."
                chunks.append(Chunk(text, [worst[0]]))
        favourites = by_strength([r for r in scored if signal(r) >= LIKED], liked=True)[:5]
        if favourites:
            chunks.append(
                Chunk(
                    "All-time favourites: " + ", ".join(label(r) for r in favourites) + ".",
                    [r["record_id"] for r in favourites],
                )
            )
        if era := _decade_phrase(records):
            chunks.append(Chunk(f"Watches {era}.", []))
        recent = sorted(records, key=lambda r: -(r["timestamp"] or 0))[:4]
        if recent:
            chunks.append(
                Chunk(
                    "Most recently: " + ", ".join(label(r) for r in recent) + ".",
                    [r["record_id"] for r in recent],
                )
            )
        return chunks
