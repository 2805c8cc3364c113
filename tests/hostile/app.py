"""The server under attack in the hostile suite, run as a real process:
``python -m tests.hostile.app '<json Server options>'``.

It prints ``READY <port>``, gives every client an ``Avatar`` it owns, and answers JSON commands
on stdin with JSON lines on stdout: ``spawn``, ``despawn``, ``set``, ``churn`` (rewrite big
fields every tick, to fill slow readers' buffers) and ``state`` (table, stats, members,
executed methods, RSS and open file descriptors of this process).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
from typing import Any

from reverb import ReverbContext, ReverbObject, ReverbSide, Server, expose

EXECUTED: dict[str, int] = {}


def count(name: str) -> None:
    EXECUTED[name] = EXECUTED.get(name, 0) + 1


class Avatar(ReverbObject):
    def __init__(self, name="", x=0, uid=None, add_on_init=True, belonging_membership=None):
        self.name = name
        self.x = x
        super().__init__(
            name, x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def move(self, dx):
        count("move")
        self.x += dx
        return self.x

    @expose(anyone=True)
    def wave(self):
        count("wave")
        return self.belonging_membership

    def secret(self):
        count("secret")

    def _x(self):
        count("_x")

    def destroy(self):
        count("destroy")
        super().destroy()

    def on_init_from_server(self):
        count("on_init_from_server")


class Crate(ReverbObject):
    def __init__(self, weight=1, uid=None, add_on_init=True, belonging_membership=None):
        self.weight = weight
        super().__init__(
            weight, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


TYPES = (Avatar, Crate)


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def proc_status(key: str) -> int:
    """A /proc/self/status value in KiB (Linux); 0 elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def table(ctx: ReverbContext) -> dict[str, Any]:
    return {
        str(uid): {
            "type": type(obj).__name__,
            "owner": obj.belonging_membership,
            "fields": {
                k: v
                for k, v in vars(obj).items()
                if not k.startswith("_") and k not in ("uid", "belonging_membership")
            },
        }
        for uid, obj in ctx.objects.items()
    }


def reader(commands: queue.Queue[dict[str, Any] | None]) -> None:
    for line in sys.stdin:
        if line.strip():
            commands.put(json.loads(line))
    commands.put(None)  # stdin closed: the test is gone, stop


def main(options: dict[str, Any]) -> None:
    ctx = ReverbContext(ReverbSide.SERVER)
    for cls in TYPES:
        ctx.register(cls)
    serv = Server(port=0, context=ctx, **options)
    serv.start_server()
    avatars: dict[int, Avatar] = {}
    churn: dict[str, Any] = {"on": False, "n": 0}

    @ctx.server_events.on_event("client_connected")
    def joined(member: int, identity: Any) -> None:
        with ctx.activate():
            avatars[member] = Avatar(f"p{member}", belonging_membership=member)
        emit(event="client_connected", member=member, uid=avatars[member].uid)

    @ctx.server_events.on_event("client_disconnected")
    def left(member: int, code: int, reason: str) -> None:
        ctx.remove(avatars.pop(member).uid)  # type: ignore[arg-type]
        emit(event="client_disconnected", member=member, code=code, reason=reason)

    commands: queue.Queue[dict[str, Any] | None] = queue.Queue()
    threading.Thread(target=reader, args=(commands,), daemon=True).start()
    print(f"READY {serv.port}", flush=True)
    crates: list[Crate] = []
    try:
        while True:
            ctx.server_sync()
            if churn["on"]:
                churn["n"] += 1
                for crate in crates:
                    crate.weight = f"{churn['n']:08d}" + "x" * churn["size"]
            while not commands.empty():
                cmd = commands.get()
                if cmd is None:
                    return
                op = cmd["op"]
                if op == "spawn":
                    with ctx.activate():
                        new = [Crate(cmd.get("weight", 1)) for _ in range(cmd.get("n", 1))]
                    crates += new
                    emit(event="spawned", uids=[c.uid for c in new])
                elif op == "set":
                    setattr(ctx.objects[cmd["uid"]], cmd["field"], cmd["value"])
                    emit(event="set", uid=cmd["uid"])
                elif op == "despawn":
                    ctx.remove(cmd["uid"])
                    crates = [c for c in crates if c.uid != cmd["uid"]]
                    emit(event="despawned", uid=cmd["uid"])
                elif op == "churn":
                    churn.update(on=cmd["on"], size=cmd.get("size", 0))
                    if not cmd["on"]:
                        for crate in crates:
                            crate.weight = 0
                    emit(event="churn", on=cmd["on"])
                elif op == "state":
                    with serv.lock:
                        stats = dict(serv.stats)
                    emit(
                        event="state",
                        table=table(ctx),
                        executed=EXECUTED,
                        members=serv.members,
                        stats=stats,
                        rss_kib=proc_status("VmRSS"),
                        fds=open_fds(),
                    )
    finally:
        serv.stop_server()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
