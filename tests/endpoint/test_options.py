"""Each option is declared once (``reverb.options``): the public constructors' keywords are a
mirror of those dataclasses, kept in step here, and every check lives in the dataclass."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from reverb import ReverbContext
from reverb.aio import AsyncClient, AsyncServer
from reverb.options import ClientOptions, ServerOptions
from reverb.proto.options import SessionOptions, pick
from reverb.proto.session import Role, Session
from reverb.resume import OwnedPolicy
from reverb.threaded import Client, Server

# keywords of the constructors that are not options: where, and for which context
NOT_OPTIONS = {"self", "host", "port", "ip", "context"}


def _keywords(cls: type) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters
    return {n: p.default for n, p in params.items() if n not in NOT_OPTIONS}


@pytest.mark.parametrize(
    ("endpoint", "options"),
    [
        (Server, ServerOptions),
        (AsyncServer, ServerOptions),
        (Client, ClientOptions),
        (AsyncClient, ClientOptions),
    ],
)
def test_a_constructors_keywords_are_its_options_fields_with_the_same_defaults(
    endpoint: type, options: type
) -> None:
    fields = {f.name: f.default for f in dataclasses.fields(options)}
    keywords = _keywords(endpoint)
    # a client's handshake deadline is its connect_timeout: not a keyword of its own
    hidden = {"handshake_timeout"} if options is ClientOptions else set()
    session_only = {
        "tick_rate",
        "max_messages_per_second",
        "max_calls_per_second",
        "max_handshake_frame",
        "max_bytes_per_second",
        "rtt_interval",
    }
    if options is ClientOptions:
        hidden |= session_only  # a client's sessions use the defaults
    assert set(keywords) == set(fields) - hidden
    for name, default in keywords.items():
        assert default == fields[name], name


def test_the_options_reach_the_hub_and_its_sessions() -> None:
    server = Server(
        port=0,
        context=ReverbContext(),
        handshake_timeout=3.0,
        idle_timeout=4.0,
        tick_rate=20.0,
        max_pending_calls=7,
        owned_objects="release",
        features=["compact"],
    )
    options = server.hub.options
    assert options is server.options
    assert (options.idle_timeout, options.tick_rate, options.max_pending_calls) == (4.0, 20.0, 7)
    assert options.owned_objects is OwnedPolicy.RELEASE and options.features == ("compact",)
    session = server.hub.open("127.0.0.1", 1, 0.0)
    assert session.tick_rate == 20.0 and session.offered == ("compact",)
    assert session._idle_timeout == 4.0
    # no hello within the server's handshake timeout, not the default's: closed (§4.6)
    session.check_timeouts(2.9)
    assert not session.closed
    session.check_timeouts(3.0)
    assert session.closed


@pytest.mark.parametrize(
    ("cls", "bad"),
    [
        (ServerOptions, {"tick_rate": 0.0}),
        (ServerOptions, {"tick_rate": float("nan")}),
        (ServerOptions, {"resume_grace": -1.0}),
        (ServerOptions, {"quiet_interval": 0.0}),
        (ServerOptions, {"owned_objects": "sometimes"}),
        (ClientOptions, {"connect_timeout": 0.0}),
        (ClientOptions, {"rooms": True, "reconnect": True}),
        (SessionOptions, {"rtt_interval": 0.0}),
    ],
)
def test_a_bad_option_is_refused_once_whichever_constructor(cls: type, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        cls(**bad)


def test_server_and_client_constructors_refuse_a_bad_option() -> None:
    with pytest.raises(ValueError, match="tick_rate"):
        Server(port=0, context=ReverbContext(), tick_rate=-1)
    with pytest.raises(ValueError, match="connect_timeout"):
        Client(context=ReverbContext(), connect_timeout=0)


def test_a_session_takes_options_and_limits_by_name() -> None:
    options = SessionOptions(idle_timeout=2.0, ping_interval=1.0)
    s = Session(Role.SERVER, 0.0, options, max_frame_size=70_000)
    assert s.max_frame_size == 70_000 and s._idle_timeout == 2.0 and s._ping_interval == 1.0
    with pytest.raises(TypeError):
        Session(Role.SERVER, 0.0, idle_timout=1.0)  # a misspelt limit is not ignored


def test_a_clients_session_uses_its_connect_timeout_as_handshake_deadline() -> None:
    client = Client(context=ReverbContext(), connect_timeout=2.5, idle_timeout=9.0)
    assert client.options.handshake_timeout == 2.5
    session = client.new_session(0.0)
    assert session._idle_timeout == 9.0 and session._handshake_deadline == 2.5


def test_pick_takes_only_the_fields() -> None:
    picked = pick(SessionOptions, {"idle_timeout": 4.0, "host": "x", "self": object()})
    assert picked == SessionOptions(idle_timeout=4.0)
