"""The crash-safety harness: SIGKILL a real process at seeded random moments while it imports,
builds memory, records feedback, saves a streaming conversation, rebuilds the dense indexes or
saves training checkpoints, then check the home (or the run folder).

After every kill:
- ``PRAGMA integrity_check`` (and FTS5's own check) finds nothing;
- every write the child acknowledged (a flushed stdout line after the call returned) is there,
  and at most the one write in flight beyond them;
- partial work is absent (an import is all or nothing) or resumable (``--resume`` finishes a
  memory build with exactly the result of an uninterrupted one);
- the dense indexes, loaded from whatever files the kill left, hold exactly the vectors SQLite
  holds, and a forced rebuild gives the same;
- a training run resumes from a whole checkpoint of an acknowledged step (or the one in flight)
  whose weights, optimizer, scheduler, RNG and metrics are exactly an uninterrupted run's.

The short version runs in pytest (tests/reliability/test_crash.py); scripts/reliability.py runs
it with more kills and prints the figures.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from mrrec_edge._core import GroundRequest, MemoryStore
from mrrec_edge.conversations import Answer
from mrrec_edge.workspace import parse_feedback
from tests.helpers import ROOT, run_cli
from tests.reliability.plans import (
    ITEMS,
    RECORDS_PER_USER,
    USERS,
    conversation_plan,
    embed_pending_deterministic,
    feedback_plan,
    vector_for,
    write_interactions,
    write_items,
)
from tests.reliability.sql import run_sql

SCENARIOS = (
    "import",
    "memory-build",
    "feedback",
    "conversation",
    "index-rebuild",
    "collab-rebuild",
    "training-checkpoint",
)
#: Interactions in the file the import scenario imports (long enough to be killed inside).
IMPORT_ROWS = 40_000


@dataclass
class Report:
    scenario: str
    kills: int = 0
    #: Kills that landed while the child was still running (the rest found it finished).
    mid_run: int = 0
    acknowledged: int = 0
    failures: list[str] = field(default_factory=list)
    #: Figures of one scenario's own (e.g. training runs finished across the kills).
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "kills": self.kills,
            "mid_run": self.mid_run,
            "acknowledged_writes": self.acknowledged,
            **self.extra,
            "failures": self.failures,
        }


def _env(home: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "MRREC_HOME": str(home), "PYTHONPATH": path}


def _cli(home: Path, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "mrrec_edge", *args]
    return subprocess.Popen(
        cmd, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def _worker(home: Path, kind: str, seed: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tests.reliability.crash_worker", kind, str(home), str(seed)]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _kill_after(proc: subprocess.Popen[str], delay: float) -> tuple[bool, list[str]]:
    """SIGKILLs ``proc`` after ``delay`` seconds; (was it still running, its stdout lines)."""
    time.sleep(delay)
    running = proc.poll() is None
    if running:
        proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    return running, out.splitlines()


def _read_line(proc: subprocess.Popen[str]) -> str:
    """One line of a child's stdout ("" at its end), read a byte at a time: a buffered readline
    would take the lines after it too, which ``communicate`` (reading the pipe itself) then
    never returns."""
    assert proc.stdout is not None
    data = b""
    while not data.endswith(b"\n") and (byte := os.read(proc.stdout.fileno(), 1)):
        data += byte
    return data.decode()


def _kill_worker(report: Report, home: Path, kind: str, seed: int, delay: float) -> list[str]:
    """Runs a crash_worker child in ``home``, SIGKILLs it ``delay`` seconds after it is ready
    and counts the kill in ``report``; returns the lines it acknowledged."""
    proc = _worker(home, kind, seed)
    if _read_line(proc).strip() != "ready":
        raise AssertionError(f"the {kind} child did not start: {proc.communicate()[1]}")
    running, lines = _kill_after(proc, delay)
    report.kills += 1
    report.mid_run += running
    return lines


def _fresh(base: Path, work: Path, name: str) -> Path:
    home = work / name
    if home.exists():
        shutil.rmtree(home)
    shutil.copytree(base, home)
    return home


# -- checks ---------------------------------------------------------------------------------


def integrity_problems(home: Path) -> list[str]:
    """SQLite's and FTS5's own checks (the store's open recovers the WAL first), and foreign
    keys, from a process of its own (see tests/reliability/sql.py)."""
    with MemoryStore(home) as store:
        problems = list(store.check_integrity())
    del store
    check, keys = run_sql(home, "PRAGMA integrity_check", "PRAGMA foreign_key_check")
    problems += [r[0] for r in check if r[0] != "ok"]
    problems += [f"foreign key: {r}" for r in keys]
    return problems


#: Memory ids of a user that dense search must find: those with a vector of their own, and
#: behavior entries that borrow their item's.
_VECTORS_SQL = (
    "SELECT m.id FROM memory m JOIN users u ON u.id = m.user_id "
    "LEFT JOIN items i ON i.id = m.item_id WHERE u.ext_id = ? AND "
    "(m.embedding IS NOT NULL OR (m.vector_from_item = 1 AND i.embedding IS NOT NULL))"
)


def index_problems(home: Path, users: list[str], *, rebuild: bool = True) -> list[str]:
    """The dense indexes as loaded after the crash (and, with ``rebuild``, as rebuilt from
    SQLite) match SQLite exactly."""
    problems: list[str] = []
    results = run_sql(
        home,
        "SELECT count(*) FROM items WHERE embedding IS NOT NULL",
        *[(_VECTORS_SQL, [u]) for u in users],
    )
    items = results[0][0][0]
    expected = {u: {r[0] for r in rows} for u, rows in zip(users, results[1:], strict=True)}
    with MemoryStore(home) as store:
        users = [u for u in users if u in set(store.users())]
        stages = ["loaded", "rebuilt"] if rebuild else ["loaded"]
        for stage in stages:
            report = store.open_indexes() if stage == "loaded" else store.rebuild_indexes()
            if report["catalog_vectors"] != items:
                problems.append(f"{stage}: {report['catalog_vectors']} catalog vectors, {items}")
            for user in users:
                if problem := dense_mismatch(store, user, expected[user], f"{stage} index"):
                    problems.append(problem)
    return problems


def dense_mismatch(store: MemoryStore, user: str, expected: set[int], label: str) -> str | None:
    """What the dense index of ``store`` gets wrong about ``user``'s vectors (None: nothing).
    One user's memory is scored exactly, so the hits are every vector it has."""
    hits = store.search_memory(vector=vector_for(user), user=user, k=1000, mode="dense")
    got = {h.entry.id for h in hits}
    if got == expected:
        return None
    return f"{label} of {user}: missing {expected - got}, extra {got - expected}"


def _derived_memory(home: Path) -> dict[str, list[tuple[str, str]]]:
    """Every user's patterns and profile as (tier, text), sorted."""
    with MemoryStore(home) as store:
        return {
            user: sorted(
                (e.tier, e.text)
                for e in store.list_memory(user=user, tiers=["pattern", "profile"], limit=10_000)
            )
            for user in store.users()
        }


# -- the homes the scenarios start from -----------------------------------------------------


@dataclass
class Bases:
    work: Path
    items_only: Path  # the catalog, embedded; no interactions
    imported: Path  # + interactions and their behavior memory, embedded; no patterns/profiles
    built: Path  # + memory built and embedded, indexes saved
    chat: Path  # an empty home with one user
    interactions: Path  # the file the import scenario imports


def prepare(work: Path, import_rows: int = IMPORT_ROWS) -> Bases:
    """The starting homes; ``import_rows`` sizes the file the import scenario is killed in."""
    work.mkdir(parents=True, exist_ok=True)
    items = write_items(work / "items.csv")
    small = write_interactions(work / "small.csv", USERS * RECORDS_PER_USER)
    big = write_interactions(work / "big.csv", import_rows, users=3000, seed=11)

    items_only = work / "base-items"
    with MemoryStore(items_only) as store:
        store.import_file("items-csv", str(items))
        embed_pending_deterministic(store)
        store.open_indexes()
    imported = work / "base-imported"
    shutil.copytree(items_only, imported)
    with MemoryStore(imported) as store:
        store.import_file("interactions-csv", str(small))
        embed_pending_deterministic(store)
        store.open_indexes()
    built = work / "base-built"
    shutil.copytree(imported, built)
    run_cli(built, "memory", "build", "--all", "--no-embed")
    with MemoryStore(built) as store:
        embed_pending_deterministic(store)
        store.open_indexes()
    chat = work / "base-chat"
    with MemoryStore(chat) as store:
        store.add_user("chat")
    return Bases(work, items_only, imported, built, chat, big)


def _timed(home: Path, *args: str) -> float:
    started = time.monotonic()
    proc = _cli(home, *args)
    proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"mrrec {' '.join(args)} failed ({proc.returncode})")
    return time.monotonic() - started


