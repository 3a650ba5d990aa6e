"""ReDial (real dialogues): the assistant against dense retrieval of the conversation, on the
recommender turns of 600 real ReDial dialogues, over the ``ml25m-keywords`` pool.

For each recommender turn that suggests a catalog movie not mentioned before (a run of
consecutive recommender messages is one turn, as a run of seeker messages is):

- the seeker's earlier turns are the conversation: the last one is the query the assistant
  answers, each earlier one a :class:`~mrrec_edge.assistant.PriorTurn` whose ``shown`` are the
  movies the recommender mentioned after it, liked / disliked as the seeker's questionnaire says
  (``initiatorQuestions``, else ``respondentQuestions``);
- the seeker is a new user of the workspace (cold start: no MovieLens ratings), one per dialogue,
  whose history is the movies they said they liked among those mentioned before the turn, given
  as ``like`` feedback as the turns go by;
- the targets are the movies of the recommender turn matched to the catalog and not mentioned
  before; each (turn, target) pair is one sample, as in CRSLab and the published anchors.

Rows, all over the same turns and with the same exclusions (every movie mentioned before the
turn, matched or not, and what grounding leaves out as the user's history):

- ``assistant``: ``Assistant.ask`` on the last seeker turn with the earlier ones as ``context``;
- ``dense``: the seeker's turns so far joined, embedded and ranked by the request signal alone
  (``grounding.REQUEST_ONLY``);
- ``hybrid``: the same text with the user's CF and popularity, at the model-free weights of the
  fit in force (no LLM).

Recall@1/10/50 (and NDCG@10) with 95% intervals from a bootstrap over dialogues (a dialogue's
turns are not independent), and the paired differences to the assistant on the same resamples.

The workspace (``--home``, default ``<user cache>/mrrec-edge/redial``; never the repository):
``scenarios/`` is MovieLens 100K built as ``ml100k-scenarios-v2`` and ``base/`` its prepared
``ml25m-keywords`` workspace (the evaluation's 25M pool: MovieLens 100K's history for the
collaborative signals and global memory from its train users, the 13.8k-movie keyword catalog,
everything embedded), built once and reused. ReDial titles are matched to the pool by the
importer's own rule (``items-csv`` into a scratch home holding the pool: title variants with the
article folded, and the year). Each run works on a copy of ``base/`` and deletes it; the copy is
replaced before the dialogues' likes reach 1% of the interactions, so the item-item model is
never rebuilt with ReDial likes in it (checked: ``collab.bin`` is never rewritten).

    python benchmarks/redial.py [--limit N] [--dialogues train|valid|both] [--home DIR]
        [--bundle DIR] [--rows assistant,dense,hybrid] [--out FILE.json] [--resume DIR]
        [--max-minutes M] [--threads 2] [--seed 0]
    python benchmarks/redial.py --summarize FILE.json   # the numbers again from an --out file

Results and the honest reading: docs/RESULTS.md, "ReDial (real dialogues, issue 19)".
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

from mrrec_edge.assistant import (
    Assistant,
    AssistantConfig,
    Done,
    PriorTurn,
    Profile,
    Recommendations,
)
from mrrec_edge.bundle import MANIFEST, Bundle
from mrrec_edge.config import load_settings
from mrrec_edge.errors import NotFoundError
from mrrec_edge.evaluation.metrics import bootstrap_indices, group_means, per_query_metrics
from mrrec_edge.files import sha256_file, user_path
from mrrec_edge.grounding import MODEL_FREE, REQUEST_ONLY
from mrrec_edge.scenarios import build_scenarios, load_manifest, prepare_workspace
from mrrec_edge.scenarios.prepare import MARKER
from mrrec_edge.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REDIAL = SHARED / "redial"
POOL_CSV = SHARED / "movielens-25m-keywords" / "movies_w_keywords.csv"
ML100K = SHARED / "movielens-100k"
FILES = {"train": "redial-train-500.jsonl", "valid": "redial-valid-100.jsonl"}

#: Cut-offs of the table (Recall@1/10/50; NDCG at the same depths).
KS = (1, 10, 50)
DEPTH = max(KS)
ROWS = ("assistant", "dense", "hybrid")
#: Published anchors, ReDial's test split, seen items excluded (He et al., CIKM 2023).
ANCHORS = {"UniCRS": 0.180, "GPT-4 zero-shot": 0.201}
#: What the per-dialogue results depend on besides the model, settings and rows: bump it when
#: the protocol (turns, targets, exclusions, the users' histories) changes.
PROTOCOL = 1

_MENTION = re.compile(r"@(\d+)")
_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")

# -- the dialogues (pure) ----------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """A run of consecutive messages from one side: its text (``@id`` replaced by the movie's
    title) and the movies it mentions, in order of first mention."""

    seeker: bool
    text: str
    movies: tuple[str, ...]


@dataclass(frozen=True)
class Dialogue:
    id: str
    turns: tuple[Turn, ...]
    titles: dict[str, str]  # ReDial movie id -> "Title (Year)", whitespace tidied
    #: The seeker's opinion of each movie: True liked, False did not, absent: did not say.
    liked: dict[str, bool]


@dataclass(frozen=True)
class Case:
    """One evaluated recommender turn."""

    dialogue: str
    turn: int  # index in Dialogue.turns
    query: str  # the seeker's last turn
    #: Earlier seeker turns: (text, movies the recommender mentioned after it), oldest first.
    earlier: tuple[tuple[str, tuple[str, ...]], ...]
    mentioned: tuple[str, ...]  # every movie mentioned before the turn, by either side
    targets: tuple[str, ...]  # new movies of the turn in the catalog
    unmatched: tuple[str, ...]  # new movies of the turn not in the catalog
    liked: tuple[str, ...]  # in the catalog, mentioned before the turn, liked by the seeker
    disliked: tuple[str, ...]  # ... and not liked

    @property
    def id(self) -> str:
        return f"{self.dialogue}:{self.turn}"

    @property
    def conversation(self) -> str:
        """The seeker's turns so far, joined: what the ``dense`` row embeds."""
        return " ".join([*(text for text, _ in self.earlier), self.query])


