"""The workload every implementation runs: N objects with three fields, mutated at 30 Hz.

``churn`` is the fraction of objects whose every field changes at a tick; the changed objects
are a window that rotates through the world, so each object changes as often as any other.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "FIELDS",
    "RATE",
    "changed_indexes",
    "digest",
    "emit",
    "field_values",
    "initial_values",
    "stdin_commands",
]

RATE = 30.0  # Hz, the tick rate of every implementation
FIELDS = ("x", "y", "hp")
Json = dict[str, Any]


def initial_values(i: int) -> tuple[float, float, int]:
    return float(i), float(-i), 100


def field_values(i: int, tick: int) -> tuple[float, float, int]:
    """The values object ``i`` takes when it changes at ``tick``: all three differ from the
    values it had at any earlier tick."""
    return (tick + i) * 0.5, (tick * 3 + i) * 0.25, 1000 + tick


def changed_indexes(n: int, churn: float, tick: int) -> Iterator[int]:
    """Indexes (0..n-1) of the objects that change at ``tick``."""
    k = round(n * churn)
    if k <= 0:
        return iter(())
    if k >= n:
        return iter(range(n))
    start = (tick * k) % n
    return ((start + j) % n for j in range(k))


def digest(rows: Iterable[tuple[Any, ...]]) -> str:
    """A short hash of a world: rows of (id, x, y, hp), in any order."""
    data = json.dumps(sorted(rows), separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()[:16]


_out_lock = threading.Lock()


def emit(**fields: Any) -> None:
    """One JSON line on stdout (the harness ``Child`` protocol)."""
    line = json.dumps(fields, separators=(",", ":"))
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def stdin_commands(put: Any) -> threading.Thread:
    """Read JSON-line commands from stdin on a thread; ``put(cmd)`` each, ``put(None)`` at EOF."""

    def read() -> None:
        for line in sys.stdin:
            line = line.strip()
            if line:
                try:
                    put(json.loads(line))
                except ValueError:
                    continue
        put(None)

    t = threading.Thread(target=read, name="bench-stdin", daemon=True)
    t.start()
    return t
