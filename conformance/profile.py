"""Limit profiles a server under test may run with (stdlib only: the driver imports it).

``LOW`` is the profile of ``python -m conformance.host --low-limits``; ``python -m conformance
--limits low`` tells the driver that the server runs with it, which enables the cases of
group 10 (limits that the default profile makes too slow or too large to hit).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    handshake_timeout: float  # §4.6
    frame_timeout: float  # §2.6
    ping_interval: float  # §9.2
    idle_timeout: float  # §9.2
    max_messages_per_second: float  # §11, close 1008
    max_calls_per_second: float  # §11, rpc_error rate_limited
    max_pending_calls: int  # §11, rpc_error overloaded
    max_send_buffer: int  # §11, close 1013
    max_bytes_per_second: float  # §11, close 1008 (burst: max(2 s worth, max_frame + 4))
    max_frame: int  # §2.3, the server's own limit

    @property
    def byte_burst(self) -> float:
        return max(2 * self.max_bytes_per_second, self.max_frame + 4)


LOW = Limits(
    handshake_timeout=0.5,
    frame_timeout=0.8,
    ping_interval=0.4,
    idle_timeout=1.5,
    max_messages_per_second=100.0,
    max_calls_per_second=10.0,
    max_pending_calls=4,
    max_send_buffer=65536,
    max_bytes_per_second=32768.0,
    max_frame=65536,
)

PROFILES = {"low": LOW}
