"""What a shorter ideal item profile would cost: the profiles an evaluation run wrote, grounded
again as written and shortened, with NDCG@10 and Recall@100 of the held-out item for each.

Decoding the profile is most of the assistant's decode time, and the trained model writes it as
"A comedy like Title (1996), Title (1979) and Title (1996)." A title's year alone is six tokens.
This measures, without retraining, whether a terser answer format would be free: each profile
is grounded as written, without the years, with its first two titles, and with its first title
only; each variant's difference from "as written" comes with a paired bootstrap interval.

The profiles come from ``mrrec eval --resume DIR``: the per-query file of an assistant row
(``DIR/mrrec-rl.<key>.jsonl``) holds the profile of every query.

    python benchmarks/shorter_profiles.py --home HOME --dataset DATASET --split val \
        --profiles DIR/mrrec-rl.<key>.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from mrrec_edge.evaluation import DEPTH
from mrrec_edge.evaluation.metrics import bootstrap_ci, bootstrap_indices, per_query_metrics
from mrrec_edge.files import user_path
from mrrec_edge.grounding import PROFILE_ONLY
from mrrec_edge.scenarios import SPLITS, load_examples
from mrrec_edge.workspace import Workspace

YEAR = re.compile(r" \(\d{4}\)")
#: "A <facet> like T1, T2 and T3." where every title ends with its year, as MovieLens spells it.
LISTED = re.compile(r"^(?P<head>.*? like )(?P<titles>.*\(\d{4}\))\.?$")
TITLE = re.compile(r"(?:, | and )?(.+?\(\d{4}\))")
METRICS = ("ndcg@10", "recall@100")


def _listing(titles: list[str]) -> str:
    return titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]


def variants(profile: str) -> dict[str, str]:
    """The profile as written, without years, and cut to its first two and first titles (a
    profile that lists no titles stays as written)."""
    out = {"as written": profile, "no years": YEAR.sub("", profile)}
    listed = LISTED.match(profile)
    titles = TITLE.findall(listed["titles"]) if listed else []
    for n, name in ((2, "first two titles"), (1, "first title")):
        out[name] = listed["head"] + _listing(titles[:n]) + "." if titles else profile
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=user_path, required=True)
    parser.add_argument("--dataset", type=user_path, required=True)
    parser.add_argument("--split", choices=SPLITS, default="val")
    parser.add_argument("--profiles", type=user_path, required=True, help="an eval --resume file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=user_path, help="write the figures here")
    args = parser.parse_args()

    examples = {e["id"]: e for e in load_examples(args.dataset, args.split)}
    rows = [json.loads(line) for line in args.profiles.read_text().splitlines() if line.strip()]
    missing = [r["id"] for r in rows if r["id"] not in examples or "profile" not in r]
    if missing:
        sys.exit(f"{args.profiles}: {missing[0]} is not a {args.split} query with a profile")
    with Workspace.open(args.home) as ws:
        targets = [ws.store.item(examples[r["id"]]["target_item"]).item_id for r in rows]
        rankings: dict[str, list[list[int]]] = {}
        for r in rows:
            user = examples[r["id"]]["user"]
            for name, text in variants(r["profile"]).items():
                hits = ws.ground(
                    profile=text, user=user, k=DEPTH, weights=PROFILE_ONLY, distinct_titles=False
                )
                rankings.setdefault(name, []).append([g.item.item_id for g in hits])
    values = {name: per_query_metrics(ranked, targets) for name, ranked in rankings.items()}
    indices = bootstrap_indices(len(rows), 1000, args.seed)
    written = values["as written"]
    report = {}
    for name, v in values.items():
        report[name] = {m: float(v[m].mean()) for m in METRICS}
        for m in METRICS:
            report[name][f"{m} - as written, 95% CI"] = bootstrap_ci(v[m] - written[m], indices)
    print(f"{len(rows)} {args.split} queries, profiles from {args.profiles.name}")
    for name, figures in report.items():
        cells = []
        for m in METRICS:
            ci = figures[f"{m} - as written, 95% CI"]
            cells.append(f"{m} {figures[m]:.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]")
        print(f"{name:<17} " + "  ".join(cells))
    if args.json:
        args.json.write_text(json.dumps({"queries": len(rows), "variants": report}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
