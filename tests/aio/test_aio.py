"""The asyncio layer: an AsyncServer and AsyncClients on one event loop, real sockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from reverb import InvalidState, ReverbContext, ReverbObject, ReverbSide, RpcError, expose
from reverb.aio import AsyncClient, AsyncServer


class Ship(ReverbObject):
    def __init__(self, hull=100, uid=None, add_on_init=True, belonging_membership=None):
        self.hull = hull
        super().__init__(
            hull, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def repair(self, amount):
        self.hull += amount
        return self.hull


def contexts() -> tuple[ReverbContext, ReverbContext]:
    server, client = ReverbContext(ReverbSide.SERVER), ReverbContext(ReverbSide.CLIENT)
    server.register(Ship)
    client.register(Ship)
    return server, client


async def until(
    condition: Callable[[], Any], step: Callable[[], Any], timeout: float = 5.0
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await step()


@pytest.mark.timeout(30)
def test_async_server_and_client_replicate_and_call() -> None:
    async def scenario() -> None:
        sctx, cctx = contexts()
        server = AsyncServer(port=0, context=sctx, tick_rate=60)
        await server.start_server()
        client = AsyncClient(port=server.port, context=cctx)
        running = True

        async def serve() -> None:
            while running:
                await server.server_sync()

        loop_task = asyncio.get_running_loop().create_task(serve())
        try:
            await client.connect()
            assert client.member is not None
            with sctx.activate():
                ship = Ship(hull=50, belonging_membership=client.member)
            await until(lambda: ship.uid in cctx.objects, lambda: client.client_sync(0.05))
            replica = cctx.objects[ship.uid]
            assert replica.hull == 50 and replica.is_owner()
            result = await asyncio.wrap_future(replica.compute_server(replica.repair, 7))
            assert result == 57 and ship.hull == 57
            await until(lambda: replica.hull == 57, lambda: client.client_sync(0.05))
            with pytest.raises(RpcError) as refused:
                await asyncio.wrap_future(replica.compute_server("repair", 1, 2))
            assert refused.value.code == "bad_arguments"
            ship.destroy()
            await until(lambda: ship.uid not in cctx.objects, lambda: client.client_sync(0.05))
        finally:
            await client.disconnect()
            running = False
            await loop_task
            await server.stop_server()

    asyncio.run(scenario())


class Game:
    """An AsyncServer and one AsyncClient on the running loop, the server's loop as a task."""

    def __init__(self, client_side: ReverbSide | None = ReverbSide.CLIENT) -> None:
        self.sctx, self.cctx = contexts()
        self.cctx.side = client_side
        self.server = AsyncServer(port=0, context=self.sctx, tick_rate=60)
        self.client: AsyncClient | None = None
        self._running = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> AsyncClient:
        await self.server.start_server()
        self._running = True
        self._task = asyncio.get_running_loop().create_task(self._serve())
        self.client = AsyncClient(port=self.server.port, context=self.cctx)
        await self.client.connect()
        return self.client

    async def _serve(self) -> None:
        while self._running:
            await self.server.server_sync()

    async def spawn(self, hull: int, owner: int | None) -> tuple[Ship, Ship]:
        assert self.client is not None
        with self.sctx.activate():
            ship = Ship(hull=hull, belonging_membership=owner)
        client = self.client
        await until(lambda: ship.uid in self.cctx.objects, lambda: client.client_sync(0.05))
        return ship, self.cctx.objects[ship.uid]

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.disconnect()
        self._running = False
        if self._task is not None:
            await self._task
        await self.server.stop_server()


def run(scenario: Callable[[Game], Any], **options: Any) -> None:
    async def main() -> None:
        game = Game(**options)
        try:
            await scenario(game)
        finally:
            await game.stop()

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_compute_server_on_an_async_client_is_awaited_in_the_loop() -> None:
    async def scenario(game: Game) -> None:
        client = await game.start()
        ship, replica = await game.spawn(10, client.member)
        assert await replica.compute_server(replica.repair, 5) == 15
        with pytest.raises(RpcError) as refused:
            await replica.compute_server("repair")
        assert refused.value.code == "bad_arguments"
        # Several calls in flight, awaited together, each answered.
        values = await asyncio.gather(*(replica.compute_server("repair", 1) for _ in range(5)))
        assert sorted(values) == [16, 17, 18, 19, 20] and ship.hull == 20

    run(scenario)


