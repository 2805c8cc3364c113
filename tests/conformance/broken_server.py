"""A small stdlib-only server of the Reverb wire protocol with switchable bugs.

It hosts the conformance app (Control + Box) well enough for the driver's cases, so that
tests can prove the driver notices each bug:

- ``little-endian``: frames the server sends carry a little-endian length (§2.1);
- ``traceback``: ``handler_error`` messages carry the Python traceback (§8.4);
- ``run-hidden``: the unexposed ``Box.hidden`` can be called by anyone and runs (§8.2);
- ``reuse-uids``: a new object takes the smallest free UID, reusing despawned ones (§7.1);
- ``no-frame-limit``: the frame-size limit is not checked; the body is awaited (§2.3);
- ``no-contract-check``: ``hello.contract`` is never compared with the app's (§4.9);
- ``loose-equality``: field changes are detected with ``==``, so 1 → 1.0 → true is no change
  (§7.2).

Usage: ``python broken_server.py [--bug NAME]... [--handshake-timeout S]``; prints
``READY <port>`` and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections import Counter
from typing import Any, TypeGuard

from conformance.app import APP_CONTRACT

BUGS = (
    "little-endian",
    "traceback",
    "run-hidden",
    "reuse-uids",
    "no-frame-limit",
    "no-contract-check",
    "loose-equality",
)
LIMIT = 1048576
MAX_SAFE = 2**53 - 1


class Violation(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def nesting_depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate key")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise ValueError(name)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _check_ints(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif is_int(item) and abs(item) > MAX_SAFE:
            raise ValueError("integer out of range")


def decode(payload: bytes) -> dict[str, Any]:
    try:
        text = payload.decode("utf-8")
        if nesting_depth(text) > 32:
            raise ValueError("too deep")
        value = json.loads(
            text, object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float
        )
        _check_ints(value)
    except (ValueError, RecursionError):
        raise Violation(1007, "invalid payload") from None
    if not isinstance(value, dict):
        raise Violation(1007, "payload is not an object")
    if not isinstance(value.get("type"), str):
        raise Violation(1002, "missing type")
    return value


def contract_differences(theirs: Any) -> list[str]:
    """§4.9: what differs from the app's contract; a malformed contract is a Violation 1002."""
    types = theirs.get("types") if isinstance(theirs, dict) else None
    if not isinstance(types, dict) or not all(isinstance(t, dict) for t in types.values()):
        raise Violation(1002, "malformed contract")
    ours = APP_CONTRACT["types"]
    out = []
    for name in sorted(set(ours) | set(types)):
        mine, other = ours.get(name), types.get(name)
        if mine is None or other is None:
            out.append(f"type {name}")
            continue
        if mine["init"] != other.get("init") or mine["fields"] != other.get("fields"):
            out.append(f"type {name} constructor or fields")
        methods = other.get("methods") if isinstance(other.get("methods"), dict) else {}
        for method in sorted(set(mine["methods"]) | set(methods)):
            if mine["methods"].get(method) != methods.get(method):
                out.append(f"method {name}.{method}")
    return out


