"""Screens of the mrrec-edge TUI."""
