"""The text embedder: all-MiniLM-L6-v2 exported to ONNX (no torch) and run with onnxruntime."""

from mrrec_edge.embedder.export import build_embedder
from mrrec_edge.embedder.runtime import Embedder

__all__ = ["Embedder", "build_embedder"]