def tidy(text: str) -> str:
    return " ".join(text.split())


def split_title(raw: str) -> tuple[str, int | None]:
    """ReDial's ``"Bridesmaids  (2011)"`` as ``("Bridesmaids", 2011)``; no year: None."""
    m = _TITLE_YEAR.match(tidy(raw))
    return (m.group(1), int(m.group(2))) if m else (tidy(raw), None)


def render(text: str, titles: Mapping[str, str]) -> str:
    """A message as a person reads it: ``@136983`` becomes ``Ghostbusters (1984)``."""
    return tidy(_MENTION.sub(lambda m: titles.get(m.group(1), m.group(0)), text))


def _answers(raw: Any) -> dict[str, dict[str, int]]:
    return raw if isinstance(raw, dict) else {}  # ReDial writes [] when a side did not answer


def parse_dialogue(raw: Mapping[str, Any]) -> Dialogue:
    titles = {k: tidy(v) for k, v in (raw.get("movieMentions") or {}).items() if v}
    seeker_id = raw["initiatorWorkerId"]
    turns: list[Turn] = []
    for message in raw["messages"]:
        seeker = message["senderWorkerId"] == seeker_id
        text = render(message["text"], titles)
        movies = tuple(dict.fromkeys(_MENTION.findall(message["text"])))
        if turns and turns[-1].seeker == seeker:
            last = turns[-1]
            movies = tuple(dict.fromkeys([*last.movies, *movies]))
            turns[-1] = Turn(seeker, f"{last.text} {text}".strip(), movies)
        else:
            turns.append(Turn(seeker, text, movies))
    # The seeker's own answer first, then what the recommender understood of it; 2: unsaid.
    liked: dict[str, bool] = {}
    for side in ("respondentQuestions", "initiatorQuestions"):
        for movie, a in _answers(raw.get(side)).items():
            if a.get("liked") in (0, 1):
                liked[movie] = a["liked"] == 1
    return Dialogue(str(raw["conversationId"]), tuple(turns), titles, liked)


