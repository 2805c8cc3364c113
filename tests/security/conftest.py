"""Shared pieces of the security tests: a throwaway certificate made at test time, a small game
(a server context and client contexts on loopback), and a raw protocol peer.

Every certificate is generated into pytest's temporary directory with the ``openssl`` command
and is never committed. Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reverb import Client, ReverbContext, ReverbObject, ReverbSide, Server, expose

EXECUTED: list[str] = []  # names of methods run on a server copy, in order


class Ship(ReverbObject):
    def __init__(self, x=0, uid=None, add_on_init=True, belonging_membership=None):
        self.x = x
        super().__init__(
            x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def thrust(self, dx):
        EXECUTED.append("thrust")
        self.x += dx
        return self.x

    @expose(anyone=True)
    def hail(self):
        EXECUTED.append("hail")
        return "ahoy"


class Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, and contexts that use it."""

    def __init__(self, directory: Path) -> None:
        self.key = directory / "key.pem"
        self.cert = directory / "cert.pem"
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-subj", "/CN=localhost",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-days", "1", "-keyout", str(self.key), "-out", str(self.cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a throwaway certificate")
    return Certificate(tmp_path_factory.mktemp("tls"))


def contexts(*types: type, side: ReverbSide) -> ReverbContext:
    ctx = ReverbContext(side)
    for cls in types or (Ship,):
        ctx.register(cls, getattr(cls, "wire_name", None))
    return ctx


class Game:
    """A threaded ``Server`` on 127.0.0.1 port 0 and any number of ``Client``s, all driven
    from the test thread; ``close`` stops everything."""

    def __init__(self, *types: type, **server_options: Any) -> None:
        self.sctx = contexts(*types, side=ReverbSide.SERVER)
        self.connected: list[tuple[Any, ...]] = []
        self.sctx.server_events.on_event("client_connected")(
            lambda member, identity: self.connected.append((member, identity))
        )
        server_options.setdefault("tick_rate", 60)
        self.server = Server(port=0, context=self.sctx, **server_options)
        self.server.start_server()
        self.clients: list[Client] = []

    @property
    def port(self) -> int:
        return self.server.port

    def client(self, *types: type, **options: Any) -> Client:
        """A client (not yet connected) with its own context registering ``types``."""
        client = Client(port=self.port, context=contexts(*types, side=ReverbSide.CLIENT), **options)
        self.clients.append(client)
        return client

    def step(self) -> None:
        self.sctx.serve()
        self.sctx.tick(time.monotonic())
        for client in self.clients:
            if client.connected:
                client.context.client_sync(timeout=0.005)
        time.sleep(0.002)  # polling interval between two condition checks

    def until(self, condition: Callable[[], object], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            self.step()

    def serves(self, client: Client) -> None:
        """``client`` gets a ship it owns replicated, and an RPC on it answered."""
        assert client.member is not None
        info = self.sctx.types.by_name("Ship")
        cls = info.cls if info is not None else Ship  # the server's own Ship (or a variant)
        with self.sctx.activate():
            ship = cls(1, belonging_membership=client.member)
        self.until(lambda: ship.uid in client.context.objects)
        replica = client.context.objects[ship.uid]
        assert replica.x == 1 and replica.is_owner()
        future = replica.compute_server(replica.thrust, 2)
        self.until(future.done)
        assert future.result() == 3 and ship.x == 3
        self.until(lambda: replica.x == 3)

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
        self.server.stop_server()


@pytest.fixture
def make_game() -> Iterator[Callable[..., Game]]:
    games: list[Game] = []

    def make(*types: type, **options: Any) -> Game:
        game = Game(*types, **options)
        games.append(game)
        return game

    try:
        yield make
    finally:
        for game in games:
            game.close()
