"""The scenario data a run trains on: built with :mod:`mrrec_edge.scenarios`, then opened.

The dataset (queries, splits, history-only interactions) is built once into ``data.dataset`` and
reused while its manifest matches the recipe; the workspace (catalog, memory, global memory from
training users only) is prepared into ``data.home``. Both steps are the evaluation's own, so
training and evaluation see the same splits and the same memory.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mrrec_edge.files import sha256_file
from mrrec_edge.scenarios import (
    DATASET_VERSION,
    DEFAULT_TARGETS_PER_USER,
    build_scenarios,
    load_examples,
    load_manifest,
    prepare_workspace,
)
from mrrec_edge.workspace import Workspace
from mrrec_train.recipe import DataConfig

Example = dict[str, Any]


def _matches(dataset: Path, data: DataConfig) -> bool:
    try:
        manifest = load_manifest(dataset)
    except Exception:
        return False
    params = manifest.get("parameters", {})
    return (
        manifest.get("seed") == data.scenario_seed
        and params.get("users_limit") == (data.users_limit or None)
        and bool(params.get("keywords")) == bool(data.keywords)
        # What build_dataset builds: a dataset built with another K is not this recipe's.
        and params.get("targets_per_user") == DEFAULT_TARGETS_PER_USER
    )


def build_dataset(data: DataConfig) -> Path:
    """The scenario dataset of ``data``, built unless one with the same parameters is there.

    Call it on one process (rank 0) only: the build is atomic but not locked.
    """
    dataset = Path(data.dataset)
    if not _matches(dataset, data):
        build_scenarios(
            data.ml100k,
            dataset,
            keywords_csv=data.keywords or None,
            seed=data.scenario_seed,
            users_limit=data.users_limit or None,
        )
    return dataset


def prepare_home(data: DataConfig) -> Path:
    """The prepared workspace (locked inside: every rank may call it; one builds it)."""
    bundle = Path(data.bundle) if data.bundle else None
    return prepare_workspace(Path(data.dataset), Path(data.home), bundle=bundle)


def open_workspace(data: DataConfig) -> Workspace:
    return Workspace.open(Path(data.home))


def examples(data: DataConfig) -> list[Example]:
    """The split's examples, at most ``max_examples`` of them (the first, in user order; a user
    has up to ``targets_per_user`` examples, one per held-out target)."""
    rows = load_examples(data.dataset, data.split)
    return rows[: data.max_examples] if data.max_examples else rows


def data_version(data: DataConfig) -> dict[str, Any]:
    """What identifies the data a run saw (for run.json)."""
    manifest_path = Path(data.dataset) / "manifest.json"
    manifest = load_manifest(data.dataset)
    return {
        "dataset_version": manifest.get("dataset_version", DATASET_VERSION),
        "manifest_sha256": sha256_file(manifest_path),
        "seed": manifest.get("seed"),
        "users_limit": data.users_limit or None,
        "split": data.split,
        "max_examples": data.max_examples or None,
    }


def batch_for_step(
    items: Sequence[Any], step: int, batch: int, *, seed: int, rank: int = 0, world: int = 1
) -> list[Any]:
    """This rank's share of the global batch of optimizer step ``step`` (0-based).

    The order is a seeded shuffle per epoch, so a step's batch follows from its number alone:
    a resumed run sees the same batches as an uninterrupted one. ``batch`` must be a multiple
    of ``world``; rank ``r`` takes every ``world``-th item of the global batch.
    """
    if batch % world:
        raise ValueError(f"a batch of {batch} does not split over {world} processes")
    if not items:
        raise ValueError("no examples to train on")
    out = []
    for i in range(step * batch, (step + 1) * batch):
        epoch, pos = divmod(i, len(items))
        order = list(range(len(items)))
        random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
        out.append(items[order[pos]])
    return out[rank::world]
