"""A game exchanging named messages (docs/protocol.md §14), run as a real process:
``app.py server LAYER OPTIONS_JSON`` or ``app.py client LAYER PORT [OPTIONS_JSON]``, LAYER being
``threaded`` or ``aio``. JSON commands on stdin, JSON events on stdout (tests/jsonproc.py).
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
    EncodeError,
    InvalidState,
    ReverbManager,
    ReverbObject,
    ReverbSide,
    RpcError,
    Server,
    client_event_registry,
    client_messages,
    server_event_registry,
    server_messages,
)


@ReverbManager.reverb_object_attribute
class Flag(ReverbObject):
    def __init__(self, x=0, uid=None, add_on_init=True, belonging_membership=None):
        self.x = x
        super().__init__(
            x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def reader(commands: queue.Queue[dict[str, Any] | None]) -> None:
    for line in sys.stdin:
        if line.strip():
            commands.put(json.loads(line))
    commands.put(None)


def start_reader() -> queue.Queue[dict[str, Any] | None]:
    commands: queue.Queue[dict[str, Any] | None] = queue.Queue()
    threading.Thread(target=reader, args=(commands,), daemon=True).start()
    return commands


# -- server ------------------------------------------------------------------------------------


class ServerGame:
    def __init__(self) -> None:
        self.flags: dict[int, Flag] = {}
        self.after_tick: list[tuple[str, Any]] = []  # broadcast once the next tick is sent

        @server_event_registry.on_event("client_connected")
        def joined(member: int, identity: Any) -> None:
            emit(event="client_connected", member=member)

        @server_messages.on("chat")
        def chat(sender: int, data: Any) -> None:
            emit(event="chat", sender=sender, data=data)
            ReverbManager.send_message(sender, "echo", {"from": sender, "data": data})

        @server_messages.on("boom")
        def boom(sender: int, data: Any) -> None:
            raise RuntimeError("secret internal detail")

        @server_messages.on("refuse")
        def refuse(sender: int, data: Any) -> None:
            raise RpcError("not in this room")

    def after_sync(self) -> None:
        pending, self.after_tick = self.after_tick, []
        for name, data in pending:
            ReverbManager.broadcast(name, data)

    def command(self, cmd: dict[str, Any]) -> None:
        op = cmd["op"]
        try:
            if op == "spawn":
                flag = Flag(cmd.get("x", 0))
                assert flag.uid is not None
                self.flags[flag.uid] = flag
                emit(event="spawned", uid=flag.uid)
            elif op == "send":
                queued = ReverbManager.send_message(cmd["member"], cmd["name"], cmd.get("data"))
                emit(event="sent", count=int(queued))
            elif op == "broadcast":
                count = ReverbManager.broadcast(
                    cmd["name"], cmd.get("data"), cmd.get("exclude", ())
                )
                emit(event="sent", count=count)
            elif op == "observers":
                flag = self.flags[cmd["uid"]]
                count = ReverbManager.send_to_observers(flag, cmd["name"], cmd.get("data"))
                emit(event="sent", count=count)
            elif op == "order":  # x changes now; "before" goes now, "after" once it is synced
                flag = self.flags[cmd["uid"]]
                flag.x = cmd["x"]
                ReverbManager.broadcast("before", cmd["x"])
                self.after_tick.append(("after", cmd["x"]))
                emit(event="ordered")
            elif op == "bad":
                ReverbManager.broadcast("bad", {1, 2})
        except (EncodeError, ValueError, InvalidState) as exc:
            emit(event="refused", kind=type(exc).__name__, error=str(exc))


def server_options(options: dict[str, Any]) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": 0, **options}


def run_threaded_server(options: dict[str, Any]) -> None:
    ReverbManager.REVERB_SIDE = ReverbSide.SERVER
    serv = Server(**server_options(options))
    serv.start_server()
    game = ServerGame()
    commands = start_reader()
    print(f"READY {serv.port}", flush=True)
    try:
        while True:
            ReverbManager.server_sync()
            game.after_sync()
            while not commands.empty():
                cmd = commands.get()
                if cmd is None:
                    return
                game.command(cmd)
    finally:
        serv.stop_server()


async def run_aio_server(options: dict[str, Any]) -> None:
    from reverb.aio import AsyncServer

    ReverbManager.REVERB_SIDE = ReverbSide.SERVER
    serv = AsyncServer(**server_options(options))
    await serv.start_server()
    game = ServerGame()
    commands = start_reader()
    print(f"READY {serv.port}", flush=True)
    try:
        while True:
            await serv.server_sync()
            game.after_sync()
            while not commands.empty():
                cmd = commands.get()
                if cmd is None:
                    return
                game.command(cmd)
    finally:
        await serv.stop_server()


# -- client ------------------------------------------------------------------------------------


def client_setup() -> None:
    def x_values() -> list[Any]:
        return [obj.x for obj in ReverbManager.REVERB_OBJECTS.values() if isinstance(obj, Flag)]

    def record(name: str) -> None:
        @client_messages.on(name)
        def got(data: Any) -> None:
            emit(event="message", name=name, data=data, xs=x_values())

    for name in ("hi", "news", "near", "echo", "before", "after", "big"):
        record(name)

    @client_event_registry.on_event("message_error")
    def refused(name: str, code: str, reason: str) -> None:
        emit(event="message_error", name=name, code=code, reason=reason)

    @client_event_registry.on_event("object_spawned")
    def spawned(obj: Any) -> None:
        emit(event="object_spawned", uid=obj.uid)

    @client_event_registry.on_event("disconnected")
    def disconnected(code: int, reason: str) -> None:
        emit(event="disconnected", code=code, reason=reason)


def client_command(clt: Any, cmd: dict[str, Any]) -> None:
    if cmd["op"] == "send":
        try:
            for _ in range(cmd.get("times", 1)):
                ReverbManager.send_message(cmd["name"], cmd.get("data"))
            emit(event="sent")
        except Exception as exc:  # reported to the test, which checks the kind and text
            emit(event="refused", kind=type(exc).__name__, error=str(exc))


def run_threaded_client(port: int, options: dict[str, Any]) -> None:
    ReverbManager.REVERB_SIDE = ReverbSide.CLIENT
    clt = Client(ip="127.0.0.1", port=port, **options)
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
                client_command(clt, cmd)
    finally:
        clt.disconnect()


async def run_aio_client(port: int, options: dict[str, Any]) -> None:
    from reverb.aio import AsyncClient

    ReverbManager.REVERB_SIDE = ReverbSide.CLIENT
    clt = AsyncClient(ip="127.0.0.1", port=port, **options)
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
                client_command(clt, cmd)
    finally:
        await clt.disconnect()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    role, layer = sys.argv[1], sys.argv[2]
    if role == "server":
        opts = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
        if layer == "aio":
            asyncio.run(run_aio_server(opts))
        else:
            run_threaded_server(opts)
    else:
        print("READY 0", flush=True)
        port = int(sys.argv[3])
        opts = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
        if layer == "aio":
            asyncio.run(run_aio_client(port, opts))
        else:
            run_threaded_client(port, opts)
