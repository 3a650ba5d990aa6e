"""The on-device language model: an onnxruntime-genai folder (a bundle's ``llm/``), streamed."""

from mrrec_edge.model.picking import GUIDANCE_KINDS
from mrrec_edge.model.runtime import GenerationStats, LanguageModel

__all__ = ["GUIDANCE_KINDS", "GenerationStats", "LanguageModel"]