# -- scenarios ------------------------------------------------------------------------------


def crash_import(bases: Bases, kills: int, rng: random.Random) -> Report:
    report = Report("import")
    args = ("import", "interactions-csv", str(bases.interactions), "--no-embed")
    reference = _fresh(bases.items_only, bases.work, "import-reference")
    full = _timed(reference, *args)
    with MemoryStore(reference) as store:
        complete = store.stats()["interactions"]
    for k in range(kills):
        home = _fresh(bases.items_only, bases.work, "import")
        running, _ = _kill_after(_cli(home, *args), rng.uniform(0, full * 1.1))
        report.kills += 1
        report.mid_run += running
        problems = integrity_problems(home)
        with MemoryStore(home) as store:
            stats = store.stats()
        if stats["interactions"] not in (0, complete):
            problems.append(f"partial import: {stats['interactions']} of {complete} rows")
        if not running and stats["interactions"] != complete:
            problems.append("the import exited before the kill but is not all there")
        if stats["memory"]["behavior"] != stats["interactions"]:
            problems.append(f"{stats['interactions']} records but {stats['memory']} memory")
        problems += index_problems(home, ["u0", "u1"], rebuild=k == kills - 1)
        # Resumable: running the import again gives the complete result.
        run_cli(home, *args)
        with MemoryStore(home) as store:
            if store.stats()["interactions"] != complete:
                problems.append("the import run again after the kill is incomplete")
        report.failures += [f"kill {k}: {p}" for p in problems]
    return report


