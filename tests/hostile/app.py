"""The server under attack in the hostile suite, run as a real process:
``python -m tests.hostile.app '<json Server options>'``.

Three keys of the options are the app's own: ``"layer": "aio"`` serves with ``AsyncServer``
instead of the threaded ``Server``, ``"fault": "on_event"`` makes the server's event
handling raise a plain ``RuntimeError`` for an ``rpc`` whose method is ``"fault"`` (fault
injection at the connection boundary, decision 1 of issue 8), and ``"close_linger": s``
sets how long both layers keep flushing a dropped peer's close frame (1 s by default), for
tests that read only after the test process has heard of the drop.

It prints ``READY <port>``, gives every client an ``Avatar`` it owns, and answers JSON commands
on stdin with JSON lines on stdout: ``spawn``, ``despawn``, ``set``, ``churn`` (rewrite big
fields every tick, to fill slow readers' buffers) and ``state`` (table, stats, members,
executed methods, RSS and open file descriptors of this process).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import sys
import threading
from typing import Any

from reverb import ReverbContext, ReverbObject, ReverbSide, Server, expose
from reverb.aio import AsyncServer
from reverb.proto import messages as m
from reverb.proto.session import Received

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

    @expose(anyone=True)
    def tick(self):
        """The server's latest tick: its sync went out before this reply (test_rpc_path)."""
        count("tick")
        return self._reverb_ctx.world.tick_count

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


def inject_fault(serv: Server | AsyncServer) -> None:
    """Make the hub's event handling raise for an ``rpc`` named ``fault`` (one connection)."""
    real = serv.hub.on_event

    def on_event(session: Any, event: Any, now: float, conn: Any = None) -> Any:
        if isinstance(event, Received) and isinstance(event.message, m.Rpc):
            if event.message.method == "fault":
                raise RuntimeError("injected fault")
        return real(session, event, now, conn)

    serv.hub.on_event = on_event  # type: ignore[method-assign]


class Game:
    """The world and the stdin commands, shared by both I/O layers."""

    def __init__(self, ctx: ReverbContext, serv: Server | AsyncServer) -> None:
        self.ctx = ctx
        self.serv = serv
        self.avatars: dict[int, Avatar] = {}
        self.crates: list[Crate] = []
        self.churn: dict[str, Any] = {"on": False, "n": 0}
        self.commands: queue.Queue[dict[str, Any] | None] = queue.Queue()

        @ctx.server_events.on_event("client_connected")
        def joined(member: int, identity: Any) -> None:
            with ctx.activate():
                self.avatars[member] = Avatar(f"p{member}", belonging_membership=member)
            emit(event="client_connected", member=member, uid=self.avatars[member].uid)

        @ctx.server_events.on_event("client_disconnected")
        def left(member: int, code: int, reason: str) -> None:
            ctx.remove(self.avatars.pop(member).uid)  # type: ignore[arg-type]
            emit(event="client_disconnected", member=member, code=code, reason=reason)

        threading.Thread(target=reader, args=(self.commands,), daemon=True).start()

    def step(self) -> bool:
        """After a tick: churn, then run the queued commands; False once stdin closed."""
        ctx = self.ctx
        if self.churn["on"]:
            self.churn["n"] += 1
            for crate in self.crates:
                crate.weight = f"{self.churn['n']:08d}" + "x" * self.churn["size"]
        while not self.commands.empty():
            cmd = self.commands.get()
            if cmd is None:
                return False
            op = cmd["op"]
            if op == "spawn":
                with ctx.activate():
                    new = [Crate(cmd.get("weight", 1)) for _ in range(cmd.get("n", 1))]
                self.crates += new
                emit(event="spawned", uids=[c.uid for c in new])
            elif op == "set":
                setattr(ctx.objects[cmd["uid"]], cmd["field"], cmd["value"])
                emit(event="set", uid=cmd["uid"])
            elif op == "despawn":
                ctx.remove(cmd["uid"])
                self.crates = [c for c in self.crates if c.uid != cmd["uid"]]
                emit(event="despawned", uid=cmd["uid"])
            elif op == "churn":
                self.churn.update(on=cmd["on"], size=cmd.get("size", 0))
                if not cmd["on"]:
                    for crate in self.crates:
                        crate.weight = 0
                emit(event="churn", on=cmd["on"])
            elif op == "state":
                if isinstance(self.serv, Server):
                    io = self.serv._io
                    with io.lock:
                        stats, members = dict(self.serv.stats), sorted(self.serv.hub.members)
                        backlog = sum(conn.backlog() for conn in io.conns.values())
                else:
                    stats, members = dict(self.serv.stats), sorted(self.serv.hub.members)
                    backlog = sum(proto.queue.size for proto in self.serv._io.protocols)
                emit(
                    event="state",
                    table=table(ctx),
                    executed=EXECUTED,
                    members=members,
                    stats=stats,
                    rss_kib=proc_status("VmRSS"),
                    rss_peak_kib=proc_status("VmHWM"),
                    fds=open_fds(),
                    backlog=backlog,  # bytes no socket could take yet (not the kernel's)
                )
        return True


def setup(options: dict[str, Any]) -> tuple[ReverbContext, dict[str, Any], str, bool]:
    options = dict(options)
    layer = options.pop("layer", "threaded")
    fault = options.pop("fault", None) == "on_event"
    if "close_linger" in options:
        import reverb.aio._base
        import reverb.threaded._loop

        reverb.aio._base.CLOSE_LINGER = reverb.threaded._loop.CLOSE_LINGER = float(
            options.pop("close_linger")
        )
    ctx = ReverbContext(ReverbSide.SERVER)
    for cls in TYPES:
        ctx.register(cls)
    return ctx, options, layer, fault


def main(options: dict[str, Any]) -> None:
    ctx, options, layer, fault = setup(options)
    if layer == "aio":
        asyncio.run(amain(ctx, options, fault))
        return
    serv = Server(port=0, context=ctx, **options)
    if fault:
        inject_fault(serv)
    serv.start_server()
    game = Game(ctx, serv)
    print(f"READY {serv.port}", flush=True)
    try:
        while True:
            ctx.server_sync()
            if not game.step():
                return
    finally:
        serv.stop_server()


async def amain(ctx: ReverbContext, options: dict[str, Any], fault: bool) -> None:
    serv = AsyncServer(port=0, context=ctx, **options)
    if fault:
        inject_fault(serv)
    await serv.start_server()
    game = Game(ctx, serv)
    print(f"READY {serv.port}", flush=True)
    try:
        while True:
            await serv.server_sync()
            if not game.step():
                return
    finally:
        await serv.stop_server()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
