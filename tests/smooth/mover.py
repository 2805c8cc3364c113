"""A server process for the smooth-movement tests: one ``Mover`` whose ``x`` grows at a constant
speed while ``stdin`` stays open (``python -m tests.smooth.mover``; prints ``READY <port>``)."""

from __future__ import annotations

import sys
import threading
import time

from reverb import Field, ReverbContext, ReverbObject, ReverbSide, Server

SPEED = 120.0  # units per second, whatever the tick rate


class Mover(ReverbObject):
    __reverb_interpolate__ = ("x", Field("angle", period=360.0))

    def __init__(self, uid=None, add_on_init=True, belonging_membership=None):  # type: ignore[no-untyped-def]
        self.x = 0.0
        self.angle = 0.0
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


def main() -> None:
    ctx = ReverbContext(ReverbSide.SERVER)
    ctx.register(Mover)
    server = Server("127.0.0.1", 0, tick_rate=30.0, context=ctx)
    server.start_server()
    with ctx.activate():
        mover = Mover()
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print(f"READY {server.port}", flush=True)
    start = time.monotonic()
    while not done.is_set():
        ctx.server_sync()
        mover.x = round(SPEED * (time.monotonic() - start), 3)
        mover.angle = (mover.x * 3) % 360.0
    server.stop_server()


if __name__ == "__main__":
    main()
