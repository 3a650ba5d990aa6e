"""Run the embedder bundle: texts -> L2-normalised float32 vectors, with onnxruntime only."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrrec_edge.errors import BundleError
from mrrec_edge.files import sha256_file
from mrrec_edge.host import available_cpus

_REQUIRED_KEYS = ("name", "dimensions", "max_length", "sha256")
_FILES = ("model.onnx", "tokenizer.json")
_FIX = "run `mrrec bundle embedder` to rebuild it"


def load_tokenizer(path: Path, max_length: int) -> Any:
    """The bundle's tokenizer, truncating at ``max_length`` tokens and never padding."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    # The shipped tokenizer.json pads to a fixed 128 and truncates at 128: we pad each batch
    # ourselves to its longest text, and truncate at the model's max_length (256) like
    # sentence-transformers does.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def make_session(model: str | bytes, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for ``model`` (a path or the serialised model)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or available_cpus()
    opts.inter_op_num_threads = 1  # the graph is one chain: no parallel branches to run
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


class Embedder:
    """A loaded sentence embedder. Open a bundle with :meth:`Embedder.load`."""

    def __init__(
        self,
        tokenizer: Any,
        session: Any,
        *,
        dimensions: int,
        meta: dict[str, Any] | None = None,
        folder: Path | None = None,
    ) -> None:
        self._tokenizer = tokenizer
        self._session = session
        self._dimensions = int(dimensions)
        self.meta = meta or {}
        self.folder = folder

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def name(self) -> str:
        return str(self.meta.get("name", "unnamed"))

    @classmethod
    def load(cls, folder: Path, *, threads: int | None = None, verify: bool = True) -> Embedder:
        """Open the bundle in ``folder`` (as written by ``build_embedder``).

        ``threads`` is onnxruntime's intra-op thread count (default: the CPUs this process may
        use). ``verify`` checks the files against their sha256 in embedder.json (~0.1 s).
        Raises :class:`BundleError` naming the folder and what is missing or broken.
        """
        folder = Path(folder)

        def broken(what: str) -> BundleError:
            return BundleError(f"embedder bundle {folder}: {what}; {_FIX}")

        if not folder.is_dir():
            raise broken("the folder does not exist")
        meta_path = folder / "embedder.json"
        if not meta_path.is_file():
            raise broken("embedder.json is missing")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise broken(f"embedder.json is unreadable ({exc})") from exc
        if not isinstance(meta, dict):
            raise broken("embedder.json is not a JSON object")
        missing = [key for key in _REQUIRED_KEYS if key not in meta]
        if missing:
            raise broken(f"embedder.json lacks {', '.join(missing)}")
        dims, max_len, hashes = meta["dimensions"], meta["max_length"], meta["sha256"]
        if not (isinstance(dims, int) and dims > 0 and isinstance(max_len, int) and max_len > 2):
            raise broken("embedder.json has an invalid dimensions or max_length")
        for name in _FILES:
            path = folder / name
            if not path.is_file():
                raise broken(f"{name} is missing")
            if verify:
                expected = hashes.get(name) if isinstance(hashes, dict) else None
                if not expected:
                    raise broken(f"embedder.json has no sha256 for {name}")
                if sha256_file(path) != expected:
                    raise broken(f"{name} does not match its sha256 in embedder.json")

        try:
            tokenizer = load_tokenizer(folder / "tokenizer.json", max_len)
        except Exception as exc:
            raise broken(f"tokenizer.json cannot be loaded ({exc})") from exc
        try:
            session = make_session(str(folder / "model.onnx"), threads)
        except Exception as exc:
            raise broken(f"model.onnx cannot be loaded ({exc})") from exc
        inputs = {i.name for i in session.get_inputs()}
        outputs = {o.name: o.shape for o in session.get_outputs()}
        if not {"input_ids", "attention_mask"} <= inputs or "sentence_embedding" not in outputs:
            raise broken("model.onnx lacks the input_ids/attention_mask -> sentence_embedding I/O")
        if outputs["sentence_embedding"][-1] != dims:
            raise broken(f"model.onnx does not output {dims}-d vectors as embedder.json says")
        embedder = cls(tokenizer, session, dimensions=dims, meta=meta, folder=folder)
        embedder._self_check(broken)
        return embedder

    def _self_check(self, broken: Callable[[str], BundleError]) -> None:
        """Embed the reference text stored at build time; the vector must match (one run)."""
        check = self.meta.get("self_check")
        if not isinstance(check, dict):
            return  # bundles without it still load
        try:
            expected = np.asarray(check["vector"], dtype=np.float32)
            text, min_cosine = str(check["text"]), float(check["min_cosine"])
        except (KeyError, TypeError, ValueError) as exc:
            raise broken(f"embedder.json has a malformed self_check ({exc})") from exc
        if expected.shape != (self._dimensions,):
            raise broken("embedder.json has a self_check vector of the wrong size")
        cosine = float(self.embed_one(text) @ expected)
        if not cosine >= min_cosine:
            import onnxruntime

            raise broken(
                f"model.onnx gives wrong vectors with onnxruntime {onnxruntime.__version__} "
                f"(self-check cosine {cosine:.4f} < {min_cosine})"
            )

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed ``texts``: a C-contiguous float32 array (len(texts), dimensions) of unit rows.

        Texts are tokenised in one parallel call, sorted by token count and batched with
        neighbours of similar length, so little compute goes to padding; rows come back in the
        input order. Each text's vector is independent of its batch. ``progress(n)`` is called
        after each batch with the number of texts it embedded.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts; use embed_one() for one text")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        n = len(texts)
        out = np.empty((n, self._dimensions), dtype=np.float32)
        if n == 0:
            return out
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=n)
        order = np.argsort(-lengths, kind="stable")  # longest first: the biggest batch goes early
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            width = int(lengths[idx[0]])
            ids = np.zeros((len(idx), width), dtype=np.int64)  # 0 is [PAD]
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, j in enumerate(idx):
                length = lengths[j]
                ids[row, :length] = encodings[j].ids
                mask[row, :length] = 1
            (vectors,) = self._session.run(
                ["sentence_embedding"], {"input_ids": ids, "attention_mask": mask}
            )
            out[idx] = vectors
            if progress is not None:
                progress(len(idx))
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Embed a single text: a float32 vector of shape (dimensions,)."""
        return self.embed([text])[0]

    def __repr__(self) -> str:
        quant = self.meta.get("quantization", "?")
        return f"Embedder({self.name!r}, dimensions={self.dimensions}, {quant}, {self.folder})"
