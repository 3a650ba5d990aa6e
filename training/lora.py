"""LoRA adapters (PEFT): a fresh one to train, merging one in, and joining two into one.

GRPO starts from the SFT policy and keeps a KL term to it. The SFT adapter is merged into the
base weights and GRPO trains a fresh adapter on top, so "adapter disabled" *is* the reference
policy (no second model in memory). The shipped artifact must still be one adapter over the base
model (the export merges exactly one): :func:`concat_adapters` joins the two exactly, since
``s1·B1·A1 + s2·B2·A2 = [s1·B1 | s2·B2] · [A1 ; A2]``, a LoRA of rank r1 + r2 with scale 1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mrrec_edge.files import atomic_dir
from mrrec_train.recipe import LoraSettings

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
#: What PEFT puts before a module's name in the keys it saves.
SAVED_PREFIX = "base_model.model."


def new_lora(model: Any, settings: LoraSettings, *, last_layers: int = 0) -> Any:
    """``model`` wrapped with a fresh trainable LoRA adapter (B = 0: it starts as a no-op), on
    its last ``last_layers`` decoder layers only when that is above 0."""
    from peft import LoraConfig, get_peft_model

    n = int(model.config.num_hidden_layers)
    if not 0 <= last_layers <= n:
        raise ValueError(f"LoRA on the last {last_layers} layers: the model has {n} decoder layers")
    config = LoraConfig(
        layers_to_transform=list(range(n - last_layers, n)) if last_layers else None,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def frozen_layers(model: Any) -> int:
    """How many decoder layers from the bottom up hold no trained weight: a pass whose inputs to
    the layer above them are known can start there (0 when a weight below the decoder layers
    is trained, or none is)."""
    n = int(model.config.num_hidden_layers)
    lowest = n
    for name, weight in model.named_parameters():
        if weight.requires_grad:
            found = re.search(r"\.layers\.(\d+)\.", name)
            if found is None:
                return 0
            lowest = min(lowest, int(found.group(1)))
    return lowest if lowest < n else 0


def save_adapter(model: Any, out: Path) -> Path:
    """Saves the PEFT model's adapter as a PEFT folder that names the published base model
    (not the local cache folder it was trained from); written whole, then renamed into place."""
    with atomic_dir(out, durable=True) as tmp:
        model.save_pretrained(str(tmp))
        _name_base(tmp)
    return out


def _name_base(out: Path) -> None:
    from mrrec_train.export import BASE_MODEL

    path = out / CONFIG
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = BASE_MODEL
    path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")


def merge_adapter(model: Any, adapter: Path) -> Any:
    """``model`` with the PEFT adapter folder ``adapter`` merged into its weights."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter), local_files_only=True).merge_and_unload()


def _read(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{folder}: not a LoRA adapter")
    if config.get("use_rslora") or config.get("use_dora"):
        raise ValueError(f"{folder}: rsLoRA and DoRA adapters cannot be joined")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ValueError(f"{folder}: per-module ranks cannot be joined")
    return config, load_file(str(folder / WEIGHTS))


def _modules(weights: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    out = {}
    for key, a in weights.items():
        if key.endswith(".lora_A.weight"):
            prefix = key.removesuffix(".lora_A.weight")
            out[prefix] = (a, weights[f"{prefix}.lora_B.weight"])
    return out


def concat_adapters(first: Path, second: Path, out: Path) -> Path:
    """Writes into ``out`` one LoRA adapter equal to applying ``first`` then ``second``."""
    config1, weights1 = _read(first)
    config2, weights2 = _read(second)
    m1, m2 = _modules(weights1), _modules(weights2)
    r1, r2 = int(config1["r"]), int(config2["r"])
    s1 = float(config1["lora_alpha"]) / r1
    s2 = float(config2["lora_alpha"]) / r2
    joined: dict[str, torch.Tensor] = {}
    for prefix in sorted(set(m1) | set(m2)):
        parts = []
        for modules, r, scale in ((m1, r1, s1), (m2, r2, s2)):
            if prefix in modules:
                a, b = modules[prefix]
                parts.append((a.float(), b.float() * scale))
            else:  # a module only the other adapter targets: a zero block of this rank
                other = (m2 if modules is m1 else m1)[prefix]
                parts.append(
                    (
                        torch.zeros(r, other[0].shape[1]),
                        torch.zeros(other[1].shape[0], r),
                    )
                )
        joined[f"{prefix}.lora_A.weight"] = torch.cat([p[0] for p in parts], dim=0).contiguous()
        joined[f"{prefix}.lora_B.weight"] = torch.cat([p[1] for p in parts], dim=1).contiguous()
    # The exact modules that have weights: names alone ("o_proj") would also create, with
    # freshly initialised weights, those of layers that neither adapter trained.
    targets = sorted(prefix.removeprefix(SAVED_PREFIX) for prefix in set(m1) | set(m2))
    config = {
        **config1,
        "r": r1 + r2,
        "lora_alpha": r1 + r2,
        "target_modules": targets,
        "layers_to_transform": None,
    }
    with atomic_dir(out, durable=True) as tmp:
        save_file(joined, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        _name_base(tmp)
    return out