class World:
    def __init__(self, bugs: set[str]) -> None:
        self.bugs = bugs
        self.lock = threading.RLock()
        self.objects: dict[int, dict[str, Any]] = {}
        self.counter = itertools.count(1)
        self.executions: Counter[str] = Counter()
        self.tick = 0

    def spawn(
        self, type_name: str, owner: int | None, args: list[Any], fields: dict[str, Any]
    ) -> int:
        if "reuse-uids" in self.bugs:
            uid = next(n for n in itertools.count(1) if n not in self.objects)
        else:
            uid = next(self.counter)
        self.objects[uid] = {"type": type_name, "owner": owner, "args": args, "fields": fields}
        return uid

    def call(self, member: int, uid: Any, method: str, args: list[Any]) -> Any:
        obj = self.objects.get(uid)
        if obj is None:
            raise Refused("unknown_object", f"no object {uid}")
        if obj["type"] == "Box":
            table = {"bump": (False, 1), "touch": (True, 0)}
            if "run-hidden" in self.bugs:
                table["hidden"] = (True, 0)
        else:
            table = {
                name: (True, arity)
                for name, arity in (
                    ("spawn", 2),
                    ("set_value", 2),
                    ("despawn", 1),
                    ("echo", -1),
                    ("fail", 1),
                    ("crash", 0),
                    ("executions", 1),
                    ("whoami", 0),
                )
            }
        if method.startswith("_") or method not in table:
            raise Refused("not_exposed", "not exposed")
        anyone, arity = table[method]
        if not anyone and obj["owner"] != member:
            raise Refused("not_owner", "not the owner")
        if arity >= 0 and len(args) != arity:
            raise Refused("bad_arguments", "wrong number of arguments")
        if method != "executions":
            self.executions[method] += 1
        return getattr(self, "do_" + method)(member, obj, *args)

    def do_bump(self, member: int, obj: dict[str, Any], k: Any) -> Any:
        obj["fields"]["value"] += k
        return obj["fields"]["value"]

    def do_touch(self, member: int, obj: dict[str, Any]) -> Any:
        return obj["fields"]["value"]

    def do_hidden(self, member: int, obj: dict[str, Any]) -> Any:
        return "ran"

    def do_spawn(self, member: int, obj: dict[str, Any], n: int, owned: bool) -> list[int]:
        return [self.spawn("Box", member if owned else None, [0], {"value": 0}) for _ in range(n)]

    def do_set_value(self, member: int, obj: dict[str, Any], uid: Any, value: Any) -> None:
        target = self.objects.get(uid)
        if target is None or target["type"] != "Box":
            raise Refused("rejected", f"no Box {uid}")
        target["fields"]["value"] = value

    def do_despawn(self, member: int, obj: dict[str, Any], uid: Any) -> bool:
        if uid not in self.objects or self.objects[uid] is obj:
            return False
        del self.objects[uid]
        return True

    def do_echo(self, member: int, obj: dict[str, Any], *args: Any) -> list[Any]:
        return list(args)

    def do_fail(self, member: int, obj: dict[str, Any], message: str) -> None:
        raise Refused("rejected", message)

    def do_crash(self, member: int, obj: dict[str, Any]) -> None:
        raise RuntimeError("crash requested")

    def do_executions(self, member: int, obj: dict[str, Any], name: str) -> int:
        return self.executions[name]

    def do_whoami(self, member: int, obj: dict[str, Any]) -> int:
        return member


class Session:
    def __init__(self, server: Server, sock: socket.socket, member: int) -> None:
        self.server = server
        self.sock = sock
        self.member = member
        self.max_frame = LIMIT
        self.open = False
        self.closed = False
        self.known: dict[int, str] | None = None
        self.send_lock = threading.Lock()

    def send(self, msg: dict[str, Any]) -> None:
        body = json.dumps(msg, separators=(",", ":")).encode()
        order = "<I" if "little-endian" in self.server.bugs else ">I"
        with self.send_lock:
            if self.closed:
                return
            try:
                self.sock.sendall(struct.pack(order, len(body)) + body)
            except OSError:
                self.closed = True

    def close(self, code: int | None = None, reason: str = "") -> None:
        if code is not None:
            self.send({"type": "close", "code": code, "reason": reason})
        with self.send_lock:
            self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(0.2)
            while self.sock.recv(65536):
                pass
        except OSError:
            pass
        self.sock.close()

    def read_exact(self, n: int, deadline: float | None) -> bytes:
        data = b""
        while len(data) < n:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Violation(1008, "handshake deadline")
                self.sock.settimeout(remaining)
            else:
                self.sock.settimeout(None)
            try:
                chunk = self.sock.recv(min(n - len(data), 1 << 20))
            except TimeoutError:
                raise Violation(1008, "handshake deadline") from None
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def run(self) -> None:
        deadline: float | None = time.monotonic() + self.server.handshake_timeout
        try:
            while not self.closed:
                (length,) = struct.unpack(">I", self.read_exact(4, deadline))
                if length == 0:
                    raise Violation(1007, "empty frame")
                if length > LIMIT and "no-frame-limit" not in self.server.bugs:
                    raise Violation(1009, "frame too large")
                msg = decode(self.read_exact(length, deadline))
                if self.handle(msg):
                    return
                if self.open:
                    deadline = None
        except Violation as exc:
            self.close(exc.code, exc.reason)
        except (EOFError, OSError):
            self.closed = True
            self.sock.close()
        finally:
            self.server.leave(self)

    def handle(self, msg: dict[str, Any]) -> bool:
        kind = msg["type"]
        if kind == "close":
            self.close()
            return True
        if not self.open:
            if kind != "hello":
                raise Violation(1002, "expected hello")
            version, max_frame = msg.get("version"), msg.get("max_frame", LIMIT)
            if not is_int(version) or not is_int(max_frame):
                raise Violation(1002, "bad hello")
            if version != 1:
                raise Violation(
                    1003, f"unsupported protocol version {version}; this server speaks 1"
                )
            if "contract" in msg and "no-contract-check" not in self.server.bugs:
                differences = contract_differences(msg["contract"])
                if differences:
                    raise Violation(3001, "contract mismatch: " + "; ".join(differences))
            self.max_frame = max_frame
            self.send(
                {
                    "type": "welcome",
                    "version": 1,
                    "member": self.member,
                    "tick_rate": 30.0,
                    "max_frame": LIMIT,
                }
            )
            self.open = True
            return False
        if kind == "ping" or kind == "pong":
            if not is_int(msg.get("nonce")):
                raise Violation(1002, "bad nonce")
            if kind == "ping":
                self.send({"type": "pong", "nonce": msg["nonce"]})
            return False
        if kind != "rpc":
            raise Violation(1002, "unexpected message")
        call_id, uid, method, args = (msg.get(k) for k in ("id", "uid", "method", "args"))
        if not (
            is_int(call_id)
            and call_id >= 0
            and is_int(uid)
            and isinstance(method, str)
            and isinstance(args, list)
        ):
            raise Violation(1002, "bad rpc")
        world = self.server.world
        try:
            with world.lock:
                value = world.call(self.member, uid, method, args)
            self.send({"type": "rpc_result", "id": call_id, "value": value})
        except Refused as exc:
            self.send(
                {"type": "rpc_error", "id": call_id, "code": exc.code, "message": exc.message}
            )
        except Exception:
            text = (
                traceback.format_exc() if "traceback" in self.server.bugs else "the handler failed"
            )
            self.send(
                {"type": "rpc_error", "id": call_id, "code": "handler_error", "message": text}
            )
        return False


