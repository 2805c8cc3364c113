"""The short RPC path (issue 9): a reply is written by the game thread (threaded server) or in
the same loop iteration (asyncio) when nothing else of the connection waits. These tests hold
what must not change: frames keep the order the server queued them in, a reply is never lost
when the socket would block, and under concurrent callers every call is answered exactly once.

Real server processes (``tests/hostile/app.py``), real sockets; every wait bounded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from reverb import ReverbContext, ReverbSide
from reverb.aio import AsyncClient
from tests.hostile.app import TYPES
from tests.hostile.conftest import Good, ServerProcess
from tests.hostile.raw import Raw

LAYERS = ["threaded", "aio"]
FAST = {"max_calls_per_second": 1e6, "max_messages_per_second": 1e6}


@pytest.fixture(params=LAYERS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    proc = ServerProcess(layer=request.param, max_send_buffer=64 << 20, **FAST)
    try:
        yield proc
    finally:
        proc.close()


def own_avatar(raw: Raw, member: int, timeout: float = 10.0) -> int:
    """The uid of the avatar the server spawned for ``member`` (from the syncs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = raw.recv(max(0.01, deadline - time.monotonic()))
        assert message is not None
        if message["type"] == "sync":
            for entry in message.get("spawn", []):
                if entry.get("owner") == member and entry.get("type") == "Avatar":
                    return int(entry["uid"])
    raise AssertionError("no avatar spawned for this client")


class TickOrder:
    """Reads frames in arrival order and checks the replies to ``tick()``. That method
    answers the server's latest tick k; while churn runs, every tick sends this client a
    sync, so reply k must arrive after the sync of tick k (queued before it: a reply written
    at once must never overtake it) and before the sync of tick k + 1."""

    def __init__(self, raw: Raw, last_tick: int) -> None:
        self.raw = raw
        self.last_tick = last_tick
        self.answers: dict[int, int] = {}

    def read(self, timeout: float) -> None:
        message = self.raw.recv(timeout)
        assert message is not None, f"connection ended after {len(self.answers)} answers"
        if message["type"] == "sync":
            assert message["tick"] > self.last_tick
            self.last_tick = message["tick"]
        elif message["type"] == "rpc_result":
            assert message["id"] not in self.answers, "a call was answered twice"
            self.answers[message["id"]] = message["value"]
            assert message["value"] == self.last_tick, (message, self.last_tick)
        else:
            assert message["type"] == "ping", message

    def until_answered(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answers) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"{len(self.answers)} of {count} answered in {timeout} s"
            self.read(left)


def tick_call(call_id: int, uid: int) -> dict[str, Any]:
    return {"type": "rpc", "id": call_id, "uid": uid, "method": "tick", "args": []}


def churning(raw: Raw, timeout: float = 10.0) -> int:
    """Read until a sync carries churn (a crate's weight rewritten as a string); its tick."""
    deadline = time.monotonic() + timeout
    while True:
        message = raw.recv(max(0.01, deadline - time.monotonic()))
        assert message is not None
        if message["type"] == "sync" and any(
            isinstance(entry.get("fields", {}).get("weight"), str) for entry in message["update"]
        ):
            return int(message["tick"])


def test_frames_keep_the_order_they_were_queued_in(server: ServerProcess) -> None:
    """``tick()`` answers the server's latest tick k. With churn, every tick sends this
    client a sync, so the reply must arrive after the sync of tick k (queued before it: a
    reply written at once must not overtake it) and before the sync of tick k + 1."""
    raw = Raw(server.port)
    try:
        member = raw.hello()["member"]
        uid = own_avatar(raw, member)
        server.send("spawn", n=1)
        server.expect("spawned")
        server.send("churn", on=True, size=10)
        server.expect("churn")
        order = TickOrder(raw, churning(raw))
        for call_id in range(300):  # a few in flight, so that replies race the ticks
            raw.send(tick_call(call_id, uid))
            if call_id >= 4:
                order.until_answered(call_id - 3, timeout=10.0)
        order.until_answered(300, timeout=10.0)
        assert sorted(order.answers) == list(range(300))
    finally:
        raw.close()


def test_a_reply_is_not_lost_when_the_socket_would_block(server: ServerProcess) -> None:
    raw = Raw(server.port, rcvbuf=4096)
    try:
        member = raw.hello()["member"]
        uid = own_avatar(raw, member)
        server.send("spawn", n=4)
        server.expect("spawned")
        server.send("churn", on=True, size=4000)  # ~16 KB per tick into a 4 KB window
        server.expect("churn")
        # the kernel's buffers on both sides are full: the server holds output it cannot send
        server.until(lambda state: state["backlog"] > 0, timeout=20.0)
        order = TickOrder(raw, churning(raw))
        raw.send(*(tick_call(i, uid) for i in range(200)))  # answered into a full socket
        server.until(lambda state: state["executed"].get("tick", 0) == 200)
        order.until_answered(200, timeout=30.0)
        assert sorted(order.answers) == list(range(200))
    finally:
        raw.close()


CALLERS = 8
CALLS = 500
WINDOW = 16  # calls in flight per caller


def hammer(call: Any, results: list[Any], errors: list[BaseException]) -> None:
    """``CALLS`` calls of ``move(1)``, at most ``WINDOW`` in flight; the values they return."""
    try:
        pending: list[Future[Any]] = []
        for _ in range(CALLS):
            pending.append(call())
            if len(pending) >= WINDOW:
                results.append(pending.pop(0).result(timeout=20))
        results.extend(future.result(timeout=20) for future in pending)
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def test_concurrent_callers_are_each_answered_once_threaded_clients(
    server: ServerProcess,
) -> None:
    goods = [Good(server.port) for _ in range(CALLERS)]
    try:
        results: list[list[Any]] = [[] for _ in goods]
        errors: list[BaseException] = []
        threads = [
            threading.Thread(
                target=hammer,
                args=(lambda g=good: g.avatar.compute_server("move", 1), results[i], errors),
            )
            for i, good in enumerate(goods)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        # each caller moves its own avatar: the values returned are 1..CALLS, each once
        for values in results:
            assert sorted(values) == list(range(1, CALLS + 1))
        assert server.state()["executed"]["move"] == CALLERS * CALLS
    finally:
        for good in goods:
            good.close()


def test_concurrent_callers_are_each_answered_once_asyncio_clients(
    server: ServerProcess,
) -> None:
    async def caller() -> list[Any]:
        ctx = ReverbContext(ReverbSide.CLIENT)
        for cls in TYPES:
            ctx.register(cls)
        client = AsyncClient(port=server.port, context=ctx)
        await client.connect()
        try:
            deadline = time.monotonic() + 10.0
            mine: list[Any] = []
            while not mine:
                assert time.monotonic() < deadline, "no avatar"
                await client.client_sync(timeout=0.05)
                mine = [o for o in ctx.objects.values() if o.belonging_membership == client.member]
            avatar = mine[0]
            values: list[Any] = []
            pending: list[Any] = []
            for _ in range(CALLS):
                pending.append(avatar.compute_server("move", 1))
                if len(pending) >= WINDOW:
                    values.append(await asyncio.wait_for(pending.pop(0), 20))
                    await client.client_sync()  # the game loop applies syncs meanwhile
            values += [await asyncio.wait_for(call, 20) for call in pending]
            return values
        finally:
            await client.disconnect()

    async def main() -> list[list[Any]]:
        return await asyncio.gather(*(caller() for _ in range(CALLERS)))

    for values in asyncio.run(main()):
        assert sorted(values) == list(range(1, CALLS + 1))
    assert server.state()["executed"]["move"] == CALLERS * CALLS
