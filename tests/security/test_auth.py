"""Authentication at the handshake (docs/protocol.md §4.8, reverb/auth.py): a real threaded
server and clients on loopback, raw peers for what a real client never sends, and
``HmacTokens`` unit tests with time as an input."""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from reverb import HandshakeFailed, Server
from reverb.auth import Accept, HmacTokens, Reject
from tests.hostile.raw import Raw
from tests.security.conftest import EXECUTED, Ship

pytestmark = pytest.mark.timeout(30)

SECRET = b"a test secret of 32 bytes, no more"
OTHER = b"another secret, also long enough"
NOW = 1_700_000_000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def spec_token(secret: bytes, payload: dict[str, Any]) -> str:
    """A token built from the text of §4.8 alone, not with ``HmacTokens``."""
    body = b64(json.dumps(payload).encode())
    return body + "." + b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


# -- HmacTokens: time is an input -----------------------------------------------------------


def test_a_fresh_token_verifies_until_it_expires() -> None:
    tokens = HmacTokens(SECRET)
    token = tokens.mint({"account": 42, "name": "ada"}, ttl=60, now=NOW)
    assert tokens.verify(token, now=NOW) == Accept({"account": 42, "name": "ada"})
    assert tokens.verify(token, now=NOW + 59) == Accept({"account": 42, "name": "ada"})
    assert tokens.verify(token, now=NOW + 60) == Reject("token expired")
    assert tokens.verify(token, now=NOW + 10**6) == Reject("token expired")


def test_the_clock_is_injectable() -> None:
    clock = [NOW]
    tokens = HmacTokens(SECRET, clock=lambda: clock[0])
    token = tokens.mint("ada", ttl=10)
    assert tokens.verify(token) == Accept("ada")
    clock[0] += 10
    assert tokens.verify(token) == Reject("token expired")


def test_a_token_built_from_the_spec_verifies() -> None:
    tokens = HmacTokens(SECRET)
    assert tokens.verify(spec_token(SECRET, {"id": "ada", "exp": int(NOW) + 5}), now=NOW) == (
        Accept("ada")
    )
    minted = tokens.mint("ada", ttl=5, now=NOW)
    body, signature = minted.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert payload == {"id": "ada", "exp": int(NOW) + 5}
    expected = b64(hmac.new(SECRET, body.encode(), hashlib.sha256).digest())
    assert signature == expected


def forged_tokens() -> dict[str, Callable[[HmacTokens], Any]]:
    def tampered_payload(tokens: HmacTokens) -> str:
        _, signature = tokens.mint("ada", ttl=60, now=NOW).split(".")
        body = b64(json.dumps({"id": "admin", "exp": int(NOW) + 60}).encode())
        return f"{body}.{signature}"

    def flipped_signature(tokens: HmacTokens) -> str:
        body, signature = tokens.mint("ada", ttl=60, now=NOW).split(".")
        return f"{body}.{('A' if signature[0] != 'A' else 'B')}{signature[1:]}"

    return {
        "other-secret": lambda t: HmacTokens(OTHER).mint("ada", ttl=60, now=NOW),
        "tampered-payload": tampered_payload,
        "flipped-signature": flipped_signature,
        "empty-signature": lambda t: t.mint("ada", ttl=60, now=NOW).split(".")[0] + ".",
        "truncated-signature": lambda t: t.mint("ada", ttl=60, now=NOW)[:-3],
    }


@pytest.mark.parametrize("make", forged_tokens().values(), ids=forged_tokens().keys())
def test_a_forged_token_is_rejected_for_its_signature(make: Callable[[HmacTokens], Any]) -> None:
    tokens = HmacTokens(SECRET)
    assert tokens.verify(make(tokens), now=NOW) == Reject("invalid token signature")


@pytest.mark.parametrize(
    "token",
    [None, 42, ["a.b"], {"id": 1}, "", "no-dot", "a.b.c", "x" * 5000 + ".y", "é.é"],
    ids=["none", "int", "list", "dict", "empty", "no-dot", "two-dots", "huge", "non-ascii"],
)
def test_garbage_is_malformed_or_badly_signed_never_an_exception(token: Any) -> None:
    verdict = HmacTokens(SECRET).verify(token, now=NOW)
    assert verdict in (Reject("malformed token"), Reject("invalid token signature"))


