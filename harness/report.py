"""HTML reports: the verdict, a table of figures, and plots (matplotlib, PNGs embedded).

``write_report(result, data, path)`` writes ``path`` if it ends in ``.html``, else
``path/report.html``. Without matplotlib the report still has the verdict and tables, and says
how to get the plots (``pip install matplotlib``; a clone's ``make`` venv has it).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from pathlib import Path
from typing import Any

from harness.scenarios.common import Result

__all__ = ["write_report"]

logger = logging.getLogger("harness.report")

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1 .PASS{color:#1a7f37}h1 .FAIL{color:#cf222e}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}.fail{background:#ffebe9}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.note{color:#666;font-size:13px}pre{background:#f6f8fa;padding:1em;overflow:auto}
"""


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    fig.clf()
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _distribution_plot(plt: Any, samples: dict[str, list[float]], title: str) -> str:
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.4))
    for label, values in samples.items():
        if not values:
            continue
        ordered = sorted(values)
        ax[0].hist(values, bins=60, alpha=0.6, label=label)
        n = len(ordered)
        ax[1].plot(ordered, [(i + 1) / n for i in range(n)], label=label)
    ax[0].set_xlabel("ms")
    ax[0].set_ylabel("count")
    ax[0].set_title(f"{title}: histogram")
    ax[1].set_xscale("log")
    ax[1].set_xlabel("ms (log)")
    ax[1].set_ylabel("fraction <= x")
    ax[1].set_title(f"{title}: CDF")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    out = _png(fig)
    plt.close(fig)
    return out


def _bandwidth_plot(plt: Any, runs: dict[str, list[list[float]]]) -> str:
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.4))
    for label, series in runs.items():
        if series:
            ax[0].plot([p[0] for p in series], [p[1] / 1024 for p in series], label=label)
            ax[1].plot([p[0] for p in series], [p[2] for p in series], label=label)
    ax[0].set_title("bandwidth per client (server -> client)")
    ax[0].set_ylabel("KiB/s")
    ax[1].set_title("achieved tick rate")
    ax[1].set_ylabel("ticks/s")
    for a in ax:
        a.set_xlabel("s into the measurement window")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    out = _png(fig)
    plt.close(fig)
    return out


