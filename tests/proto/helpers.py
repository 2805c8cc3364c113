"""Recording doubles for the sans-I/O session: no sockets, no clock, no mocks."""

from __future__ import annotations

from typing import Any

from reverb.proto import messages as m
from reverb.proto.framing import FrameDecoder, encode_frame
from reverb.proto.session import Closed, Role, Session, SessionEvent

# One example of every message type, valid for its receiver (§5).
SAMPLES: dict[type[m.Message], m.Message] = {
    m.Hello: m.Hello(version=1),
    m.Welcome: m.Welcome(version=1, member=7, tick_rate=20.0, max_frame=65536),
    m.Sync: m.Sync(tick=1, full=True, final=True),
    m.Rpc: m.Rpc(id=0, uid=1, method="move", args=[1]),
    m.RpcResult: m.RpcResult(id=0, value=[1, 2]),
    m.RpcErrorReply: m.RpcErrorReply(id=0, code="rejected", message="no"),
    m.Ping: m.Ping(nonce=5),
    m.Pong: m.Pong(nonce=5),
    m.Close: m.Close(code=4000, reason="game over"),
    m.AppMessage: m.AppMessage(name="chat", data={"text": "gg"}),
    m.MessageError: m.MessageError(name="chat", code="unknown_message", reason="no handler"),
}


def frame(message: m.Message) -> bytes:
    return encode_frame(m.encode(message))


def frames(*messages: m.Message) -> bytes:
    return b"".join(frame(message) for message in messages)


def decode_stream(data: bytes) -> list[m.Message]:
    """The messages in a byte stream a session produced."""
    return [m.decode(body) for body in FrameDecoder(max_frame_size=2**32).feed(data)]


def sent(session: Session) -> list[m.Message]:
    """Drain what ``session`` wants to send, decoded."""
    return decode_stream(session.data_to_send())


def server(now: float = 0.0, *, opened: bool = False, **options: Any) -> Session:
    """A server session; with ``opened``, past its handshake with output and events drained."""
    session = Session(Role.SERVER, now, member=options.pop("member", 3), **options)
    if opened:
        session.receive_data(frame(m.Hello(version=1)), now)
        session.data_to_send()
        session.events()
    return session


def client(now: float = 0.0, *, opened: bool = False, **options: Any) -> Session:
    """A client session (it has queued its hello); with ``opened``, past the welcome."""
    session = Session(Role.CLIENT, now, **options)
    if opened:
        session.receive_data(frame(SAMPLES[m.Welcome]), now)
        session.data_to_send()
        session.events()
    return session


def assert_closed_with(session: Session, code: int, *words: str, by_peer: bool = False) -> None:
    """The session has ended with ``code``: one Closed event and, if local, one close frame."""
    events = session.events()
    closes = [e for e in events if isinstance(e, Closed)]
    assert len(closes) == 1, events
    assert closes[0].code == code, closes[0]
    assert closes[0].by_peer is by_peer
    for word in words:
        assert word in closes[0].reason, closes[0]
    assert session.closed
    out = sent(session)
    if by_peer:
        assert not any(isinstance(msg, m.Close) for msg in out), out
    else:
        assert out and out[-1] == m.Close(code=code, reason=closes[0].reason), out


class SessionPair:
    """A client and a server ``Session`` joined in memory; time is stepped by hand."""

    def __init__(
        self,
        now: float = 0.0,
        *,
        member: int = 7,
        handshake: bool = True,
        client_options: dict[str, Any] | None = None,
        server_options: dict[str, Any] | None = None,
    ) -> None:
        self.now = now
        self.client = Session(Role.CLIENT, now, **(client_options or {}))
        self.server = Session(Role.SERVER, now, member=member, **(server_options or {}))
        self.client_events: list[SessionEvent] = []
        self.server_events: list[SessionEvent] = []
        self.to_server: list[m.Message] = []  # everything the client sent, in order
        self.to_client: list[m.Message] = []
        if handshake:
            self.pump()

    def pump(self) -> None:
        """Move bytes both ways until neither side has anything left to send."""
        while True:
            up = self.client.data_to_send()
            if up:
                self.to_server += decode_stream(up)
                self.server.receive_data(up, self.now)
            down = self.server.data_to_send()
            if down:
                self.to_client += decode_stream(down)
                self.client.receive_data(down, self.now)
            self.client_events += self.client.events()
            self.server_events += self.server.events()
            if not up and not down:
                return

    def step(self, seconds: float) -> None:
        """Advance time, run both sides' timers, deliver what they produce."""
        self.now += seconds
        self.client.check_timeouts(self.now)
        self.server.check_timeouts(self.now)
        self.pump()
