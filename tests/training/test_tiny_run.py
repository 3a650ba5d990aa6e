"""The training recipes end to end on real data and the real base model: SFT, GRPO, checkpoint and
resume, the run folder, the adapter's merge and its export to onnxruntime-genai, and torchrun.

The default run trains a cut-down tiny recipe (one SFT step, one GRPO step, then a resumed second
one); the slow tests run the tiny recipe as shipped, export its adapter, check that a resumed run
equals an uninterrupted one, and compare torchrun's metrics with one process's.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.training.conftest import data_overrides

#: The cut-down recipe of the default run: short turns, one step of each stage.
SMALL = ["--set", "sft.steps=1", "--set", "grpo.steps=1", "--set", "rollout.max_turn_tokens=24"]

SFT_KEYS = {"step", "loss", "completion_tokens", "grad_norm", "lr", "seconds", "epoch"}
GRPO_KEYS = {
    "step",
    "reward",
    "reward/format",
    "reward/ranking",
    "reward/memory",
    "format_rate",
    "memory_call_rate",
    "ndcg_hi",
    "ndcg_lo",
    "ndcg@10",
    "recall@10",
    "kl",
    "loss",
    "clip_frac",
    "grad_norm",
    "seconds",
    "seconds_rollout",
    "seconds_train",
}


def _rows(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _finite(row: dict) -> bool:
    return all(math.isfinite(v) for v in row.values() if isinstance(v, int | float))


@pytest.fixture(scope="module")
def tiny_run(
    tmp_path_factory: pytest.TempPathFactory, small_data: tuple[Path, Path], embedder_dir: Path
) -> tuple[Path, list[str]]:
    """The cut-down tiny recipe, run in this process: (run folder, its arguments). It runs as a
    user would from their own folder: the recipe file and the output folder given relative."""
    from mrrec_train import run

    folder = tmp_path_factory.mktemp("tiny-run")
    (folder / "recipes").mkdir()
    shutil.copy(ROOT / "training" / "recipes" / "tiny.toml", folder / "recipes")
    out = folder / "run"
    given = [
        "--recipe",
        "recipes/tiny.toml",
        *data_overrides(small_data, embedder_dir, Path("run")),
    ]
    with contextlib.chdir(folder):
        assert run.main([*given, *SMALL]) == 0
    # The same run from anywhere (the resume tests rerun it from the checkout).
    args = ["--recipe", str(folder / "recipes" / "tiny.toml")]
    args += [*data_overrides(small_data, embedder_dir, out), *SMALL]
    return out, args


def test_sft_then_grpo_write_their_run_folders(tiny_run: tuple[Path, list[str]]) -> None:
    out, _ = tiny_run
    sft = out / "sft"
    rows = _rows(sft / "metrics.jsonl")
    assert len(rows) == 1 and set(rows[0]) >= SFT_KEYS and _finite(rows[0])
    assert rows[0]["loss"] > 0
    summary = json.loads((sft / "run.json").read_text(encoding="utf-8"))
    assert summary["stage"] == "sft" and summary["seed"] == 0
    assert summary["recipe"]["name"] == "tiny"
    assert summary["data"]["dataset_version"] == "ml100k-scenarios-v2"
    assert summary["traces"] >= 1 and (sft / "loss_curve.png").stat().st_size > 1000
    assert {p.name for p in (sft / "adapter").iterdir()} >= {
        "adapter_config.json",
        "adapter_model.safetensors",
    }

    grpo = out / "grpo"
    rows = _rows(grpo / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1]
    assert set(rows[0]) >= GRPO_KEYS and _finite(rows[0])
    assert 0 <= rows[0]["format_rate"] <= 1 and 0 <= rows[0]["reward/ranking"] <= 2
    summary = json.loads((grpo / "run.json").read_text(encoding="utf-8"))
    assert summary["ndcg_cutoffs"] == [169, 17]  # 1,682 items
    assert summary["reward_weights"] == {"format": 0.1, "ranking": 5.0, "memory": 0.1}
    assert (grpo / "reward_curve.png").stat().st_size > 1000
    assert (grpo / "checkpoints" / "step-1" / "complete").is_file()
    sample = _rows(grpo / "samples.jsonl")[0]
    assert sample["completions"] and sample["profile"]


def test_grpo_resumes_and_ships_one_adapter(tiny_run: tuple[Path, list[str]]) -> None:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    from mrrec_train import grpo
    from mrrec_train.base import load_base

    out, args = tiny_run
    assert grpo.main([*args, "--set", "grpo.steps=2"]) == 0
    rows = _rows(out / "grpo" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all(_finite(r) for r in rows)
    summary = json.loads((out / "grpo" / "run.json").read_text(encoding="utf-8"))
    assert summary["resumed_from_step"] == 1 and summary["metrics"]["steps"] == 2
    checkpoints = sorted(p.name for p in (out / "grpo" / "checkpoints").iterdir())
    assert checkpoints == ["step-1", "step-2"]
    # The checkpoint holds exactly the adapter the run ended with.
    saved = load_file(
        str(out / "grpo" / "checkpoints" / "step-2" / "adapter" / "adapter_model.safetensors")
    )
    final = load_file(str(out / "grpo" / "grpo_adapter" / "adapter_model.safetensors"))
    assert saved.keys() == final.keys()
    assert all(torch.equal(saved[k], final[k]) for k in saved)

    # The shipped adapter is SFT + GRPO in one LoRA over the base, and it merges.
    config = json.loads((out / "grpo" / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["base_model_name_or_path"].endswith("SmolLM2-135M-Instruct")
    tokenizer, base = load_base()
    merged = PeftModel.from_pretrained(base, str(out / "grpo" / "adapter")).merge_and_unload()
    ids = tokenizer("Name one classic movie.", return_tensors="pt").input_ids
    with torch.no_grad():
        new = merged.generate(ids, max_new_tokens=4, do_sample=False)[0, ids.shape[1] :]
    assert len(new) >= 1


def test_publish_ships_the_final_adapter_with_its_run(
    tiny_run: tuple[Path, list[str]], tmp_path: Path
) -> None:
    from mrrec_train.publish import ADAPTER_FILES, publish

    out, _ = tiny_run
    sft = tmp_path / "adapter-sft"
    shipped = publish(out, out=tmp_path / "adapter", sft_out=sft, docs=tmp_path / "docs")
    assert sorted(p.name for p in shipped.iterdir()) == sorted([*ADAPTER_FILES, "run.json"])
    # The SFT stage of the same run beside it, with its own run.json.
    assert (sft / "adapter_model.safetensors").read_bytes() == (
        out / "sft" / "adapter" / "adapter_model.safetensors"
    ).read_bytes()
    sft_run = json.loads((sft / "run.json").read_text(encoding="utf-8"))
    assert sft_run["final_stage"] == "sft" and set(sft_run["stages"]) == {"sft"}
    assert (shipped / "adapter_model.safetensors").read_bytes() == (
        out / "grpo" / "adapter" / "adapter_model.safetensors"
    ).read_bytes()
    run = json.loads((shipped / "run.json").read_text(encoding="utf-8"))
    assert run["final_stage"] == "grpo" and set(run["stages"]) == {"sft", "grpo"}
    assert run["data"]["dataset_version"] == "ml100k-scenarios-v2" and run["seed"] == 0
    assert run["metrics"]["sft_steps"] >= 1 and run["metrics"]["grpo_steps"] >= 1
    assert all(isinstance(v, (int, float)) for v in run["metrics"].values())
    # Nothing of the training machine: the bundle path it used is left out.
    assert "bundle" not in run["stages"]["grpo"]["recipe"]["data"]
    assert {p.name.split("-", 2)[-1] for p in (tmp_path / "docs").iterdir()} == {
        "loss_curve.png",
        "reward_curve.png",
    }
    # A grounding fit already beside the adapter is carried over by the next publish.
    from mrrec_edge.grounding import DEFAULT_WEIGHTS, GROUNDING_FIT, write_fit

    write_fit(shipped / GROUNDING_FIT, {"weights": dict(DEFAULT_WEIGHTS)})
    again = publish(out, out=shipped, sft_out=sft, docs=tmp_path / "docs")
    assert (again / GROUNDING_FIT).is_file()


def test_publish_command_takes_relative_paths(
    tiny_run: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """``python -m mrrec_train.publish RUN --grounding FIT --out ...`` from another folder."""
    from mrrec_edge.grounding import DEFAULT_WEIGHTS, write_fit

    out, _ = tiny_run
    write_fit(tmp_path / "fit.json", {"weights": dict(DEFAULT_WEIGHTS)})
    cmd = [sys.executable, "-m", "mrrec_train.publish", os.path.relpath(out, tmp_path)]
    cmd += ["--grounding", "fit.json", "--out", "shipped/adapter"]
    cmd += ["--sft-out", "shipped/adapter-sft", "--docs", "shipped/docs"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    shipped = tmp_path / "shipped"
    assert proc.stdout.strip() == str(shipped / "adapter")
    assert (shipped / "adapter" / "grounding.json").is_file()
    assert (shipped / "adapter-sft" / "adapter_model.safetensors").is_file()
    assert len(list((shipped / "docs").iterdir())) == 2


@pytest.mark.slow
def test_resumed_run_equals_an_uninterrupted_one(
    tiny_run: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """Sampling is seeded by step and the optimizer state is restored: step 2 comes out the same."""
    from mrrec_train import grpo

    out, args = tiny_run
    if (
        not (out / "grpo" / "metrics.jsonl").is_file()
        or len(_rows(out / "grpo" / "metrics.jsonl")) < 2
    ):
        assert grpo.main([*args, "--set", "grpo.steps=2"]) == 0
    straight = tmp_path / "straight"
    sft_adapter = out / "sft" / "adapter"
    override = [
        *args,
        "--set",
        f'output="{straight}"',
        "--set",
        f'grpo.init_adapter="{sft_adapter}"',
        "--set",
        "grpo.steps=2",
    ]
    assert grpo.main(override) == 0
    resumed = _rows(out / "grpo" / "metrics.jsonl")[1]
    uninterrupted = _rows(straight / "grpo" / "metrics.jsonl")[1]
    for key in ("reward", "ndcg_hi", "completion_tokens", "loss", "kl", "format_rate"):
        assert resumed[key] == pytest.approx(uninterrupted[key], abs=1e-6), key


@pytest.mark.slow
def test_tiny_recipe_as_shipped_exports_to_the_device_runtime(
    small_data: tuple[Path, Path], embedder_dir: Path, tmp_path: Path
) -> None:
    """``python -m mrrec_train.run --recipe tiny``, then the adapter through build_llm into an
    onnxruntime-genai folder that loads, renders the training prompts and generates."""
    from transformers import AutoTokenizer

    from mrrec_edge._core import Orchestrator
    from mrrec_edge.model import LanguageModel
    from mrrec_train.export import build_llm
    from mrrec_train.sft import ChatTokenizer

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mrrec_train.run", "--recipe", "tiny"]
    cmd += data_overrides(small_data, embedder_dir, out)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(out / "grpo" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all(_finite(r) for r in rows)

    facts = build_llm(tmp_path / "llm", precision="int8", adapter=out / "grpo" / "adapter")
    assert facts["adapter"]["merged"] and facts["smoke_test"]["text"].strip()
    model = LanguageModel.load(tmp_path / "llm")
    # The device renders exactly the prompt the policy was trained on.
    messages = Orchestrator("a funny movie for a Friday night").messages()
    from mrrec_train.base import base_checkpoint

    trained_on = ChatTokenizer(AutoTokenizer.from_pretrained(str(base_checkpoint())))
    assert model.apply_chat_template(messages) == trained_on.apply_chat_template(messages)
    text = model.generate(model.apply_chat_template(messages), max_new_tokens=8)
    assert text.strip()


@pytest.mark.slow
def test_torchrun_two_processes_log_the_same_metrics(
    tiny_run: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """``torchrun --nproc_per_node 2`` (gloo on CPU): each rank rolls out one query of two."""
    out, args = tiny_run
    sft_adapter = out / "sft" / "adapter"
    overrides = [  # later --set values win
        *args,
        "--set",
        f'output="{tmp_path / "ddp"}"',
        "--set",
        f'grpo.init_adapter="{sft_adapter}"',
        "--set",
        "grpo.queries_per_step=2",
        "--set",
        "model.threads=1",
    ]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", "29517", "-m", "mrrec_train.grpo", *overrides]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = _rows(tmp_path / "ddp" / "grpo" / "metrics.jsonl")
    single = _rows(out / "grpo" / "metrics.jsonl")
    assert [r["step"] for r in ddp] == [1]
    assert set(ddp[0]) == set(single[0]) and _finite(ddp[0])
    summary = json.loads((tmp_path / "ddp" / "grpo" / "run.json").read_text(encoding="utf-8"))
    assert summary["world_size"] == 2
    assert (tmp_path / "ddp" / "grpo" / "adapter" / "adapter_model.safetensors").is_file()
