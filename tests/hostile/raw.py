"""A raw protocol peer for hostile tests: only ``socket``, ``struct`` and ``json``, every read
bounded. It speaks (or abuses) docs/protocol.md by hand."""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any


class Raw:
    def __init__(self, port: int, *, source: str | None = None, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # set before connecting, so the window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    @staticmethod
    def frame(message: dict[str, Any]) -> bytes:
        body = json.dumps(message).encode()
        return struct.pack(">I", len(body)) + body

    def send(self, *messages: dict[str, Any]) -> None:
        self.send_raw(b"".join(self.frame(message) for message in messages))

    def _fill(self, n: int, deadline: float) -> bool:
        while len(self.buf) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise TimeoutError("no data in time") from None
                continue
            except OSError:  # reset by the server
                return False
            if not chunk:
                return False
            self.buf += chunk
        return True

    def recv(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next message, or None at EOF. Raises TimeoutError when nothing comes in time."""
        deadline = time.monotonic() + timeout
        if not self._fill(4, deadline):
            return None
        (n,) = struct.unpack(">I", self.buf[:4])
        if not self._fill(4 + n, deadline):
            return None
        body, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
        message: dict[str, Any] = json.loads(body)
        return message

    def expect(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next message of type ``kind`` (others skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(0.0, deadline - time.monotonic()))
            assert message is not None, f"connection ended before {kind}"
            if message["type"] == kind:
                return message

    def drain(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Every message until EOF (the connection must end within ``timeout``)."""
        deadline = time.monotonic() + timeout
        out = []
        while True:
            message = self.recv(max(0.0, deadline - time.monotonic()))
            if message is None:
                return out
            out.append(message)

    def closed_with(self, timeout: float = 5.0) -> tuple[int, str]:
        """Read until EOF; the (code, reason) of the close frame received before it."""
        closes = [msg for msg in self.drain(timeout) if msg["type"] == "close"]
        assert closes, "connection ended without a close frame"
        return closes[-1]["code"], closes[-1]["reason"]

    def hello(self, **fields: Any) -> dict[str, Any]:
        self.send({"type": "hello", "version": 1, **fields})
        return self.expect("welcome")

    def close(self) -> None:
        self.sock.close()
