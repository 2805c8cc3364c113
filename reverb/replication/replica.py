"""The client's replica table, sans I/O (§7.3-§7.6): applies whole ticks of ``sync`` parts.

``ClientWorld.apply`` validates a whole tick before touching the table, builds every new replica,
then applies spawns, updates and despawns, so a tick applies entirely or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reverb.errors import RemoteProtocolError
from reverb.proto import messages as m
from reverb.replication.types import META_ATTRIBUTES, TypeRegistry

__all__ = ["Change", "ClientWorld", "Despawned", "Spawned"]

logger = logging.getLogger("reverb")


@dataclass(frozen=True)
class Spawned:
    obj: Any


@dataclass(frozen=True)
class Despawned:
    obj: Any


Change = Spawned | Despawned


class ClientWorld:
    """The replica table: applies whole ticks of ``sync`` parts (§7.3-§7.6)."""

    def __init__(self, types: TypeRegistry, bind: Callable[[Any], None]) -> None:
        self.types = types
        self.objects: dict[int, Any] = {}
        self.tick: int | None = None
        self._bind = bind
        self._parts: list[m.Sync] = []

    def reset(self) -> list[Change]:
        """Forget every replica (a new connection starts from a new snapshot)."""
        gone: list[Change] = [Despawned(obj) for obj in self.objects.values()]
        self.objects = {}
        self.tick = None
        self._parts = []
        return gone

    def apply(self, sync: m.Sync) -> list[Change] | None:
        """Take one part; on the final part apply the tick and return what changed."""
        if self._parts and (self._parts[0].tick != sync.tick or self._parts[0].full != sync.full):
            raise RemoteProtocolError("sync parts of different ticks interleaved", 1002)
        if self.tick is None and not sync.full:
            raise RemoteProtocolError("first sync is not a full snapshot", 1002)
        if self.tick is not None and sync.tick <= self.tick:
            raise RemoteProtocolError(f"sync tick {sync.tick} after tick {self.tick}", 1002)
        self._parts.append(sync)
        if not sync.final:
            return None
        parts, self._parts = self._parts, []
        spawn = [e for p in parts for e in p.spawn]
        update = [e for p in parts for e in p.update]
        despawn = [u for p in parts for u in p.despawn]
        self._check(sync.full, spawn, update, despawn)
        # Build every new replica before touching the table: a failing constructor
        # leaves it as it was.
        built = {e.uid: self._build(e) for e in spawn if e.uid not in self.objects}
        changes: list[Change] = []
        if sync.full:
            listed = {e.uid for e in spawn}
            for uid in [u for u in self.objects if u not in listed]:
                changes.append(Despawned(self.objects.pop(uid)))
        for entry in spawn:
            obj = built.get(entry.uid)
            if obj is None:  # a full snapshot re-lists what we hold: update in place
                existing = self.objects[entry.uid]
                existing.belonging_membership = entry.owner
                for name, value in entry.fields.items():
                    setattr(existing, name, value)
                continue
            self._bind(obj)
            self.objects[entry.uid] = obj
            changes.append(Spawned(obj))
        for upd in update:
            obj = self.objects[upd.uid]
            if not isinstance(upd.owner, m.Absent):
                obj.belonging_membership = upd.owner
            for name, value in upd.fields.items():
                setattr(obj, name, value)
        for uid in despawn:
            changes.append(Despawned(self.objects.pop(uid)))
        self.tick = sync.tick
        return changes

    def _check(
        self, full: bool, spawn: list[m.SpawnEntry], update: list[m.UpdateEntry], despawn: list[int]
    ) -> None:
        """Validate a whole tick before touching the table, so it applies entirely or not at all."""
        spawned: dict[int, type] = {}
        for entry in spawn:
            if entry.uid in spawned or (not full and entry.uid in self.objects):
                raise RemoteProtocolError(f"spawn of uid {entry.uid}, which exists", 1002)
            info = self.types.by_name(entry.type)
            if info is None:
                raise RemoteProtocolError(f"spawn of unregistered type {entry.type[:60]!r}", 1002)
            spawned[entry.uid] = info.cls
            for name in entry.fields:
                _check_field_name(info.cls, name)
        for upd in update:
            target = spawned.get(upd.uid) or type(self.objects.get(upd.uid))
            if target is type(None):
                raise RemoteProtocolError(f"update of unknown uid {upd.uid}", 1002)
            for name in upd.fields:
                _check_field_name(target, name)
        gone: set[int] = set()
        for uid in despawn:
            if uid in gone or (uid not in self.objects and uid not in spawned):
                raise RemoteProtocolError(f"despawn of unknown uid {uid}", 1002)
            gone.add(uid)

    def _build(self, entry: m.SpawnEntry) -> Any:
        info = self.types.by_name(entry.type)
        assert info is not None  # checked in _check
        try:
            obj = info.cls(
                *entry.args, uid=entry.uid, add_on_init=False, belonging_membership=entry.owner
            )
        except Exception as exc:
            logger.exception("building a %s replica from %r failed", entry.type, entry.args)
            raise RemoteProtocolError(
                f"cannot build {entry.type} uid={entry.uid} from its arguments", 1002
            ) from exc
        for name, value in entry.fields.items():
            setattr(obj, name, value)
        obj.uid = entry.uid
        obj.belonging_membership = entry.owner
        return obj


def _check_field_name(cls: type, name: str) -> None:
    # A server must not be able to overwrite a replica's methods or internals by naming them.
    if (
        name.startswith("_")
        or name in META_ATTRIBUTES
        or not name.isidentifier()
        or callable(getattr(cls, name, None))
    ):
        raise RemoteProtocolError(f"field name {name[:60]!r} is not allowed", 1002)
