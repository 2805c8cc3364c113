"""The lobby feed: connections subscribed to the room list get its changes as they happen.

A subscriber receives the current listings once (``subscribe`` returns them), then every
``RoomAdded`` / ``RoomChanged`` / ``RoomRemoved`` for the room type it watches, queued as
``(member, event)`` and drained by the I/O layer (``events_to_send``), sans I/O. Being
subscribed is not being in a room: a connection may watch the lobby while it plays
(docs/design/rooms.md §2.1).
"""

from __future__ import annotations

from reverb.rooms.registry import LobbyEvent, RoomListing, RoomRegistry, RoomRemoved

__all__ = ["LobbyFeed"]


class LobbyFeed:
    """Fans the registry's changes out to subscribed connections."""

    def __init__(self, registry: RoomRegistry) -> None:
        self._registry = registry
        self._watching: dict[int, str | None] = {}  # member -> room type (None: every type)
        self._out: list[tuple[int, LobbyEvent]] = []
        self._unsubscribe = registry.subscribe(self._on_change)

    def subscribe(self, member: int, name: str | None = None) -> list[RoomListing]:
        """Watch rooms of type ``name`` (every type when None); returns the current list.
        Subscribing again replaces the previous subscription."""
        self._watching[member] = name
        return self._registry.listings(name)

    def unsubscribe(self, member: int) -> bool:
        return self._watching.pop(member, _NOT) is not _NOT

    @property
    def subscribers(self) -> frozenset[int]:
        return frozenset(self._watching)

    def events_to_send(self) -> list[tuple[int, LobbyEvent]]:
        """What to send since the last call, in order: ``(member, event)``."""
        out, self._out = self._out, []
        return out

    def close(self) -> None:
        self._unsubscribe()
        self._watching.clear()

    def _on_change(self, event: LobbyEvent) -> None:
        name = event.name if isinstance(event, RoomRemoved) else event.listing.name
        for member, watched in self._watching.items():
            if watched is None or watched == name:
                self._out.append((member, event))


_NOT = object()