@pytest.mark.timeout(30)
def test_blocking_on_a_call_inside_the_loop_raises_instead_of_deadlocking() -> None:
    async def scenario(game: Game) -> None:
        client = await game.start()
        _ship, replica = await game.spawn(10, client.member)
        future = replica.compute_server(replica.repair, 1)
        with pytest.raises(InvalidState, match="await"):
            future.result(timeout=5)
        assert await future == 11  # still answered
        assert future.result() == 11  # done: result() is fine now

    run(scenario)


@pytest.mark.timeout(30)
def test_the_blocking_server_sync_refuses_an_async_server() -> None:
    async def scenario(game: Game) -> None:
        await game.start()
        with pytest.raises(InvalidState, match=r"await server\.server_sync\(\)"):
            game.sctx.server_sync()
        with pytest.raises(InvalidState, match=r"await client\.client_sync"):
            game.cctx.client_sync(timeout=0.1)

    run(scenario)


@pytest.mark.timeout(30)
def test_async_connect_sets_the_side_and_reconnects_after_a_close() -> None:
    async def scenario(game: Game) -> None:
        client = await game.start()
        assert game.cctx.side is ReverbSide.CLIENT
        member = client.member
        ship, replica = await game.spawn(3, None)
        despawned: list[Any] = []
        game.cctx.client_events.on_event("object_despawned")(despawned.append)
        assert not game.server.close_member(member + 1, 1008, "kicked")  # no such client
        assert game.server.close_member(member, 1008, "kicked")
        await until(lambda: game.cctx.objects == {}, lambda: client.client_sync(0.05))
        assert despawned == [replica]
        await client.connect()
        assert client.member is not None and client.member != member
        await until(lambda: ship.uid in game.cctx.objects, lambda: client.client_sync(0.05))

    run(scenario, client_side=None)


@pytest.mark.timeout(30)
def test_an_unencodable_field_never_escapes_the_async_server_sync() -> None:
    async def scenario(game: Game) -> None:
        client = await game.start()
        errors: list[Any] = []
        game.sctx.server_events.on_event("sync_error")(lambda obj, exc: errors.append(obj))
        bad, bad_replica = await game.spawn(1, None)
        good, good_replica = await game.spawn(2, None)
        bad.hull = float("inf")
        good.hull = 3
        await until(lambda: good_replica.hull == 3, lambda: client.client_sync(0.05))
        assert bad_replica.hull == 1 and errors == [bad]
        assert game._task is not None and not game._task.done()  # the server loop lives

    run(scenario)


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    try:
        header = await asyncio.wait_for(reader.readexactly(4), 5.0)
        body = await asyncio.wait_for(reader.readexactly(int.from_bytes(header, "big")), 5.0)
    except asyncio.IncompleteReadError:
        return None
    message: dict[str, Any] = json.loads(body)
    return message


@pytest.mark.timeout(30)
def test_an_entry_too_large_for_one_async_client_closes_only_that_client() -> None:
    async def scenario(game: Game) -> None:
        client = await game.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", game.server.port)
        try:
            hello = json.dumps({"type": "hello", "version": 1, "max_frame": 65536}).encode()
            writer.write(len(hello).to_bytes(4, "big") + hello)
            ship, replica = await game.spawn(1, None)
            ship.hull = "h" * 100_000
            closes = []
            while (message := await read_message(reader)) is not None:
                if message["type"] == "close":
                    closes.append(message)
            assert [(c["code"], c["reason"]) for c in closes] == [
                (1009, f"object uid={ship.uid} does not fit the client's max_frame")
            ]
        finally:
            writer.close()
        await until(lambda: replica.hull == ship.hull, lambda: client.client_sync(0.05))
        assert game.server.stats["sync_too_large"] == 1

    run(scenario)


class Slow(ReverbObject):
    def __init__(self, uid=None, add_on_init=True, belonging_membership=None):
        self.n = 0
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose(anyone=True)
    def bump(self):
        self.n += 1
        return self.n


