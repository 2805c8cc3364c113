"""The reference conformance host: Reverb's own server running the conformance app.

``python -m conformance.host [--handshake-timeout S] [--tick-rate HZ] [--max-frame BYTES]``
prints ``READY <port>`` once it listens on 127.0.0.1 (port 0 unless --port), then serves
until SIGTERM or SIGINT. The app contract is documented in conformance/README.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections import Counter
from types import FrameType
from typing import Any

from reverb import (
    ReverbManager,
    ReverbObject,
    ReverbSide,
    RpcError,
    Server,
    expose,
    rpc_caller,
)

EXECUTIONS: Counter[str] = Counter()


@ReverbManager.reverb_object_attribute
class Box(ReverbObject):
    """One replicated field, ``value``."""

    def __init__(
        self,
        value: Any = 0,
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        self.value = value
        super().__init__(
            value, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def bump(self, k: int) -> Any:
        EXECUTIONS["bump"] += 1
        self.value = self.value + k
        return self.value

    @expose(anyone=True)
    def touch(self) -> Any:
        EXECUTIONS["touch"] += 1
        return self.value

    def hidden(self) -> str:
        EXECUTIONS["hidden"] += 1
        return "hidden ran"

    def _private(self) -> str:
        EXECUTIONS["_private"] += 1
        return "private ran"


@ReverbManager.reverb_object_attribute
class Control(ReverbObject):
    """The driver's remote control; it has no replicated fields."""

    def __init__(
        self,
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose(anyone=True)
    def spawn(self, n: int, owned: bool) -> list[int]:
        EXECUTIONS["spawn"] += 1
        owner = rpc_caller() if owned else None
        boxes = [Box(0, belonging_membership=owner) for _ in range(int(n))]
        return [box.uid for box in boxes if box.uid is not None]

    @expose(anyone=True)
    def set_value(self, uid: int, value: Any) -> None:
        EXECUTIONS["set_value"] += 1
        box = ReverbManager.REVERB_OBJECTS.get(uid)
        if not isinstance(box, Box):
            raise RpcError(f"no Box with uid {uid}")
        box.value = value

    @expose(anyone=True)
    def despawn(self, uid: int) -> bool:
        EXECUTIONS["despawn"] += 1
        obj = ReverbManager.REVERB_OBJECTS.get(uid)
        if obj is None or obj is self:
            return False
        obj.destroy()
        return True

    @expose(anyone=True)
    def echo(self, *args: Any) -> list[Any]:
        EXECUTIONS["echo"] += 1
        return list(args)

    @expose(anyone=True)
    def fail(self, message: str) -> None:
        EXECUTIONS["fail"] += 1
        raise RpcError(message)

    @expose(anyone=True)
    def crash(self) -> None:
        EXECUTIONS["crash"] += 1
        # The text names this file: a server that forwards it would leak internals (§8.4).
        raise RuntimeError(f"unexpected failure in {__file__}")

    @expose(anyone=True)
    def executions(self, name: str) -> int:
        return EXECUTIONS[name]

    @expose(anyone=True)
    def whoami(self) -> int | None:
        EXECUTIONS["whoami"] += 1
        return rpc_caller()

    def hidden(self) -> str:
        EXECUTIONS["hidden"] += 1
        return "hidden ran"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m conformance.host", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--handshake-timeout", type=float, default=1.0)
    parser.add_argument("--tick-rate", type=float, default=30.0)
    parser.add_argument("--max-frame", type=int, default=1048576)
    parser.add_argument("--ping-interval", type=float, default=2.0)
    parser.add_argument("--max-calls-per-second", type=float, default=100000.0)
    parser.add_argument("--max-messages-per-second", type=float, default=100000.0)
    parser.add_argument("--max-bytes-per-second", type=float, default=1e9)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    running = [True]

    def stop(signum: int, frame: FrameType | None) -> None:
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ReverbManager.REVERB_SIDE = ReverbSide.SERVER
    server = Server(
        host=args.host,
        port=args.port,
        handshake_timeout=args.handshake_timeout,
        tick_rate=args.tick_rate,
        max_frame_size=args.max_frame,
        ping_interval=args.ping_interval,
        # The driver builds its worlds through Control calls, thousands a second: the
        # per-connection call-, message- and byte-rate limits (§11) are raised so it measures
        # the protocol, not the flood control (which tests/hostile covers).
        max_calls_per_second=args.max_calls_per_second,
        max_messages_per_second=args.max_messages_per_second,
        max_bytes_per_second=args.max_bytes_per_second,
    )
    ReverbManager.REVERB_CONNECTION = server
    server.start_server()
    try:
        Control()
        print(f"READY {server.port}", flush=True)
        while running[0]:
            ReverbManager.server_sync()
    finally:
        server.stop_server()
    return 0


if __name__ == "__main__":
    sys.exit(main())
