"""A client program that never calls client_sync() is disconnected, not left to grow."""

from __future__ import annotations

import time

import pytest

from reverb import Client, ReverbContext, ReverbObject, ReverbSide, Server
from reverb.hub import ClientHub


class Beacon(ReverbObject):
    def __init__(self, n=0, uid=None, add_on_init=True, belonging_membership=None):
        self.n = n
        super().__init__(
            n, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


@pytest.mark.timeout(30)
def test_unread_updates_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ClientHub, "max_unread", 20)
    sctx, cctx = ReverbContext(ReverbSide.SERVER), ReverbContext(ReverbSide.CLIENT)
    sctx.register(Beacon)
    cctx.register(Beacon)
    left: list[tuple[int, int, str]] = []
    sctx.server_events.on_event("client_disconnected")(lambda *a: left.append(a))
    server = Server(port=0, context=sctx, tick_rate=200)
    server.start_server()
    client = Client(port=server.port, context=cctx)
    try:
        client.connect()
        with sctx.activate():
            beacon = Beacon()
        deadline = time.monotonic() + 20
        while not left and time.monotonic() < deadline:
            beacon.n += 1  # a change every tick: one sync each, never consumed by the client
            sctx.server_sync()
        assert left and left[0][1] == 1008
        assert len(client._inbox) <= 20 + 2  # the limit, plus the close events
    finally:
        client.disconnect()
        server.stop_server()
