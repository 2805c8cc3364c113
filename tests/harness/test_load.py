"""The load scenario's verdict is honest (issue 8 §5: it once said PASS at 23.8 Hz of 30,
freshness p99 7.1 s and 80 of ~640 planned calls observed).

It passes at a light load with every criterion met, and it FAILs, naming the criterion, when
a deliberately broken server (``--break``, patched into the server child only) drops RPC
replies, cannot hold its tick rate, or sends changes late. The call plan and the judge are
also checked on their own, the judge with the issue's own figures."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from harness.metrics import CallPlan
from harness.scenarios.common import Options, Result
from harness.scenarios.load import judge
from tests.harness.test_scenarios import harness

LIGHT = [
    "load",
    "--clients",
    "4",
    "--objects",
    "40",
    "--seconds",
    "1.5",
    "--clients-per-process",
    "2",
    "--no-baseline",
    "--converge-timeout",
    "3",
    # The verdict's mechanics at a light load, under pytest -n 2 on a 2-core box: the default
    # 100 ms bound is `make load`'s; batch-syncs (p99 about 8 ticks = 267 ms) still fails this.
    "--max-freshness-p99",
    "200",
]
CRITERIA = ["tick_rate", "freshness_p99", "updates_seen", "rpc_answered", "converged"]


def criteria(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    got = {c["name"]: c for c in data["criteria"]}
    assert list(got) == CRITERIA
    return got


@pytest.mark.parametrize("kind", ["light", "full"])
def test_load_passes_at_light_load(tmp_path: Path, kind: str) -> None:
    rc, data, text = harness(tmp_path, *LIGHT, "--client-kind", kind)
    assert rc == 0, text[-3000:]
    assert data["client_kind"] == kind
    assert all(c["ok"] for c in criteria(data).values()), data["criteria"]
    calls = data["rpc_calls"]
    # 4 clients x 2 calls/s x 1.5 s, each client's phase within one period
    assert abs(calls["planned"] - 12) <= 4
    assert calls["planned"] == calls["sent"] == calls["answered"]
    assert calls["errors"] == calls["unanswered"] == 0
    fresh = data["freshness_ms"]
    assert fresh["observed"] == fresh["expected"] > 0
    assert fresh["p99"] <= 200.0
    assert data["achieved_rate_hz"] >= 0.95 * data["rate_hz"]
    assert "[ok  ] rpc_answered" in text


BROKEN = {
    "drop-replies": "rpc_answered",  # every 5th reply never sent
    "slow-ticks": "tick_rate",  # 50 ms more per tick: about 19 Hz of 30
    "batch-syncs": "freshness_p99",  # changes go out every 8th tick: p99 about 8 ticks
}


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_load_fails_on_the_criterion_that_breaks(tmp_path: Path, breakage: str) -> None:
    rc, data, text = harness(tmp_path, *LIGHT, "--break", breakage)
    assert rc == 1, text[-3000:]
    name = BROKEN[breakage]
    assert criteria(data)[name]["ok"] is False
    assert any(r.startswith(f"{name} failed:") for r in data["reasons"]), data["reasons"]
    assert f"[FAIL] {name}" in text


def test_load_fails_when_freshness_exceeds_the_given_bound(tmp_path: Path) -> None:
    # 5 ms is below the floor of one tick period (33 ms at 30 Hz): no server can meet it
    rc, data, text = harness(tmp_path, *LIGHT, "--max-freshness-p99", "5")
    assert rc == 1, text[-3000:]
    got = criteria(data)
    assert got["freshness_p99"]["ok"] is False and got["freshness_p99"]["threshold"] == "<= 5 ms"
    assert any(r.startswith("freshness_p99 failed:") for r in data["reasons"]), data["reasons"]


# -- the pieces, without processes ----------------------------------------------------------


def test_call_plan_is_fixed_up_front_and_late_calls_are_sent_late() -> None:
    plan = CallPlan(3, 2.0, start=100.0, until=110.0, rng=random.Random(1))
    assert plan.planned == 60  # 3 clients x 2/s x 10 s, one slot per period each
    # a process that only wakes at the end still sends every call, late
    sent = sum(plan.due(i, 500.0) for i in range(3))
    assert sent == 60 and plan.late == 60 and plan.max_late_s > 389.0
    assert sum(plan.due(i, 600.0) for i in range(3)) == 0  # nothing after the window


def test_call_plan_counts_a_closed_clients_calls_as_never_sent() -> None:
    plan = CallPlan(2, 4.0, start=0.0, until=1.0, rng=random.Random(2))
    assert plan.due(0, 0.5) >= 1
    plan.drop(0)
    assert plan.due(0, 1.0) == 0
    assert plan.due(1, 1.0) == 4


def figures(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "achieved_rate_hz": 30.0,
        "freshness_ms": {"p99": 40.0, "observed": 1000, "expected": 1000},
        "rpc_calls": {"planned": 640, "sent": 640, "answered": 640, "errors": 0, "unanswered": 0},
        "converged": True,
    }
    base.update(over)
    return base


def test_judge_fails_the_issue_run_on_three_criteria() -> None:
    result = Result("load", figures=figures())
    judge(result, Options(), 30.0)
    assert result.passed, result.reasons
    issue = Result(
        "load",
        figures=figures(
            achieved_rate_hz=23.8,
            freshness_ms={"p99": 7100.0, "observed": 1000, "expected": 1000},
            rpc_calls={"planned": 640, "sent": 80, "answered": 80, "errors": 0, "unanswered": 0},
        ),
    )
    judge(issue, Options(), 30.0)
    assert not issue.passed
    assert [r.split(" ")[0] for r in issue.reasons] == [
        "tick_rate",
        "freshness_p99",
        "rpc_answered",
    ]


def test_judge_bound_defaults_to_three_ticks_at_low_rates() -> None:
    slow = Result("load", figures=figures(achieved_rate_hz=10.0))
    slow.figures["freshness_ms"]["p99"] = 250.0  # under 3 ticks of 100 ms
    judge(slow, Options(), 10.0)
    assert slow.passed, slow.reasons
    strict = Result("load", figures=figures(achieved_rate_hz=10.0))
    strict.figures["freshness_ms"]["p99"] = 250.0
    judge(strict, Options(max_freshness_p99=200.0), 10.0)
    assert [r.split(" ")[0] for r in strict.reasons] == ["freshness_p99"]


def test_judge_takes_the_share_of_the_rate_to_hold_from_the_options() -> None:
    default = Result("load", figures=figures(achieved_rate_hz=27.0))
    judge(default, Options(), 30.0)
    assert [r.split(" ")[0] for r in default.reasons] == ["tick_rate"]  # 27 < 0.95 x 30
    relaxed = Result("load", figures=figures(achieved_rate_hz=27.0))
    judge(relaxed, Options(min_rate_ratio=0.5), 30.0)
    assert relaxed.passed, relaxed.reasons
    assert ">= 15.0 Hz (0.5 x 30 Hz)" in relaxed.figures["criteria"][0]["threshold"]


def test_light_client_keeps_the_snapshot_that_arrives_with_the_welcome() -> None:
    """A light client once dropped every frame read together with the welcome, so under load
    (welcome and snapshot in one read) a client had no objects and could not call."""
    import json
    import socket
    import struct
    import threading

    from harness.light import LightApp

    def frame(msg: dict[str, Any]) -> bytes:
        body = json.dumps(msg).encode()
        return struct.pack(">I", len(body)) + body

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    fields = {"value": 7, "kind": "client", "stamp": 1.5}

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10.0)
            conn.recv(4096)  # the hello
            conn.sendall(
                frame(
                    {
                        "type": "welcome",
                        "version": 1,
                        "member": 5,
                        "tick_rate": 30.0,
                        "max_frame": 1 << 20,
                    }
                )
                + frame(
                    {
                        "type": "sync",
                        "tick": 1,
                        "full": True,
                        "final": True,
                        "spawn": [
                            {"uid": 9, "type": "Box", "owner": 5, "args": [], "fields": fields}
                        ],
                    }
                )
            )
            conn.recv(4096)  # until the client closes

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    app = LightApp({"port": port, "count": 1, "connect_timeout": 10.0})
    try:
        app.take_pending()
        c = app.conns[0]
        assert c.member == 5
        assert c.table == {9: ["Box", 5, fields]} and c.own_uid == 9
    finally:
        for c in app.conns:
            c.sock.close()
        server.join(10.0)
        listener.close()
