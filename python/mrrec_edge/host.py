"""What the machine gives this process: the CPUs it may run on."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the host's count as cpu_count)."""
    # In containers or under taskset os.cpu_count() overstates, and oversubscribing
    # onnxruntime's spinning thread pool is much slower than using fewer threads.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
