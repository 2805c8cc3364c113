"""Group 15: rooms (§17): negotiation, the default room, joining, refusals, switching,
room-scoped sync and RPC, the lobby, malformed room messages.

The app's room types (conformance/README.md): ``"arena"`` (2 seats, ``join_or_create``
matches on the option ``mode``, one ``Token`` per client, owned by it, despawned when it
leaves), ``"sealed"`` (an arena locked at creation) and ``"vip"`` (an arena admitting only
options ``{"key": "sesame"}``, refusing others with reason ``"the key is wrong"``). Cases run
in parallel on one server, so each uses its own ``mode``. A server that does not grant
``"rooms"`` gets non-strict verdicts for the cases that need it.
"""

from __future__ import annotations

import json
from typing import Any

from conformance.cases.common import bad_payload, header
from conformance.context import Ctx
from conformance.driver import CaseFailure, Conn, Msg, ServerViolation
from conformance.model import NonStrict, Outcome, case, non_strict

G = 15
ROOMS = "rooms"
ANSWERS = frozenset({"room_joined", "room_refused", "room_left", "room_list_result"})
LISTING_KEYS = {"room", "name", "clients", "max_clients", "locked", "metadata"}
REFUSALS = frozenset(
    {
        "unknown_room_type",
        "no_room",
        "unknown_room",
        "full",
        "locked",
        "already_in_room",
        "not_in_room",
        "rejected",
        "reservation_expired",
        "create_failed",
    }
)
_REQS: dict[int, int] = {}


def _rooms(ctx: Ctx, *more: str) -> Conn:
    """A connection granted "rooms" (non-strict when the server does not implement it)."""
    conn = ctx.connect()
    conn.handshake(features=[ROOMS, *more])
    if not conn.rooms:
        raise NonStrict("the server does not implement the rooms feature (§17.2)")
    return conn


def _guard(run: Any) -> Outcome | str:
    try:
        return str(run())
    except NonStrict as exc:
        return non_strict(str(exc))


def _send(conn: Conn, kind: str, **fields: Any) -> int:
    req = _REQS.get(id(conn), 100)
    _REQS[id(conn)] = req + 1
    conn.send({"type": kind, "req": req, **fields})
    return req


def _answer(conn: Conn, req: int, what: str) -> Msg:
    def found() -> bool:
        return any(m.get("req") == req and m["type"] in ANSWERS for m in conn.room_msgs)

    conn.wait(found, None, what)
    reply = next(m for m in conn.room_msgs if m.get("req") == req and m["type"] in ANSWERS)
    _check_answer(reply)
    return reply


