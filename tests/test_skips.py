"""Every skip goes through ``unavailable`` in tests/conftest.py: the one rule that skips a test on
a developer's machine and fails it where everything must run (scripts/test, CI). A bare
``pytest.skip``, ``importorskip``, ``mark.skip(if)`` or ``xfail`` would pass CI silently."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
#: What skips a test (or lets it fail) without failing the run.
SKIPPING = {"skip", "skipif", "importorskip", "xfail", "SkipTest"}
#: The one function allowed to use them: (file relative to tests/, function).
RULE = ("conftest.py", "unavailable")


def skips(source: str, file: str) -> Iterator[str]:
    """``file:line: name`` for each use of a skipping name outside the rule."""
    tree = ast.parse(source)
    allowed: set[int] = set()
    if file == RULE[0]:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == RULE[1]:
                allowed |= {id(inner) for inner in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in allowed:
            continue
        if isinstance(node, ast.Attribute) and node.attr in SKIPPING:
            yield f"{file}:{node.lineno}: {node.attr}"
        elif isinstance(node, ast.Name) and node.id in SKIPPING:
            yield f"{file}:{node.lineno}: {node.id}"
        elif isinstance(node, ast.alias) and node.name.rsplit(".", 1)[-1] in SKIPPING:
            yield f"{file}:{node.lineno}: import {node.name}"


def test_the_checker_finds_every_kind_of_skip() -> None:
    source = """
import pytest
from pytest import importorskip
from unittest import SkipTest

pytestmark = pytest.mark.skipif(True, reason="no")
torch = pytest.importorskip("torch")

@pytest.mark.skip
def test_a():
    pytest.skip("no")

@pytest.mark.xfail
def test_b():
    raise SkipTest("no")

def unavailable(reason):
    pytest.skip(reason)
"""
    found = [line.split(": ", 1)[1] for line in skips(source, "tests/test_x.py")]
    assert found.count("skip") == 3 and found.count("importorskip") == 1
    assert {"skipif", "xfail", "SkipTest", "import importorskip", "import SkipTest"} <= set(found)
    # The rule itself may skip, in tests/conftest.py only.
    assert len(list(skips(source, RULE[0]))) == len(found) - 1


def test_no_test_skips_but_through_unavailable() -> None:
    found = [
        hit
        for path in sorted(TESTS.rglob("*.py"))
        for hit in skips(path.read_text(encoding="utf-8"), path.relative_to(TESTS).as_posix())
    ]
    assert found == [], "skip through tests.conftest.unavailable or require_module:\n" + "\n".join(
        found
    )