def crash_memory_build(bases: Bases, kills: int, rng: random.Random) -> Report:
    report = Report("memory-build")
    args = ("memory", "build", "--all", "--no-embed")
    reference_home = _fresh(bases.imported, bases.work, "build-reference")
    full = _timed(reference_home, *args)
    reference = _derived_memory(reference_home)
    for k in range(kills):
        home = _fresh(bases.imported, bases.work, "build")
        running, _ = _kill_after(_cli(home, *args), rng.uniform(0, full * 1.1))
        report.kills += 1
        report.mid_run += running
        problems = integrity_problems(home)
        # A user with a profile is complete (the profile is written last): --resume skips them.
        derived = _derived_memory(home)
        if not running and derived != reference:
            problems.append("the build exited before the kill but its memory is incomplete")
        for user, memory in derived.items():
            if any(tier == "profile" for tier, _ in memory) and memory != reference[user]:
                problems.append(f"user {user} has a profile but differs from a clean build")
        problems += index_problems(home, ["u0", "u1", "u2"], rebuild=k == kills - 1)
        run_cli(home, *args, "--resume")
        if _derived_memory(home) != reference:
            problems.append("--resume after the kill does not give the clean build's memory")
        report.failures += [f"kill {k}: {p}" for p in problems]
    return report


def crash_feedback(bases: Bases, kills: int, rng: random.Random, span: float = 2.0) -> Report:
    report = Report("feedback")
    for k in range(kills):
        home = _fresh(bases.built, bases.work, "feedback")
        seed = rng.randrange(1 << 30)
        lines = _kill_worker(report, home, "feedback", seed, rng.uniform(0, span))
        acks = [line.split() for line in lines if line.startswith("ack ")]
        report.acknowledged += len(acks)
        plan = list(enumerate(islice(feedback_plan(home, seed), len(acks) + 1)))
        problems = integrity_problems(home)
        rows, sources = run_sql(
            home,
            "SELECT r.id, u.ext_id, i.ext_id, r.source, r.timestamp FROM records r "
            "JOIN users u ON u.id = r.user_id JOIN items i ON i.id = r.item_id "
            "WHERE r.source LIKE 'feedback:%' ORDER BY r.timestamp",
            "SELECT source_ids FROM memory WHERE tier = 0",
        )
        behavior = {source for (ids,) in sources for source in json.loads(ids)}
        by_id = {r[0]: r for r in rows}
        for (n, record_id), (_, (user, item, action)) in zip(
            [(int(a[1]), int(a[2])) for a in acks], plan, strict=False
        ):
            row = by_id.get(record_id)
            kind = parse_feedback(action)[2]
            if row is None or tuple(row[1:4]) != (user, item, f"feedback:{kind}"):
                problems.append(f"acknowledged feedback {n} ({user} {item} {action}) is lost")
            elif record_id not in behavior:
                problems.append(f"acknowledged feedback {n} has no behavior memory")
        if len(rows) not in (len(acks), len(acks) + 1):
            problems.append(f"{len(rows)} feedback records for {len(acks)} acknowledged")
        touched = sorted({user for _, (user, _, _) in plan})
        problems += index_problems(home, touched, rebuild=k == kills - 1)
        report.failures += [f"kill {k}: {p}" for p in problems]
    return report


