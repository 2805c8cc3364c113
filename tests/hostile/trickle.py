"""Slowloris in its own process (so its work does not slow the measuring client's process):
``python -m tests.hostile.trickle PORT N INTERVAL MAX_SECONDS [frame]``.

Opens N connections, prints ``OPEN <n>``, then sends each one byte of a long ``hello`` every
INTERVAL seconds until the server closes it. With ``frame``, each connection first completes
the handshake, then trickles an ``rpc`` frame instead (the frame deadline, §2.6). Prints one
JSON line when every socket is closed (or MAX_SECONDS passed): how many were held, how many the
server closed, the longest time a socket stayed open (from its first trickled byte), every such
time (``ages``), and the close codes received.
"""

from __future__ import annotations

import json
import selectors
import socket
import struct
import sys
import time


def handshake(socks: list[socket.socket]) -> None:
    """Every connection says hello at once, then each waits for its welcome."""
    body = json.dumps({"type": "hello", "version": 1}).encode()
    for sock in socks:
        sock.sendall(struct.pack(">I", len(body)) + body)
    for sock in socks:
        got = b""
        while len(got) < 4 or len(got) < 4 + struct.unpack(">I", got[:4])[0]:
            chunk = sock.recv(65536)  # the socket's timeout bounds this
            if not chunk:
                raise ConnectionError("closed during the handshake")
            got += chunk


def main(port: int, n: int, interval: float, max_seconds: float, mode: str = "hello") -> None:
    if mode == "frame":
        body = json.dumps(
            {"type": "rpc", "id": 1, "uid": 1, "method": "wave", "args": ["x" * 4000]}
        ).encode()
    else:
        body = json.dumps({"type": "hello", "version": 1, "pad": "x" * 4000}).encode()
    stream = struct.pack(">I", len(body)) + body  # never completes at one byte per interval
    sel = selectors.DefaultSelector()
    opened: dict[socket.socket, dict[str, float | int | bytes]] = {}
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(n)]
    if mode == "frame":
        handshake(socks)
    for sock in socks:
        sock.setblocking(False)
        opened[sock] = {"at": time.monotonic(), "sent": 0, "got": b""}
        sel.register(sock, selectors.EVENT_READ)
    print(f"OPEN {len(opened)}", flush=True)
    started = time.monotonic()
    ages: list[float] = []
    codes: dict[str, int] = {}
    next_round = started
    while opened and time.monotonic() - started < max_seconds:
        now = time.monotonic()
        if now >= next_round:
            next_round = now + interval
            for sock, info in list(opened.items()):
                try:
                    sock.send(stream[int(info["sent"]) : int(info["sent"]) + 1])
                    if not info["sent"]:
                        info["at"] = time.monotonic()  # ages count from the first byte
                    info["sent"] = int(info["sent"]) + 1
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    pass  # reset: the read below sees the end
        for key, _ in sel.select(max(0.0, next_round - time.monotonic())):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            info = opened[sock]
            if data:
                info["got"] = bytes(info["got"]) + data  # type: ignore[operator]
                continue
            got = bytes(info["got"])  # type: ignore[arg-type]
            code = "none"
            while len(got) >= 4:  # the last complete message (pings may come first)
                (length,) = struct.unpack(">I", got[:4])
                if len(got) < 4 + length:
                    break
                code = str(json.loads(got[4 : 4 + length]).get("code"))
                got = got[4 + length :]
            codes[code] = codes.get(code, 0) + 1
            ages.append(time.monotonic() - float(info["at"]))
            sel.unregister(sock)
            sock.close()
            del opened[sock]
    for sock in opened:
        sock.close()
    print(
        json.dumps(
            {
                "held": n,
                "closed_by_server": len(ages),
                "still_open": len(opened),
                "max_age": max(ages, default=0.0),
                "ages": [round(age, 4) for age in ages],
                "codes": codes,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), *sys.argv[5:])
