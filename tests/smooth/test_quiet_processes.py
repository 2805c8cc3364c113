"""The feature "quiet" between real processes (docs/protocol.md §19): a threaded and an
asyncio server process with an idle world; raw TCP clients on 127.0.0.1 read what reaches
them. A "time"+"quiet" client gets the full sync, its follow-up, then only heartbeats about
0.5 s apart; a "time"-only client beside it still gets a sync every tick (§13.7)."""

from __future__ import annotations

import itertools
import json
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.jsonproc import JsonProcess
from tests.smooth.test_processes import _recv

pytestmark = pytest.mark.timeout(60)

WATCH = 2.0  # seconds of the idle world watched


@pytest.fixture(params=["threaded", "aio"])
def server(request: pytest.FixtureRequest) -> Iterator[JsonProcess]:
    proc = JsonProcess("-m", "tests.smooth.idle", request.param)
    try:
        yield proc
    finally:
        proc.close()


def _open(port: int, features: list[str]) -> tuple[socket.socket, dict[str, Any]]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    hello = json.dumps({"type": "hello", "version": 1, "features": features}).encode()
    sock.sendall(struct.pack(">I", len(hello)) + hello)
    return sock, _recv(sock, time.monotonic() + 5.0)


def _syncs(sock: socket.socket, until: float) -> list[dict[str, Any]]:
    """The syncs received until local time ``until`` (pings answered)."""
    out = []
    while True:
        try:
            msg = _recv(sock, until)
        except TimeoutError:
            return out
        if msg["type"] == "sync":
            out.append(msg)
        elif msg["type"] == "ping":
            pong = json.dumps({"type": "pong", "nonce": msg["nonce"]}).encode()
            sock.sendall(struct.pack(">I", len(pong)) + pong)


def test_an_idle_world_sends_a_quiet_client_only_heartbeats(server: JsonProcess) -> None:
    quiet, welcome = _open(server.port, ["time", "quiet"])
    timed, plain_welcome = _open(server.port, ["time"])
    try:
        assert set(welcome["features"]) == {"time", "quiet"}
        assert plain_welcome["features"] == ["time"]
        start = time.monotonic()
        got = _syncs(quiet, start + 0.4)  # the full sync and its follow-up (§19.2 (b))
        assert got[0]["full"] and len(got[0]["spawn"]) == 20
        assert got[1]["tick"] == got[0]["tick"] + 1 and not got[1]["full"]
        assert len(got) <= 3  # then a heartbeat at most
        end = time.monotonic() + WATCH
        idle = _syncs(quiet, end)
        every = _syncs(timed, end)  # read after: its frames waited in the socket buffer
        for sync in idle:
            assert not (sync["spawn"] or sync["update"] or sync["despawn"] or sync["full"])
        times = [s["time"] for s in got + idle]
        assert times == sorted(set(times))  # §7.6, §13.3: still strictly increasing
        gaps = [b - a for a, b in itertools.pairwise(times[2:])]
        assert all(0.5 <= gap < 1.0 for gap in gaps), gaps  # heartbeats (§19.3), late ticks aside
        assert 2 <= len(idle) <= 5, [s["tick"] for s in idle]  # ~4 in 2 s, not ~60
        ticks = [s["tick"] for s in every]
        assert len(ticks) >= 30 and ticks == list(range(ticks[0], ticks[0] + len(ticks)))
    finally:
        quiet.close()
        timed.close()
