"""``/metrics``: the server's series, read at scrape time (nothing runs when nobody scrapes).

``families()`` builds neutral metric families from the server and the observer. With
``prometheus_client`` installed they are exposed through a private ``CollectorRegistry`` and
its own writer; without it, ``write_text`` writes the same families in the text exposition
format 0.0.4 (a few dozen lines: the library stays dependency-free; docs/monitor.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from reverb.monitor._observer import Histogram, Observer
from reverb.monitor._state import MAX_ROOMS, ServerView

__all__ = ["CONTENT_TYPE", "Family", "exposition", "families", "write_text"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# stats keys counted as refused connections, by reason (the rest of "limit.*" are limit hits)
REFUSALS = {
    "limit.connections": "connections",
    "limit.connections_per_ip": "connections_per_ip",
    "auth_rejected": "auth_rejected",
    "contract_mismatch": "contract_mismatch",
}
ERRORS = (
    "protocol_error",
    "frame_too_large",
    "internal_error",
    "tls_failure",
    "sync_too_large",
)


@dataclass
class Family:
    """One metric: ``kind`` is gauge, counter (``name`` without ``_total``), histogram or
    summary (``summaries``: labels, count, sum; no quantiles)."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    histograms: list[tuple[tuple[str, ...], Histogram]] = field(default_factory=list)
    summaries: list[tuple[tuple[str, ...], int, float]] = field(default_factory=list)


def families(view: ServerView, observer: Observer) -> list[Family]:
    state = view.metrics_state()
    stats: dict[str, int] = state["stats"]
    out: list[Family] = []

    def add(name: str, kind: str, help_: str, labels: tuple[str, ...] = ()) -> Family:
        fam = Family(name, kind, help_, labels)
        out.append(fam)
        return fam

    add("reverb_connections", "gauge", "Connections open now (handshake included).").samples = [
        ((), state["connections"])
    ]
    add("reverb_clients", "gauge", "Clients past the handshake (members).").samples = [
        ((), len(state["clients"]))
    ]
    add("reverb_connections_accepted", "counter", "Connections accepted.").samples = [
        ((), stats.get("accepted", 0))
    ]
    refused = add(
        "reverb_connections_refused", "counter", "Connections refused, by reason.", ("reason",)
    )
    refused.samples = [((label,), stats.get(key, 0)) for key, label in REFUSALS.items()]
    limits = add("reverb_limit_hits", "counter", "Limits hit (docs/protocol.md §11).", ("limit",))
    limits.samples = sorted(
        ((key[len("limit.") :],), n) for key, n in stats.items() if key.startswith("limit.")
    )
    errors = add("reverb_errors", "counter", "Connections failed, by kind.", ("kind",))
    errors.samples = [((key,), stats.get(key, 0)) for key in ERRORS]
    sent, received = state["traffic"]
    add("reverb_bytes_sent", "counter", "Bytes sent, every frame kind.").samples = [((), sent)]
    add("reverb_bytes_received", "counter", "Bytes received.").samples = [((), received)]
    add("reverb_ticks", "counter", "Ticks run.").samples = [((), state["tick"])]
    with observer._lock:
        tick_hist = _copy(observer.tick_seconds)
        frames_total, bytes_total = observer.frames_sent, observer.bytes_sent
        rpc = {k: (n, _copy(observer.rpc_seconds[k])) for k, n in observer.rpc_counts.items()}
    add(
        "reverb_tick_duration_seconds",
        "histogram",
        "Time to run one tick: diff, encode and queue (observed while the monitor runs).",
    ).histograms = [((), tick_hist)]
    add("reverb_frames_sent", "counter", "Application frames sent (sync, rpc replies).").samples = [
        ((), frames_total)
    ]
    add("reverb_sync_bytes_sent", "counter", "Bytes of application frames sent.").samples = [
        ((), bytes_total)
    ]
    counters = observer.client_counters()
    per_frames = add(
        "reverb_client_frames_sent", "counter", "Application frames sent, per client.", ("client",)
    )
    per_bytes = add(
        "reverb_client_sync_bytes_sent",
        "counter",
        "Bytes of application frames sent, per client.",
        ("client",),
    )
    buffer = add(
        "reverb_client_send_buffer_bytes", "gauge", "Bytes queued unsent, per client.", ("client",)
    )
    # Every per-client series is labelled ``client`` only (a client switching rooms keeps its
    # counters); reverb_client_room maps clients to rooms for sum by (room) (docs/monitor.md).
    rtt = add(
        "reverb_client_rtt_seconds",
        "summary",
        "Round-trip times of the server's pings to a client (§9.1), per client.",
        ("client",),
    )
    srtt = add(
        "reverb_client_rtt_smoothed_seconds",
        "gauge",
        "Smoothed round-trip time (RFC 6298), per client with a sample.",
        ("client",),
    )
    rpc_errors = add(
        "reverb_client_rpc_errors",
        "counter",
        "Calls answered with rpc_error, per client and code (§8.3).",
        ("client", "code"),
    )
    received = add(
        "reverb_client_bytes_received",
        "counter",
        "Bytes received from a client.",
        ("client",),
    )
    for client in state["clients"]:
        label = (str(client["member"]),)
        seen = counters.get(client["member"], {})
        per_frames.samples.append((label, seen.get("frames_sent", 0)))
        per_bytes.samples.append((label, seen.get("sync_bytes_sent", 0)))
        buffer.samples.append((label, client["send_buffer"]))
        rtt.summaries.append((label, client["rtt_samples"], client["rtt_sum"]))
        if client["rtt"] is not None:
            srtt.samples.append((label, client["rtt"]))
        for code, n in sorted(client["rpcs_failed"].items()):
            rpc_errors.samples.append(((label[0], code), n))
        received.samples.append((label, client["bytes_received"]))
    add(
        "reverb_send_buffer_limit_bytes", "gauge", "A client is dropped past this many."
    ).samples = [((), state["max_send_buffer"])]
    add("reverb_pending_calls", "gauge", "Calls queued for the game loop.").samples = [
        ((), state["pending_calls"])
    ]
    add("reverb_inbox_events", "gauge", "Events waiting for the game loop.").samples = [
        ((), state["inbox"])
    ]
    objects = add("reverb_objects", "gauge", "Objects in the world, by type.", ("type",))
    objects.samples = sorted(((name,), n) for name, n in state["objects"].items())
    rooms = state["rooms"]
    if rooms is not None:
        _rooms(add, rooms)
    calls = add(
        "reverb_rpc_calls", "counter", "Calls run, by method and result code.", ("method", "code")
    )
    latency = add(
        "reverb_rpc_duration_seconds",
        "histogram",
        "Time to run a call, by method and result code.",
        ("method", "code"),
    )
    for key in sorted(rpc):
        n, hist = rpc[key]
        calls.samples.append((key, n))
        latency.histograms.append((key, hist))
    add(
        "reverb_monitor_frames_held_bytes", "gauge", "Bytes the inspector's rings hold."
    ).samples = [((), observer.held_bytes())]
    add("reverb_monitor_watchers", "gauge", "Open live-update streams.").samples = [
        ((), observer.watchers)
    ]
    return out


