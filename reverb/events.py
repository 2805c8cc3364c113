"""Event registries: ``@registry.on_event("name")`` handlers for connection and sync events.

Server events (run inside ``server_sync()`` on the game thread):

================================  ==========================================
``client_connected``              ``(client_id, identity)``: a client completed the handshake
                                  (``identity``: from the authenticate hook, else None)
``client_disconnected``           ``(client_id, code, reason)``: it left, was dropped or timed out
                                  (a "resume" client: when its grace ends, reason
                                  ``"resume grace expired"``)
``client_dropped``                ``(client_id, code, reason)``: a "resume" client's connection
                                  dropped; its membership is held for the grace (§18)
``client_resumed``                ``(client_id)``: it came back within the grace (§18)
``sync_error``                    ``(obj, error)``: a field of ``obj`` cannot be encoded
                                  (``error``: the ``EncodeError``); the object is withheld
                                  from clients until it can be. Fired once per entry into
                                  that state (docs/guide.md §3)
================================  ==========================================

Client events (run on the thread that calls ``client_sync()`` / ``get_all_ro_by_type()``;
``connected`` runs inside ``connect()``):

================================  ==========================================
``connected``                     ``(membership_id)``
``disconnected``                  ``(code, reason)`` (close codes: docs/protocol.md §10)
``synced``                        ``(tick)``: a whole sync was applied (alias ``server_sync``)
``object_spawned``                ``(obj, reentered)``: a replica was created; ``reentered``:
                                  it had left the client's view before (§16.4)
``object_despawned``              ``(obj, reason)``: a replica was removed; ``reason`` is
                                  ``"destroyed"`` or ``"left_view"`` (§16.3)
``rpc_error``                     ``(error)``: an ``RpcError`` answered one of this client's calls
``message_error``                 ``(name, code, reason)``: the server could not handle one of
                                  this client's messages (docs/protocol.md §14.4)
``connection_lost``               ``(code, reason)``: with ``reconnect``, the link dropped;
                                  reconnecting follows (guide "Reconnection and resume")
``reconnecting``                  ``(attempt)``: attempt ``n`` (1-based) starts
``reconnected``                   ``(membership_id)``: resumed as the same member, replicas kept
``resume_failed``                 ``(reason)``: given up (``"expired"``, ``"bad token"``,
                                  ``"attempts exhausted"``, ...); ``disconnected`` follows
``room_joined``                   ``(room_id, name)``: this client is now in that room (§17)
``room_left``                     ``(room_id, consented, reason)``: it left it (asked, switched
                                  or the room was disposed); its replicas were despawned
``room_event``                    ``(event, listing)``: a watched lobby changed: ``"added"``,
                                  ``"changed"`` or ``"removed"`` (§17.6)
================================  ==========================================

A handler may take fewer parameters than its event offers: it receives the leading ones.
An exception in a handler is logged and does not stop the others or the game loop.

Every ``ReverbContext`` has its own two registries, ``ctx.server_events`` and
``ctx.client_events``, and fires only those. ``reverb.server_event_registry`` and
``reverb.client_event_registry`` are the default context's (``ReverbManager.context``): a
handler registered there never runs for another context.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["CLIENT_EVENTS", "SERVER_EVENTS", "EventRegistry"]

logger = logging.getLogger("reverb")

SERVER_EVENTS = frozenset(
    {"client_connected", "client_disconnected", "sync_error", "client_dropped", "client_resumed"}
)
CLIENT_EVENTS = frozenset(
    {
        "connected",
        "disconnected",
        "synced",
        "object_spawned",
        "object_despawned",
        "rpc_error",
        "message_error",
        "connection_lost",
        "reconnecting",
        "reconnected",
        "resume_failed",
        "room_joined",
        "room_left",
        "room_event",
    }
)
_ALIASES = {"server_sync": "synced"}  # the seed's name for the client's sync event

F = TypeVar("F", bound=Callable[..., Any])


def _arity(func: Callable[..., Any]) -> int | None:
    """How many positional arguments ``func`` takes, or None if it takes any number."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


class EventRegistry:
    """Handlers by event name; the names are fixed so that a typo fails at decoration time."""

    def __init__(self, names: frozenset[str], side: str) -> None:
        self.names = names
        self.side = side
        self._handlers: dict[str, list[tuple[Callable[..., Any], int | None]]] = {}

    def on_event(self, name: str) -> Callable[[F], F]:
        """Decorator: run the function when ``name`` happens."""
        name = _ALIASES.get(name, name)
        if name not in self.names:
            raise ValueError(
                f"unknown {self.side} event {name!r}; known events: {', '.join(sorted(self.names))}"
            )

        def decorate(func: F) -> F:
            self._handlers.setdefault(name, []).append((func, _arity(func)))
            return func

        return decorate

    def remove(self, name: str, func: Callable[..., Any]) -> None:
        name = _ALIASES.get(name, name)
        self._handlers[name] = [h for h in self._handlers.get(name, []) if h[0] != func]

    def clear(self) -> None:
        self._handlers.clear()

    def fire(self, name: str, *args: Any) -> None:
        for func, arity in list(self._handlers.get(name, ())):
            try:
                func(*(args if arity is None else args[:arity]))
            except Exception:
                logger.exception("%s event handler %r for %r raised", self.side, func, name)
