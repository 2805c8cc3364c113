"""Rooms and matchmaking (issue 12; protocol §17; guide "Rooms and a lobby"): many game
sessions in one server. Layout:

- ``room``: ``Room``, the base class of room types, each room owning a ``ReverbContext``;
- ``matchmaker``: ``Matchmaker`` (join_or_create / create / join / join_by_id, seat
  reservations, leave, switch, dispose, the tick loop) and ``JoinRequest``;
- ``registry``: the ``RoomRegistry`` and ``Presence`` interfaces with in-process versions,
  ``RoomListing`` and the lobby events;
- ``lobby``: ``LobbyFeed``, the live room list for subscribed connections;
- ``scheduler``: ``TickScheduler``, independent tick rates on one loop, with per-room stats;
- ``service``: ``RoomService``, the matchmaker on the wire (``server.rooms``);
- ``client``: ``RoomHandle``, ``Lobby``, ``RoomInfo``, what a client's room requests return.
"""

from reverb.rooms._types import (
    Accept,
    Joined,
    Left,
    Refusal,
    Refused,
    Reject,
    Reservation,
    RoomClient,
)
from reverb.rooms.client import Lobby, RoomHandle, RoomInfo
from reverb.rooms.lobby import LobbyFeed
from reverb.rooms.matchmaker import RESERVATION_TTL, JoinRequest, Matchmaker, RoomOutput
from reverb.rooms.registry import (
    LobbyEvent,
    LocalPresence,
    LocalRegistry,
    Presence,
    RoomAdded,
    RoomChanged,
    RoomListing,
    RoomRegistry,
    RoomRemoved,
)
from reverb.rooms.room import Room
from reverb.rooms.scheduler import TickScheduler, TickStats

__all__ = [
    "RESERVATION_TTL",
    "Accept",
    "JoinRequest",
    "Joined",
    "Left",
    "Lobby",
    "LobbyEvent",
    "LobbyFeed",
    "LocalPresence",
    "LocalRegistry",
    "Matchmaker",
    "Presence",
    "Refusal",
    "Refused",
    "Reject",
    "Reservation",
    "Room",
    "RoomAdded",
    "RoomChanged",
    "RoomClient",
    "RoomHandle",
    "RoomInfo",
    "RoomListing",
    "RoomOutput",
    "RoomRegistry",
    "RoomRemoved",
    "TickScheduler",
    "TickStats",
]
