"""Named application messages (docs/protocol.md §14), sans I/O: handler registries and dispatch.

A server registers handlers with ``@ctx.server_messages.on("chat")`` — ``fn(sender, data)``,
``sender`` being the membership id the server derived from the connection (§3.5) — and a client
with ``@ctx.client_messages.on("game_over")`` — ``fn(data)``. ``reverb.server_messages`` and
``reverb.client_messages`` are the default context's registries (``ReverbManager.context``),
like ``server_event_registry``. Handlers run on the game thread: a server's inside
``server_sync()`` / ``server_step()``, in arrival order with the RPCs of the same client; a
client's inside ``client_sync()``, in the order the server sent them, between the syncs they
were sent between (§14.5).

On a server, a message whose name has no handler is answered ``message_error``
``unknown_message``; a handler that raises ``RpcError("why")`` refuses it (``rejected``, the
reason ``why``); any other exception is logged (logger ``"reverb"``) and answered
``handler_error`` with no internals (§8.4). The connection stays open in every case. On a
client, a message with no handler is logged once per name and dropped; an exception in a
handler is logged and does not stop the others or the game loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from reverb.errors import MessageCode, RpcError
from reverb.proto import messages as m
from reverb.replication.rpc import current_caller

__all__ = ["MessageRegistry"]

logger = logging.getLogger("reverb")

F = TypeVar("F", bound=Callable[..., Any])


class MessageRegistry:
    """Handlers by message name: one per name (a later registration replaces it)."""

    def __init__(self, side: str) -> None:
        self.side = side
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._unhandled: set[str] = set()  # names already logged as having no handler

    def on(self, name: str) -> Callable[[F], F]:
        """Decorator: handle messages called ``name`` (``fn(sender, data)`` on a server,
        ``fn(data)`` on a client)."""
        if type(name) is not str or not 0 < len(name) <= m.MAX_MESSAGE_NAME:
            raise ValueError(
                f"a message name is a string of 1 to {m.MAX_MESSAGE_NAME} characters, not {name!r}"
            )

        def decorate(func: F) -> F:
            self._handlers[name] = func
            self._unhandled.discard(name)
            return func

        return decorate

    def remove(self, name: str) -> None:
        self._handlers.pop(name, None)

    def clear(self) -> None:
        self._handlers.clear()
        self._unhandled.clear()

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def handle_server(self, sender: int, message: m.AppMessage) -> m.MessageError | None:
        """Run the handler of a client's message (§14.4); the ``message_error`` to answer
        with, or None when it ran."""
        data = None if message.data is m.ABSENT else message.data
        handler = self._handlers.get(message.name)
        if handler is None:
            logger.info("client #%d sent message %r: no handler", sender, message.name)
            return _error(message.name, MessageCode.UNKNOWN_MESSAGE, "no handler for this name")
        token = current_caller.set(sender)  # rpc_caller() answers inside the handler too
        try:
            handler(sender, data)
        except RpcError as exc:
            return _error(message.name, MessageCode.REJECTED, exc.message[:400])
        except Exception:
            logger.exception("message handler for %r from client #%d raised", message.name, sender)
            return _error(message.name, MessageCode.HANDLER_ERROR, "the handler failed")
        finally:
            current_caller.reset(token)
        return None

    def handle_client(self, message: m.AppMessage) -> None:
        """Run the handler of a server's message (§14.5); never raises."""
        data = None if message.data is m.ABSENT else message.data
        handler = self._handlers.get(message.name)
        if handler is None:
            if message.name not in self._unhandled:
                self._unhandled.add(message.name)
                logger.warning("message %r from the server has no handler: dropped", message.name)
            return
        try:
            handler(data)
        except Exception:
            logger.exception("client message handler for %r raised", message.name)


def _error(name: str, code: MessageCode, reason: str) -> m.MessageError:
    return m.MessageError(name=name, code=code, reason=reason)
