"""``/metrics`` scraped over HTTP from a real server process, parsed with prometheus_client."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest

from reverb.monitor._metrics import Family, write_text
from reverb.monitor._observer import TICK_BUCKETS, Histogram
from tests.jsonproc import stop
from tests.monitor.conftest import Game, Local, until

parser = pytest.importorskip("prometheus_client.parser")


def scrape(game: Game) -> dict[str, Any]:
    status, headers, body = game.request("GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    return {f.name: f for f in parser.text_string_to_metric_families(body.decode())}


def value(fams: dict[str, Any], name: str, **labels: str) -> float:
    for fam in fams.values():
        for sample in fam.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise KeyError((name, labels))


def test_metrics_series_over_http(game: Game) -> None:
    _, member = game.client()
    game.client()

    def calls_seen() -> dict[str, Any] | None:
        fams = scrape(game)
        try:
            ok = value(fams, "reverb_rpc_calls_total", method="Player.move", code="ok")
            value(fams, "reverb_rpc_calls_total", method="Player.move", code="not_owner")
        except KeyError:
            return None
        return fams if ok >= 3 else None

    fams = until(calls_seen, what="calls counted by method and code")
    assert value(fams, "reverb_clients") == 2
    assert value(fams, "reverb_connections_accepted_total") == 2
    assert value(fams, "reverb_connections_refused_total", reason="connections") == 0
    assert value(fams, "reverb_objects", type="Crate") == 20
    assert value(fams, "reverb_objects", type="Player") == 2
    assert value(fams, "reverb_ticks_total") > 0
    ticks = fams["reverb_tick_duration_seconds"]
    assert ticks.type == "histogram"
    count = value(fams, "reverb_tick_duration_seconds_count")
    assert count > 0
    assert value(fams, "reverb_tick_duration_seconds_bucket", le="+Inf") == count
    assert value(fams, "reverb_client_frames_sent_total", client=str(member)) > 0
    per_client = value(fams, "reverb_client_sync_bytes_sent_total", client=str(member))
    assert 0 < per_client <= value(fams, "reverb_sync_bytes_sent_total")
    assert value(fams, "reverb_client_send_buffer_bytes", client=str(member)) >= 0
    assert fams["reverb_rpc_duration_seconds"].type == "histogram"
    assert value(fams, "reverb_rpc_duration_seconds_count", method="Player.move", code="ok") > 0
    assert value(fams, "reverb_bytes_sent_total") >= value(fams, "reverb_sync_bytes_sent_total")
    assert "reverb_limit_hits" in fams


def test_per_client_rtt_and_rpc_errors(any_game: Game) -> None:
    """The monitor pings every client (§9.1) while it runs: a per-client RTT summary and a
    smoothed gauge, and calls refused by code, per client; on both I/O layers."""
    game = any_game
    _, member = game.client()
    label = str(member)

    def measured() -> dict[str, Any] | None:
        fams = scrape(game)
        try:
            count = value(fams, "reverb_client_rtt_seconds_count", client=label)
            value(fams, "reverb_client_rpc_errors_total", client=label, code="rejected")
        except KeyError:
            return None
        return fams if count >= 2 else None

    fams = until(measured, timeout=20, what="two RTT samples and a refused call")
    assert fams["reverb_client_rtt_seconds"].type == "summary"
    total = value(fams, "reverb_client_rtt_seconds_sum", client=label)
    smoothed = value(fams, "reverb_client_rtt_smoothed_seconds", client=label)
    assert 0 < total < 2.0 and 0 < smoothed < 1.0  # loopback: well under a second
    assert value(fams, "reverb_client_bytes_received_total", client=label) > 0
    row = game.get_json("/api/overview")["clients"][0]
    assert row["member"] == member and row["rtt"] is not None and row["rtt_samples"] >= 2
    assert row["rpcs_failed"]["rejected"] >= 1


def test_handshake_frame_limit_hit_by_name(game: Game) -> None:
    """A peer announcing a frame over the pre-handshake cap (§2.7) shows under its limit."""
    with socket.create_connection(("127.0.0.1", game.port), timeout=5) as sock:
        sock.sendall(struct.pack(">I", 1 << 20))  # over the 64 KiB cap before welcome
        sock.settimeout(5)
        while sock.recv(4096):
            pass
    fams = until(
        lambda: (
            (f := scrape(game))
            and value(f, "reverb_limit_hits_total", limit="handshake_frame") >= 1
            and f
        ),
        what="limit.handshake_frame counted",
    )
    assert value(fams, "reverb_connections_accepted_total") >= 1


def test_limit_hits_and_refusals_by_name(local: Local) -> None:
    """Connections over ``max_connections`` are refused and counted under their limit."""
    socks = [socket.create_connection(("127.0.0.1", local.server.port), timeout=5)]
    try:
        socks.append(socket.create_connection(("127.0.0.1", local.server.port), timeout=5))
        socks[1].settimeout(5)
        assert socks[1].recv(16) == b""  # refused: closed without a word

        def counted() -> dict[str, Any] | None:
            text = local.get("/metrics")[2].decode()
            fams = {f.name: f for f in parser.text_string_to_metric_families(text)}
            return fams if value(fams, "reverb_limit_hits_total", limit="connections") else None

        fams = until(counted, what="limit.connections counted")
        assert value(fams, "reverb_connections_refused_total", reason="connections") == 1
        assert value(fams, "reverb_connections") == 1
    finally:
        for sock in socks:
            sock.close()


def test_fallback_writer_is_valid_exposition() -> None:
    """Without prometheus_client the stdlib writer's text parses as the same families."""
    hist = Histogram(TICK_BUCKETS)
    for v in (0.0001, 0.003, 0.02, 5.0):
        hist.observe(v)
    fams = [
        Family("x_up", "gauge", 'a "gauge"\nwith a newline', samples=[((), 1)]),
        Family("x_calls", "counter", "c", ("method", "code"), [(('A.b"\\', "ok"), 3)]),
        Family("x_tick_seconds", "histogram", "h", histograms=[((), hist)]),
        Family("x_rtt_seconds", "summary", "s", ("client",), summaries=[(("3",), 4, 0.5)]),
    ]
    parsed = {f.name: f for f in parser.text_string_to_metric_families(write_text(fams))}
    assert parsed["x_up"].samples[0].value == 1
    calls = parsed["x_calls"]
    assert calls.type == "counter"
    assert calls.samples[0].labels == {"method": 'A.b"\\', "code": "ok"}
    assert calls.samples[0].value == 3
    tick = parsed["x_tick_seconds"]
    assert tick.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in tick.samples if s.name.endswith("_bucket")}
    assert buckets["+Inf"] == 4
    assert buckets["0.005"] == 2
    assert [s.value for s in tick.samples if s.name.endswith("_count")] == [4]
    rtt = parsed["x_rtt_seconds"]
    assert rtt.type == "summary"
    assert {s.name: s.value for s in rtt.samples} == {
        "x_rtt_seconds_count": 4,
        "x_rtt_seconds_sum": 0.5,
    }
    assert all(s.labels == {"client": "3"} for s in rtt.samples)


