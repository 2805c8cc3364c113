"""Reverb: server-authoritative object replication and RPC over TCP for Python games.

The seed's API (``ReverbManager``, ``ReverbObject``, ``Server``, ``Client`` and the event
registries) sits on a sans-I/O core (``reverb.proto``, ``reverb.replication``) with two thin I/O
layers: ``reverb.threaded`` (blocking, the default) and ``reverb.aio`` (asyncio).
"""

from reverb.context import ReverbContext, ReverbSide
from reverb.errors import (
    ConnectionClosed,
    EncodeError,
    FrameTooLarge,
    HandshakeFailed,
    InvalidState,
    LocalProtocolError,
    RemoteProtocolError,
    ReverbError,
    RoomRefused,
    RoomTimeout,
    RpcError,
)
from reverb.interpolation import DEGREES, RADIANS, Field, on_change
from reverb.manager import ReverbManager
from reverb.objects import ReverbObject, expose, rpc_caller
from reverb.threaded import Client, Server

server_event_registry = ReverbManager.context.server_events
client_event_registry = ReverbManager.context.client_events
server_messages = ReverbManager.context.server_messages  # §14: @server_messages.on("chat")
client_messages = ReverbManager.context.client_messages

__version__ = "0.1.0"

__all__ = [
    "DEGREES",
    "RADIANS",
    "Client",
    "ConnectionClosed",
    "EncodeError",
    "Field",
    "FrameTooLarge",
    "HandshakeFailed",
    "InvalidState",
    "LocalProtocolError",
    "RemoteProtocolError",
    "ReverbContext",
    "ReverbError",
    "ReverbManager",
    "ReverbObject",
    "ReverbSide",
    "RoomRefused",
    "RoomTimeout",
    "RpcError",
    "Server",
    "__version__",
    "client_event_registry",
    "client_messages",
    "expose",
    "on_change",
    "rpc_caller",
    "server_event_registry",
    "server_messages",
]
