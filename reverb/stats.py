"""Per-connection statistics, the same on both sides: ``server.client_stats(member)`` and
``clt.stats`` (docs/monitor.md, "From Python").

The counting is the sans-I/O session's (``reverb.proto.session.Session``), so the threaded
and asyncio layers agree; the I/O layer adds what only it knows (its send buffer, the calls
waiting for the game loop).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from reverb.proto.session import Incident, Role, Session, State

__all__ = ["ConnectionStats", "Incident", "connection_stats"]


@dataclass(frozen=True)
class ConnectionStats:
    """One connection's counters, read at one moment (a copy: it does not change later).

    Directions are this side's: on a server ``frames_sent`` went to that client, on a
    client to the server. Calls are always the client's calls to the server: a server
    counts ``rpcs_received`` and the replies it sent (``rpcs_answered``: ``rpc_result``;
    ``rpcs_failed``: ``rpc_error`` by §8.3 code), a client ``rpcs_sent`` and the replies it
    received. Times are seconds; ``connected_since`` and each incident's ``at`` are wall-clock
    (``time.time()``).
    """

    member: int | None  # the membership id (None: a client before its first welcome)
    side: str  # "server" or "client": whose view of the connection this is
    state: str  # "HANDSHAKE", "OPEN" or "CLOSED"
    connected_since: float | None  # when the handshake completed (None: it has not)
    connected_for: float  # seconds since then (a closed one: until its close)
    bytes_sent: int  # every frame, headers included (§2)
    bytes_received: int
    frames_sent: int
    frames_received: int
    sent_by_kind: dict[str, int]  # frames by message type ("sync", "rpc_result", "ping", ...)
    received_by_kind: dict[str, int]
    syncs_sent: int  # sync frames sent (a server's; a large tick may take several, §7.5)
    syncs_received: int  # sync frames received (a client's)
    syncs_applied: int  # ticks the client's game applied in client_sync() (a client's)
    rpcs_sent: int  # a client's calls
    rpcs_received: int  # a server's calls received
    rpcs_answered: int  # replies with a result
    rpcs_failed: dict[str, int]  # rpc_error replies by code (§8.3), e.g. {"not_owner": 2}
    messages_sent: int  # named messages (§14)
    messages_received: int
    rtt: float | None  # smoothed round-trip time of this side's pings (None: no sample yet)
    rtt_jitter: float  # its mean deviation
    rtt_min: float | None
    rtt_samples: int
    rtt_sum: float  # of every sample (with rtt_samples: a Prometheus summary)
    send_buffer: int  # bytes queued and not yet taken by the network
    send_buffer_limit: int  # max_send_buffer: the peer is dropped (1013) past it
    pending_calls: int  # a server's: this client's calls waiting for the game loop
    incidents: tuple[Incident, ...] = field(default=())  # the last limits, errors, the close

    @classmethod
    def unconnected(cls, send_buffer_limit: int = 0) -> ConnectionStats:
        """A client's before its first ``connect()``: closed, nothing counted."""
        return cls(
            member=None,
            side=Role.CLIENT.value,
            state=State.CLOSED.value,
            connected_since=None,
            connected_for=0.0,
            bytes_sent=0,
            bytes_received=0,
            frames_sent=0,
            frames_received=0,
            sent_by_kind={},
            received_by_kind={},
            syncs_sent=0,
            syncs_received=0,
            syncs_applied=0,
            rpcs_sent=0,
            rpcs_received=0,
            rpcs_answered=0,
            rpcs_failed={},
            messages_sent=0,
            messages_received=0,
            rtt=None,
            rtt_jitter=0.0,
            rtt_min=None,
            rtt_samples=0,
            rtt_sum=0.0,
            send_buffer=0,
            send_buffer_limit=send_buffer_limit,
            pending_calls=0,
        )

    @property
    def connected(self) -> bool:
        return self.state == State.OPEN.value

    @property
    def send_buffer_fill(self) -> float:
        """``send_buffer`` as a fraction of ``send_buffer_limit`` (0.0 to about 1.0)."""
        return self.send_buffer / self.send_buffer_limit if self.send_buffer_limit else 0.0


def connection_stats(
    session: Session,
    *,
    send_buffer: int = 0,
    send_buffer_limit: int = 0,
    pending_calls: int = 0,
    syncs_applied: int = 0,
    now: float | None = None,
) -> ConnectionStats:
    """Read ``session``'s counters (call where its I/O layer lets you touch it); ``now`` is
    the session's clock (default: the monotonic one the I/O layers use)."""
    mono = time.monotonic() if now is None else now
    offset = time.time() - mono  # session clock -> wall clock
    opened = session.opened_at
    sent, received = session.sent_by_kind, session.received_by_kind
    return ConnectionStats(
        member=session.member if opened is not None or session.role is Role.SERVER else None,
        side=session.role.value,
        state=session.state.value,
        connected_since=None if opened is None else opened + offset,
        connected_for=0.0 if opened is None else max(0.0, (session.closed_at or mono) - opened),
        bytes_sent=session.bytes_sent,
        bytes_received=session.bytes_received,
        frames_sent=session.frames_sent,
        frames_received=session.frames_received,
        sent_by_kind=dict(sent),
        received_by_kind=dict(received),
        syncs_sent=sent["sync"],
        syncs_received=received["sync"],
        syncs_applied=syncs_applied,
        rpcs_sent=sent["rpc"],
        rpcs_received=received["rpc"],
        rpcs_answered=sent["rpc_result"] if session.role is Role.SERVER else received["rpc_result"],
        rpcs_failed=dict(session.rpc_errors),
        messages_sent=sent["message"],
        messages_received=received["message"],
        rtt=session.rtt,
        rtt_jitter=session.rtt_jitter,
        rtt_min=session.rtt_min,
        rtt_samples=session.rtt_samples,
        rtt_sum=session.rtt_total,
        send_buffer=send_buffer,
        send_buffer_limit=send_buffer_limit,
        pending_calls=pending_calls,
        incidents=tuple(
            Incident(i.at + offset, i.kind, i.detail, i.code) for i in list(session.incidents)
        ),
    )
