"""The reference conformance host: Reverb's own server running the conformance app.

``python -m conformance.host [--layer threaded|aio] [--low-limits] [--handshake-timeout S]
[--tick-rate HZ] [--max-frame BYTES] ...`` prints ``READY <port>`` once it listens on
127.0.0.1 (port 0 unless --port), then serves until SIGTERM or SIGINT. The app contract is
documented in conformance/README.md; ``--low-limits`` applies ``conformance.profile.LOW``.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import math
import signal
import sys
import time
from collections import Counter
from types import FrameType
from typing import Any

from conformance.profile import LOW
from reverb import (
    ReverbManager,
    ReverbObject,
    ReverbSide,
    RpcError,
    Server,
    expose,
    rpc_caller,
    server_messages,
)
from reverb.rooms import Accept, Reject, Room

EXECUTIONS: Counter[str] = Counter()
# Control.vanish(): when (monotonic) the game loop spawns a new Control, or None.
RESPAWN: list[float | None] = [None]
# Control.churn(): Box uid -> until when (monotonic) the game loop adds 1 to its value each tick.
CHURN: dict[int, float] = {}
HOLD: list[float] = [0.0]  # seconds the game loop sleeps after its next server_sync()
# Control.ordered(): (member, name, data) messages sent once the next tick's sync has gone.
AFTER_TICK: list[tuple[int, str, Any]] = []


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


# Values JSON cannot carry (§3.4): Control.set_special puts one into Box.value.
SPECIAL: dict[str, Any] = {
    "nan": math.nan,
    "inf": math.inf,
    "set": {1, 2},
    "intkeys": {1: "one"},
    "bigint": 2**53,
    "deep": _nested(40),
    "surrogate": "\ud800",
    "object": object(),
}


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
class Rec(ReverbObject):
    """Three replicated fields, ``a``, ``b`` and ``c`` (all 0 at spawn)."""

    def __init__(
        self,
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        self.a: Any = 0
        self.b: Any = 0
        self.c: Any = 0
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def mine(self) -> bool:
        """Owner only: true (lets a case check who the server thinks the owner is)."""
        EXECUTIONS["mine"] += 1
        return True


@ReverbManager.reverb_object_attribute
class Safe(ReverbObject):
    """Two replicated fields, ``value`` and the owner-only ``secret`` (§16.2), both 0."""

    __reverb_owner_fields__ = ("secret",)

    def __init__(
        self,
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        self.value: Any = 0
        self.secret: Any = 0
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


_FIELDS = {Box: ("value",), Rec: ("a", "b", "c"), Safe: ("value", "secret")}


def _target(uid: Any) -> Any:
    obj = ReverbManager.REVERB_OBJECTS.get(uid)
    if not isinstance(obj, Box | Rec | Safe):
        raise RpcError(f"no Box, Rec or Safe with uid {uid}")
    return obj


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
    def spawn_rec(self, owned: bool) -> int | None:
        EXECUTIONS["spawn_rec"] += 1
        return Rec(belonging_membership=rpc_caller() if owned else None).uid

    @expose(anyone=True)
    def spawn_safe(self, owned: bool) -> int | None:
        """One ``Safe`` (owned by the caller if ``owned``): its ``secret`` is owner-only."""
        EXECUTIONS["spawn_safe"] += 1
        return Safe(belonging_membership=rpc_caller() if owned else None).uid

    @expose(anyone=True)
    def set_value(self, target: int, value: Any) -> None:
        EXECUTIONS["set_value"] += 1
        box = ReverbManager.REVERB_OBJECTS.get(target)
        if not isinstance(box, Box):
            raise RpcError(f"no Box with uid {target}")
        box.value = value

    @expose(anyone=True)
    def set_field(self, target: int, name: str, value: Any) -> None:
        EXECUTIONS["set_field"] += 1
        obj = _target(target)
        if name not in _FIELDS[type(obj)]:
            raise RpcError(f"no field {name!r}")
        setattr(obj, name, value)

    @expose(anyone=True)
    def set_owner(self, target: int, member: int | None) -> None:
        EXECUTIONS["set_owner"] += 1
        _target(target).belonging_membership = member

    @expose(anyone=True)
    def set_special(self, target: int, kind: str) -> None:
        EXECUTIONS["set_special"] += 1
        if kind not in SPECIAL:
            raise RpcError(f"unknown kind {kind!r}; one of {sorted(SPECIAL)}")
        box = ReverbManager.REVERB_OBJECTS.get(target)
        if not isinstance(box, Box):
            raise RpcError(f"no Box with uid {target}")
        box.value = SPECIAL[kind]

    @expose(anyone=True)
    def give(self, kind: str) -> Any:
        """Return a value JSON cannot carry (``SPECIAL[kind]``): answered ``bad_return``."""
        EXECUTIONS["give"] += 1
        if kind not in SPECIAL:
            raise RpcError(f"unknown kind {kind!r}; one of {sorted(SPECIAL)}")
        return SPECIAL[kind]

    @expose(anyone=True)
    def vanish(self, seconds: float) -> bool:
        """Despawn every object, this one included; a new Control appears after ``seconds``."""
        EXECUTIONS["vanish"] += 1
        for obj in list(ReverbManager.REVERB_OBJECTS.values()):
            obj.destroy()
        RESPAWN[0] = time.monotonic() + min(max(float(seconds), 0.0), 5.0)
        return True

    @expose(anyone=True)
    def churn(self, target: int, seconds: float) -> None:
        """For ``seconds`` (at most 10), change that Box's value every tick: add 1 to an int,
        rotate a string by one character (same size), else set 0."""
        EXECUTIONS["churn"] += 1
        if not isinstance(ReverbManager.REVERB_OBJECTS.get(target), Box):
            raise RpcError(f"no Box with uid {target}")
        CHURN[target] = time.monotonic() + min(max(float(seconds), 0.0), 10.0)

    @expose(anyone=True)
    def sleep(self, seconds: float) -> None:
        """Hold the game loop (at most 1 s) right after the next ``server_sync()``, so that
        calls pile up behind it (§11 pending calls). The call itself returns at once: Reverb
        may run a call outside the game loop while that loop waits (guide §7), and sleeping
        there would hold the I/O instead of the game loop."""
        EXECUTIONS["sleep"] += 1
        HOLD[0] = min(max(float(seconds), 0.0), 1.0)

    @expose(anyone=True)
    def despawn(self, target: int) -> bool:
        EXECUTIONS["despawn"] += 1
        obj = ReverbManager.REVERB_OBJECTS.get(target)
        if obj is None or obj is self:
            return False
        obj.destroy()
        return True

    # -- interest (§16) -----------------------------------------------------------------------

    @expose(anyone=True)
    def spawn_hidden(self, n: int, member: int) -> list[int]:
        """Spawn ``n`` Boxes (value 0, owner null) that client ``member`` never sees."""
        EXECUTIONS["spawn_hidden"] += 1
        boxes = [Box(0) for _ in range(int(n))]
        for box in boxes:
            box.hide_from(int(member))
        return [box.uid for box in boxes if box.uid is not None]

    @expose(anyone=True)
    def hide_from(self, target: int, member: int) -> None:
        """Client ``member`` stops seeing that Box or Rec (despawned there at the next tick)."""
        EXECUTIONS["hide_from"] += 1
        _target(target).hide_from(int(member))

    @expose(anyone=True)
    def show_to(self, target: int, member: int) -> None:
        """Undo ``hide_from``: client ``member`` sees that Box or Rec again."""
        EXECUTIONS["show_to"] += 1
        obj = _target(target)
        obj._reverb_ctx.interest.reset(obj.uid, int(member))
        obj.show_to(int(member))

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
        # The text ends with this file's path: a server that forwards it leaks internals (§8.4).
        raise RuntimeError(f"unexpected failure in {__file__}")

    @expose(anyone=True)
    def resume_grace(self, seconds: float) -> float:
        """Set the grace of memberships dropped from now on (§18.5), at most 20 s; returns
        the previous one. Host-specific: another server answers ``not_exposed``."""
        EXECUTIONS["resume_grace"] += 1
        keeper = ReverbManager.REVERB_CONNECTION.hub.keeper
        previous = float(keeper.grace)
        keeper.grace = min(max(float(seconds), 0.0), 20.0)
        return previous

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

    # -- messages (§14) --------------------------------------------------------------------

    @expose(anyone=True)
    def tell(self, name: str, data: Any) -> bool:
        """Send the caller the message ``name`` now (before this call's answer)."""
        EXECUTIONS["tell"] += 1
        return ReverbManager.send_message(rpc_caller(), name, data)

    @expose(anyone=True)
    def tell_all(self, name: str, data: Any) -> int:
        EXECUTIONS["tell_all"] += 1
        return ReverbManager.broadcast(name, data)

    @expose(anyone=True)
    def tell_around(self, target: int, name: str, data: Any) -> int:
        EXECUTIONS["tell_around"] += 1
        return ReverbManager.send_to_observers(target, name, data)

    @expose(anyone=True)
    def ordered(self, target: int, value: Any) -> None:
        """Set that Box's value, send the caller ``before`` now and ``after`` once the sync
        carrying the value has gone (§14.5)."""
        EXECUTIONS["ordered"] += 1
        box = ReverbManager.REVERB_OBJECTS.get(target)
        if not isinstance(box, Box):
            raise RpcError(f"no Box with uid {target}")
        box.value = value
        caller = rpc_caller()
        assert caller is not None
        ReverbManager.send_message(caller, "before", value)
        AFTER_TICK.append((caller, "after", value))


@server_messages.on("echo")
def echo_message(sender: int, data: Any) -> None:
    """§14.4: answers the sender with ``echo`` ``{"from": sender, "data": data}``."""
    EXECUTIONS["message:echo"] += 1
    ReverbManager.send_message(sender, "echo", {"from": sender, "data": data})


@server_messages.on("crash")
def crash_message(sender: int, data: Any) -> None:
    EXECUTIONS["message:crash"] += 1
    raise RuntimeError(f"unexpected failure in {__file__}")


def game_step(now: float) -> None:
    """The game loop's part of ``Control.vanish``, ``Control.churn`` and ``Control.ordered``
    (it runs right after each ``server_sync()``)."""
    hold, HOLD[0] = HOLD[0], 0.0
    if hold:
        time.sleep(hold)  # Control.sleep: the game loop is busy, calls pile up (§11)
    pending = AFTER_TICK[:]
    AFTER_TICK.clear()
    for member, name, data in pending:
        ReverbManager.send_message(member, name, data)
    due = RESPAWN[0]
    if due is not None and now >= due:
        RESPAWN[0] = None
        Control()
    for uid, until in list(CHURN.items()):
        box = ReverbManager.REVERB_OBJECTS.get(uid)
        if now >= until or not isinstance(box, Box):
            del CHURN[uid]
        elif isinstance(box.value, str) and box.value:
            box.value = box.value[1:] + box.value[0]  # same size, new value
        elif isinstance(box.value, int) and not isinstance(box.value, bool):
            box.value += 1
        else:
            box.value = 0


# -- rooms (protocol §17; conformance group 15) ------------------------------------------------


class Token(ReverbObject):
    """The object of the conformance room types: one per client, owned by it. Registered in
    each room's own world only (never in the default room's)."""

    def __init__(
        self,
        hits: int = 0,
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        self.hits = hits
        super().__init__(
            hits, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose(anyone=True)
    def hit(self) -> int:
        EXECUTIONS["Token.hit"] += 1
        self.hits += 1
        return self.hits


class Arena(Room):
    """``"arena"``: 2 seats; join_or_create matches rooms on the option ``mode``; a Token
    per client, despawned when it leaves."""

    object_types = (Token,)
    max_clients = 2
    filter_by = ("mode",)

    def on_create(self, options: dict[str, Any]) -> None:
        label = options.get("label")
        if isinstance(label, str):
            self.set_metadata(label=label)
        self.on_message("shout")(self._shout)

    def _shout(self, sender: int, data: Any) -> None:
        self.broadcast("shouted", {"from": sender, "data": data})

    def on_join(self, client: Any) -> None:
        self.spawn(Token, 0, owner=client.member)

    def on_leave(self, client: Any, consented: bool) -> None:
        for obj in list(self.objects.values()):
            if obj.belonging_membership == client.member:
                self.despawn(obj)


class Sealed(Arena):
    """``"sealed"``: locked as soon as it is created (its creator is in, nobody else)."""

    def on_create(self, options: dict[str, Any]) -> None:
        super().on_create(options)
        self.lock()


class Vip(Arena):
    """``"vip"``: admits only clients whose options hold ``"key": "sesame"``."""

    def on_auth(self, client: Any, options: dict[str, Any]) -> Accept | Reject:
        return Accept() if options.get("key") == "sesame" else Reject("the key is wrong")


def define_rooms() -> None:
    ReverbManager.define_room("arena", Arena)
    ReverbManager.define_room("sealed", Sealed)
    ReverbManager.define_room("vip", Vip)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m conformance.host", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--layer", choices=("threaded", "aio"), default="threaded")
    parser.add_argument(
        "--low-limits", action="store_true", help="short deadlines, low rates (profile LOW)"
    )
    parser.add_argument("--handshake-timeout", type=float, default=1.0)
    parser.add_argument("--tick-rate", type=float, default=30.0)
    parser.add_argument("--max-frame", type=int, default=1048576)
    parser.add_argument("--ping-interval", type=float, default=2.0)
    parser.add_argument("--max-calls-per-second", type=float, default=100000.0)
    parser.add_argument("--max-messages-per-second", type=float, default=100000.0)
    parser.add_argument("--max-bytes-per-second", type=float, default=1e9)
    return parser.parse_args(argv)


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "tick_rate": args.tick_rate,
        "handshake_timeout": args.handshake_timeout,
        "max_frame_size": args.max_frame,
        "ping_interval": args.ping_interval,
        # The driver builds its worlds through Control calls, thousands a second: the
        # per-connection rate limits (§11) are raised so that the normal run measures the
        # protocol; the --low-limits run tests the limits themselves.
        "max_calls_per_second": args.max_calls_per_second,
        "max_messages_per_second": args.max_messages_per_second,
        "max_bytes_per_second": args.max_bytes_per_second,
    }
    if args.low_limits:
        options.update(
            handshake_timeout=LOW.handshake_timeout,
            frame_timeout=LOW.frame_timeout,
            ping_interval=LOW.ping_interval,
            idle_timeout=LOW.idle_timeout,
            max_messages_per_second=LOW.max_messages_per_second,
            max_calls_per_second=LOW.max_calls_per_second,
            max_pending_calls=LOW.max_pending_calls,
            max_send_buffer=LOW.max_send_buffer,
            max_bytes_per_second=LOW.max_bytes_per_second,
            max_frame_size=LOW.max_frame,
        )
    # Options this version of the server does not know yet (e.g. the byte-rate budget)
    # are left out rather than refused, so the host runs against older servers too.
    known = inspect.signature(Server.__init__).parameters
    return {name: value for name, value in options.items() if name in known}


def run_threaded(args: argparse.Namespace) -> int:
    running = [True]

    def stop(signum: int, frame: FrameType | None) -> None:
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server = Server(**server_options(args))
    ReverbManager.REVERB_CONNECTION = server
    server.start_server()
    try:
        Control()
        print(f"READY {server.port}", flush=True)
        while running[0]:
            ReverbManager.server_sync()
            game_step(time.monotonic())
    finally:
        server.stop_server()
    return 0


async def run_aio(args: argparse.Namespace) -> int:
    from reverb.aio import AsyncServer

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    server = AsyncServer(**server_options(args))
    ReverbManager.REVERB_CONNECTION = server
    await server.start_server()
    try:
        Control()
        print(f"READY {server.port}", flush=True)
        while not stopping.is_set():
            await server.server_sync()
            game_step(time.monotonic())
    finally:
        await server.stop_server()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ReverbManager.REVERB_SIDE = ReverbSide.SERVER
    define_rooms()
    if args.layer == "aio":
        return asyncio.run(run_aio(args))
    return run_threaded(args)


if __name__ == "__main__":
    sys.exit(main())
