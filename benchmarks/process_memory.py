"""This process's memory, for the benchmarks that report it (decode.py, assistant.py)."""

from __future__ import annotations

from pathlib import Path


def rss_kib() -> dict[str, int]:
    """Current (VmRSS) and peak (VmHWM) RSS of this process in KiB (Linux /proc; ru_maxrss
    would include the parent's peak, as Linux keeps it across fork and exec)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields
