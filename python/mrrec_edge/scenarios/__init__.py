"""Scenario data for training and evaluation: versioned splits and queries from MovieLens 100K
(enriched with the MovieLens 25M keywords), and a prepared workspace whose memory holds no
leakage. See docs/DATASHEET.md for what a built dataset contains."""

from mrrec_edge.scenarios.build import (
    DATASET_VERSION,
    DEFAULT_TARGETS_PER_USER,
    SPLITS,
    build_scenarios,
    history_dir,
    keywords_file,
    load_examples,
    load_manifest,
)
from mrrec_edge.scenarios.prepare import prepare_workspace, prepared_marker
from mrrec_edge.scenarios.queries import CatalogItem, Facet, FacetCatalog, content_words

__all__ = [
    "DATASET_VERSION",
    "DEFAULT_TARGETS_PER_USER",
    "SPLITS",
    "CatalogItem",
    "Facet",
    "FacetCatalog",
    "build_scenarios",
    "content_words",
    "history_dir",
    "keywords_file",
    "load_examples",
    "load_manifest",
    "prepare_workspace",
    "prepared_marker",
]