def _check_answer(reply: Msg) -> None:
    kind = reply["type"]
    if kind == "room_refused":
        code, reason = reply.get("code"), reply.get("reason")
        if not isinstance(code, str) or not isinstance(reason, str):
            raise ServerViolation(f"room_refused without string code/reason: {reply!r}")
    elif kind == "room_joined":
        if not isinstance(reply.get("room"), str) or not isinstance(reply.get("name"), str):
            raise ServerViolation(f"room_joined without string room/name (§17.5): {reply!r}")
        if not isinstance(reply.get("created"), bool):
            raise ServerViolation(f"room_joined without bool created (§17.5): {reply!r}")
        rate = reply.get("tick_rate", 1.0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
            raise ServerViolation(f"room_joined.tick_rate is not a positive number: {reply!r}")
    elif kind == "room_list_result":
        rooms = reply.get("rooms")
        if not isinstance(rooms, list):
            raise ServerViolation(f"room_list_result without rooms array (§17.5): {reply!r}")
        for listing in rooms:
            _check_listing(listing)


def _check_listing(listing: Any) -> None:
    if not isinstance(listing, dict) or set(listing) != LISTING_KEYS:
        raise ServerViolation(f"a listing is not of the form of §17.3: {listing!r}")
    if not isinstance(listing["room"], str) or not isinstance(listing["name"], str):
        raise ServerViolation(f"listing room/name not strings (§17.3): {listing!r}")
    clients, limit = listing["clients"], listing["max_clients"]
    if not isinstance(clients, int) or isinstance(clients, bool) or clients < 0:
        raise ServerViolation(f"listing clients is not a count (§17.3): {listing!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
        raise ServerViolation(f"listing max_clients is not an int or null (§17.3): {listing!r}")
    if not isinstance(listing["locked"], bool) or not isinstance(listing["metadata"], dict):
        raise ServerViolation(f"listing locked/metadata mistyped (§17.3): {listing!r}")


def _join(conn: Conn, mode: str, **fields: Any) -> Msg:
    req = _send(conn, "room_join", mode=mode, **fields)
    return _answer(conn, req, f"the answer to room_join {mode}")


def _joined(conn: Conn, mode: str, **fields: Any) -> Msg:
    """Join; require room_joined and the room's first full sync (§17.4)."""
    reply = _join(conn, mode, **fields)
    if reply["type"] != "room_joined":
        raise CaseFailure(f"room_join {mode} {fields} was not joined: {reply!r}")
    conn.wait(lambda: conn.table.applied > 0, None, "the room's first full sync")
    if conn.table.full_syncs < 1:
        raise ServerViolation("the first sync after room_joined is not full (§17.4)")
    return reply


def _refused(conn: Conn, code: str, mode: str, **fields: Any) -> Msg:
    reply = _join(conn, mode, **fields)
    if reply["type"] != "room_refused":
        raise CaseFailure(f"expected room_refused {code}, got {reply!r}")
    if reply["code"] != code:
        raise CaseFailure(f"expected refusal {code!r}, got {reply['code']!r}: {reply['reason']!r}")
    return reply


def _tokens(conn: Conn) -> dict[int, Any]:
    """uid -> (owner, hits) of the Tokens this connection holds."""
    return {
        uid: (rep.owner, rep.fields.get("hits"))
        for uid, rep in conn.table.objects.items()
        if rep.type == "Token"
    }


def _arena(ctx: Ctx, mode: str) -> tuple[Conn, str]:
    conn = _rooms(ctx)
    reply = _joined(conn, "create", name="arena", options={"mode": mode})
    return conn, str(reply["room"])


# -- negotiation and the default room ----------------------------------------------------------


@case(
    "17.1.1", G, "without 'rooms' a client is in the default room: no room field, no room message"
)
def default_room(ctx: Ctx) -> Outcome | str:
    conn = ctx.open()
    if ROOMS in conn.granted:
        raise ServerViolation("welcome grants rooms without hello.features (§4.11)")
    control = conn.control_uid()
    conn.call_ok(control, "echo", ["17.1.1"])
    return "default room served as protocol 1 (the driver checks no 'room' field arrives)"


@case("17.2.1", G, "'rooms' granted: the connection receives no sync before it joins a room")
def no_sync_before_join(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _rooms(ctx)
        conn.drain(0.5)
        if conn.sync_rooms:
            raise ServerViolation(f"{len(conn.sync_rooms)} sync(s) before any room_join (§17.2)")
        return "no sync in 0.5 s before joining"

    return _guard(run)


@case("17.2.2", G, "join_by_id 'default' gives the server's world, syncs and replies carry room")
def join_default(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _rooms(ctx)
        reply = _joined(conn, "join_by_id", room="default")
        if reply["room"] != "default":
            raise ServerViolation(f"room_joined for the default room names {reply['room']!r}")
        control = conn.control_uid()
        answer = conn.call(control, "echo", ["x"], room="default")
        if answer["type"] != "rpc_result" or answer.get("room") != "default":
            raise CaseFailure(f"a call in the default room answered {answer!r}")
        return "default room joined; Control reachable; replies carry room 'default'"

    return _guard(run)


@case("17.2.3", G, "a room message on a connection without 'rooms' closes 1002")
def without_feature(ctx: Ctx) -> Outcome | str:
    payload = json.dumps({"type": "room_join", "req": 1, "mode": "create", "name": "arena"})
    return bad_payload(ctx, payload, 1002, section="17.2")


# -- listing and joining -----------------------------------------------------------------------


@case("17.3.1", G, "room_list answers room_list_result with listings of the §17.3 form")
def room_list(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        _, room = _arena(ctx, "17.3.1")
        conn = _rooms(ctx)
        req = _send(conn, "room_list", name="arena")
        reply = _answer(conn, req, "room_list_result")
        mine = [r for r in reply["rooms"] if r["room"] == room]
        if len(mine) != 1:
            raise CaseFailure(f"the room {room} created is not listed: {reply['rooms']!r}")
        listing = mine[0]
        if (listing["clients"], listing["max_clients"], listing["locked"]) != (1, 2, False):
            raise CaseFailure(f"listing {listing!r}: expected 1 client of 2, unlocked")
        if listing["metadata"].get("mode") != "17.3.1":
            raise CaseFailure(f"listing metadata lacks the creation option mode: {listing!r}")
        if any(r["name"] != "arena" for r in reply["rooms"]):
            raise ServerViolation("room_list name 'arena' listed rooms of another type")
        return f"{len(reply['rooms'])} arena listing(s), ours correct"

    return _guard(run)


@case("17.5.1", G, "join_or_create from two connections: the same room, created true then false")
def join_or_create(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        a, b = _rooms(ctx), _rooms(ctx)
        first = _joined(a, "join_or_create", name="arena", options={"mode": "17.5.1"})
        second = _joined(b, "join_or_create", name="arena", options={"mode": "17.5.1"})
        if first["room"] != second["room"]:
            raise CaseFailure(f"two rooms {first['room']} and {second['room']} for one mode")
        if (first["created"], second["created"]) != (True, False):
            raise CaseFailure(f"created {first['created']}, {second['created']}: want true, false")
        b.wait(lambda: len(_tokens(b)) == 2, None, "both Tokens in the room")
        return f"both in {first['room']}; {len(_tokens(b))} Tokens"

    return _guard(run)


@case("17.5.2", G, "create makes a new room even when a matching one has a free seat")
def create(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        _, room = _arena(ctx, "17.5.2")
        conn = _rooms(ctx)
        reply = _joined(conn, "create", name="arena", options={"mode": "17.5.2"})
        if reply["room"] == room or reply["created"] is not True:
            raise CaseFailure(f"create joined {reply!r}, not a new room")
        return f"new room {reply['room']}"

    return _guard(run)


@case("17.5.3", G, "join with a matching filter joins; then the room is full for a third")
def join_filter_and_full(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        _, room = _arena(ctx, "17.5.3")
        b = _rooms(ctx)
        reply = _joined(b, "join", name="arena", filter={"mode": "17.5.3"})
        if reply["room"] != room or reply["created"] is not False:
            raise CaseFailure(f"join with filter answered {reply!r}, want room {room}")
        c = _rooms(ctx)
        refusal = _refused(c, "full", "join_by_id", room=room)
        return f"joined by filter; third refused full: {refusal['reason']!r}"

    return _guard(run)


# -- refusals ------------------------------------------------------------------------------------


@case("17.7.1", G, "join_by_id of an unknown room is refused unknown_room")
def unknown_room(ctx: Ctx) -> Outcome | str:
    return _guard(lambda: _refused(_rooms(ctx), "unknown_room", "join_by_id", room="nope-17.7.1"))


@case("17.7.2", G, "join_or_create of an unknown room type is refused unknown_room_type")
def unknown_type(ctx: Ctx) -> Outcome | str:
    return _guard(
        lambda: _refused(_rooms(ctx), "unknown_room_type", "join_or_create", name="no-such-type")
    )


@case("17.7.3", G, "join with a filter that matches no room is refused no_room")
def no_room(ctx: Ctx) -> Outcome | str:
    return _guard(
        lambda: _refused(_rooms(ctx), "no_room", "join", name="arena", filter={"mode": "none!"})
    )


@case("17.7.4", G, "a full room is refused full, and the refused connection stays in no room")
def full(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        _, room = _arena(ctx, "17.7.4")
        _joined(_rooms(ctx), "join_by_id", room=room)
        c = _rooms(ctx)
        _refused(c, "full", "join_by_id", room=room)
        c.drain(0.3)
        if c.sync_rooms:
            raise ServerViolation("a refused connection received syncs (§17.5)")
        return "refused full; no sync followed"

    return _guard(run)


@case("17.7.5", G, "a locked room is refused locked")
def locked(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        a = _rooms(ctx)
        room = _joined(a, "create", name="sealed", options={"mode": "17.7.5"})["room"]
        return str(_refused(_rooms(ctx), "locked", "join_by_id", room=room)["reason"])

    return _guard(run)


@case("17.7.6", G, "joining while in a room is refused already_in_room; so is switching to it")
def already_in_room(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        a, room = _arena(ctx, "17.7.6")
        _refused(a, "already_in_room", "join_or_create", name="arena", options={"mode": "x"})
        _refused(a, "already_in_room", "join_by_id", room=room, switch=True)
        a.drain(0.2)
        if a.room != room:
            raise CaseFailure(f"after two refusals the connection is in {a.room!r}, not {room}")
        return "both refused; still in the room"

    return _guard(run)


@case("17.7.7", G, "room_leave from a connection in no room is refused not_in_room")
def leave_unknown(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _rooms(ctx)
        req = _send(conn, "room_leave")
        reply = _answer(conn, req, "the answer to room_leave")
        if reply["type"] != "room_refused" or reply["code"] != "not_in_room":
            raise CaseFailure(f"room_leave in no room answered {reply!r}")
        return str(reply["reason"])

    return _guard(run)


@case("17.7.8", G, "an admission check's refusal is rejected with its reason; the right key joins")
def rejected(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        a = _rooms(ctx)
        room = _joined(a, "create", name="vip", options={"key": "sesame"})["room"]
        b = _rooms(ctx)
        reply = _refused(b, "rejected", "join_by_id", room=room, options={"key": "guess"})
        if reply["reason"] != "the key is wrong":
            raise CaseFailure(f"the app's reason was not sent: {reply['reason']!r}")
        _joined(b, "join_by_id", room=room, options={"key": "sesame"})
        return "rejected with the app's reason; the right key joined"

    return _guard(run)


@case("17.7.9", G, "options over 4096 bytes are refused rejected")
def options_too_large(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _rooms(ctx)
        big = {"mode": "17.7.9", "pad": "x" * 5000}
        return str(_refused(conn, "rejected", "create", name="arena", options=big)["reason"])

    return _guard(run)


# -- leaving and switching -----------------------------------------------------------------------


@case("17.5.4", G, "room_leave answers room_left (req, consented); no sync of the room follows")
def leave(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        a, room = _arena(ctx, "17.5.4")
        req = _send(a, "room_leave")
        reply = _answer(a, req, "room_left")
        if reply["type"] != "room_left" or reply["room"] != room or reply["consented"] is not True:
            raise CaseFailure(f"room_leave answered {reply!r}")
        after = len(a.sync_rooms)
        a.drain(0.4)
        if a.sync_rooms[after:]:
            raise ServerViolation(f"syncs of {a.sync_rooms[after:]} after room_left (§17.5)")
        return "left; no sync after room_left"

    return _guard(run)


@case("17.5.5", G, "switch: room_left 'switched room', room_joined, a full sync of the new room")
def switch(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        a, old = _arena(ctx, "17.5.5a")
        _, new = _arena(ctx, "17.5.5b")
        first = len(a.room_msgs)
        reply = _join(a, "join_by_id", room=new, switch=True)
        if reply["type"] != "room_joined" or reply["room"] != new:
            raise CaseFailure(f"switch answered {reply!r}")
        kinds = [(m["type"], m.get("room")) for m in a.room_msgs[first:]]
        if kinds[:2] != [("room_left", old), ("room_joined", new)]:
            raise ServerViolation(f"switch sent {kinds}, want room_left then room_joined")
        left = a.room_msgs[first]
        if left.get("reason") != "switched room" or "req" in left or left["consented"] is not True:
            raise ServerViolation(f"the switch's room_left is {left!r} (§17.5)")
        a.wait(lambda: len(_tokens(a)) == 2, None, "the new room's two Tokens")
        return "room_left, room_joined, full sync of the new room"

    return _guard(run)


@case("17.5.6", G, "a refused switch leaves the connection in its room, receiving its syncs")
def refused_switch(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        a, room = _arena(ctx, "17.5.6")
        _refused(a, "unknown_room", "join_by_id", room="nope-17.5.6", switch=True)
        mine = [uid for uid, (owner, _) in _tokens(a).items() if owner == a.member]
        if len(mine) != 1:
            raise CaseFailure(f"own Token missing after a refused switch: {_tokens(a)}")
        value = a.call(mine[0], "hit", [], room=room)
        if value["type"] != "rpc_result":
            raise CaseFailure(f"a call in the room after a refused switch answered {value!r}")
        a.wait(lambda: _tokens(a)[mine[0]][1] == 1, None, "the hit to sync back")
        return "still in the room; its syncs still arrive"

    return _guard(run)


@case("17.5.7", G, "a room_join/room_leave reusing an unanswered req closes 1002")
def reused_req(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _rooms(ctx)
        one = json.dumps({"type": "room_list", "req": 7}).encode()  # keeps the loop busy
        join = json.dumps(
            {
                "type": "room_join",
                "req": 7,
                "mode": "create",
                "name": "arena",
                "options": {"mode": "17.5.7"},
            }
        ).encode()
        leave = json.dumps({"type": "room_leave", "req": 7}).encode()
        conn.send_raw(b"".join(header(len(p)) + p for p in (one, join, leave)))
        detail = ctx.expect_close(conn, 1002, section="17.5")
        return f"{detail}; {ctx.check_alive()}"

    return _guard(run)


# -- room-scoped sync and RPC --------------------------------------------------------------------


@case("17.4.1", G, "sync never crosses rooms: each connection holds only its room's objects")
def sync_isolated(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        a, room_a = _arena(ctx, "17.4.1a")
        b, room_b = _arena(ctx, "17.4.1b")
        c = _rooms(ctx)
        _joined(c, "join_by_id", room=room_b)
        a.drain(0.4)
        b.wait(lambda: len(_tokens(b)) == 2, None, "room B's two Tokens")
        owners_a = {owner for owner, _ in _tokens(a).values()}
        owners_b = {owner for owner, _ in _tokens(b).values()}
        if owners_a != {a.member}:
            raise ServerViolation(f"room A's client holds Tokens of {owners_a} (§17.4)")
        if owners_b != {b.member, c.member}:
            raise ServerViolation(f"room B's client holds Tokens of {owners_b} (§17.4)")
        if set(a.sync_rooms) != {room_a} or set(b.sync_rooms) != {room_b}:
            raise ServerViolation(f"syncs named rooms {set(a.sync_rooms)} / {set(b.sync_rooms)}")
        return "each connection held only its own room's Tokens; every sync named its room"

    return _guard(run)


@case("17.4.2", G, "rpc never crosses rooms: another room or a uid only there is unknown_object")
def rpc_isolated(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        a, room_a = _arena(ctx, "17.4.2a")
        b, room_b = _arena(ctx, "17.4.2b")
        c = _rooms(ctx)
        _joined(c, "join_by_id", room=room_b)
        b.wait(lambda: len(_tokens(b)) == 2, None, "room B's two Tokens")
        only_b = max(_tokens(b))  # room A has one Token, so this uid exists only in room B
        own = next(iter(_tokens(a)))
        for uid, room in ((only_b, room_a), (own, room_b), (only_b, room_b)):
            reply = a.call(uid, "hit", [], room=room)
            if reply["type"] != "rpc_error" or reply.get("code") != "unknown_object":
                raise ServerViolation(f"hit uid {uid} naming room {room} answered {reply!r}")
            if reply.get("room") != room:
                raise ServerViolation(f"the rpc_error names room {reply.get('room')!r}")
        if a.call(own, "hit", [], room=room_a)["type"] != "rpc_result":
            raise CaseFailure("a call on the caller's own Token in its room failed")
        a.wait(lambda: _tokens(a)[own][1] == 1, None, "the own hit to sync")
        b.drain(0.3)
        hits = {uid: h for uid, (_, h) in _tokens(b).items()}
        if any(h != 0 for h in hits.values()):
            raise ServerViolation(f"a call from another room ran in room B: hits {hits}")
        return "3 cross-room calls answered unknown_object, none ran; the own call ran"

    return _guard(run)


@case("17.4.3", G, "an rpc without room on a rooms connection closes 1002")
def rpc_without_room(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn, _ = _arena(ctx, "17.4.3")
        uid = next(iter(_tokens(conn)))
        conn.send({"type": "rpc", "id": 1, "uid": uid, "method": "hit", "args": []})
        return f"{ctx.expect_close(conn, 1002, section='17.4')}; {ctx.check_alive()}"

    return _guard(run)


@case("17.4.4", G, "messages stay in their room and carry it; naming another room is refused")
def messages_isolated(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        a = _rooms(ctx, "messages")
        if "messages" not in a.granted:
            raise NonStrict("the server does not implement messages (§14.1)")
        room = _joined(a, "create", name="arena", options={"mode": "17.4.4a"})["room"]
        b = _rooms(ctx, "messages")
        _joined(b, "join_by_id", room=room)
        other = _rooms(ctx, "messages")
        elsewhere = _joined(other, "create", name="arena", options={"mode": "17.4.4b"})["room"]
        a.send({"type": "message", "name": "shout", "data": 1, "room": room})
        for conn in (a, b):
            conn.wait(
                lambda c=conn: any(m["name"] == "shouted" for m in c.app_messages),
                None,
                "the room's broadcast",
            )
            got = next(m for m in conn.app_messages if m["name"] == "shouted")
            if got.get("room") != room or got.get("data") != {"from": a.member, "data": 1}:
                raise ServerViolation(f"the room's message arrived as {got!r} (§17.4)")
        other.send({"type": "message", "name": "shout", "data": 2, "room": room})
        other.wait(
            lambda: any(m["type"] == "message_error" for m in other.app_messages),
            None,
            "the refusal of a message naming another room",
        )
        error = next(m for m in other.app_messages if m["type"] == "message_error")
        if error["code"] != "unknown_message" or error.get("room") != room:
            raise ServerViolation(f"a message naming another room answered {error!r}")
        a.drain(0.3)
        if any(m.get("data") == {"from": other.member, "data": 2} for m in a.app_messages):
            raise ServerViolation("a message naming another room was handled there (§17.4)")
        if any(m["name"] == "shouted" for m in other.app_messages):
            raise ServerViolation(f"room {room}'s message reached room {elsewhere} (§17.4)")
        return "broadcast reached the room only, with its id; the other room's was refused"

    return _guard(run)


@case("17.4.5", G, "a message without room on a rooms connection closes 1002")
def message_without_room(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _rooms(ctx, "messages")
        if "messages" not in conn.granted:
            raise NonStrict("the server does not implement messages (§14.1)")
        _joined(conn, "create", name="arena", options={"mode": "17.4.5"})
        conn.send({"type": "message", "name": "shout", "data": 1})
        return f"{ctx.expect_close(conn, 1002, section='17.4')}; {ctx.check_alive()}"

    return _guard(run)


# -- the lobby -------------------------------------------------------------------------------------


@case("17.6.1", G, "room_watch: a snapshot, then added / changed / removed as rooms live and die")
def lobby(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        watcher = _rooms(ctx)
        req = _send(watcher, "room_watch", name="arena")
        _answer(watcher, req, "the lobby snapshot")
        a, room = _arena(ctx, "17.6.1")
        b = _rooms(ctx)
        _joined(b, "join_by_id", room=room)

        def events() -> list[Msg]:
            return [
                m
                for m in watcher.room_msgs
                if m["type"] == "room_event" and m["room"].get("room") == room
            ]

        watcher.wait(
            lambda: any(
                e["event"] == "changed" and e["room"].get("clients") == 2 for e in events()
            ),
            None,
            "a changed event with 2 clients",
        )
        for conn in (a, b):
            _answer(conn, _send(conn, "room_leave"), "room_left")
        watcher.wait(lambda: any(e["event"] == "removed" for e in events()), None, "removed")
        seen = [e["event"] for e in events()]
        if seen[0] != "added" or seen[-1] != "removed":
            raise ServerViolation(f"events for one room out of order (§17.6): {seen}")
        for e in events():
            if e["event"] == "removed":
                if set(e["room"]) != {"room", "name"}:
                    raise ServerViolation(f"removed carries {e['room']!r}, want room and name")
            else:
                _check_listing(e["room"])
        return f"events {seen}"

    return _guard(run)


# -- malformed room messages -----------------------------------------------------------------------


def _malformed(ctx: Ctx, msg: dict[str, Any]) -> Outcome | str:
    def run() -> str:
        conn = _rooms(ctx)
        conn.send(msg)
        return f"{ctx.expect_close(conn, 1002, section='17.5')}; {ctx.check_alive()}"

    return _guard(run)


@case("17.5.8", G, "a room_join without mode closes 1002")
def no_mode(ctx: Ctx) -> Outcome | str:
    return _malformed(ctx, {"type": "room_join", "req": 1, "name": "arena"})


@case("17.5.9", G, "a room_join whose options is not an object closes 1002")
def options_not_object(ctx: Ctx) -> Outcome | str:
    return _malformed(
        ctx, {"type": "room_join", "req": 1, "mode": "create", "name": "arena", "options": [1]}
    )


@case("17.5.10", G, "a room_join with an unknown mode closes 1002")
def unknown_mode(ctx: Ctx) -> Outcome | str:
    return _malformed(ctx, {"type": "room_join", "req": 1, "mode": "teleport", "name": "arena"})


@case("17.5.11", G, "a room_join join_by_id without room closes 1002")
def by_id_without_room(ctx: Ctx) -> Outcome | str:
    return _malformed(ctx, {"type": "room_join", "req": 1, "mode": "join_by_id"})