def room_rows(fams: dict[str, Any], name: str) -> dict[str, float]:
    """``{room id: value}`` of a per-room family's samples."""
    return {
        s.labels["room"]: float(s.value)
        for fam in fams.values()
        for s in fam.samples
        if s.name == name
    }


def test_per_room_series(rooms_game: Game) -> None:
    """Rooms (§17): counted by type, series per room, a client's room, and a disposed
    room's series gone at the next scrape."""
    game = rooms_game
    _, a, duel = game.room_client("duel")
    _, b, duel_too = game.room_client("duel")
    squad_proc, c, squad = game.room_client("squad")
    _, plain = game.client()  # a protocol-1 client: the default room
    assert duel == duel_too and squad != duel

    def ticked() -> dict[str, Any] | None:
        fams = scrape(game)
        if "reverb_room_ticks" not in fams:
            return None
        ticks = room_rows(fams, "reverb_room_ticks_total")
        return fams if ticks.get(duel, 0) >= 3 and ticks.get(squad, 0) >= 3 else None

    fams = until(ticked, what="both arenas ticking")
    assert value(fams, "reverb_rooms", type="arena") == 2
    assert value(fams, "reverb_rooms", type="default") == 1
    assert value(fams, "reverb_rooms_exported") == 3
    assert room_rows(fams, "reverb_room_clients") == {duel: 2, squad: 1, "default": 1}
    assert value(fams, "reverb_room_max_clients", room=duel, type="arena") == 4
    assert room_rows(fams, "reverb_room_objects")[duel] == 3  # the marker and two tokens
    assert room_rows(fams, "reverb_room_objects")[squad] == 2
    assert room_rows(fams, "reverb_room_locked") == {duel: 0, squad: 0, "default": 0}
    assert value(fams, "reverb_room_tick_rate_hz", room=squad, type="arena") == 10
    assert fams["reverb_room_tick_duration_seconds"].type == "summary"
    count = value(fams, "reverb_room_tick_duration_seconds_count", room=duel)
    assert count >= 3
    assert value(fams, "reverb_room_tick_duration_seconds_sum", room=duel) > 0
    assert "default" not in room_rows(fams, "reverb_room_ticks_total")  # the server's ticks
    rooms_of = {
        s.labels["client"]: s.labels["room"]
        for s in fams["reverb_client_room"].samples
        if s.value == 1
    }
    assert rooms_of == {str(a): duel, str(b): duel, str(c): squad, str(plain): "default"}

    stop(squad_proc.proc)  # its last client gone, the squad arena is disposed

    def squad_gone() -> dict[str, Any] | None:
        fams = scrape(game)
        return fams if squad not in room_rows(fams, "reverb_room_clients") else None

    fams = until(squad_gone, what="the disposed room's series dropped")
    assert value(fams, "reverb_rooms", type="arena") == 1
    for name in ("reverb_room_objects", "reverb_room_ticks_total", "reverb_room_locked"):
        assert squad not in room_rows(fams, name)
    assert str(c) not in {s.labels["client"] for s in fams["reverb_client_room"].samples}


def test_no_room_series_without_room_types(game: Game) -> None:
    game.client()
    fams = scrape(game)
    assert not [name for name in fams if name.startswith(("reverb_room", "reverb_client_room"))]
