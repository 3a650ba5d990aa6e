"""How well the SFT teacher's answers rank the held-out item: the ceiling of what SFT imitates.

Runs the teacher (``mrrec_train.sft.Teacher``) through the assistant's own loop on a split's
queries, exactly as trace building does, and grounds each profile on the full catalog; next to
it, in the same run, the query alone (the ``dense`` row). No LLM is involved: this measures
the teacher's procedure, not a model.

    python benchmarks/teacher.py --dataset runs/data/ml100k --home runs/data/ml100k-home \
        [--split val] [--limit 50] [--calls 1] [--choices hindsight,strength]
"""

from __future__ import annotations

import argparse

from mrrec_edge.assistant import Assistant
from mrrec_edge.evaluation import DEPTH, metric_names, per_query_metrics
from mrrec_edge.evaluation.metrics import bootstrap_ci, bootstrap_indices
from mrrec_edge.files import user_path
from mrrec_edge.grounding import REQUEST_ONLY
from mrrec_edge.scenarios import load_examples
from mrrec_edge.workspace import Workspace
from mrrec_train.base import base_checkpoint
from mrrec_train.recipe import TEACHER_CHOICES, RolloutConfig
from mrrec_train.rollout import ask, assistant_config
from mrrec_train.sft import Teacher


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=user_path, required=True)
    parser.add_argument("--home", type=user_path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--calls", type=int, default=1, help="Teacher memory calls (1 or 2).")
    parser.add_argument(
        "--choices",
        default="hindsight",
        help=f"Comma-separated teacher choices, a row each ({', '.join(TEACHER_CHOICES)}).",
    )
    args = parser.parse_args()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_checkpoint()), local_files_only=True)
    config = assistant_config(RolloutConfig())
    examples = load_examples(args.dataset, args.split)[: args.limit]
    choices = [c.strip() for c in args.choices.split(",") if c.strip()]
    rankings: dict[str, list[list[int]]] = {f"teacher ({c})": [] for c in choices}
    rankings["dense (query alone)"] = []
    targets = []
    with Workspace.open(args.home) as ws:
        for e in examples:
            for choice in choices:
                teacher = Teacher(tokenizer, ws, e, calls=args.calls, config=config, choice=choice)
                rollout = ask(Assistant(ws, teacher, config), e, cuts=(DEPTH, 10))
                rankings[f"teacher ({choice})"].append(rollout.ranking)
            hits = ws.ground(
                request=e["query"],
                k=DEPTH,
                user=e["user"],
                weights=REQUEST_ONLY,
                distinct_titles=False,
            )
            rankings["dense (query alone)"].append([g.item.item_id for g in hits])
            targets.append(rollout.target)
    print(f"{len(targets)} {args.split} queries, top {DEPTH} of the catalog")
    names = metric_names()
    print(f"{'':26}" + "".join(f"{m:>12}" for m in names))
    values = {row: per_query_metrics(ranks, targets) for row, ranks in rankings.items()}
    for row, v in values.items():
        print(f"{row:26}" + "".join(f"{v[m].mean():12.3f}" for m in names))
    first, *others = list(values)[: len(choices)]
    indices = bootstrap_indices(len(targets), 1000, seed=0)
    for row in others:
        diff = values[row]["ndcg@10"] - values[first]["ndcg@10"]
        lo, hi = bootstrap_ci(diff, indices) or (float("nan"), float("nan"))
        print(f"ndcg@10 {row} - {first}: {diff.mean():+.4f} [{lo:+.4f}, {hi:+.4f}] (paired)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
