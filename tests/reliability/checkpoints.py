"""The training run the checkpoint crash scenario kills, shared by the harness and its child.

A tiny real Llama (tests/training/tiny.py) with the project's own LoRA adapter, optimizer,
scheduler and run folder (``mrrec_train``: ``new_lora``, ``optimizer_for``, ``Stage``), trained
for :data:`STEPS` steps whose gradients are drawn from the seeded torch RNG. So the state after
step N is a function of N alone, whichever steps were resumed: the harness replays N steps in
its own process and compares what a resume loads (weights, optimizer and scheduler state, RNG,
metrics) with that, exactly. Building it takes milliseconds; importing torch and PEFT, a second.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Steps of one run; a checkpoint after each, as ``checkpoint_every = 1`` does.
STEPS = 12
#: Real recipe settings (the tiny recipe, cut to the stage this run stands for).
SETTINGS = [
    "seed=7",
    'model.device="cpu"',
    f"sft.steps={STEPS}",
    "sft.checkpoint_every=1",
    "sft.keep_checkpoints=2",
    "sft.warmup_steps=4",  # the scheduler's state changes every step, so a stale one shows
]
CURVE = "loss_curve.png"
#: What every checkpoint folder holds (one rank).
CHECKPOINT_FILES = (
    "adapter/adapter_config.json",
    "adapter/adapter_model.safetensors",
    "optimizer.pt",
    "state.json",
    "rng-rank0.pt",
    "complete",
)


@dataclass
class TinyRun:
    recipe: Any
    stage: Any  # None for the harness's replay, which writes nothing
    model: Any
    optimizer: Any
    scheduler: Any


def open_run(out: Path | None) -> TinyRun:
    """A fresh tiny policy, optimizer and scheduler, as ``load_policy`` and ``sft.train`` build
    them, and the stage writing into ``out``."""
    from mrrec_train import dist as dist_mod
    from mrrec_train.lora import new_lora
    from mrrec_train.recipe import load_recipe
    from mrrec_train.trainer import Stage, optimizer_for
    from tests.training.tiny import tiny_llama

    recipe = load_recipe("tiny", SETTINGS)
    d = dist_mod.setup(recipe.model.device)
    base = tiny_llama(0)
    dist_mod.seed_everything(recipe.seed)
    model = new_lora(base, recipe.lora)
    cfg = recipe.sft
    optimizer, scheduler = optimizer_for(
        model, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps
    )
    stage = Stage(recipe, "sft", out, d) if out is not None else None
    return TinyRun(recipe, stage, model, optimizer, scheduler)


def train_step(run: TinyRun, step: int) -> dict[str, Any]:
    """Optimizer step number ``step`` (from 1); returns its metrics row. Gradients come from
    the global torch RNG, so a checkpoint that restored the wrong RNG state diverges too."""
    import torch

    from mrrec_train.trainer import grad_norm_step

    for p in run.model.parameters():
        if p.requires_grad:
            p.grad = torch.randn_like(p)
    norm = grad_norm_step(run.model, run.optimizer, run.scheduler, run.recipe.sft.max_grad_norm)
    return {"step": step, "grad_norm": norm, "lr": run.scheduler.get_last_lr()[0]}


def train(run: TinyRun, say: Callable[[str], None]) -> None:
    """What ``sft.train`` does after building its model, acknowledging each durable write:
    resume, a checkpoint after every step, then the adapter and run.json."""
    from mrrec_train.lora import save_adapter

    stage = run.stage
    start = stage.resume(run.model, run.optimizer, run.scheduler)
    say(f"resumed {start}")
    for step in range(start + 1, STEPS + 1):
        stage.log(train_step(run, step))
        stage.save_checkpoint(step, run.model, run.optimizer, run.scheduler)
        say(f"ack {step}")
    save_adapter(run.model, stage.adapter_dir)
    say("adapter")
    stage.finish(data={"dataset_version": "none"}, plot_keys=["grad_norm", "lr"], png=CURVE)
    say("finished")


# -- the replay and the comparison ------------------------------------------------------------


@dataclass
class Snapshot:
    """Everything a checkpoint of step N must give back."""

    weights: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    rows: list[dict[str, Any]]


def _lora(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def snapshot(run: TinyRun, rows: list[dict[str, Any]]) -> Snapshot:
    import copy

    from mrrec_train import dist as dist_mod

    return Snapshot(
        _lora(run.model),
        copy.deepcopy(run.optimizer.state_dict()),
        copy.deepcopy(run.scheduler.state_dict()),
        dist_mod.rng_state(),
        list(rows),
    )


def reference() -> list[Snapshot]:
    """The state after 0, 1, ... :data:`STEPS` steps of an uninterrupted run (in this process;
    the global RNG is put back afterwards)."""
    from mrrec_train import dist as dist_mod

    saved = dist_mod.rng_state()
    try:
        run = open_run(None)
        rows: list[dict[str, Any]] = []
        out = [snapshot(run, rows)]
        for step in range(1, STEPS + 1):
            rows.append(json.loads(json.dumps(train_step(run, step))))  # as metrics.jsonl has it
            out.append(snapshot(run, rows))
        return out
    finally:
        dist_mod.set_rng_state(saved)


def _same(a: Any, b: Any) -> bool:
    """Exact equality through dicts, lists, tuples, tensors and arrays."""
    import numpy as np
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def differences(got: Snapshot, want: Snapshot) -> list[str]:
    """The parts of ``got`` that are not exactly ``want``."""
    parts = ("weights", "optimizer", "scheduler", "rng", "rows")
    return [p for p in parts if not _same(getattr(got, p), getattr(want, p))]


def adapter_holds(adapter: Path, want: Snapshot) -> bool:
    """Whether a saved PEFT adapter, loaded into a fresh tiny model, has ``want``'s weights."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    run = open_run(None)
    set_peft_model_state_dict(run.model, load_file(str(adapter / "adapter_model.safetensors")))
    return _same(_lora(run.model), want.weights)


def is_png(path: Path) -> bool:
    """A whole PNG: its signature first and its IEND chunk last."""
    if not path.is_file():
        return False
    data = path.read_bytes()
    return data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
