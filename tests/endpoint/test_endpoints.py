"""reverb/endpoints.py: every keyword of ``Server(...)``/``AsyncServer(...)`` and
``Client(...)``/``AsyncClient(...)`` reaches the session, the hub or the I/O layer.

Table-driven: one probe per keyword, each showing the option's *effect* with a non-default
value (a session opened by the endpoint's hub, fed frames at chosen times; no sockets), and a
check that the table names every keyword of the signature, so a new option without a probe,
or an option dropped on its way down, fails here.
"""

from __future__ import annotations

import inspect
import ssl
from collections.abc import Callable
from typing import Any

import pytest

from reverb import Client, ReverbContext, ReverbSide, Server
from reverb.aio import AsyncClient, AsyncServer
from reverb.auth import Reject
from reverb.endpoints import ClientEndpoint, ServerEndpoint
from reverb.memory import Clock, MemoryClient, MemoryNetwork, MemoryServer
from reverb.proto import messages as m
from reverb.proto.framing import DEFAULT_MAX_FRAME_SIZE
from reverb.proto.session import CloseCode, Session, State
from reverb.transport import PeerClosed, PeerDropped
from tests.proto.helpers import SAMPLES, frame, frames, sent

SERVERS = [Server, AsyncServer]
CLIENTS = [Client, AsyncClient]


def memory_server(**options: Any) -> MemoryServer:
    return MemoryServer(Clock(), **options)


def memory_client(**options: Any) -> MemoryClient:
    server = ReverbContext(ReverbSide.SERVER)
    return MemoryClient(MemoryNetwork(server), **options)


# every layer builds its endpoint from the same keywords (the memory one included)
SERVER_FACTORIES: list[Callable[..., ServerEndpoint]] = [*SERVERS, memory_server]
CLIENT_FACTORIES: list[Callable[..., ClientEndpoint]] = [*CLIENTS, memory_client]
IP = "10.0.0.1"
# a well-formed contract (§4.9.1) naming a type the server does not have
OTHER_CONTRACT = {"types": {"Nope": {"init": [], "fields": None, "methods": {}}}}


# -- server side ---------------------------------------------------------------------------


def opened(server: ServerEndpoint, now: float = 0.0, **hello: Any) -> Session:
    """A session the server's hub opened, past its handshake, events handed to the hub."""
    session = server.hub.open(IP, 1000, now)
    session.receive_data(frame(m.Hello(version=1, **hello)), now)
    for event in session.events():
        server.hub.on_event(session, event, now)
    return session


def closed_with(session: Session, code: int, word: str) -> bool:
    """The session closed with ``code`` and a reason containing ``word`` (its ``close``
    frame is still unsent, whoever took its events)."""
    closes = [x for x in sent(session) if isinstance(x, m.Close)]
    return (
        session.closed
        and closes == [m.Close(code=code, reason=closes[0].reason)]
        and (word in closes[0].reason)
    )


def welcome(session: Session) -> m.Welcome:
    (msg,) = [x for x in sent(session) if isinstance(x, m.Welcome)]
    return msg


def probe_tick_rate(s: ServerEndpoint, v: float) -> None:
    assert welcome(opened(s)).tick_rate == v
    assert s.tick_rate == v  # what the context paces its ticks by


def probe_max_frame_size(s: ServerEndpoint, v: int) -> None:
    assert welcome(opened(s)).max_frame == v


def probe_handshake_timeout(s: ServerEndpoint, v: float) -> None:
    session = s.hub.open(IP, 1000, 0.0)
    session.check_timeouts(v - 0.01)
    assert not session.closed
    session.check_timeouts(v)
    assert closed_with(session, CloseCode.POLICY, "handshake timeout")


def probe_frame_timeout(s: ServerEndpoint, v: float) -> None:
    session = opened(s)
    session.receive_data(b"\x00\x00\x00\x10{", 1.0)  # a frame begun, never finished
    session.check_timeouts(1.0 + v - 0.01)
    assert not session.closed
    session.check_timeouts(1.0 + v)
    assert closed_with(session, CloseCode.POLICY, "frame not completed")


def probe_ping_interval(s: ServerEndpoint, v: float) -> None:
    session = opened(s)
    sent(session)
    session.check_timeouts(v - 0.01)
    assert sent(session) == []
    session.check_timeouts(v)
    assert [type(x) for x in sent(session)] == [m.Ping]


