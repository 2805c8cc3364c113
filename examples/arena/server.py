"""The arena's server process: ``python examples/arena server [--port 0] [--seconds S]``.

Prints ``READY <port>`` once listening (port 0 picks a free one), the event feed as it
happens, and at the end one line ``RESULT <json>`` with every player's figures. The round
lasts ``--seconds`` (the countdown players see); the server stops when every player who joined
has left (after at least one joined), or 20 s after the round.
"""

from __future__ import annotations

import json
import random
import time

from game import TICK_RATE, Rules

from reverb import ReverbManager, ReverbSide, Server, server_event_registry


def run(port: int, seconds: float, seed: int | None = None) -> int:
    ReverbManager.REVERB_SIDE = ReverbSide.SERVER
    serv = Server(port=port, tick_rate=TICK_RATE)
    serv.start_server()
    start = time.monotonic()
    rules = Rules(random.Random(seed), start)
    joined: list[int] = []
    results: dict[int, dict] = {}
    print(f"READY {serv.port}", flush=True)

    def record(member: int) -> None:
        a = rules.avatars.get(member)
        if a is not None:
            results[member] = {
                "name": a.name,
                "score": a.score,
                "pickups": a.pickups,
                "tags": a.tags,
                "tagged": a.tagged,
            }

    @server_event_registry.on_event("client_connected")
    def on_join(member):
        joined.append(member)
        rules.join(member)

    @server_event_registry.on_event("client_disconnected")
    def on_leave(member, code, reason):
        record(member)
        rules.leave(member)

    end = start + seconds  # the round's end, shown to players
    try:
        while time.monotonic() < end + 20:  # then wait (a little) for the players to leave
            ReverbManager.server_sync()  # waits for the next tick, serving RPCs meanwhile
            now = time.monotonic()
            rules.step(now)
            rules.feed.remaining = round(max(0.0, end - now), 1)
            if joined and not rules.avatars:
                break  # everyone who came has left
        for member in list(rules.avatars):
            record(member)
    finally:
        serv.stop_server()
    result = {
        "seconds": round(time.monotonic() - start, 2),
        "tick_rate": TICK_RATE,
        "members": joined,
        "players": {str(m): r for m, r in sorted(results.items())},
        **rules.counts,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0