def _rooms(add: Any, rooms: dict[str, Any]) -> None:
    """Per-room series (§17), when the server has room types defined: every room counted by
    type; at most ``MAX_ROOMS`` rooms, the fullest first, with series of their own (a
    disposed room's series go with it: they are read from the live rooms at each scrape)."""
    add("reverb_rooms", "gauge", "Live rooms, by type (all of them).", ("type",)).samples = [
        ((name,), n) for name, n in rooms["by_type"].items()
    ]
    add(
        "reverb_rooms_exported", "gauge", f"Rooms with series of their own (at most {MAX_ROOMS})."
    ).samples = [((), len(rooms["rooms"]))]
    per = ("room", "type")
    clients = add("reverb_room_clients", "gauge", "Clients in a room.", per)
    limit = add("reverb_room_max_clients", "gauge", "A room's seat limit (rooms with one).", per)
    objects = add("reverb_room_objects", "gauge", "Objects in a room's world.", per)
    locked = add("reverb_room_locked", "gauge", "1 while a room refuses joins.", per)
    rate = add("reverb_room_tick_rate_hz", "gauge", "The tick rate a room asks for.", per)
    ticks = add("reverb_room_ticks", "counter", "Ticks a room ran.", per)
    duration = add(
        "reverb_room_tick_duration_seconds",
        "summary",
        "Time a room's ticks took (on_tick, diff, encode), since the room was created.",
        per,
    )
    p99 = add(
        "reverb_room_tick_p99_seconds", "gauge", "99th percentile of a room's last 256 ticks.", per
    )
    overruns = add(
        "reverb_room_tick_overruns", "counter", "Ticks that took longer than the period.", per
    )
    for row in rooms["rooms"]:
        label = (row["id"], row["type"])
        clients.samples.append((label, row["clients"]))
        if row["max_clients"] is not None:
            limit.samples.append((label, row["max_clients"]))
        objects.samples.append((label, row["objects"]))
        locked.samples.append((label, int(row["locked"])))
        if row["ticks"] is None:
            continue  # the default room: its ticks are the server's (reverb_ticks)
        rate.samples.append((label, row["tick_rate"]))
        ticks.samples.append((label, row["ticks"]))
        duration.summaries.append((label, row["ticks"], row["tick_seconds_sum"]))
        p99.samples.append((label, row["tick_p99"]))
        overruns.samples.append((label, row["overruns"]))
    room_of = add(
        "reverb_client_room",
        "gauge",
        "1 for the room a client sits in (join on client to sum per-client series by room).",
        ("client", "room"),
    )
    room_of.samples = [((str(k), v), 1) for k, v in sorted(rooms["member_room"].items())]


