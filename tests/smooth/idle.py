"""A server process for the "quiet" tests (docs/protocol.md §19): an idle world of a few
objects ticking at 30 Hz, nothing ever changing (``python -m tests.smooth.idle threaded|aio``;
prints ``READY <port>``, stops when ``stdin`` closes)."""

from __future__ import annotations

import asyncio
import sys
import threading

from reverb import ReverbContext, ReverbObject, ReverbSide, Server
from reverb.aio import AsyncServer


class Still(ReverbObject):
    def __init__(self, uid=None, add_on_init=True, belonging_membership=None):  # type: ignore[no-untyped-def]
        self.x = 1.0
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


def _world() -> ReverbContext:
    ctx = ReverbContext(ReverbSide.SERVER)
    ctx.register(Still)
    with ctx.activate():
        for _ in range(20):
            Still()
    return ctx


def _watch_stdin() -> threading.Event:
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    return done


def threaded() -> None:
    ctx = _world()
    server = Server("127.0.0.1", 0, tick_rate=30.0, context=ctx)
    server.start_server()
    done = _watch_stdin()
    print(f"READY {server.port}", flush=True)
    while not done.is_set():
        ctx.server_sync()
    server.stop_server()


async def aio() -> None:
    ctx = _world()
    server = AsyncServer("127.0.0.1", 0, tick_rate=30.0, context=ctx)
    await server.start_server()
    done = _watch_stdin()
    print(f"READY {server.port}", flush=True)
    while not done.is_set():
        await server.server_sync()
    await server.stop_server()


if __name__ == "__main__":
    if sys.argv[1:] == ["aio"]:
        asyncio.run(aio())
    else:
        threaded()
