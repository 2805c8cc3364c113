"""``Monitor``: the inspector and ``/metrics`` over HTTP, on a background thread.

Opt-in, bound to loopback by default, and closed to anyone without the token: ``?token=`` once
(answered with an HttpOnly, SameSite=Strict cookie and a redirect that drops it from the
address), the cookie afterwards, or ``Authorization: Bearer`` for scrapers. Actions (POST)
also need the page's CSRF token in a header, a JSON body and a same-origin ``Origin``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import http.cookies
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from reverb.errors import InvalidState
from reverb.monitor._metrics import exposition
from reverb.monitor._observer import Observer, describe_object
from reverb.monitor._state import ServerView, stats_json

__all__ = ["Monitor"]

logger = logging.getLogger("reverb")

COOKIE = "reverb_monitor"
SSE_INTERVAL = 0.5  # s between live updates: a person reads a table at this rate at most
MAX_STREAMS = 16  # live streams at once: a few people watching, not a thread per crawler
SSE_MAX_SECONDS = 3600.0  # a stream ends after this; the browser's EventSource reconnects
MAX_BODY = 4096  # bytes: an action's JSON body is a reason string
FRAMES_SHOWN = 100
MAX_ROOM_ID = 100  # characters of a room id a page may ask for
# §9.1: while a monitor runs, a server that does not time its clients' round trips pings
# each one this often (one small frame each way; quiet clients get heartbeats anyway)
RTT_INTERVAL = 2.0
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


class Monitor:
    """An HTTP inspector and Prometheus endpoint for a running ``Server``.

    ``Monitor(server).start()`` installs the observer (the server's hook points start
    recording), binds ``host:port`` (loopback, a free port by default) and serves from a
    background thread; ``url`` carries the token. ``stop()`` undoes all of it.

    ``rtt_interval``: a server started without its own ``rtt_interval`` pings every client
    this often while the monitor runs, to show round-trip times (§9.1); None leaves it alone.
    """

    def __init__(
        self,
        server: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        *,
        observer: Observer | None = None,
        rtt_interval: float | None = RTT_INTERVAL,
    ) -> None:
        self.server = server
        self.rtt_interval = rtt_interval
        self._probing = False  # the monitor turned the server's RTT pings on
        self.host = host
        self.requested_port = port
        self.token = token if token is not None else secrets.token_urlsafe(24)
        self.csrf = hmac.new(
            self.token.encode(), b"reverb-monitor-csrf", hashlib.sha256
        ).hexdigest()
        self.observer = observer if observer is not None else Observer()
        self.view = ServerView(server)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise InvalidState("the monitor is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The overview page's address, token included (treat it as a password)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?{urlencode({'token': self.token})}"

    def start(self) -> Monitor:
        if self._httpd is not None:
            raise InvalidState("the monitor is already started")
        if self.host not in ("127.0.0.1", "::1", "localhost"):
            logger.warning(
                "monitor bound to %s: anyone who can reach it and has the token controls "
                "it; prefer loopback behind an SSH tunnel or a TLS proxy (docs/monitor.md)",
                self.host,
            )
        handler = type("Handler", (_Handler,), {"monitor": self})
        httpd = ThreadingHTTPServer((self.host, self.requested_port), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._stopping.clear()
        self.server.hub.observer = self.observer
        self.server.context.observer = self.observer
        self._probe(self.rtt_interval)
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="reverb-monitor"
        )
        self._thread.daemon = True
        self._thread.start()
        logger.info("monitor: %s", self.url)
        return self

    def stop(self) -> None:
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()
        if self.server.hub.observer is self.observer:
            self.server.hub.observer = None
        if self.server.context.observer is self.observer:
            self.server.context.observer = None
        if self._probing:
            self._probe(None)
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
        self._httpd = None
        self._thread = None

    def _probe(self, interval: float | None) -> None:
        """Turn the server's RTT pings on (``interval``) or back off (None): for the
        sessions to come and those open now (an attribute each reads at its next check)."""
        hub = self.server.hub
        if interval is not None and hub.options.rtt_interval is not None:
            return  # the server times round trips itself
        if interval is None and not self._probing:
            return
        self._probing = interval is not None
        hub.options = dataclasses.replace(hub.options, rtt_interval=interval)

        def apply() -> None:
            for session in self.server.hub.members.values():
                session.rtt_interval = interval

        try:
            self.view.on_server(apply)
        except TimeoutError:  # the loop is blocked: new sessions get it, these may not
            logger.warning("monitor: could not reach the server's loop to set rtt_interval")

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the pages read -----------------------------------------------------------------

    def world(self, room: str | None = None) -> dict[str, Any]:
        """The world as last synced, with owner and who holds each object: the server's
        own (the default room), or the room ``room``'s (§17) when the server has rooms.
        ``rooms``: the ids a page may choose from (None: no room types defined)."""
        rooms = self.view.room_ids()
        shown: str | None
        if rooms is None or room is None or room in ("", "default"):
            shown = "default" if rooms is not None else None
            snap = self.observer.fresh_snapshot(timeout=1.0)
            watched = True
        else:
            shown = room[:MAX_ROOM_ID]
            watched, snap = self.observer.fresh_room_snapshot(shown, timeout=1.0)
            if shown not in rooms:
                rooms.append(shown)  # beyond the cap, or gone: the page still names it
        head: dict[str, Any] = {"room": shown, "rooms": rooms, "watched": watched}
        if snap is None:
            return head | {
                "tick": None,
                "objects": [],
                "peers": [],
                "age": None,
                "truncated": False,
            }
        seen_by: dict[int, list[int]] = {}
        for member, uids in sorted(snap.held.items()):
            for uid in uids:
                seen_by.setdefault(uid, []).append(member)
        objects = []
        for entry in snap.objects:
            row = describe_object(entry)
            row["seen_by"] = seen_by.get(entry[0], [])
            objects.append(row)
        return head | {
            "tick": snap.tick,
            "time": snap.wall,
            "age": round(time.monotonic() - snap.at, 3),
            "objects": objects,
            "peers": sorted(snap.peers),
            "truncated": snap.truncated,
        }

    def overview(self) -> dict[str, Any]:
        data = self.view.overview()
        counters = self.observer.client_counters()
        snap = self.observer.fresh_snapshot(timeout=0.5)
        for client in data["clients"]:
            seen = counters.get(client["member"], {})
            client["app_frames_sent"] = seen.get("frames_sent", 0)  # while the monitor runs
            client["sync_bytes_sent"] = seen.get("sync_bytes_sent", 0)
            if "view_size" in client:
                continue  # a client of another room (§17): read from that room's world
            held = snap.held.get(client["member"]) if snap is not None else None
            client["view_size"] = len(held) if held is not None else 0
        data["monitor"] = {
            "frames_held_bytes": self.observer.held_bytes(),
            "watchers": self.observer.watchers,
            "tick_seconds": self.observer.last_tick_seconds,
        }
        self.observer.forget_departed(frozenset(c["member"] for c in data["clients"]))
        return data

    def client(self, member: int, query: str = "", kind: str = "") -> dict[str, Any]:
        room = self.view.room_of(member)
        world = self.world(room)
        view = [o for o in world["objects"] if member in o["seen_by"]]
        frames = []
        for frame in reversed(self.observer.frames(member)):
            if kind and frame.kind != kind:
                continue
            if query and query.encode() not in frame.body:
                continue
            frames.append(frame.describe())
            if len(frames) >= FRAMES_SHOWN:
                break
        stats = self.view.client_stats(member)
        connected = stats is not None
        if stats is None:  # gone: its last figures, if it left recently
            final = self.observer.departed(member)
            stats = stats_json(final) if final is not None else None
        rpcs = self.observer.rpc_log(member)
        return {
            "member": member,
            "room": world["room"] if room is not None else None,
            "connected": connected,
            "tick": world["tick"],
            "view": view,
            "frames": frames,
            "counters": self.observer.client_counters().get(member, {}),
            "stats": stats,
            "rpcs": rpcs[-100:],
            "failed_rpcs": [r for r in rpcs if r["code"] != "ok"][-50:],
        }


class _Handler(BaseHTTPRequestHandler):
    monitor: Monitor
    server_version = "reverb-monitor"
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("monitor: %s %s", self.address_string(), format % args)

    # -- authentication ----------------------------------------------------------------------

    def _presented(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer ") :]
        cookies = http.cookies.SimpleCookie()
        try:
            cookies.load(self.headers.get("Cookie", ""))
        except http.cookies.CookieError:
            return None
        morsel = cookies.get(COOKIE)
        return morsel.value if morsel is not None else None

    def _authorized(self) -> bool:
        """Refuse (401 without a token, 403 with a wrong one) unless the token is presented."""
        token = self._presented()
        if token is None:
            self._error(HTTPStatus.UNAUTHORIZED, "token required: open the URL the server logged")
            return False
        if not secrets.compare_digest(token.encode(), self.monitor.token.encode()):
            self._error(HTTPStatus.FORBIDDEN, "wrong token")
            return False
        return True

    # -- GET ---------------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        given = query.get("token")
        if given is not None:
            if not secrets.compare_digest(given[0].encode(), self.monitor.token.encode()):
                self._error(HTTPStatus.FORBIDDEN, "wrong token")
                return
            self.send_response(HTTPStatus.SEE_OTHER)
            self.send_header(
                "Set-Cookie", f"{COOKIE}={self.monitor.token}; HttpOnly; SameSite=Strict; Path=/"
            )
            rest = {k: v for k, v in query.items() if k != "token"}
            self.send_header("Location", url.path + ("?" + urlencode(rest, True) if rest else ""))
            self.send_header("Content-Length", "0")
            self._common_headers()
            self.end_headers()
            return
        if not self._authorized():
            return
        path = url.path
        try:
            if path in STATIC:
                self._static(*STATIC[path])
            elif path == "/metrics":
                body, ctype = exposition(self.monitor.view, self.monitor.observer)
                self._send(HTTPStatus.OK, body, ctype)
            elif path == "/api/overview":
                self._json(self.monitor.overview())
            elif path == "/api/world":
                self._json(self.monitor.world(query.get("room", [""])[0]))
            elif path.startswith("/api/client/"):
                member = int(path[len("/api/client/") :])
                self._json(
                    self.monitor.client(
                        member, query.get("q", [""])[0][:200], query.get("kind", [""])[0][:20]
                    )
                )
            elif path == "/api/rpc":
                self._json({"rpcs": self.monitor.observer.rpc_log()[-500:]})
            elif path == "/api/events":
                self._events(query.get("topic", ["overview"])[0], query.get("room", [""])[0])
            else:
                self._error(HTTPStatus.NOT_FOUND, "no such page")
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, "bad request")
        except TimeoutError:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "the server's loop is not answering")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _static(self, name: str, ctype: str) -> None:
        body = resources.files("reverb.monitor").joinpath("static").joinpath(name).read_bytes()
        if name == "index.html":
            body = body.replace(b"{{CSRF}}", self.monitor.csrf.encode())
        self._send(HTTPStatus.OK, body, ctype)

    def _events(self, topic: str, room: str = "") -> None:
        """Server-Sent Events: the topic's JSON every SSE_INTERVAL until the page goes
        (``world``: of the room ``room``, §17; the default room without it)."""
        producers: dict[str, Callable[[], Any]] = {
            "overview": self.monitor.overview,
            "world": lambda: self.monitor.world(room),
            "rpc": lambda: {"rpcs": self.monitor.observer.rpc_log()[-500:]},
        }
        if topic.startswith("client:"):
            member = int(topic[len("client:") :])
            producers[topic] = lambda: self.monitor.client(member)
        produce = producers.get(topic)
        if produce is None:
            self._error(HTTPStatus.NOT_FOUND, "no such topic")
            return
        observer = self.monitor.observer
        if not observer.watch(MAX_STREAMS):
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "too many live streams open")
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self._common_headers()
            self.end_headers()
            self.close_connection = True
            ends = time.monotonic() + SSE_MAX_SECONDS
            while not self.monitor._stopping.is_set() and time.monotonic() < ends:
                data = json.dumps(produce(), separators=(",", ":"))
                self.wfile.write(f"event: update\ndata: {data}\n\n".encode())
                self.wfile.flush()
                self.monitor._stopping.wait(SSE_INTERVAL)
        except OSError:
            pass  # the page went away
        finally:
            observer.unwatch()

    # -- POST (actions) ----------------------------------------------------------------------

    def do_POST(self) -> None:
        if not self._authorized():
            return
        if not self._same_origin():
            self._error(HTTPStatus.FORBIDDEN, "cross-origin request refused")
            return
        given = self.headers.get("X-Reverb-CSRF", "")
        if not secrets.compare_digest(given.encode(), self.monitor.csrf.encode()):
            self._error(HTTPStatus.FORBIDDEN, "missing or wrong CSRF token")
            return
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, "body is not JSON")
            return
        path = urlsplit(self.path).path
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["api", "client"] and parts[3] == "disconnect":
            try:
                member = int(parts[2])
            except ValueError:
                self._error(HTTPStatus.BAD_REQUEST, "bad client id")
                return
            reason = body.get("reason", "") if isinstance(body, dict) else ""
            if not isinstance(reason, str):
                reason = ""
            done = self.monitor.view.disconnect(member, reason.strip() or "no reason given")
            logger.warning(
                "monitor: %s asked to disconnect client #%d (%s): %s",
                self.client_address[0],
                member,
                reason[:200],
                "done" if done else "no such client",
            )
            if done:
                self._json({"disconnected": member})
            else:
                self._error(HTTPStatus.NOT_FOUND, "no such client connected")
            return
        self._error(HTTPStatus.NOT_FOUND, "no such action")

    def _same_origin(self) -> bool:
        """The request's Origin (or Referer) names this very host and port."""
        host = self.headers.get("Host", "")
        origin = self.headers.get("Origin") or self.headers.get("Referer")
        if not origin or not host:
            return False
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == host

    # -- responses ---------------------------------------------------------------------------

    def _common_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'",
        )

    def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self._common_headers()
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any) -> None:
        self._send(HTTPStatus.OK, json.dumps(data).encode(), "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode(), "application/json")
