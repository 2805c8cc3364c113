"""What the context needs of a connection, whichever I/O layer provides it.

The threaded layer (``reverb.threaded``) and the asyncio layer (``reverb.aio``) both implement
these; events cross from the I/O side to the game side as the small dataclasses below.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from reverb.proto import messages as m
from reverb.proto.session import Closed, Received

__all__ = [
    "ClientEvent",
    "ClientTransport",
    "PeerClosed",
    "PeerMessage",
    "PeerOpened",
    "ServerEvent",
    "ServerTransport",
]


@dataclass(frozen=True)
class PeerOpened:
    member: int
    identity: Any = None
    features: frozenset[str] = frozenset()  # granted in the handshake (§4.11)


@dataclass(frozen=True)
class PeerMessage:
    member: int
    message: m.Message


@dataclass(frozen=True)
class PeerClosed:
    member: int
    code: int
    reason: str


ServerEvent = PeerOpened | PeerMessage | PeerClosed
ClientEvent = Received | Closed


class ServerTransport(Protocol):
    tick_rate: float

    def poll(self) -> list[ServerEvent]:
        """Events since the last call, oldest first."""

    def wait(self, timeout: float) -> None:
        """Block up to ``timeout`` seconds, returning early when an event arrives."""

    def send(self, members: tuple[int, ...], message: m.Message) -> None:
        """Queue a message for those peers (split to fit each peer's frame limit)."""


class ClientTransport(Protocol):
    member: int | None

    def poll(self) -> list[ClientEvent]: ...

    def wait(self, timeout: float) -> None: ...

    def call(self, uid: int, method: str, args: list[Any]) -> Future[Any]: ...

    def abort(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` (the client found the server's data invalid)."""
