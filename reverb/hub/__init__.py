"""What both I/O layers do with sessions, sans I/O: membership ids, call bookkeeping, encoding
broadcasts once per frame limit. The threaded and asyncio layers only move bytes and events.

``common`` holds the deadline heap and the slow-consumer rule, ``server`` the ``ServerHub``,
``client`` the ``ClientHub``; this package re-exports their public names."""

from reverb.hub.client import ClientHub, ClientStep, app_message
from reverb.hub.common import (
    COMPRESS_LEVEL,
    COMPRESS_MIN,
    HOUSEKEEPING_IDLE,
    HOUSEKEEPING_INTERVAL,
    MAX_UNREAD,
    SHED_REASONS,
    UNREAD_REASON,
    Deadlines,
    sheds,
)
from reverb.hub.server import DEFAULT_ROOM, ROOM_SCOPED, ServerHub
from reverb.options import MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP, MAX_PENDING_CALLS, ServerOptions

__all__ = [
    "COMPRESS_LEVEL",
    "COMPRESS_MIN",
    "DEFAULT_ROOM",
    "HOUSEKEEPING_IDLE",
    "HOUSEKEEPING_INTERVAL",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "MAX_PENDING_CALLS",
    "MAX_UNREAD",
    "ROOM_SCOPED",
    "SHED_REASONS",
    "UNREAD_REASON",
    "ClientHub",
    "ClientStep",
    "Deadlines",
    "ServerHub",
    "ServerOptions",
    "app_message",
    "sheds",
]
