"""A small game for the integration tests, run as a real process: ``app.py server`` or
``app.py client PORT``. It is driven by JSON commands on stdin and reports JSON lines on
stdout, so tests can make the server spawn, mutate and despawn, and ask clients what they see.
"""

from __future__ import annotations

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
    RpcError,
    Server,
    client_event_registry,
    expose,
    rpc_caller,
    server_event_registry,
)

EXECUTED: dict[str, int] = {}
# Values JSON cannot carry (docs/protocol.md §3.4), set on the server by the "bad" command.
BAD_VALUES: dict[str, Any] = {
    "nan": float("nan"),
    "inf": float("inf"),
    "set": {1, 2},
    "int_keys": {1: "a"},
    "big_int": 2**53,
}


def count(name: str) -> None:
    EXECUTED[name] = EXECUTED.get(name, 0) + 1


@ReverbManager.reverb_object_attribute
class Avatar(ReverbObject):
    def __init__(self, name="", x=0, uid=None, add_on_init=True, belonging_membership=None):
        self.name = name
        self.x = x
        self.tags: list[str] = []
        super().__init__(
            name, x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def move(self, dx):
        count("move")
        self.x += dx
        return self.x

    @expose
    def explode(self):
        count("explode")
        raise ValueError("secret internal detail")

    @expose
    def refuse(self, why):
        count("refuse")
        raise RpcError(why)

    @expose(anyone=True)
    def wave(self):
        count("wave")
        return {"by": rpc_caller(), "to": self.belonging_membership}

    def secret(self):
        count("secret")

    def _private(self):
        count("_private")


@ReverbManager.reverb_object_attribute
class Crate(ReverbObject):
    def __init__(self, weight=1, uid=None, add_on_init=True, belonging_membership=None):
        self.weight = weight
        super().__init__(
            weight, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


def emit(**fields: Any) -> None:
    print(json.dumps(fields, default=repr), flush=True)  # repr: a set the "bad" op stored


def reader(commands: queue.Queue[dict[str, Any] | None]) -> None:
    for line in sys.stdin:
        if line.strip():
            commands.put(json.loads(line))
    commands.put(None)  # stdin closed: the test is gone, stop


def table() -> dict[str, Any]:
    return {
        str(uid): {
            "type": type(obj).__name__,
            "owner": obj.belonging_membership,
            "mine": obj.is_owner(),
            "fields": {
                k: v
                for k, v in vars(obj).items()
                if not k.startswith("_") and k not in ("uid", "belonging_membership")
            },
        }
        for uid, obj in ReverbManager.REVERB_OBJECTS.items()
    }


def run_server(options: dict[str, Any]) -> None:
    ReverbManager.REVERB_SIDE = ReverbSide.SERVER
    serv = Server(port=0, **options)
    ReverbManager.REVERB_CONNECTION = serv
    serv.start_server()
    avatars: dict[int, Avatar] = {}

    @server_event_registry.on_event("client_connected")
    def joined(client_id):
        avatars[client_id] = Avatar(f"p{client_id}", belonging_membership=client_id)
        emit(event="client_connected", member=client_id, uid=avatars[client_id].uid)

    @server_event_registry.on_event("client_disconnected")
    def left(client_id, code, reason):
        avatar = avatars.pop(client_id)
        avatar.destroy()
        emit(event="client_disconnected", member=client_id, code=code, reason=reason)

    @server_event_registry.on_event("sync_error")
    def sync_error(obj, error):
        emit(event="sync_error", uid=obj.uid, error=str(error), kind=type(error).__name__)

    commands: queue.Queue[dict[str, Any] | None] = queue.Queue()
    threading.Thread(target=reader, args=(commands,), daemon=True).start()
    print(f"READY {serv.port}", flush=True)
    try:
        while True:
            ReverbManager.server_sync()
            while not commands.empty():
                cmd = commands.get()
                if cmd is None:
                    return
                op = cmd["op"]
                if op == "spawn":
                    crates = [Crate(cmd.get("weight", 1)) for _ in range(cmd.get("n", 1))]
                    emit(event="spawned", uids=[c.uid for c in crates])
                elif op == "set":
                    setattr(ReverbManager.REVERB_OBJECTS[cmd["uid"]], cmd["field"], cmd["value"])
                    emit(event="set", uid=cmd["uid"])
                elif op == "bad":
                    obj = ReverbManager.REVERB_OBJECTS[cmd["uid"]]
                    setattr(obj, cmd["field"], BAD_VALUES[cmd["value"]])
                    emit(event="set", uid=cmd["uid"])
                elif op == "kick":
                    serv.close_member(cmd["member"], 1008, "kicked")  # from the game thread
                    emit(event="kicked", member=cmd["member"])
                elif op == "despawn":
                    ReverbManager.remove_reverb_object(cmd["uid"])
                    emit(event="despawned", uid=cmd["uid"])
                elif op == "state":
                    emit(
                        event="state",
                        table=table(),
                        executed=EXECUTED,
                        members=serv.members,
                        tick=ReverbManager.context.world.tick_count,
                    )
    finally:
        serv.stop_server()


def run_client(port: int, set_side: bool = True) -> None:
    if set_side:  # the README's recipe does not set it: connect() must
        ReverbManager.REVERB_SIDE = ReverbSide.CLIENT
    clt = Client(ip="127.0.0.1", port=port)
    ReverbManager.REVERB_CONNECTION = clt
    last_tick = [0]

    @client_event_registry.on_event("synced")
    def synced(tick):
        last_tick[0] = tick

    @client_event_registry.on_event("disconnected")
    def disconnected(code, reason):
        emit(event="disconnected", code=code, reason=reason)

    @client_event_registry.on_event("object_despawned")
    def despawned(obj):
        emit(event="object_despawned", uid=obj.uid)

    clt.connect()
    emit(event="connected", member=clt.member)
    commands: queue.Queue[dict[str, Any] | None] = queue.Queue()
    threading.Thread(target=reader, args=(commands,), daemon=True).start()
    calls: list[tuple[int, Any]] = []
    try:
        while True:
            ReverbManager.client_sync(timeout=0.01)
            for ref, future in [c for c in calls if c[1].done()]:
                calls.remove((ref, future))
                try:
                    emit(event="result", ref=ref, value=future.result())
                except RpcError as exc:
                    emit(event="error", ref=ref, code=exc.code, message=exc.message)
            while not commands.empty():
                cmd = commands.get()
                if cmd is None or cmd["op"] == "quit":
                    return
                if cmd["op"] == "connect":
                    clt.connect()
                    emit(event="connected", member=clt.member)
                elif cmd["op"] == "table":
                    emit(event="table", table=table(), tick=last_tick[0], member=clt.member)
                elif cmd["op"] == "call":
                    obj = ReverbManager.REVERB_OBJECTS[cmd["uid"]]
                    calls.append(
                        (cmd["ref"], obj.compute_server(cmd["method"], *cmd.get("args", [])))
                    )
    finally:
        clt.disconnect()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if sys.argv[1] == "server":
        run_server(json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
    else:
        print("READY 0", flush=True)
        run_client(int(sys.argv[2]), set_side="noside" not in sys.argv[3:])
