"""reverb/events.py: event registries."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from reverb.events import CLIENT_EVENTS, SERVER_EVENTS, EventRegistry


def client_registry() -> EventRegistry:
    return EventRegistry(CLIENT_EVENTS, "client")


def test_event_names() -> None:
    assert SERVER_EVENTS == {
        "client_connected",
        "client_disconnected",
        "sync_error",
        "client_dropped",  # §18: resume
        "client_resumed",
    }
    assert CLIENT_EVENTS == {
        "connected",
        "disconnected",
        "synced",
        "object_spawned",
        "object_despawned",
        "rpc_error",
        "message_error",
        "connection_lost",  # §18: resume
        "reconnecting",
        "reconnected",
        "resume_failed",
        "room_joined",  # §17
        "room_left",
        "room_event",
    }


def test_unknown_name_raises_listing_the_known_names() -> None:
    registry = EventRegistry(SERVER_EVENTS, "server")
    with pytest.raises(ValueError) as info:
        registry.on_event("client_conected")
    text = str(info.value)
    assert "client_conected" in text and "server" in text
    assert "client_connected" in text and "client_disconnected" in text


def test_server_names_are_unknown_to_a_client_registry() -> None:
    with pytest.raises(ValueError, match="synced"):
        client_registry().on_event("client_connected")


def test_server_sync_is_an_alias_of_synced() -> None:
    registry = client_registry()
    seen: list[int] = []

    def handler(tick: int) -> None:
        seen.append(tick)

    registry.on_event("server_sync")(handler)
    registry.fire("synced", 12)
    assert seen == [12]
    registry.remove("server_sync", handler)
    registry.fire("synced", 13)
    assert seen == [12]


def test_decorator_returns_the_function() -> None:
    def handler() -> None:
        pass

    assert client_registry().on_event("connected")(handler) is handler


def test_handlers_receive_the_leading_arguments_they_accept() -> None:
    registry = EventRegistry(SERVER_EVENTS, "server")
    calls: list[tuple[Any, ...]] = []

    @registry.on_event("client_disconnected")
    def none() -> None:
        calls.append(())

    @registry.on_event("client_disconnected")
    def one(member: int) -> None:
        calls.append((member,))

    @registry.on_event("client_disconnected")
    def two(member: int, code: int, reason: str = "", extra: int = 0) -> None:
        calls.append((member, code, reason, extra))

    @registry.on_event("client_disconnected")
    def star(*args: Any) -> None:
        calls.append(args)

    class Handler:
        def method(self, member: int) -> None:
            calls.append(("method", member))

    registry.on_event("client_disconnected")(Handler().method)
    registry.fire("client_disconnected", 5, 1000, "bye")
    assert calls == [(), (5,), (5, 1000, "bye", 0), (5, 1000, "bye"), ("method", 5)]


def test_handlers_run_in_registration_order_and_only_for_their_event() -> None:
    registry = client_registry()
    order: list[str] = []
    registry.on_event("connected")(lambda m: order.append("a"))
    registry.on_event("connected")(lambda m: order.append("b"))
    registry.on_event("disconnected")(lambda c, r: order.append("x"))
    registry.fire("connected", 1)
    assert order == ["a", "b"]


def test_firing_an_event_without_handlers_does_nothing() -> None:
    client_registry().fire("rpc_error", RuntimeError())


def test_a_raising_handler_is_logged_and_the_next_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = client_registry()
    ran: list[int] = []

    @registry.on_event("synced")
    def broken(tick: int) -> None:
        raise KeyError("boom")

    registry.on_event("synced")(ran.append)
    with caplog.at_level(logging.ERROR, logger="reverb"):
        registry.fire("synced", 3)
    assert ran == [3]
    records = [r for r in caplog.records if r.name == "reverb"]
    assert len(records) == 1
    assert records[0].exc_info is not None and records[0].exc_info[0] is KeyError
    assert "synced" in records[0].getMessage()


def test_remove_and_clear() -> None:
    registry = client_registry()
    seen: list[int] = []
    registry.on_event("connected")(seen.append)
    registry.remove("connected", lambda m: None)  # not registered: nothing happens
    registry.remove("disconnected", seen.append)
    registry.fire("connected", 1)
    registry.clear()
    registry.fire("connected", 2)
    assert seen == [1]
