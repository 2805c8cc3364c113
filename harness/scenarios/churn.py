"""``churn``: clients join, leave cleanly and are SIGKILLed mid-stream (one client per process)
while the world keeps changing and calls keep flowing. Afterwards the survivors converge, the
server's ``members`` are exactly the survivors, no object owned by a departed client is left,
no call ran twice, and the server's RSS grew by less than a bound (before/after reported)."""

from __future__ import annotations

import random
import time
from typing import Any

from harness.procs import Child, Fleet
from harness.scenarios.common import Options, Result, Run, guard

__all__ = ["run"]

RSS_GROWTH_LIMIT_MB = 32.0  # interpreter arenas grow in steps; a real leak grows per client
PER_CLIENT = 2


def run(opts: Options) -> Result:
    result = Result("churn")
    clients, objects = opts.get("clients", 4), opts.get("objects", 30)
    seconds, rate = opts.get("seconds", 3.0), opts.get("rate", 30.0)
    rng = random.Random(opts.seed)

    def body() -> None:
        with Fleet() as fleet:
            r = Run(fleet, opts, result)
            r.start_server(
                rate=rate,
                objects=objects,
                per_client=PER_CLIENT,
                mutate={
                    "per_tick": max(1, objects // 5),
                    "spawn": 0.2,
                    "despawn": 0.2,
                    "min_objects": objects // 2,
                    "max_objects": objects * 2,
                },
            )
            live: list[Child] = list(r.start_clients(clients, 1))
            for proc in live:
                proc.request("stream", on=True, rate=5.0)
            r.srv.request("mutate", on=True)
            before = r.srv.request("state")["sample"]
            departed: dict[int, str] = {}
            counts = {"join": 0, "leave": 0, "kill": 0}
            next_action = [0.25]

            def act(elapsed: float) -> None:
                if elapsed < next_action[0]:
                    return
                next_action[0] += 0.25
                choices = ["join"] if len(live) < clients + 3 else []
                if len(live) > 2:
                    choices += ["leave", "kill"]
                action = rng.choice(choices or ["join"])
                counts[action] += 1
                if action == "join":
                    proc = r.start_clients(1, 1)[0]
                    proc.request("stream", on=True, rate=5.0)
                    live.append(proc)
                    return
                proc = live.pop(rng.randrange(len(live)))
                r.expected_dead.append(proc)
                member = r.members(proc)[0]
                departed[member] = action
                if action == "leave":
                    fleet.stop(proc)
                else:
                    proc.kill()

            r.hold(seconds, "churn", act)
            for proc in live:
                proc.request("stream", on=False, timeout=20.0)
            survivors = sorted(m for p in live for m in r.members(p))
            members = settle(r, survivors, opts.get("converge_timeout", 10.0))
            result.check(
                members == survivors,
                f"server members {members} != survivors {survivors} once churn stopped",
            )
            state, _ = r.converge(live)
            after = state["sample"]
            check(result, r, state, departed, survivors)
            growth = (after["rss_kb"] - before["rss_kb"]) / 1024.0
            result.check(
                growth < RSS_GROWTH_LIMIT_MB,
                f"server RSS grew {growth:.1f} MB (limit {RSS_GROWTH_LIMIT_MB} MB)",
            )
            result.figures.update(
                clients_initial=clients,
                objects=objects,
                seconds=seconds,
                joins=counts["join"],
                leaves=counts["leave"],
                kills=counts["kill"],
                survivors=len(survivors),
                server_rss_before_mb=round(before["rss_kb"] / 1024.0, 2),
                server_rss_after_mb=round(after["rss_kb"] / 1024.0, 2),
                server_rss_growth_mb=round(growth, 2),
                accepted=state["stats"]["accepted"],
            )

    return guard(result, body)


def settle(r: Run, survivors: list[int], timeout: float = 10.0) -> list[int]:
    """Poll the server until its members are the survivors, or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        members = sorted(r.srv.request("state")["members"])
        if members == survivors or time.monotonic() >= deadline:
            return members
        time.sleep(0.05)


def check(
    result: Result, r: Run, state: dict[str, Any], departed: dict[int, str], survivors: list[int]
) -> None:
    disconnected = {e["member"] for e in r.srv.events("client_disconnected")}
    missing = sorted(set(departed) - disconnected)
    result.check(not missing, f"no client_disconnected event for members {missing}")
    owners = {int(u): o for u, o in state["owners"].items()}
    leaked = sorted(u for u, o in owners.items() if o is not None and o in departed)
    result.check(not leaked, f"objects of departed clients still in the world: {leaked[:8]}")
    per_client = sorted(int(m) for m in state["per_client"])
    result.check(
        per_client == survivors,
        f"server holds per-client objects for {per_client}, survivors are {survivors}",
    )
    owned = sorted(o for o in owners.values() if o is not None)
    expected = sorted(m for m in survivors for _ in range(PER_CLIENT))
    result.check(owned == expected, f"owned objects by member {owned} != {expected}")
    twice = [t for t, e in state["executions"].items() if e[4] != 1]
    result.check(not twice, f"calls executed more than once: {twice[:5]}")
    result.figures["calls_executed"] = len(state["executions"])
