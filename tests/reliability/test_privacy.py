"""Privacy: the whole flow (import, memory build, ask with the real model, feedback, index
rebuild) runs with every network connection refused and recorded, and forgetting removes the
text from every file of the home, not only from query results."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import ROOT

SECRET = "SECRETREVIEWZX"

#: Loaded into every child through PYTHONPATH: an audit hook that refuses and records any
#: socket use that could leave the machine (DNS lookups included; AF_UNIX is local).
SITECUSTOMIZE = textwrap.dedent(
    """
    import os, socket, sys

    _LOG = os.environ["MRREC_NETWORK_LOG"]
    _EVENTS = {"socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
               "socket.gethostbyname", "socket.gethostbyaddr", "urllib.Request"}

    def _refuse(event, args):
        if event not in _EVENTS:
            return
        if event.startswith("socket.") and hasattr(args[0], "family"):
            if args[0].family == socket.AF_UNIX:
                return
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {event} {args!r}\\n")
        raise OSError(f"network blocked by the privacy test: {event}")

    sys.addaudithook(_refuse)
    """
)


@pytest.fixture()
def offline(tmp_path: Path) -> dict[str, str]:
    """The environment of a child process that cannot reach the network."""
    hook = tmp_path / "netblock"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    log = tmp_path / "network.log"
    log.touch()
    path = os.pathsep.join([str(hook), str(ROOT), os.environ.get("PYTHONPATH", "")])
    # An empty home directory: whatever a library writes outside $MRREC_HOME shows up there.
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    return {
        **os.environ,
        "PYTHONPATH": path,
        "MRREC_NETWORK_LOG": str(log),
        "COLUMNS": "200",
        "HOME": str(user_home),
        "XDG_CACHE_HOME": str(user_home / ".cache"),
    }


def _strace() -> list[str]:
    """strace -f, to see connect() from native code too (onnxruntime, SQLite, Rust), if it
    runs here; [] where ptrace is not allowed."""
    if shutil.which("strace") is None:
        return []
    # seccomp-bpf: only the traced syscalls stop the child, so tracing costs little.
    cmd = ["strace", "-f", "--seccomp-bpf", "-qq", "-e", "trace=connect,sendto,sendmsg"]
    probe = subprocess.run([*cmd, "-o", os.devnull, "true"], capture_output=True)
    return cmd if not probe.returncode else []


def run_offline(env: dict[str, str], trace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    strace = _strace()
    cmd = [*strace, "-o", str(trace)] if strace else []
    cmd += [sys.executable, "-m", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stderr[-3000:]}"
    return proc


def remote_connects(trace: Path) -> list[str]:
    """connect/sendto lines of the strace log that name an IP address family."""
    if not trace.exists():
        return []
    lines = trace.read_text(errors="replace").splitlines()
    return [line for line in lines if re.search(r"AF_INET6?\b", line)]


def test_the_block_catches_a_connection(offline: dict[str, str], tmp_path: Path) -> None:
    """The positive control: a child that tries to connect is refused and recorded."""
    code = textwrap.dedent(
        """
        import socket
        for attempt in (lambda: socket.getaddrinfo("example.org", 443),
                        lambda: socket.socket().connect(("127.0.0.1", 9))):
            try:
                attempt()
            except OSError as exc:
                assert "network blocked" in str(exc), exc
            else:
                raise SystemExit("not blocked")
        """
    )
    subprocess.run([sys.executable, "-c", code], env=offline, check=True, timeout=60)
    log = Path(offline["MRREC_NETWORK_LOG"]).read_text()
    assert "socket.getaddrinfo ('example.org'" in log and "socket.connect" in log


def test_full_flow_makes_no_network_connection(
    home: Path, offline: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ratings = data / "mine.jsonl"
    rows = [
        {"user_id": "pat", "item_id": f"g{i}", "rating": 5, "text": f"{SECRET} note {i}"}
        for i in range(0, 30, 2)
    ]
    ratings.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    env = {**offline, "MRREC_HOME": str(home)}
    steps = [
        ("import", "interactions-jsonl", str(ratings)),
        ("memory", "build", "--user", "pat"),
        ("ask", "--user", "pat", "a funny movie for tonight", "--json"),
        ("feedback", "--user", "pat", "g1", "like"),
        ("index", "rebuild"),
    ]
    for n, step in enumerate(steps):
        trace = tmp_path / f"step{n}.strace"
        proc = run_offline(env, trace, "mrrec_edge", *step)
        if step[0] == "ask":
            assert len(json.loads(proc.stdout)["recommendations"]) == 10
        assert remote_connects(trace) == [], f"{step}: {remote_connects(trace)}"
    assert Path(offline["MRREC_NETWORK_LOG"]).read_text() == ""
    # Nothing was written outside $MRREC_HOME (onnxruntime's telemetry keeps a device id in
    # ~/.cache unless disabled).
    assert [p.name for p in Path(env["HOME"]).rglob("*")] == []

    # Forget everything pat's reviews are in; then no file of the home holds the text.
    code = textwrap.dedent(
        f"""
        from mrrec_edge.workspace import Workspace
        with Workspace.open() as ws:
            ids = [e.id for e in ws.store.list_memory(user="pat", limit=10_000)
                   if "{SECRET}" in e.text]
            assert ids, "the reviews are in memory before forgetting"
            print(ws.forget(ids)["forgotten"])
            assert not ws.search_memory("{SECRET}", user="pat", mode="lexical")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.strip()) == len(rows)
    assert Path(offline["MRREC_NETWORK_LOG"]).read_text() == ""
    holding = [
        str(p.relative_to(home))
        for p in home.rglob("*")
        if p.is_file() and SECRET.encode() in p.read_bytes()
    ]
    assert holding == []


def test_onnxruntime_telemetry_is_off_once_the_package_is_imported() -> None:
    """What the strace check caught, pinned where strace cannot run: official onnxruntime
    builds upload telemetry unless this is set before they load."""
    code = "import mrrec_edge, os; print(os.environ['ORT_DISABLE_TELEMETRY'])"
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "1", out.stderr
