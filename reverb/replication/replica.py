"""The client's replica table, sans I/O (§7.3-§7.6): applies whole ticks of ``sync`` parts.

``ClientWorld.apply`` validates a whole tick before touching the table, builds every new replica,
then applies spawns, updates and despawns, so a tick applies entirely or not at all.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, repeat
from operator import attrgetter, getitem, itemgetter, le, setitem
from typing import Any

from reverb.errors import CloseCode, RemoteProtocolError
from reverb.proto import messages as m
from reverb.replication.types import META_ATTRIBUTES, TypeRegistry

__all__ = ["Change", "ClientWorld", "Despawned", "Spawned"]

logger = logging.getLogger("reverb")


@dataclass(frozen=True)
class Spawned:
    obj: Any
    reentered: bool = False  # §16.4: its uid was last despawned as "left_view"


@dataclass(frozen=True)
class Despawned:
    obj: Any
    reason: str = "destroyed"  # or "left_view" (§16.3, only with the feature "interest")


Change = Spawned | Despawned


class ClientWorld:
    """The replica table: applies whole ticks of ``sync`` parts (§7.3-§7.6, §12).

    The common tick -- updates of objects it holds, of classes that keep their attributes in
    ``__dict__`` -- is checked and applied with C builtins over whole lists: which field names
    a class accepts (§7.8) is decided once per (class, name) and cached, and a compact entry's
    index list once per (class, indexes). Anything else takes the general path, which checks
    entry by entry and assigns with ``setattr``."""

    def __init__(self, types: TypeRegistry, bind: Callable[[Any], None]) -> None:
        self.types = types
        self.objects: dict[int, Any] = {}
        self.tick: int | None = None
        self.applied = 0  # ticks applied since the table was made (ConnectionStats)
        # Whether compact update entries (§12) are accepted: a Reverb client asks for them.
        self.compact = True
        self._bind = bind
        self._parts: list[m.Sync] = []
        self._tables: dict[type, list[str]] = {}  # §12.3: field table per type
        self._fast: dict[type, set[str]] = {}  # names a class takes straight into __dict__
        self._shapes: dict[tuple[type, tuple[Any, ...]], tuple[str, ...]] = {}
        # Change hooks and interpolation (§13): which classes' field changes to record; after
        # each applied tick, ``changes`` holds (obj, field, old, new) in apply order and
        # ``snapped`` the uids whose update said "snap": true (§13.5). None: record nothing.
        self.observe: Callable[[type], bool] | None = None
        self.changes: list[tuple[Any, str, Any, Any]] = []
        self.snapped: set[int] = set()
        self._left: set[int] = set()  # §16.4: uids despawned as "left_view" and not back

    def reset(self) -> list[Change]:
        """Forget every replica (a new connection starts from a new snapshot)."""
        gone: list[Change] = [Despawned(obj) for obj in self.objects.values()]
        self.objects = {}
        self.tick = None
        self._parts = []
        self._tables = {}
        self._shapes = {}
        self._left = set()
        return gone

    def resumed(self) -> None:
        """A resumed connection (§18.4): keep the replicas (the same Python objects), forget
        what belonged to the old connection -- a half-received tick, the compact field tables
        (the next sync is a full snapshot that lists them again and reconciles)."""
        self._parts = []
        self._tables = {}
        self._shapes = {}

    def apply(self, sync: m.Sync) -> list[Change] | None:
        """Take one part; on the final part apply the tick and return what changed."""
        if self._parts and (self._parts[0].tick != sync.tick or self._parts[0].full != sync.full):
            raise RemoteProtocolError(
                "sync parts of different ticks interleaved", CloseCode.PROTOCOL_ERROR
            )
        if self.tick is None and not sync.full:
            raise RemoteProtocolError("first sync is not a full snapshot", CloseCode.PROTOCOL_ERROR)
        if self.tick is not None and sync.tick <= self.tick:
            raise RemoteProtocolError(
                f"sync tick {sync.tick} after tick {self.tick}", CloseCode.PROTOCOL_ERROR
            )
        if not sync.final:
            self._parts.append(sync)
            return None
        if self._parts:
            self._parts.append(sync)
            parts, self._parts = self._parts, []
            lists = [p.wire() for p in parts]
            spawn = [e for wire in lists for e in wire[0]]
            update = [e for wire in lists for e in wire[1]]
            despawn = [u for wire in lists for u in wire[2]]
            schemas = [wire[3] for wire in lists if wire[3] is not None]
            left = [u for p in parts if not isinstance(p.left, m.Absent) for u in p.left]
            cols: list[Any] | None = [b for p in parts for b in getattr(p, "cols", None) or ()]
        else:
            spawn, update, despawn, schema = sync.wire()
            schemas = [] if schema is None else [schema]
            left = [] if isinstance(sync.left, m.Absent) else list(sync.left)
            cols = getattr(sync, "cols", None)
        try:
            changes = self._apply(sync.full, spawn, update, despawn, schemas, cols)
            if left or self._left:
                changes = self._reasons(changes, set(left))
        except RemoteProtocolError:
            self._shapes = {}  # may hold shapes checked against a refused table
            raise
        self.tick = sync.tick
        self.applied += 1
        return changes

    def _apply(
        self,
        full: bool,
        spawn: list[dict[str, Any]],
        update: list[Any],
        despawn: list[int],
        schemas: list[dict[str, Any]],
        cols: list[Any] | None = None,
    ) -> list[Change]:
        """Check the whole tick, build its new replicas, then change the table (§7.6)."""
        objects = self.objects
        observe = self.observe
        self.changes = []
        self.snapped = set()
        if schemas or cols:
            if not self.compact:
                raise RemoteProtocolError(
                    "sync schema or cols without the compact feature (§12, §20)",
                    CloseCode.PROTOCOL_ERROR,
                )
            if schemas:
                self._tables = self._extend_tables(schemas)
        spawned = self._check_spawns(full, spawn) if spawn else {}
        # Build every new replica before touching the table: a failing constructor
        # leaves it as it was.
        built = {e["uid"]: self._build(e) for e in spawn if e["uid"] not in objects}
        lookup = {**objects, **built} if built else objects
        apply_cols = None
        if cols:  # §20.3: the blocks' rows, after the update entries
            apply_cols = None if observe is not None else self._fast_cols(cols, lookup)
            if apply_cols is None:
                update = [*update, *m.block_rows(cols)]
        apply_updates = self._check_updates(update, lookup) if update else None
        if despawn:
            gone = set(despawn)
            if len(gone) != len(despawn) or not gone <= lookup.keys():
                seen: set[int] = set()
                for uid in despawn:
                    if uid in seen or uid not in lookup:
                        raise RemoteProtocolError(
                            f"despawn of unknown uid {uid}", CloseCode.PROTOCOL_ERROR
                        )
                    seen.add(uid)
        changes: list[Change] = []
        if full:
            listed = spawned.keys()
            for uid in [u for u in objects if u not in listed]:
                changes.append(Despawned(objects.pop(uid)))
        for entry in spawn:
            uid = entry["uid"]
            obj = built.get(uid)
            if obj is None:  # a full snapshot re-lists what we hold: update in place
                existing = objects[uid]
                existing.belonging_membership = entry["owner"]
                record = observe is not None and observe(type(existing))
                for name, value in entry["fields"].items():
                    old = getattr(existing, name, None) if record else None
                    setattr(existing, name, value)
                    if record:
                        self.changes.append((existing, name, old, value))
                continue
            self._bind(obj)
            objects[uid] = obj
            changes.append(Spawned(obj))
        if apply_updates is not None:
            watched = self._before(update, objects, observe) if observe is not None else None
            apply_updates()
            if watched:
                self.changes += [
                    (obj, name, old, getattr(obj, name, None))
                    for obj, names, olds in watched
                    for name, old in zip(names, olds, strict=True)
                ]
        if apply_cols is not None:
            apply_cols()
        for uid in despawn:
            changes.append(Despawned(objects.pop(uid)))
        return changes

    def _reasons(self, changes: list[Change], left: set[int]) -> list[Change]:
        """§16.3/§16.4: despawns listed in ``sync.left`` left the view; a spawn of a uid that
        left is a re-entry."""
        out: list[Change] = []
        for change in changes:
            uid = change.obj.uid
            if isinstance(change, Despawned):
                if uid in left:
                    self._left.add(uid)
                    change = Despawned(change.obj, "left_view")
            elif uid in self._left:
                self._left.discard(uid)
                change = Spawned(change.obj, True)
            out.append(change)
        return out

    def _before(
        self, update: list[Any], objects: dict[int, Any], observe: Callable[[type], bool]
    ) -> list[tuple[Any, tuple[str, ...], list[Any]]]:
        """The old values of the fields this tick's (checked) updates change on the replicas
        of observed classes (a replica spawned in this tick fires no change, §13)."""
        watched = []
        for entry in update:
            compact = type(entry) is list
            uid = entry[0] if compact else entry["uid"]
            obj = objects.get(uid)
            if obj is None:
                continue
            if not compact and entry.get("snap") is True:
                self.snapped.add(uid)
            cls = type(obj)
            if not observe(cls):
                continue
            names = self._resolve(cls, tuple(entry[1::2])) if compact else tuple(entry["fields"])
            watched.append((obj, names, [getattr(obj, name, None) for name in names]))
        return watched

    # -- checks ------------------------------------------------------------------------------

    def _check_spawns(self, full: bool, spawn: list[dict[str, Any]]) -> dict[int, type]:
        spawned: dict[int, type] = {}
        objects = self.objects
        for entry in spawn:
            uid = entry["uid"]
            if uid in spawned or (not full and uid in objects):
                raise RemoteProtocolError(
                    f"spawn of uid {uid}, which exists", CloseCode.PROTOCOL_ERROR
                )
            info = self.types.by_name(entry["type"])
            if info is None:
                raise RemoteProtocolError(
                    f"spawn of unregistered type {entry['type'][:60]!r}", CloseCode.PROTOCOL_ERROR
                )
            spawned[uid] = info.cls
            self._check_names(info.cls, entry["fields"])
        return spawned

    def _check_names(self, cls: type, names: Any) -> bool:
        """§7.8 for each name; True when all of them may go straight into ``__dict__``."""
        fast = self._fast.get(cls)
        if fast is None:
            fast = self._fast[cls] = set()
        if fast.issuperset(names):
            return True
        direct = _direct(cls)
        for name in names:
            _check_field_name(cls, name)
            if direct and not _descriptor(cls, name):
                fast.add(name)
            else:
                direct = False
        return direct

    def _extend_tables(self, schemas: list[dict[str, Any]]) -> dict[type, list[str]]:
        """§12.3: the field tables with this tick's additions (not installed yet)."""
        tables = dict(self._tables)
        for schema in schemas:
            for type_name, spec in schema.items():
                info = self.types.by_name(type_name)
                if info is None:
                    raise RemoteProtocolError(
                        f"schema for unregistered type {type_name[:60]!r}", CloseCode.PROTOCOL_ERROR
                    )
                table = list(tables.get(info.cls, ()))
                if spec["at"] != len(table):
                    raise RemoteProtocolError(
                        f"schema for {type_name[:60]!r} starts at {spec['at']}, "
                        f"the table holds {len(table)} names (§12.3)",
                        CloseCode.PROTOCOL_ERROR,
                    )
                for name in spec["add"]:
                    _check_field_name(info.cls, name)
                    if name in table:
                        raise RemoteProtocolError(
                            f"schema repeats {name[:60]!r} (§12.3)", CloseCode.PROTOCOL_ERROR
                        )
                    table.append(name)
                if len(table) > m.MAX_SCHEMA_FIELDS:
                    raise RemoteProtocolError(
                        f"schema for {type_name[:60]!r} exceeds {m.MAX_SCHEMA_FIELDS} names",
                        CloseCode.PROTOCOL_ERROR,
                    )
                tables[info.cls] = table
        return tables

    def _check_updates(self, update: list[Any], lookup: dict[int, Any]) -> Callable[[], None]:
        """Check every update entry; return what applies them (§7.2, §12.4)."""
        kinds = set(map(type, update))
        if len(kinds) == 1:
            fast = self._fast_plain if dict in kinds else self._fast_compact
            applier = fast(update, lookup)
            if applier is not None:
                return applier
        return self._general(update, lookup)

    def _fast_plain(self, update: list[Any], lookup: dict[int, Any]) -> Callable[[], None] | None:
        if any(map(_has, update, repeat("owner"))):
            return None
        try:
            objs = list(map(lookup.__getitem__, map(_get_uid, update)))
        except KeyError:
            return None
        fields = list(map(_get_fields, update))
        fast = self._fast
        empty: set[str] = set()
        if not all(map(le, map(dict.keys, fields), map(fast.get, map(type, objs), repeat(empty)))):
            return None
        dicts = list(map(_dict_of, objs))

        def apply() -> None:
            deque(map(dict.update, dicts, fields), 0)

        return apply

    def _fast_compact(self, update: list[Any], lookup: dict[int, Any]) -> Callable[[], None] | None:
        if not self.compact:
            return None
        if len(set(map(len, update))) == 1:
            applier = self._fast_uniform(update, lookup)
            if applier is not None:
                return applier
        try:
            objs = list(map(lookup.__getitem__, map(_first, update)))
        except KeyError:
            return None
        shapes = self._shapes
        index_lists = list(map(tuple, map(getitem, update, repeat(_INDEXES))))
        values = list(map(getitem, update, repeat(_VALUES)))
        # ints only: 0.0 and True equal 0 and 1, and would find a cached shape
        if not _INTS.issuperset(map(type, chain.from_iterable(index_lists))):
            return None
        classes = list(map(type, objs))
        keys = list(zip(classes, index_lists, strict=True))
        names: list[Any] = list(map(shapes.get, keys))
        if None in names:
            for i, key in enumerate(keys):
                if names[i] is None:
                    resolved = self._shape(*key)
                    if resolved is None:
                        return None
                    names[i] = resolved
        dicts = list(map(_dict_of, objs))

        def apply() -> None:
            deque(map(dict.update, dicts, map(zip, names, values)), 0)

        return apply

    def _fast_uniform(
        self, update: list[list[Any]], lookup: dict[int, Any]
    ) -> Callable[[], None] | None:
        """The common compact tick: every entry has the same indexes and every object the
        same class. Checked and applied column by column (one C loop per field); None when
        the tick is not of that kind (the caller then checks entry by entry)."""
        columns = list(zip(*update, strict=True))  # uids, then indexes and values in turn
        if len(columns) < 3:
            return None
        try:
            objs = list(map(lookup.__getitem__, columns[0]))
        except KeyError:
            return None
        index_columns = columns[1::2]
        # ints only: 0.0 and True equal 0 and 1 (and would pass the count below)
        if set(map(type, chain.from_iterable(index_columns))) != _INTS:
            return None
        indexes = tuple(column[0] for column in index_columns)
        if any(
            column.count(first) != len(column)
            for column, first in zip(index_columns, indexes, strict=True)
        ):
            return None
        classes = set(map(type, objs))
        if len(classes) != 1:
            return None
        names = self._shape(classes.pop(), indexes)
        if names is None:
            return None
        values = columns[2::2]
        dicts = list(map(_dict_of, objs))

        def apply() -> None:
            for name, column in zip(names, values, strict=True):
                deque(map(setitem, dicts, repeat(name), column), 0)

        return apply

    def _fast_cols(self, cols: list[Any], lookup: dict[int, Any]) -> Callable[[], None] | None:
        """§20: column blocks of one class each, checked block by block and applied column
        by column (a C loop per column); None sends them the way of their rows."""
        work = []
        for block in cols:
            try:
                objs = list(map(lookup.__getitem__, block[1]))
            except KeyError:
                return None  # the rows' check names the uid (§7.6)
            classes = set(map(type, objs))
            if len(classes) != 1:
                return None
            names = self._shape(classes.pop(), tuple(block[0]))
            if names is None:
                return None
            work.append((names, block[2:], list(map(_dict_of, objs))))

        def apply() -> None:
            for names, columns, dicts in work:
                for name, column in zip(names, columns, strict=True):
                    deque(map(setitem, dicts, repeat(name), column), 0)

        return apply

    def _shape(self, cls: type, indexes: tuple[Any, ...]) -> tuple[str, ...] | None:
        """The names of a compact entry's ``indexes`` for ``cls`` (§12.4), remembered; None
        when a name must be written the slow way (``_check_names``); 1002 when an index is
        not in the table."""
        shapes = self._shapes
        key = (cls, indexes)
        names = shapes.get(key)
        if names is None:
            names = self._resolve(cls, indexes)
            if not self._check_names(cls, names):
                return None
            if len(shapes) >= _MAX_SHAPES:
                shapes.clear()
            shapes[key] = names
        return names

    def _resolve(self, cls: type, indexes: tuple[Any, ...]) -> tuple[str, ...]:
        """§12.4: the names of a compact entry's indexes, or 1002."""
        table = self._tables.get(cls, ())
        previous = -1
        for index in indexes:
            if type(index) is not int or not previous < index < len(table):
                raise RemoteProtocolError(
                    f"compact update entry: index {str(index)[:20]} is not an increasing "
                    f"index of {cls.__name__}'s field table of {len(table)} (§12.4)",
                    CloseCode.PROTOCOL_ERROR,
                )
            previous = index
        return tuple(table[i] for i in indexes)

    def _general(self, update: list[Any], lookup: dict[int, Any]) -> Callable[[], None]:
        """Entry by entry: owners, mixed forms, classes with their own ``__setattr__``."""
        work: list[tuple[Any, list[tuple[str, Any]], Any]] = []
        for entry in update:
            if type(entry) is list:
                if not self.compact:
                    raise RemoteProtocolError(
                        "compact update entry without the compact feature (§12)",
                        CloseCode.PROTOCOL_ERROR,
                    )
                uid, owner = entry[0], m.ABSENT
            else:
                uid, owner = entry["uid"], entry.get("owner", m.ABSENT)
            obj = lookup.get(uid)
            if obj is None:
                raise RemoteProtocolError(f"update of unknown uid {uid}", CloseCode.PROTOCOL_ERROR)
            cls = type(obj)
            if type(entry) is list:
                pairs = list(zip(self._resolve(cls, tuple(entry[1::2])), entry[2::2], strict=True))
            else:
                pairs = list(entry["fields"].items())
            self._check_names(cls, [name for name, _ in pairs])
            work.append((obj, pairs, owner))

        def apply() -> None:
            for obj, pairs, owner in work:
                if owner is not m.ABSENT:
                    obj.belonging_membership = owner
                for name, value in pairs:
                    setattr(obj, name, value)

        return apply

    def _build(self, entry: dict[str, Any]) -> Any:
        info = self.types.by_name(entry["type"])
        assert info is not None  # checked in _check_spawns
        uid = entry["uid"]
        try:
            obj = info.cls(
                *entry["args"], uid=uid, add_on_init=False, belonging_membership=entry["owner"]
            )
        except Exception as exc:
            logger.exception("building a %s replica from %r failed", entry["type"], entry["args"])
            raise RemoteProtocolError(
                f"cannot build {entry['type']} uid={uid} from its arguments",
                CloseCode.PROTOCOL_ERROR,
            ) from exc
        for name, value in entry["fields"].items():
            setattr(obj, name, value)
        obj.uid = uid
        obj.belonging_membership = entry["owner"]
        return obj


