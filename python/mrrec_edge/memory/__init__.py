"""Memory construction (METHOD.md §1): preference patterns per category and the user profile,
derived from behavior records by a summarizer, then written over the old ones."""

from mrrec_edge.memory.build import Chunk, MemoryBuilder, PatternSummary
from mrrec_edge.memory.stats import StatsSummarizer

__all__ = ["Chunk", "MemoryBuilder", "PatternSummary", "StatsSummarizer"]
