"""Give memory back to the operating system after dropped connections freed a lot of it.

A stalled reader's backlog is many chunks of a few hundred KiB; once they are freed, glibc's
allocator keeps the pages for reuse rather than returning them, so a server's RSS would stay
at its peak after an attack. ``malloc_trim(0)`` returns them. Elsewhere (musl, macOS,
Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import sys
import time
from collections.abc import Callable

__all__ = ["TRIM_AFTER", "Trimmer"]

TRIM_AFTER = 1 << 20  # bytes freed by dropped connections before it is worth a trim
TRIM_EVERY = 1.0  # s: at most one trim per second (it walks the allocator's free lists)


def _load() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _load()


class Trimmer:
    """Counts bytes freed by dropped connections; ``maybe_trim`` returns them in bulk."""

    __slots__ = ("_at", "freed")

    def __init__(self) -> None:
        self.freed = 0
        self._at = float("-inf")

    def maybe_trim(self, now: float | None = None) -> bool:
        """Trim if enough was freed and the last trim is not too recent; True if it did."""
        if _TRIM is None or self.freed < TRIM_AFTER:
            return False
        now = time.monotonic() if now is None else now
        if now - self._at < TRIM_EVERY:
            return False
        self._at, self.freed = now, 0
        _TRIM(0)
        return True
