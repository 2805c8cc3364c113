"""Compressed frames (feature "deflate", protocol §15) between real processes, both server
layers: read off the wire by a raw socket, and used by the library's own client."""

from __future__ import annotations

import json
import struct
import time
import zlib
from typing import Any

import pytest

from tests.hostile.conftest import Good, ServerProcess
from tests.hostile.raw import Raw

pytestmark = pytest.mark.timeout(60)


def first_sync(raw: Raw) -> tuple[bytes, dict[str, Any]]:
    """The wire body of the first ``sync`` after ``welcome``, and the message it holds."""
    while True:
        assert raw._fill(4, deadline_in(5.0))
        (n,) = struct.unpack(">I", raw.buf[:4])
        assert raw._fill(4 + n, deadline_in(5.0))
        body, raw.buf = raw.buf[4 : 4 + n], raw.buf[4 + n :]
        text = zlib.decompress(body[1:]) if body[:1] == b"\x00" else body
        message: dict[str, Any] = json.loads(text)
        if message["type"] == "sync":
            return body, message


def deadline_in(seconds: float) -> float:
    return time.monotonic() + seconds


@pytest.mark.parametrize("layer", ["threaded", "aio"])
def test_a_client_that_asks_gets_compressed_syncs_and_converges(layer: str) -> None:
    server = ServerProcess(layer=layer, tick_rate=60)
    try:
        uids = server.ask("spawn", "spawned", n=200, weight="heavy " * 8)["uids"]
        asked, plain = Raw(server.port), Raw(server.port)
        try:
            asked.send({"type": "hello", "version": 1, "features": ["compact", "deflate"]})
            plain.send({"type": "hello", "version": 1, "features": ["compact"]})
            wire, sync = first_sync(asked)
            plain_wire, _ = first_sync(plain)
        finally:
            asked.close()
            plain.close()
        assert wire[:1] == b"\x00" and plain_wire[:1] == b"{"
        assert sync["full"] and {e["uid"] for e in sync["spawn"]} >= set(uids)
        assert len(wire) * 4 < len(plain_wire)
        # The library's client asks with compression=True, inflates, and converges.
        good = Good(server.port, compression=True)
        try:
            good.converge(server)
            assert good.client._conn is not None
            assert good.client._conn.session.stats["inflated_frames"] >= 1
            server.ask("set", "set", uid=uids[0], field="weight", value=7)
            good.converge(server)
        finally:
            good.client.disconnect()
    finally:
        server.close()
