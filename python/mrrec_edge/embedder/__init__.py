"""The text embedder: all-MiniLM-L6-v2 as one ONNX graph, run with onnxruntime.

The graph is exported on a workstation (``mrrec_train.embedder_export``, ``mrrec bundle
embedder``); a device only runs it.
"""

from mrrec_edge.embedder.runtime import Embedder

__all__ = ["Embedder"]
