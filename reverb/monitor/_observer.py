"""What the monitor records while the server runs, through the server's hook points.

The server calls an ``Observer`` only when one is installed (``ReverbContext.observer`` and
``ServerHub.observer``), on the thread that already owns the state: the game thread for ticks
and calls, the thread holding the server's lock for frames sent. Everything here is bounded:
a ring of frames per client (count and bytes, and bytes over all clients), a ring of calls, and
histograms with fixed buckets. Nothing is decoded or copied until a page or a scrape asks.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from reverb.proto import messages as m
from reverb.stats import ConnectionStats, connection_stats

__all__ = [
    "RPC_BUCKETS",
    "TICK_BUCKETS",
    "Frame",
    "Histogram",
    "Observer",
    "RpcRecord",
    "WorldSnapshot",
    "describe_object",
]

# Seconds. A 30 Hz tick has 33 ms: the buckets resolve the range where a tick is healthy and
# the range where it overruns.
TICK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.033, 0.05, 0.1, 0.25)
RPC_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25)
# Enough frames to see the last few seconds of a 30 Hz client, and few enough bytes that an
# idle inspector never costs real memory.
FRAMES_PER_CLIENT = 256
BYTES_PER_CLIENT = 1 << 20
BYTES_TOTAL = 16 << 20
RPC_LOG = 1000
DEPARTED_KEPT = 32  # rings of disconnected clients kept for a post-mortem
SNAPSHOT_INTERVAL = 0.2  # s: at most this often, and only while someone is watching
WATCH_LINGER = 3.0  # s a page request keeps snapshots coming after it was served
MAX_SNAPSHOT_OBJECTS = 5000
MAX_ROOM_WATCHES = 16  # rooms (§17) whose worlds are snapshotted at once: pages open on them
MAX_VALUE_CHARS = 200  # a field shown on a page is cut to this many characters
INVALID_METHOD = "(invalid)"  # label for calls naming no exposed method: bounds cardinality


class Histogram:
    """Cumulative counts over fixed buckets, plus sum and count (Prometheus' histogram)."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break

    def cumulative(self) -> list[tuple[float, int]]:
        out, running = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass(slots=True)
class Frame:
    """One application frame sent to one client (its body is shared, never copied; an
    evicted frame lets go of it at once, whatever still lists the frame)."""

    seq: int
    member: int
    at: float  # wall-clock time
    kind: str
    tick: int | None
    body: bytes
    evicted: bool = False
    size: int = 0  # on the wire: the body and its 4-byte length header (§2)

    def __post_init__(self) -> None:
        self.size = len(self.body) + 4

    def describe(self, limit: int = 65536) -> dict[str, Any]:
        body = self.body
        if body[:1] == b"\x00":  # compressed for a "deflate" client (§15): show the message
            try:
                body = zlib.decompressobj().decompress(body[1:], limit + 1)
            except zlib.error:
                body = b"(compressed frame)"
        text = body[:limit].decode("utf-8", "replace")
        decoded: Any = None
        if len(body) <= limit:
            try:
                decoded = json.loads(body)  # data, never code
            except ValueError:
                decoded = None
        summary = ""
        if isinstance(decoded, dict) and self.kind == "sync":
            summary = "full " if decoded.get("full") else ""
            summary += " ".join(
                f"{key} {len(decoded.get(key) or [])}" for key in ("spawn", "update", "despawn")
            )
        elif isinstance(decoded, dict) and "id" in decoded:
            summary = f"id {decoded['id']}"
            if "code" in decoded:
                summary += f" {decoded['code']}"
        return {
            "seq": self.seq,
            "member": self.member,
            "time": self.at,
            "kind": self.kind,
            "tick": self.tick,
            "size": self.size,
            "summary": summary,
            "body": decoded if decoded is not None else text,
            "truncated": len(body) > limit,
        }


@dataclass
class RpcRecord:
    seq: int
    at: float
    member: int
    uid: int
    type: str
    method: str
    code: str
    seconds: float
    args: str
    message: str
    room: str | None = None  # the room it ran in (§17; None: the server's own world)

    def describe(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class WorldSnapshot:
    """The world as the game thread last synced it (taken right after a tick)."""

    tick: int
    at: float  # monotonic time it was taken
    wall: float
    # (uid, type, owner, wire fields, withheld): shared with the engine, never mutated
    objects: list[tuple[int, str, int | None, dict[str, Any], bool]] = field(default_factory=list)
    peers: frozenset[int] = frozenset()
    held: dict[int, frozenset[int]] = field(default_factory=dict)  # member -> uids it holds
    truncated: bool = False


@dataclass
class _Client:
    frames: deque[Frame] = field(default_factory=deque)
    bytes_held: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    first_seen: float = field(default_factory=time.time)


class Observer:
    """Installed by ``Monitor``; called by the server at its hook points.

    Hook points (each one line in the server, ``if ... observer is not None``):
    ``sent`` (``ServerHub.send``, under the server's lock), ``left`` (``ServerHub.on_event``,
    a client's connection closed: I/O thread or event loop), ``call``
    (``ReverbContext.answer`` and ``RoomService.answer``, game thread) and ``tick``
    (``ReverbContext.server_step``, game thread).
    """

    def __init__(
        self,
        *,
        frames_per_client: int = FRAMES_PER_CLIENT,
        bytes_per_client: int = BYTES_PER_CLIENT,
        bytes_total: int = BYTES_TOTAL,
        rpc_log: int = RPC_LOG,
    ) -> None:
        self.frames_per_client = frames_per_client
        self.bytes_per_client = bytes_per_client
        self.bytes_total = bytes_total
        self._lock = threading.Lock()  # guards every field below; held only briefly
        self._clients: dict[int, _Client] = {}
        self._order: deque[Frame] = deque()  # every held frame, oldest first (global cap)
        self._bytes_held = 0
        self._seq = 0
        self.frames_sent = 0
        self.bytes_sent = 0
        self.ticks = 0
        self.tick_seconds = Histogram(TICK_BUCKETS)
        self.last_tick_seconds = 0.0
        self.rpc_counts: Counter[tuple[str, str]] = Counter()
        self.rpc_seconds: dict[tuple[str, str], Histogram] = {}
        self.rpcs: deque[RpcRecord] = deque(maxlen=rpc_log)
        self._rpc_seq = 0
        self.snapshot: WorldSnapshot | None = None
        self._fresh = threading.Condition(self._lock)
        self._watchers = 0
        self._wanted_until = 0.0
        self._members: frozenset[int] = frozenset()
        # rooms other than the default (§17): room id -> until when a page wants its world
        # (monotonic), and its last snapshot (None: no such room when the game last looked)
        self._room_wanted: dict[str, float] = {}
        self.room_snapshots: dict[str, WorldSnapshot | None] = {}
        # the final counters and incidents of the last DEPARTED_KEPT clients to leave
        self._departed: OrderedDict[int, ConnectionStats] = OrderedDict()

    # -- hook points -------------------------------------------------------------------------

    def left(self, session: Any) -> None:
        """A client's connection closed (``ServerHub.on_event``): keep its last figures and
        incidents (the close among them) for its page, a post-mortem."""
        stats = connection_stats(session)
        with self._lock:
            self._departed[session.member] = stats
            while len(self._departed) > DEPARTED_KEPT:
                self._departed.popitem(last=False)

    def departed(self, member: int) -> ConnectionStats | None:
        with self._lock:
            return self._departed.get(member)

    def sent(self, member: int, message: m.Message, bodies: list[bytes], now: float) -> None:
        """``ServerHub.send`` queued ``bodies`` (the frames of ``message``) for ``member``."""
        tick = message.tick if isinstance(message, m.Sync) else None
        wall = time.time()
        with self._lock:
            client = self._clients.get(member)
            if client is None:
                client = self._clients[member] = _Client()
            for body in bodies:
                self._seq += 1
                frame = Frame(self._seq, member, wall, message.TYPE, tick, body)
                size = frame.size
                client.frames_sent += 1
                client.bytes_sent += size
                client.by_kind[message.TYPE] += 1
                self.frames_sent += 1
                self.bytes_sent += size
                client.frames.append(frame)
                client.bytes_held += size
                self._order.append(frame)
                self._bytes_held += size
                while client.frames and (
                    len(client.frames) > self.frames_per_client
                    or client.bytes_held > self.bytes_per_client
                ):
                    self._evict(client.frames.popleft(), client)
                while self._order and self._bytes_held > self.bytes_total:
                    old = self._order.popleft()
                    if not old.evicted:
                        owner = self._clients[old.member]
                        owner.frames.popleft()  # the globally oldest is its owner's oldest
                        self._evict(old, owner)
            if len(self._order) > 4 * self.frames_per_client * max(1, len(self._clients)):
                self._order = deque(f for f in self._order if not f.evicted)

    def _evict(self, frame: Frame, client: _Client) -> None:
        frame.evicted = True
        frame.body = b""  # the global order may list it a while longer: not its bytes
        client.bytes_held -= frame.size
        self._bytes_held -= frame.size

    def call(self, world: Any, member: int, rpc: m.Rpc, room: str | None = None) -> m.Message:
        """Run ``world.call`` for ``ReverbContext.answer`` (or ``RoomService.answer``: a call
        run in ``room``, §17.4), timing it and logging the call."""
        started = time.perf_counter()
        reply: m.Message = world.call(member, rpc)
        seconds = time.perf_counter() - started
        obj = world.objects.get(rpc.uid)
        type_name = type(obj).__name__ if obj is not None else "?"
        method = INVALID_METHOD
        if obj is not None:
            try:
                info = world.types.of(obj)
            except Exception:  # not registered: the call failed anyway
                info = None
            if info is not None:
                type_name = info.name
                if rpc.method in info.exposed:
                    method = f"{info.name}.{rpc.method}"
        if isinstance(reply, m.RpcErrorReply):
            code, message = reply.code, reply.message
        else:
            code, message = "ok", ""
        key = (method, code)
        with self._lock:
            self.rpc_counts[key] += 1
            hist = self.rpc_seconds.get(key)
            if hist is None:
                hist = self.rpc_seconds[key] = Histogram(RPC_BUCKETS)
            hist.observe(seconds)
            self._rpc_seq += 1
            self.rpcs.append(
                RpcRecord(
                    seq=self._rpc_seq,
                    at=time.time(),
                    member=member,
                    uid=rpc.uid,
                    type=type_name,
                    method=rpc.method[:60],
                    code=code,
                    seconds=seconds,
                    args=_short(rpc.args),
                    message=message[:MAX_VALUE_CHARS],
                    room=room,
                )
            )
        return reply

    def tick(self, ctx: Any, now: float) -> None:
        """Run ``ctx.tick(now)`` for ``ReverbContext.server_step``, timing it; while someone
        watches, take a snapshot of the world as it was just synced (on the game thread)."""
        started = time.perf_counter()
        ctx.tick(now)
        seconds = time.perf_counter() - started
        with self._lock:
            self.ticks += 1
            self.last_tick_seconds = seconds
            self.tick_seconds.observe(seconds)
            wanted = self._watchers > 0 or now < self._wanted_until
            last = self.snapshot
            due = last is None or now - last.at >= SNAPSHOT_INTERVAL
            rooms_due = self._rooms_due(now) if self._room_wanted else []
        if wanted and due:
            snap = take_snapshot(ctx, now)
            with self._lock:
                self.snapshot = snap
                self._members = snap.peers
                self._prune()
                self._fresh.notify_all()
        if rooms_due:
            self._snapshot_rooms(ctx, rooms_due, now)

    def _rooms_due(self, now: float) -> list[str]:
        """Under the lock: the watched rooms whose snapshot is due; forget the unwatched."""
        for rid in [r for r, until in self._room_wanted.items() if until <= now]:
            del self._room_wanted[rid]
            self.room_snapshots.pop(rid, None)
        due = []
        for rid in self._room_wanted:
            last = self.room_snapshots.get(rid)
            if last is None or now - last.at >= SNAPSHOT_INTERVAL:
                due.append(rid)
        return due

    def _snapshot_rooms(self, ctx: Any, due: list[str], now: float) -> None:
        """Game thread, right after the server's tick: the watched rooms' worlds (§17), each
        as it stands between two of its own ticks (rooms tick on this thread too)."""
        service = getattr(ctx, "rooms", None)
        rooms = service.matchmaker.rooms if service is not None else {}
        taken: dict[str, WorldSnapshot | None] = {}
        for rid in due:
            room = rooms.get(rid)
            if room is None or room.context is ctx:  # gone, or the default room
                taken[rid] = None
            else:
                taken[rid] = take_snapshot(room.context, now)
        with self._lock:
            for rid, snap in taken.items():
                if rid in self._room_wanted:
                    self.room_snapshots[rid] = snap
            self._fresh.notify_all()

    # -- readers (HTTP threads) --------------------------------------------------------------

    def watch(self, limit: int) -> bool:
        """An SSE stream starts, unless ``limit`` are open already: snapshots are taken
        while any is open. ``unwatch`` when it ends."""
        with self._lock:
            if self._watchers >= limit:
                return False
            self._watchers += 1
            return True

    def unwatch(self) -> None:
        with self._lock:
            self._watchers -= 1

    @property
    def watchers(self) -> int:
        return self._watchers

    def fresh_snapshot(self, timeout: float) -> WorldSnapshot | None:
        """A snapshot at most ``SNAPSHOT_INTERVAL`` old if the game ticks within ``timeout``;
        else the last one (None if there never was one)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._wanted_until = max(self._wanted_until, time.monotonic() + WATCH_LINGER)
            while True:
                snap = self.snapshot
                now = time.monotonic()
                if snap is not None and now - snap.at <= 2 * SNAPSHOT_INTERVAL:
                    return snap
                if now >= deadline:
                    return snap
                self._fresh.wait(deadline - now)

    def fresh_room_snapshot(
        self, room_id: str, timeout: float
    ) -> tuple[bool, WorldSnapshot | None]:
        """A room's (§17) world as the game thread last snapshotted it, at most
        ``SNAPSHOT_INTERVAL`` old if the game ticks within ``timeout``: (watched, snapshot).
        Asking keeps it snapshotted for ``WATCH_LINGER``; at most ``MAX_ROOM_WATCHES`` rooms
        at once (watched False: too many). Snapshot None: no such room, or none yet."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if room_id not in self._room_wanted and len(self._room_wanted) >= MAX_ROOM_WATCHES:
                return False, None
            while True:
                now = time.monotonic()
                self._room_wanted[room_id] = max(
                    self._room_wanted.get(room_id, 0.0), now + WATCH_LINGER
                )
                taken = room_id in self.room_snapshots
                snap = self.room_snapshots.get(room_id)
                if taken and (snap is None or now - snap.at <= 2 * SNAPSHOT_INTERVAL):
                    return True, snap
                if now >= deadline:
                    return True, snap
                self._fresh.wait(deadline - now)

    def frames(self, member: int) -> list[Frame]:
        with self._lock:
            client = self._clients.get(member)
            return list(client.frames) if client is not None else []

    def client_counters(self) -> dict[int, dict[str, Any]]:
        with self._lock:
            return {
                member: {
                    "frames_sent": c.frames_sent,
                    "sync_bytes_sent": c.bytes_sent,
                    "frames_held": len(c.frames),
                    "bytes_held": c.bytes_held,
                    "by_kind": dict(c.by_kind),
                }
                for member, c in self._clients.items()
            }

    def rpc_log(self, member: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            records = list(self.rpcs)
        return [r.describe() for r in records if member is None or r.member == member]

    def held_bytes(self) -> int:
        with self._lock:
            return self._bytes_held

    def forget_departed(self, connected: frozenset[int]) -> None:
        with self._lock:
            self._members = connected
            self._prune()

    def _prune(self) -> None:
        departed = [k for k in self._clients if k not in self._members]
        for member in departed[:-DEPARTED_KEPT] if len(departed) > DEPARTED_KEPT else []:
            client = self._clients.pop(member)
            for frame in client.frames:
                self._evict(frame, client)


def take_snapshot(ctx: Any, now: float) -> WorldSnapshot:
    """The world as just synced (game thread only, right after a tick).

    Fast path: the replication engine's records of what its peers hold (per object: the wire
    fields and owner every peer holding it was last sent, and whether it is withheld; per
    view: the uids its peers hold), copied one level deep (the engine updates them in place
    at the next tick): exact, and O(objects) without encoding anything. Without them (another
    engine), the objects' fields are converted to wire form here and every synced peer is
    taken to hold every encodable object.
    """
    world = ctx.world
    snap = WorldSnapshot(tick=world.tick_count, at=now, wall=time.time(), peers=world.peers)
    objects = dict(world.objects)
    records = getattr(world, "_records", None)
    views = getattr(world, "_views", None)
    entries: list[tuple[int, str, int | None, dict[str, Any], bool]] = []
    if isinstance(records, dict) and isinstance(views, list):
        for uid, record in list(records.items()):
            if record.fields is None:
                continue  # never synced: no peer holds it
            withheld = record.error is not None
            entries.append((uid, record.info.name, record.owner, dict(record.fields), withheld))
        snap.held = {member: frozenset(v.held) for v in views for member in v.members}
    else:
        for uid, obj in objects.items():
            fields = _fields(ctx, obj)
            if fields is not None:
                entries.append((uid, _type_name(ctx, obj), obj.belonging_membership, fields, False))
        everything = frozenset(e[0] for e in entries)
        snap.held = {member: everything for member in snap.peers}
    if len(entries) > MAX_SNAPSHOT_OBJECTS:
        entries = entries[:MAX_SNAPSHOT_OBJECTS]
        snap.truncated = True
    snap.objects = entries
    return snap


def _type_name(ctx: Any, obj: Any) -> str:
    try:
        return str(ctx.types.of(obj).name)
    except Exception:  # pragma: no cover - the world only holds registered types
        return type(obj).__name__


def _fields(ctx: Any, obj: Any) -> dict[str, Any] | None:
    try:
        info = ctx.types.of(obj)
        return {n: m.to_wire(getattr(obj, n), n, depth=5) for n in info.field_names(obj)}
    except Exception:  # unencodable: withheld from clients, so not in any view
        return None


def describe_object(entry: tuple[int, str, int | None, dict[str, Any], bool]) -> dict[str, Any]:
    """One snapshot entry for a page (values cut to MAX_VALUE_CHARS): HTTP threads."""
    uid, type_name, owner, fields, withheld = entry
    return {
        "uid": uid,
        "type": type_name,
        "owner": owner,
        "fields": {k: _shown(v) for k, v in fields.items()},
        "withheld": withheld,
    }


def _shown(value: Any) -> Any:
    """A wire value cut to something a page can show (long strings and lists shortened)."""
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS] + "…"
    if isinstance(value, (list, dict)):
        text = json.dumps(value)
        return value if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"
    return value


def _short(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(type(value).__name__)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"
