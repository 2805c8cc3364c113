"""Black-box conformance suite for the Reverb wire protocol (docs/protocol.md).

The driver speaks raw TCP with ``socket``, ``struct`` and ``json`` only; it never
imports ``reverb``. Run it with ``python -m conformance --help``.
"""

__all__: list[str] = []
