"""Drives ``app.py`` processes: JSON commands in, JSON events out, every wait bounded."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.jsonproc import JsonProcess

APP = Path(__file__).with_name("app.py")


class Peer(JsonProcess):
    """One ``app.py`` process."""

    def __init__(self, *args: str) -> None:
        super().__init__(str(APP), *args)


class Game:
    """A server and its clients; everything is stopped in ``close``."""

    def __init__(self, **server_options: Any) -> None:
        self.peers: list[Peer] = []
        self.server = self._add(Peer("server", json.dumps(server_options)))

    def _add(self, peer: Peer) -> Peer:
        self.peers.append(peer)
        return peer

    def client(self, *options: str) -> tuple[Peer, int]:
        peer = self._add(Peer("client", str(self.server.port), *options))
        member = peer.expect("connected")["member"]
        return peer, member

    def state(self) -> dict[str, Any]:
        return self.server.ask("state", "state")

    def converge(self, clients: list[Peer], timeout: float = 10.0) -> dict[str, Any]:
        """Wait until every client's table equals the server's (ownership flags aside)."""
        deadline = time.monotonic() + timeout
        while True:
            server = strip(self.state()["table"])
            tables = [strip(c.ask("table", "table")["table"]) for c in clients]
            if all(t == server for t in tables):
                return server
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no convergence within {timeout} s:\nserver {server}\nclients {tables}"
                )
            time.sleep(0.02)  # polling interval between two condition checks, not synchronisation

    def close(self) -> None:
        for peer in reversed(self.peers):
            peer.close()


def strip(table: dict[str, Any]) -> dict[str, Any]:
    return {uid: {k: v for k, v in entry.items() if k != "mine"} for uid, entry in table.items()}


def game(**options: Any) -> Iterator[Game]:
    g = Game(**options)
    try:
        yield g
    finally:
        g.close()
