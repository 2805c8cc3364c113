"""``uids``: heavy spawning and despawning; every client sees the same UID (and type) for every
object, and no UID is ever reused — checked on the server's log of every UID it assigned and
on every client's log of every replica it ever built."""

from __future__ import annotations

from typing import Any

from harness.procs import Fleet
from harness.scenarios.common import Options, Result, Run, guard

__all__ = ["run"]


def run(opts: Options) -> Result:
    result = Result("uids")
    clients, objects = opts.get("clients", 4), opts.get("objects", 20)
    seconds, rate = opts.get("seconds", 3.0), opts.get("rate", 30.0)

    def body() -> None:
        with Fleet() as fleet:
            r = Run(fleet, opts, result)
            r.start_server(
                rate=rate,
                objects=objects,
                per_client=1,
                mutate={
                    "per_tick": max(1, objects // 4),
                    "spawn": 1.5,
                    "despawn": 1.5,
                    "min_objects": max(1, objects // 4),
                    "max_objects": objects * 3,
                },
            )
            r.start_clients(clients, opts.get("clients_per_process", 2))
            r.srv.request("mutate", on=True)
            r.hold(seconds, "uids")
            state, _ = r.converge()
            check(result, state, r)

    return guard(result, body)


def check(result: Result, state: dict[str, Any], r: Run) -> None:
    assigned = state["assigned"]
    server_type: dict[int, str] = {}
    reused = []
    for uid, typ in assigned:
        if uid in server_type:
            reused.append(uid)
        server_type[uid] = typ
    result.check(
        not reused,
        f"server assigned {len(reused)} UIDs twice (e.g. {sorted(set(reused))[:5]})",
    )
    seen_any = 0
    for proc in r.procs:
        for st in proc.request("status", detail=True, timeout=20.0)["clients"]:
            who = f"{proc.name} client {st['index']} (member {st['member']})"
            counts: dict[int, int] = {}
            wrong_type = []
            for uid, typ in st["spawned"]:
                counts[uid] = counts.get(uid, 0) + 1
                if server_type.get(uid) != typ:
                    wrong_type.append((uid, typ, server_type.get(uid)))
            twice = sorted(u for u, n in counts.items() if n > 1)
            seen_any += len(counts)
            result.check(not twice, f"{who} saw UIDs spawned twice: {twice[:5]}")
            result.check(
                not wrong_type,
                f"{who} disagrees with the server on (uid, type, server type): {wrong_type[:3]}",
            )
            unknown = [u for u in counts if u not in server_type]
            result.check(not unknown, f"{who} saw UIDs the server never assigned: {unknown[:5]}")
    result.figures.update(
        clients=sum(len(r.members(p)) for p in r.procs),
        uids_assigned=len(assigned),
        uids_distinct=len(server_type),
        uids_seen_by_clients=seen_any,
        seconds=r.opts.get("seconds", 3.0),
    )
