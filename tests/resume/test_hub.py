"""The resume wiring in the sans-I/O core (protocol §18): ``ServerHub`` with its sessions,
``ClientHub`` with its reconnector, the world and the context's owned-objects policy."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from reverb import ReverbContext, ReverbObject, ReverbSide
from reverb.auth import Accept, Reject
from reverb.errors import CloseCode, ConnectionClosed, RpcCode, RpcError
from reverb.hub import ClientHub, ServerHub, ServerOptions
from reverb.proto import messages as m
from reverb.proto.session import Closed, Opened, Received, Session
from reverb.reconnect import ConnectionLost, ReconnectPolicy, ReconnectState, ResumeFailed
from reverb.transport import PeerClosed, PeerDropped, PeerMessage, PeerOpened, PeerResumed
from tests.proto.helpers import frame, sent

IP = "10.0.0.7"


def hub(**options: Any) -> ServerHub:
    return ServerHub(ServerOptions(**options))


def hello(session: Session, now: float = 0.0, **fields: Any) -> list[Any]:
    """Feed a hello; return the hub's events for what the session reported."""
    session.receive_data(frame(m.Hello(version=1, **fields)), now)
    return [e for e in (session_hub[session].on_event(session, ev, now) for ev in session.events())]


session_hub: dict[Session, ServerHub] = {}


def open_(h: ServerHub, now: float = 0.0, **fields: Any) -> tuple[Session, list[Any], list[Any]]:
    session = h.open(IP, 1000, now)
    session_hub[session] = h
    events = hello(session, now, **fields)
    return session, sent(session), events


def join(h: ServerHub, now: float = 0.0, **fields: Any) -> tuple[Session, str]:
    session, out, events = open_(h, now, features=["resume"], **fields)
    welcome = out[0]
    assert isinstance(welcome, m.Welcome) and isinstance(events[0], PeerOpened)
    assert isinstance(welcome.resume_token, str)
    return session, welcome.resume_token


def drop(h: ServerHub, session: Session, now: float = 0.0) -> Any:
    session.receive_eof()
    (event,) = [h.on_event(session, e, now) for e in session.events()]
    return event


def resume(
    h: ServerHub, member: int, token: str, now: float = 0.0, auth: Any = m.ABSENT, **extra: Any
) -> Any:
    """A resume hello (``auth``: its credentials; ``extra``: more ``resume`` fields)."""
    resume = {"member": member, "token": token, **extra}
    return open_(h, now, features=["resume"], auth=auth, resume=resume)


def test_the_token_is_43_urlsafe_characters_new_each_welcome_and_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="reverb")
    h = hub()
    a, ta = join(h)
    _b, tb = join(h)
    assert len(ta) == 43 and ta != tb
    drop(h, a, 1.0)
    _again, out, events = resume(h, a.member, ta, 2.0)
    assert isinstance(events[0], PeerResumed) and events[0].member == a.member
    welcome = out[0]
    assert welcome.member == a.member and welcome.resumed is True
    assert welcome.resume_token not in (ta, None)
    assert ta not in caplog.text and tb not in caplog.text
    assert welcome.resume_token not in caplog.text


def test_without_the_feature_no_token_and_a_drop_is_a_disconnect() -> None:
    h = hub()
    session, out, _ = open_(h)
    assert out[0].resume_token is m.ABSENT and out[0].resumed is m.ABSENT
    assert isinstance(drop(h, session), PeerClosed)


def test_a_consented_close_ends_the_membership_and_a_resume_is_then_expired() -> None:
    h = hub()
    session, token = join(h)
    session.receive_data(frame(m.Close(code=1000, reason="bye")), 0.0)
    (event,) = [h.on_event(session, e, 0.0) for e in session.events()]
    assert isinstance(event, PeerClosed)
    _, out, _ = resume(h, session.member, token)
    assert out[-1] == m.Close(code=CloseCode.RESUME_EXPIRED, reason="resume refused: expired")


@pytest.mark.parametrize(
    ("code", "reason", "held"),
    [
        (1006, "connection ended without close", True),
        (1008, "idle timeout", True),
        (1013, "send buffer over its limit", True),
        (1008, "message rate limit exceeded", False),
        (1002, "protocol error", False),
        (1001, "server shutting down", False),
    ],
)
def test_which_ends_are_held(code: int, reason: str, held: bool) -> None:
    h = hub()
    session, _ = join(h)
    session.close(code, reason, 0.0) if code != 1006 else session.abort(code, reason)
    (event,) = [h.on_event(session, e, 0.0) for e in session.events()]
    assert isinstance(event, PeerDropped if held else PeerClosed)


