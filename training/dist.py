"""One process or many: the same code runs alone, on one GPU, or under ``torchrun`` (DDP).

``torchrun --nproc_per_node N`` sets RANK, WORLD_SIZE and LOCAL_RANK; we then join a process
group (nccl on CUDA, gloo on CPU). Rank 0 writes checkpoints, metrics and the run summary; every
rank rolls out and trains on its own shard of each step's queries.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.distributed:
            torch_dist.barrier()

    def gather(self, value: object) -> list[object]:
        """``value`` of every rank, in rank order, on every rank (small, picklable values)."""
        if not self.distributed:
            return [value]
        out: list[object] = [None] * self.world
        torch_dist.all_gather_object(out, value)
        return out

    def mean(self, values: Mapping[str, float]) -> dict[str, float]:
        """Each value averaged over the ranks (every rank holds an equal share of the batch)."""
        keys = sorted(values)
        if not self.distributed or not keys:
            return {k: float(values[k]) for k in keys}
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        if self.device.type == "cuda":
            t = t.to(self.device)
        torch_dist.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist(), strict=True)}


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("the recipe asks for CUDA, and torch sees no GPU")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(name)


def setup(device: str = "auto", threads: int = 0) -> Dist:
    """Joins the torchrun process group when there is one, and picks this rank's device."""
    if threads:
        torch.set_num_threads(threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, local_rank=local_rank, device=dev)


def teardown() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, object]:
    state: dict[str, object] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, object]) -> None:
    random.setstate(state["python"])  # type: ignore[arg-type]
    np.random.set_state(state["numpy"])  # type: ignore[arg-type]
    torch.set_rng_state(state["torch"])  # type: ignore[arg-type]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])  # type: ignore[arg-type]
