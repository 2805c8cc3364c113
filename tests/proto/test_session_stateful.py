"""Stateful and hook-configured properties (hypothesis).

(a) A server ``Session`` with the authenticate and contract hooks configured: any bytes yield
    events or one documented close (docs/protocol.md §10.2), never an exception, and the same
    events and output whether fed at once or one byte at a time. (tests/proto/
    test_session_properties.py covers sessions without hooks.)
(b) A state machine of connect / spawn / set field / despawn / RPC / disconnect / reconnect
    driving a server ``ReverbContext`` world and several in-memory clients, every sync going
    through ``encode_sync`` (split at the client's frame limit) and ``decode``: after each
    tick, every connected client's table equals the server's (§7).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from reverb import ReverbContext, ReverbObject, ReverbSide, RpcError, expose
from reverb.auth import Accept, HmacTokens, Reject
from reverb.proto import messages as m
from reverb.proto.framing import encode_frame
from reverb.proto.session import Closed, Opened, Received, Role, Session
from reverb.replication.types import contract, contract_mismatch
from reverb.replication.world import ClientWorld

FAST = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DOCUMENTED_CLOSES = {1002, 1003, 1007, 1008, 1009, 3000, 3001}


class Ship(ReverbObject):
    def __init__(self, x=0, uid=None, add_on_init=True, belonging_membership=None):
        self.x = x
        self.cargo: list[Any] = []
        super().__init__(
            x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def thrust(self, dx):
        self.x += dx
        return self.x

    @expose(anyone=True)
    def load(self, item):
        if item is None:
            raise RpcError("nothing to load")
        self.cargo = [*self.cargo, item]
        return len(self.cargo)


def registry() -> ReverbContext:
    ctx = ReverbContext(ReverbSide.SERVER)
    ctx.register(Ship)
    return ctx


TOKENS = HmacTokens(b"stateful test secret, 32 bytes!!")
CONTRACT = contract(registry().types)
GOOD_TOKEN = TOKENS.mint("ada", ttl=10**9, now=0)

ints = st.integers(min_value=-m.MAX_SAFE_INT, max_value=m.MAX_SAFE_INT)
json_values = st.recursive(
    st.none() | st.booleans() | ints | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def authenticate(credentials: Any, peer: str) -> Accept | Reject:
    if credentials == "raise":
        raise RuntimeError("a broken hook")
    return TOKENS.verify(credentials, now=1.0)


def server_session() -> Session:
    return Session(
        Role.SERVER,
        0.0,
        member=1,
        authenticate=authenticate,
        check_contract=lambda theirs: contract_mismatch(CONTRACT, theirs),
    )


hellos = st.fixed_dictionaries(
    {"type": st.just("hello"), "version": st.sampled_from([1, 1, 1, 2])},
    optional={
        "auth": st.one_of(st.just(GOOD_TOKEN), st.just("raise"), json_values),
        "contract": st.one_of(
            st.just(CONTRACT),
            st.just({"types": {}}),
            st.dictionaries(st.text(max_size=5), json_values),
        ),
        "max_frame": st.sampled_from([1000, 65536, 1 << 20]),
    },
)
after = st.lists(
    st.one_of(
        st.builds(
            lambda i, uid, name, args: {
                "type": "rpc", "id": i, "uid": uid, "method": name, "args": args
            },
            st.integers(0, 100), st.integers(0, 5), st.sampled_from(["thrust", "load", "_x"]),
            st.lists(json_values, max_size=2),
        ),
        st.builds(lambda n: {"type": "ping", "nonce": n}, st.integers(0, 9)),
        st.just({"type": "close", "code": 1000, "reason": "bye"}),
    ),
    max_size=4,
)  # fmt: skip


def feed(pieces: list[bytes]) -> tuple[list[Any], bytes]:
    session = server_session()
    events: list[Any] = []
    for piece in pieces:
        session.receive_data(piece, 0.5)
        events += session.events()
    return events, session.data_to_send()


def check_events(events: list[Any]) -> None:
    closes = [e for e in events if isinstance(e, Closed)]
    assert len(closes) <= 1, events
    if closes:
        assert events[-1] is closes[0]
        assert closes[0].code in DOCUMENTED_CLOSES or closes[0].by_peer, closes[0]
    assert all(isinstance(e, (Opened, Received, Closed)) for e in events)


@FAST
@given(hellos, after, st.binary(max_size=40))
# Frames that precede a bad frame in the same read must still be processed (§2.4).
@example({"type": "hello", "version": 1}, [], b"\x00\x00\x00\x00")
@example({"type": "hello", "version": 1, "auth": GOOD_TOKEN}, [], b"\xff\xff\xff\xff")
def test_with_hooks_a_stream_yields_the_same_events_at_once_or_byte_by_byte(
    hello: dict[str, Any], messages: list[dict[str, Any]], tail: bytes
) -> None:
    stream = b"".join(encode_frame(json.dumps(o).encode()) for o in [hello, *messages]) + tail
    whole = feed([stream])
    check_events(whole[0])
    assert feed([bytes([b]) for b in stream]) == whole
    opened = [e for e in whole[0] if isinstance(e, Opened)]
    if opened:  # only a genuine token, a matching contract (or none) and version 1 get in
        assert opened[0].identity == "ada"
        assert hello["version"] == 1 and hello.get("auth") == GOOD_TOKEN
        assert hello.get("contract", CONTRACT) == CONTRACT


@FAST
@given(st.binary(max_size=300))
def test_with_hooks_any_bytes_yield_events_or_a_documented_close(data: bytes) -> None:
    events, _ = feed([data])
    check_events(events)
    assert feed([bytes([b]) for b in data]) == (events, feed([data])[1])


# -- (b) replication as a state machine ------------------------------------------------------


def server_table(ctx: ReverbContext) -> dict[int, Any]:
    return {
        uid: (type(obj).__name__, obj.belonging_membership, obj.x, obj.cargo)
        for uid, obj in ctx.world.objects.items()
    }


def replica_table(world: ClientWorld) -> dict[int, Any]:
    return {
        uid: (type(obj).__name__, obj.belonging_membership, obj.x, obj.cargo)
        for uid, obj in world.objects.items()
    }


class Replication(RuleBasedStateMachine):
    members = Bundle("members")
    uids = Bundle("uids")

    @initialize()
    def start(self) -> None:
        self.ctx = registry()
        self.clients: dict[int, tuple[ClientWorld, int]] = {}  # member -> (replicas, max_frame)
        self.next_member = 1
        self.now = 0.0
        self.seen_uids: set[int] = set()

    def _join(self, world: ClientWorld | None = None) -> int:
        member = self.next_member
        self.next_member += 1
        world = world or ClientWorld(self.ctx.types, bind=lambda obj: None)
        limit = 65536 if member % 2 else 1 << 20  # some clients get syncs split in parts
        self.clients[member] = (world, limit)
        self.ctx.world.peer_joined(member)
        return member

    @rule(target=members)
    def connect(self) -> int:
        return self._join()

    @rule(member=consumes(members))
    def disconnect(self, member: int) -> None:
        if member in self.clients:
            self.ctx.world.peer_left(member)
            del self.clients[member]

    @rule(member=consumes(members), target=members)
    def reconnect(self, member: int) -> Any:
        """The same program connects again: a new membership id, a table rebuilt from a new
        full snapshot."""
        if member not in self.clients:
            return multiple()
        world, _ = self.clients.pop(member)
        self.ctx.world.peer_left(member)
        world.reset()
        return self._join(world)

    @rule(target=uids, x=st.integers(-1000, 1000), owner=st.one_of(st.none(), members))
    def spawn(self, x: int, owner: int | None) -> int:
        with self.ctx.activate():
            ship = Ship(x, belonging_membership=owner)
        assert ship.uid is not None and ship.uid not in self.seen_uids  # never reused (§7.1)
        self.seen_uids.add(ship.uid)
        return ship.uid

    @rule(uid=uids, x=st.integers(-1000, 1000), size=st.sampled_from([0, 0, 30000]))
    def set_field(self, uid: int, x: int, size: int) -> None:
        ship = self.ctx.world.objects.get(uid)
        if ship is not None:
            ship.x = x
            ship.cargo = ["c" * size] if size else ship.cargo

    @rule(uid=uids, owner=st.one_of(st.none(), members))
    def give(self, uid: int, owner: int | None) -> None:
        ship = self.ctx.world.objects.get(uid)
        if ship is not None:
            ship.belonging_membership = owner

    @rule(uid=consumes(uids))
    def despawn(self, uid: int) -> None:
        if uid in self.ctx.world.objects:
            self.ctx.remove(uid)

    @rule(
        member=members,
        uid=st.one_of(uids, st.integers(0, 50)),
        method=st.sampled_from(["thrust", "load", "destroy", "_private", "__init__"]),
        args=st.lists(st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=3)), max_size=2),
        forged=st.booleans(),
    )
    def rpc(self, member: int, uid: int, method: str, args: list[Any], forged: bool) -> None:
        if member not in self.clients:
            return
        wire = {"type": "rpc", "id": 7, "uid": uid, "method": method, "args": args}
        if forged:
            wire["member"] = wire["owner"] = (member % 3) + 1  # claims are ignored (§3.5)
        call = m.decode(json.dumps(wire).encode())
        assert isinstance(call, m.Rpc)
        obj = self.ctx.world.objects.get(uid)
        before = server_table(self.ctx)
        reply = m.decode(m.encode(self.ctx.world.call(member, call)))
        assert getattr(reply, "id", None) == 7
        if obj is None:
            assert isinstance(reply, m.RpcErrorReply) and reply.code == "unknown_object"
        elif method not in ("thrust", "load"):
            assert isinstance(reply, m.RpcErrorReply) and reply.code == "not_exposed"
        elif method == "thrust" and obj.belonging_membership != member:
            assert isinstance(reply, m.RpcErrorReply) and reply.code == "not_owner"
        if isinstance(reply, m.RpcErrorReply) and reply.code != "handler_error":
            assert server_table(self.ctx) == before  # a refused call is never run (§8.2)

    @rule()
    def tick(self) -> None:
        self.now += 1 / 30
        for members, message in self.ctx.world.tick(self.now):
            assert isinstance(message, m.Sync)
            for member in members:
                world, limit = self.clients[member]
                parts = m.encode_sync(message, limit)
                assert all(len(part) <= limit for part in parts)
                for part in parts:
                    decoded = m.decode(part)
                    assert isinstance(decoded, m.Sync)
                    world.apply(decoded)
        for member, (world, _) in self.clients.items():
            if member in self.ctx.world.peers:
                assert replica_table(world) == server_table(self.ctx), member

    @precondition(lambda self: hasattr(self, "ctx"))
    @invariant()
    def peers_are_the_connected_clients(self) -> None:
        assert self.ctx.world.peers == frozenset(self.clients)


Replication.TestCase.settings = FAST
TestReplication = Replication.TestCase
