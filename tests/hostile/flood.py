"""A parse flood in its own process: ``python -m tests.hostile.flood PORT SECONDS [SIZE]``.

Completes the handshake, prints ``OPEN``, then sends ``rpc`` frames of about SIZE bytes
(default 1000000) of small integers back to back for SECONDS, reading (and discarding)
whatever the server answers. Prints one JSON line at the end: frames sent and how the
connection ended.
"""

from __future__ import annotations

import json
import selectors
import socket
import struct
import sys
import time


def main(port: int, seconds: float, size: int = 1_000_000) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    hello = json.dumps({"type": "hello", "version": 1}).encode()
    sock.sendall(struct.pack(">I", len(hello)) + hello)
    body = json.dumps(
        {"type": "rpc", "id": 0, "uid": 1, "method": "wave", "args": [7] * (size // 3)}
    ).encode()
    frame = struct.pack(">I", len(body)) + body
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    print("OPEN", flush=True)
    started = time.monotonic()
    sent_frames, offset, ended = 0, 0, "time"
    while time.monotonic() - started < seconds:
        for _, mask in sel.select(0.1):
            if mask & selectors.EVENT_READ:
                try:
                    if not sock.recv(65536):
                        ended = "closed by server"
                        break
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    ended = "reset"
                    break
            if mask & selectors.EVENT_WRITE:
                try:
                    offset += sock.send(frame[offset:])
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    ended = "reset"
                    break
                if offset == len(frame):
                    offset, sent_frames = 0, sent_frames + 1
        else:
            continue
        break
    sock.close()
    print(json.dumps({"frames": sent_frames, "ended": ended}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]), *(int(a) for a in sys.argv[3:]))
