"""`make demo`: one server and three headless clients on loopback, for a bounded time.

The server spawns a Player for each client that joins and moves a few wandering NPCs; each
client moves its own Player with RPCs, tries to move someone else's (refused), and prints the
world it sees. Run as ``python examples/demo.py`` (orchestrates), or with ``server PORT`` /
``client PORT NAME`` to play one part. ``--monitor`` (``make demo MONITOR=1``) also starts the
web inspector, prints its URL and runs for two minutes so there is time to look around.
"""

from __future__ import annotations

import math
import random
import subprocess
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

SECONDS = 8.0
MONITOR_SECONDS = 120.0
CLIENTS = 3


@ReverbManager.reverb_object_attribute
class Player(ReverbObject):
    def __init__(
        self, name="?", x=0.0, y=0.0, uid=None, add_on_init=True, belonging_membership=None
    ):
        self.name = name
        self.x = x
        self.y = y
        self.score = 0
        super().__init__(
            name, x, y, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def move(self, dx, dy):
        if abs(dx) > 1 or abs(dy) > 1:
            raise RpcError("too fast")
        self.x = round(self.x + dx, 2)
        self.y = round(self.y + dy, 2)
        self.score += 1
        return [self.x, self.y]


@ReverbManager.reverb_object_attribute
class Npc(ReverbObject):
    def __init__(self, angle=0.0, uid=None, add_on_init=True, belonging_membership=None):
        self.angle = angle
        self.x = 0.0
        self.y = 0.0
        super().__init__(
            angle, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


def run_server(port: int, seconds: float = SECONDS, monitor: bool = False) -> None:
    ReverbManager.REVERB_SIDE = ReverbSide.SERVER
    serv = Server(port=port, tick_rate=20)
    ReverbManager.REVERB_CONNECTION = serv
    serv.start_server()
    print(f"READY {serv.port}", flush=True)
    inspector = None
    if monitor:
        from reverb.monitor import Monitor

        inspector = Monitor(serv).start()
        print(f"[server] inspector: open {inspector.url}", flush=True)
    players: dict[int, Player] = {}

    @server_event_registry.on_event("client_connected")
    def joined(client_id):
        players[client_id] = Player(f"p{client_id}", belonging_membership=client_id)
        print(f"[server] client #{client_id} joined: spawned Player uid={players[client_id].uid}")

    @server_event_registry.on_event("client_disconnected")
    def left(client_id, code, reason):
        print(f"[server] client #{client_id} left ({code} {reason}); despawning its Player")
        players.pop(client_id).destroy()

    npcs = [Npc(angle=i * 2.1) for i in range(3)]
    end = time.monotonic() + seconds + 2
    try:
        while time.monotonic() < end:
            for npc in npcs:
                npc.angle += 0.05
                npc.x, npc.y = round(5 * math.cos(npc.angle), 2), round(5 * math.sin(npc.angle), 2)
            ReverbManager.server_sync()
    finally:
        if inspector is not None:
            inspector.stop()
        serv.stop_server()


def run_client(port: int, name: str, seconds: float = SECONDS) -> None:
    ReverbManager.REVERB_SIDE = ReverbSide.CLIENT
    clt = Client(ip="127.0.0.1", port=port)
    ReverbManager.REVERB_CONNECTION = clt

    @client_event_registry.on_event("object_spawned")
    def spawned(obj):
        mine = " (mine)" if obj.is_owner() else ""
        print(f"[{name}] spawned {type(obj).__name__} uid={obj.uid}{mine}")

    @client_event_registry.on_event("rpc_error")
    def refused(error):
        print(f"[{name}] RPC refused: {error}")

    clt.connect()
    rng = random.Random(name)
    end = time.monotonic() + seconds
    next_print = 0.0
    while time.monotonic() < end:
        ReverbManager.client_sync(timeout=0.05)
        players = ReverbManager.get_all_ro_by_type(Player)
        for p in players:
            if p.is_owner():
                p.compute_server(p.move, rng.choice([-1, 1]), rng.choice([-1, 1]))
            elif rng.random() < 0.01:
                p.compute_server(p.move, 1, 1)  # not ours: the server refuses it
        if time.monotonic() >= next_print:
            next_print = time.monotonic() + 1.0
            world = ", ".join(f"{p.name}@({p.x},{p.y}) score={p.score}" for p in players)
            npcs = ", ".join(f"({n.x},{n.y})" for n in ReverbManager.get_all_ro_by_type(Npc))
            print(f"[{name}] players: {world} | npcs: {npcs}", flush=True)
    clt.disconnect()


def orchestrate(monitor: bool = False) -> int:
    procs: list[subprocess.Popen[str]] = []
    seconds = MONITOR_SECONDS if monitor else SECONDS
    try:
        server = subprocess.Popen(
            [sys.executable, __file__, "server", "0", str(seconds)]
            + (["--monitor"] if monitor else []),
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(server)
        assert server.stdout is not None
        ready = server.stdout.readline()
        if not ready.startswith("READY "):
            print("server did not start", file=sys.stderr)
            return 1
        port = ready.split()[1]
        print(f"demo: server on 127.0.0.1:{port}; starting {CLIENTS} clients for {seconds:.0f} s")
        relay = threading.Thread(target=lambda: [print(line, end="") for line in server.stdout])  # type: ignore[union-attr]
        relay.start()
        for i in range(CLIENTS):
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "client", port, f"client{i + 1}", str(seconds)]
                )
            )
        codes = [p.wait(timeout=seconds + 20) for p in procs]
        relay.join(5)
        print(f"demo: done, exit codes {codes}")
        return max(codes)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "server":
        run_server(int(sys.argv[2]), float(sys.argv[3]), "--monitor" in sys.argv)
    elif len(sys.argv) > 1 and sys.argv[1] == "client":
        run_client(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit(orchestrate(monitor="--monitor" in sys.argv))
