"""A small game with the monitor on, run as real processes for the monitor's tests.

``app.py server [OBJECTS] [aio]`` prints ``READY <port> <monitor url>`` and ticks until stdin
closes; its Crates drift every tick, so pages have live values (``aio``: an ``AsyncServer``, the
monitor on its own thread beside the event loop). ``app.py client PORT`` prints
``CONNECTED <member>``, moves its Player by RPC a few times a second (and now and then
tries a call it may not make), and runs until disconnected or stdin closes.

``rooms`` among the server's arguments defines the room type ``"arena"`` (protocol §17:
matched on ``mode``, four seats, 10 Hz, a ``Token`` per client; disposed when its last client
leaves). ``app.py room-client PORT MODE`` connects with ``rooms=True``, joins or creates an
arena of that mode, prints ``JOINED <member> <room id>`` and nudges its ``Token`` by RPC a
few times a second (a call run in its room, §17.4).
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time

from reverb import (
    Client,
    ReverbManager,
    ReverbObject,
    ReverbSide,
    RpcError,
    Server,
    client_event_registry,
    expose,
    server_event_registry,
)
from reverb.monitor import Monitor
from reverb.rooms import Room, RoomClient


@ReverbManager.reverb_object_attribute
class Crate(ReverbObject):
    def __init__(self, n=0, uid=None, add_on_init=True, belonging_membership=None):
        self.n = n
        self.x = 0.0
        self.label = f"crate-{n}"
        super().__init__(
            n, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


@ReverbManager.reverb_object_attribute
class Player(ReverbObject):
    def __init__(self, name="?", uid=None, add_on_init=True, belonging_membership=None):
        self.name = name
        self.x = 0
        super().__init__(
            name, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def move(self, dx):
        if abs(dx) > 5:
            raise RpcError("too fast")
        self.x += dx
        return self.x


class Token(ReverbObject):
    """An arena's object: one per client, owned by it."""

    def __init__(self, x=0, uid=None, add_on_init=True, belonging_membership=None):
        self.x = x
        super().__init__(
            x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def nudge(self, dx):
        self.x += dx
        return self.x


class Arena(Room):
    object_types = (Token,)
    tick_rate = 10.0
    max_clients = 4
    filter_by = ("mode",)

    def on_create(self, options):
        self.set_metadata(mode=options.get("mode", "duel"))
        self.spawn(Token, -1)  # the arena's own marker: objects = clients + 1

    def on_join(self, client: RoomClient) -> None:
        self.spawn(Token, 0, owner=client.member)

    def on_leave(self, client: RoomClient, consented: bool) -> None:
        for obj in list(self.objects.values()):
            if obj.belonging_membership == client.member:
                self.despawn(obj)


def stdin_closed() -> threading.Event:
    done = threading.Event()

    def watch() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    return done


def run_server(objects: int, aio: bool = False, rooms: bool = False) -> None:
    ReverbManager.REVERB_SIDE = ReverbSide.SERVER
    if rooms:
        ReverbManager.define_room("arena", Arena)
    crates = [Crate(i) for i in range(objects)]
    players: dict[int, Player] = {}

    @server_event_registry.on_event("client_connected")
    def joined(member, identity):
        players[member] = Player(f"p{member}", belonging_membership=member)

    @server_event_registry.on_event("client_disconnected")
    def left(member, code, reason):
        player = players.pop(member, None)
        if player is not None:
            player.destroy()

    def drift(t: float) -> None:
        for crate in crates:
            crate.x = round(math.sin(t + crate.n) * 10, 2)

    done = stdin_closed()
    started = time.monotonic()
    if aio:
        asyncio.run(serve_async(done, started, drift))
        return
    serv = Server(port=0, tick_rate=20)
    serv.start_server()
    monitor = Monitor(serv).start()
    print(f"READY {serv.port} {monitor.url}", flush=True)
    try:
        while not done.is_set():
            ReverbManager.server_sync()
            drift(time.monotonic() - started)
    finally:
        monitor.stop()
        serv.stop_server()


async def serve_async(done: threading.Event, started: float, drift) -> None:
    from reverb.aio import AsyncServer

    serv = AsyncServer(port=0, tick_rate=20)
    await serv.start_server()
    monitor = Monitor(serv).start()
    print(f"READY {serv.port} {monitor.url}", flush=True)
    try:
        while not done.is_set():
            await serv.server_sync()
            drift(time.monotonic() - started)
    finally:
        monitor.stop()
        await serv.stop_server()


def run_room_client(port: int, mode: str) -> None:
    from reverb import ReverbContext

    ctx = ReverbContext()
    clt = Client(ip="127.0.0.1", port=port, rooms=True, context=ctx)
    for cls in (Crate, Player, Token):  # the contract: the default room's types and the arena's
        ctx.register(cls)
    clt.connect()
    handle = clt.join_or_create("arena", {"mode": mode})
    print(f"JOINED {clt.member} {handle.room_id}", flush=True)
    done = stdin_closed()
    step = 0
    try:
        while not done.is_set():
            ctx.client_sync(timeout=0.2)
            step += 1
            for token in handle.get_all_ro_by_type(Token):
                if token.is_owner() and step % 3 == 0:
                    token.compute_server(token.nudge, 1)  # a call run in its room (§17.4)
    finally:
        clt.disconnect()


def run_client(port: int) -> None:
    clt = Client(port=port)
    ReverbManager.REVERB_CONNECTION = clt
    gone = threading.Event()

    @client_event_registry.on_event("connected")
    def connected(member):
        print(f"CONNECTED {member}", flush=True)

    @client_event_registry.on_event("disconnected")
    def disconnected(code, reason):
        print(f"DISCONNECTED {code} {reason}", flush=True)
        gone.set()

    clt.connect()
    done = stdin_closed()
    step = 0
    while not done.is_set() and not gone.is_set():
        ReverbManager.client_sync(timeout=0.2)
        step += 1
        for player in ReverbManager.get_all_ro_by_type(Player):
            if player.is_owner():
                player.compute_server(player.move, 9 if step % 10 == 0 else 1)
            elif step % 15 == 0:
                player.compute_server(player.move, 1)  # not ours: refused (not_owner)
    if not gone.is_set():
        clt.disconnect()


if __name__ == "__main__":
    if sys.argv[1] == "server":
        run_server(
            int(sys.argv[2]) if len(sys.argv) > 2 else 20,
            "aio" in sys.argv[3:],
            "rooms" in sys.argv[3:],
        )
    elif sys.argv[1] == "room-client":
        run_room_client(int(sys.argv[2]), sys.argv[3])
    else:
        run_client(int(sys.argv[2]))
