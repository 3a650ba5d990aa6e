"""The shared file helpers (mrrec_edge.files), and that each has one home: every folder written
whole goes through atomic_dir, every small file rewritten whole through atomic_file, every
checksum through sha256_file."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

from mrrec_edge.files import atomic_dir, atomic_file, folder_records, sha256_file
from tests.helpers import ROOT

#: Helper -> the one module that defines it.
HOMES = {
    "sha256_file": "python/mrrec_edge/files.py",
    "file_record": "python/mrrec_edge/files.py",
    "folder_records": "python/mrrec_edge/files.py",
    "replace_dir": "python/mrrec_edge/files.py",
    "atomic_dir": "python/mrrec_edge/files.py",
    "atomic_file": "python/mrrec_edge/files.py",
    "fsync_path": "python/mrrec_edge/files.py",
    "fsync_tree": "python/mrrec_edge/files.py",
    "user_path": "python/mrrec_edge/files.py",
    "available_cpus": "python/mrrec_edge/host.py",
}


def test_atomic_dir_swaps_in_a_complete_folder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("previous")
    with atomic_dir(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.tmp-")
        assert tmp.stat().st_mode & 0o777 == 0o755
        (tmp / "new.txt").write_text("next")
        assert (target / "old.txt").is_file()  # untouched until the block ends
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in target.iterdir()] == ["new.txt"]


def test_atomic_dir_leaves_nothing_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "out"
    with pytest.raises(RuntimeError, match="half way"), atomic_dir(target) as tmp:
        (tmp / "part.txt").write_text("half")
        raise RuntimeError("half way")
    assert list((tmp_path / "deep").iterdir()) == []


def test_atomic_dir_keep_existing_drops_the_late_copy(tmp_path: Path) -> None:
    target = tmp_path / "cache"
    with atomic_dir(target, keep_existing=True) as tmp:
        (tmp / "mine.txt").write_text("mine")
        target.mkdir()  # another process finished first
        (target / "theirs.txt").write_text("theirs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    with atomic_dir(tmp_path / "fresh", keep_existing=True) as tmp:
        (tmp / "mine.txt").write_text("mine")
    assert (tmp_path / "fresh" / "mine.txt").read_text() == "mine"


def test_atomic_dir_durable_swaps_in_the_same_way(tmp_path: Path) -> None:
    target = tmp_path / "step-3"
    with atomic_dir(target, durable=True) as tmp:
        (tmp / "adapter").mkdir()
        (tmp / "adapter" / "weights").write_bytes(b"w")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-3"]
    assert (target / "adapter" / "weights").read_bytes() == b"w"


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    target.write_text("old")
    with atomic_file(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".run.json.tmp-")
        tmp.write_text("new")
        assert target.read_text() == "old"  # untouched until the block ends
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o644
    with pytest.raises(RuntimeError, match="half way"), atomic_file(target) as tmp:
        tmp.write_text("ne")
        raise RuntimeError("half way")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_checksums(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # more than one read chunk
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(data)
    (tmp_path / "a.txt").write_text("a")
    assert sha256_file(tmp_path / "sub" / "b.bin") == hashlib.sha256(data).hexdigest()
    records = folder_records(tmp_path, "x/")
    assert list(records) == ["x/a.txt", "x/sub/b.bin"]
    assert records["x/sub/b.bin"] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_each_shared_helper_has_one_home() -> None:
    """No module defines its own copy of a shared helper, or builds a temp folder by hand."""
    found = []
    for path in sorted([*(ROOT / "python").rglob("*.py"), *(ROOT / "training").glob("*.py")]):
        name = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and HOMES.get(node.name, name) != name:
                found.append(f"{name}:{node.lineno}: defines {node.name}")
            elif (
                isinstance(node, ast.Attribute)
                and node.attr in ("mkdtemp", "mkstemp", "fsync")
                and name != HOMES["atomic_dir"]
            ):
                found.append(f"{name}:{node.lineno}: {node.attr} (use atomic_dir or atomic_file)")
    assert found == []
