"""The device package stands alone: mrrec_edge never imports the workstation package mrrec_train
(training/, a distribution of its own), and the device wheel holds none of it.

``mrrec bundle build`` reaches the workstation only through the ``mrrec_edge.bundle_builders``
entry point; without it, building fails with one line saying how to install it, and everything
else (Bundle.load, bundle info, the assistant, the TUI, the evaluation) works as before.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mrrec_edge.bundle import BUILDERS_GROUP, load_builder
from tests.conftest import require_module
from tests.helpers import ROOT

PACKAGE = ROOT / "python" / "mrrec_edge"
WORKSTATION = ROOT / "training"
#: Top-level names the workstation package was or is imported by.
FORBIDDEN = ("mrrec_train", "training")
#: Calls that import a module named by a string.
IMPORTING_CALLS = {"import_module", "__import__", "find_spec"}

#: Run first in a child interpreter: any import of the workstation package fails, and is recorded.
BLOCKER = f"""
import importlib.abc, sys

BLOCKED = {FORBIDDEN!r}
attempts = []


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Block())
"""


def run_blocked(code: str, *args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``code`` after :data:`BLOCKER` in ``python -I`` (no checkout on sys.path), in ``cwd``."""
    env = {**os.environ, "MRREC_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-I", "-c", BLOCKER + code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def forbidden_imports(source: str, file: str) -> list[str]:
    """``file:line: module`` for each import of the workstation package in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if called in IMPORTING_CALLS and isinstance(first, ast.Constant):
                names = [str(first.value)]
        found += [f"{file}:{node.lineno}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    return found


def test_the_import_checker_finds_every_kind_of_import() -> None:
    source = """
import training.export
import mrrec_train
from mrrec_train.bundle_writer import build_bundle
from training import export
importlib.import_module("mrrec_train.export")
importlib.util.find_spec("training")
__import__("mrrec_train")
import mrrec_edge.training_free
from . import training
manifest = {"training": None}
"""
    found = [line.split(": ", 1)[1] for line in forbidden_imports(source, "x.py")]
    assert found == [
        "training.export",
        "mrrec_train",
        "mrrec_train.bundle_writer",
        "training",
        "mrrec_train.export",
        "training",
        "mrrec_train",
    ]


def test_no_device_module_imports_the_workstation_package() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30
    found = []
    for path in files:
        found += forbidden_imports(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert found == []


def test_device_runs_a_real_bundle_without_the_workstation_package(
    llm_bundle_dir: Path, tmp_path: Path
) -> None:
    """Every device module imports, and a real bundle loads, validates (every sha256), embeds,
    opens its LLM and shows in `mrrec bundle info`, with mrrec_train unimportable."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'[bundle]\npath = "{llm_bundle_dir}"\n', encoding="utf-8")
    code = """
import importlib, json, pkgutil
from pathlib import Path

import mrrec_edge
from mrrec_edge.bundle import Bundle

bundle_path, report = Path(sys.argv[1]), Path(sys.argv[2])
modules = [
    m.name
    for m in pkgutil.walk_packages(mrrec_edge.__path__, "mrrec_edge.")
    if not m.name.endswith("__main__")  # they run the CLI / app
]
for name in modules:
    importlib.import_module(name)
bundle = Bundle.load(bundle_path, verify=True)
vector = bundle.load_embedder(threads=1).embed_one("a funny movie")
model = bundle.load_model(threads=1)
from mrrec_edge.cli import main

main(["bundle", "info", "--json"])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
report.write_text(json.dumps({
    "modules": modules,
    "files": len(bundle.files),
    "dimensions": int(vector.shape[0]),
    "model_type": model.model_type,
    "attempts": attempts,
    "loaded": loaded,
}))
"""
    report = tmp_path / "report.json"
    proc = run_blocked(code, str(llm_bundle_dir), str(report), home=home, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["path"] == str(llm_bundle_dir) and info["precision"] == "int8"
    result = json.loads(report.read_text(encoding="utf-8"))
    assert result["attempts"] == [] and result["loaded"] == []
    assert {
        "mrrec_edge.bundle",
        "mrrec_edge.cli.bundle",
        "mrrec_edge.cli.ask",
        "mrrec_edge.cli.eval",
        "mrrec_edge.evaluation.harness",
        "mrrec_edge.tui.app",
        "mrrec_edge.tui.screens.onboarding",
    } <= set(result["modules"])
    assert result["files"] == len(info["files"]) and result["dimensions"] == 384
    assert result["model_type"] == "llama"


@pytest.mark.parametrize("command", ["build", "embedder"])
@pytest.mark.parametrize("case", ["not installed", "unimportable"])
def test_building_without_the_workstation_package_says_how_to_install_it(
    tmp_path: Path, command: str, case: str
) -> None:
    """No builder registered (a device install), or its entry point left behind by a removed
    package: one error line naming the install command, nothing written."""
    home = tmp_path / "home"
    home.mkdir()
    unregister = "import mrrec_edge.bundle as b; b.BUILDERS_GROUP = 'mrrec_edge.no_builders'\n"
    code = (unregister if case == "not installed" else "") + (
        f"from mrrec_edge.cli import main\nmain(['bundle', {command!r}])\n"
    )
    proc = run_blocked(code, home=home, cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and "pip install ./training" in lines[0]
    if case == "not installed":
        assert "workstation package mrrec-edge-train, which is not installed" in lines[0]
    else:
        assert "mrrec_train.bundle_writer cannot be imported" in lines[0]
    assert sorted(p.name for p in home.iterdir()) in ([], ["logs"])  # no bundle, no temp folder


def test_the_registered_builder_is_the_workstation_bundle_writer() -> None:
    require_module("mrrec_train")
    builder = load_builder()
    assert builder.__name__ == "mrrec_train.bundle_writer"
    for name in ("build_bundle", "build_embedder", "default_adapter"):
        assert callable(getattr(builder, name))


def test_the_device_wheel_holds_no_workstation_package() -> None:
    """Checked on the build configuration (building the wheel compiles the Rust extension)."""
    device = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    maturin = device["tool"]["maturin"]
    # maturin packs python-source's packages (and `include` paths): only mrrec_edge is there.
    assert maturin["python-source"] == "python"
    packages = sorted(p.name for p in (ROOT / "python").iterdir() if p.is_dir())
    assert [p for p in packages if not p.startswith((".", "__"))] == ["mrrec_edge"]
    assert not any("training" in str(i) for i in maturin.get("include", []))
    # Neither torch nor the workstation package is among the device's requirements.
    project = device["project"]
    extras = project["optional-dependencies"].values()
    requirements = [*project["dependencies"], *(r for extra in extras for r in extra)]
    assert not [r for r in requirements if r.startswith(("torch", "mrrec-edge-train"))]

    workstation = tomllib.loads((WORKSTATION / "pyproject.toml").read_text(encoding="utf-8"))
    dist = workstation["project"]
    assert dist["name"] == "mrrec-edge-train" and dist["version"] == project["version"]
    assert f"mrrec-edge=={project['version']}" in dist["dependencies"]
    setuptools = workstation["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"mrrec_train": "."}
    # The plugin: a module of this folder, with the calls the device CLI makes.
    (value,) = dist["entry-points"][BUILDERS_GROUP].values()
    module = value.removeprefix("mrrec_train.")
    tree = ast.parse((WORKSTATION / f"{module}.py").read_text(encoding="utf-8"))
    exported = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "__all__"
    )
    assert isinstance(exported, ast.List)
    names = {e.value for e in exported.elts if isinstance(e, ast.Constant)}
    assert names == {"build_bundle", "build_embedder", "default_adapter"}
