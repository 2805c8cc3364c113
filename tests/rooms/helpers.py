"""Shared doubles for tests/rooms: a stepped clock, a replicated type, a recording room."""

from __future__ import annotations

from typing import Any, ClassVar

from reverb import ReverbObject, expose, rpc_caller
from reverb.proto import messages as m
from reverb.rooms import Accept, Matchmaker, Reject, Room, RoomClient, RoomOutput


class Clock:
    """Time as a value: tests advance it; a slow tick advances it from inside the tick."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Ship(ReverbObject):
    def __init__(
        self,
        x: int = 0,
        *,
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        self.x = x
        self.destroyed = False
        super().__init__(
            x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose(anyone=True)
    def where(self) -> list[Any]:
        return [self.x, rpc_caller()]

    def on_destroy_from_server(self) -> None:
        self.destroyed = True


class Recording(Room):
    """Logs every hook into the class-level ``log`` (reset by ``fresh()``)."""

    object_types = (Ship,)
    tick_rate = 30.0
    log: ClassVar[list[tuple[Any, ...]]] = []

    def on_create(self, options: dict[str, Any]) -> None:
        self.log.append(("create", self.room_id, dict(options)))
        if "max" in options:
            self.max_clients = options["max"]

    def on_auth(self, client: RoomClient, options: dict[str, Any]) -> Accept | Reject:
        self.log.append(("auth", self.room_id, client.member))
        if options.get("password", "") != self.metadata.get("password", ""):
            return Reject("wrong password")
        return Accept(auth={"level": options.get("level", 1)})

    def on_join(self, client: RoomClient) -> None:
        self.log.append(("join", self.room_id, client.member))
        self.spawn(Ship, client.member, owner=client.member)

    def on_leave(self, client: RoomClient, consented: bool) -> None:
        self.log.append(("leave", self.room_id, client.member, consented))

    def on_dispose(self) -> None:
        self.log.append(("dispose", self.room_id))


def fresh() -> list[tuple[Any, ...]]:
    Recording.log = []
    return Recording.log


def client(member: int, identity: Any = None) -> RoomClient:
    return RoomClient(member, identity)


def make(clock: Clock, **kwargs: Any) -> Matchmaker:
    ids = iter(f"r{n}" for n in range(1, 100000))
    mm = Matchmaker(clock, room_ids=lambda: next(ids), **kwargs)
    mm.define("battle", Recording)
    return mm


def syncs_for(out: list[RoomOutput], member: int) -> list[tuple[str, m.Sync]]:
    """The syncs addressed to ``member``, with their room, through the wire encoding."""
    found = []
    for item in out:
        if member in item.members and isinstance(item.message, m.Sync):
            decoded = m.decode(m.encode(item.message))
            assert isinstance(decoded, m.Sync)
            found.append((item.room_id, decoded))
    return found
