"""mrrec-edge: an offline, on-device personal recommendation assistant (MR.Rec)."""

import os

# Nothing leaves the machine: official onnxruntime builds (and the copy inside
# onnxruntime-genai) upload usage telemetry over HTTPS and keep a device id under ~/.cache
# unless this is set before they initialise. tests/reliability/test_privacy.py caught it.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

from mrrec_edge._core import (
    Item,
    ItemHit,
    MemoryEntry,
    MemoryHit,
    MemoryStore,
    import_kinds,
    ranking_metrics,
)
from mrrec_edge.errors import (
    BundleError,
    ConfigError,
    DenseIndexError,
    DiskError,
    InputError,
    MrrecError,
    NotFoundError,
    StoreError,
    StoreLockedError,
)

__version__ = "0.1.0"

__all__ = [
    "BundleError",
    "ConfigError",
    "DenseIndexError",
    "DiskError",
    "InputError",
    "Item",
    "ItemHit",
    "MemoryEntry",
    "MemoryHit",
    "MemoryStore",
    "MrrecError",
    "NotFoundError",
    "StoreError",
    "StoreLockedError",
    "__version__",
    "import_kinds",
    "ranking_metrics",
]