def crash_conversation(bases: Bases, kills: int, rng: random.Random, span: float = 1.5) -> Report:
    report = Report("conversation")
    for k in range(kills):
        home = _fresh(bases.chat, bases.work, "chat")
        seed = rng.randrange(1 << 30)
        lines = _kill_worker(report, home, "conversation", seed, rng.uniform(0, span))
        report.acknowledged += len(lines)
        problems = integrity_problems(home)
        plan = dict(enumerate(islice(conversation_plan(seed), len(lines) + 1)))
        acked_msgs: set[int] = set()
        tokens: dict[int, tuple[int, int]] = {}  # message -> (exchange, pieces acknowledged)
        ended: set[int] = set()
        for line in lines:
            kind, n, *rest = line.split()
            if kind == "msg":
                acked_msgs.add(int(rest[1]))
            elif kind == "tok":
                tokens[int(rest[0])] = (int(n), int(rest[1]))
            elif kind == "end":
                ended.add(int(rest[0]))
        with MemoryStore(home) as store:
            saved = {
                m["id"]: m
                for c in store.list_conversations("chat", limit=100_000)
                for m in store.conversation_messages(c["id"])
            }
        for mid in acked_msgs - saved.keys():
            problems.append(f"acknowledged message {mid} is lost")
        for mid, (n, count) in tokens.items():
            if mid not in saved:
                continue
            pieces = plan[n][1]
            payload = json.loads(saved[mid]["payload"])
            text = payload["turns"][0]["text"] if payload.get("turns") else ""
            allowed = {"".join(pieces[:count]), "".join(pieces[: count + 1])}
            if mid in ended:
                allowed = {"".join(pieces)}
            if text not in allowed:
                problems.append(f"message {mid}: saved {len(text)} chars, acknowledged {count}")
            status = Answer.from_payload(payload, content=saved[mid]["content"]).status
            if mid not in ended and status != "interrupted" and count < len(pieces):
                problems.append(f"message {mid} cut off by the kill reads as {status!r}")
        report.failures += [f"kill {k}: {p}" for p in problems]
    return report


def _first_ack_after(home: Path, kind: str) -> float:
    """Seconds from a worker's "ready" to its first acknowledged write (sizes the kill window)."""
    proc = _worker(home, kind, 0)
    assert proc.stdout is not None
    proc.stdout.readline()
    started = time.monotonic()
    proc.stdout.readline()
    took = time.monotonic() - started
    proc.kill()
    proc.communicate(timeout=120)
    return took


def _crash_rebuilds(
    bases: Bases,
    kills: int,
    rng: random.Random,
    worker: str,
    check: Callable[[Path, int], list[str]],
) -> Report:
    """Kills a ``worker`` child that rebuilds and saves a derived index in a loop, anywhere in
    about three rebuilds (most kills land inside one, some between saves); ``check(home, k)``
    lists what is wrong with the home after kill ``k``, besides the database's own checks."""
    report = Report(f"{worker}-rebuild")
    span = 3 * _first_ack_after(_fresh(bases.built, bases.work, worker), worker)
    for k in range(kills):
        home = _fresh(bases.built, bases.work, worker)
        lines = _kill_worker(report, home, worker, 0, rng.uniform(0, span))
        report.acknowledged += len(lines)
        problems = integrity_problems(home) + check(home, k)
        report.failures += [f"kill {k}: {p}" for p in problems]
    return report


def crash_index_rebuild(bases: Bases, kills: int, rng: random.Random) -> Report:
    """Kills while the index files are rebuilt and saved: whatever files are left, the indexes
    loaded next time hold exactly SQLite's vectors (a torn or stale file is rebuilt)."""
    return _crash_rebuilds(
        bases,
        kills,
        rng,
        "index",
        lambda home, k: index_problems(home, ["u0", "u1", "u2"], rebuild=k == kills - 1),
    )


def collab_problems(home: Path, users: list[str]) -> list[str]:
    """The collaborative index as reopened after the crash (the saved file, or rebuilt when it
    is missing, torn or stale) ranks every user's collaborative scores exactly as one rebuilt
    from SQLite now."""
    problems: list[str] = []
    with MemoryStore(home) as store:
        rankings = []
        for stage in ("reopened", "rebuilt"):
            if stage == "reopened":
                store.open_collab()
            else:
                store.rebuild_collab()
            rankings.append(
                {
                    u: [
                        (g.item.item_id, round(g.item.score, 4))
                        for g in store.ground_fused(
                            GroundRequest(user=u), weights={"user_cf": 1.0}, k=20
                        )
                    ]
                    for u in users
                }
            )
    for user in users:
        if rankings[0][user] != rankings[1][user]:
            problems.append(f"collaborative scores of {user} differ from a rebuild")
    return problems


def crash_collab_rebuild(bases: Bases, kills: int, rng: random.Random) -> Report:
    """Kills while the collaborative index is rebuilt and saved: what reopens scores as a fresh
    rebuild does (a temporary file left behind is never read)."""
    return _crash_rebuilds(
        bases, kills, rng, "collab", lambda home, _k: collab_problems(home, ["u0", "u1", "u2"])
    )


def _line_times(home: Path, kind: str) -> dict[str, float]:
    """Seconds from a worker's "ready" to each line it prints, run uninterrupted, and to its
    exit (``"exit"``)."""
    proc = _worker(home, kind, 0)
    _read_line(proc)
    started = time.monotonic()
    times: dict[str, float] = {}
    while line := _read_line(proc):
        times.setdefault(line.strip(), time.monotonic() - started)
    _, err = proc.communicate(timeout=120)
    times["exit"] = time.monotonic() - started
    if proc.returncode != 0:
        raise AssertionError(f"the {kind} child failed: {err}")
    return times


def training_problems(
    out: Path, want: list[Any], low: int, high: int
) -> tuple[Any, int | None, list[str]]:
    """Checks a training run folder as a kill left it; (the run resumed in this process, the
    step it resumed from, what is wrong).

    Every ``checkpoints/step-N`` is whole (a killed save's temporary folder is dot-named, out of
    the resume's sight); the real ``Stage.resume`` loads step ``low`` to ``high``, and the
    weights, optimizer and scheduler state, RNG and metrics it gives back are exactly those of
    an uninterrupted run (``want``, tests/reliability/checkpoints.py) after that step; a final
    adapter, run.json and curve, where present, are whole and the last step's.
    """
    from tests.reliability import checkpoints as ck

    problems: list[str] = []
    folder = out / "checkpoints"
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        if entry.name.startswith("."):
            continue
        missing = [f for f in ck.CHECKPOINT_FILES if not (entry / f).is_file()]
        if missing:
            problems.append(f"{entry.name} is torn: no {', '.join(missing)}")
        elif json.loads((entry / "state.json").read_text())["step"] != int(entry.name[5:]):
            problems.append(f"{entry.name} holds another step's state.json")
    run = ck.open_run(out)
    try:
        step = run.stage.resume(run.model, run.optimizer, run.scheduler)
    except Exception as exc:  # a torn file the resume trusted
        return run, None, [*problems, f"resume failed: {exc!r}"]
    if not low <= step <= high:
        problems.append(f"resumed from step {step}; acknowledged {low}, at most {high} expected")
    got = ck.snapshot(run, run.stage.read_metrics())
    if wrong := ck.differences(got, want[step]):
        problems.append(f"step {step}: {', '.join(wrong)} differ from an uninterrupted run's")
    adapter = out / "adapter"
    if adapter.exists():
        try:
            json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
            if not ck.adapter_holds(adapter, want[-1]):
                problems.append("the final adapter is not the last step's")
        except Exception as exc:  # a file missing or cut short
            problems.append(f"the final adapter is torn: {exc!r}")
    summary = out / "run.json"
    if summary.exists():
        try:
            steps = json.loads(summary.read_text(encoding="utf-8"))["metrics"]["steps"]
        except (ValueError, KeyError) as exc:
            problems.append(f"run.json is torn: {exc!r}")
        else:
            if steps != ck.STEPS or step != ck.STEPS:
                problems.append(f"run.json of step {steps}, resumed from {step}")
            if not adapter.is_dir():
                problems.append("run.json is there before the adapter")
            if not ck.is_png(out / ck.CURVE):
                problems.append("run.json is there but the curve is torn or missing")
    return run, step, problems


