"""A game with per-client visibility (protocol §16), run as a real process:
``app.py server LAYER`` or ``app.py client LAYER PORT``, LAYER being ``threaded`` or ``aio``.
JSON commands on stdin, JSON events on stdout (tests/jsonproc.py). The server uses
``Team()``: each client sees the units of its team and the neutral ones; owner-only ``gold``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sys
import threading
from typing import Any

from reverb import (
    Client,
    ReverbManager,
    ReverbObject,
    ReverbSide,
    Server,
    client_event_registry,
    expose,
    server_event_registry,
)
from reverb.replication.interest import Team


@ReverbManager.reverb_object_attribute
class Unit(ReverbObject):
    __reverb_owner_fields__ = ("gold",)

    def __init__(self, team=None, uid=None, add_on_init=True, belonging_membership=None):
        self.team = team
        self.hp = 10
        self.gold = 0
        super().__init__(
            team, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose(anyone=True)
    def poke(self) -> int:
        return self.hp


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def start_reader() -> queue.Queue[dict[str, Any] | None]:
    commands: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            if line.strip():
                commands.put(json.loads(line))
        commands.put(None)

    threading.Thread(target=read, daemon=True).start()
    return commands


class ServerGame:
    def __init__(self) -> None:
        self.units: dict[int, Unit] = {}
        ReverbManager.set_interest(Team())

        @server_event_registry.on_event("client_connected")
        def joined(member: int, identity: Any) -> None:
            emit(event="client_connected", member=member)

    def command(self, cmd: dict[str, Any]) -> None:
        op = cmd["op"]
        if op == "groups":
            ReverbManager.set_groups(cmd["member"], cmd["groups"])
            emit(event="done")
        elif op == "spawn":
            unit = Unit(cmd.get("team"), belonging_membership=cmd.get("owner"))
            unit.gold = cmd.get("gold", 0)
            assert unit.uid is not None
            self.units[unit.uid] = unit
            emit(event="spawned", uid=unit.uid)
        elif op == "set":
            setattr(self.units[cmd["uid"]], cmd["name"], cmd["value"])
            emit(event="done")
        elif op == "hide":
            self.units[cmd["uid"]].hide_from(cmd["member"])
            emit(event="done")
        elif op == "budget":  # protocol §16.6: bytes per second for one client (None: any)
            ReverbManager.set_budget(cmd["member"], cmd["bytes_per_second"])
            emit(event="done")
        elif op == "churn":  # every unit's hp changes at each of the next N ticks
            self.churn = cmd["ticks"]
            emit(event="done")
        elif op == "sent":  # entry bytes each client's queue was sent (§16.6)
            queue = ReverbManager.context.world.queue(cmd["member"])
            emit(event="sent", bytes=None if queue is None else queue.sent_bytes)

    churn = 0
    tick = 0

    def after_tick(self) -> None:
        if self.churn > 0:
            self.churn -= 1
            self.tick += 1
            for unit in self.units.values():
                unit.hp = self.tick
            if self.churn == 0:
                emit(event="churned", hp=self.tick)


def run_threaded_server() -> None:
    ReverbManager.REVERB_SIDE = ReverbSide.SERVER
    serv = Server(host="127.0.0.1", port=0)
    serv.start_server()
    game = ServerGame()
    commands = start_reader()
    print(f"READY {serv.port}", flush=True)
    try:
        while True:
            ReverbManager.server_sync()
            game.after_tick()
            while not commands.empty():
                cmd = commands.get()
                if cmd is None:
                    return
                game.command(cmd)
    finally:
        serv.stop_server()


async def run_aio_server() -> None:
    from reverb.aio import AsyncServer

    ReverbManager.REVERB_SIDE = ReverbSide.SERVER
    serv = AsyncServer(host="127.0.0.1", port=0)
    await serv.start_server()
    game = ServerGame()
    commands = start_reader()
    print(f"READY {serv.port}", flush=True)
    try:
        while True:
            await serv.server_sync()
            game.after_tick()
            while not commands.empty():
                cmd = commands.get()
                if cmd is None:
                    return
                game.command(cmd)
    finally:
        await serv.stop_server()


def client_setup() -> None:
    @client_event_registry.on_event("object_spawned")
    def spawned(obj: Any, reentered: bool) -> None:
        emit(event="object_spawned", uid=obj.uid, team=obj.team, gold=obj.gold, again=reentered)

    @client_event_registry.on_event("object_despawned")
    def despawned(obj: Any, reason: str) -> None:
        emit(event="object_despawned", uid=obj.uid, reason=reason)


def client_command(cmd: dict[str, Any]) -> None:
    if cmd["op"] == "state":
        objects = ReverbManager.REVERB_OBJECTS
        emit(
            event="state",
            units={str(u): [o.team, o.hp, o.gold] for u, o in objects.items()},
        )
    elif cmd["op"] == "poke":  # a raw call: the uid may be unknown to this client
        future = ReverbManager.REVERB_CONNECTION.call(cmd["uid"], "poke", [])

        def answered(done: Any) -> None:
            error = done.exception()
            if error is None:
                emit(event="poked", value=done.result())
            else:
                emit(event="poked", code=error.code, message=error.message)

        future.add_done_callback(answered)


def run_threaded_client(port: int) -> None:
    ReverbManager.REVERB_SIDE = ReverbSide.CLIENT
    clt = Client(ip="127.0.0.1", port=port)
    ReverbManager.REVERB_CONNECTION = clt
    client_setup()
    clt.connect()
    emit(event="connected", member=clt.member, features=sorted(clt.features))
    commands = start_reader()
    try:
        while True:
            ReverbManager.client_sync(timeout=0.01)
            while not commands.empty():
                cmd = commands.get()
                if cmd is None:
                    return
                client_command(cmd)
    finally:
        clt.disconnect()


async def run_aio_client(port: int) -> None:
    from reverb.aio import AsyncClient

    ReverbManager.REVERB_SIDE = ReverbSide.CLIENT
    clt = AsyncClient(ip="127.0.0.1", port=port)
    ReverbManager.REVERB_CONNECTION = clt
    client_setup()
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
                client_command(cmd)
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
        if layer == "aio":
            asyncio.run(run_aio_client(port))
        else:
            run_threaded_client(port)
