"""Publish a finished run as the committed adapter: ``python -m mrrec_train.publish runs/cpu``.

Copies the run's final adapter (GRPO's, else SFT's) into ``training/adapter/`` — the folder
``mrrec bundle build`` merges by default — with a ``run.json`` that says what produced it: the
recipe, seed, data version, each stage's summary, and flat ``metrics`` (what the bundle manifest
records). When the final stage is GRPO, the same run's SFT adapter goes to
``training/adapter-sft/`` with its own ``run.json``, so the base, SFT and RL bundles can all be
rebuilt (``mrrec bundle build --base``, ``--adapter training/adapter-sft``, the default). The
grounding fit (``grounding.json``) is the one given with ``--grounding``, else the one already
beside the adapter, carried over. The stages' curves go to ``docs/training/``. Paths of the
training machine are left out: only what another machine can reproduce from the repository is
kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mrrec_edge.files import atomic_dir, user_path
from mrrec_edge.grounding import GROUNDING_FIT, load_fit
from mrrec_train.export import DEFAULT_ADAPTER_DIR

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "training"
SFT_ADAPTER_DIR = DEFAULT_ADAPTER_DIR.parent / "adapter-sft"
STAGES = ("sft", "grpo")
#: PEFT's own files; its generated model card is boilerplate that names the local base folder.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
CURVES = {"sft": "loss_curve.png", "grpo": "reward_curve.png"}


def _stage_summary(run: dict[str, Any]) -> dict[str, Any]:
    recipe = dict(run["recipe"])
    recipe["data"] = {k: v for k, v in recipe["data"].items() if k != "bundle"}
    keep = ("stage", "seed", "data", "examples", "device", "world_size", "autocast", "seconds")
    out = {k: run[k] for k in keep if k in run}
    out.update(recipe=recipe, versions=run.get("versions", {}), metrics=run["metrics"])
    for k in ("ndcg_cutoffs", "reward_weights"):
        if k in run:
            out[k] = run[k]
    return out


def flat_metrics(stages: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The numbers the bundle manifest records: first/last of each stage's main curve."""
    out: dict[str, float] = {}
    for name, key in (("sft", "loss"), ("grpo", "reward")):
        metrics = stages.get(name, {}).get("metrics", {})
        for when in ("mean_first_quarter", "mean_last_quarter"):
            value = metrics.get(when, {}).get(key)
            if isinstance(value, (int, float)):
                out[f"{name}_{key}_{when}"] = round(float(value), 6)
        if "steps" in metrics:
            out[f"{name}_steps"] = metrics["steps"]
    return out


def _run_summary(stages: dict[str, dict[str, Any]], final: str) -> dict[str, Any]:
    """run.json of a published adapter whose last stage is ``final``."""
    kept = {n: r for n, r in stages.items() if STAGES.index(n) <= STAGES.index(final)}
    summaries = {n: _stage_summary(r) for n, r in kept.items()}
    return {
        "run_id": f"{stages[final]['recipe']['name']}-"
        + time.strftime("%Y%m%d", time.gmtime(stages[final]["started"])),
        "final_stage": final,
        "seed": stages[final]["seed"],
        "data": stages[final]["data"],
        "stages": summaries,
        "metrics": flat_metrics(summaries),
    }


def _write_adapter(adapter: Path, run: dict[str, Any], out: Path, grounding: Path | None) -> None:
    """``adapter``'s weights, ``run`` and the grounding fit into ``out``, swapped in whole."""
    missing = [f for f in ADAPTER_FILES if not (adapter / f).is_file()]
    if missing:
        raise SystemExit(f"{adapter}: missing {', '.join(missing)}")
    with atomic_dir(out) as tmp:
        for f in ADAPTER_FILES:
            shutil.copy2(adapter / f, tmp / f)
        (tmp / "run.json").write_text(json.dumps(run, indent=2, sort_keys=True) + "\n")
        if grounding is not None:
            load_fit(grounding)  # a broken fit is refused before anything is replaced
            shutil.copy2(grounding, tmp / GROUNDING_FIT)
        for path in tmp.iterdir():  # copied files keep the run's modes; the repo's are 0644
            path.chmod(0o644)


def publish(
    run_dir: Path,
    *,
    out: Path = DEFAULT_ADAPTER_DIR,
    sft_out: Path = SFT_ADAPTER_DIR,
    docs: Path = DOCS,
    grounding: Path | None = None,
) -> Path:
    stages = {}
    for name in STAGES:
        run_json = run_dir / name / "run.json"
        if run_json.is_file():
            stages[name] = json.loads(run_json.read_text(encoding="utf-8"))
    final = next((n for n in reversed(STAGES) if n in stages), None)
    if final is None:
        raise SystemExit(f"{run_dir}: no finished stage (no sft/run.json or grpo/run.json)")
    if grounding is None and (out / GROUNDING_FIT).is_file():
        grounding = out / GROUNDING_FIT
    with tempfile.TemporaryDirectory() as keep:  # the carried fit outlives out's replacement
        if grounding is not None:
            grounding = Path(shutil.copy2(grounding, Path(keep) / GROUNDING_FIT))
        run = _run_summary(stages, final)
        _write_adapter(run_dir / final / "adapter", run, out, grounding)
        if final == "grpo" and "sft" in stages:
            _write_adapter(run_dir / "sft" / "adapter", _run_summary(stages, "sft"), sft_out, None)
    docs.mkdir(parents=True, exist_ok=True)
    for name in stages:
        curve = run_dir / name / CURVES[name]
        if curve.is_file():
            shutil.copy2(curve, docs / f"{run['run_id']}-{CURVES[name]}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mrrec_train.publish", description=__doc__)
    parser.add_argument("run_dir", type=user_path, help="A run folder (the recipe's output).")
    parser.add_argument(
        "--grounding",
        type=user_path,
        help="The grounding fit for this model (`mrrec eval --fit-grounding`); default: the "
        "one already beside the adapter.",
    )
    parser.add_argument(
        "--out", type=user_path, help=f"Where the adapter goes (default: {DEFAULT_ADAPTER_DIR})."
    )
    parser.add_argument(
        "--sft-out", type=user_path, help=f"The SFT adapter's folder (default: {SFT_ADAPTER_DIR})."
    )
    parser.add_argument("--docs", type=user_path, help=f"The curves' folder (default: {DOCS}).")
    args = parser.parse_args(argv)
    into_checkout = args.out is None or args.sft_out is None or args.docs is None
    if into_checkout and not (ROOT / "training" / "pyproject.toml").is_file():
        parser.error(
            f"{DEFAULT_ADAPTER_DIR} is not in a mrrec-edge checkout: publishing writes the "
            "checkout's training/ and docs/, so install this package editable there "
            "(pip install -e ./training), or give --out, --sft-out and --docs"
        )
    places = {"out": args.out, "sft_out": args.sft_out, "docs": args.docs}
    print(publish(args.run_dir, grounding=args.grounding, **{k: v for k, v in places.items() if v}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
