"""Named messages (docs/protocol.md §14) end to end on the in-memory transport: a stepped clock,
no sockets, no threads, so each test asserts exact orders."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest

from reverb import (
    EncodeError,
    InvalidState,
    ReverbContext,
    ReverbObject,
    ReverbSide,
    RpcError,
    expose,
)
from reverb.memory import MemoryClient, MemoryNetwork

TICK = 1 / 30


class Ship(ReverbObject):
    def __init__(
        self,
        x: Any = 0,
        *,
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        self.x = x
        super().__init__(
            x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose(anyone=True)
    def mark(self, label: str) -> str:
        LOG.append(("rpc", label))
        return label


LOG: list[tuple[Any, ...]] = []  # the server's handlers, in the order they ran


@pytest.fixture(autouse=True)
def _clear_log() -> None:
    LOG.clear()


class Game:
    def __init__(self, **server_options: Any) -> None:
        self.server = ReverbContext(ReverbSide.SERVER)
        self.server.register(Ship)
        self.net = MemoryNetwork(self.server, **server_options)
        self.seen: dict[int, list[tuple[Any, ...]]] = {}

    def join(self, **options: Any) -> tuple[ReverbContext, MemoryClient]:
        ctx = ReverbContext()
        ctx.register(Ship)
        clt = self.net.connect(ctx, **options)
        log: list[tuple[Any, ...]] = []
        ctx.client_events.on_event("synced")(lambda tick: log.append(("synced", tick)))
        ctx.client_events.on_event("message_error")(
            lambda name, code, reason: log.append(("message_error", name, code, reason))
        )
        for name in ("hi", "news", "near", "before", "after", "echo"):
            ctx.client_messages.on(name)(
                lambda data, name=name, ctx=ctx: log.append(
                    ("msg", name, data, [o.x for o in ctx.get_all_ro_by_type(Ship)])
                )
            )
        self.seen[id(ctx)] = log
        return ctx, clt

    def log(self, ctx: ReverbContext) -> list[tuple[Any, ...]]:
        return self.seen[id(ctx)]

    def msgs(self, ctx: ReverbContext) -> list[tuple[Any, ...]]:
        return [e[:3] for e in self.log(ctx) if e[0] == "msg"]


def test_granted_by_default_and_sent_to_one_client_only() -> None:
    game = Game()
    a, ca = game.join()
    b, _ = game.join()
    game.net.step(TICK)
    assert "messages" in ca.features
    assert game.server.send_message(ca.member, "hi", {"n": 1}) is True
    game.net.step(TICK)
    assert game.msgs(a) == [("msg", "hi", {"n": 1})]
    assert game.msgs(b) == []


def test_data_defaults_to_null_and_keyword_data_works() -> None:
    game = Game()
    a, ca = game.join()
    game.net.step(TICK)
    game.server.send_message(ca.member, "hi")
    game.server.send_message(ca.member, "hi", data=[1, "two"])
    game.net.step(TICK)
    assert game.msgs(a) == [("msg", "hi", None), ("msg", "hi", [1, "two"])]


def test_broadcast_reaches_every_client_but_the_excluded() -> None:
    game = Game()
    clients = [game.join() for _ in range(3)]
    game.net.step(TICK)
    excluded = clients[1][1].member
    assert game.server.broadcast("news", "x", exclude=(excluded,)) == 2
    game.net.step(TICK)
    got = [game.msgs(ctx) for ctx, _ in clients]
    assert got == [[("msg", "news", "x")], [], [("msg", "news", "x")]]


def test_observers_are_the_clients_holding_the_object() -> None:
    game = Game()
    a, _ = game.join()
    b, _ = game.join()
    game.net.step(TICK)
    with game.server.activate():
        ship = Ship(1)
    assert game.server.send_to_observers(ship, "near", 1) == 0  # not synced to anyone yet
    game.net.step(TICK)
    late, _ = game.join()  # connected, not synced: holds nothing yet
    game.server.serve()  # the game loop hears of it, no tick
    assert game.server.broadcast("news") == 3
    assert game.server.send_to_observers(ship, "near", 2) == 2
    assert game.server.send_to_observers(ship.uid, "near", 3) == 2
    game.net.step(TICK)
    near = [[e for e in game.msgs(ctx) if e[1] == "near"] for ctx in (a, b, late)]
    assert near == [[("msg", "near", 2), ("msg", "near", 3)]] * 2 + [[]]
    assert game.server.send_to_observers(ship, "near", 4) == 3  # synced now
    game.server.remove(ship.uid)
    game.net.step(TICK)
    assert game.server.send_to_observers(ship.uid, "near", 5) == 0  # despawned everywhere


def test_a_message_before_the_tick_precedes_its_sync_one_after_follows() -> None:
    game = Game()
    a, ca = game.join()
    with game.server.activate():
        ship = Ship(0)
    game.net.step(TICK)
    assert [o.x for o in a.get_all_ro_by_type(Ship)] == [0]
    game.log(a).clear()
    ship.x = 5
    game.server.send_message(ca.member, "before")
    wait = game.server.server_step(game.net.clock.advance(1.0))  # a tick is due: it ticks
    assert wait == 0.0
    game.server.send_message(ca.member, "after")
    game.net.step(0)
    log = game.log(a)
    tick = game.server.world.tick_count
    assert log == [
        ("msg", "before", None, [0]),  # handled before that tick's sync was applied
        ("synced", tick),
        ("msg", "after", None, [5]),
    ]


def _server_handlers(ctx: ReverbContext) -> None:
    @ctx.server_messages.on("chat")
    def chat(sender: int, data: Any) -> None:
        LOG.append(("chat", sender, data))
        ctx.send_message(sender, "echo", data)

    @ctx.server_messages.on("boom")
    def boom(sender: int, data: Any) -> None:
        raise ZeroDivisionError("secret internal detail")

    @ctx.server_messages.on("no")
    def no(sender: int, data: Any) -> None:
        raise RpcError("not now")


def test_client_messages_reach_the_handler_with_the_sender_id() -> None:
    game = Game()
    _server_handlers(game.server)
    a, ca = game.join()
    game.net.step(TICK)
    a.send_message("chat", {"text": "gg", "member": 999})  # a claimed identity is only data
    ca.send_message("chat", "second")
    assert LOG == []  # handled on the game thread, in server_step
    game.net.step(TICK)
    assert LOG == [
        ("chat", ca.member, {"text": "gg", "member": 999}),
        ("chat", ca.member, "second"),
    ]
    assert game.msgs(a) == [
        ("msg", "echo", {"text": "gg", "member": 999}),
        ("msg", "echo", "second"),
    ]


def test_messages_and_rpcs_of_one_client_run_in_arrival_order() -> None:
    game = Game()
    _server_handlers(game.server)
    with game.server.activate():
        ship = Ship(0)
    a, ca = game.join()
    game.net.step(TICK)
    replica = a.objects[ship.uid]
    replica.compute_server("mark", "r1")
    a.send_message("chat", "m1")
    replica.compute_server("mark", "r2")
    a.send_message("chat", "m2")
    game.net.step(TICK)
    assert LOG == [
        ("rpc", "r1"),
        ("chat", ca.member, "m1"),
        ("rpc", "r2"),
        ("chat", ca.member, "m2"),
    ]


def test_unknown_failing_and_refused_messages_are_answered_and_the_connection_stays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    game = Game()
    _server_handlers(game.server)
    a, ca = game.join()
    game.net.step(TICK)
    with caplog.at_level(logging.INFO, logger="reverb"):
        a.send_message("nobody-listens", 1)
        a.send_message("boom")
        a.send_message("no")
        game.net.step(TICK)
        game.net.step(TICK)
    errors = [e for e in game.log(a) if e[0] == "message_error"]
    assert errors == [
        ("message_error", "nobody-listens", "unknown_message", "no handler for this name"),
        ("message_error", "boom", "handler_error", "the handler failed"),
        ("message_error", "no", "rejected", "not now"),
    ]
    assert "secret internal detail" in caplog.text  # logged on the server, never sent
    assert ca.connected
    a.send_message("chat", "still here")
    game.net.step(TICK)
    assert LOG[-1] == ("chat", ca.member, "still here")


def test_rate_limit_refuses_messages_over_the_call_budget_without_closing() -> None:
    game = Game(max_calls_per_second=5.0)  # bursts of 10
    _server_handlers(game.server)
    a, ca = game.join()
    game.net.step(TICK)
    for i in range(15):
        a.send_message("chat", i)
    game.net.step(0)
    assert [entry[2] for entry in LOG] == list(range(10))
    refused = [e for e in game.log(a) if e[0] == "message_error"]
    assert [e[2] for e in refused] == ["rate_limited"] * 5
    assert game.net.server.stats["limit.call_rate"] == 5
    assert ca.connected


def test_pending_limit_answers_overloaded() -> None:
    game = Game(max_pending_calls=3)
    _server_handlers(game.server)
    a, ca = game.join()
    game.net.step(TICK)
    for i in range(5):
        a.send_message("chat", i)
    game.net.pump_all()  # delivered, not yet polled by the game loop
    game.net.step(0)
    assert [entry[2] for entry in LOG] == [0, 1, 2]
    assert [e[2] for e in game.log(a) if e[0] == "message_error"] == ["overloaded"] * 2
    assert ca.connected


def test_bad_payloads_raise_clear_errors_and_send_nothing() -> None:
    game = Game()
    a, ca = game.join()
    game.net.step(TICK)
    with pytest.raises(EncodeError, match=r"message 'x' data.*finite"):
        a.send_message("x", math.nan)
    with pytest.raises(EncodeError, match="set"):
        game.server.send_message(ca.member, "x", {1, 2})
    with pytest.raises(EncodeError, match="dict key 1"):
        game.server.broadcast("x", {1: "one"})
    for name in ("", "n" * 65):
        with pytest.raises(ValueError, match="1 to 64 characters"):
            a.send_message(name)
        with pytest.raises(ValueError, match="1 to 64 characters"):
            game.server.broadcast(name)
    with pytest.raises(TypeError, match="membership id first"):
        game.server.send_message("hi", {"data": 1})
    with pytest.raises(ValueError, match="1 to 64"):
        game.server.server_messages.on("")
    assert ca.connected


def test_a_client_without_the_feature_gets_nothing_new_and_cannot_send() -> None:
    game = Game()
    old, co = game.join(features=("compact",))
    new, _cn = game.join()
    game.net.step(TICK)
    assert "messages" not in co.features
    assert game.server.send_message(co.member, "hi") is False
    assert game.server.broadcast("news") == 1
    game.net.step(TICK)
    assert game.msgs(old) == []
    assert game.msgs(new) == [("msg", "news", None)]
    with pytest.raises(InvalidState, match="did not grant the 'messages' feature"):
        old.send_message("chat")


def test_a_server_that_does_not_grant_messages() -> None:
    game = Game(features=("compact",))
    _a, ca = game.join()
    game.net.step(TICK)
    assert ca.features == frozenset({"compact"})
    with pytest.raises(InvalidState, match="did not grant the 'messages' feature"):
        ca.send_message("chat", 1)
    assert game.server.broadcast("news") == 0


def test_sending_when_not_connected_is_a_clear_error() -> None:
    ctx = ReverbContext()
    with pytest.raises(InvalidState, match="not connected"):
        ctx.send_message("chat")
    game = Game()
    a, ca = game.join()
    game.net.step(TICK)
    ca.disconnect()
    with pytest.raises(InvalidState, match="closed"):
        a.send_message("chat")


def _plain_client_bytes(with_messages: bool) -> bytes:
    """Everything a protocol-1 client (no features) receives while the server sends
    messages to everyone else (or not)."""
    game = Game()
    _plain, cp = game.join(features=())
    assert cp.link is not None
    received: list[bytes] = []
    session = cp.link.client
    original = session.receive_data

    def record(data: bytes, now: float) -> None:
        received.append(data)
        original(data, now)

    session.receive_data = record  # type: ignore[method-assign]
    other, _ = game.join()
    with game.server.activate():
        ship = Ship(0)
    for i in range(5):
        ship.x = i
        if with_messages:
            game.server.broadcast("news", i)
            game.server.send_to_observers(ship, "near", i)
            game.server.send_message(cp.member, "hi", i)
        game.net.step(TICK)
    if with_messages:
        assert len(game.msgs(other)) > 5
    return b"".join(received)


def test_a_protocol_1_client_receives_byte_identical_output() -> None:
    assert _plain_client_bytes(True) == _plain_client_bytes(False)
    assert b"message" not in _plain_client_bytes(True)


def test_a_message_too_large_for_one_client_skips_only_that_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    game = Game()
    small, cs = game.join(max_frame_size=65536)
    big, _ = game.join()
    game.net.step(TICK)
    with caplog.at_level(logging.ERROR, logger="reverb"):
        assert game.server.broadcast("news", "x" * 70000) == 2
        game.net.step(TICK)
    assert game.msgs(small) == []
    assert len(game.msgs(big)) == 1
    assert cs.connected
    assert "exceeds the client's max_frame" in caplog.text
    assert game.net.server.stats["limit.message_too_large"] == 1


def test_a_client_handler_that_raises_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    game = Game()
    a, ca = game.join()

    @a.client_messages.on("bad")
    def bad(data: Any) -> None:
        raise RuntimeError("oops")

    game.net.step(TICK)
    game.server.send_message(ca.member, "bad")
    game.server.send_message(ca.member, "unhandled-name")
    game.server.send_message(ca.member, "hi", 1)
    with caplog.at_level(logging.WARNING, logger="reverb"):
        game.net.step(TICK)
    assert game.msgs(a) == [("msg", "hi", 1)]
    assert "client message handler for 'bad' raised" in caplog.text
    assert "'unhandled-name' from the server has no handler" in caplog.text
    assert ca.connected


def test_client_only_and_server_only_calls_say_so() -> None:
    game = Game()
    a, _ = game.join()
    with pytest.raises(InvalidState, match="sent by the server"):
        a.broadcast("news")


def test_rpc_caller_answers_inside_a_message_handler() -> None:
    from reverb import rpc_caller

    game = Game()
    seen: list[Any] = []
    game.server.server_messages.on("who")(lambda sender, data: seen.append((sender, rpc_caller())))
    a, ca = game.join()
    game.net.step(TICK)
    a.send_message("who")
    game.net.step(TICK)
    assert seen == [(ca.member, ca.member)]
    assert rpc_caller() is None


def test_the_server_endpoint_sends_through_its_context() -> None:
    game = Game()
    a, ca = game.join()
    with game.server.activate():
        ship = Ship(0)
    game.net.step(TICK)
    server = game.net.server
    assert server.send_message(ca.member, "hi", 1) is True
    assert server.broadcast("news", 2) == 1
    assert server.send_to_observers(ship, "near", 3) == 1
    game.net.step(TICK)
    assert game.msgs(a) == [("msg", "hi", 1), ("msg", "news", 2), ("msg", "near", 3)]
