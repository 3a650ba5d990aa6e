"""The evaluation run (METHOD.md §4): every requested row on the same queries of one split, in
one process, with the numbers of ``mrrec eval``.

For each query a row ranks the full catalog (top :data:`DEPTH`), leaving out what the user
consumed; the held-out target's rank gives Recall and NDCG at 10 and 100. Per-query results can
be kept in a resume folder, so a long run that is stopped picks up where it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np

from mrrec_edge import __version__
from mrrec_edge._core import GROUNDING_SATURATION, Orchestrator
from mrrec_edge.assistant import Assistant, AssistantConfig, Done, Profile, Recommendations
from mrrec_edge.bundle import MANIFEST, Bundle
from mrrec_edge.errors import InputError
from mrrec_edge.evaluation.fit import fit_hybrid
from mrrec_edge.evaluation.metrics import (
    KS,
    bootstrap_ci,
    bootstrap_indices,
    group_means,
    metric_names,
    per_query_metrics,
    relative_gain,
)
from mrrec_edge.evaluation.rows import ROWS, Popularity, Row, static_memory
from mrrec_edge.files import sha256_file
from mrrec_edge.grounding import resolve_weights
from mrrec_edge.model import LanguageModel
from mrrec_edge.scenarios import load_examples, load_manifest, prepared_marker
from mrrec_edge.scenarios.prepare import CATALOGS
from mrrec_edge.workspace import Workspace

log = logging.getLogger(__name__)

#: Items each row ranks per query: the largest cut-off.
DEPTH = max(KS)
#: What the per-category numbers group by (a query counts in each genre of its target).
CATEGORY_BASIS = "target genres"
MODEL_ROLES = ("base", "sft", "rl")

#: ``progress(row, done, total)`` after each query.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class QueryResult:
    """What one row did for one query."""

    id: str
    ranking: list[int]
    seconds: float
    local_memory_tokens: int = 0
    global_memory_tokens: int = 0
    memory_calls: int = 0
    turns: int = 0
    malformed_turns: int = 0
    fallback: bool = False
    #: The ideal item profile the model wrote and the memory ids it cited: what grounding
    #: needs to rank again with other weights (the fit, the signal ablations).
    profile: str = ""
    cited_memory: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class EvalPlan:
    dataset: Path
    rows: Sequence[str]
    #: Model bundles by role (base, sft, rl); base defaults to the workspace's bundle.
    bundles: Mapping[str, Path]
    split: str = "test"
    limit: int | None = None
    seed: int = 0
    bootstrap: int = 1000
    catalog: str = "ml100k"
    resume_dir: Path | None = None
    #: AssistantConfig fields set for every assistant row, except where a row sets that field
    #: itself (an ablation keeps what it ablates): ``{"global_k": 1}`` tries leaner memory.
    assistant_options: Mapping[str, Any] = field(default_factory=dict)
    #: A grounding fit (``mrrec_edge.grounding.load_fit``) for the MR.Rec rows and the signal
    #: ablations; default: each bundle's own.
    grounding_fit: Mapping[str, Any] | None = None


def default_rows(bundles: Mapping[str, Path]) -> list[str]:
    """Every row whose model is available: mrrec-sft and mrrec-rl need their bundles. The signal
    ablations need a grounding fit with refits: they run when asked for (--rows)."""
    return [
        n
        for n in ROWS
        if (ROWS[n].model not in ("sft", "rl") or ROWS[n].model in bundles)
        and ROWS[n].kind != "signal-ablation"
    ]


def parse_rows(text: str) -> list[str]:
    """A comma-separated subset of the row names, in the table's order; InputError otherwise."""
    wanted = [r.strip() for r in text.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in ROWS]
    if unknown or not wanted:
        raise InputError(
            f"unknown row(s) {', '.join(unknown) or '(none given)'}; choose from: {', '.join(ROWS)}"
        )
    return [n for n in ROWS if n in wanted]


def model_role(row: Row, bundles: Mapping[str, Path]) -> str | None:
    """The bundle role a row runs on: ablations take the most trained model given."""
    if row.model != "ablation":
        return row.model
    return next(r for r in ("rl", "sft", "base") if r in bundles)