def test_a_used_token_is_3002_the_grace_end_3003_and_a_live_member_3003() -> None:
    h = hub(resume_grace=5.0)
    session, first = join(h)
    _, out, _ = resume(h, session.member, first)
    assert out[-1].code == CloseCode.RESUME_EXPIRED  # live: never taken over
    drop(h, session, 0.0)
    again, out, _ = resume(h, session.member, first, 1.0)
    second = out[0].resume_token
    drop(h, again, 2.0)
    _, out, _ = resume(h, session.member, first, 3.0)
    assert out[-1] == m.Close(code=CloseCode.RESUME_BAD_TOKEN, reason="resume refused: bad token")
    events, _ = h.housekeeping(7.0)
    assert [(e.member, e.reason) for e in events] == [(session.member, "resume grace expired")]
    _, out, _ = resume(h, session.member, second, 7.5)
    assert out[-1].code == CloseCode.RESUME_EXPIRED


def test_eleven_bad_tokens_from_one_address_are_refused_unchecked_with_1008() -> None:
    h = hub()
    session, token = join(h)
    drop(h, session)
    codes = [resume(h, session.member, "x" * 43, 0.1 * i)[1][-1].code for i in range(11)]
    assert codes == [CloseCode.RESUME_BAD_TOKEN] * 10 + [CloseCode.POLICY]
    _, out, _ = resume(h, session.member, token, 2.0)
    assert out[-1] == m.Close(code=CloseCode.POLICY, reason="too many failed resume attempts")
    assert h.stats["limit.resume_failures"] == 2


def test_a_token_is_useless_with_another_identity() -> None:
    def authenticate(credentials: Any, peer: str) -> Accept | Reject:
        return Accept(credentials)

    h = hub(authenticate=authenticate)
    session, token = join(h, auth="alice")
    drop(h, session)
    _, out, _ = resume(h, session.member, token, auth="mallory")
    assert out[-1].code == CloseCode.RESUME_BAD_TOKEN
    _, out, _ = resume(h, session.member, token, auth="alice")
    assert out[0].member == session.member and out[0].resumed is True


def test_on_drop_zero_does_not_hold() -> None:
    h = hub(on_drop=lambda info: 0)
    session, _ = join(h)
    assert isinstance(drop(h, session), PeerClosed)


def test_a_cut_call_runs_once_and_is_answered_after_the_resume() -> None:
    h = hub()
    session, token = join(h)
    session.receive_data(frame(m.Rpc(id=0, uid=1, method="f", args=[])), 0.0)
    (handed,) = [h.on_event(session, e, 0.0) for e in session.events()]
    assert isinstance(handed, PeerMessage)
    drop(h, session)
    h.remember((session.member,), m.RpcResult(id=0, value="ran"), 0.5)  # finished while held
    again, _out, _ = resume(h, session.member, token, 1.0, waiting=[0])
    again.receive_data(frame(m.Rpc(id=0, uid=1, method="f", args=[])), 1.0)
    assert [h.on_event(again, e, 1.0) for e in again.events()] == [None]  # not run again
    assert sent(again) == [m.RpcResult(id=0, value="ran")]
    again.receive_data(frame(m.Rpc(id=1, uid=1, method="f", args=[])), 1.0)
    assert isinstance(h.on_event(again, again.events()[0], 1.0), PeerMessage)  # a new call


def test_answers_confirmed_by_a_pong_are_forgotten_and_a_full_ledger_says_not_run() -> None:
    h = hub()
    h.keeper._max_results = 1
    session, _ = join(h)
    h.keeper.ledger(session.member).max_results = 1
    session.receive_data(frame(m.Rpc(id=0, uid=1, method="f", args=[])), 0.0)
    h.on_event(session, session.events()[0], 0.0)
    h.remember((session.member,), m.RpcResult(id=0, value=1), 0.0)
    session.send(m.RpcResult(id=0, value=1), 0.0)
    sent(session)
    session.receive_data(frame(m.Rpc(id=1, uid=1, method="f", args=[])), 0.1)
    assert h.on_event(session, session.events()[0], 0.1) is None
    (refusal,) = sent(session)
    assert refusal.code == RpcCode.NOT_RUN
    _, due = h.housekeeping(1.0)
    assert due == [session]
    h.confirm_ping(session, 1.0)
    (ping,) = sent(session)
    session.receive_data(frame(m.Pong(nonce=ping.nonce)), 1.1)
    assert len(h.keeper.ledger(session.member)) == 0
    session.receive_data(frame(m.Rpc(id=2, uid=1, method="f", args=[])), 1.2)
    assert isinstance(h.on_event(session, session.events()[0], 1.2), PeerMessage)


def test_a_malformed_resume_or_one_without_the_feature_is_1002() -> None:
    h = hub()
    for fields in (
        {"features": ["resume"], "resume": {"member": 1, "token": 7}},
        {"features": ["resume"], "resume": {"member": 1, "token": "t", "waiting": [-1]}},
        {"resume": {"member": 1, "token": "t"}},
    ):
        _, out, _ = open_(h, **fields)
        assert out[-1].code == CloseCode.PROTOCOL_ERROR


def test_a_held_membership_keeps_its_seat() -> None:
    h = hub(max_connections=2)
    session, _ = join(h)
    drop(h, session)
    join(h)
    assert not h.admit(IP)


# -- the client hub ------------------------------------------------------------------------------


def client_opened(rc: ClientHub, member: int = 4, token: str = "t" * 43) -> None:
    rc.on_events(
        Opened(member=member, tick_rate=30.0, features=frozenset({"resume"}), resume_token=token),
        lambda f: f(),
        None,
        0.0,
    )


