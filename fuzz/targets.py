"""Fuzz targets for Reverb's sans-I/O core; each states the documented contract it checks.

A target takes one byte string. It returns normally when the input produced a documented
outcome, and raises (an AssertionError, or whatever escaped the library) when it did not:
that is a crash. Used by ``fuzz/run.py`` with atheris (coverage-guided) or without it (a
deterministic mutation loop over ``SEEDS``).
"""

from __future__ import annotations

import json
from typing import Any

from reverb import ReverbContext, ReverbObject, ReverbSide, RpcError, expose
from reverb.auth import HmacTokens
from reverb.errors import RemoteProtocolError
from reverb.proto import messages as m
from reverb.proto.framing import FrameDecoder, encode_frame
from reverb.proto.session import Closed, Opened, Received, Role, Session
from reverb.replication.types import contract, contract_mismatch

__all__ = ["SEEDS", "TARGETS"]

# §10.2: every code a session may close with.
CLOSE_CODES = {1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1011, 1013, 1015, 3000, 3001}
# §8.3: every code of rpc_error.
RPC_ERRORS = {
    "unknown_object", "not_exposed", "not_owner", "bad_arguments", "rejected",
    "handler_error", "bad_return", "overloaded", "rate_limited",
}  # fmt: skip
SMALL_FRAME = 4096


def chunks(data: bytes) -> list[bytes]:
    """Split ``data``: the first byte picks a chunk size (0: all at once)."""
    if not data:
        return []
    size, rest = data[0] % 17, data[1:]
    if size == 0:
        return [rest]
    return [rest[i : i + size] for i in range(0, len(rest), size)]


# -- framing (§2) -----------------------------------------------------------------------------


def _decoded(decoder: FrameDecoder, pieces: list[bytes]) -> tuple[list[bytes], int | None]:
    """Every frame before the first error, and that error's code (frames come first, §2.4)."""
    got: list[bytes] = []
    for piece in pieces:
        try:
            got += decoder.feed(piece)
        except RemoteProtocolError as exc:
            return got, exc.code
        if decoder.error is not None:
            return got, decoder.error.code
    return got, None


def framing(data: bytes) -> None:
    """FrameDecoder: frames, then possibly RemoteProtocolError 1007/1009; any split gives the
    same frames and the same error."""
    whole = FrameDecoder(max_frame_size=SMALL_FRAME)
    expected, failed = _decoded(whole, [data[1:]])
    assert failed in (None, 1007, 1009), failed
    split = FrameDecoder(max_frame_size=SMALL_FRAME)
    got, code = _decoded(split, chunks(data))
    assert (got, code) == (expected, failed), (code, failed)
    if failed is not None:
        return
    assert all(0 < len(body) <= SMALL_FRAME for body in got)
    assert b"".join(encode_frame(body) for body in got) == data[1 : len(data) - _tail(split)]


def _tail(decoder: FrameDecoder) -> int:
    # Bytes held for an unfinished frame: its buffered bytes, plus the header once consumed.
    held = len(decoder._buffer)
    return held + (4 if decoder._need is not None else 0)


# -- the codec (§3, §5) -------------------------------------------------------------------------


def messages(data: bytes) -> None:
    """decode: a Message, or RemoteProtocolError 1002/1007; a decoded message round-trips."""
    try:
        message = m.decode(data)
    except RemoteProtocolError as exc:
        assert exc.code in (1002, 1007), exc.code
        return
    assert isinstance(message, m.Message)
    assert m.decode(m.encode(message)) == message


# -- the session (§4, §6, §10) ------------------------------------------------------------------

TOKENS = HmacTokens(b"fuzzing secret, sixteen+ bytes")


