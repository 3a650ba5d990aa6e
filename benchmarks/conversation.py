"""Two-turn conversations (issue 19): does a follow-up use the conversation?

From each scenario query of ``--split`` (held-out users; the target is the item the query was
written for), ``mrrec_edge.scenarios.queries.make_follow_up`` makes a conversation whose final
request the target fits, alternating two kinds:

- ``replace``: first a genre the target lacks, then "… {the query's facet} instead";
- ``negative``: first the query itself, then "But not {a genre the target lacks}".

The assistant answers the first turn, then the follow-up twice in the same run: in the
conversation (``context``: the first request and what it showed) and as a fresh request (the
follow-up text alone, as the assistant did before). Per turn and arm:

- request-fit precision@10: the share of the ten that carry the final request's facet and not
  the ruled-out genre (for turn 1: its own facet);
- NDCG@10 of the target;
- repeats: items of the first answer shown again (must be 0 in the conversation).

Paired 95% bootstrap intervals of conversation - fresh. Deterministic (temperature 0, seeded).

    python benchmarks/conversation.py --home HOME --dataset DATASET [--split val] [--limit 200]
        [--bundle DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

import numpy as np

from mrrec_edge.assistant import Assistant, PriorTurn, Recommendations
from mrrec_edge.bundle import Bundle
from mrrec_edge.config import load_settings
from mrrec_edge.evaluation.metrics import bootstrap_ci, bootstrap_indices, per_query_metrics
from mrrec_edge.files import user_path
from mrrec_edge.scenarios import load_examples
from mrrec_edge.scenarios.queries import (
    FOLLOW_UP_KINDS,
    TEMPLATES,
    CatalogItem,
    Facet,
    FacetCatalog,
    Query,
    fits,
    make_follow_up,
)
from mrrec_edge.workspace import Workspace

K = 10
RESAMPLES = 2000
ARMS = ("turn 1", "turn 2 in the conversation", "turn 2 as a fresh request")


def catalog_of(ws: Workspace) -> tuple[dict[int, CatalogItem], dict[str, int]]:
    """Every catalog item as query building sees it, by store id, and store ids by alias."""
    count = int(ws.stats()["items"])
    items = ws.items_by_id(list(range(1, count + 1)))
    by_id = {
        it.item_id: CatalogItem(
            item_id=it.ext_id,
            title=it.title,
            year=it.year,
            genres=tuple(it.categories),
            keywords=tuple(it.keywords),
        )
        for it in items
    }
    return by_id, {it.ext_id: it.item_id for it in items}


def as_query(example: dict[str, Any]) -> Query:
    """The scenario query of ``example``, with the template it was written from."""
    facet = Facet(example["facet"]["kind"], example["facet"]["value"])
    use_case = example["use_case"]
    for t, template in enumerate(TEMPLATES):
        if template.format(facet=facet.phrase(), use_case=use_case) == example["query"]:
            return Query(example["query"], facet, use_case, t)
    raise ValueError(f"{example['id']}: the query matches no template")


def answer(
    assistant: Assistant, user: str, query: str, context: list[PriorTurn] | None = None
) -> list[int]:
    """The ten items the assistant ranks for ``query``, as store ids, best first."""
    for event in assistant.ask(user, query, k=K, distinct_titles=False, context=context or []):
        if isinstance(event, Recommendations):
            return [r.item.item_id for r in event.items]
    raise RuntimeError(f"no recommendations for {query!r}")


def precision(
    ranked: list[int], catalog: dict[int, CatalogItem], want: Facet, avoid: Facet | None
) -> float:
    fit = [
        fits(want, catalog[i]) and (avoid is None or not fits(avoid, catalog[i])) for i in ranked
    ]
    return sum(fit) / K


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--home", type=user_path, required=True)
    ap.add_argument("--dataset", type=user_path, required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--bundle", type=user_path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=user_path, help="write the results here")
    args = ap.parse_args()

    ws = Workspace(load_settings(args.home))
    model = Bundle(args.bundle).load_model() if args.bundle else ws.model
    assistant = Assistant(ws, model)
    catalog, by_alias = catalog_of(ws)
    facets = FacetCatalog(catalog.values())

    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for n, example in enumerate(load_examples(args.dataset, args.split)):
        if len(rows) >= args.limit:
            break
        kind = FOLLOW_UP_KINDS[n % len(FOLLOW_UP_KINDS)]
        target = by_alias[example["target_item"]]
        rng = random.Random(f"{args.seed}:follow-up:{example['id']}")
        follow = make_follow_up(rng, catalog[target], as_query(example), facets, kind)
        if follow is None:
            continue
        user = example["user"]
        first = answer(assistant, user, follow.first)
        context = [PriorTurn(follow.first, shown=tuple(first))]
        continued = answer(assistant, user, follow.second, context)
        fresh = answer(assistant, user, follow.second)
        first_facet = follow.final if kind == "negative" else follow.ruled_out
        rows.append(
            {
                "id": example["id"],
                "kind": kind,
                "first": follow.first,
                "second": follow.second,
                "target": target,
                "rankings": [first, continued, fresh],
                "precision": [
                    precision(first, catalog, first_facet, None),
                    precision(continued, catalog, follow.final, follow.ruled_out),
                    precision(fresh, catalog, follow.final, follow.ruled_out),
                ],
                "repeats": [0, len(set(first) & set(continued)), len(set(first) & set(fresh))],
            }
        )
        if len(rows) % 20 == 0:
            print(
                f"{len(rows)} conversations, {time.perf_counter() - started:.0f} s", file=sys.stderr
            )

    report = summarize(rows)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["command"] = " ".join(sys.argv)
    print_table(report)
    if args.json:
        args.json.write_text(
            json.dumps({**report, "rows": rows}, indent=2) + "\n", encoding="utf-8"
        )
    return 0


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm and kind: means with bootstrap intervals; conversation - fresh, paired."""
    out: dict[str, Any] = {"conversations": len(rows), "arms": {}, "kinds": {}}
    if not rows:
        return out
    ndcg = [
        per_query_metrics([r["rankings"][a] for r in rows], [r["target"] for r in rows], (K,))[
            f"ndcg@{K}"
        ]
        for a in range(len(ARMS))
    ]
    prec = [np.array([r["precision"][a] for r in rows]) for a in range(len(ARMS))]
    repeats = [np.array([r["repeats"][a] for r in rows]) for a in range(len(ARMS))]
    idx = bootstrap_indices(len(rows), RESAMPLES, seed=0)

    def stat(values: np.ndarray) -> dict[str, Any]:
        return {"mean": float(values.mean()), "ci": bootstrap_ci(values, idx)}

    for a, arm in enumerate(ARMS):
        out["arms"][arm] = {
            "precision@10": stat(prec[a]),
            "ndcg@10": stat(ndcg[a]),
            "repeats": int(repeats[a].sum()),
        }
    out["conversation - fresh"] = {
        "precision@10": stat(prec[1] - prec[2]),
        "ndcg@10": stat(ndcg[1] - ndcg[2]),
    }
    for kind in FOLLOW_UP_KINDS:
        mask = np.array([r["kind"] == kind for r in rows])
        out["kinds"][kind] = {
            arm: {
                "n": int(mask.sum()),
                "precision@10": float(prec[a][mask].mean()) if mask.any() else None,
                "ndcg@10": float(ndcg[a][mask].mean()) if mask.any() else None,
            }
            for a, arm in enumerate(ARMS)
        }
    return out


def print_table(report: dict[str, Any]) -> None:
    def cell(s: dict[str, Any]) -> str:
        ci = s["ci"]
        return f"{s['mean']:.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else f"{s['mean']:.3f}"

    print(f"{report['conversations']} conversations")
    print("| arm | request-fit precision@10 | NDCG@10 | repeats of shown items |")
    print("|---|---|---|---|")
    for arm, s in report["arms"].items():
        print(f"| {arm} | {cell(s['precision@10'])} | {cell(s['ndcg@10'])} | {s['repeats']} |")
    if "conversation - fresh" in report:
        d = report["conversation - fresh"]
        paired = f"{cell(d['precision@10'])} | {cell(d['ndcg@10'])}"
        print(f"| conversation - fresh (paired) | {paired} | |")
    for kind, arms in report["kinds"].items():
        parts = ", ".join(
            f"{arm}: P@10 {v['precision@10']:.3f} NDCG@10 {v['ndcg@10']:.3f}"
            for arm, v in arms.items()
            if v["precision@10"] is not None
        )
        print(f"{kind} (n={next(iter(arms.values()))['n']}): {parts}")


if __name__ == "__main__":
    sys.exit(main())