class Server:
    def __init__(self, bugs: set[str], handshake_timeout: float) -> None:
        self.bugs = bugs
        self.handshake_timeout = handshake_timeout
        self.world = World(bugs)
        self.world.spawn("Control", None, [], {})
        self.sessions: list[Session] = []
        self.members = itertools.count(1)
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))

    def leave(self, session: Session) -> None:
        with self.lock:
            if session in self.sessions:
                self.sessions.remove(session)

    def accept_loop(self) -> None:
        while True:
            sock, _ = self.listener.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = Session(self, sock, next(self.members))
            with self.lock:
                self.sessions.append(session)
            threading.Thread(target=session.run, daemon=True).start()

    def tick_loop(self) -> None:
        while True:
            time.sleep(1 / 30)
            with self.world.lock:
                self.world.tick += 1
                view = {
                    uid: json.dumps(obj, sort_keys=True) for uid, obj in self.world.objects.items()
                }
                objects = {uid: json.loads(text) for uid, text in view.items()}
                tick = self.world.tick
            with self.lock:
                sessions = [s for s in self.sessions if s.open and not s.closed]
            for session in sessions:
                self.sync(session, tick, view, objects)

    def sync(
        self, session: Session, tick: int, view: dict[int, str], objects: dict[int, Any]
    ) -> None:
        full = session.known is None
        known = session.known or {}
        spawn = [{"uid": uid, **objects[uid]} for uid in view if full or uid not in known]
        loose = "loose-equality" in self.bugs
        update = [
            {"uid": uid, "fields": objects[uid]["fields"], "owner": objects[uid]["owner"]}
            for uid in view
            if not full
            and uid in known
            and (json.loads(known[uid]) != objects[uid] if loose else known[uid] != view[uid])
        ]
        despawn = [] if full else [uid for uid in known if uid not in view]
        session.known = view
        if not full and not (spawn or update or despawn):
            return
        parts: list[dict[str, list[Any]]] = [{"spawn": [], "update": [], "despawn": []}]
        size = 0
        for kind, entries in (("spawn", spawn), ("update", update), ("despawn", despawn)):
            for entry in entries:
                entry_size = len(json.dumps(entry)) + 1
                if size + entry_size > session.max_frame - 200 and size:
                    parts.append({"spawn": [], "update": [], "despawn": []})
                    size = 0
                parts[-1][kind].append(entry)
                size += entry_size
        for index, part in enumerate(parts):
            session.send(
                {
                    "type": "sync",
                    "tick": tick,
                    "full": full,
                    "final": index == len(parts) - 1,
                    **part,
                }
            )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bug", action="append", default=[], choices=BUGS)
    parser.add_argument("--handshake-timeout", type=float, default=1.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = Server(set(args.bug), args.handshake_timeout)
    threading.Thread(target=server.tick_loop, daemon=True).start()
    print(f"READY {server.listener.getsockname()[1]}", flush=True)
    server.accept_loop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
