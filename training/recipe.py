"""Training recipes: one TOML file per run size (``training/recipes/*.toml``).

A recipe names everything a run depends on (data, model precision, LoRA shape, the assistant's
limits during rollouts, SFT and GRPO settings, reward weights), and is copied into the run's
``run.json``. Every key is optional; unknown keys are an error, so a typo cannot silently fall
back to a default. ``--set section.key=value`` overrides a key from the command line (the value is
read as TOML, so ``--set grpo.steps=3`` and ``--set model.device="cuda"`` both work).

Relative paths in a recipe are relative to the current directory (the repository root in CI and
in the docs' commands).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mrrec_edge.assistant import TurnLimits
from mrrec_edge.errors import ConfigError

#: How the SFT teacher picks the remembered titles it names (``mrrec_train.sft.Teacher.chosen``):
#: the closest to the held-out target, or the user's most liked.
TEACHER_CHOICES = ("hindsight", "strength")

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


@dataclass
class DataConfig:
    """The scenario dataset (built by :mod:`mrrec_edge.scenarios`) and its prepared workspace."""

    ml100k: str = "../shared/data/movielens-100k"
    keywords: str = "../shared/data/movielens-25m-keywords/movies_w_keywords.csv"
    #: Only the first N users (0: all): small, fast datasets for tests and the tiny recipe.
    users_limit: int = 0
    scenario_seed: int = 0
    #: Where the dataset is built (reused when its manifest matches) and its workspace prepared.
    dataset: str = "runs/data/ml100k"
    home: str = "runs/data/ml100k-home"
    #: A bundle folder holding ``embedder/`` ("" : the current settings' bundle).
    bundle: str = ""
    split: str = "train"
    #: Train on at most this many examples of the split (0: all).
    max_examples: int = 0


@dataclass
class ModelConfig:
    #: "auto" (CUDA when available, else CPU), "cpu", "cuda".
    device: str = "auto"
    #: bf16 autocast for forward passes ("bf16", "fp16" on CUDA only, or "none"); master weights
    #: and the LoRA parameters stay float32.
    autocast: str = "bf16"
    #: torch CPU threads per process (0: leave torch's default).
    threads: int = 0
    #: Where the base model's float checkpoint is cached ("" : ~/.cache/mrrec-edge/base-models).
    cache: str = ""


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
    )


@dataclass(frozen=True)
class RolloutConfig(TurnLimits):
    """The :class:`~mrrec_edge.assistant.AssistantConfig` used for teacher traces and rollouts.

    Its turn limits are the device's (the Rust orchestrator's), so the model is trained on the
    prompts it will see. Each recipe cuts ``max_turn_tokens`` shorter: a trained turn is far
    shorter, and one runaway rollout would stall its whole lockstep batch; the tiny recipe also
    shrinks the limits to train small.
    """

    temperature: float = 1.0
    #: Sequences generated together (the rollouts of a step run in lockstep, see policy.py).
    max_batch: int = 64
    #: How rollouts are decoded (mrrec_train.policy.ENGINES): "tree" prefills each prompt token
    #: once a step; "generate" is Hugging Face's generate().
    engine: str = "tree"


@dataclass
class SFTConfig:
    steps: int = 100
    #: Traces per optimizer step, across all ranks.
    batch_size: int = 8
    #: Sequences (one per model turn) per forward pass.
    micro_batch: int = 8
    lr: float = 1e-3
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    #: Memory calls the teacher makes per trace (1 or 2).
    teacher_calls: int = 1
    #: Which remembered titles the teacher names (one of :data:`TEACHER_CHOICES`).
    teacher_choice: str = "hindsight"
    checkpoint_every: int = 50
    keep_checkpoints: int = 2


@dataclass
class GRPOConfig:
    steps: int = 100
    #: Queries per optimizer step, across all ranks; each gets ``group_size`` rollouts.
    queries_per_step: int = 8
    group_size: int = 4
    lr: float = 5e-5
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    #: PPO clip range of the probability ratio.
    epsilon: float = 0.2
    #: KL coefficient to the reference (the policy GRPO started from); 0 skips the reference.
    beta: float = 0.04
    #: Train the GRPO adapter on the last N decoder layers only (0: all of them). Nothing below
    #: the lowest trained layer needs a gradient, so the backward pass stops there.
    lora_layers: int = 0
    #: Optimizer passes over each batch of rollouts (1: on-policy, the ratio starts at 1).
    ppo_epochs: int = 1
    #: Divide advantages by the group's standard deviation (GRPO); false: only centre them.
    scale_rewards: bool = True
    #: Leave groups whose rewards are all equal out of the loss (DAPO's filter): they have no
    #: advantage, and scoring them costs a forward and backward for the KL term alone.
    skip_equal_groups: bool = True
    #: The adapter GRPO starts from: "sft" (this recipe's SFT output), "" (the base model), or a
    #: path to a PEFT folder.
    init_adapter: str = "sft"
    checkpoint_every: int = 25
    keep_checkpoints: int = 2


@dataclass
class RewardConfig:
    #: Reward functions from :data:`mrrec_train.rewards.REWARDS`, with their weights.
    weights: dict[str, float] = field(
        default_factory=lambda: {"format": 0.1, "ranking": 5.0, "memory": 0.1}
    )
    #: nDCG cut-offs of the ranking reward (0: scaled to the catalog, see rewards.cutoffs).
    ndcg_hi: int = 0
    ndcg_lo: int = 0


@dataclass
class Recipe:
    name: str = "custom"
    seed: int = 0
    #: The run folder: SFT writes ``<output>/sft``, GRPO ``<output>/grpo``.
    output: str = "runs/custom"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    rewards: RewardConfig = field(default_factory=RewardConfig)

    @property
    def sft_dir(self) -> Path:
        return Path(self.output) / "sft"

    @property
    def grpo_dir(self) -> Path:
        return Path(self.output) / "grpo"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
        f = known[key]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table")
            kwargs[key] = _build(type(default), value, f"{where} [{key}]")
            continue
        if isinstance(default, bool) != isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be {type(default).__name__}, not {value!r}")
        if isinstance(default, float) and isinstance(value, int):
            value = float(value)
        if not isinstance(value, type(default)):
            raise ConfigError(f"{where}: {key} must be {type(default).__name__}, not {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def _set(data: dict[str, Any], assignment: str) -> None:
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected section.key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: take it as a string
    *sections, last = key.strip().split(".")
    node = data
    for s in sections:
        node = node.setdefault(s, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {assignment!r}: {s} is not a table")
    node[last] = value


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    """A recipe file: a path, or the name of one in training/recipes (``tiny``, ``cpu``...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    named = RECIPES_DIR / f"{name_or_path}.toml"
    if named.is_file():
        return named
    known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.toml")))
    raise ConfigError(f"no recipe {str(name_or_path)!r} (a TOML file, or one of: {known})")


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = resolve_recipe_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    for assignment in overrides or []:
        _set(data, assignment)
    data.setdefault("name", path.stem)
    recipe = _build(Recipe, data, str(path))
    if recipe.sft.teacher_choice not in TEACHER_CHOICES:
        raise ConfigError(
            f"{path}: sft.teacher_choice must be one of {', '.join(TEACHER_CHOICES)}, "
            f"not {recipe.sft.teacher_choice!r}"
        )
    return recipe


def add_recipe_args(parser: argparse.ArgumentParser) -> None:
    """``--recipe`` and ``--set`` for the entry points; also sets up logging to stderr."""
    parser.add_argument(
        "--recipe", required=True, help="a recipe name (tiny, cpu, gpu) or a TOML file"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a recipe key (a TOML value), e.g. --set grpo.steps=3",
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
