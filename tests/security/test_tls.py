"""TLS (docs/protocol.md §4.10) with a throwaway self-signed certificate made at test time:
replication and RPC over TLS on both I/O layers, and clean failures for a plain client, an
untrusted certificate, a wrong host name and a silent TCP peer."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from typing import Any

import pytest

from reverb import HandshakeFailed, ReverbSide
from reverb.aio import AsyncClient, AsyncServer
from tests.security.conftest import Certificate, Ship, contexts

pytestmark = pytest.mark.timeout(30)


def test_replication_and_rpc_over_tls(make_game: Any, certificate: Certificate) -> None:
    game = make_game(ssl_context=certificate.server_context())
    client = game.client(ssl_context=certificate.client_context())
    client.connect()
    game.serves(client)
    assert game.server.stats["tls_failure"] == 0


def test_the_wire_is_encrypted(make_game: Any, certificate: Certificate) -> None:
    game = make_game(ssl_context=certificate.server_context())
    with socket.create_connection(("127.0.0.1", game.port), timeout=5) as sock:
        sock.sendall(b'\x00\x00\x00\x1d{"type":"hello","version":1}')
        data = b""
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except OSError:
            pass
    assert b"welcome" not in data and b"close" not in data


def test_a_plain_client_against_a_tls_server_fails_cleanly(
    make_game: Any, certificate: Certificate
) -> None:
    game = make_game(ssl_context=certificate.server_context())
    started = time.monotonic()
    with pytest.raises(HandshakeFailed):
        game.client(connect_timeout=3).connect()
    assert time.monotonic() - started < 5
    game.until(lambda: game.server.stats["tls_failure"] >= 1)
    good = game.client(ssl_context=certificate.client_context())
    good.connect()
    game.serves(good)


@pytest.mark.parametrize("how", ["untrusted", "wrong-hostname"])
def test_a_tls_client_refuses_a_certificate_it_cannot_check(
    make_game: Any, certificate: Certificate, how: str
) -> None:
    game = make_game(ssl_context=certificate.server_context())
    if how == "untrusted":
        options: dict[str, Any] = {"ssl_context": ssl.create_default_context()}
    else:
        options = {"ssl_context": certificate.client_context(), "server_hostname": "example.com"}
    with pytest.raises(HandshakeFailed) as refused:
        game.client(connect_timeout=3, **options).connect()
    assert refused.value.code == 1015, refused.value
    good = game.client(ssl_context=certificate.client_context())
    good.connect()
    game.serves(good)


def test_a_tls_client_against_a_plain_server_fails_cleanly(
    make_game: Any, certificate: Certificate
) -> None:
    game = make_game(handshake_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(HandshakeFailed):
        game.client(ssl_context=certificate.client_context(), connect_timeout=3).connect()
    assert time.monotonic() - started < 5
    good = game.client()
    good.connect()
    game.serves(good)


def test_the_handshake_deadline_covers_the_tls_handshake(
    make_game: Any, certificate: Certificate
) -> None:
    game = make_game(ssl_context=certificate.server_context(), handshake_timeout=0.5)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", game.port), timeout=5) as sock:
        try:
            while sock.recv(4096):  # silent: no ClientHello; read until the server hangs up
                pass
        except OSError:
            pass
    assert time.monotonic() - started < 3
    game.until(lambda: game.server.stats["limit.handshake_timeout"] >= 1)


# -- asyncio ----------------------------------------------------------------------------------


async def until(condition: Any, client: AsyncClient, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await client.client_sync(0.02)


async def async_scenario(certificate: Certificate, check: Any, **client_options: Any) -> None:
    sctx = contexts(side=ReverbSide.SERVER)
    server = AsyncServer(
        port=0,
        context=sctx,
        tick_rate=60,
        ssl_context=certificate.server_context(),
        handshake_timeout=1.0,
    )
    await server.start_server()
    running = True

    async def serve() -> None:
        while running:
            await server.server_sync()

    task = asyncio.get_running_loop().create_task(serve())
    clients: list[AsyncClient] = []

    async def connect(**options: Any) -> AsyncClient:
        client = AsyncClient(port=server.port, context=contexts(side=ReverbSide.CLIENT), **options)
        clients.append(client)
        await client.connect()
        return client

    async def serves(client: AsyncClient) -> None:
        with sctx.activate():
            ship = Ship(1, belonging_membership=client.member)
        await until(lambda: ship.uid in client.context.objects, client)
        replica = client.context.objects[ship.uid]
        assert await asyncio.wrap_future(replica.compute_server(replica.thrust, 2)) == 3
        await until(lambda: replica.x == 3, client)

    try:
        await check(server, connect, serves)
    finally:
        for client in clients:
            await client.disconnect()
        running = False
        await task
        await server.stop_server()


def test_async_replication_and_rpc_over_tls(certificate: Certificate) -> None:
    async def check(server: AsyncServer, connect: Any, serves: Any) -> None:
        client = await connect(ssl_context=certificate.client_context())
        await serves(client)

    asyncio.run(async_scenario(certificate, check))


@pytest.mark.parametrize("how", ["plain", "untrusted", "wrong-hostname"])
def test_async_bad_tls_clients_fail_cleanly_and_the_server_keeps_serving(
    certificate: Certificate, how: str
) -> None:
    options: dict[str, Any] = {
        "plain": {},
        "untrusted": {"ssl_context": ssl.create_default_context()},
        "wrong-hostname": {
            "ssl_context": certificate.client_context(),
            "server_hostname": "example.com",
        },
    }[how]

    async def check(server: AsyncServer, connect: Any, serves: Any) -> None:
        started = time.monotonic()
        with pytest.raises(HandshakeFailed):
            await connect(connect_timeout=3, **options)
        assert time.monotonic() - started < 5
        await serves(await connect(ssl_context=certificate.client_context()))

    asyncio.run(async_scenario(certificate, check))


def test_async_handshake_deadline_covers_the_tls_handshake(certificate: Certificate) -> None:
    async def check(server: AsyncServer, connect: Any, serves: Any) -> None:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            # Silent: neither a TLS ClientHello nor a hello. handshake_timeout is 1 s.
            data = await asyncio.wait_for(reader.read(4096), 4)
            assert data == b""
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()
        # asyncio's own TLS handshake timeout (60 s) must not be what ends it (§4.6, §4.10).
        assert time.monotonic() - started < 3, "a silent TCP peer outlived the deadline"

    asyncio.run(async_scenario(certificate, check))
