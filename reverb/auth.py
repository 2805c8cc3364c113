"""Authentication at the handshake: the ``authenticate`` hook's types and a ready HMAC token
authenticator.

``Server(authenticate=fn)`` calls ``fn(credentials, peer)`` with what the client passed as
``Client(credentials=...)`` (any JSON value, ``None`` if it sent none) and the peer's address.
It returns ``Accept(identity)`` — the identity reaches the game in its ``client_connected``
event and the client in ``Client.identity`` — or ``Reject(reason)``, which the client receives
in a ``close`` 3000 (docs/protocol.md §4.8). Nothing but the handshake is processed before
acceptance. The hook runs on the I/O thread: keep it quick (no network round trips).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Accept", "Authenticator", "HmacTokens", "Reject"]


@dataclass(frozen=True)
class Accept:
    """Let the client in as ``identity`` (any JSON value: a name, an account id, a dict)."""

    identity: Any = None


@dataclass(frozen=True)
class Reject:
    """Refuse the client; ``reason`` is sent to it."""

    reason: str = "authentication failed"


Authenticator = Callable[[Any, str], "Accept | Reject"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class HmacTokens:
    """Shared-secret tokens with an expiry: ``payload.signature``, both base64url.

    The payload is ``{"id": identity, "exp": unix_seconds}``; the signature is
    HMAC-SHA256(secret, payload) and is checked in constant time. Mint tokens where the secret
    lives (a login service, or the server itself), hand them to clients, and pass
    ``tokens.authenticate`` as the server's ``authenticate``.
    """

    def __init__(self, secret: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("use a secret of at least 16 bytes")
        self._secret = secret
        self._clock = clock

    def mint(self, identity: Any, ttl: float = 3600.0, *, now: float | None = None) -> str:
        """A token for ``identity`` valid for ``ttl`` seconds from ``now`` (default: the clock)."""
        issued = self._clock() if now is None else now
        payload = json.dumps({"id": identity, "exp": int(issued + ttl)}, separators=(",", ":"))
        body = _b64(payload.encode("utf-8"))
        return f"{body}.{self._sign(body)}"

    def verify(self, token: Any, *, now: float | None = None) -> Accept | Reject:
        """``Accept(identity)`` for a genuine unexpired token, else ``Reject`` with the reason."""
        if not isinstance(token, str) or token.count(".") != 1 or len(token) > 4096:
            return Reject("malformed token")
        body, signature = token.split(".")
        expected = self._sign(body).encode("ascii")
        if not hmac.compare_digest(expected, signature.encode("utf-8", "surrogatepass")):
            return Reject("invalid token signature")
        try:
            payload = json.loads(_unb64(body))
            identity, expires = payload["id"], payload["exp"]
        except (ValueError, KeyError, TypeError):
            return Reject("malformed token")
        if not isinstance(expires, int) or (self._clock() if now is None else now) >= expires:
            return Reject("token expired")
        return Accept(identity)

    def authenticate(self, credentials: Any, peer: str) -> Accept | Reject:
        """The ``Server(authenticate=...)`` hook: the client's credentials are the token."""
        return self.verify(credentials)

    def _sign(self, body: str) -> str:
        return _b64(
            hmac.new(self._secret, body.encode("ascii", "replace"), hashlib.sha256).digest()
        )
