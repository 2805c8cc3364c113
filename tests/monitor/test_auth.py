"""The inspector refuses whoever lacks the token, and page actions need more than a cookie."""

from __future__ import annotations

import json

import pytest

from tests.monitor.conftest import Game, Local, until

PATHS = [
    "/",
    "/app.js",
    "/style.css",
    "/metrics",
    "/api/overview",
    "/api/world",
    "/api/client/1",
    "/api/rpc",
    "/api/events?topic=overview",
    "/nothing",
]


@pytest.mark.parametrize("path", PATHS)
def test_no_token_is_refused(local: Local, path: str) -> None:
    status, _, body = local.get(path, auth=False)
    assert status == 401
    assert b"Crate" not in body and b"reverb_" not in body


@pytest.mark.parametrize("path", PATHS)
def test_wrong_token_is_refused(local: Local, path: str) -> None:
    wrong = local.monitor.token[:-1] + ("a" if local.monitor.token[-1] != "a" else "b")
    assert local.get(path, {"Authorization": f"Bearer {wrong}"}, auth=False)[0] == 403
    assert local.get(path, {"Cookie": f"reverb_monitor={wrong}"}, auth=False)[0] == 403
    sep = "&" if "?" in path else "?"
    assert local.get(f"{path}{sep}token={wrong}", auth=False)[0] == 403


def test_token_once_then_httponly_cookie(local: Local) -> None:
    status, headers, _ = local.get(f"/?token={local.monitor.token}", auth=False)
    assert status == 303
    assert headers["location"] == "/"  # the token leaves the address bar
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    pair = cookie.split(";")[0]
    status, headers, body = local.get("/", {"Cookie": pair}, auth=False)
    assert status == 200
    assert b"Reverb monitor" in body
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_bound_to_loopback_with_a_random_token(local: Local) -> None:
    assert local.monitor.host == "127.0.0.1"
    assert local.monitor.url.startswith(f"http://127.0.0.1:{local.monitor.port}/?token=")
    assert len(local.monitor.token) >= 32


def _post(target: Game | Local, member: int, headers: dict[str, str], body: bytes) -> int:
    return target.request("POST", f"/api/client/{member}/disconnect", body=body, headers=headers)[0]


def test_actions_need_token_origin_csrf_and_json(local: Local) -> None:
    origin = f"http://{local.netloc}"
    csrf = local.monitor.csrf
    body = json.dumps({"reason": "x"}).encode()
    good = {"Origin": origin, "X-Reverb-CSRF": csrf, "Content-Type": "application/json"}
    assert (
        local.request("POST", "/api/client/1/disconnect", body=body, headers=good, auth=False)[0]
        == 401
    )
    assert _post(local, 1, {**good, "Origin": "http://evil.example"}, body) == 403
    assert _post(local, 1, {k: v for k, v in good.items() if k != "Origin"}, body) == 403
    assert _post(local, 1, {**good, "X-Reverb-CSRF": "0" * 64}, body) == 403
    assert _post(local, 1, {k: v for k, v in good.items() if k != "X-Reverb-CSRF"}, body) == 403
    assert _post(local, 1, {**good, "Content-Type": "text/plain"}, body) == 415
    assert _post(local, 1, {**good}, b"x" * 5000) == 413
    assert _post(local, 1, good, body) == 404  # all checks passed; no client #1 connected


def test_disconnect_action_closes_the_client(any_game: Game) -> None:
    """On both I/O layers: an ``AsyncServer``'s client is closed through its event loop."""
    game = any_game
    proc, member = game.client()
    _other, other_member = game.client()
    _, _, index = game.request("GET", "/")
    csrf = index.split(b'name="csrf" content="')[1].split(b'"')[0].decode()
    headers = {"Origin": game.base, "X-Reverb-CSRF": csrf, "Content-Type": "application/json"}
    body = json.dumps({"reason": "cheating"}).encode()
    assert _post(game, member, {**headers, "X-Reverb-CSRF": "bad"}, body) == 403
    assert _post(game, member, headers, body) == 200
    line = proc.expect("DISCONNECTED ")
    assert line == "DISCONNECTED 1000 disconnected by operator: cheating"
    members = until(
        lambda: (
            (ids := [c["member"] for c in game.get_json("/api/overview")["clients"]])
            and member not in ids
            and ids
        ),
        what="client gone from the overview",
    )
    assert members == [other_member]
    # its page keeps its last figures and why it went
    page = game.get_json(f"/api/client/{member}")
    assert page["connected"] is False
    closes = [i for i in page["stats"]["incidents"] if i["kind"] == "closed"]
    assert closes[-1]["code"] == 1000
    assert closes[-1]["detail"] == "by this side: disconnected by operator: cheating"
    assert _post(game, member, headers, body) == 404  # gone: nothing to disconnect


def test_no_action_without_post_csrf_and_token(game: Game) -> None:
    """A link (GET), a token in the address, or a form post cannot disconnect anyone."""
    _proc, member = game.client()
    path = f"/api/client/{member}/disconnect"
    assert game.request("GET", path)[0] == 400  # actions are POST only: no such page
    _, _, index = game.request("GET", "/")
    csrf = index.split(b'name="csrf" content="')[1].split(b'"')[0].decode()
    good = {"Origin": game.base, "X-Reverb-CSRF": csrf, "Content-Type": "application/json"}
    body = json.dumps({"reason": "x"}).encode()
    status = game.request("POST", f"{path}?token={game.token}", body=body, headers=good, auth=False)
    assert status[0] == 401  # the token in the address is only exchanged on GET
    form = {**good, "Content-Type": "application/x-www-form-urlencoded"}
    assert _post(game, member, form, b"reason=x") == 415
    assert _post(game, member, {**good, "Origin": "null"}, body) == 403
    assert game.request("POST", f"/api/client/{member}/explode", body=body, headers=good)[0] == 404
    assert member in [c["member"] for c in game.get_json("/api/overview")["clients"]]


def test_live_streams_are_capped(local: Local) -> None:
    """Each open stream is a thread: past MAX_STREAMS the monitor answers 503."""
    import http.client

    from reverb.monitor._server import MAX_STREAMS

    conns = []
    try:
        for _ in range(MAX_STREAMS):
            conn = http.client.HTTPConnection(local.netloc, timeout=10)
            conn.request(
                "GET",
                "/api/events?topic=rpc",
                headers={"Authorization": f"Bearer {local.monitor.token}"},
            )
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.fp.readline().startswith(b"event: update")
            # The response owns the socket now (the stream ends with the connection):
            # keep it, or collecting it closes the stream and the server counts one fewer.
            conns.append(resp)
        assert local.get("/api/events?topic=rpc")[0] == 503
        assert local.monitor.observer.watchers == MAX_STREAMS
    finally:
        for resp in conns:
            resp.close()
