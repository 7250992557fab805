"""Cutting UTF-8 bytes without splitting a character: at the output cap, and in between
chunks of one stream."""

from __future__ import annotations


def _continuation(byte: int) -> bool:
    return 0x80 <= byte <= 0xBF


def unfinished(data: bytes) -> int:
    """How many bytes at the end of ``data`` begin a UTF-8 character it does not finish."""
    for back in range(1, min(4, len(data) + 1)):
        lead = data[-back]
        if _continuation(lead):
            continue
        return back if back < _length(lead) else 0
    return 0


def _length(lead: int) -> int:
    """Bytes in the UTF-8 character that ``lead`` begins (1 for anything that begins none)."""
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 1


def boundary(data: bytes, limit: int) -> int:
    """The largest cut at most ``limit`` that does not split a UTF-8 character."""
    cut = min(limit, len(data))
    for _ in range(3):
        if cut == len(data) or cut == 0 or not _continuation(data[cut]):
            break
        cut -= 1
    return cut
