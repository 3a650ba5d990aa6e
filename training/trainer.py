"""What SFT and GRPO share: the policy model, the optimizer, micro-batched backward passes under
DDP, checkpoints that resume exactly, per-step metrics and the run folder.

A stage writes into its run folder::

    adapter/            the trained LoRA adapter (PEFT: adapter_config.json + safetensors)
    run.json            recipe, seed, data version, world size, timings, metrics summary
    metrics.jsonl       one line per optimizer step
    *_curve.png         the curves of metrics.jsonl
    checkpoints/step-N/ adapter, optimizer, scheduler, step and every rank's RNG state

Everything but the per-step logs (appended a line at a time; a resume drops the lines of the
steps it redoes) is written whole beside its place and renamed into it (mrrec_edge.files), so a
kill at any moment leaves the previous version or the new one: resume never reads a checkpoint
whose adapter, optimizer and step disagree, and a ``run.json`` (which ``mrrec_train.run`` takes
as "stage done") is never there before its adapter and curve.
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

from mrrec_edge.files import atomic_dir, atomic_file
from mrrec_train import dist as dist_mod
from mrrec_train.base import base_checkpoint, load_base
from mrrec_train.dist import Dist
from mrrec_train.lora import new_lora
from mrrec_train.policy import ScoredTurn, turn_logprobs
from mrrec_train.recipe import Recipe, add_recipe_args, load_recipe

AUTOCAST = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DONE_MARKER = "complete"
#: A stage's logs of one JSON line per optimizer step (GRPO's rollout samples too).
STEP_LOGS = ("metrics.jsonl", "samples.jsonl")


def autocast_dtype(recipe: Recipe, device: torch.device) -> torch.dtype | None:
    name = recipe.model.autocast
    if name not in AUTOCAST:
        raise ValueError(f"model.autocast must be one of {', '.join(AUTOCAST)}, not {name!r}")
    if name == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast needs CUDA; use bf16 on CPU")
    return AUTOCAST[name]


def load_policy(
    recipe: Recipe, d: Dist, *, merge: Path | None = None, lora_layers: int = 0
) -> tuple[Any, Any]:
    """(tokenizer, PEFT model on this rank's device) with a fresh LoRA adapter (on the last
    ``lora_layers`` decoder layers, or all when 0).

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
    model = new_lora(model, recipe.lora, last_layers=lora_layers)
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
        # Only renamed-in folders match; a killed save's temporary ".step-N.tmp-*" does not.
        found = [
            p
            for p in self.checkpoints.glob("step-*")
            if (p / DONE_MARKER).is_file() and p.name.removeprefix("step-").isdigit()
        ]
        return max(found, key=lambda p: int(p.name.removeprefix("step-")), default=None)

    def save_checkpoint(self, step: int, model: Any, optimizer: Any, scheduler: Any) -> None:
        """After ``step`` optimizer steps: rank 0 writes the adapter, optimizer, scheduler, step
        and every rank's RNG state into a temporary folder, fsyncs it and renames it into place,
        so ``step-N`` is complete or absent; then it deletes the checkpoints beyond the kept
        ones and what killed saves left behind."""
        rngs = self.d.gather(dist_mod.rng_state())
        if self.d.main:
            with atomic_dir(self.checkpoints / f"step-{step}", durable=True) as tmp:
                model.save_pretrained(str(tmp / "adapter"))
                torch.save(
                    {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                    tmp / "optimizer.pt",
                )
                for rank, rng in enumerate(rngs):
                    torch.save(rng, tmp / f"rng-rank{rank}.pt")
                state = {"step": step, "stage": self.name, "world": self.d.world}
                (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
                # Renamed in whole, so the marker is redundant; it keeps older runs readable.
                (tmp / DONE_MARKER).write_text("", encoding="utf-8")
            self._prune()
        self.d.barrier()

    def _prune(self) -> None:
        for leftover in self.checkpoints.glob(".step-*"):  # a killed save's or prune's
            shutil.rmtree(leftover, ignore_errors=True)
        done = sorted(
            (p for p in self.checkpoints.glob("step-*") if (p / DONE_MARKER).is_file()),
            key=lambda p: int(p.name.removeprefix("step-")),
        )
        for old in done[: max(0, len(done) - self._keep())]:
            # Out of sight in one rename first: a kill inside rmtree leaves no torn step-N.
            gone = old.with_name(f".{old.name}.old")
            old.rename(gone)
            shutil.rmtree(gone, ignore_errors=True)

    def _keep(self) -> int:
        return max(1, getattr(self.recipe, self.name).keep_checkpoints)

    def resume(self, model: Any, optimizer: Any, scheduler: Any) -> int:
        """Loads the latest complete checkpoint, if any; returns the steps already done."""
        path = self.latest_checkpoint()
        step = 0
        if path is not None:
            step = self._load(path, model, optimizer, scheduler)
            self.resumed_from = step
        if self.d.main:
            # With no checkpoint too: a run killed before its first one logged steps it redoes.
            self._drop_steps_after(step)
        self.d.barrier()
        return step

    def _load(self, path: Path, model: Any, optimizer: Any, scheduler: Any) -> int:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        step = int(json.loads((path / "state.json").read_text(encoding="utf-8"))["step"])
        if path.name != f"step-{step}":
            raise RuntimeError(f"{path}: holds the state of step {step}")
        weights = load_file(str(path / "adapter" / "adapter_model.safetensors"))
        result = set_peft_model_state_dict(model, weights)
        unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
        if unexpected:
            raise RuntimeError(f"{path}: adapter weights do not fit the model ({unexpected[:3]})")
        state = torch.load(path / "optimizer.pt", map_location=self.d.device, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng = path / f"rng-rank{self.d.rank}.pt"
        if rng.is_file():  # a run resumed with another world size starts those ranks afresh
            dist_mod.set_rng_state(torch.load(rng, weights_only=False))
        return step

    # -- metrics and summary -------------------------------------------------------------

    def _drop_steps_after(self, step: int) -> None:
        """Drops the lines of steps after ``step`` from the per-step logs (the resumed run
        writes them again), and any line a power cut tore."""
        for name in STEP_LOGS:
            path = self.out / name
            if not path.is_file():
                continue
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = [ln for ln in lines if (n := _step_of(ln)) is not None and n <= step]
            if len(kept) == len(lines):
                continue
            # Rewritten whole: a kill here must not leave the run with half its curve.
            with atomic_file(path) as tmp:
                tmp.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")

    def log(self, metrics: dict[str, Any]) -> None:
        if not self.d.main:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics, sort_keys=True) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        rows = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line a power cut tore
                rows.append(json.loads(line))
        return rows

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
        if rows:
            plot_curves(rows, plot_keys, self.out / png, title=f"{self.recipe.name}: {self.name}")
        # Last: run.json says the stage is done (mrrec_train.run skips it, publish reads it).
        with atomic_file(self.out / "run.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return summary


def _step_of(line: str) -> int | None:
    """The ``step`` of a per-step log line; None for a torn or blank one."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


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
    with atomic_file(png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
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
