"""The server world as it was before issue 9 (every field of every object compared at every
tick, one baseline for all peers), kept as the reference the new engine is checked against."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from reverb.errors import EncodeError, InvalidState
from reverb.proto import messages as m
from reverb.replication.types import TypeRegistry

_MISSING = object()
ARGS_DEPTH = 4
FIELD_DEPTH = 5
Outgoing = list[tuple[tuple[int, ...], m.Message]]


class ReferenceWorld:
    """Objects, UIDs, peers and what each peer has been sent."""

    def __init__(self, types: TypeRegistry) -> None:
        self.types = types
        self.objects: dict[int, Any] = {}
        self.tick_count = 0
        self._next_uid = 1
        # What every synced peer holds: uid -> (owner, wire fields), as of the last tick.
        self._sent: dict[int, tuple[int | None, dict[str, Any]]] = {}
        self._args: dict[int, list[Any]] = {}
        self._despawned: list[int] = []
        self._synced: set[int] = set()  # peers that have had their full snapshot
        self._joining: set[int] = set()  # peers that get a full snapshot next tick

    # -- objects -----------------------------------------------------------------------------

    def add(self, obj: Any, args: tuple[Any, ...]) -> int:
        """Give ``obj`` a fresh UID (never reused, §7.1) and add it to the world."""
        info = self.types.of(obj)
        uid = self._next_uid
        self._next_uid += 1
        self._args[uid] = m.to_wire(
            list(args), f"{info.name} uid={uid} constructor arguments", depth=ARGS_DEPTH
        )
        obj.uid = uid
        self.objects[uid] = obj
        return uid

    def remove(self, uid: int) -> Any:
        obj = self.objects.pop(uid, None)
        if obj is None:
            raise InvalidState(f"no object with uid {uid}")
        self._args.pop(uid, None)
        if self._sent.pop(uid, None) is not None:
            self._despawned.append(uid)
        return obj

    # -- peers -------------------------------------------------------------------------------

    def peer_joined(self, member: int) -> None:
        self._joining.add(member)

    def peer_left(self, member: int) -> None:
        self._joining.discard(member)
        self._synced.discard(member)

    @property
    def peers(self) -> frozenset[int]:
        return frozenset(self._synced | self._joining)

    # -- sync --------------------------------------------------------------------------------

    def _wire_fields(self, uid: int, obj: Any) -> dict[str, Any]:
        info = self.types.of(obj)
        fields = {}
        for name in info.field_names(obj):
            value = getattr(obj, name, _MISSING)
            if value is _MISSING:
                raise EncodeError(f"{info.name} uid={uid}: declared field {name!r} is not set")
            fields[name] = m.to_wire(
                value, f"{info.name} uid={uid} attribute {name!r}", depth=FIELD_DEPTH
            )
        return fields

    def _spawn_entry(self, uid: int, owner: int | None, fields: dict[str, Any]) -> m.SpawnEntry:
        obj = self.objects[uid]
        return m.SpawnEntry(
            uid=uid, type=self.types.of(obj).name, owner=owner, args=self._args[uid], fields=fields
        )

    def tick(self, now: float) -> Outgoing:
        """Advance one tick: a delta for synced peers, a full snapshot for new ones (§7.3)."""
        self.tick_count += 1
        state: dict[int, tuple[int | None, dict[str, Any]]] = {}
        spawn: list[m.SpawnEntry] = []
        update: list[m.UpdateEntry] = []
        for uid, obj in self.objects.items():
            owner = obj.belonging_membership
            fields = self._wire_fields(uid, obj)
            state[uid] = (owner, fields)
            before = self._sent.get(uid)
            if before is None:
                spawn.append(self._spawn_entry(uid, owner, fields))
                continue
            old_owner, old = before
            changed = {k: v for k, v in fields.items() if not _same(old.get(k, _MISSING), v)}
            if changed or owner != old_owner:
                update.append(
                    m.UpdateEntry(uid=uid, fields=changed, owner=owner)
                    if owner != old_owner
                    else m.UpdateEntry(uid=uid, fields=changed)
                )
        despawn, self._despawned = self._despawned, []
        self._sent = state
        out: Outgoing = []
        if self._synced and (spawn or update or despawn):
            delta = m.Sync(
                tick=self.tick_count,
                full=False,
                final=True,
                spawn=tuple(spawn),
                update=tuple(update),
                despawn=tuple(despawn),
            )
            out.append((tuple(sorted(self._synced)), delta))
        if self._joining:
            full = m.Sync(
                tick=self.tick_count,
                full=True,
                final=True,
                spawn=tuple(self._spawn_entry(u, o, f) for u, (o, f) in state.items()),
            )
            out.append((tuple(sorted(self._joining)), full))
            self._synced |= self._joining
            self._joining = set()
        return out


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: same types all the way down (1, 1.0 and True differ on the wire)."""
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    return bool(a == b)


# -- the encoder as it was: dataclass reflection, one JSON call per message ------------------

_encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {
            f.name: _plain(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if getattr(obj, f.name) is not m.ABSENT
        }
    if type(obj) is tuple:
        return [_plain(v) for v in obj]
    return obj


def encode(message: m.Message) -> bytes:
    data: dict[str, Any] = {"type": message.TYPE}
    data.update(_plain(message))
    return _encoder.encode(data).encode("utf-8")
