"""``python -m mrrec_edge.tui``: the same as ``mrrec-tui``."""

from mrrec_edge.tui import main

main()
