"""The long run of the reliability suites, whose figures docs/RELIABILITY.md reports.

    python scripts/reliability.py crash --kills 50 [--seed 1] [--scenario feedback ...]
    python scripts/reliability.py import-rss --rows 2000000
    python scripts/reliability.py soak --seconds 600 [--seed 1]

``crash`` SIGKILLs a child process at ``--kills`` seeded random points per scenario (import,
memory build, feedback, conversation saving, dense and collaborative index rebuilds, training
checkpoint saves) and checks each home or run folder afterwards
(see tests/reliability/crash.py). ``import-rss`` imports a small and a
large generated interactions file in fresh processes and prints each one's peak RSS: a streamed
import grows with the database's page cache, not with the file. ``soak`` runs the real TUI (real
bundle, headless) and `mrrec` import, feedback, memory build and read loops on one home for
``--seconds`` and checks what the user saw, every acknowledged write and the indexes (see
tests/reliability/soak.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability.crash import SCENARIOS, run  # noqa: E402
from tests.reliability.plans import write_interactions, write_items  # noqa: E402

#: Imports a file in this process and prints its peak RSS (ru_maxrss, KiB on Linux).
_IMPORT_CHILD = """
import resource, sys
from mrrec_edge._core import MemoryStore
store = MemoryStore(sys.argv[1])
store.import_file("interactions-csv", sys.argv[2])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def crash(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as work:
        started = time.monotonic()
        reports = run(Path(work), args.kills, args.seed, tuple(args.scenario or SCENARIOS))
        elapsed = time.monotonic() - started
    out = {"seed": args.seed, "seconds": round(elapsed, 1), "scenarios": []}
    for r in reports:
        out["scenarios"].append(r.as_dict())
        print(
            f"{r.scenario:13} kills {r.kills:4}  mid-run {r.mid_run:4}  "
            f"acknowledged writes {r.acknowledged:6}  failures {len(r.failures)}",
            file=sys.stderr,
        )
        for failure in r.failures[:20]:
            print(f"  {failure}", file=sys.stderr)
    print(json.dumps(out, indent=2))
    if any(r.failures for r in reports):
        sys.exit(1)


def import_rss(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as work:
        w = Path(work)
        items = write_items(w / "items.csv")
        rows = {"small": args.rows // 100, "large": args.rows}
        out = {}
        for name, n in rows.items():
            path = write_interactions(w / f"{name}.csv", n, users=max(10, n // 50))
            home = w / name
            subprocess.run(
                [sys.executable, "-m", "mrrec_edge", "import", "items-csv", str(items)],
                env={**os.environ, "MRREC_HOME": str(home)},
                check=True,
                capture_output=True,
            )
            started = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-c", _IMPORT_CHILD, str(home), str(path)],
                check=True,
                capture_output=True,
                text=True,
            )
            out[name] = {
                "rows": n,
                "file_mb": round(path.stat().st_size / 2**20, 1),
                "peak_rss_mb": round(int(proc.stdout.split()[-1]) / 1024, 1),
                "seconds": round(time.monotonic() - started, 1),
            }
            print(f"{name}: {out[name]}", file=sys.stderr)
    out["rss_ratio_large_to_small"] = round(
        out["large"]["peak_rss_mb"] / out["small"]["peak_rss_mb"], 2
    )
    out["file_ratio_large_to_small"] = round(out["large"]["file_mb"] / out["small"]["file_mb"], 1)
    print(json.dumps(out, indent=2))


def soak_run(args: argparse.Namespace) -> None:
    from tests.conftest import llm_bundle
    from tests.reliability import soak
    from tests.reliability.conftest import build_small_home

    with tempfile.TemporaryDirectory() as work:
        home = build_small_home(Path(work) / "home", llm_bundle())
        report = soak.run(home, args.seconds, args.seed)
    out = report.as_dict()
    print(json.dumps(out, indent=2))
    print(
        f"{out['seconds']} s, {out['operations_total']} operations, "
        f"user-visible errors {len(report.user_errors)}, lost writes {len(report.lost_writes)}, "
        f"stale index {len(report.stale_index)} in {report.index_checks} checks",
        file=sys.stderr,
    )
    if report.failures:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("crash", help="SIGKILL at random points, then check the home")
    p.add_argument("--kills", type=int, default=25, help="kill points per scenario")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scenario", action="append", choices=SCENARIOS)
    p.set_defaults(func=crash)
    p = sub.add_parser("import-rss", help="peak RSS of a small and a large import")
    p.add_argument("--rows", type=int, default=2_000_000, help="rows of the large file")
    p.set_defaults(func=import_rss)
    p = sub.add_parser("soak", help="the TUI and the CLI on one home at once, for minutes")
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=soak_run)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
