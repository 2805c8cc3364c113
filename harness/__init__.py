"""Reverb's multi-process test harness: scenarios that check Reverb's promises between real
processes, on real loopback sockets, across interpreters, under load and network faults.

``python -m harness SCENARIO [options]`` runs one scenario; see ``harness/README.md``.
Modules: ``procs`` (child processes), ``app`` (the server and client child programs),
``breakage`` (deliberate bugs for proving the scenarios catch them), ``proxy`` (the fault
proxy), ``canon`` (canonical world hashes), ``metrics``, ``report`` and ``scenarios``.
"""

__all__: list[str] = []
