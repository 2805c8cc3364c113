"""The feature "time" between real processes (docs/protocol.md §13): a server process moving
an object, clients in this process over TCP on 127.0.0.1. The server's clock is its
``time.monotonic()``, the same clock as this process's on one machine, so the estimate's error
is measured directly."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from reverb import Client, ReverbContext
from reverb.aio import AsyncClient
from tests.jsonproc import JsonProcess
from tests.smooth.mover import SPEED, Mover

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server() -> Iterator[JsonProcess]:
    proc = JsonProcess("-m", "tests.smooth.mover")
    try:
        yield proc
    finally:
        proc.close()


def _context() -> ReverbContext:
    ctx = ReverbContext()
    ctx.register(Mover)
    return ctx


def _check_render(samples: list[tuple[float, float, float]]) -> None:
    """(now, render time, interpolated x) per frame: x follows the server's trajectory at the
    render time, and moves on (almost) every frame -- a frame loop stalled by a loaded machine
    may see the buffer run dry for a frame or two."""
    xs = [x for _, _, x in samples]
    moved = [b > a for a, b in itertools.pairwise(xs)]
    assert sum(moved) >= 0.8 * len(moved), xs
    assert xs[-1] - xs[0] > 0.5 * SPEED * (samples[-1][0] - samples[0][0])
    for now, render, _x in samples:
        assert 0.0 < now - render < 0.5  # behind the server by latency plus the delay


def test_threaded_client_estimates_server_time_and_interpolates(server: JsonProcess) -> None:
    ctx = _context()
    clt = Client("127.0.0.1", server.port, context=ctx)
    clt.connect()
    try:
        deadline = time.monotonic() + 10.0
        while not (clt.clock_ready and ctx.objects):
            assert time.monotonic() < deadline, "no clock estimate within 10 s"
            ctx.client_sync(timeout=0.05)
        assert clt.tick_rate == 30.0
        assert 0.0 < clt.rtt < 0.1
        errors = []
        for _ in range(20):
            ctx.client_sync(timeout=0.02)
            errors.append(abs(clt.server_time() - time.monotonic()))
        assert sorted(errors)[len(errors) // 2] < 0.005, errors  # same clock, same machine
        mover = next(iter(ctx.objects.values()))
        samples = []
        frame_end = time.monotonic() + 0.6
        while time.monotonic() < frame_end:
            ctx.client_sync(timeout=1 / 60)
            now = time.monotonic()
            ctx.interpolate(now)
            samples.append((now, clt.render_time(now), float(mover.rendered["x"])))
            assert mover.interpolated("x", now) == pytest.approx(samples[-1][2], abs=SPEED * 0.02)
        _check_render(samples[6:])
        assert isinstance(mover.x, float)
    finally:
        clt.disconnect()


def test_asyncio_client_estimates_server_time_and_interpolates(server: JsonProcess) -> None:
    async def run() -> None:
        ctx = _context()
        clt = AsyncClient("127.0.0.1", server.port, context=ctx)
        await clt.connect()
        try:
            deadline = time.monotonic() + 10.0
            while not (clt.clock_ready and ctx.objects):
                assert time.monotonic() < deadline, "no clock estimate within 10 s"
                await clt.client_sync(timeout=0.05)
            await clt.client_sync(timeout=0.1)
            assert abs(clt.server_time() - time.monotonic()) < 0.01
            mover = next(iter(ctx.objects.values()))
            samples = []
            frame_end = time.monotonic() + 0.6
            while time.monotonic() < frame_end:
                await clt.client_sync(timeout=1 / 60)
                now = time.monotonic()
                values = ctx.interpolate(now)
                samples.append((now, clt.render_time(now), float(values[mover]["x"])))
            _check_render(samples[6:])
        finally:
            await clt.disconnect()

    asyncio.run(run())


def _recv(sock: socket.socket, deadline: float) -> dict[str, Any]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(n - len(data))
            assert chunk, "the server closed"
            data += chunk
        return data

    (size,) = struct.unpack(">I", exactly(4))
    message: dict[str, Any] = json.loads(exactly(size))
    return message


def test_a_protocol_1_raw_client_is_served_without_time(server: JsonProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        hello = json.dumps({"type": "hello", "version": 1}).encode()
        sock.sendall(struct.pack(">I", len(hello)) + hello)
        deadline = time.monotonic() + 5.0
        welcome = _recv(sock, deadline)
        assert set(welcome) == {"type", "version", "member", "tick_rate", "max_frame"}
        ping = json.dumps({"type": "ping", "nonce": 5}).encode()
        sock.sendall(struct.pack(">I", len(ping)) + ping)
        seen = [_recv(sock, deadline) for _ in range(6)]
        pongs = [m for m in seen if m["type"] == "pong"]
        assert pongs == [{"type": "pong", "nonce": 5}]
        syncs = [m for m in seen if m["type"] == "sync"]
        assert syncs and all("time" not in m for m in syncs)
        assert all(
            isinstance(e, dict) and set(e) == {"uid", "fields"} for m in syncs for e in m["update"]
        )
