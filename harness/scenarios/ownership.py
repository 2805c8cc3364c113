"""``ownership``: each client owns exactly the objects the server spawned for it, ``is_owner()``
agrees with the owner everywhere, and owner-only RPCs on objects a client does not own are
refused with ``not_owner`` and never run (the server logs every execution by token)."""

from __future__ import annotations

from typing import Any

from harness.procs import Fleet
from harness.scenarios.common import Options, Result, Run, guard

__all__ = ["run"]

PER_CLIENT = 3


def run(opts: Options) -> Result:
    result = Result("ownership")
    clients, objects = opts.get("clients", 4), opts.get("objects", 10)
    rate = opts.get("rate", 30.0)
    calls = max(8, int(opts.get("seconds", 2.0) * 10))

    def body() -> None:
        with Fleet() as fleet:
            r = Run(fleet, opts, result)
            r.start_server(
                rate=rate,
                objects=objects,
                per_client=PER_CLIENT,
                mutate={"per_tick": 1},
            )
            r.start_clients(clients, opts.get("clients_per_process", 2))
            r.srv.request("mutate", on=True)
            state, _ = r.converge()  # every client holds every object: now probe ownership
            check_tables(result, state, r)
            replies = [
                (p, p.send("calls", plan="ownership", k=calls, timeout=20.0)) for p in r.procs
            ]
            batches = [(p, p.reply(rid, 40.0)) for p, rid in replies]
            final = r.srv.request("state", detail=True)
            check_calls(result, state, final["executions"], batches)
            result.figures.update(clients=clients, objects=objects, calls_per_client=calls)

    return guard(result, body)


def check_tables(result: Result, state: dict[str, Any], r: Run) -> None:
    owners = {int(u): o for u, o in state["owners"].items()}
    per_client = {int(m): set(uids) for m, uids in state["per_client"].items()}
    for proc in r.procs:
        for st in proc.request("status")["clients"]:
            member = st["member"]
            who = f"{proc.name} client {st['index']} (member {member})"
            mine = {int(u) for u, (_, is_owner) in st["owners"].items() if is_owner}
            result.check(
                mine == per_client.get(member, set()),
                f"{who} owns {sorted(mine)}, but the server spawned "
                f"{sorted(per_client.get(member, set()))} for it",
            )
            for uid, (owner, is_owner) in st["owners"].items():
                if not result.check(
                    owner == owners.get(int(uid)),
                    f"{who} sees owner {owner} for uid {uid}, the server {owners.get(int(uid))}",
                ):
                    break
                if not result.check(
                    is_owner == (owner == member),
                    f"{who}: is_owner() is {is_owner} for uid {uid} owned by {owner}",
                ):
                    break


def check_calls(
    result: Result,
    state: dict[str, Any],
    executions: dict[str, list[Any]],
    batches: list[tuple[Any, dict[str, Any]]],
) -> None:
    owners = {int(u): o for u, o in state["owners"].items()}
    refused = executed_foreign = 0
    for proc, batch in batches:
        result.check(batch["complete"], f"{proc.name}: some calls never completed")
        members = batch["members"]
        for call in batch["calls"]:
            member = members[int(call["token"].split(".")[1])]
            owner = owners.get(call["uid"])
            ran = executions.get(call["token"])
            what = (
                f"{proc.name} member {member}: {call['method']} on uid {call['uid']} "
                f"(owner {owner})"
            )
            if call["method"] == "wave" or owner == member:
                result.check(call.get("ok") is True, f"{what} failed: {call}")
                result.check(
                    ran is not None and ran[1] == member, f"{what}: server ran it for {ran}"
                )
                if call.get("ok"):
                    result.check(
                        call["value"]["caller"] == member,
                        f"{what}: answer names caller {call['value']['caller']}",
                    )
            else:
                refused += 1
                result.check(
                    call.get("code") == "not_owner",
                    f"{what} by a non-owner: expected not_owner, got {call}",
                )
                if ran is not None:
                    executed_foreign += 1
    result.check(
        executed_foreign == 0, f"{executed_foreign} owner-only calls by non-owners were executed"
    )
    for token, (method, caller, uid, owner_then, _) in executions.items():
        if method != "wave" and caller != owner_then:
            result.add(
                f"server ran owner-only {method} on uid {uid} for {caller}, owner {owner_then} "
                f"(token {token})"
            )
            break
    result.figures.update(refused_calls=refused, executions=len(executions))