@pytest.mark.parametrize(
    "payload",
    [{"id": "ada"}, {"exp": int(NOW) + 60}, ["ada"], "ada", {"id": "ada", "exp": "never"}],
    ids=["no-exp", "no-id", "list", "string", "exp-not-int"],
)
def test_a_genuine_signature_over_a_bad_payload_is_refused(payload: Any) -> None:
    verdict = HmacTokens(SECRET).verify(spec_token(SECRET, payload), now=NOW)
    assert isinstance(verdict, Reject)
    assert verdict.reason in ("malformed token", "token expired")


def test_a_signed_body_that_is_not_base64_json_is_malformed() -> None:
    body = "!!!!"
    token = body + "." + b64(hmac.new(SECRET, body.encode(), hashlib.sha256).digest())
    assert HmacTokens(SECRET).verify(token, now=NOW) == Reject("malformed token")


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        HmacTokens(b"short")


def test_signatures_are_compared_in_constant_time() -> None:
    # Read, not mocked: the comparison is hmac.compare_digest, whose time does not depend on
    # where the first differing byte is. Behaviourally, every wrong signature, whatever prefix
    # it shares with the right one, gets the same answer.
    assert "hmac.compare_digest(" in inspect.getsource(HmacTokens.verify)
    tokens = HmacTokens(SECRET)
    body, signature = tokens.mint("ada", ttl=60, now=NOW).split(".")
    for shared in range(len(signature)):
        wrong = signature[:shared] + ("A" if signature[shared] != "A" else "B")
        wrong += signature[shared + 1 :]
        assert tokens.verify(f"{body}.{wrong}", now=NOW) == Reject("invalid token signature")


# -- over the wire ---------------------------------------------------------------------------


def test_a_fresh_token_lets_the_client_in_with_its_identity(make_game: Any) -> None:
    tokens = HmacTokens(SECRET)
    game = make_game(authenticate=tokens.authenticate)
    client = game.client(credentials=tokens.mint({"account": 7, "name": "ada"}, ttl=60))
    client.connect()
    assert client.identity == {"account": 7, "name": "ada"}
    game.until(lambda: game.connected)
    assert game.connected == [(client.member, {"account": 7, "name": "ada"})]
    game.serves(client)
    assert game.server.stats["auth_rejected"] == 0


