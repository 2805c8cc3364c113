"""Reverb's exceptions: one root, local misuse apart from remote misbehaviour.

::

    ReverbError
    ├── LocalProtocolError      this program misused the API or tried to send something illegal
    │   ├── InvalidState        the call is not allowed in the current state (side, connection)
    │   └── EncodeError         a value cannot be put on the wire (names the object and attribute)
    ├── RemoteProtocolError     the peer sent something the protocol forbids (carries a close code)
    │   └── FrameTooLarge       a frame header announced more than the maximum frame size
    ├── ConnectionClosed        the connection ended; carries the close code and reason
    │   └── HandshakeFailed     the server refused or never answered the handshake
    └── RpcError                a remote call failed; carries the protocol's error code

Raising ``RpcError("message")`` inside an exposed method refuses the call: the caller receives
an ``RpcError`` with code ``"rejected"`` and that message (docs/protocol.md §8.3).

The protocol's codes are defined here once: ``CloseCode`` (the ``close`` codes of §10.2),
``RpcCode`` (the ``rpc_error`` codes of §8.3) and ``MessageCode`` (the ``message_error`` codes
of §14.4, which reuse the RPC codes' names where they mean the same).
"""

from __future__ import annotations

import enum

__all__ = [
    "CloseCode",
    "ConnectionClosed",
    "EncodeError",
    "FrameTooLarge",
    "HandshakeFailed",
    "InvalidState",
    "LocalProtocolError",
    "MessageCode",
    "RemoteProtocolError",
    "ReverbError",
    "RoomRefused",
    "RoomTimeout",
    "RpcCode",
    "RpcError",
]


class CloseCode(enum.IntEnum):
    """Close codes (§10.2)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_VERSION = 1003
    ABNORMAL = 1006
    INVALID_PAYLOAD = 1007
    POLICY = 1008
    TOO_LARGE = 1009
    INTERNAL_ERROR = 1011
    SLOW_CONSUMER = 1013
    TLS_FAILURE = 1015
    UNAUTHORIZED = 3000
    CONTRACT_MISMATCH = 3001
    RESUME_BAD_TOKEN = 3002  # §18.4: the membership is held but the token is not its own
    RESUME_EXPIRED = 3003  # §18.4: the membership is not held (grace over, unknown, live)


class RpcCode(str, enum.Enum):
    """Error codes of ``rpc_error`` (§8.3). A member is the string itself: it equals, formats
    and encodes as its value, so ``RpcError.code`` and the wire are plain strings as before."""

    UNKNOWN_OBJECT = "unknown_object"
    NOT_EXPOSED = "not_exposed"
    NOT_OWNER = "not_owner"
    BAD_ARGUMENTS = "bad_arguments"
    REJECTED = "rejected"
    HANDLER_ERROR = "handler_error"
    BAD_RETURN = "bad_return"
    OVERLOADED = "overloaded"
    RATE_LIMITED = "rate_limited"
    NOT_RUN = "not_run"  # §18.6: the call did not run and will not; sending it again is safe

    def __str__(self) -> str:
        return str.__str__(self)


class MessageCode(str, enum.Enum):
    """Error codes of ``message_error`` (§14.4); like ``RpcCode``, each member is its string."""

    UNKNOWN_MESSAGE = "unknown_message"
    REJECTED = RpcCode.REJECTED.value
    HANDLER_ERROR = RpcCode.HANDLER_ERROR.value
    OVERLOADED = RpcCode.OVERLOADED.value
    RATE_LIMITED = RpcCode.RATE_LIMITED.value

    def __str__(self) -> str:
        return str.__str__(self)


class ReverbError(Exception):
    """Root of every exception Reverb raises on purpose."""


class LocalProtocolError(ReverbError):
    """This side misused the API, or tried to send a message the protocol forbids."""


class InvalidState(LocalProtocolError):
    """The operation is not allowed in the current state."""


class EncodeError(LocalProtocolError):
    """A value cannot be encoded as JSON under the rules of docs/protocol.md §3.4."""


class RemoteProtocolError(ReverbError):
    """The peer violated the protocol; ``code`` is the close code that answers it (§10)."""

    def __init__(self, message: str, code: CloseCode | int) -> None:
        super().__init__(message)
        self.code = code


class FrameTooLarge(RemoteProtocolError):
    """A frame header announced more bytes than the maximum frame size (§2.3)."""


class ConnectionClosed(ReverbError):
    """The connection is closed; ``code`` and ``reason`` say how (§10)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(
            f"connection closed ({code}): {reason}" if reason else f"connection closed ({code})"
        )
        self.code = code
        self.reason = reason


class HandshakeFailed(ConnectionClosed):
    """The handshake did not complete: refused by the server, or no answer in time."""


class RpcError(ReverbError):
    """A remote call failed with ``code`` (§8.3); ``message`` explains it."""

    def __init__(self, message: str, code: str = RpcCode.REJECTED) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RoomRefused(ReverbError):
    """A room request was refused (protocol §17.7): ``code`` for programs (``"full"``,
    ``"locked"``, ``"unknown_room"``, ``"already_in_room"``, ``"rejected"``, ...; the list is
    ``reverb.rooms.Refusal``), ``reason`` for players."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class RoomTimeout(ReverbError, TimeoutError):
    """A room request got no answer within its deadline (the connection is slow or gone)."""
