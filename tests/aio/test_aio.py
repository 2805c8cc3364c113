"""The asyncio layer: an AsyncServer and AsyncClients on one event loop, real sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from reverb import ReverbContext, ReverbObject, ReverbSide, RpcError, expose
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
