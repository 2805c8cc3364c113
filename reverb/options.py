"""What a server or a client can be configured with, each option declared once.

``ServerOptions`` and ``ClientOptions`` extend the connection's ``SessionOptions``
(``reverb.proto.options``). The public constructors (``Server``, ``AsyncServer``, ``Client``,
``AsyncClient``) keep their documented keywords and build one of these from them
(``reverb.proto.options.pick``); the hub, the sessions and the monitor read the options
object. Defaults and checks live here only; a test keeps the constructors' keywords and
defaults in step with these fields.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from reverb.auth import Authenticator
from reverb.proto.options import SessionOptions
from reverb.proto.session import DEFLATE, FEATURES, GRANTABLE, QUIET, RESUME, ROOMS, TIME
from reverb.reconnect import ReconnectPolicy
from reverb.replication.world import QUIET_INTERVAL
from reverb.resume import DEFAULT_GRACE, MemberInfo, OwnedPolicy
from reverb.timesync import TIME_PING_INTERVAL

__all__ = [
    "CLIENT_SEND_BUFFER",
    "CONNECT_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "MAX_PENDING_CALLS",
    "SERVER_SEND_BUFFER",
    "SERVER_SEND_BUFFER_PER_IP",
    "SERVER_TOTAL_SEND_BUFFER",
    "ClientOptions",
    "ServerOptions",
]

MAX_PENDING_CALLS = 1024  # §11: calls queued for the game loop per connection
MAX_CONNECTIONS = 1024  # file descriptors are finite; a game needing more shards its servers
# Households and campuses share addresses behind NAT, so this is generous; it stops one host
# from taking every slot.
MAX_CONNECTIONS_PER_IP = 256
# §11: seconds of full-rate syncs of a big world; a stalled reader is dropped long before it
# costs real memory.
SERVER_SEND_BUFFER = 8 << 20
# What every connection together may hold unsent, and the connections of one address: a few
# stalled readers cost at most this, however many connect. Peers that keep up hold almost
# nothing (only bytes older than their latest output count against them), so it is not a
# cap on how much a server sends per tick.
SERVER_TOTAL_SEND_BUFFER = 64 << 20
SERVER_SEND_BUFFER_PER_IP = 16 << 20
CLIENT_SEND_BUFFER = 1 << 20  # a client only sends calls; a megabyte unsent means a dead link
CONNECT_TIMEOUT = 5.0  # a client's: connecting, and the handshake after it (§4.6)


@dataclass(frozen=True)
class ServerOptions(SessionOptions):
    """A server's options: its connections' limits (``SessionOptions``) and its own.
    The meaning of each: ``reverb.endpoints.ServerEndpoint``, guide §10, protocol §11."""

    max_pending_calls: int = MAX_PENDING_CALLS  # §11
    max_connections: int = MAX_CONNECTIONS  # §11
    max_connections_per_ip: int = MAX_CONNECTIONS_PER_IP  # §11
    max_send_buffer: int = SERVER_SEND_BUFFER  # §11: one connection's unsent bytes
    max_total_send_buffer: int | None = SERVER_TOTAL_SEND_BUFFER
    max_send_buffer_per_ip: int | None = SERVER_SEND_BUFFER_PER_IP
    authenticate: Authenticator | None = None  # §4.8
    ssl_context: ssl.SSLContext | None = None  # §4.10
    check_contract: bool = True  # §4.9
    features: Collection[str] = GRANTABLE  # §4.11: what it may grant (kept as a tuple)
    resume_grace: float = DEFAULT_GRACE  # §18: seconds a dropped membership is held
    on_drop: Callable[[MemberInfo], float | None] | None = None  # §18: per-client grace
    owned_objects: OwnedPolicy | str = OwnedPolicy.KEEP  # §18: kept as an OwnedPolicy
    client_budget: float | None = None  # §16.6: bytes per second per client (None: no cap)
    quiet_interval: float = QUIET_INTERVAL  # §19.3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.resume_grace >= 0:
            raise ValueError("resume_grace must be >= 0")
        if not (math.isfinite(self.quiet_interval) and self.quiet_interval > 0):
            raise ValueError("quiet_interval must be a positive number of seconds")
        # normalised once, so that every reader sees one type
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "owned_objects", OwnedPolicy(self.owned_objects))

    @property
    def owned_policy(self) -> OwnedPolicy:
        """``owned_objects`` as the enum it is normalised to."""
        return OwnedPolicy(self.owned_objects)


@dataclass(frozen=True)
class ClientOptions(SessionOptions):
    """A client's options: its connection's limits (``SessionOptions``; its handshake
    deadline is ``connect_timeout``) and its own. The meaning of each:
    ``reverb.endpoints.ClientEndpoint``."""

    connect_timeout: float = CONNECT_TIMEOUT
    credentials: Any = None  # §4.8: any JSON value
    ssl_context: ssl.SSLContext | None = None  # §4.10
    server_hostname: str | None = None
    send_contract: bool = True  # §4.9
    keep_replicas: bool = False
    features: Collection[str] = FEATURES  # §4.11: what it asks for (kept as a tuple)
    compression: bool = False  # §15: also ask for "deflate"
    time_sync: bool = True  # §13: ask for "time" (and "quiet", §19)
    time_ping_interval: float = TIME_PING_INTERVAL  # §13.4
    reconnect: bool | ReconnectPolicy = False  # §18
    rooms: bool = False  # §17

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.connect_timeout > 0:
            raise ValueError("connect_timeout must be a positive number of seconds")
        object.__setattr__(self, "handshake_timeout", self.connect_timeout)
        object.__setattr__(self, "features", tuple(self.features))
        if self.rooms and self.reconnect_policy is not None:
            # a resumed membership does not get its room seat back yet (§18.5 keeps "its
            # seat" only in the default room): refuse the pair rather than resume half of it
            raise ValueError("rooms=True and reconnect cannot be combined yet")

    def asked(self) -> tuple[str, ...]:
        """The features its hello asks for (§4.11): ``features``, without "time" and "quiet"
        unless ``time_sync``, with "deflate" for ``compression`` (§15), "resume" when it
        reconnects by itself (§18) and "rooms" for ``rooms`` (§17.2)."""
        asked = tuple(f for f in self.features if self.time_sync or f not in (TIME, QUIET))
        if self.compression and DEFLATE not in asked:
            asked += (DEFLATE,)
        if self.reconnect_policy is not None and RESUME not in asked:
            asked += (RESUME,)
        if self.rooms and ROOMS not in asked:
            asked += (ROOMS,)
        return asked

    @property
    def reconnect_policy(self) -> ReconnectPolicy | None:
        """The reconnection policy, or None when the client does not reconnect by itself."""
        policy = ReconnectPolicy() if self.reconnect is True else self.reconnect or None
        return policy if policy is not None and policy.enabled else None
