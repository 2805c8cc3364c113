"""The server's authoritative world and the client's replica table, sans I/O (§7, §8).

``ServerWorld.tick`` turns the world's changes into ``sync`` messages for its peers;
``ServerWorld.call`` runs an ``rpc``; ``ClientWorld.apply`` applies a tick's ``sync`` parts.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reverb.errors import EncodeError, InvalidState, RemoteProtocolError, RpcError
from reverb.proto import messages as m
from reverb.replication.types import META_ATTRIBUTES, TypeRegistry

__all__ = ["ClientWorld", "Despawned", "ServerWorld", "Spawned", "current_caller"]

logger = logging.getLogger("reverb")

# The membership id of the client whose call is running (None outside a remote call).
current_caller: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "reverb_caller", default=None
)
_MISSING = object()
# Nesting levels inside a sync (§3.4): sync > spawn/update list > entry > args/fields > value.
ARGS_DEPTH = 4
FIELD_DEPTH = 5
Outgoing = list[tuple[tuple[int, ...], m.Message]]


class ServerWorld:
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
        # Unencodable state: uids withheld now, and the synced peers lacking each one of them
        # (they joined while it was withheld), which get it as a spawn once it is encodable.
        self._bad: set[int] = set()
        self._lacking: dict[int, set[int]] = {}
        self.sync_errors: list[tuple[Any, EncodeError]] = []  # entered the bad state this tick
        self.strict = False  # raise the EncodeError from tick() instead (development)

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
        self._bad.discard(uid)
        if self._sent.pop(uid, None) is not None:
            self._despawned.append(uid)
        return obj

    # -- peers -------------------------------------------------------------------------------

    def peer_joined(self, member: int) -> None:
        self._joining.add(member)

    def peer_left(self, member: int) -> None:
        self._joining.discard(member)
        self._synced.discard(member)
        for peers in self._lacking.values():
            peers.discard(member)

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
            try:
                fields[name] = m.to_wire(
                    value, f"{info.name} uid={uid} attribute {name!r}", depth=FIELD_DEPTH
                )
            except EncodeError as exc:
                raise EncodeError(f"{exc} (the attribute holds a {type(value).__name__})") from exc
        return fields

    def _spawn_entry(self, uid: int, owner: int | None, fields: dict[str, Any]) -> m.SpawnEntry:
        obj = self.objects[uid]
        return m.SpawnEntry(
            uid=uid, type=self.types.of(obj).name, owner=owner, args=self._args[uid], fields=fields
        )

    def _encodable(self, uid: int, obj: Any) -> dict[str, Any] | None:
        """The object's wire fields, or None if one cannot be encoded (decision: withhold it
        this tick for every peer; log and report it once per entry into the bad state)."""
        try:
            fields = self._wire_fields(uid, obj)
        except EncodeError as exc:
            if self.strict:
                raise
            if uid not in self._bad:
                self._bad.add(uid)
                logger.error(
                    "cannot sync %s: %s; withheld from clients until it can be encoded",
                    type(obj).__qualname__,
                    exc,
                )
                self.sync_errors.append((obj, exc))
            return None
        if uid in self._bad:
            self._bad.discard(uid)
            logger.info("%s uid=%d can be encoded again: syncing it", type(obj).__qualname__, uid)
        return fields

    def tick(self, now: float) -> Outgoing:
        """Advance one tick: a delta for synced peers, a full snapshot for new ones (§7.3).

        An object with a field that cannot be encoded is withheld: peers keep what they were
        last sent, peers that never got it do not get it, and it syncs again (a spawn for the
        peers that lack it) once it can be encoded. ``sync_errors`` lists the objects that
        entered that state during this tick; with ``strict`` the ``EncodeError`` is raised.
        """
        self.tick_count += 1
        self.sync_errors = []
        state: dict[int, tuple[int | None, dict[str, Any]]] = {}
        withheld: set[int] = set()
        spawn: list[m.SpawnEntry] = []
        update: list[m.UpdateEntry] = []
        for uid, obj in self.objects.items():
            owner = obj.belonging_membership
            before = self._sent.get(uid)
            fields = self._encodable(uid, obj)
            if fields is None:
                withheld.add(uid)
                if before is not None:
                    state[uid] = before  # what the synced peers hold stays as it was
                continue
            state[uid] = (owner, fields)
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
        # Peers that joined while an object they lack was withheld get it as a spawn.
        groups: dict[frozenset[int], list[int]] = {}
        for member in sorted(self._synced):
            lacks = frozenset(u for u, peers in self._lacking.items() if member in peers)
            groups.setdefault(lacks, []).append(member)
        for lacks, members in groups.items():
            g_spawn = spawn + [
                self._spawn_entry(u, *state[u])
                for u in sorted(lacks)
                if u in state and u not in withheld
            ]
            g_update = [e for e in update if e.uid not in lacks]
            g_despawn = [u for u in despawn if u not in lacks]
            if g_spawn or g_update or g_despawn:
                delta = m.Sync(
                    tick=self.tick_count,
                    full=False,
                    final=True,
                    spawn=tuple(g_spawn),
                    update=tuple(g_update),
                    despawn=tuple(g_despawn),
                )
                out.append((tuple(members), delta))
        self._lacking = {u: p for u, p in self._lacking.items() if u in withheld and u in state}
        if self._joining:
            full = m.Sync(
                tick=self.tick_count,
                full=True,
                final=True,
                spawn=tuple(
                    self._spawn_entry(u, o, f) for u, (o, f) in state.items() if u not in withheld
                ),
            )
            for uid in withheld & state.keys():
                self._lacking.setdefault(uid, set()).update(self._joining)
            out.append((tuple(sorted(self._joining)), full))
            self._synced |= self._joining
            self._joining = set()
        return out

    # -- rpc ---------------------------------------------------------------------------------

    def call(self, member: int, rpc: m.Rpc) -> m.Message:
        """Run an ``rpc`` for ``member`` after the checks of §8.2; return the reply."""

        def error(code: str, message: str) -> m.RpcErrorReply:
            return m.RpcErrorReply(id=rpc.id, code=code, message=message)

        obj = self.objects.get(rpc.uid)
        if obj is None:
            return error("unknown_object", f"no object with uid {rpc.uid}")
        info = self.types.of(obj)
        exposure = info.exposed.get(rpc.method)
        if exposure is None:
            return error("not_exposed", f"{info.name} exposes no method {rpc.method[:60]!r}")
        if not exposure.anyone and obj.belonging_membership != member:
            return error("not_owner", f"{info.name}.{rpc.method} may only be called by its owner")
        try:
            info.signatures[rpc.method].bind(obj, *rpc.args)
        except TypeError as exc:
            return error("bad_arguments", f"{info.name}.{rpc.method}: {exc}")
        token = current_caller.set(member)
        try:
            value = getattr(obj, rpc.method)(*rpc.args)
        except RpcError as exc:
            return error("rejected", exc.message)
        except Exception:
            logger.exception("rpc %s.%s from client #%d raised", info.name, rpc.method, member)
            return error("handler_error", f"{info.name}.{rpc.method} failed on the server")
        finally:
            current_caller.reset(token)
        try:
            return m.RpcResult(id=rpc.id, value=m.to_wire(value, "return value"))
        except EncodeError as exc:
            logger.error("rpc %s.%s: %s", info.name, rpc.method, exc)
            return error(
                "bad_return", f"{info.name}.{rpc.method} returned a value JSON cannot hold"
            )


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: same types all the way down (1, 1.0 and True differ on the wire)."""
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    return bool(a == b)


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
