"""``python -m harness bench``: Reverb (threaded and asyncio) against a raw-JSON baseline.

The *raw* baseline (``raw_server.py``) is the simplest possible server: asyncio, 4-byte
big-endian length + stdlib ``json``, the full state encoded once per tick and sent to every
client. Reverb runs the same workload through its normal API (``reverb_server.py``); clients
(``clients.py``) are light processes holding many connections each. ``runner.py`` drives the
grid, ``report.py`` writes the JSON and the HTML report. See ``harness/README.md``.
"""

from __future__ import annotations

__all__: list[str] = []