def load_dialogues(which: str = "both", folder: Path = REDIAL) -> list[Dialogue]:
    """The dialogues of ``train`` (500), ``valid`` (100) or ``both``, in file order."""
    names = list(FILES.values()) if which == "both" else [FILES[which]]
    out = []
    for name in names:
        with open(folder / name, encoding="utf-8") as f:
            out.extend(parse_dialogue(json.loads(line)) for line in f if line.strip())
    return out


def cases(d: Dialogue, in_catalog: Callable[[str], bool]) -> tuple[list[Case], dict[str, int]]:
    """The evaluated turns of ``d`` and counts of those left out: recommender turns whose new
    movies are none in the catalog, or that come before the seeker said anything."""
    out: list[Case] = []
    skipped = {"no_catalog_target": 0, "no_seeker_turn": 0}
    mentioned: list[str] = []
    seeker_turns: list[tuple[str, list[str]]] = []  # text, then the movies shown after it
    for i, turn in enumerate(d.turns):
        new = [m for m in turn.movies if m not in mentioned]
        if not turn.seeker and new:
            targets = tuple(m for m in new if in_catalog(m))
            known = [m for m in mentioned if in_catalog(m)]
            if not seeker_turns:
                skipped["no_seeker_turn"] += 1
            elif not targets:
                skipped["no_catalog_target"] += 1
            else:
                out.append(
                    Case(
                        dialogue=d.id,
                        turn=i,
                        query=seeker_turns[-1][0],
                        earlier=tuple((t, tuple(s)) for t, s in seeker_turns[:-1]),
                        mentioned=tuple(mentioned),
                        targets=targets,
                        unmatched=tuple(m for m in new if not in_catalog(m)),
                        liked=tuple(m for m in known if d.liked.get(m) is True),
                        disliked=tuple(m for m in known if d.liked.get(m) is False),
                    )
                )
        if turn.seeker:
            seeker_turns.append((turn.text, []))
        elif seeker_turns:
            seeker_turns[-1][1].extend(m for m in turn.movies if m not in seeker_turns[-1][1])
        mentioned.extend(new)
    return out, skipped


# -- titles to the catalog -----------------------------------------------------------------------


def match_titles(titles: Mapping[str, str], pool_csv: Path = POOL_CSV) -> dict[str, str]:
    """ReDial movie id -> the pool item's alias (``ml:<movieId>``), for the titles the importer
    matches: the pool, then each distinct ReDial title as an ``items-csv`` row, go into a scratch
    home, where the importer lands a row on an existing item by title variant (the article
    folded: "The Matrix" is "Matrix, The") and year, as it lands any export on the catalog."""
    distinct = sorted({split_title(raw) for raw in titles.values()}, key=str)
    with tempfile.TemporaryDirectory(prefix="mrrec-redial-titles-") as tmp:
        rows = Path(tmp) / "redial-titles.csv"
        with open(rows, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["item_id", "title", "year"])
            for n, (title, year) in enumerate(distinct):
                if title:
                    w.writerow([f"redial:{n}", title, "" if year is None else year])
        landed: dict[tuple[str, int | None], str] = {}
        with Workspace.open(Path(tmp) / "home") as ws:
            ws.import_data("movielens-csv", pool_csv)
            ws.import_data("items-csv", rows)
            for n, title_year in enumerate(distinct):
                try:
                    alias = ws.store.item(f"redial:{n}").ext_id
                except NotFoundError:  # an empty title: never imported
                    continue
                if not alias.startswith("redial:"):  # landed on a pool item
                    landed[title_year] = alias
    return {m: landed[k] for m, raw in titles.items() if (k := split_title(raw)) in landed}


# -- the numbers (pure) ----------------------------------------------------------------------


