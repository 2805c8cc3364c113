"""``rpc``: every client fires K pipelined calls (``bump`` returning a result, ``refuse``
raising ``RpcError``, ``wave`` on any object); each carries a unique token. The server must run
each exactly once, and each result or error must come back to the caller that sent it."""

from __future__ import annotations

from typing import Any

from harness.procs import Fleet
from harness.scenarios.common import Options, Result, Run, guard

__all__ = ["run"]


def run(opts: Options) -> Result:
    result = Result("rpc")
    clients, objects = opts.get("clients", 4), opts.get("objects", 10)
    rate = opts.get("rate", 30.0)
    k = max(9, int(opts.get("seconds", 2.0) * 30))

    def body() -> None:
        with Fleet() as fleet:
            r = Run(fleet, opts, result)
            r.start_server(rate=rate, objects=objects, per_client=2, mutate={"per_tick": 1})
            r.start_clients(clients, opts.get("clients_per_process", 2))
            r.srv.request("mutate", on=True)
            r.converge()  # every client holds its own objects before calling them
            rids = [(p, p.send("calls", plan="rpc", k=k, timeout=30.0)) for p in r.procs]
            batches = [(p, p.reply(rid, 60.0)) for p, rid in rids]
            final = r.srv.request("state", detail=True)
            check(result, final["executions"], batches)
            rtts = [c["rtt_ms"] for _, b in batches for c in b["calls"] if "pending" not in c]
            result.figures.update(clients=clients, calls_per_client=k)
            result.samples["rtt_ms"] = rtts

    return guard(result, body)


def check(result: Result, executions: dict[str, list[Any]], batches: list[Any]) -> None:
    total = 0
    by_caller: dict[tuple[str, int], int] = {}
    for proc, batch in batches:
        result.check(batch["complete"], f"{proc.name}: some calls never completed")
        members = batch["members"]
        for call in batch["calls"]:
            total += 1
            token, method = call["token"], call["method"]
            member = members[int(token.split(".")[1])]
            by_caller[(method, member)] = by_caller.get((method, member), 0) + 1
            what = f"{proc.name} member {member} {method} {token}"
            ran = executions.get(token)
            if not result.check(ran is not None, f"{what}: never executed"):
                continue
            assert ran is not None
            result.check(ran[4] == 1, f"{what}: executed {ran[4]} times")
            result.check(
                ran[0] == method and ran[1] == member,
                f"{what}: server ran {ran[0]} for caller {ran[1]}",
            )
            if method == "refuse":
                result.check(
                    call.get("code") == "rejected" and call.get("message") == f"refused {token}",
                    f"{what}: expected its own rejected error, got {call}",
                )
            else:
                value = call.get("value") or {}
                result.check(
                    call.get("ok") is True
                    and value.get("token") == token
                    and value.get("caller") == member,
                    f"{what}: wrong or foreign answer {call}",
                )
    server_by_caller: dict[tuple[str, int], int] = {}
    for method, caller, _, _, times in executions.values():
        server_by_caller[(method, caller)] = server_by_caller.get((method, caller), 0) + times
    result.check(
        server_by_caller == by_caller,
        f"executions per (method, caller) differ: server {sorted(server_by_caller.items())[:4]} "
        f"clients {sorted(by_caller.items())[:4]}",
    )
    result.figures.update(calls=total, executions=sum(e[4] for e in executions.values()))
