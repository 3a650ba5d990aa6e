"""Text from data (titles, reviews, memories, model output) made safe to put on the screen.

Textual writes a widget's text to the terminal as it is, so an escape sequence inside an item
title or an imported review would reach the terminal and act there (clear it, retitle the
window, hide text). Control characters are shown as their Unicode control pictures instead.
Markup is never an issue: every widget gets ``Content``, which is not parsed for markup.
"""

from __future__ import annotations

_KEEP = {"\n", "\t"}


def _picture(code: int) -> str:
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ … ␟ (ESC is ␛)
    if code == 0x7F:
        return "\u2421"  # ␡
    return "\ufffd"  # a C1 control: no picture of its own


_TABLE = {
    code: _picture(code)
    for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))
    if chr(code) not in _KEEP
}


def printable(text: str) -> str:
    """``text`` with every control character but newline and tab shown as a visible symbol."""
    return text.translate(_TABLE)