def samples(results: Sequence[Mapping[str, Any]], row: str) -> tuple[list[list[int]], list[int]]:
    """One (ranking, target) per evaluated (turn, target) pair of ``results``."""
    rankings, targets = [], []
    for r in results:
        for t in r["targets"]:
            rankings.append(r["rankings"][row])
            targets.append(t)
    return rankings, targets


def dialogue_ci(
    values: np.ndarray, groups: np.ndarray, indices: np.ndarray, level: float = 0.95
) -> tuple[float, float] | None:
    """The percentile interval of the mean of per-sample ``values`` when whole dialogues are
    resampled (``indices``: rows of dialogue indices, from ``bootstrap_indices``)."""
    if indices.size == 0:
        return None
    n = int(indices.max(initial=0)) + 1
    n = max(n, int(groups.max(initial=0)) + 1)
    sums = np.bincount(groups, weights=values, minlength=n)
    counts = np.bincount(groups, minlength=n).astype(np.float64)
    means = sums[indices].sum(axis=1) / np.maximum(counts[indices].sum(axis=1), 1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


#: The two kinds of target: a movie the workspace's MovieLens 100K users rated (what the
#: collaborative signals and popularity can know), or one they never saw (most: 1998 and later).
KNOWN, NEW = "rated in MovieLens 100K", "not in MovieLens 100K"


def summarize(
    results: Sequence[Mapping[str, Any]],
    rows: Sequence[str],
    *,
    bootstrap: int,
    seed: int,
    known: Iterable[int] = (),
) -> dict[str, Any]:
    """Every row's metrics over the (turn, target) samples, with dialogue-bootstrap intervals,
    the paired differences to the assistant, and Recall by kind of target (``known``: the
    items with interactions in the workspace)."""
    known = set(known)
    kinds = [[KNOWN if t in known else NEW] for r in results for t in r["targets"]]
    dialogues = list(dict.fromkeys(r["dialogue"] for r in results))
    index = {d: i for i, d in enumerate(dialogues)}
    groups = np.array([index[r["dialogue"]] for r in results for _ in r["targets"]], dtype=np.int64)
    indices = bootstrap_indices(len(dialogues), bootstrap, seed)
    values = {row: per_query_metrics(*samples(results, row), ks=KS) for row in rows}
    names = [f"recall@{k}" for k in KS] + ["ndcg@10"]

    def r6(x: float) -> float:
        return round(x, 6)

    out: dict[str, Any] = {}
    for row in rows:
        v = values[row]
        seconds = [r["seconds"][row] for r in results]
        out[row] = {
            **{m: r6(float(v[m].mean())) for m in names},
            "ci95": {m: [r6(x) for x in dialogue_ci(v[m], groups, indices) or ()] for m in names},
            "seconds_per_turn": r6(float(np.mean(seconds))),
            "p50_seconds": r6(float(np.median(seconds))),
            "by_target": {
                g: {m: r6(x) if m != "queries" else int(x) for m, x in means.items()}
                for g, means in group_means(v, kinds).items()
            },
        }
    differences = {}
    if "assistant" in rows:
        for row in rows:
            if row == "assistant":
                continue
            differences[f"assistant - {row}"] = {
                m: {
                    "difference": r6(float((values["assistant"][m] - values[row][m]).mean())),
                    "ci95": [
                        r6(x)
                        for x in dialogue_ci(
                            values["assistant"][m] - values[row][m], groups, indices
                        )
                        or ()
                    ],
                }
                for m in names
            }
    return {
        "rows": out,
        "differences": differences,
        "samples": len(groups),
        "targets_rated_in_ml100k": r6(float(np.mean([k == [KNOWN] for k in kinds]))),
    }


def table(summary: Mapping[str, Any], rows: Sequence[str]) -> str:
    """The markdown table of RESULTS.md."""
    names = [f"recall@{k}" for k in KS]
    lines = [
        "| row | " + " | ".join(n.replace("recall", "Recall") for n in names) + " | s/turn |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for row in rows:
        r = summary["rows"][row]
        cells = [f"{r[n]:.3f} [{r['ci95'][n][0]:.3f}, {r['ci95'][n][1]:.3f}]" for n in names]
        lines.append(f"| `{row}` | " + " | ".join(cells) + f" | {r['seconds_per_turn']:.2f} |")
    for name, d in summary["differences"].items():
        cells = [
            f"{d[n]['difference']:+.3f} [{d[n]['ci95'][0]:+.3f}, {d[n]['ci95'][1]:+.3f}]"
            for n in names
        ]
        lines.append(f"| {name} (paired) | " + " | ".join(cells) + " | |")
    lines += ["", f"| row | Recall@10, target {KNOWN} | Recall@10, target {NEW} |", "|---|---|---|"]
    for row in rows:
        by = summary["rows"][row]["by_target"]
        cells = [
            f"{by[g]['recall@10']:.3f} (n={by[g]['queries']})" if g in by else "-"
            for g in (KNOWN, NEW)
        ]
        lines.append(f"| `{row}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- the workspace ---------------------------------------------------------------------------


def default_home() -> Path:
    return Path(platformdirs.user_cache_dir("mrrec-edge", appauthor=False)) / "redial"


def prepare_base(home: Path, bundle: Path) -> dict[str, Any]:
    """``home/base``: the evaluation's ``ml25m-keywords`` workspace over MovieLens 100K (built
    once; a complete one is kept), with a current collaborative index saved in it."""
    dataset, base = home / "scenarios", home / "base"
    started = time.perf_counter()
    try:
        load_manifest(dataset, verify=True)
    except Exception:
        print(f"building the MovieLens 100K scenarios in {dataset}", file=sys.stderr, flush=True)
        build_scenarios(ML100K, dataset, keywords_csv=POOL_CSV)

    def progress(stage: str, done: int, total: int | None) -> None:
        if done == 0 or done == total:
            print(f"preparing {base}: {stage} {done}/{total or '?'}", file=sys.stderr, flush=True)

    prepare_workspace(dataset, base, bundle=bundle, catalog="ml25m-keywords", progress=progress)
    with Workspace.open(base) as ws:
        collab = ws.open_collab()  # built and saved now, not by a run's first answer
    marker = json.loads((base / MARKER).read_text(encoding="utf-8"))
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "collab_rebuilt": collab,
        "prepared": {"stats": marker["stats"], "timings": marker["timings"]},
    }


def rated_items(base: Path) -> set[int]:
    """The items some user of ``base`` (MovieLens 100K's) interacted with."""
    with Workspace.open(base) as ws:
        return {i for u in ws.users() for i in ws.store.consumed_item_ids(u)}


class RunHome:
    """A copy of ``base`` that the dialogues' users are written to, replaced by a fresh copy
    before their likes could make the collaborative index rebuild (1% of the interactions)."""

    def __init__(self, home: Path, base: Path, open_ws: Callable[[Path], Any]) -> None:
        self.base = base
        self.path = home / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{id(self):x}"
        self.open_ws = open_ws
        self.ws: Any = None
        self.copies = 0
        self.copy_seconds = 0.0
        self.budget = 0
        self.written = 0
        self._collab: tuple[int, int] | None = None

    def reserve(self, likes: int) -> Any:
        """The workspace to write ``likes`` more likes to: a fresh copy when they would cross
        the budget."""
        if self.ws is None or self.written + likes > self.budget:
            self.refresh()
        self.written += likes
        return self.ws

    def refresh(self) -> None:
        self.close()
        t = time.perf_counter()
        shutil.copytree(self.base, self.path)
        self.copy_seconds += time.perf_counter() - t
        self.copies += 1
        self.ws = self.open_ws(self.path)
        interactions = int(self.ws.stats()["interactions"])
        self.budget = max(interactions // 100 - 1, 0)  # the core rebuilds at 1% (collab.rs)
        self.written = 0
        self._collab = self._collab_file()

    def _collab_file(self) -> tuple[int, int]:
        s = (self.path / "collab.bin").stat()
        return s.st_mtime_ns, s.st_size

    def close(self) -> None:
        if self.ws is not None:
            if self._collab_file() != self._collab:
                raise RuntimeError(
                    "the collaborative index was rebuilt with ReDial likes in it; lower the budget"
                )
            self.ws.close()
            self.ws = None
        shutil.rmtree(self.path, ignore_errors=True)


# -- the run -------------------------------------------------------------------------------------


def code_version() -> dict[str, Any]:
    """What the answers were computed with: the checkout's commit, how many files of the package
    and the core differed from it, and the digests of the assistant loop, the workspace and the
    built core."""
    from mrrec_edge import _core, assistant, workspace

    def git(*a: str) -> str:
        done = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "changed_files": len(git("status", "--porcelain", "--", "python", "rust").splitlines()),
        "assistant_py": sha256_file(Path(assistant.__file__))[:16],
        "workspace_py": sha256_file(Path(workspace.__file__))[:16],
        "core": sha256_file(Path(_core.__file__))[:16],
    }


def _key(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=user_path, default=default_home())
    parser.add_argument("--bundle", type=user_path, help="default: the current home's bundle")
    parser.add_argument("--dialogues", choices=("train", "valid", "both"), default="both")
    parser.add_argument("--limit", type=int, help="the first N dialogues (file order)")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument(
        "--out", type=user_path, help="write the summary and every turn here (JSON)"
    )
    parser.add_argument(
        "--resume", type=user_path, help="keep each finished dialogue here; a rerun skips it"
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        help="start no dialogue after this many minutes; the table covers the finished ones",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--summarize",
        type=user_path,
        metavar="FILE",
        help="only recompute the numbers of a finished run's --out file (no model, no answers)",
    )
    args = parser.parse_args()
    if args.summarize:
        saved = json.loads(args.summarize.read_text(encoding="utf-8"))
        report, results = saved["summary"], saved["turns"]
        return finish(report, results, args)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if not rows or set(rows) - set(ROWS):
        parser.error(f"--rows: choose from {', '.join(ROWS)}")
    home = args.home
    if home.resolve() == ROOT or ROOT in home.resolve().parents:
        parser.error(f"--home {home}: not inside the repository")

    bundle = args.bundle or load_settings().bundle_path
    Bundle.load(bundle)  # a missing or broken bundle fails before any work
    setup: dict[str, Any] = {}

    # The dialogues and their titles matched to the pool.
    dialogues = load_dialogues(args.dialogues)[: args.limit]
    titles = {m: t for d in dialogues for m, t in d.titles.items()}
    t = time.perf_counter()
    matched = match_titles(titles)
    setup["match_seconds"] = round(time.perf_counter() - t, 2)
    exact = _exact_matches(titles)
    mentions = [(d.id, m) for d in dialogues for m in d.titles]
    selected: list[tuple[Dialogue, list[Case]]] = []
    skipped: dict[str, int] = {"no_catalog_target": 0, "no_seeker_turn": 0}
    for d in dialogues:
        found, left = cases(d, lambda m: m in matched)
        for k, v in left.items():
            skipped[k] += v
        selected.append((d, found))
    all_cases = [c for _, found in selected for c in found]
    targets_total = sum(len(c.targets) + len(c.unmatched) for c in all_cases)
    matching = {
        "movies": len(titles),
        "movies_matched": len(matched),
        "movies_matched_exactly": exact,
        "mentions": len(mentions),
        "mentions_matched": sum(m in matched for _, m in mentions),
        "targets_of_evaluated_turns": targets_total,
        "targets_matched": sum(len(c.targets) for c in all_cases),
        "turns_left_out": skipped,
    }

    setup["base"] = prepare_base(home, bundle)
    model = Bundle.load(bundle).load_model(threads=args.threads)
    settings_base = load_settings(home / "base")
    config = dataclasses.replace(
        AssistantConfig.from_settings(settings_base), temperature=0.0, seed=args.seed
    )
    embedder_key = sha256_file(bundle / "embedder" / "embedder.json")
    code = code_version()
    key = _key(
        {
            "protocol": PROTOCOL,
            "code": [code["assistant_py"], code["workspace_py"], code["core"]],
            "model": sha256_file(bundle / MANIFEST),
            "embedder": embedder_key,
            "config": dataclasses.asdict(config),
            "context_api": True,  # every run since the assistant took context (PriorTurn)
            "rows": rows,
            "base": setup["base"]["prepared"]["stats"],
        }
    )[:16]
    done: dict[str, list[dict[str, Any]]] = {}
    resume_file = None
    if args.resume:
        args.resume.mkdir(parents=True, exist_ok=True)
        resume_file = args.resume / f"redial.{key}.jsonl"
        if resume_file.is_file():
            for line in resume_file.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # cut off by an interrupted run
                done[rec["dialogue"]] = rec["turns"]

    def open_ws(path: Path) -> Workspace:
        ws = Workspace(load_settings(path))
        _ = ws.embedder  # loaded before any clock starts
        return ws

    run = RunHome(home, home / "base", open_ws)
    assistant: Assistant | None = None
    hybrid: dict[str, float] = {}
    ids: dict[str, int] = {}
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    stopped_at = None
    try:
        for n, (d, found) in enumerate(selected, 1):
            if d.id in done:
                results.extend(done[d.id])
                continue
            if not found:
                continue
            if (
                args.max_minutes is not None
                and time.perf_counter() - started > 60 * args.max_minutes
            ):
                stopped_at = n - 1  # the dialogues before this one are complete
                break
            likes = {m for c in found for m in c.liked}
            ws = run.reserve(len(likes))
            if assistant is None or assistant.ws is not ws:
                assistant = Assistant(ws, model, config)
                hybrid = {s: w for s, w in ws.grounding_weights.weights.items() if s in MODEL_FREE}
                ids = {m: ws.store.item(alias).item_id for m, alias in matched.items()}
            user = f"redial-{d.id}"
            ws.add_user(user)
            given: set[str] = set()
            turns = []
            for c in found:
                t = time.perf_counter()
                for m in c.liked:
                    if m not in given:
                        ws.feedback(user, matched[m], "like")
                        given.add(m)
                like_s = time.perf_counter() - t
                turns.append(evaluate(c, ws, assistant, rows, ids, user, hybrid))
                turns[-1]["like_seconds"] = round(like_s, 4)
            results.extend(turns)
            if resume_file is not None:
                with open(resume_file, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"dialogue": d.id, "turns": turns}) + "\n")
            if n % 10 == 0:
                print(
                    f"{n}/{len(selected)} dialogues, {len(results)} turns, "
                    f"{time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        run.close()
    wall = time.perf_counter() - started
    if not results:
        print("no turn to evaluate", file=sys.stderr)
        return 1

    assistant_stats = {}
    if "assistant" in rows:
        a = [r["assistant"] for r in results]
        assistant_stats = {
            "fallback_rate": round(float(np.mean([x["fallback"] for x in a])), 4),
            "malformed_turn_rate": round(float(np.mean([x["malformed_turns"] > 0 for x in a])), 4),
            "memory_calls_mean": round(float(np.mean([x["memory_calls"] for x in a])), 3),
            "crashes": sum(x.get("error") is not None for x in a),
        }
    report = {
        "benchmark": "redial",
        "rows": rows,
        "dialogues": len({r["dialogue"] for r in results}),
        "dialogues_read": len(dialogues),
        # --max-minutes: the table covers the first dialogues only (those with turns to score).
        "stopped_after_dialogues": stopped_at,
        "turns": len(results),
        "anchors_recall@10": ANCHORS,
        "matching": matching,
        "context": "PriorTurn (Assistant.ask context=)",
        "assistant": assistant_stats,
        "assistant_config": dataclasses.asdict(config),
        "hybrid_weights": hybrid,
        "bundle": str(bundle),
        "code": code,
        "home": str(home),
        "catalog_items": setup["base"]["prepared"]["stats"]["items"],
        "setup": setup,
        "run_copies": run.copies,
        "copy_seconds": round(run.copy_seconds, 2),
        "wall_seconds": round(wall, 1),
        "resumed_dialogues": sum(d.id in done for d, _ in selected),
        "seed": args.seed,
        "bootstrap": args.bootstrap,
    }
    return finish(report, results, args)


def finish(report: dict[str, Any], results: list[dict[str, Any]], args: argparse.Namespace) -> int:
    """Adds the numbers to ``report``, prints the table and writes ``--out``."""
    rows = report["rows"] if isinstance(report["rows"], list) else list(report["rows"])
    known = rated_items(Path(report["home"]) / "base")
    summary = summarize(results, rows, bootstrap=args.bootstrap, seed=args.seed, known=known)
    report = {**report, "rows": rows, **summary, "bootstrap": args.bootstrap, "seed": args.seed}
    print(table(summary, rows))
    brief = {k: v for k, v in report.items() if k not in ("rows", "differences")}
    print(json.dumps(brief, indent=2))
    if args.out:
        args.out.write_text(json.dumps({"summary": report, "turns": results}), encoding="utf-8")
    return 0


def _exact_matches(titles: Mapping[str, str]) -> int:
    """ReDial titles equal to a pool title as written (lower-cased): README's count, the
    baseline of the importer's matching."""
    with open(POOL_CSV, encoding="utf-8") as f:
        pool = {tidy(r["title"]).lower() for r in csv.DictReader(f)}
    return sum(tidy(t).lower() in pool for t in titles.values())


def evaluate(
    c: Case,
    ws: Workspace,
    assistant: Assistant,
    rows: Iterable[str],
    ids: Mapping[str, int],
    user: str,
    hybrid: Mapping[str, float],
) -> dict[str, Any]:
    """Every row's top :data:`DEPTH` for one turn, without the movies mentioned before it."""
    excluded = {ids[m] for m in c.mentioned if m in ids}
    k = DEPTH + len(excluded)
    out: dict[str, Any] = {
        "dialogue": c.dialogue,
        "turn": c.turn,
        "targets": [ids[m] for m in c.targets],
        "excluded": len(excluded),
        "likes": len(c.liked),
        "earlier_turns": len(c.earlier),
        "rankings": {},
        "seconds": {},
    }

    def keep(row: str, ranked: Iterable[int], seconds: float) -> None:
        out["rankings"][row] = [i for i in ranked if i not in excluded][:DEPTH]
        out["seconds"][row] = round(seconds, 4)

    for row in rows:
        t = time.perf_counter()
        if row in ("dense", "hybrid"):
            weights = REQUEST_ONLY if row == "dense" else hybrid
            items = ws.ground(k=k, user=user, request=c.conversation, weights=weights)
            keep(row, (g.item.item_id for g in items), time.perf_counter() - t)
            continue
        context = [
            PriorTurn(
                query=text,
                shown=tuple(ids[m] for m in shown if m in ids),
                liked=tuple(ids[m] for m in shown if m in ids and m in c.liked),
                disliked=tuple(ids[m] for m in shown if m in ids and m in c.disliked),
            )
            for text, shown in c.earlier
        ]
        answer = assistant.ask(user, c.query, k=k, context=context)
        try:
            got = list(answer)
            error = None
        except Exception as exc:  # counted, never stops the run
            got, error = [], f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t
        recs = next((e for e in got if isinstance(e, Recommendations)), None)
        done = next((e for e in got if isinstance(e, Done)), None)
        profile = next((e for e in got if isinstance(e, Profile)), None)
        keep(row, (r.item.item_id for r in recs.items) if recs else (), seconds)
        out["assistant"] = {
            "profile": profile.profile if profile else "",
            "fallback": bool(profile.fallback) if profile else True,
            "malformed_turns": done.stats["malformed_turns"] if done else 0,
            "memory_calls": done.stats["memory_calls"] if done else 0,
            "error": error,
        }
    return out


if __name__ == "__main__":
    sys.exit(main())