_INTS = frozenset({int})
_MAX_SHAPES = 4096  # distinct (class, index list) pairs remembered; a hostile server gains nothing
_INDEXES = slice(1, None, 2)
_VALUES = slice(2, None, 2)
_get_uid = itemgetter("uid")
_get_fields = itemgetter("fields")
_first = itemgetter(0)
_dict_of = attrgetter("__dict__")
_has = dict.__contains__


def _direct(cls: type) -> bool:
    """Whether assigning an attribute of ``cls`` is storing it in the instance ``__dict__``."""
    hook = getattr(cls, "__setattr__", None)
    # ReverbObject's hook, and the one it makes for each subclass (reverb.objects marks
    # both), only track changes on the server (a replica is never tracked); a class's own
    # hook, wrapped for tracking, is not marked and goes the general way.
    plain = hook is object.__setattr__ or getattr(hook, "__reverb_setattr__", False) is True
    return plain and getattr(cls, "__dictoffset__", 0) != 0


def _descriptor(cls: type, name: str) -> bool:
    """Whether the class defines ``name`` as a data descriptor (a property, a slot)."""
    attr = inspect.getattr_static(cls, name, None)
    return hasattr(type(attr), "__set__") or hasattr(type(attr), "__delete__")


def _check_field_name(cls: type, name: str) -> None:
    # A server must not be able to overwrite a replica's methods or internals by naming them.
    if (
        name.startswith("_")
        or name in META_ATTRIBUTES
        or not name.isidentifier()
        or callable(getattr(cls, name, None))
    ):
        raise RemoteProtocolError(
            f"field name {name[:60]!r} is not allowed", CloseCode.PROTOCOL_ERROR
        )
