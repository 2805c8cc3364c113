"""A ``sync``'s entries encoded once and its frames assembled from the bytes (docs/protocol.md
§7.2, §7.5): ``SyncFrame`` (what the server's world builds per view and tick, shared by every
peer that receives it, split per frame limit without encoding again), ``Entries``, the entry
encoders, ``FrameTooLarge``; the column blocks of §20; and the equality of syncs, whatever
their form (``Sync``, ``SyncFrame``, ``decode.WireSync``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from reverb.errors import EncodeError
from reverb.proto.messages import ABSENT, Absent, SpawnEntry, Sync, UpdateEntry, WireLists
from reverb.proto.wirejson import dumpb

__all__ = [
    "MIN_BLOCK",
    "Entries",
    "FrameTooLarge",
    "SyncFrame",
    "block_rows",
    "column_blocks",
    "spawn_fragment",
    "update_entry",
]

# -- column blocks (§20) ----------------------------------------------------------------------


def block_rows(cols: list[list[Any]]) -> list[list[Any]]:
    """§20.3: the compact update entries (§12.4) that column blocks stand for, in order."""
    rows: list[list[Any]] = []
    for block in cols:
        indexes, uids, columns = block[0], block[1], block[2:]
        for k, uid in enumerate(uids):
            row = [uid]
            for index, column in zip(indexes, columns, strict=True):
                row.append(index)
                row.append(column[k])
            rows.append(row)
    return rows


MIN_BLOCK = 4  # §20: fewer rows of the same shape than this stay rows (a block costs bytes)


def column_blocks(uids: list[int], rows: list[Any]) -> tuple[list[Any], list[int], list[Any]]:
    """§20.2: compact update entries (§12.4; object-form entries stay as they are) as column
    blocks of entries with the same indexes, and the entries left as rows. Every uid appears
    once in ``uids`` (the world's one entry per object per tick), so moving rows into blocks,
    applied after the rows (§20.3), changes nothing."""
    n = len(rows)
    if n < MIN_BLOCK:
        return [], uids, rows
    if set(map(type, rows)) == {list} and len(set(map(len, rows))) == 1 and len(rows[0]) > 1:
        columns = list(zip(*rows, strict=True))
        index_columns = columns[1::2]
        if all(column.count(column[0]) == n for column in index_columns):  # the common tick
            block = [[c[0] for c in index_columns], list(columns[0])]
            block += map(list, columns[2::2])
            return [block], [], []
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, row in enumerate(rows):
        if type(row) is list and len(row) > 1:
            groups.setdefault(tuple(row[1::2]), []).append(i)
    blocks: list[Any] = []
    taken: set[int] = set()
    for key, members in groups.items():
        if len(members) >= MIN_BLOCK:
            columns = list(zip(*[rows[i] for i in members], strict=True))
            block = [list(key), list(columns[0])]
            block += map(list, columns[2::2])
            blocks.append(block)
            taken.update(members)
    if not blocks:
        return [], uids, rows
    rest = [i for i in range(n) if i not in taken]
    return blocks, [uids[i] for i in rest], [rows[i] for i in rest]


# -- sync equality: the same entries, whatever the form ----------------------------------------


def _spawn_entry(e: dict[str, Any]) -> SpawnEntry:
    return SpawnEntry(e["uid"], e["type"], e["owner"], e["args"], e["fields"])


def _update_entry(e: Any) -> UpdateEntry:
    if type(e) is list:
        raise ValueError("a compact update entry (§12.4) needs the field table: use wire()")
    return UpdateEntry(e["uid"], e["fields"], e.get("owner", ABSENT), e.get("snap", ABSENT))


def _set_head(
    sync: Sync, tick: int, full: bool, final: bool, room: str | None, time: Any, left: Any
) -> None:
    """The fields every kind of ``Sync`` sets first (through ``object.__setattr__``: they are
    frozen); None is absent. ``room`` (§17.4) goes right after "type", ``time`` (§13.3) is on
    every part, ``left`` (§16.3) a tuple."""
    set_ = object.__setattr__
    set_(sync, "tick", tick)
    set_(sync, "full", full)
    set_(sync, "final", final)
    set_(sync, "room", ABSENT if room is None else room)
    set_(sync, "time", ABSENT if time is None else time)
    set_(sync, "left", ABSENT if left is None else tuple(left))


def _key(sync: Sync) -> tuple[Any, ...]:
    """What two syncs must share to be equal: unknown members (§3.5) do not count."""
    spawn, update, despawn, schema = sync.wire()
    cols = getattr(sync, "cols", None)
    if cols:  # §20.3: a block means its rows, after the entries
        update = [*update, *block_rows(cols)]
    return (
        sync.tick,
        sync.full,
        sync.final,
        [_spawn_entry(e) for e in spawn],
        [e if type(e) is list else _update_entry(e) for e in update],
        despawn,
        schema,
        sync.time,
        sync.room,
    )


# -- sync fragments: each entry encoded once, frames assembled from the bytes (§7.2, §7.5) -----


class FrameTooLarge(EncodeError):
    """One entry of a sync needs more than a peer's frame limit, whatever the split (§7.5)."""

    def __init__(self, uid: int, size: int, limit: int) -> None:
        super().__init__(f"object uid={uid} does not fit the client's max_frame")
        self.uid = uid
        self.size = size
        self.limit = limit


def spawn_fragment(uid: int, type_name: str, owner: int | None, args: bytes, fields: Any) -> bytes:
    """A spawn entry (§7.2) as JSON bytes; ``args`` is already encoded, ``fields`` wire-safe."""
    return b'{"uid":%d,"type":%s,"owner":%s,"args":%s,"fields":%s}' % (
        uid,
        dumpb(type_name),
        b"null" if owner is None else b"%d" % owner,
        args,
        dumpb(fields),
    )


def update_entry(
    uid: int,
    fields: dict[str, Any],
    owner: int | Absent | None = ABSENT,
    snap: bool | Absent = ABSENT,
) -> Any:
    """An update entry (§7.2) as the JSON object to encode; ``fields`` must be wire-safe.
    ``snap`` (§13.5) is sent only when true."""
    entry = (
        {"uid": uid, "fields": fields}
        if owner is ABSENT
        else {"uid": uid, "fields": fields, "owner": owner}
    )
    if snap is True:
        entry["snap"] = True
    return entry


class Entries:
    """One list of a sync (spawn, update or despawn), encoded once however often it is sent.

    Built either from encoded fragments (one per entry) or from wire-safe JSON values, which
    are encoded together in one call when the whole list is wanted, and one by one only when a
    frame limit makes a split necessary. ``make`` instead of ``values``: a function giving the
    values, called only when the entries are first encoded (a tick's entries in a form that
    no peer of the tick may want); ``encode``: likewise, a function giving the fragments."""

    __slots__ = ("_encode", "_fragments", "_joined", "_make", "_values", "uids")

    def __init__(
        self,
        uids: list[int] | None = None,
        *,
        fragments: list[bytes] | None = None,
        values: list[Any] | None = None,
        make: Callable[[], list[Any]] | None = None,
        encode: Callable[[], list[bytes]] | None = None,
    ) -> None:
        self.uids = uids if uids is not None else []
        self._fragments = fragments
        self._values = values
        self._make = make
        self._encode = encode
        self._joined: bytes | None = None
        if fragments is None and values is None and make is None and encode is None:
            self._fragments = []

    def _encoded(self) -> list[bytes] | None:
        """The fragments, made now by ``encode`` if they were to be; None when only values."""
        fragments = self._fragments
        if fragments is None and self._encode is not None:
            fragments = self._fragments = self._encode()
            self._encode = None
        return fragments

    def _made(self) -> list[Any]:
        values = self._values
        if values is None:
            make = self._make
            values = self._values = make() if make is not None else []
            self._make = None
        return values

    def joined(self) -> bytes:
        """The entries, comma-separated: what goes between the list's brackets."""
        joined = self._joined
        if joined is None:
            fragments = self._encoded()
            if fragments is not None:
                joined = b",".join(fragments)
            else:
                joined = dumpb(self._made())[1:-1]
            self._joined = joined
        return joined

    def fragments(self) -> list[bytes]:
        """The entries one by one."""
        fragments = self._encoded()
        if fragments is None:
            fragments = self._fragments = [dumpb(v) for v in self._made()]
        return fragments

    def __len__(self) -> int:
        return len(self.uids)


_LISTS = (b',"spawn":[', b'],"update":[', b'],"despawn":[', b"]}")
# An empty list, shared by every frame that has nothing in one of its lists (a thousand views'
# syncs a tick: fewer objects for the garbage collector). Never appended to.
_NONE = Entries([], fragments=[])
_FINAL = {True: b"true", False: b"false"}


class SyncFrame(Sync):
    """A ``sync`` whose entries are already encoded JSON.

    The server's world builds one per view and tick; every peer that receives it shares the
    bytes, and ``parts(limit)`` splits them for a peer's frame limit without encoding again.
    It encodes to the same JSON as a ``Sync`` holding the same entries; reading ``spawn``,
    ``update`` or ``despawn`` decodes the fragments (for tests and tools, not the hot path)."""

    lists: tuple[Entries, Entries, Entries]
    schema_bytes: bytes | None
    cols_bytes: bytes | None
    _rows: SyncFrame | None
    _columns: Callable[[], tuple[bytes, Entries] | None] | None
    _decoded: tuple[tuple[SpawnEntry, ...], tuple[UpdateEntry, ...], tuple[int, ...]] | None

    def __init__(
        self,
        tick: int,
        full: bool,
        spawn: Entries | None = None,
        update: Entries | None = None,
        despawn: list[int] | None = None,
        final: bool = True,
        schema: bytes | None = None,
        time: float | None = None,
        left: list[int] | None = None,
        room: str | None = None,
    ) -> None:
        _set_head(self, tick, full, final, room, time, left)
        set_ = object.__setattr__
        set_(self, "schema", ABSENT)
        set_(self, "schema_bytes", schema)  # §12.3, encoded; sent in the first part only
        gone = Entries(despawn, fragments=[b"%d" % u for u in despawn]) if despawn else _NONE
        set_(self, "lists", (spawn or _NONE, update or _NONE, gone))
        set_(self, "_decoded", None)
        set_(self, "cols_bytes", None)  # §20.2: the column blocks, encoded (a columnar variant)
        set_(self, "_rows", None)  # on a columnar variant: the same tick in rows (for parts)
        set_(self, "_columns", None)  # what makes the columnar variant, offered by the world

    def _head(self, final: bool, schema: bytes | None, left: Any = ABSENT) -> bytes:
        head = b'{"type":"sync","tick":%d,"full":%s,"final":%s' % (
            self.tick,
            _FINAL[self.full],
            _FINAL[final],
        )
        if self.room is not ABSENT:  # §17.4
            head = b'{"type":"sync","room":' + dumpb(self.room) + head[14:]
        if self.time is not ABSENT:
            head += b',"time":' + dumpb(self.time)
        if left is not ABSENT and left:  # §16.3: absent means empty
            head += b',"left":' + dumpb(list(left))
        return head if schema is None else head + b',"schema":' + schema

    def _assemble(
        self,
        joined: tuple[bytes, bytes, bytes],
        final: bool,
        schema: bytes | None = None,
        left: Any = ABSENT,
    ) -> bytes:
        spawn, update, despawn = joined
        opening = _LISTS
        cols = self.cols_bytes
        return b"".join(
            (
                self._head(final, schema, left),
                opening[0],
                spawn,
                opening[1],
                update,
                opening[2],
                despawn,
                opening[3] if cols is None else b'],"cols":' + cols + b"}",
            )
        )

    def offer_columns(self, columns: Callable[[], tuple[bytes, Entries] | None]) -> None:
        """§20: ``columns()`` gives this sync's update entries as column blocks (encoded)
        and the entries left as rows, or None; called once, for the first "columns" peer."""
        object.__setattr__(self, "_columns", columns)

    @property
    def offers_columns(self) -> bool:
        return self._columns is not None

    def columnar(self) -> SyncFrame:
        """This sync for a "columns" peer (§20): its updates in column blocks where the
        world offered them, else itself. Not cached on the frame: the variant refers to this
        frame (its rows, for ``parts``), and a reference back would make every tick's frames
        a cycle that only the garbage collector frees (the hub asks once per encoding)."""
        columns = self._columns
        found = columns() if columns is not None else None
        if found is None:
            return self
        cols, rest = found
        spawn, _, gone = self.lists
        made = SyncFrame(self.tick, self.full, spawn, rest, None, self.final)
        set_ = object.__setattr__
        for name in ("room", "schema_bytes", "time", "left"):
            set_(made, name, getattr(self, name))
        set_(made, "lists", (spawn, rest, gone))
        set_(made, "cols_bytes", cols)
        set_(made, "_rows", self)
        return made

    def body(self) -> bytes:
        """The whole sync as one frame body."""
        spawn, update, despawn = self.lists
        return self._assemble(
            (spawn.joined(), update.joined(), despawn.joined()),
            self.final,
            self.schema_bytes,
            self.left,
        )

    def parts(self, limit: int) -> list[bytes]:
        """Frame bodies of at most ``limit`` bytes, all but the last ``final: false`` (§7.5)."""
        body = self.body()
        if len(body) <= limit:
            return [body]
        rows = self._rows
        if rows is not None:  # §20.4: a sync that must be split goes in rows
            return rows.parts(limit)
        # As many entries per part as fit, in order: spawns, then updates, then despawns.
        overhead = len(self._assemble((b"", b"", b""), False)) + 16
        left = self.left
        gone = set() if left is ABSENT else {b"%d" % u for u in left}  # §16.3
        if gone:
            overhead += 10  # ,"left":[]
        parts: list[tuple[list[bytes], list[bytes], list[bytes]]] = []
        current: tuple[list[bytes], list[bytes], list[bytes]] = ([], [], [])
        schema = self.schema_bytes
        used = overhead
        if schema is not None:  # it goes in the first part
            used += len(schema) + 10
            if used > limit:
                raise FrameTooLarge(0, used, limit)
        for kind, entries in enumerate(self.lists):
            for i, fragment in enumerate(entries.fragments()):
                cost = len(fragment) + 1
                if kind == 2 and fragment in gone:
                    cost += cost  # listed in left as well
                if overhead + cost > limit:
                    raise FrameTooLarge(entries.uids[i], cost, limit)
                if used + cost > limit and any(current):
                    parts.append(current)
                    current, used = ([], [], []), overhead
                current[kind].append(fragment)
                used += cost
        parts.append(current)
        last = len(parts) - 1
        return [
            self._assemble(
                (b",".join(part[0]), b",".join(part[1]), b",".join(part[2])),
                self.final and i == last,
                schema if i == 0 else None,
                # §16.3: each part's left lists only that part's despawns
                left if left is ABSENT else [int(f) for f in part[2] if f in gone],
            )
            for i, part in enumerate(parts)
        ]

    def _decode(
        self,
    ) -> tuple[tuple[SpawnEntry, ...], tuple[UpdateEntry, ...], tuple[int, ...]]:
        decoded = self._decoded
        if decoded is None:
            spawn, update, despawn = (
                json.loads(b"[" + entries.joined() + b"]") for entries in self.lists
            )
            decoded = (
                tuple(SpawnEntry(**entry) for entry in spawn),
                tuple(_update_entry(entry) for entry in update),
                tuple(despawn),
            )
            object.__setattr__(self, "_decoded", decoded)
        return decoded

    @property
    def spawn(self) -> tuple[SpawnEntry, ...]:
        return self._decode()[0]

    @property
    def update(self) -> tuple[UpdateEntry, ...]:
        return self._decode()[1]

    @property
    def despawn(self) -> tuple[int, ...]:
        return self._decode()[2]

    def as_sync(self) -> Sync:
        """The same sync as a plain ``Sync`` of entry dataclasses."""
        spawn, update, despawn = self._decode()
        return Sync(
            tick=self.tick,
            full=self.full,
            final=self.final,
            spawn=spawn,
            update=update,
            despawn=despawn,
            time=self.time,
            left=self.left,
            room=self.room,
        )

    def wire(self) -> WireLists:
        spawn, update, despawn = (
            json.loads(b"[" + entries.joined() + b"]") for entries in self.lists
        )
        if self.cols_bytes is not None:  # §20.3: the blocks' rows come after the entries
            update += block_rows(json.loads(self.cols_bytes))
        schema = self.schema_bytes
        return spawn, update, despawn, None if schema is None else json.loads(schema)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sync):
            return NotImplemented
        return _key(self) == _key(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SyncFrame({self.body()!r})"


def _frame_of(sync: Sync) -> SyncFrame:
    """A ``Sync`` as a ``SyncFrame`` (plain dicts, no reflection)."""
    if isinstance(sync, SyncFrame):
        return sync
    try:
        spawn_list, update_list, despawn, schema_value = sync.wire()
        spawn = Entries(
            [e["uid"] for e in spawn_list],
            fragments=[
                spawn_fragment(e["uid"], e["type"], e["owner"], dumpb(e["args"]), e["fields"])
                for e in spawn_list
            ],
        )
        update = Entries(
            [e[0] if type(e) is list else e["uid"] for e in update_list],
            values=[
                e
                if type(e) is list
                else update_entry(
                    e["uid"], e["fields"], e.get("owner", ABSENT), e.get("snap", ABSENT)
                )
                for e in update_list
            ],
        )
        schema = None if schema_value is None else dumpb(schema_value)
        time = None if isinstance(sync.time, Absent) else sync.time
        left = None if isinstance(sync.left, Absent) else list(sync.left)
        room = None if isinstance(sync.room, Absent) else sync.room
        frame = SyncFrame(
            sync.tick, sync.full, spawn, update, list(despawn), sync.final, schema, time, left, room
        )
        frame.body()  # encodes now, so that a bad value is reported here
    except (TypeError, ValueError) as exc:  # NaN or a non-JSON value slipped past to_wire
        raise EncodeError(f"sync: {exc}") from None
    return frame
