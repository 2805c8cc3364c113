"""What the context needs of a connection, whichever I/O layer provides it.

The threaded layer (``reverb.threaded``) and the asyncio layer (``reverb.aio``) both implement
these; events cross from the I/O side to the game side as the small dataclasses below.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from reverb.proto import messages as m
from reverb.proto.session import Closed, Received, Session, SessionEvent
from reverb.reconnect import ReconnectEvent

if TYPE_CHECKING:
    from reverb.aio import AsyncClient, AsyncServer
    from reverb.threaded import Client, Server

__all__ = [
    "ClientEvent",
    "ClientTransport",
    "ConnectionHandler",
    "PeerClosed",
    "PeerDropped",
    "PeerMessage",
    "PeerOpened",
    "PeerResumed",
    "ServerEvent",
    "ServerTransport",
    "peer_message",
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


def peer_message(member: int, message: m.Message) -> PeerMessage:
    """``PeerMessage(member, message)``, built without the frozen dataclass's ``__init__``
    (one per call received); the same instance."""
    made: PeerMessage = object.__new__(PeerMessage)
    made.__dict__.update(member=member, message=message)
    return made


@dataclass(frozen=True)
class PeerClosed:
    member: int
    code: int
    reason: str
    # §18.5: what becomes of the member's objects ("keep", "release", "destroy")
    owned: str = "keep"


@dataclass(frozen=True)
class PeerDropped:
    """A "resume" member's connection dropped: the membership is held (§18.5)."""

    member: int
    code: int
    reason: str


@dataclass(frozen=True)
class PeerResumed:
    """A held membership resumed on a new connection (§18.4)."""

    member: int
    identity: Any = None
    features: frozenset[str] = frozenset()


ServerEvent = PeerOpened | PeerMessage | PeerClosed | PeerDropped | PeerResumed
ClientEvent = Received | Closed | ReconnectEvent


class ServerTransport(Protocol):
    """What ``ReverbContext`` needs of a server's connection (threaded ``Server``,
    ``AsyncServer``, ``reverb.memory.MemoryServer``).

    No ``wait``: waiting belongs to each I/O layer (a thread blocks, a coroutine awaits, the
    memory network steps a clock); the context only polls and sends, and never blocks.
    """

    @property
    def tick_rate(self) -> float:
        """Syncs per second the server promised its clients in ``welcome`` (§5.2)."""

    def poll(self) -> list[ServerEvent]:
        """Events since the last call, oldest first."""

    def clock(self) -> float:
        """The I/O layer's monotonic time in seconds (the real clock, or ``reverb.memory``'s
        stepped one): the ``now`` the context ticks at, and every default ``now``."""

    def send(self, members: tuple[int, ...], message: m.Message) -> None:
        """Queue a message for those peers (split to fit each peer's frame limit)."""


class ClientTransport(Protocol):
    """What ``ReverbContext`` needs of a client's connection (threaded ``Client``,
    ``AsyncClient``, ``reverb.memory.MemoryClient``). No ``wait``, as above."""

    @property
    def member(self) -> int | None:
        """This connection's membership id (None before ``welcome``)."""

    @property
    def keep_replicas(self) -> bool:
        """Whether replicas outlive the connection (decision 9)."""

    def poll(self) -> list[ClientEvent]:
        """Syncs, rpc errors and the close since the last call, oldest first."""

    def clock(self) -> float:
        """The I/O layer's monotonic time in seconds, as above (the default ``now`` of
        ``render_time``, ``interpolate`` and ``interpolated``)."""

    def call(self, uid: int, method: str, args: list[Any]) -> Future[Any]:
        """Send an ``rpc``; the future resolves with its result or ``RpcError`` (§8)."""

    def send_message(self, name: str, data: Any = None) -> None:
        """Send a ``message`` (§14.2); raises ``InvalidState`` when not connected or when the
        server did not grant ``"messages"``, ``ValueError``/``EncodeError`` for a bad name
        or data."""

    def abort(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` (the client found the server's data invalid)."""


ConnT_contra = TypeVar("ConnT_contra", contravariant=True)


class ConnectionHandler(Protocol[ConnT_contra]):
    """What an I/O loop calls back on the endpoint that owns it (``Server``, ``Client``,
    ``AsyncServer``, ``AsyncClient``): the loop *has* a handler, the endpoint *has* a loop.
    ``ConnT_contra`` is the layer's connection (``threaded._loop.Conn``,
    ``aio._base.SessionProtocol``). Every call comes from the I/O side (the I/O thread, or
    the event loop), holding what guards the connection's session."""

    def open_session(self, ip: str, port: int, now: float) -> Session | None:
        """A session for a new connection from ``ip``:``port``, or None to refuse it (the
        connection limits, §11)."""

    def on_event(self, conn: ConnT_contra, event: SessionEvent) -> None:
        """One of ``conn``'s session events, in order (the hub turns it into game events)."""

    def deliver(self, conn: ConnT_contra, message: m.Message, now: float) -> None:
        """Queue on ``conn``'s session a message the game sent while the session was busy
        being decoded into (a server's; a client never defers)."""


if TYPE_CHECKING:  # mypy --strict checks that each I/O layer honours the contract

    def _implementations(
        server: Server, client: Client, aserver: AsyncServer, aclient: AsyncClient
    ) -> None:
        _s: ServerTransport = server
        _c: ClientTransport = client
        _as: ServerTransport = aserver
        _ac: ClientTransport = aclient