def probe_idle_timeout(s: ServerEndpoint, v: float) -> None:
    session = opened(s)
    session.check_timeouts(v - 0.01)
    assert not session.closed
    session.check_timeouts(v)
    assert closed_with(session, CloseCode.POLICY, "idle timeout")


def probe_max_messages_per_second(s: ServerEndpoint, v: float) -> None:
    session = opened(s)
    session.receive_data(frames(*[m.Ping(nonce=i) for i in range(int(2 * v) + 2)]), 0.0)
    assert closed_with(session, CloseCode.POLICY, "message rate")


def probe_max_calls_per_second(s: ServerEndpoint, v: float) -> None:
    session = opened(s)
    calls = [m.Rpc(id=i, uid=1, method="f", args=[]) for i in range(int(2 * v) + 1)]
    session.receive_data(frames(*calls), 0.0)
    refused = [x for x in sent(session) if isinstance(x, m.RpcErrorReply)]
    assert [x.code for x in refused] == ["rate_limited"]


def probe_max_handshake_frame(s: ServerEndpoint, v: int) -> None:
    session = s.hub.open(IP, 1000, 0.0)
    session.receive_data(frame(m.Hello(version=1, auth="x" * v)), 0.0)
    assert closed_with(session, CloseCode.TOO_LARGE, "")