def _copy(hist: Histogram) -> Histogram:
    dup = Histogram(hist.bounds)
    dup.counts, dup.count, dup.total = list(hist.counts), hist.count, hist.total
    return dup


# -- prometheus_client -----------------------------------------------------------------------


def exposition(view: ServerView, observer: Observer) -> tuple[bytes, str]:
    """The scrape body and its content type: prometheus_client's writer when installed."""
    try:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client import exposition as prom_exposition
    except ImportError:
        return write_text(families(view, observer)).encode(), CONTENT_TYPE
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(view, observer))
    return generate_latest(registry), str(prom_exposition.CONTENT_TYPE_LATEST)


class _Collector:
    """A custom collector: reads the server when the registry is collected (at scrape)."""

    def __init__(self, view: ServerView, observer: Observer) -> None:
        self._view = view
        self._observer = observer

    def describe(self) -> list[Any]:
        return []  # no describe-time reads: the server is only read at scrape time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            SummaryMetricFamily,
        )

        for fam in families(self._view, self._observer):
            metric: Any
            if fam.kind == "summary":
                metric = SummaryMetricFamily(fam.name, fam.help, labels=fam.labels)
                for labels, count, total in fam.summaries:
                    metric.add_metric(list(labels), float(count), total)
            elif fam.kind == "histogram":
                metric = HistogramMetricFamily(fam.name, fam.help, labels=fam.labels)
                for labels, hist in fam.histograms:
                    buckets = [(_num(b), float(n)) for b, n in hist.cumulative()]
                    buckets.append(("+Inf", float(hist.count)))
                    metric.add_metric(list(labels), buckets, hist.total)
            else:
                cls = CounterMetricFamily if fam.kind == "counter" else GaugeMetricFamily
                metric = cls(fam.name, fam.help, labels=fam.labels)
                for labels, value in fam.samples:
                    metric.add_metric(list(labels), float(value))
            yield metric


# -- the fallback writer ---------------------------------------------------------------------


def write_text(fams: list[Family]) -> str:
    """Text exposition format 0.0.4, for when prometheus_client is not installed."""
    lines: list[str] = []
    for fam in fams:
        shown = fam.name + ("_total" if fam.kind == "counter" else "")  # as prometheus_client
        lines.append(f"# HELP {shown} {_escape_help(fam.help)}")
        lines.append(f"# TYPE {shown} {fam.kind}")
        if fam.kind == "histogram":
            for labels, hist in fam.histograms:
                pairs = list(zip(fam.labels, labels, strict=True))
                for bound, n in hist.cumulative():
                    lines.append(_sample(f"{fam.name}_bucket", [*pairs, ("le", _num(bound))], n))
                lines.append(_sample(f"{fam.name}_bucket", [*pairs, ("le", "+Inf")], hist.count))
                lines.append(_sample(f"{fam.name}_count", pairs, hist.count))
                lines.append(_sample(f"{fam.name}_sum", pairs, hist.total))
            continue
        if fam.kind == "summary":
            for labels, count, total in fam.summaries:
                pairs = list(zip(fam.labels, labels, strict=True))
                lines.append(_sample(f"{fam.name}_count", pairs, count))
                lines.append(_sample(f"{fam.name}_sum", pairs, total))
            continue
        suffix = "_total" if fam.kind == "counter" else ""
        for labels, value in fam.samples:
            pairs = list(zip(fam.labels, labels, strict=True))
            lines.append(_sample(fam.name + suffix, pairs, value))
    return "\n".join(lines) + "\n"


def _sample(name: str, pairs: list[tuple[str, str]], value: float) -> str:
    if pairs:
        inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs)
        name = f"{name}{{{inner}}}"
    return f"{name} {_num(value)}"


def _num(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")
