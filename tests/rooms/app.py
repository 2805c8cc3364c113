"""A game with room types, run as a real process (protocol §17):
``app.py server LAYER`` or ``app.py client LAYER PORT [OPTIONS_JSON]``, LAYER being
``threaded`` or ``aio``. JSON commands on stdin, JSON events on stdout (tests/jsonproc.py).

Server: the default room holds one ``Flag``; room types ``"battle"`` (2 seats, matched on
``mode``, a ``Ship`` per client, despawned when it leaves), ``"sealed"`` (locked at creation)
and ``"vip"`` (needs the option ``key`` = ``"sesame"``). Every hook and call is reported with
its room id. Client: ``Client(rooms=True)`` unless the options say ``"rooms": false``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import queue
import sys
import threading
from typing import Any

from reverb import (
    Client,
    ReverbContext,
    ReverbManager,
    ReverbObject,
    ReverbSide,
    Server,
    expose,
    rpc_caller,
)
from reverb.errors import ReverbError
from reverb.rooms import Accept, Reject, Room, RoomClient


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


@ReverbManager.reverb_object_attribute
class Flag(ReverbObject):
    """The default room's one object."""

    def __init__(self, x=0, uid=None, add_on_init=True, belonging_membership=None):
        self.x = x
        super().__init__(
            x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose(anyone=True)
    def poke(self) -> int:
        self.x += 1
        emit(event="poked", room="default", uid=self.uid, by=rpc_caller())
        return self.x


class Ship(ReverbObject):
    """A room's object: one per client, owned by it."""

    def __init__(self, x=0, uid=None, add_on_init=True, belonging_membership=None):
        self.x = x
        super().__init__(
            x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def fire(self) -> int:
        self.x += 1
        emit(event="fired", room=ROOM_OF.get(id(self)), uid=self.uid, by=rpc_caller())
        return self.x


ROOM_OF: dict[int, str] = {}  # id(ship) -> room id


class Battle(Room):
    object_types = (Ship,)
    max_clients = 2
    filter_by = ("mode",)

    def on_create(self, options: dict[str, Any]) -> None:
        emit(event="created", room=self.room_id, name=self.name, options=options)

    def on_auth(self, client: RoomClient, options: dict[str, Any]) -> Accept | Reject:
        return Accept()

    def on_join(self, client: RoomClient) -> None:
        ship = self.spawn(Ship, 0, owner=client.member)
        ROOM_OF[id(ship)] = self.room_id
        emit(event="joined", room=self.room_id, member=client.member)

    def on_leave(self, client: RoomClient, consented: bool) -> None:
        for obj in list(self.objects.values()):
            if obj.belonging_membership == client.member:
                self.despawn(obj)
        emit(event="left", room=self.room_id, member=client.member, consented=consented)

    def on_dispose(self) -> None:
        emit(event="disposed", room=self.room_id)


class Sealed(Battle):
    def on_create(self, options: dict[str, Any]) -> None:
        self.lock()


class Vip(Battle):
    def on_auth(self, client: RoomClient, options: dict[str, Any]) -> Accept | Reject:
        return Accept() if options.get("key") == "sesame" else Reject("the key is wrong")


def start_reader() -> queue.Queue[dict[str, Any] | None]:
    commands: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            if line.strip():
                commands.put(json.loads(line))
        commands.put(None)

    threading.Thread(target=read, daemon=True).start()
    return commands


# -- server ------------------------------------------------------------------------------------


def server_setup(serv: Any) -> None:
    ReverbManager.define_room("battle", Battle)  # the façade (the server's context)
    serv.define_room("sealed", Sealed)  # the server
    serv.define_room("vip", Vip)
    Flag(7)


def server_command(serv: Any, cmd: dict[str, Any]) -> None:
    mm = serv.matchmaker
    room = mm.rooms.get(cmd.get("room", ""))
    if cmd["op"] == "dispose":
        emit(event="done", ok=mm.dispose(cmd["room"]))
    elif cmd["op"] == "lock" and room is not None:
        room.lock()
        emit(event="done", ok=True)
    elif cmd["op"] == "rooms":
        emit(
            event="rooms",
            rooms={rid: sorted(r.clients) for rid, r in mm.rooms.items()},
            objects={rid: len(r.objects) for rid, r in mm.rooms.items()},
        )


def run_threaded_server() -> None:
    ReverbManager.REVERB_SIDE = ReverbSide.SERVER
    serv = Server(host="127.0.0.1", port=0)
    serv.start_server()
    server_setup(serv)
    commands = start_reader()
    print(f"READY {serv.port}", flush=True)
    try:
        while True:
            ReverbManager.server_sync()
            while not commands.empty():
                cmd = commands.get()
                if cmd is None:
                    return
                server_command(serv, cmd)
    finally:
        serv.stop_server()


async def run_aio_server() -> None:
    from reverb.aio import AsyncServer

    ReverbManager.REVERB_SIDE = ReverbSide.SERVER
    serv = AsyncServer(host="127.0.0.1", port=0)
    await serv.start_server()
    server_setup(serv)
    commands = start_reader()
    print(f"READY {serv.port}", flush=True)
    try:
        while True:
            await serv.server_sync()
            while not commands.empty():
                cmd = commands.get()
                if cmd is None:
                    return
                server_command(serv, cmd)
    finally:
        await serv.stop_server()


# -- client ------------------------------------------------------------------------------------


def client_setup(ctx: ReverbContext) -> None:
    ctx.register(Flag)
    ctx.register(Ship)
    events = ctx.client_events

    @events.on_event("room_joined")
    def joined(room: str, name: str) -> None:
        emit(event="room_joined", room=room, name=name)

    @events.on_event("room_left")
    def left(room: str, consented: bool, reason: str) -> None:
        emit(event="room_left", room=room, consented=consented, reason=reason)

    @events.on_event("room_event")
    def lobby(kind: str, listing: dict[str, Any]) -> None:
        emit(event="room_event", kind=kind, listing=listing)

    @events.on_event("object_spawned")
    def spawned(obj: Any) -> None:
        emit(event="spawned", type=type(obj).__name__, uid=obj.uid, room=ctx.room)

    @events.on_event("object_despawned")
    def despawned(obj: Any) -> None:
        emit(event="despawned", type=type(obj).__name__, uid=obj.uid)


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


HANDLES: dict[str, Any] = {}


async def client_command(clt: Any, cmd: dict[str, Any]) -> None:
    op = cmd["op"]
    ctx: ReverbContext = clt.context
    try:
        if op in ("join_or_create", "create", "join", "join_by_id"):
            args = cmd.get("args", [])
            handle = await _maybe(getattr(clt, op)(*args, **cmd.get("kw", {})))
            HANDLES["current"] = handle
            emit(event="handle", room=handle.room_id, name=handle.name, created=handle.created)
        elif op == "leave":
            await _maybe(clt.leave())
            emit(event="handle", room=None)
        elif op == "list":
            rooms = await _maybe(clt.list_rooms(cmd.get("name")))
            emit(event="list", rooms=[r.room_id for r in rooms])
        elif op == "watch":
            lobby = await _maybe(clt.watch(cmd.get("name")))
            HANDLES["lobby"] = lobby
            emit(event="watching", rooms=sorted(lobby.rooms))
        elif op == "lobby":
            lobby = HANDLES["lobby"]
            emit(event="lobby", rooms={k: v.clients for k, v in lobby.rooms.items()})
        elif op == "state":
            handle = HANDLES.get("current")
            ships = [] if handle is None else handle.get_all_ro_by_type(Ship)
            flags = ctx.get_all_ro_by_type(Flag)
            emit(
                event="state",
                room=ctx.room,
                ships=sorted([s.uid, s.belonging_membership, s.x] for s in ships),
                flags=sorted([f.uid, f.x] for f in flags),
            )
        elif op == "fire":
            ships = [
                s for s in ctx.get_all_ro_by_type(Ship) if s.belonging_membership == clt.member
            ]
            value = await _maybe_future(ships[0].compute_server(ships[0].fire))
            emit(event="fired", value=value)
        elif op == "poke":
            flag = ctx.get_all_ro_by_type(Flag)[0]
            value = await _maybe_future(flag.compute_server(flag.poke))
            emit(event="poked", value=value)
    except ReverbError as exc:
        emit(
            event="refused",
            kind=type(exc).__name__,
            code=getattr(exc, "code", None),
            reason=getattr(exc, "reason", str(exc)),
        )


async def _maybe_future(future: Any) -> Any:
    if inspect.isawaitable(future):
        return await future
    return await asyncio.wrap_future(future)


def run_threaded_client(port: int, options: dict[str, Any]) -> None:
    ctx = ReverbContext()
    clt = Client(ip="127.0.0.1", port=port, rooms=options.get("rooms", True), context=ctx)
    client_setup(ctx)
    clt.connect()
    emit(event="connected", member=clt.member, features=sorted(clt.features))
    commands = start_reader()
    try:
        while True:
            ctx.client_sync(timeout=0.01)
            while not commands.empty():
                cmd = commands.get()
                if cmd is None:
                    return
                asyncio.run(client_command(clt, cmd))
    finally:
        clt.disconnect()


async def run_aio_client(port: int, options: dict[str, Any]) -> None:
    from reverb.aio import AsyncClient

    ctx = ReverbContext()
    clt = AsyncClient(ip="127.0.0.1", port=port, rooms=options.get("rooms", True), context=ctx)
    client_setup(ctx)
    await clt.connect()
    emit(event="connected", member=clt.member, features=sorted(clt.features))
    commands = start_reader()
    try:
        while True:
            await clt.client_sync(0.01)
            while not commands.empty():
                cmd = commands.get()
                if cmd is None:
                    return
                await client_command(clt, cmd)
    finally:
        await clt.disconnect()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    role, layer = sys.argv[1], sys.argv[2]
    if role == "server":
        if layer == "aio":
            asyncio.run(run_aio_server())
        else:
            run_threaded_server()
    else:
        print("READY 0", flush=True)
        port = int(sys.argv[3])
        opts = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
        if layer == "aio":
            asyncio.run(run_aio_client(port, opts))
        else:
            run_threaded_client(port, opts)
