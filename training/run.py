"""SFT then GRPO with one recipe: ``python -m training.run --recipe tiny`` (or under torchrun).

Each stage resumes from its own latest checkpoint, so an interrupted run picks up where it
stopped; a finished SFT stage (its adapter written) is not run again.
"""

from __future__ import annotations

import argparse
import gc
import json
from collections.abc import Sequence

from training import dist as dist_mod
from training import grpo, sft
from training.recipe import add_recipe_args, load_recipe


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.run", description=__doc__.split("\n")[0]
    )
    add_recipe_args(parser)
    args = parser.parse_args(argv)
    recipe = load_recipe(args.recipe, args.set)
    d = dist_mod.setup(recipe.model.device, recipe.model.threads)
    try:
        if not (recipe.sft_dir / "run.json").is_file():
            sft.train(recipe, d)
            gc.collect()
        summary = grpo.train(recipe, d)
        if summary is not None:
            print(json.dumps(summary["metrics"].get("last", {}), sort_keys=True))
    finally:
        dist_mod.teardown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