def probe_max_bytes_per_second(s: ServerEndpoint, v: float) -> None:
    # the bucket holds max(2 s worth, one largest frame): more than that at once trips it
    session = opened(s)
    header = DEFAULT_MAX_FRAME_SIZE.to_bytes(4, "big")
    session.receive_data(header + b" " * (DEFAULT_MAX_FRAME_SIZE // 2), 0.0)
    assert not session.closed
    session.receive_data(b" " * (DEFAULT_MAX_FRAME_SIZE // 2), 0.0)
    assert closed_with(session, CloseCode.POLICY, "byte rate")


def probe_authenticate(s: ServerEndpoint, v: Any) -> None:
    assert closed_with(opened(s), CloseCode.UNAUTHORIZED, "nope")


def probe_max_pending_calls(s: ServerEndpoint, v: int) -> None:
    session = opened(s)
    sent(session)
    calls = [m.Rpc(id=i, uid=1, method="f", args=[]) for i in range(v + 1)]
    session.receive_data(frames(*calls), 0.0)
    handed = [s.hub.on_event(session, e, 0.0) for e in session.events()]
    assert sum(e is not None for e in handed) == v
    (refused,) = sent(session)
    assert isinstance(refused, m.RpcErrorReply) and refused.code == "overloaded"


def probe_max_connections(s: ServerEndpoint, v: int) -> None:
    for port in range(v):
        s.hub.open(f"10.0.1.{port}", port, 0.0)
    assert not s.hub.admit("10.0.2.1")
    assert s.stats["limit.connections"] == 1


def probe_max_connections_per_ip(s: ServerEndpoint, v: int) -> None:
    for port in range(v):
        s.hub.open(IP, port, 0.0)
    assert not s.hub.admit(IP)
    assert s.hub.admit("10.0.2.1")


def probe_send_buffer(name: str) -> Callable[[ServerEndpoint, int], None]:
    def probe(s: ServerEndpoint, v: int) -> None:
        assert getattr(s, name) == v  # enforced by the I/O layer (tests/test_sendq.py)

    return probe


def probe_host(s: ServerEndpoint, v: str) -> None:
    assert s.host == v


def probe_port(s: ServerEndpoint, v: int) -> None:
    assert s.requested_port == v


def probe_ssl_context(s: ServerEndpoint, v: ssl.SSLContext) -> None:
    assert s.ssl_context is v


def probe_check_contract(s: ServerEndpoint, v: bool) -> None:
    session = opened(s, contract=OTHER_CONTRACT)
    assert not session.closed  # with check_contract=True this would close 3001
    assert s.hub.types is None


def probe_features(s: ServerEndpoint, v: tuple[str, ...]) -> None:
    session = opened(s, features=["compact", "messages"])
    assert session.features == frozenset(v)  # by default both would be granted


def _dropped(s: ServerEndpoint) -> tuple[int, Any]:
    """A "resume" member whose connection dropped (no close): its member id and the event
    the hub reported."""
    session = opened(s, features=["resume"])
    member = session.member
    session.receive_eof()
    events = [s.hub.on_event(session, e, 0.0) for e in session.events()]
    return member, events[-1]


def probe_resume_grace(s: ServerEndpoint, v: float) -> None:
    member, event = _dropped(s)
    assert isinstance(event, PeerDropped)
    assert s.hub.housekeeping(v - 0.1)[0] == []
    assert [e.member for e in s.hub.housekeeping(v)[0]] == [member]  # 20 s by default


def probe_on_drop(s: ServerEndpoint, v: Any) -> None:
    _, event = _dropped(s)
    assert isinstance(event, PeerClosed)  # the hook says 0: not held


def probe_owned_objects(s: ServerEndpoint, v: str) -> None:
    session = opened(s)
    session.close(1000, "bye", 0.0)
    events = [s.hub.on_event(session, e, 0.0) for e in session.events()]
    assert isinstance(events[-1], PeerClosed) and events[-1].owned == v


def probe_rtt_interval(s: ServerEndpoint, v: float) -> None:
    session = opened(s)
    session.data_to_send()
    session.check_timeouts(v)  # well before the heartbeat's ping_interval
    assert b'"ping"' in session.data_to_send()  # §9.1: a ping to time the round trip


def probe_context(s: ServerEndpoint, v: ReverbContext) -> None:
    assert s.context is v


def probe_client_budget(s: ServerEndpoint, v: float) -> None:
    world = s.context.world
    world.peer_joined(7)  # a client that joins gets the server's default budget (§16.6)
    assert world.budget(7).bytes_per_second == v


def probe_quiet_interval(s: ServerEndpoint, v: float) -> None:
    assert s.context.world.quiet_interval == v  # §19.3: the heartbeat of "quiet" clients


_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
SERVER_OPTIONS: dict[str, tuple[Any, Callable[[Any, Any], None]]] = {
    "host": ("0.0.0.0", probe_host),
    "port": (4321, probe_port),
    "tick_rate": (12.5, probe_tick_rate),
    "max_frame_size": (100_000, probe_max_frame_size),
    "handshake_timeout": (2.0, probe_handshake_timeout),
    "frame_timeout": (3.0, probe_frame_timeout),
    "ping_interval": (1.0, probe_ping_interval),
    "idle_timeout": (2.0, probe_idle_timeout),
    "max_send_buffer": (12345, probe_send_buffer("max_send_buffer")),
    "max_total_send_buffer": (23456, probe_send_buffer("max_total_send_buffer")),
    "max_send_buffer_per_ip": (34567, probe_send_buffer("max_send_buffer_per_ip")),
    "max_pending_calls": (2, probe_max_pending_calls),
    "max_connections": (2, probe_max_connections),
    "max_connections_per_ip": (2, probe_max_connections_per_ip),
    "max_messages_per_second": (10.0, probe_max_messages_per_second),
    "max_calls_per_second": (5.0, probe_max_calls_per_second),
    "max_handshake_frame": (1000, probe_max_handshake_frame),
    "max_bytes_per_second": (1000.0, probe_max_bytes_per_second),
    "authenticate": (lambda credentials, peer: Reject("nope"), probe_authenticate),
    "ssl_context": (_TLS, probe_ssl_context),
    "check_contract": (False, probe_check_contract),
    "features": (("compact",), probe_features),
    "resume_grace": (3.0, probe_resume_grace),
    "on_drop": (lambda info: 0, probe_on_drop),
    "owned_objects": ("destroy", probe_owned_objects),
    "rtt_interval": (1.0, probe_rtt_interval),
    "context": (None, probe_context),  # a fresh context, filled in below
    "client_budget": (5000.0, probe_client_budget),
    "quiet_interval": (2.0, probe_quiet_interval),
}


def keywords(cls: type) -> set[str]:
    return {
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind is not p.VAR_KEYWORD
    }


@pytest.mark.parametrize("cls", SERVERS)
def test_the_server_table_names_every_keyword(cls: type[ServerEndpoint]) -> None:
    assert keywords(cls) == set(SERVER_OPTIONS)


@pytest.mark.parametrize("cls", SERVER_FACTORIES)
@pytest.mark.parametrize("name", sorted(SERVER_OPTIONS))
def test_each_server_option_reaches_where_it_acts(
    cls: Callable[..., ServerEndpoint], name: str
) -> None:
    value, probe = SERVER_OPTIONS[name]
    ctx = ReverbContext(ReverbSide.SERVER)
    if name == "context":
        value = ctx
    server = cls(context=ctx, **{name: value}) if name != "context" else cls(context=ctx)
    probe(server, value)


@pytest.mark.parametrize("name", sorted(SERVER_OPTIONS))
def test_each_server_probe_fails_on_a_server_built_without_its_option(name: str) -> None:
    """A probe shows the option's effect: on a default server it does not pass."""
    value, probe = SERVER_OPTIONS[name]
    if name == "context":
        value = ReverbContext(ReverbSide.SERVER)
    with pytest.raises(AssertionError):
        probe(Server(context=ReverbContext(ReverbSide.SERVER)), value)


def test_the_contract_is_checked_by_default() -> None:
    server = Server(context=ReverbContext(ReverbSide.SERVER))
    assert closed_with(opened(server, contract=OTHER_CONTRACT), CloseCode.CONTRACT_MISMATCH, "")


# -- client side ---------------------------------------------------------------------------


def client_session(c: ClientEndpoint) -> tuple[Session, float, float]:
    """A session from the endpoint, and the bounds of its creation time on the endpoint's
    clock (the I/O layer's: the real one, or a memory network's stepped one)."""
    before = c.clock()
    session = c.new_session()
    return session, before, c.clock()


def hello(session: Session) -> m.Hello:
    (msg,) = sent(session)
    assert isinstance(msg, m.Hello)
    return msg


def welcomed(c: ClientEndpoint) -> tuple[Session, float]:
    """A session past its welcome, and the (monotonic) time the welcome arrived."""
    session, _, now = client_session(c)
    sent(session)
    session.receive_data(frame(SAMPLES[m.Welcome]), now)
    assert session.state is State.OPEN
    return session, now


def cprobe_connect_timeout(c: ClientEndpoint, v: float) -> None:
    session, before, after = client_session(c)
    assert c.connect_timeout == v
    session.check_timeouts(before + v - 0.001)
    assert not session.closed
    session.check_timeouts(after + v)
    assert closed_with(session, CloseCode.POLICY, "handshake timeout")


def cprobe_max_frame_size(c: ClientEndpoint, v: int) -> None:
    session, _, _ = client_session(c)
    assert hello(session).max_frame == v


def cprobe_frame_timeout(c: ClientEndpoint, v: float) -> None:
    session, now = welcomed(c)
    session.receive_data(b"\x00\x00\x00\x10{", now)
    session.check_timeouts(now + v - 0.01)
    assert not session.closed
    session.check_timeouts(now + v)
    assert closed_with(session, CloseCode.POLICY, "frame not completed")


def cprobe_ping_interval(c: ClientEndpoint, v: float) -> None:
    session, now = welcomed(c)
    session.check_timeouts(now + v - 0.01)
    assert sent(session) == []
    session.check_timeouts(now + v)
    assert [type(x) for x in sent(session)] == [m.Ping]


def cprobe_idle_timeout(c: ClientEndpoint, v: float) -> None:
    session, now = welcomed(c)
    session.check_timeouts(now + v - 0.01)
    assert not session.closed
    session.check_timeouts(now + v)
    assert closed_with(session, CloseCode.POLICY, "idle timeout")


def cprobe_credentials(c: ClientEndpoint, v: Any) -> None:
    session, _, _ = client_session(c)
    assert hello(session).auth == v


def cprobe_send_contract(c: ClientEndpoint, v: bool) -> None:
    session, _, _ = client_session(c)
    assert isinstance(hello(session).contract, m.Absent)


def cprobe_features(c: ClientEndpoint, v: tuple[str, ...]) -> None:
    session, _, _ = client_session(c)
    assert hello(session).features == (list(v) if v else m.ABSENT)


def cprobe_attr(name: str) -> Callable[[ClientEndpoint, Any], None]:
    def probe(c: ClientEndpoint, v: Any) -> None:
        assert getattr(c, name) == v

    return probe


def cprobe_ssl_context(c: ClientEndpoint, v: ssl.SSLContext) -> None:
    assert c.ssl_context is v
    assert c.tls_hostname == "127.0.0.1"  # server_hostname defaults to the ip


def cprobe_server_hostname(c: ClientEndpoint, v: str) -> None:
    assert c.server_hostname == v
    assert c.tls_hostname is None  # only with an ssl_context


def cprobe_compression(c: ClientEndpoint, v: bool) -> None:
    session, _, _ = client_session(c)
    assert "deflate" in hello(session).features


def cprobe_reconnect(c: ClientEndpoint, v: bool) -> None:
    session, _, _ = client_session(c)
    assert "resume" in hello(session).features
    assert c.hub.reconnector is not None


def cprobe_context(c: ClientEndpoint, v: ReverbContext) -> None:
    assert c.context is v
    c.new_session()
    assert v.connection is c


def cprobe_rooms(c: ClientEndpoint, v: bool) -> None:
    session, _, _ = client_session(c)
    assert "rooms" in hello(session).features  # protocol §17.2


def cprobe_time_sync(c: ClientEndpoint, v: bool) -> None:
    session, _, _ = client_session(c)
    asked = hello(session).features
    assert "time" not in asked and "compact" in asked  # no "time" (protocol §13.1)


def cprobe_time_ping_interval(c: ClientEndpoint, v: float) -> None:
    session, _, now = client_session(c)
    sent(session)
    welcome = m.Welcome(
        version=1, member=7, tick_rate=20.0, max_frame=65536, features=["time"], time=5.0
    )
    session.receive_data(frame(welcome), now)
    pings = []
    for step in range(1, 200):  # §13.6: a burst of 8 clock pings 0.1 s apart, then every v
        session.check_timeouts(now + step * 0.05)
        pings += [now + step * 0.05 for msg in sent(session) if isinstance(msg, m.Ping)]
    assert len(pings) >= 10
    assert pings[8] - pings[7] == pytest.approx(v, abs=0.06)
    assert pings[7] - pings[0] == pytest.approx(0.7, abs=0.06)


CLIENT_OPTIONS: dict[str, tuple[Any, Callable[[Any, Any], None]]] = {
    "ip": ("10.1.2.3", cprobe_attr("ip")),
    "port": (4321, cprobe_attr("port")),
    "connect_timeout": (2.0, cprobe_connect_timeout),
    "max_frame_size": (70_000, cprobe_max_frame_size),
    "frame_timeout": (3.0, cprobe_frame_timeout),
    "ping_interval": (1.0, cprobe_ping_interval),
    "idle_timeout": (2.0, cprobe_idle_timeout),
    "credentials": ({"token": "t"}, cprobe_credentials),
    "ssl_context": (ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cprobe_ssl_context),
    "server_hostname": ("game.example", cprobe_server_hostname),
    "send_contract": (False, cprobe_send_contract),
    "keep_replicas": (True, cprobe_attr("keep_replicas")),
    "compression": (True, cprobe_compression),
    "features": ((), cprobe_features),
    "time_sync": (False, cprobe_time_sync),
    "time_ping_interval": (3.0, cprobe_time_ping_interval),
    "reconnect": (True, cprobe_reconnect),
    "rooms": (True, cprobe_rooms),
    "context": (None, cprobe_context),
}


@pytest.mark.parametrize("cls", CLIENTS)
def test_the_client_table_names_every_keyword(cls: type[ClientEndpoint]) -> None:
    assert keywords(cls) == set(CLIENT_OPTIONS)


@pytest.mark.parametrize("cls", CLIENT_FACTORIES)
@pytest.mark.parametrize("name", sorted(CLIENT_OPTIONS))
def test_each_client_option_reaches_where_it_acts(
    cls: Callable[..., ClientEndpoint], name: str
) -> None:
    value, probe = CLIENT_OPTIONS[name]
    ctx = ReverbContext()
    client = cls(context=ctx, **{name: value}) if name != "context" else cls(context=ctx)
    probe(client, ctx if name == "context" else value)


@pytest.mark.parametrize("name", sorted(CLIENT_OPTIONS))
def test_each_client_probe_fails_on_a_client_built_without_its_option(name: str) -> None:
    value, probe = CLIENT_OPTIONS[name]
    if name == "context":
        value = ReverbContext()
    with pytest.raises(AssertionError):
        probe(Client(context=ReverbContext()), value)