def check_prepared(home: Path, dataset: Path) -> dict[str, Any]:
    """The key of ``home``'s preparation; InputError unless it is a complete workspace prepared
    from ``dataset`` (checked before the workspace is opened, which would create files)."""
    marker = prepared_marker(home)
    if marker is None:
        raise InputError(
            f"{home}: not a prepared workspace; prepare it with `mrrec data build --prepare {home}`"
        )
    load_manifest(dataset)  # says what the folder is not
    if marker["key"].get("dataset_manifest_sha256") != sha256_file(dataset / MANIFEST):
        raise InputError(
            f"{home} was prepared from another dataset than {dataset}; "
            "prepare a workspace for this one"
        )
    return dict(marker["key"])


class Evaluation:
    """One evaluation run over an open prepared workspace."""

    def __init__(self, ws: Workspace, plan: EvalPlan) -> None:
        self.ws = ws
        self.plan = plan
        home = ws.settings.home
        self.workspace_key = check_prepared(home, plan.dataset)
        prepared = self.workspace_key.get("catalog", CATALOGS[0])
        if prepared != plan.catalog:
            raise InputError(
                f"--catalog {plan.catalog}: {home} holds the {prepared} catalog; prepare a "
                f"workspace with it: `mrrec data build --out {plan.dataset} --prepare NEW_HOME "
                f"--catalog {plan.catalog}`"
            )
        self.bundles = {"base": ws.settings.bundle_path, **plan.bundles}
        for name in plan.rows:
            role = model_role(ROWS[name], self.bundles)
            if role is not None and role not in self.bundles:
                raise InputError(f"row {name} needs the {role} model: pass --bundle-{role} DIR")
            if ROWS[name].kind == "signal-ablation" and f"mrrec-{role}" not in plan.rows:
                raise InputError(f"row {name} regrounds the answers of mrrec-{role}: add that row")
            if role is not None:
                Bundle.load(self.bundles[role])  # a missing or broken bundle fails before any row
        examples = load_examples(plan.dataset, plan.split)
        self.examples = examples[: plan.limit] if plan.limit is not None else examples
        if not self.examples:
            raise InputError(f"{plan.dataset}: no {plan.split} examples to evaluate")
        store = ws.store
        self.targets = [store.item(e["target_item"]).item_id for e in self.examples]
        self.categories = [store.item(e["target_item"]).categories for e in self.examples]
        self.catalog_size = int(store.stats()["items"])
        self._models: dict[Path, LanguageModel] = {}
        self._hybrid: dict[str, Any] | None = None
        #: Per-query results of the last :meth:`run`, by row.
        self.results: dict[str, list[QueryResult]] = {}
        self._answers: dict[str, dict[str, QueryResult]] = {}

    def row(self, name: str) -> Row:
        """Row ``name`` as this plan runs it: with the plan's assistant options."""
        row = ROWS[name]
        if row.kind != "assistant" or not self.plan.assistant_options:
            return row
        defaults = AssistantConfig()
        options = {
            key: value
            for key, value in self.plan.assistant_options.items()
            if getattr(row.config, key) == getattr(defaults, key)
        }
        return replace(row, config=replace(row.config, **options))

    # -- running rows -----------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> dict[str, Any]:
        """Runs every row of the plan and returns the JSON-ready results.

        Query by query, every row in turn: a long run that is stopped has its first queries
        done for all rows, so ``--limit`` over a resume folder gives a complete table early.
        """
        rows = [self.row(name) for name in self.plan.rows]
        done = {row.name: self._load_checkpoint(row) for row in rows}
        by_id = {e["id"]: e for e in self.examples}
        for row in rows:
            if row.kind == "assistant" and done[row.name]:
                # A model's answer does not depend on the grounding weights: kept answers are
                # grounded again with the weights in force, so a new fit costs no model turns.
                weights = self.grounding_weights(model_role(row, self.bundles) or "base")
                done[row.name] = {
                    i: replace(r, ranking=self._ground_answer(by_id[i], r, weights))
                    for i, r in done[row.name].items()
                }
        self._answers = done  # what the signal ablations reground
        rankers: dict[str, Callable[[dict[str, Any]], QueryResult]] = {}
        setup = dict.fromkeys(self.plan.rows, 0.0)
        total = len(self.examples)
        with ExitStack() as stack:
            keep = {
                row.name: stack.enter_context(_appender(self._checkpoint_path(row))) for row in rows
            }
            for row in rows:
                if progress:
                    progress(row.name, len(done[row.name]), total)
            for e in self.examples:
                for row in rows:
                    if e["id"] in done[row.name]:
                        continue
                    if row.name not in rankers:  # built on first use: a resumed row needs none
                        started = perf_counter()
                        rankers[row.name] = self._ranker(row)
                        setup[row.name] = perf_counter() - started
                    result = rankers[row.name](e)
                    done[row.name][e["id"]] = result
                    keep[row.name](result)
                    if progress:
                        progress(row.name, len(done[row.name]), total)
        self.results = {row.name: [done[row.name][e["id"]] for e in self.examples] for row in rows}
        return self.summarize(self.results, setup)

    def _ranker(self, row: Row) -> Callable[[dict[str, Any]], QueryResult]:
        store = self.ws.store
        if row.kind == "popularity":
            train = load_examples(self.plan.dataset, "train")
            model = Popularity(store, [e["user"] for e in train])

            def rank_fixed(e: dict[str, Any]) -> QueryResult:
                t = perf_counter()
                ranking = model.rank(e["user"], DEPTH)
                return QueryResult(e["id"], ranking, perf_counter() - t)

            return rank_fixed
        _ = self.ws.embedder  # loaded before the clock starts
        if row.kind in ("grounding", "hybrid"):
            weights = dict(row.weights) if row.kind == "grounding" else self.hybrid_weights()

            def rank_grounded(e: dict[str, Any]) -> QueryResult:
                t = perf_counter()
                items = self.ws.ground(
                    k=DEPTH,
                    user=e["user"],
                    request=e["query"],
                    weights=weights,
                    similarity=row.similarity,
                    distinct_titles=False,
                )
                return QueryResult(e["id"], [g.item.item_id for g in items], perf_counter() - t)

            return rank_grounded
        role = model_role(row, self.bundles)
        assert role is not None
        if row.kind == "signal-ablation":
            return self._signal_ablation(row, role)
        llm = self._model(self.bundles[role])
        assistant = Assistant(self.ws, llm, row.config, grounding=self.grounding_weights(role))

        def rank_assistant(e: dict[str, Any]) -> QueryResult:
            t = perf_counter()
            shown = static_memory(store, e["user"], row.static_memory) if row.static_memory else ()
            events = list(
                assistant.ask(
                    e["user"], e["query"], k=DEPTH, static_memory=shown, distinct_titles=False
                )
            )
            seconds = perf_counter() - t
            done = next(x for x in events if isinstance(x, Done))
            recs = next(x for x in events if isinstance(x, Recommendations))
            profile = next(x for x in events if isinstance(x, Profile))
            return QueryResult(
                e["id"],
                [r.item.item_id for r in recs.items],
                seconds,
                local_memory_tokens=done.stats["memory_tokens"],
                global_memory_tokens=global_tokens(llm, e["query"], done.global_memories),
                memory_calls=done.stats["memory_calls"],
                turns=done.stats["turns"],
                malformed_turns=done.stats["malformed_turns"],
                fallback=profile.fallback,
                profile=profile.profile,
                cited_memory=[m.id for m in done.used_memories],
            )

        return rank_assistant

    def _signal_ablation(self, row: Row, role: str) -> Callable[[dict[str, Any]], QueryResult]:
        """The model row's own answers (profile and citations, in this run or its resume
        folder), grounded again without ``row.dropped``, the other weights refit on train."""
        source = f"mrrec-{role}"
        weights = self.ablation_weights(role).get(row.dropped or "")
        if not weights:
            raise InputError(
                f"row {row.name}: the {role} model's grounding fit has no refit without "
                f"{row.dropped}; fit one with `mrrec eval --split train --rows {source} "
                "--fit-grounding FILE` and pass --grounding FILE"
            )

        def rank_without(e: dict[str, Any]) -> QueryResult:
            t = perf_counter()
            ranking = self._ground_answer(e, self._answers[source][e["id"]], weights)
            return QueryResult(e["id"], ranking, perf_counter() - t)

        return rank_without

    def _ground_answer(
        self, e: dict[str, Any], answer: QueryResult, weights: Mapping[str, float]
    ) -> list[int]:
        """A model's answer (its profile and citations) grounded as the assistant grounds it."""
        items = self.ws.ground(
            k=DEPTH,
            user=e["user"],
            profile=answer.profile,
            request=e["query"],
            cited_memory=answer.cited_memory,
            weights=weights,
            distinct_titles=False,
        )
        return [g.item.item_id for g in items]

    def ablation_weights(self, role: str) -> dict[str, dict[str, float]]:
        """The fit's refits without each signal (``ablations``), from the plan or the bundle."""
        fit = self.plan.grounding_fit or Bundle.load(self.bundles[role]).grounding or {}
        return dict(fit.get("ablations", {}))

    def grounding_weights(self, role: str) -> dict[str, float]:
        """The MR.Rec rows' weights: the plan's, else the config's or the bundle's fit."""
        if self.plan.grounding_fit is not None:
            return dict(self.plan.grounding_fit["weights"])
        fit = Bundle.load(self.bundles[role]).grounding
        return resolve_weights(self.ws.settings.grounding, fit).weights

    def hybrid_weights(self) -> dict[str, float]:
        """The ``hybrid`` row's weights, fit once per run on the train split (no model)."""
        if self._hybrid is None:
            self._hybrid = fit_hybrid(self.ws, self.plan.dataset, seed=self.plan.seed)
        return dict(self._hybrid["weights"])

    def _model(self, path: Path) -> LanguageModel:
        if path not in self._models:
            self._models[path] = Bundle.load(path).load_model()
        return self._models[path]

    # -- resume -----------------------------------------------------------------------------

    def _fingerprint(self, row: Row) -> str:
        """Everything a row's per-query results depend on."""
        role = model_role(row, self.bundles)
        key = {
            # What the row does, not how it is described.
            "row": [row.name, row.kind, asdict(row.config), row.static_memory, row.weights],
            "similarity": row.similarity,
            # How grounding normalises its signals: every fused ranking depends on it.
            "saturation": GROUNDING_SATURATION,
            # Not the MR.Rec rows' grounding weights: their answers are kept and grounded
            # again with the weights in force (see _load_checkpoint).
            "without": self.ablation_weights(role).get(row.dropped) if row.dropped else None,
            "model": sha256_file(self.bundles[role] / MANIFEST) if role else None,
            "workspace": self.workspace_key,
            "split": self.plan.split,
            "depth": DEPTH,
            "version": __version__,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()

    def _checkpoint_path(self, row: Row) -> Path | None:
        if self.plan.resume_dir is None:
            return None
        return self.plan.resume_dir / f"{row.name}.{self._fingerprint(row)[:16]}.jsonl"

    def _load_checkpoint(self, row: Row) -> dict[str, QueryResult]:
        path = self._checkpoint_path(row)
        if path is None or not path.is_file():
            return {}
        wanted = {e["id"] for e in self.examples}
        out = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                result = QueryResult(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue  # a line cut off by an interrupted run
            if result.id in wanted:
                out[result.id] = result
        log.info("row %s: %d results from %s", row.name, len(out), path)
        return out

    # -- the numbers ------------------------------------------------------------------------

    def summarize(
        self, results: Mapping[str, list[QueryResult]], setup: Mapping[str, float]
    ) -> dict[str, Any]:
        n = len(self.examples)
        indices = bootstrap_indices(n, self.plan.bootstrap, self.plan.seed)
        facets = [[e["facet"]["kind"]] for e in self.examples]
        values = {
            name: per_query_metrics([r.ranking for r in res], self.targets)
            for name, res in results.items()
        }
        rows = {}
        for name, res in results.items():
            v = values[name]
            local = np.array([r.local_memory_tokens for r in res], dtype=np.float64)
            glob = np.array([r.global_memory_tokens for r in res], dtype=np.float64)
            row = ROWS[name]
            role = model_role(row, self.bundles)
            rows[name] = {
                **{m: _round(float(v[m].mean())) for m in metric_names()},
                "memory_tokens": _round(float((local + glob).mean())),
                "seconds_per_query": _round(float(np.mean([r.seconds for r in res]))),
                "ci95": {m: _round_pair(bootstrap_ci(v[m], indices)) for m in metric_names()},
                "local_memory_tokens": _round(float(local.mean())),
                "global_memory_tokens": _round(float(glob.mean())),
                "memory_calls": _round(float(np.mean([r.memory_calls for r in res]))),
                "turns": _round(float(np.mean([r.turns for r in res]))),
                "malformed_turns": _round(float(np.mean([r.malformed_turns for r in res]))),
                "fallback_rate": _round(float(np.mean([r.fallback for r in res]))),
                "setup_seconds": _round(setup[name]),
                "model": role,
                "description": row.description,
                "per_category": _round_groups(group_means(v, self.categories)),
                "per_facet_kind": _round_groups(group_means(v, facets)),
            }
        return {
            "rows": rows,
            "queries": n,
            "catalog_size": self.catalog_size,
            "split": self.plan.split,
            "assistant_options": dict(self.plan.assistant_options),
            "seed": self.plan.seed,
            "bootstrap": self.plan.bootstrap,
            "category_basis": CATEGORY_BASIS,
            "dataset": str(self.plan.dataset),
            "home": str(self.ws.settings.home),
            "models": {
                role: str(self.bundles[role])
                for role in MODEL_ROLES
                if role in self.bundles
                and any(model_role(ROWS[r], self.bundles) == role for r in results)
            },
            "gains": gains(values, indices),
            "differences": differences(values, indices),
            "grounding": {
                **({"hybrid": self._hybrid} if self._hybrid is not None else {}),
                **{
                    role: self.grounding_weights(role)
                    for role in MODEL_ROLES
                    if any(model_role(ROWS[r], self.bundles) == role for r in results)
                },
            },
        }


def global_tokens(model: LanguageModel, query: str, entries: Sequence[Any]) -> int:
    """Tokens the global memory adds to the system prompt, measured on the prompt itself."""
    if not entries:
        return 0
    shown = Orchestrator(query, global_memory=list(entries)).messages()[0]["content"]
    bare = Orchestrator(query).messages()[0]["content"]
    return model.count_tokens(shown) - model.count_tokens(bare)


def gains(values: Mapping[str, Mapping[str, np.ndarray]], indices: np.ndarray) -> dict[str, Any]:
    """The paper's claim on this run: each MR.Rec model's relative NDCG@10 gain over the best
    baseline row (the rows that are neither MR.Rec nor one of its ablations)."""
    metric = "ndcg@10"
    baselines = [n for n in values if not ROWS[n].is_mrrec]
    models = [n for n in values if n.startswith("mrrec-")]
    if not baselines or not models:
        return {}
    best = max(baselines, key=lambda n: (float(values[n][metric].mean()), -baselines.index(n)))
    out: dict[str, Any] = {"metric": metric, "best_baseline": best}
    for name in models:
        gain, ci = relative_gain(values[name][metric], values[best][metric], indices)
        out[name] = {"gain": _round(gain), "ci95": _round_pair(ci)}
    return out


def differences(
    values: Mapping[str, Mapping[str, np.ndarray]], indices: np.ndarray
) -> dict[str, Any]:
    """Every other row's NDCG@10 minus the most trained MR.Rec row's, paired over the same
    queries, with its bootstrap interval: an interval that holds 0 is within noise."""
    metric = "ndcg@10"
    reference = next((f"mrrec-{r}" for r in ("rl", "sft", "base") if f"mrrec-{r}" in values), None)
    if reference is None:
        return {}
    out: dict[str, Any] = {"metric": metric, "reference": reference}
    for name in values:
        if name != reference:
            diff = values[name][metric] - values[reference][metric]
            out[name] = {
                "difference": _round(float(diff.mean())),
                "ci95": _round_pair(bootstrap_ci(diff, indices)),
            }
    return out


@contextmanager
def _appender(path: Path | None) -> Iterator[Callable[[QueryResult], None]]:
    """Appends each finished query's result to a row's resume file, if it has one."""
    if path is None:
        yield lambda result: None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as f:
        if f.tell() > 0:
            f.seek(f.tell() - 1)
            if f.read(1) != "\n":
                f.write("\n")  # after a line an interrupted run cut off

        def keep(result: QueryResult) -> None:
            f.write(json.dumps(asdict(result)) + "\n")
            f.flush()  # what an interrupted run finished is kept

        yield keep


def _round(x: float) -> float | None:
    return None if x != x else round(x, 6)  # NaN (no relative gain) is null in JSON


def _round_pair(pair: tuple[float, float] | None) -> list[float | None] | None:
    return None if pair is None else [_round(pair[0]), _round(pair[1])]


def _round_groups(groups: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
    return {g: {k: _round(v) for k, v in m.items()} for g, m in groups.items()}
