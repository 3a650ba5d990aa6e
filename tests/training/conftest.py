"""Fixtures for the training tests: a small real scenario dataset and its prepared workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_installed, unavailable
from tests.helpers import KEYWORDS_CSV, ML100K

#: The first users of MovieLens 100K: enough train examples for a few steps, fast to prepare.
USERS = 24


def _need_training_stack() -> None:
    require_installed("torch", "transformers", "peft", "gguf", "accelerate", "matplotlib")
    from mrrec_edge.errors import BundleError
    from mrrec_train.export import find_base_gguf

    try:
        find_base_gguf()
    except BundleError as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory, embedder_dir: Path) -> tuple[Path, Path]:
    """(dataset, prepared home) for the first 24 users, with the test embedder."""
    _need_training_stack()
    from mrrec_edge.scenarios import build_scenarios, prepare_workspace

    root = tmp_path_factory.mktemp("training-data")
    dataset = root / "dataset"
    build_scenarios(ML100K, dataset, keywords_csv=KEYWORDS_CSV, seed=0, users_limit=USERS)
    home = prepare_workspace(dataset, root / "home", bundle=embedder_dir.parent)
    return dataset, home


def data_overrides(small_data: tuple[Path, Path], embedder_dir: Path, output: Path) -> list[str]:
    """``--set`` arguments pointing a recipe at the fixture's data and a test output folder."""
    dataset, home = small_data
    values = {
        "data.dataset": dataset,
        "data.home": home,
        "data.bundle": embedder_dir.parent,
        "data.users_limit": USERS,
        "output": output,
    }
    out = []
    for key, value in values.items():
        out += ["--set", f"{key}={value}" if isinstance(value, int) else f'{key}="{value}"']
    return out