def _sweep_plots(plt: Any, rows: list[dict[str, Any]]) -> str:
    metrics = [
        ("achieved_rate_hz", "achieved tick rate (Hz)"),
        ("server_cpu_s_per_tick", "server CPU s per tick"),
        ("bytes_per_client_per_s", "bytes per client per s"),
        ("freshness_ms.p50", "freshness p50 (ms)"),
        ("freshness_ms.p99", "freshness p99 (ms)"),
        ("rpc_rtt_ms.p99", "RPC RTT p99 (ms)"),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    objects = sorted({r["objects"] for r in rows if "objects" in r})
    for ax, (key, title) in zip(axes.flat, metrics, strict=True):
        for n in objects:
            pts = sorted(
                (r["clients"], _get(r, key))
                for r in rows
                if r.get("objects") == n and _get(r, key) is not None
            )
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"N={n}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("clients (M)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    out = _png(fig)
    plt.close(fig)
    return out


def _get(row: dict[str, Any], key: str) -> Any:
    value: Any = row
    for part in key.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return " / ".join(f"{k} {_fmt(v)}" for k, v in value.items() if k in ("p50", "p99"))
    return html.escape(str(value))


def _figures_table(figures: dict[str, Any]) -> str:
    rows = [
        f'<tr><th class="l">{html.escape(k)}</th><td class="l">{_fmt(v)}</td></tr>'
        for k, v in figures.items()
        if k not in ("bandwidth_series", "table", "links", "pairs", "runs", "criteria")
    ]
    return f"<table>{''.join(rows)}</table>"


def _criteria_table(criteria: list[dict[str, Any]]) -> str:
    """The load verdict, one row per criterion: measured value, threshold, ok or FAIL."""
    rows = []
    for c in criteria:
        cls = "" if c["ok"] else ' class="fail"'
        rows.append(
            f'<tr{cls}><th class="l">{html.escape(c["name"])}</th>'
            f'<td class="l">{_fmt(c["value"])}</td><td class="l">{html.escape(c["threshold"])}'
            f'</td><td class="l">{"ok" if c["ok"] else "FAIL"}</td></tr>'
        )
    head = '<tr><th class="l">criterion</th><th class="l">measured</th>'
    head += '<th class="l">threshold</th><th class="l">verdict</th></tr>'
    return f"<table>{head}{''.join(rows)}</table>"


def _rows_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cls = ' class="fail"' if row.get("verdict") == "FAIL" else ""
        body.append(
            f"<tr{cls}>" + "".join(f"<td>{_fmt(_get(row, c))}</td>" for c in columns) + "</tr>"
        )
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


SWEEP_COLUMNS = [
    "clients",
    "objects",
    "achieved_rate_hz",
    "server_cpu_s_per_tick",
    "server_cpu_util",
    "bytes_per_client_per_s",
    "freshness_ms.p50",
    "freshness_ms.p99",
    "rpc_rtt_ms.p50",
    "rpc_rtt_ms.p99",
    "server_peak_rss_mb",
    "rpc_calls.planned",
    "rpc_calls.answered",
    "converged",
    "failed",
    "verdict",
]


def render(result: Result, data: dict[str, Any]) -> str:
    plt = _plt()
    verdict = data["verdict"]
    parts = [
        f"<!doctype html><meta charset=utf-8><title>reverb harness: {result.scenario}</title>",
        f"<style>{CSS}</style>",
        f'<h1>{html.escape(result.scenario)}: <span class="{verdict}">{verdict}</span></h1>',
    ]
    reasons = data.get("reasons", [])
    if reasons:
        items = "".join(f"<li>{html.escape(r)}</li>" for r in reasons)
        parts.append(f"<h2>Why it failed</h2><ul>{items}</ul>")
    if result.figures.get("criteria"):
        parts.append("<h2>Criteria</h2>" + _criteria_table(result.figures["criteria"]))
    parts.append("<h2>Figures</h2>" + _figures_table(result.figures))
    if "vs_baseline" in result.figures:
        parts.append(
            '<p class="note">vs_baseline: this run divided by the baseline run (one '
            "client, a one-object world) measured first in the same invocation; 1.0 "
            "means no slower than idle.</p>"
        )
    table = result.figures.get("table")
    if table:
        parts.append("<h2>Sweep</h2>" + _rows_table(table, SWEEP_COLUMNS))
    if result.figures.get("pairs"):
        parts.append(
            "<h2>Interpreter pairs</h2>"
            + _rows_table(result.figures["pairs"], ["scenario", "server", "clients", "verdict"])
        )
    if result.figures.get("links"):
        parts.append(
            "<h2>Proxy links</h2>"
            + _rows_table(
                result.figures["links"],
                ["member", "toxics", "bytes_down", "bytes_up", "detected_after_s"],
            )
        )
    if plt is None:
        parts.append(
            '<p class="note">matplotlib is not installed: no plots. '
            "<code>pip install matplotlib</code></p>"
        )
    else:
        runs = [result, *result.children]
        if table:
            parts.append("<h2>Sweep plots</h2>" + _sweep_plots(plt, table))
        for key, title in (("freshness_ms", "freshness"), ("rpc_rtt_ms", "RPC round trip")):
            samples = {r.scenario: r.samples.get(key, []) for r in runs if r.samples.get(key)}
            if samples:
                parts.append(f"<h2>{title}</h2>" + _distribution_plot(plt, samples, title))
        bw = {
            r.scenario: r.figures.get("bandwidth_series", [])
            for r in runs
            if r.figures.get("bandwidth_series")
        }
        if bw:
            parts.append("<h2>Bandwidth over time</h2>" + _bandwidth_plot(plt, bw))
    parts.append(
        '<h2>How to read this</h2><p class="note">Freshness: time from the server changing a '
        "field (stamped with time.monotonic(), shared by all processes on one machine) to a "
        "client applying it; it includes the wait for the next tick, so 1000/R ms is its "
        "floor. RTT: compute_server() to its reply. Bandwidth: bytes the server queued for "
        "clients, per client. CPU per tick: the server process's user+system time (every "
        "thread) over the window divided by the ticks it ran.</p>"
    )
    data_json = json.dumps(data, indent=1, sort_keys=True, default=str)
    parts.append(f"<details><summary>JSON</summary><pre>{html.escape(data_json)}</pre></details>")
    return "\n".join(parts)


def write_report(result: Result, data: dict[str, Any], path: Path) -> Path:
    target = path if path.suffix == ".html" else path / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(result, data), encoding="utf-8")
    return target
