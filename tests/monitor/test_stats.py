"""Per-connection statistics: counted in the sans-I/O session, read as ``ConnectionStats``
from ``server.client_stats(member)`` and ``clt.stats`` on both I/O layers."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from reverb import (
    Client,
    InvalidState,
    ReverbContext,
    ReverbManager,
    ReverbObject,
    ReverbSide,
    RpcError,
    Server,
    expose,
)
from reverb.aio import AsyncClient, AsyncServer
from reverb.errors import CloseCode
from reverb.proto import messages as m
from reverb.proto.session import MAX_INCIDENTS, Role, Session
from reverb.stats import ConnectionStats, connection_stats


class Ship(ReverbObject):
    def __init__(self, hull=100, uid=None, add_on_init=True, belonging_membership=None):
        self.hull = hull
        super().__init__(
            hull, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def repair(self, amount):
        if amount < 0:
            raise RpcError("no negative repairs")
        self.hull += amount
        return self.hull


def contexts() -> tuple[ReverbContext, ReverbContext]:
    server, client = ReverbContext(ReverbSide.SERVER), ReverbContext(ReverbSide.CLIENT)
    server.register(Ship)
    client.register(Ship)
    return server, client


# -- the session, sans I/O --------------------------------------------------------------------


def pair(now: float = 0.0, **server: Any) -> tuple[Session, Session]:
    srv = Session(Role.SERVER, now, member=7, **server)
    clt = Session(Role.CLIENT, now)
    shuttle(clt, srv, now)
    shuttle(srv, clt, now)
    return srv, clt


def shuttle(src: Session, dst: Session, now: float) -> None:
    dst.receive_data(src.data_to_send(), now)
    src.events()
    dst.events()


def test_both_sides_count_the_same_traffic() -> None:
    srv, clt = pair()
    clt.send(m.Rpc(id=1, uid=3, method="repair", args=[1]), 0.1)
    clt.send(m.Rpc(id=2, uid=3, method="repair", args=[-1]), 0.1)
    shuttle(clt, srv, 0.1)
    srv.send(m.RpcResult(id=1, value=101), 0.2)
    srv.send(m.RpcErrorReply(id=2, code="rejected", message="no"), 0.2)
    srv.send_encoded("sync", m.encode(m.Sync(tick=1, full=True, final=True, time=0.2)), 0.2)
    shuttle(srv, clt, 0.2)
    s, c = connection_stats(srv, now=1.0), connection_stats(clt, now=1.0)
    assert (s.side, c.side) == ("server", "client")
    assert s.member == c.member == 7 and s.connected and c.connected
    assert c.rpcs_sent == s.rpcs_received == 2
    assert c.rpcs_answered == s.rpcs_answered == 1
    assert c.rpcs_failed == s.rpcs_failed == {"rejected": 1}
    assert s.syncs_sent == c.syncs_received == 1
    assert (c.frames_sent, c.bytes_sent) == (s.frames_received, s.bytes_received)
    assert (s.frames_sent, s.bytes_sent) == (c.frames_received, c.bytes_received)
    assert s.sent_by_kind == {"welcome": 1, "rpc_result": 1, "rpc_error": 1, "sync": 1}
    assert c.connected_for == pytest.approx(1.0)
    assert c.connected_since is not None and abs(c.connected_since - time.time() + 1.0) < 0.5


def test_rtt_probe_times_the_pong_and_is_off_by_default() -> None:
    srv, clt = pair(rtt_interval=1.0)
    assert srv.next_deadline() == 1.0  # the probe is the earliest thing due
    srv.check_timeouts(1.0)
    clt.receive_data(srv.data_to_send(), 1.1)  # the ping
    srv.receive_data(clt.data_to_send(), 1.25)  # its pong
    stats = connection_stats(srv, now=2.0)
    assert stats.rtt == pytest.approx(0.25) and stats.rtt_samples == 1
    assert stats.sent_by_kind["ping"] == 1 and stats.received_by_kind["pong"] == 1
    assert srv.next_deadline() == pytest.approx(2.0)
    quiet, _ = pair()
    quiet.check_timeouts(1.0)  # §9.2: nothing to do before the ping interval without it
    assert quiet.data_to_send() == b"" and quiet.rtt is None


def test_a_pong_not_answering_our_ping_is_no_sample() -> None:
    srv, clt = pair(rtt_interval=1.0)
    clt.send_encoded("pong", m.encode(m.Pong(nonce=99)), 0.5)
    srv.receive_data(clt.data_to_send(), 0.6)
    assert srv.rtt is None and srv.rtt_samples == 0 and not srv.closed


def test_incidents_record_the_limit_the_error_and_the_close_bounded() -> None:
    srv, clt = pair(max_calls_per_second=1.0)  # a bucket of 2 calls
    for i in range(3):
        clt.send(m.Rpc(id=i, uid=1, method="x", args=[]), 0.1)
    shuttle(clt, srv, 0.1)
    srv.receive_data(b"\x00\x00\x00\x02{}", 0.2)  # no type: a protocol error
    kinds = [(i.kind, i.code) for i in srv.incidents]
    assert kinds == [
        ("limit", None),
        ("protocol_error", CloseCode.PROTOCOL_ERROR),
        ("closed", CloseCode.PROTOCOL_ERROR),
    ]
    assert srv.incidents[0].detail == "call_rate: call 2 refused"
    assert srv.incidents[2].detail == "by this side: message has no string 'type'"
    assert srv.incidents[2].at == 0.2
    assert connection_stats(srv).rpcs_failed == {"rate_limited": 1}
    for i in range(2 * MAX_INCIDENTS):
        srv.note_incident("limit", f"n{i}", 1.0)
    assert len(srv.incidents) == MAX_INCIDENTS
    assert srv.incidents[-1].detail == f"n{2 * MAX_INCIDENTS - 1}"


# -- the threaded layer -----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_threaded_server_and_client_stats() -> None:
    sctx, cctx = contexts()
    server = Server(port=0, context=sctx, tick_rate=60, rtt_interval=0.1)
    server.start_server()
    with sctx.activate():
        Ship(belonging_membership=1)  # the first member's
    stopping = threading.Event()

    def run_game() -> None:
        while not stopping.is_set():
            sctx.server_sync()

    game = threading.Thread(target=run_game)
    game.start()
    client = Client(port=server.port, context=cctx)
    assert client.stats.state == "CLOSED" and client.stats.member is None
    try:
        client.connect()
        member = client.member
        assert member is not None
        deadline = time.monotonic() + 10
        while not cctx.objects:
            assert time.monotonic() < deadline
            cctx.client_sync(timeout=0.05)
        (ship,) = cctx.objects.values()
        assert ship.compute_server(ship.repair, 1).result(5) == 101
        with pytest.raises(RpcError):
            ship.compute_server(ship.repair, -1).result(5)

        def settled() -> tuple[ConnectionStats, ConnectionStats] | None:
            cctx.client_sync(timeout=0.02)
            s, c = server.client_stats(member), client.stats
            assert s is not None
            if s.rtt_samples >= 2 and c.syncs_applied >= 3 and c.rpcs_failed:
                return s, c
            return None

        while (got := settled()) is None:
            assert time.monotonic() < deadline, "stats did not settle"
        s, c = got
        assert isinstance(s, ConnectionStats) and s.side == "server" and c.side == "client"
        assert s.member == c.member == member
        assert c.rpcs_sent == s.rpcs_received == 2
        assert c.rpcs_answered == s.rpcs_answered == 1
        assert c.rpcs_failed == s.rpcs_failed == {"rejected": 1}
        assert s.rtt is not None and 0 < s.rtt < 1.0
        assert s.send_buffer_limit == server.max_send_buffer and 0 <= s.send_buffer_fill < 1
        assert c.syncs_applied <= c.syncs_received
        assert s.connected_since is not None and s.connected_since <= time.time()
        assert server.client_stats(member + 1000) is None  # unknown id: None
        assert sctx.client_stats(member) is not None  # the context delegates to it
        client.disconnect()
        assert client.stats.state == "CLOSED" and client.stats.rpcs_sent == 2  # final figures
        assert client.stats.incidents[-1].kind == "closed"
        assert client.stats.connected_for > 0 and not client.stats.connected
        deadline = time.monotonic() + 5
        while server.client_stats(member) is not None:  # gone: None again
            assert time.monotonic() < deadline
            time.sleep(0.01)  # polling the I/O thread's bookkeeping, bounded by the deadline
    finally:
        client.disconnect()
        stopping.set()
        game.join(5)
        server.stop_server()


def test_client_stats_needs_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidState, match=r"clt\.stats"):
        ReverbContext(ReverbSide.CLIENT).client_stats(1)

    class Stub:
        def client_stats(self, member: int) -> Any:
            return ("stats of", member)

    monkeypatch.setattr(ReverbManager.context, "connection", Stub())
    assert ReverbManager.client_stats(3) == ("stats of", 3)  # the facade delegates


# -- the asyncio layer ------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_async_server_and_client_stats() -> None:
    async def scenario() -> None:
        sctx, cctx = contexts()
        server = AsyncServer(port=0, context=sctx, tick_rate=60, rtt_interval=0.1)
        await server.start_server()
        with sctx.activate():
            Ship(belonging_membership=1)
        client = AsyncClient(port=server.port, context=cctx)
        running = True

        async def serve() -> None:
            while running:
                await server.server_sync()

        task = asyncio.get_running_loop().create_task(serve())
        try:
            await client.connect()
            member = client.member
            assert member is not None
            deadline = time.monotonic() + 10
            while not cctx.objects:
                assert time.monotonic() < deadline
                await client.client_sync(0.05)
            (ship,) = cctx.objects.values()
            assert await ship.compute_server(ship.repair, 2) == 102
            with pytest.raises(RpcError):
                await ship.compute_server(ship.repair, -2)
            while True:
                await client.client_sync(0.02)
                s, c = server.client_stats(member), client.stats
                assert s is not None
                if s.rtt_samples >= 2 and c.syncs_applied >= 3:
                    break
                assert time.monotonic() < deadline, "stats did not settle"
            assert c.rpcs_sent == s.rpcs_received == 2
            assert c.rpcs_failed == s.rpcs_failed == {"rejected": 1}
            assert s.rtt is not None and 0 < s.rtt < 1.0
            assert server.client_stats(member + 1000) is None
            await client.disconnect()
            assert client.stats.state == "CLOSED"
        finally:
            running = False
            await task
            await client.disconnect()
            await server.stop_server()

    asyncio.run(scenario())