REFUSALS: dict[str, tuple[Callable[[HmacTokens], Any], str]] = {
    "expired": (lambda t: t.mint("ada", ttl=10, now=time.time() - 60), "token expired"),
    "forged": (lambda t: forged_tokens()["flipped-signature"](t), "invalid token signature"),
    "other-secret": (lambda t: HmacTokens(OTHER).mint("ada", ttl=60), "invalid token signature"),
    "garbage-string": (lambda t: "garbage", "malformed token"),
    "garbage-object": (lambda t: {"user": "admin", "password": "hunter2"}, "malformed token"),
    "none": (lambda t: None, "malformed token"),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_bad_credentials_are_refused_with_3000_and_the_reason(
    make_game: Any, case: tuple[Callable[[HmacTokens], Any], str]
) -> None:
    make, reason = case
    tokens = HmacTokens(SECRET)
    game = make_game(authenticate=tokens.authenticate)
    client = game.client(credentials=make(tokens))
    with pytest.raises(HandshakeFailed) as refused:
        client.connect()
    assert (refused.value.code, refused.value.reason) == (3000, reason)
    assert client.member is None and client.identity is None
    assert game.server.stats["auth_rejected"] == 1
    game.sctx.serve()
    assert game.connected == [] and game.server.members == []
    good = game.client(credentials=tokens.mint("bob", ttl=60))
    good.connect()
    game.serves(good)


@pytest.mark.parametrize("before", ["rejected-hello", "no-hello"])
def test_nothing_is_processed_before_acceptance(make_game: Any, before: str) -> None:
    tokens = HmacTokens(SECRET)
    game = make_game(authenticate=tokens.authenticate, handshake_timeout=1.0)
    with game.sctx.activate():
        ship = Ship(5)  # hail() may be called by anyone, once connected
    EXECUTED.clear()
    raw = Raw(game.port)
    rpc = {"type": "rpc", "id": 1, "uid": ship.uid, "method": "hail", "args": []}
    if before == "rejected-hello":
        raw.send({"type": "hello", "version": 1, "auth": "garbage"}, rpc, rpc)
    else:
        raw.send(rpc)
    messages = raw.drain(timeout=5)
    raw.close()
    for _ in range(5):
        game.step()
    assert [msg["type"] for msg in messages] == ["close"], messages
    assert messages[0]["code"] == (3000 if before == "rejected-hello" else 1002)
    assert EXECUTED == []
    assert game.server.stats["auth_rejected"] == (1 if before == "rejected-hello" else 0)
    assert game.connected == []


def test_a_hook_can_refuse_with_its_own_reason(make_game: Any) -> None:
    seen: list[tuple[Any, str]] = []

    def authenticate(credentials: Any, peer: str) -> Accept | Reject:
        seen.append((credentials, peer))
        return Reject("banned") if credentials == "mallory" else Accept(credentials.upper())

    game = make_game(authenticate=authenticate)
    with pytest.raises(HandshakeFailed) as refused:
        game.client(credentials="mallory").connect()
    assert (refused.value.code, refused.value.reason) == (3000, "banned")
    client = game.client(credentials="alice")
    client.connect()
    assert client.identity == "ALICE"
    assert seen == [("mallory", "127.0.0.1"), ("alice", "127.0.0.1")]


class Boom(Exception):
    pass


@pytest.mark.parametrize(
    "verdict",
    [Boom("secret detail"), True, "ok", Accept(object()), Accept(float("nan"))],
    ids=["raises", "true", "string", "unencodable-identity", "nan-identity"],
)
def test_a_broken_hook_is_a_rejection_and_the_server_survives(make_game: Any, verdict: Any) -> None:
    def authenticate(credentials: Any, peer: str) -> Any:
        if credentials == "good":
            return Accept("good")
        if isinstance(verdict, Exception):
            raise verdict
        return verdict

    game = make_game(authenticate=authenticate)
    with pytest.raises(HandshakeFailed) as refused:
        game.client(credentials="bad").connect()
    assert (refused.value.code, refused.value.reason) == (3000, "authentication error")
    assert "secret detail" not in refused.value.reason
    client = game.client(credentials="good")
    client.connect()
    game.serves(client)


def test_without_a_hook_credentials_are_ignored_and_no_identity_is_sent(make_game: Any) -> None:
    game = make_game()
    raw = Raw(game.port)
    welcome = raw.hello(auth={"token": "whatever"}, identity="admin", member=999)
    assert "identity" not in welcome and welcome["member"] != 999
    raw.close()


def test_an_identity_claimed_in_hello_is_not_the_identity(make_game: Any) -> None:
    game = make_game(authenticate=lambda credentials, peer: Accept("assigned"))
    raw = Raw(game.port)
    welcome = raw.hello(auth="x", identity="admin", member=999)
    assert welcome["identity"] == "assigned" and welcome["member"] != 999
    raw.close()


def test_the_server_option_is_keyword_only() -> None:
    assert "authenticate" in inspect.signature(Server).parameters
    assert inspect.signature(Server).parameters["authenticate"].kind is (
        inspect.Parameter.KEYWORD_ONLY
    )


def test_non_ascii_credentials_get_a_token_reason_not_a_hook_error(make_game: Any) -> None:
    tokens = HmacTokens(SECRET)
    game = make_game(authenticate=tokens.authenticate)
    with pytest.raises(HandshakeFailed) as refused:
        game.client(credentials="é.é").connect()
    assert refused.value.code == 3000
    assert refused.value.reason in ("malformed token", "invalid token signature")
