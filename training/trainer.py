"""What SFT and GRPO share: the policy model, the optimizer, micro-batched backward passes under
DDP, checkpoints that resume exactly, per-step metrics and the run folder.

A stage writes into its run folder::

    adapter/            the trained LoRA adapter (PEFT: adapter_config.json + safetensors)
    run.json            recipe, seed, data version, world size, timings, metrics summary
    metrics.jsonl       one line per optimizer step
    *_curve.png         the curves of metrics.jsonl
    checkpoints/step-N/ adapter, optimizer, scheduler, step and every rank's RNG state
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from mrrec_train import dist as dist_mod
from mrrec_train.base import base_checkpoint, load_base
from mrrec_train.dist import Dist
from mrrec_train.lora import new_lora
from mrrec_train.policy import ScoredTurn, turn_logprobs
from mrrec_train.recipe import Recipe, add_recipe_args, load_recipe

AUTOCAST = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DONE_MARKER = "complete"


def autocast_dtype(recipe: Recipe, device: torch.device) -> torch.dtype | None:
    name = recipe.model.autocast
    if name not in AUTOCAST:
        raise ValueError(f"model.autocast must be one of {', '.join(AUTOCAST)}, not {name!r}")
    if name == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast needs CUDA; use bf16 on CPU")
    return AUTOCAST[name]


def load_policy(recipe: Recipe, d: Dist, *, merge: Path | None = None) -> tuple[Any, Any]:
    """(tokenizer, PEFT model on this rank's device) with a fresh LoRA adapter.

    ``merge`` (a PEFT folder) is merged into the base weights first. Rank 0 converts the base
    model if it is not cached yet; every rank seeds the same way, so the fresh adapters agree.
    """
    cache = Path(recipe.model.cache) if recipe.model.cache else None
    if d.main:
        base_checkpoint(cache)
    d.barrier()
    tokenizer, model = load_base(cache=cache)
    if merge is not None:
        from mrrec_train.lora import merge_adapter

        model = merge_adapter(model, merge)
    dist_mod.seed_everything(recipe.seed)
    model = new_lora(model, recipe.lora)
    model.to(d.device)
    return tokenizer, model


def wrap(model: Any, d: Dist) -> Any:
    """The module to run training passes through: DDP over the ranks, or the model itself."""
    if not d.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    # Every rank built identical weights from the same seed; buffers are constants (rotary).
    return DistributedDataParallel(
        model,
        device_ids=[d.local_rank] if d.device.type == "cuda" else None,
        init_sync=False,
        broadcast_buffers=False,
    )


def optimizer_for(model: Any, *, lr: float, weight_decay: float, warmup_steps: int) -> tuple:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    warm = max(0, warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warm) if warm else 1.0
    )
    return optimizer, scheduler


def micro_batches(items: Sequence[ScoredTurn], size: int) -> list[list[ScoredTurn]]:
    """Groups of at most ``size``, similar lengths together (less padding)."""
    order = sorted(items, key=lambda t: len(t.prompt_ids) + len(t.completion_ids))
    return [order[i : i + size] for i in range(0, len(order), size)]


def backward_all(
    trained: Any, d: Dist, batches: Sequence[Any], loss_of: Callable[[int], Any]
) -> None:
    """Backward passes over ``batches``; DDP all-reduces gradients on the last one only."""
    for i in range(len(batches)):
        sync = not d.distributed or i == len(batches) - 1
        ctx = contextlib.nullcontext() if sync else trained.no_sync()
        with ctx:
            loss_of(i).backward()


def logprobs(
    model: Any,
    turns: Sequence[ScoredTurn],
    *,
    d: Dist,
    tokenizer: Any,
    autocast: torch.dtype | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    return turn_logprobs(
        model, turns, device=d.device, pad_id=tokenizer.pad_token_id, autocast=autocast
    )


def dummy_turn(tokenizer: Any) -> ScoredTurn:
    """A one-token turn for a rank with nothing to train on, so DDP's all-reduce still meets."""
    return ScoredTurn([tokenizer.eos_token_id], [tokenizer.eos_token_id])


def grad_norm_step(model: Any, optimizer: Any, scheduler: Any, max_norm: float) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else math.inf)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


