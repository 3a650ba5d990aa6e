"""mrrec-edge: an offline, on-device personal recommendation assistant (MR.Rec)."""

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
