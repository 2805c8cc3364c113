"""Deliberate bugs, patched into Reverb at run time inside the harness's server child only.

``python -m harness SCENARIO --break NAME`` passes ``NAME`` to the server app, which calls
:func:`apply` before it creates its ``Server``. Nothing here touches ``reverb/`` on disk: the
patches replace attributes of already-imported classes in that one process. Each bug breaks
one promise, and the matching scenario must report FAIL while it is applied.

=================  =============================================================  ==========
name               what it does                                                   caught by
=================  =============================================================  ==========
``reuse-uids``     a despawned object's UID is handed to the next spawn (§7.1)    uids
``double-execute`` every RPC runs twice; the client gets the second reply (§8.1)  rpc, faults
``drop-updates``   every 7th changed field is never sent (§7.3)                   convergence
``ignore-owner``   owner-only methods run for any caller (§8.2)                   ownership
``leak-members``   closed connections stay in ``Server.members``                  churn
``no-heartbeat``   the server never times out a silent peer (§9.2)                faults
``drop-replies``   every 5th RPC reply is never sent (§8.1)                       load
``slow-ticks``     every tick takes 50 ms longer (the tick rate cannot hold)      load
``batch-syncs``    changes go out every 8th tick only, ticks keep their rate      load
=================  =============================================================  ==========
"""

from __future__ import annotations

import functools
import logging
from typing import Any

__all__ = ["BREAKAGES", "apply"]

logger = logging.getLogger("harness.breakage")


def _reuse_uids() -> None:
    from reverb.replication.world import ServerWorld

    add, remove = ServerWorld.add, ServerWorld.remove

    @functools.wraps(add)
    def add_reusing(self: Any, obj: Any, args: tuple[Any, ...]) -> int:
        free: list[int] = self.__dict__.setdefault("_harness_free", [])
        if not free:
            return add(self, obj, args)
        saved = self._next_uid
        self._next_uid = free.pop()
        try:
            return add(self, obj, args)
        finally:
            self._next_uid = saved

    @functools.wraps(remove)
    def remove_recycling(self: Any, uid: int) -> Any:
        obj = remove(self, uid)
        self.__dict__.setdefault("_harness_free", []).append(uid)
        return obj

    ServerWorld.add = add_reusing  # type: ignore[method-assign]
    ServerWorld.remove = remove_recycling  # type: ignore[method-assign]


def _double_execute() -> None:
    from reverb.replication.world import ServerWorld

    call = ServerWorld.call

    @functools.wraps(call)
    def call_twice(self: Any, member: int, rpc: Any) -> Any:
        call(self, member, rpc)
        return call(self, member, rpc)

    ServerWorld.call = call_twice  # type: ignore[method-assign]


def _drop_updates() -> None:
    from reverb.replication import world

    same = world._same
    seen = [0]

    def sometimes_same(a: Any, b: Any) -> bool:
        if same(a, b):
            return True
        seen[0] += 1
        return seen[0] % 7 == 0  # claim "unchanged": the new value is recorded, never sent

    world._same = sometimes_same


def _ignore_owner() -> None:
    from reverb.replication.types import Exposure
    from reverb.replication.world import ServerWorld

    call = ServerWorld.call

    @functools.wraps(call)
    def call_as_anyone(self: Any, member: int, rpc: Any) -> Any:
        obj = self.objects.get(rpc.uid)
        if obj is None:
            return call(self, member, rpc)
        exposed = self.types.of(obj).exposed
        saved = exposed.get(rpc.method)
        if saved is None:
            return call(self, member, rpc)
        exposed[rpc.method] = Exposure(anyone=True)
        try:
            return call(self, member, rpc)
        finally:
            exposed[rpc.method] = saved

    ServerWorld.call = call_as_anyone  # type: ignore[method-assign]


def _leak_members() -> None:
    from reverb.hub import ServerHub
    from reverb.proto.session import Closed

    on_event = ServerHub.on_event

    @functools.wraps(on_event)
    def on_event_leaking(self: Any, session: Any, event: Any, now: float, conn: Any = None) -> Any:
        out = on_event(self, session, event, now, conn)
        if isinstance(event, Closed) and out is not None:
            self.members[session.member] = session  # forget to forget it
        return out

    ServerHub.on_event = on_event_leaking  # type: ignore[method-assign]


def _no_heartbeat() -> None:
    from reverb.proto.session import Role, Session, State

    check = Session.check_timeouts

    @functools.wraps(check)
    def check_without_idle(self: Any, now: float) -> None:
        if self.role is Role.SERVER and self.state is State.OPEN:
            self._last_received = now  # as if the peer had just spoken
        check(self, now)

    Session.check_timeouts = check_without_idle  # type: ignore[method-assign]


def _drop_replies() -> None:
    from reverb.hub import ServerHub
    from reverb.proto import messages as m

    send = ServerHub.send
    seen = [0]

    @functools.wraps(send)
    def send_dropping(self: Any, members: Any, message: Any, now: float) -> Any:
        if isinstance(message, (m.RpcResult, m.RpcErrorReply)):
            seen[0] += 1
            if seen[0] % 5 == 0:
                return []  # the call ran; its reply is lost
        return send(self, members, message, now)

    ServerHub.send = send_dropping  # type: ignore[method-assign]


def _slow_ticks() -> None:
    import time

    from reverb.context import ReverbContext

    tick = ReverbContext.tick

    @functools.wraps(tick)
    def slow_tick(self: Any, now: float) -> None:
        time.sleep(0.05)  # a deliberately slow game loop, not synchronisation
        tick(self, now)

    ReverbContext.tick = slow_tick  # type: ignore[method-assign]


def _batch_syncs() -> None:
    from reverb.replication.world import ServerWorld

    tick = ServerWorld.tick

    @functools.wraps(tick)
    def tick_batching(self: Any, now: float) -> Any:
        if (self.tick_count + 1) % 8:
            self.tick_count += 1  # the tick happens, nothing is sent (changes wait)
            return []
        return tick(self, now)

    ServerWorld.tick = tick_batching  # type: ignore[method-assign]


BREAKAGES = {
    "reuse-uids": _reuse_uids,
    "double-execute": _double_execute,
    "drop-updates": _drop_updates,
    "ignore-owner": _ignore_owner,
    "leak-members": _leak_members,
    "no-heartbeat": _no_heartbeat,
    "drop-replies": _drop_replies,
    "slow-ticks": _slow_ticks,
    "batch-syncs": _batch_syncs,
}


def apply(names: list[str]) -> None:
    """Patch the named bugs into this process's Reverb."""
    for name in names:
        if name not in BREAKAGES:
            raise ValueError(f"unknown breakage {name!r}; known: {', '.join(sorted(BREAKAGES))}")
        BREAKAGES[name]()
        logger.warning("breakage %r applied: this server is deliberately broken", name)
