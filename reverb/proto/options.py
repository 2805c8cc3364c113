"""The limits and timers of one connection (protocol §11), each declared once.

``SessionOptions`` is what a ``Session`` reads; ``reverb.options`` extends it with what a
server or a client adds. A value is checked here, once, whichever constructor it came
through.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from reverb.proto.framing import DEFAULT_MAX_FRAME_SIZE

__all__ = [
    "BURST_SECONDS",
    "FRAME_TIMEOUT",
    "HANDSHAKE_TIMEOUT",
    "IDLE_TIMEOUT",
    "MAX_BYTES_PER_SECOND",
    "MAX_CALLS_PER_SECOND",
    "MAX_HANDSHAKE_FRAME",
    "MAX_MESSAGES_PER_SECOND",
    "PING_INTERVAL",
    "TICK_RATE",
    "SessionOptions",
    "pick",
]

TICK_RATE = 30.0  # Hz: a server's syncs per second (§7), announced in welcome.tick_rate
# §2.7: a hello is a few hundred bytes (a contract a few KiB); an unauthenticated peer must not
# make the server buffer and parse megabytes before it is even admitted.
MAX_HANDSHAKE_FRAME = 65536
HANDSHAKE_TIMEOUT = 5.0  # §4.6: a real client says hello within one round trip
FRAME_TIMEOUT = 10.0  # §2.6: 1 MiB at a modest 1 Mbit/s takes ~8 s
PING_INTERVAL = 5.0  # §9.2
IDLE_TIMEOUT = 15.0  # §9.2: three missed pings; a killed host is found well inside a minute
# §11: a game client sends a few calls per frame; these leave an order of magnitude of room
# while bounding what one connection can make the server parse and run.
MAX_MESSAGES_PER_SECOND = 1000.0
MAX_CALLS_PER_SECOND = 200.0
BURST_SECONDS = 2.0  # a bucket holds this many seconds' worth: bursts pass, floods do not
# §11: what one connection may make the server read and decode. A game client sends calls of
# a few hundred bytes; a megabyte a second is thousands of them, yet bounds the CPU one peer
# can spend of the server's (~0.05-0.15 s to decode a MiB).
MAX_BYTES_PER_SECOND = 1048576.0

_O = TypeVar("_O", bound="SessionOptions")


@dataclass(frozen=True)
class SessionOptions:
    """One connection's limits and timers (§11). Immutable: derive a changed copy with
    ``dataclasses.replace``."""

    tick_rate: float = TICK_RATE  # a server's, announced in welcome (§4.4)
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE  # §2.3, and what a client announces (§4.2)
    handshake_timeout: float = HANDSHAKE_TIMEOUT  # §4.6
    frame_timeout: float = FRAME_TIMEOUT  # §2.6
    ping_interval: float = PING_INTERVAL  # §9.2
    idle_timeout: float = IDLE_TIMEOUT  # §9.2
    max_messages_per_second: float = MAX_MESSAGES_PER_SECOND  # §11.2, server side
    max_calls_per_second: float = MAX_CALLS_PER_SECOND  # §11.2, server side
    max_handshake_frame: int = MAX_HANDSHAKE_FRAME  # §2.7, server side
    max_bytes_per_second: float = MAX_BYTES_PER_SECOND  # §11.2, server side
    rtt_interval: float | None = None  # §9.1: a ping this often times the round trip

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tick_rate) and self.tick_rate > 0):
            raise ValueError("tick_rate must be positive")
        if self.rtt_interval is not None and not self.rtt_interval > 0:
            raise ValueError("rtt_interval must be a positive number of seconds or None")


def pick(cls: type[_O], values: Mapping[str, Any]) -> _O:
    """``cls`` built from the entries of ``values`` that name its fields (a constructor's
    ``locals()``, so that its documented keywords reach the options without a second list)."""
    return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})
