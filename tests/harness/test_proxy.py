"""The fault proxy on its own: bytes arrive intact and in order through every toxic, a stall
keeps the connection open but silent, a reset ends it with RST."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from harness.proxy import FaultProxy, Toxics


@pytest.fixture
def echo_port() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the reset test ends it with RST
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2.0)
    listener.close()


def roundtrip(port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        got = bytearray()
        while len(got) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return bytes(got)


@pytest.mark.parametrize(
    "toxics",
    [Toxics(), Toxics(latency=0.02, jitter=0.02), Toxics(chop=5), Toxics(bandwidth=200_000)],
    ids=["clean", "latency", "chop", "bandwidth"],
)
def test_bytes_arrive_in_order(echo_port: int, toxics: Toxics) -> None:
    payload = bytes(range(256)) * 40
    with FaultProxy(echo_port, lambda i: toxics) as proxy:
        assert roundtrip(proxy.port, payload) == payload
        assert proxy.links[0].bytes_up == len(payload)


def test_latency_delays_delivery(echo_port: int) -> None:
    with FaultProxy(echo_port, lambda i: Toxics(latency=0.1)) as proxy:
        start = time.monotonic()
        assert roundtrip(proxy.port, b"ping") == b"ping"
        assert time.monotonic() - start >= 0.2  # 0.1 s each way


def test_stall_is_half_open(echo_port: int) -> None:
    with FaultProxy(echo_port, lambda i: Toxics(stall_after=0.1)) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5.0) as sock:
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and (
                not proxy.links or proxy.links[0].stalled_at is None
            ):
                time.sleep(0.01)
            assert proxy.links[0].stalled_at is not None
            sock.sendall(b"anyone there?")
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sock.recv(100)  # neither data nor EOF: the peer looks alive but says nothing


def test_reset_ends_the_connection(echo_port: int) -> None:
    with FaultProxy(echo_port, lambda i: Toxics(reset_after=0.1)) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5.0) as sock:
            sock.settimeout(5.0)
            with pytest.raises(ConnectionResetError):
                while sock.recv(100):
                    pass
                raise ConnectionResetError("clean EOF")  # pragma: no cover - must be RST