def crash_training_checkpoint(bases: Bases, kills: int, rng: random.Random) -> Report:
    """Kills a child training a tiny real model with the project's trainer, a checkpoint after
    every step, then its adapter and run.json; after each kill this process resumes the run
    (:func:`training_problems`), trains one more step and saves again, and the next child
    resumes from that. A run that reached run.json is counted and a fresh one started."""
    from mrrec_train import dist as dist_mod
    from tests.reliability import checkpoints as ck

    report = Report("training-checkpoint")
    saved_rng = dist_mod.rng_state()  # resuming here sets this process's RNG
    try:
        want = ck.reference()
        # The kill window: an uninterrupted child's, less the steps a resumed one skips.
        calibration = bases.work / "training-uninterrupted"
        shutil.rmtree(calibration, ignore_errors=True)
        times = _line_times(calibration, "training")
        # To "finished", not to the exit: tearing torch down takes the child seconds.
        total, per_step = times["finished"], times[f"ack {ck.STEPS}"] / ck.STEPS
        out: Path | None = None
        durable = finished = 0
        for k in range(kills):
            if out is None:
                out, durable = bases.work / "training", 0
                shutil.rmtree(out, ignore_errors=True)
            before = report.mid_run
            # A resumed child has fewer steps left: the window shrinks with them.
            span = 1.1 * (total - per_step * durable)
            lines = _kill_worker(report, out, "training", 0, rng.uniform(0, span))
            running = report.mid_run > before
            acked = [int(line.split()[1]) for line in lines if line.startswith("ack ")]
            report.acknowledged += len(acked)
            problems = []
            resumed = [int(line.split()[1]) for line in lines if line.startswith("resumed ")]
            if resumed and resumed[0] != durable:
                problems.append(f"the child resumed from {resumed[0]}, not {durable}")
            if not running and "finished" not in lines:
                problems.append("the child exited before the kill without finishing")
            low = max(acked, default=durable)
            high = min(ck.STEPS, low + 1) if running else ck.STEPS
            if "adapter" in lines:
                low = ck.STEPS
            run, step, found = training_problems(out, want, low, high)
            problems += found
            if "adapter" in lines and not (out / "adapter").is_dir():
                problems.append("the acknowledged adapter is lost")
            if "finished" in lines and not (out / "run.json").is_file():
                problems.append("the acknowledged run.json is lost")
            if problems or step is None or (out / "run.json").is_file():
                finished += not problems and step is not None
                out = None  # a fresh run next
            elif step < ck.STEPS:
                # Resumed, the run trains and saves again; the next child resumes from that.
                run.stage.log(ck.train_step(run, step + 1))
                run.stage.save_checkpoint(step + 1, run.model, run.optimizer, run.scheduler)
                latest = run.stage.latest_checkpoint()
                if latest is None or latest.name != f"step-{step + 1}":
                    problems.append(f"saved step {step + 1} after resuming; latest is {latest}")
                left = [p.name for p in (out / "checkpoints").iterdir() if p.name[0] == "."]
                if left:
                    problems.append(f"a save after resuming left {left}")
                durable = step + 1
            else:
                durable = step
            report.failures += [f"kill {k}: {p}" for p in problems]
        report.extra["completed_runs"] = finished
    finally:
        dist_mod.set_rng_state(saved_rng)
    return report


RUNNERS: dict[str, Callable[[Bases, int, random.Random], Report]] = {
    "import": crash_import,
    "memory-build": crash_memory_build,
    "feedback": crash_feedback,
    "conversation": crash_conversation,
    "index-rebuild": crash_index_rebuild,
    "collab-rebuild": crash_collab_rebuild,
    "training-checkpoint": crash_training_checkpoint,
}


def run(work: Path, kills: int, seed: int, scenarios: tuple[str, ...] = SCENARIOS) -> list[Report]:
    """``kills`` kill points per scenario, their delays drawn from ``seed``."""
    bases = prepare(work)
    rng = random.Random(seed)
    return [RUNNERS[name](bases, kills, rng) for name in scenarios]


__all__ = ["ITEMS", "SCENARIOS", "Report", "index_problems", "integrity_problems", "run"]
