"""SFT then GRPO with one recipe: ``python -m mrrec_train.run --recipe tiny`` (or under torchrun).

Each stage resumes from its own latest checkpoint, so an interrupted run picks up where it
stopped; a finished SFT stage (its adapter written) is not run again.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

from mrrec_train import grpo, sft
from mrrec_train.dist import Dist
from mrrec_train.recipe import Recipe
from mrrec_train.trainer import stage_main


def sft_then_grpo(recipe: Recipe, d: Dist) -> dict[str, Any] | None:
    if not (recipe.sft_dir / "run.json").is_file():
        sft.train(recipe, d)
        gc.collect()
    return grpo.train(recipe, d)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("python -m mrrec_train.run", __doc__.split("\n")[0], sft_then_grpo, argv)


if __name__ == "__main__":
    raise SystemExit(main())
