"""The text demo (standard library only): one server and three headless clients on loopback.

`make demo` shows the arena (examples/arena) when pygame-ce can be installed, and falls back to
this. Run as ``python examples/demo.py`` (it starts every part), or ``server PORT`` /
``client PORT`` to play one part.

The server spawns an avatar for each client that joins and moves a few wandering NPCs; each
client moves its own avatar with RPCs and, once, deliberately tries to move someone else's:
the server refuses it (``not_owner``), which is the ownership check working. "player N" is the
client with membership id N, in every line. Only the server prints while the demo runs; each
client's report follows at the end. ``--monitor`` (``make demo MONITOR=1``) also starts the
web inspector (docs/monitor.md), prints its URL and runs for two minutes so there is time to
look around.
"""

from __future__ import annotations

import json
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
    serv.start_server()
    print(f"READY {serv.port}", flush=True)
    inspector = None
    if monitor:
        from reverb.monitor import Monitor

        inspector = Monitor(serv).start()
        print(f"[server] web inspector: open {inspector.url}", flush=True)
    players: dict[int, Player] = {}
    joined: list[int] = []

    @server_event_registry.on_event("client_connected")
    def on_join(member):
        joined.append(member)
        players[member] = Player(f"player {member}", belonging_membership=member)
        print(f"[server] player {member} joined; its avatar is object uid={players[member].uid}")

    @server_event_registry.on_event("client_disconnected")
    def on_leave(member, code, reason):
        p = players.pop(member)
        print(f"[server] player {member} left (close {code} {reason!r}) with score {p.score}")
        p.destroy()

    npcs = [Npc(angle=i * 2.1) for i in range(3)]
    start = time.monotonic()
    next_report = start + 2.0
    try:
        while time.monotonic() < start + seconds + 10 and not (joined and not players):
            for npc in npcs:
                npc.angle += 0.05
                npc.x, npc.y = round(5 * math.cos(npc.angle), 2), round(5 * math.sin(npc.angle), 2)
            ReverbManager.server_sync()
            if time.monotonic() >= next_report and players:
                next_report += 2.0
                world = "; ".join(
                    f"{p.name} at ({p.x:g}, {p.y:g}) score {p.score}"
                    for _, p in sorted(players.items())
                )
                print(f"[server] t={time.monotonic() - start:.0f}s  {world}", flush=True)
    finally:
        if inspector is not None:
            inspector.stop()
        serv.stop_server()


def run_client(port: int, seconds: float = SECONDS) -> None:
    ReverbManager.REVERB_SIDE = ReverbSide.CLIENT
    clt = Client(ip="127.0.0.1", port=port)
    seen: list[str] = []
    refused: list[str] = []

    @client_event_registry.on_event("object_spawned")
    def spawned(obj):
        mine = " (mine)" if obj.is_owner() else ""
        seen.append(f"{type(obj).__name__} uid={obj.uid}{mine}")

    clt.connect()
    me = f"player {clt.member}"
    rng = random.Random(clt.member)
    end = time.monotonic() + seconds
    tried = False
    calls = 0
    while time.monotonic() < end:
        ReverbManager.client_sync(timeout=0.05)
        for p in ReverbManager.get_all_ro_by_type(Player):
            if p.is_owner():
                p.compute_server(p.move, rng.choice([-1, 1]), rng.choice([-1, 1]))
                calls += 1
            elif not tried and time.monotonic() > end - seconds / 2:
                tried = True
                future = p.compute_server(p.move, 1, 1)  # not ours: the server must refuse it
                try:
                    future.result(timeout=5)
                    refused.append(f"UNEXPECTED: moving {p.name}'s avatar was allowed")
                except RpcError as error:
                    refused.append(
                        f"expected refusal: {me} tried to move {p.name}'s avatar -> "
                        f"{error.code} (only the owner may move it: the server's check working)"
                    )
    players = ReverbManager.get_all_ro_by_type(Player)
    clt.disconnect()
    report = {
        "member": clt.member,
        "lines": [
            f"[{me}] saw {len(seen)} objects spawn: {', '.join(seen)}",
            f"[{me}] made {calls} move calls; last view: "
            + "; ".join(f"{p.name} score {p.score}" for p in players),
            *(f"[{me}] {line}" for line in refused),
        ],
    }
    print("RESULT " + json.dumps(report), flush=True)


def orchestrate(monitor: bool = False) -> int:
    seconds = MONITOR_SECONDS if monitor else SECONDS
    procs: list[subprocess.Popen[str]] = []
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
        print(f"demo: server on 127.0.0.1:{port}; {CLIENTS} clients for {seconds:.0f} s")
        relay = threading.Thread(target=lambda: [print(line, end="") for line in server.stdout])  # type: ignore[union-attr]
        relay.start()
        clients = [
            subprocess.Popen([sys.executable, __file__, "client", port, str(seconds)],
                             stdout=subprocess.PIPE, text=True)
            for _ in range(CLIENTS)
        ]  # fmt: skip
        procs.extend(clients)
        outputs = [c.communicate(timeout=seconds + 20)[0] for c in clients]
        codes = [c.returncode for c in clients] + [server.wait(timeout=20)]
        relay.join(5)
        reports = [
            json.loads(line[len("RESULT ") :])
            for out in outputs
            for line in out.splitlines()
            if line.startswith("RESULT ")
        ]
        print("\ndemo: each client's report")
        for report in sorted(reports, key=lambda r: r["member"]):
            print("\n".join(report["lines"]))
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
        run_client(int(sys.argv[2]), float(sys.argv[3]))
    else:
        sys.exit(orchestrate(monitor="--monitor" in sys.argv))