class Stage:
    """One stage's run folder: checkpoints, metrics and the summary (rank 0 writes)."""

    def __init__(self, recipe: Recipe, name: str, out: Path, d: Dist) -> None:
        self.recipe = recipe
        self.name = name
        self.out = Path(out)
        self.d = d
        self.started = time.time()
        self.resumed_from: int | None = None
        if d.main:
            self.out.mkdir(parents=True, exist_ok=True)
        d.barrier()

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"

    @property
    def adapter_dir(self) -> Path:
        return self.out / "adapter"

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    # -- checkpoints ---------------------------------------------------------------------

    def latest_checkpoint(self) -> Path | None:
        found = [
            p
            for p in self.checkpoints.glob("step-*")
            if (p / DONE_MARKER).is_file() and p.name.removeprefix("step-").isdigit()
        ]
        return max(found, key=lambda p: int(p.name.removeprefix("step-")), default=None)

    def save_checkpoint(self, step: int, model: Any, optimizer: Any, scheduler: Any) -> None:
        """After ``step`` optimizer steps. Every rank writes its RNG state; rank 0 the rest, and
        the completion marker last, once all ranks are done."""
        path = self.checkpoints / f"step-{step}"
        if self.d.main:
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
            model.save_pretrained(str(path / "adapter"))
            torch.save(
                {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                path / "optimizer.pt",
            )
            state = {"step": step, "stage": self.name, "world": self.d.world}
            (path / "state.json").write_text(json.dumps(state), encoding="utf-8")
        self.d.barrier()
        torch.save(dist_mod.rng_state(), path / f"rng-rank{self.d.rank}.pt")
        self.d.barrier()
        if self.d.main:
            (path / DONE_MARKER).write_text("", encoding="utf-8")
            done = sorted(
                (p for p in self.checkpoints.glob("step-*") if (p / DONE_MARKER).is_file()),
                key=lambda p: int(p.name.removeprefix("step-")),
            )
            keep = self._keep()
            for old in done[: max(0, len(done) - keep)]:
                shutil.rmtree(old, ignore_errors=True)
        self.d.barrier()

    def _keep(self) -> int:
        return max(1, getattr(self.recipe, self.name).keep_checkpoints)

    def resume(self, model: Any, optimizer: Any, scheduler: Any) -> int:
        """Loads the latest complete checkpoint, if any; returns the steps already done."""
        path = self.latest_checkpoint()
        if path is None:
            return 0
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        weights = load_file(str(path / "adapter" / "adapter_model.safetensors"))
        result = set_peft_model_state_dict(model, weights)
        unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
        if unexpected:
            raise RuntimeError(f"{path}: adapter weights do not fit the model ({unexpected[:3]})")
        state = torch.load(path / "optimizer.pt", map_location=self.d.device, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(json.loads((path / "state.json").read_text(encoding="utf-8"))["step"])
        rng = path / f"rng-rank{self.d.rank}.pt"
        if rng.is_file():  # a run resumed with another world size starts those ranks afresh
            dist_mod.set_rng_state(torch.load(rng, weights_only=False))
        self.resumed_from = step
        if self.d.main:
            self._truncate_metrics(step)
        self.d.barrier()
        return step

    # -- metrics and summary -------------------------------------------------------------

    def _truncate_metrics(self, step: int) -> None:
        if not self.metrics_path.is_file():
            return
        lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        kept = [ln for ln in lines if ln.strip() and json.loads(ln)["step"] <= step]
        self.metrics_path.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")

    def log(self, metrics: dict[str, Any]) -> None:
        if not self.d.main:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics, sort_keys=True) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        text = self.metrics_path.read_text(encoding="utf-8")
        return [json.loads(ln) for ln in text.splitlines() if ln.strip()]

    def finish(
        self,
        *,
        data: dict[str, Any],
        plot_keys: Sequence[str],
        png: str,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Writes run.json and the curves (rank 0); returns the run summary."""
        if not self.d.main:
            return None
        rows = self.read_metrics()
        summary = {
            "stage": self.name,
            "recipe": self.recipe.to_dict(),
            "seed": self.recipe.seed,
            "data": data,
            "world_size": self.d.world,
            "device": str(self.d.device),
            "autocast": self.recipe.model.autocast,
            "versions": _versions(),
            "platform": platform.platform(),
            "resumed_from_step": self.resumed_from,
            "started": self.started,
            "seconds": round(time.time() - self.started, 1),
            "adapter": "adapter",
            "metrics": summarize(rows),
            **(extra or {}),
        }
        (self.out / "run.json").write_text(
            json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        if rows:
            plot_curves(rows, plot_keys, self.out / png, title=f"{self.recipe.name}: {self.name}")
        return summary


def _versions() -> dict[str, str]:
    import importlib.metadata

    out = {}
    for name in ("torch", "transformers", "peft", "mrrec-edge"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per metric: first and last value, and the means of the first and last quarter of steps."""
    if not rows:
        return {"steps": 0}
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, int | float)} - {"step"})
    quarter = max(1, len(rows) // 4)

    def mean(part: Iterable[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in part if isinstance(r.get(key), int | float)]
        return round(sum(values) / len(values), 6) if values else None

    return {
        "steps": rows[-1]["step"],
        "first": {k: rows[0].get(k) for k in keys},
        "last": {k: rows[-1].get(k) for k in keys},
        "mean_first_quarter": {k: mean(rows[:quarter], k) for k in keys},
        "mean_last_quarter": {k: mean(rows[-quarter:], k) for k in keys},
    }


def plot_curves(rows: Sequence[dict[str, Any]], keys: Sequence[str], png: Path, title: str) -> None:
    """One panel per metric: the value per step and a moving average."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in r for r in rows)]
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
        steps, values = zip(*points, strict=True) if points else ((), ())
        ax.plot(steps, values, marker=".", linewidth=0.8, alpha=0.6, label=key)
        window = max(1, len(values) // 10)
        if window > 1:
            smooth = [
                sum(values[max(0, i - window + 1) : i + 1])
                / len(values[max(0, i - window + 1) : i + 1])
                for i in range(len(values))
            ]
            ax.plot(steps, smooth, linewidth=2, label=f"mean of {window}")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=7)
    axes[-1, 0].set_xlabel("optimizer step")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def stage_main(
    prog: str,
    description: str,
    train: Callable[[Recipe, Dist], dict[str, Any] | None],
    argv: Sequence[str] | None = None,
) -> int:
    """The command line of a training entry point (``python -m mrrec_train.sft|grpo|run``, also
    under torchrun): parse the recipe, set up the process group, train, print the last metrics
    (rank 0), tear down."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_recipe_args(parser)
    args = parser.parse_args(argv)
    recipe = load_recipe(args.recipe, args.set)
    d = dist_mod.setup(recipe.model.device, recipe.model.threads)
    try:
        summary = train(recipe, d)
        if summary is not None:
            print(json.dumps(summary["metrics"].get("last", {}), sort_keys=True))
    finally:
        dist_mod.teardown()
    return 0
