"""Group 11, continued: compressed frames (feature ``"deflate"``, §15).

A server need not implement ``"deflate"``, and may send any frame uncompressed: the cases
that need a compressed frame are non-strict when none comes. The driver itself checks every
compressed frame it receives (§15.2: one whole zlib stream, bounded by our ``max_frame``) and
refuses one on a connection that did not get the feature (§15.1).
"""

from __future__ import annotations

import json
import zlib

from conformance.cases.common import bad_payload, despawn_all, spawn_boxes
from conformance.context import Ctx
from conformance.driver import CaseFailure, Conn, ServerViolation
from conformance.model import Outcome, case, non_strict

G = 11
DEFLATE = "deflate"
BOXES = 40  # enough spawn entries for a full sync of several KiB


def _conn(ctx: Ctx, features: list[str]) -> tuple[Conn, bool]:
    """A connection that asked for ``features``; whether "deflate" was granted."""
    conn = ctx.connect()
    welcome = conn.handshake(features=features)
    granted = welcome.get("features", [])
    if not isinstance(granted, list) or not set(granted) <= set(features):
        raise ServerViolation(f"welcome.features grants what was not asked (§4.11): {granted}")
    conn.wait(lambda: conn.table.applied > 0, None, "the first full sync")
    return conn, DEFLATE in granted


def _big_world(ctx: Ctx) -> tuple[Conn, list[int]]:
    writer = ctx.open()
    return writer, spawn_boxes(writer, BOXES, False)


@case("15.1.1", G, "deflate is granted when asked for (informational when not implemented)")
def granted(ctx: Ctx) -> Outcome | str:
    _, ok = _conn(ctx, [DEFLATE])
    return "deflate granted" if ok else non_strict("the server does not implement deflate")


@case("15.2.1", G, "a deflate client receives the same world as a plain one, in whole streams")
def same_world(ctx: Ctx) -> Outcome | str:
    writer, uids = _big_world(ctx)
    try:
        packed, ok = _conn(ctx, [DEFLATE])
        plain, _ = _conn(ctx, [])
        for conn in (packed, plain):
            conn.wait(lambda c=conn: all(u in c.table.objects for u in uids), None, "spawns")
        if packed.table.snapshot(set(uids)) != plain.table.snapshot(set(uids)):
            raise CaseFailure("the deflate connection's world differs from the plain one's")
        if plain.compressed_frames:
            raise ServerViolation("compressed frame on a plain connection (§15.1)")
    finally:
        despawn_all(writer, uids)
    if not ok:
        return non_strict("deflate not granted; plain form checked instead")
    if not packed.compressed_frames:
        return non_strict("deflate granted, yet every frame came uncompressed (allowed, §15.2)")
    return (
        f"{BOXES} objects equal on both; {packed.compressed_frames} compressed frames, "
        f"largest frame {max(packed.frame_sizes)} vs {max(plain.frame_sizes)} bytes plain"
    )


@case("15.1.2", G, "a frame a client sends compressed is invalid JSON: close 1007")
def client_compressed(ctx: Ctx) -> Outcome | str:
    payload = b"\x00" + zlib.compress(json.dumps({"type": "ping", "nonce": 1}).encode())
    return bad_payload(ctx, payload, 1007, section="15.1")
