"""Starting and stopping servers and clients leaves no thread or socket behind."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from reverb import Client, HandshakeFailed, ReverbContext, ReverbObject, ReverbSide, Server
from reverb.aio import AsyncServer
from tests.hostile.raw import Raw


class Token(ReverbObject):
    def __init__(self, n=0, uid=None, add_on_init=True, belonging_membership=None):
        self.n = n
        super().__init__(
            n, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle(baseline_threads: int, deadline: float) -> None:
    while threading.active_count() > baseline_threads and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for threads to finish exiting, bounded by the deadline


@pytest.mark.timeout(60)
def test_repeated_start_stop_connect_disconnect_leaks_nothing() -> None:
    threads, fds = threading.active_count(), open_fds()
    for _ in range(10):
        sctx, cctx = ReverbContext(ReverbSide.SERVER), ReverbContext(ReverbSide.CLIENT)
        for ctx in (sctx, cctx):
            ctx.register(Token)
        server = Server(port=0, context=sctx, tick_rate=100)
        server.start_server()
        client = Client(port=server.port, context=cctx)
        try:
            client.connect()
            with sctx.activate():
                Token(1)
            deadline = time.monotonic() + 5
            while not cctx.objects and time.monotonic() < deadline:
                sctx.server_sync()
                cctx.client_sync()
            assert len(cctx.objects) == 1
            first = client.member
            client.disconnect()
            client.connect()  # the same Client object reconnects, as a new member
            assert client.member is not None and client.member != first
        finally:
            client.disconnect()
            server.stop_server()
    settle(threads, time.monotonic() + 5)
    assert threading.active_count() == threads
    assert open_fds() <= fds + 2  # pytest's own files may come and go


@pytest.mark.timeout(30)
def test_refused_connection_leaks_nothing() -> None:
    threads, fds = threading.active_count(), open_fds()
    server = Server(port=0, context=ReverbContext(ReverbSide.SERVER))
    server.start_server()
    port = server.port
    server.stop_server()
    for _ in range(5):
        client = Client(port=port, context=ReverbContext(ReverbSide.CLIENT), connect_timeout=1)
        with pytest.raises(HandshakeFailed):
            client.connect()
    settle(threads, time.monotonic() + 5)
    assert threading.active_count() == threads
    assert open_fds() <= fds + 2


def big_rpc(port: int) -> None:
    """A connection that sends one frame over 64 KiB (decoded on the worker thread)."""
    raw = Raw(port)
    try:
        raw.hello()
        raw.send({"type": "rpc", "id": 1, "uid": 1, "method": "nope", "args": ["x" * 100_000]})
        assert raw.expect("rpc_error")["id"] == 1
    finally:
        raw.close()


@pytest.mark.timeout(60)
def test_decode_workers_stop_with_their_servers() -> None:
    threads, fds = threading.active_count(), open_fds()
    for _ in range(3):
        server = Server(port=0, context=ReverbContext(ReverbSide.SERVER))
        server.start_server()
        try:
            thread = threading.Thread(target=big_rpc, args=(server.port,))
            thread.start()
            deadline = time.monotonic() + 10
            while thread.is_alive() and time.monotonic() < deadline:
                server.context.server_sync()  # answers the call
            thread.join(5)
        finally:
            server.stop_server()

    async def aio_round() -> None:
        server = AsyncServer(port=0, context=ReverbContext(ReverbSide.SERVER))
        await server.start_server()
        try:
            task = asyncio.get_running_loop().run_in_executor(None, big_rpc, server.port)
            deadline = time.monotonic() + 10
            while not task.done() and time.monotonic() < deadline:
                await server.server_sync()  # one tick: answers the call once it has arrived
            await asyncio.wait_for(task, 5)
        finally:
            await server.stop_server()

    for _ in range(3):
        asyncio.run(aio_round())
    settle(threads, time.monotonic() + 5)
    assert threading.active_count() == threads
    assert open_fds() <= fds + 2