class Probe(ReverbObject):
    def __init__(self, a=0, b="", uid=None, add_on_init=True, belonging_membership=None):
        self.a = a
        self.b = b
        super().__init__(
            a, b, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def set_a(self, value):
        EXECUTED.append("set_a")
        self.a = value
        return value

    @expose(anyone=True)
    def add(self, x, y=1, *rest):
        EXECUTED.append("add")
        return x + y  # may raise TypeError: a handler_error

    @expose(anyone=True)
    def refuse(self, why=""):
        EXECUTED.append("refuse")
        raise RpcError(str(why))

    @expose(anyone=True)
    def unencodable(self):
        EXECUTED.append("unencodable")
        return {1, 2}

    def hidden(self):
        EXECUTED.append("hidden")

    def _private(self):
        EXECUTED.append("_private")


EXPOSED = {"set_a", "add", "refuse", "unencodable"}
EXECUTED: list[str] = []
_TYPES = ReverbContext(ReverbSide.SERVER)
_TYPES.register(Probe)
CONTRACT = contract(_TYPES.types)


def _check_contract(theirs: dict[str, Any]) -> str | None:
    return contract_mismatch(CONTRACT, theirs)


def _session_checks(session: Session, events: list[Any]) -> None:
    closes = [e for e in events if isinstance(e, Closed)]
    assert len(closes) <= 1, events
    if closes:
        assert events[-1] is closes[0] and session.closed
        assert (
            closes[0].code in CLOSE_CODES or 4000 <= closes[0].code <= 4999 or (closes[0].by_peer)
        ), closes[0]
    opened = [e for e in events if isinstance(e, Opened)]
    assert len(opened) <= 1
    for event in events:
        assert isinstance(event, (Opened, Received, Closed)), event


def session(data: bytes) -> None:
    """Session.receive_data (server with auth and contract hooks, and client): events or one
    documented close, never an exception; same events whatever the split."""
    results = []
    for pieces in (chunks(data), [data[1:]] if data else []):
        server = Session(
            Role.SERVER,
            0.0,
            member=1,
            max_frame_size=65536,
            authenticate=TOKENS.authenticate,
            check_contract=_check_contract,
        )
        events: list[Any] = []
        for i, piece in enumerate(pieces):
            server.receive_data(piece, i * 0.001)
            events += server.events()
        server.check_timeouts(100.0)
        events += server.events()
        _session_checks(server, events)
        sent = server.data_to_send()
        for body in FrameDecoder(max_frame_size=2**32).feed(sent):
            m.decode(body)  # whatever the server sends is valid protocol
        results.append((events, sent))
    if len(results) == 2:
        # The same bytes give the same events and output, at once or split (§2.4).
        assert results[0] == results[1], results
    client = Session(Role.CLIENT, 0.0)
    client.data_to_send()
    events = []
    for piece in chunks(data):
        client.receive_data(piece, 0.0)
        events += client.events()
    client.receive_eof()
    events += client.events()
    _session_checks(client, events)


# -- RPC dispatch (§8) ---------------------------------------------------------------------------

_NAMES = [
    "set_a", "add", "refuse", "unencodable", "hidden", "_private", "__init__", "__class__",
    "destroy", "compute_server", "is_owner", "on_init_from_server", "nope",
]  # fmt: skip


def _world() -> ReverbContext:
    ctx = ReverbContext(ReverbSide.SERVER)
    ctx.register(Probe)
    with ctx.activate():
        Probe(1, "x", belonging_membership=1)
        Probe(2, "y", belonging_membership=2)
        gone = Probe(3, "z")
        Probe(4, [1, 2], belonging_membership=None)
    gone.destroy()
    return ctx


def _rpc_from(data: bytes) -> m.Rpc | None:
    """A decoded rpc message when ``data`` is one; else one built from its bytes."""
    try:
        message = m.decode(data)
    except RemoteProtocolError:
        message = None
    if isinstance(message, m.Rpc):
        return message
    if len(data) < 3:
        return None
    try:
        args = json.loads(data[3:].decode("utf-8", "replace") or "[]")
    except ValueError:
        args = [data[3:].decode("latin-1")]
    if not isinstance(args, list):
        args = [args]
    try:
        args = m.to_wire(args)
    except Exception:
        return None
    method = _NAMES[data[1] % len(_NAMES)] if data[1] < 200 else data[2:3].hex()
    return m.Rpc(id=data[0], uid=data[2] % 7, method=method, args=args)


def dispatch(data: bytes) -> None:
    """ServerWorld.call: exactly one reply with the call's id, an rpc_result or an rpc_error
    with a §8.3 code; only exposed methods ever run, and only when allowed."""
    rpc = _rpc_from(data)
    if rpc is None:
        return
    ctx = _world()
    member = (data[0] % 3) + 1 if data else 1
    EXECUTED.clear()
    reply = ctx.world.call(member, rpc)
    assert isinstance(reply, (m.RpcResult, m.RpcErrorReply)), reply
    assert reply.id == rpc.id
    m.decode(m.encode(reply))  # the reply is valid on the wire
    assert set(EXECUTED) <= EXPOSED, EXECUTED
    assert len(EXECUTED) <= 1
    if isinstance(reply, m.RpcErrorReply):
        assert reply.code in RPC_ERRORS, reply
        if reply.code in ("unknown_object", "not_exposed", "not_owner", "bad_arguments"):
            assert EXECUTED == [], (reply, EXECUTED)
        assert "Traceback" not in reply.message
    else:
        assert EXECUTED == [rpc.method]
    if EXECUTED == ["set_a"]:
        assert ctx.objects[rpc.uid].belonging_membership == member


TARGETS = {"framing": framing, "messages": messages, "session": session, "dispatch": dispatch}


def _frames(*objs: dict[str, Any]) -> bytes:
    return b"".join(encode_frame(json.dumps(o).encode()) for o in objs)


_TOKEN = TOKENS.mint("fuzz", ttl=10**10, now=0)  # expires in 2286
_HELLO = {"type": "hello", "version": 1, "auth": _TOKEN}
SEEDS: dict[str, list[bytes]] = {
    "framing": [
        b"\x00" + _frames({"type": "ping", "nonce": 1}),
        b"\x03" + _frames({"type": "hello", "version": 1}, {"type": "ping", "nonce": 2}),
        b"\x01\x00\x00\x10\x01",
        b"\x05\x00\x00\x00\x00",
    ],
    "messages": [
        json.dumps(o).encode()
        for o in (
            {"type": "hello", "version": 1, "max_frame": 65536, "auth": "x.y",
             "contract": CONTRACT},
            {"type": "rpc", "id": 1, "uid": 2, "method": "add", "args": [1, 2.5, "s", None]},
            {"type": "sync", "tick": 1, "full": True, "final": True, "spawn": [
                {"uid": 1, "type": "Probe", "owner": None, "args": [1], "fields": {"a": 1}}],
             "update": [{"uid": 1, "fields": {"a": 2}, "owner": 3}], "despawn": [1]},
            {"type": "welcome", "version": 1, "member": 1, "tick_rate": 30, "max_frame": 65536},
            {"type": "close", "code": 1000, "reason": "bye"},
            {"type": "rpc_error", "id": 1, "code": "not_owner", "message": "no"},
        )
    ]
    + [b'{"a":' + b"[" * 33 + b"1" + b"]" * 33 + b"}", b"\xef\xbb\xbf{}"],
    "session": [
        b"\x00" + _frames(_HELLO, {"type": "rpc", "id": 1, "uid": 1, "method": "m", "args": []}),
        b"\x02" + _frames({**_HELLO, "contract": CONTRACT}, {"type": "ping", "nonce": 1}),
        b"\x00" + _frames({"type": "hello", "version": 1, "contract": {"types": {}}}),
        b"\x07" + _frames({"type": "welcome", "version": 1, "member": 2, "tick_rate": 30,
                          "max_frame": 65536}, {"type": "sync", "tick": 1, "full": True,
                          "final": True, "spawn": [], "update": [], "despawn": []}),
        b"\x00" + _frames({"type": "hello", "version": 1, "auth": "garbage"}),
        # Frames before a bad one in the same read must still be processed (§2.4).
        b"\x01" + _frames(_HELLO, {"type": "ping", "nonce": 3}) + b"\x00\x00\x00\x00",
    ],
    "dispatch": [
        json.dumps({"type": "rpc", "id": i, "uid": uid, "method": name, "args": args}).encode()
        for i, (uid, name, args) in enumerate(
            [
                (1, "set_a", [5]), (2, "add", [1]), (2, "add", [1, 2, 3, 4]), (1, "add", ["a"]),
                (4, "refuse", ["no"]), (4, "unencodable", []), (1, "hidden", []),
                (1, "_private", []), (3, "add", [1]), (1, "__init__", []), (2, "set_a", []),
            ]
        )
    ]
    + [b"\x01\x00\x01[1, 2]", b"\x02\x01\x02[\"x\"]"],
}  # fmt: skip