@pytest.mark.timeout(30)
def test_a_cancelled_call_does_not_kill_the_async_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cancelling an awaited call, then receiving its reply, keeps the connection open and
    raises nowhere (no "exception calling callback" logged)."""

    async def scenario() -> None:
        sctx, cctx = ReverbContext(ReverbSide.SERVER), ReverbContext(ReverbSide.CLIENT)
        sctx.register(Slow)
        cctx.register(Slow)
        server = AsyncServer(port=0, context=sctx, tick_rate=60)
        await server.start_server()
        client = AsyncClient(port=server.port, context=cctx)
        running = True

        async def serve() -> None:
            while running:
                await server.server_sync()

        loop_task = asyncio.get_running_loop().create_task(serve())
        try:
            await client.connect()
            with sctx.activate():
                obj = Slow()
            await until(lambda: obj.uid in cctx.objects, lambda: client.client_sync(0.05))
            replica = cctx.objects[obj.uid]
            for _ in range(20):  # cancelled before its reply arrives
                call = asyncio.ensure_future(asyncio.wrap_future(replica.compute_server("bump")))
                await asyncio.sleep(0)
                call.cancel()
            await until(lambda: obj.n == 20, lambda: client.client_sync(0.05))
            assert await replica.compute_server("bump") == 21  # still connected, still answered
        finally:
            await client.disconnect()
            running = False
            await loop_task
            await server.stop_server()

    with caplog.at_level("ERROR"):
        asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


@pytest.mark.timeout(30)
def test_a_late_async_tick_still_lets_the_event_loop_accept_clients() -> None:
    """A game loop whose ticks run later than the tick period still serves new clients."""

    async def scenario() -> None:
        sctx, cctx = contexts()
        server = AsyncServer(port=0, context=sctx, tick_rate=60, handshake_timeout=2.0)
        await server.start_server()
        running = True
        ticks = 0

        async def serve() -> None:
            nonlocal ticks
            while running:
                time.sleep(0.03)  # a tick's game work: twice the 60 Hz period, never awaiting
                await server.server_sync()
                ticks += 1

        loop_task = asyncio.get_running_loop().create_task(serve())
        client = AsyncClient(port=server.port, context=cctx)
        try:
            await client.connect()
            assert client.member is not None
            assert ticks > 0
        finally:
            await client.disconnect()
            running = False
            await loop_task
            await server.stop_server()

    asyncio.run(scenario())


class Echo(ReverbObject):
    def __init__(self, uid=None, add_on_init=True, belonging_membership=None):
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose(anyone=True)
    def echo(self, value):
        return value


@pytest.mark.timeout(30)
def test_reads_land_in_the_loops_one_buffer_and_a_frame_may_span_many_reads() -> None:
    """Issue 9: a connection reads into its loop's one buffer (no 256 KiB allocation per
    read); frames larger than one read, both ways, arrive whole."""
    from reverb.aio._base import READ_SIZE

    async def main() -> None:
        sctx, cctx = ReverbContext(ReverbSide.SERVER), ReverbContext(ReverbSide.CLIENT)
        sctx.register(Echo)
        cctx.register(Echo)
        server = AsyncServer(port=0, context=sctx, tick_rate=60)
        await server.start_server()
        running = True

        async def serve() -> None:
            while running:
                await server.server_sync()

        task = asyncio.get_running_loop().create_task(serve())
        client = AsyncClient(port=server.port, context=cctx)
        try:
            await client.connect()
            with sctx.activate():
                obj = Echo()
            await until(lambda: obj.uid in cctx.objects, lambda: client.client_sync(0.05))
            replica = cctx.objects[obj.uid]
            big = "é" * (2 * READ_SIZE) + "!"  # several reads each way
            assert await replica.compute_server("echo", big) == big
            assert await replica.compute_server("echo", [1, 2]) == [1, 2]
            protos = [client._proto, *server._io.protocols]
            assert len(protos) == 2
            for proto in protos:
                assert isinstance(proto, asyncio.BufferedProtocol)
                assert proto.get_buffer(-1) is proto.owner.read_view
        finally:
            running = False
            await client.disconnect()
            await server.stop_server()
            task.cancel()

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_an_async_server_without_resume_clients_looks_for_housekeeping_once_a_second() -> None:
    """§18's housekeeping runs every HOUSEKEEPING_INTERVAL only while memberships are held or
    "resume" clients are connected; otherwise the event loop wakes for it once a second, as
    the threaded layer does (an idle server's every wake costs CPU)."""
    from reverb.hub import HOUSEKEEPING_IDLE, HOUSEKEEPING_INTERVAL

    async def scenario() -> tuple[float, float]:
        sctx = ReverbContext(ReverbSide.SERVER)
        sctx.register(Ship)
        server = AsyncServer(port=0, context=sctx)
        await server.start_server()
        loop = asyncio.get_running_loop()
        try:
            server._resume_tick()
            assert server._resume_timer is not None
            idle = server._resume_timer.when() - loop.time()
            server.hub.keeper.join(7)  # a "resume" member
            server._resume_tick()
            busy = server._resume_timer.when() - loop.time()
            return idle, busy
        finally:
            await server.stop_server()

    idle, busy = asyncio.run(scenario())
    assert HOUSEKEEPING_IDLE - 0.05 <= idle <= HOUSEKEEPING_IDLE
    assert busy <= HOUSEKEEPING_INTERVAL
