"""The raw baseline: the simplest server that does what ``server_sync`` does.

asyncio; each frame is a 4-byte big-endian length and stdlib ``json``; at each tick (30 Hz) the
full state -- N objects, three fields each -- is encoded ONCE and the same bytes are written to
every client. A client that sends ``{"id": k, "args": [...]}`` gets ``{"id": k, "result":
args[0]}`` back at once (the RPC baseline). A client whose send buffer holds more than a few
frames skips ticks until it has drained (counted, never buffered without bound).

Run as ``python -m harness.bench.raw_server '{"n": 1000, "churn": 1.0}'``; it prints
``READY <port>`` and then obeys the JSON-line commands of ``harness.bench.servers``.

With ``"floor": true`` it is the *floor*: the same loop, but it writes only what changed. A
client that has not had the current state gets the full state once; after that, a tick that
changed something sends ``{"tick": t, "changed": [...]}`` holding just the changed objects
(encoded once, the same bytes for every client; the game itself knows which objects it
changed, so nothing is compared or tracked). At 0 % churn it therefore does nothing but wake
at 30 Hz and run the game loop: what any server, however clever, pays for an idle tick on
this machine. At 10 % churn it is the least a server that sends only changes pays: the
bench's 0 % and 10 % rows are read against it.
"""

from __future__ import annotations

import asyncio
import json
import queue
import struct
import sys
import time
from typing import Any

from harness.bench.servers import Measure
from harness.bench.workload import RATE, changed_indexes, emit, field_values, initial_values

__all__ = ["RawServer", "main"]

HEADER = struct.Struct(">I")
MAX_BACKLOG_FRAMES = 4  # a client further behind than this skips ticks


class Peer(asyncio.Protocol):
    """One client: frames RPC requests in, writes replies out."""

    def __init__(self, server: RawServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.peers.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.peers.discard(self)
        self.server.had.pop(self, None)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 4:
            (size,) = HEADER.unpack_from(self.buf)
            if size > 65536:
                assert self.transport is not None
                self.transport.abort()
                return
            if len(self.buf) < 4 + size:
                return
            request = json.loads(bytes(self.buf[4 : 4 + size]))
            del self.buf[: 4 + size]
            body = json.dumps({"id": request["id"], "result": request["args"][0]}).encode()
            assert self.transport is not None
            self.transport.write(HEADER.pack(len(body)) + body)


class RawServer:
    def __init__(self, n: int, churn: float, floor: bool = False) -> None:
        self.churn = churn
        self.floor = floor
        self.version = 0  # floor: bumped by every tick that changed something
        self.had: dict[Peer, int] = {}  # floor: the version each peer was last sent
        self.changed: list[dict[str, Any]] = []  # floor: the objects tick changed_at changed
        self.changed_at = -1
        self.objects = [
            dict(zip(("id", "x", "y", "hp"), (i + 1, *initial_values(i)), strict=True))
            for i in range(n)
        ]
        self.peers: set[Peer] = set()
        self.tick = 0
        self.mutating = True
        self.measure = Measure()
        self.skipped = 0

    def mutate(self, tick: int) -> None:
        objects = self.objects
        changed = self.changed
        changed.clear()
        for i in changed_indexes(len(objects), self.churn, tick):
            x, y, hp = field_values(i, tick)
            obj = objects[i]
            obj["x"] = x
            obj["y"] = y
            obj["hp"] = hp
            if self.floor:
                changed.append(obj)
        if changed:
            self.version += 1
            self.changed_at = tick

    def send_state(self) -> None:
        """The whole of the baseline's ``server_sync``: encode once, write to everyone."""
        if self.floor:
            self.send_changes()
            return
        state = {"tick": self.tick, "objects": self.objects}
        body = json.dumps(state, separators=(",", ":")).encode()
        frame = HEADER.pack(len(body)) + body
        self.measure.bytes_sent += self.write(self.peers, frame)

    def send_changes(self) -> None:
        """The floor's ``server_sync``: this tick's changes, encoded once, to every client that
        had the previous version; the full state to one that had none (or fell behind)."""
        version, had = self.version, self.had
        fresh = self.changed_at == self.tick  # this tick changed something: version + 1
        current: list[Peer] = []
        behind: list[Peer] = []
        for peer in self.peers:
            was = had.get(peer)
            if was == version:
                continue
            (current if fresh and was == version - 1 else behind).append(peer)
        sent = 0
        if current:
            delta = {"tick": self.tick, "changed": self.changed}
            body = json.dumps(delta, separators=(",", ":")).encode()
            sent += self.write(current, HEADER.pack(len(body)) + body)
        if behind:
            state = {"tick": self.tick, "objects": self.objects}
            body = json.dumps(state, separators=(",", ":")).encode()
            sent += self.write(behind, HEADER.pack(len(body)) + body)
        self.measure.bytes_sent += sent

    def write(self, peers: Any, frame: bytes) -> int:
        limit = MAX_BACKLOG_FRAMES * len(frame)
        sent = 0
        for peer in peers:
            transport = peer.transport
            if transport is None or transport.is_closing():
                continue
            if transport.get_write_buffer_size() > limit:
                self.skipped += 1
                continue
            transport.write(frame)
            sent += len(frame)
            if self.floor:
                self.had[peer] = self.version
        return sent

    def rows(self) -> list[tuple[Any, ...]]:
        return [(o["id"], o["x"], o["y"], o["hp"]) for o in self.objects]

    async def run(self, commands: queue.Queue[Any]) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Peer(self), "127.0.0.1", 0, backlog=2048)
        port = server.sockets[0].getsockname()[1]
        print(f"READY {port}", flush=True)
        period = 1.0 / RATE
        next_tick = time.monotonic()
        try:
            while True:
                # always yield to the loop, even when late: accepts and RPCs are served there
                await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
                now = time.monotonic()
                next_tick = max(next_tick + period, now)
                if not self.handle(commands):
                    return
                self.tick += 1
                if self.mutating:
                    self.mutate(self.tick)
                self.measure.tick(self.tick, time.monotonic())
                self.send_state()
        finally:
            server.close()
            for peer in list(self.peers):
                if peer.transport is not None:
                    peer.transport.abort()

    def handle(self, commands: queue.Queue[Any]) -> bool:
        """Obey queued commands; False to quit."""
        while True:
            try:
                cmd = commands.get_nowait()
            except queue.Empty:
                return True
            if cmd is None or cmd.get("op") == "quit":
                return False
            reply = self.measure.command(cmd, clients=len(self.peers))
            if cmd["op"] == "final":
                self.mutating = False
                reply["digest"] = self.measure.digest(self.rows())
                reply["tick"] = self.tick
            reply["skipped"] = self.skipped
            emit(rid=cmd.get("rid"), **reply)


def main(argv: list[str]) -> int:
    from harness.bench.workload import stdin_commands

    opts = json.loads(argv[0]) if argv else {}
    commands: queue.Queue[Any] = queue.Queue()
    stdin_commands(commands.put)
    server = RawServer(
        int(opts.get("n", 1000)), float(opts.get("churn", 1.0)), bool(opts.get("floor", False))
    )
    asyncio.run(server.run(commands))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