def test_client_keeps_calls_across_a_drop_and_fails_them_cleanly_when_refused() -> None:
    rc = ClientHub(ReconnectPolicy())
    client_opened(rc)
    session = Session(__import__("reverb.proto.session", fromlist=["Role"]).Role.CLIENT, 0.0)
    session.receive_data(
        frame(m.Welcome(version=1, member=4, tick_rate=30.0, max_frame=65536)), 0.0
    )
    session.events()
    sent(session)
    inflight = rc.call(session, 1, "f", [], 0.0)
    out = rc.on_events(Closed(1006, "reset", by_peer=True), lambda f: f(), None, 0.0)
    assert out == [ConnectionLost(1006, "reset")] and rc.resuming and not inflight.done()
    queued = rc.call(None, 1, "g", [], 0.1)
    assert rc.resume_hello()["waiting"] == [0]
    assert rc.reconnector is not None
    rc.reconnector.poll(100.0)
    assert rc.reconnector.state is ReconnectState.CONNECTING
    out = rc.on_events(
        Closed(3003, "resume refused: expired", by_peer=True, clean=True), lambda f: f(), None, 1.0
    )
    assert out[0] == ResumeFailed("expired") and isinstance(out[1], Closed)
    assert isinstance(inflight.exception(), ConnectionClosed)
    error = queued.exception()
    assert isinstance(error, RpcError) and error.code == RpcCode.NOT_RUN


def test_received_sync_counts_as_applied_for_since_tick() -> None:
    rc = ClientHub(ReconnectPolicy())
    client_opened(rc)
    sync = m.Sync(tick=9, full=True, final=True)
    rc.on_events(Received(sync), lambda f: f(), None, 0.0)
    assert rc.reconnector is not None and rc.reconnector.last_tick == 9


# -- the context: what a membership's end does to its objects ------------------------------------


class Thing(ReverbObject):
    def __init__(self, uid: Any = None, add_on_init: bool = True, belonging_membership: Any = None):
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


class Feed:
    tick_rate = 30.0

    def __init__(self, events: list[Any]) -> None:
        self.events = events

    def poll(self) -> list[Any]:
        events, self.events = self.events, []
        return events

    def send(self, members: Any, message: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("policy", "left", "owner"), [("keep", 1, 5), ("release", 1, None), ("destroy", 0, None)]
)
def test_owned_objects_policy(policy: str, left: int, owner: Any) -> None:
    ctx = ReverbContext(ReverbSide.SERVER)
    ctx.register(Thing)
    log: list[Any] = []
    for name in ("client_dropped", "client_resumed", "client_disconnected"):
        ctx.server_events.on_event(name)(lambda *a, name=name: log.append(name))
    with ctx.activate():
        thing = Thing(belonging_membership=5)
    ctx.connection = Feed([PeerOpened(5), PeerDropped(5, 1006, "reset"), PeerResumed(5)])
    ctx.serve()
    assert 5 in ctx.world.peers and thing.belonging_membership == 5
    ctx.connection = Feed(
        [PeerDropped(5, 1006, "reset"), PeerClosed(5, 1006, "resume grace expired", policy)]
    )
    ctx.serve()
    assert log == ["client_dropped", "client_resumed", "client_dropped", "client_disconnected"]
    assert len(ctx.world.objects) == left
    if left:
        assert thing.belonging_membership == owner


def test_a_server_that_does_not_grant_resume_refuses_a_resume_as_expired() -> None:
    h = hub(features=("compact",))
    _, out, _ = resume(h, 1, "t" * 43)
    assert out[-1] == m.Close(code=CloseCode.RESUME_EXPIRED, reason="resume refused: expired")


def test_a_reconnecting_client_of_a_server_without_resume_just_disconnects() -> None:
    rc = ClientHub(ReconnectPolicy())
    rc.on_events(Opened(member=4, tick_rate=30.0), lambda f: f(), None, 0.0)  # no token
    out = rc.on_events(Closed(1006, "reset", by_peer=True), lambda f: f(), None, 0.0)
    assert out == [
        ConnectionLost(1006, "reset"),
        ResumeFailed("not resumable"),
        Closed(1006, "reset", by_peer=True),
    ]
    assert not rc.resuming


def test_on_drop_is_told_the_member_and_its_identity() -> None:
    seen: list[Any] = []

    def on_drop(info: Any) -> float | None:
        seen.append((info.member, info.identity))
        return None

    h = hub(on_drop=on_drop, authenticate=lambda credentials, peer: Accept(credentials))
    session, _ = join(h, auth="alice")
    assert isinstance(drop(h, session), PeerDropped)
    assert seen == [(session.member, "alice")]


def test_rooms_and_reconnect_are_refused_together() -> None:
    # a resumed membership does not get its room seat back yet: the pair is refused up front
    import pytest

    from reverb import Client

    with pytest.raises(ValueError, match="rooms=True and reconnect"):
        Client(port=1, rooms=True, reconnect=True)
