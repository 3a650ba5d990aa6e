"""Widgets of the mrrec-edge TUI."""
