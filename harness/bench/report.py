"""The benchmark's outputs: ratios to raw against the issue's targets, JSON, HTML with plots."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.bench.runner import IMPL_LABEL

__all__ = ["TARGETS", "ratios", "write_html"]

Json = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """One row of the issue's target table. ``ratio``: compare ``metric`` as reverb / raw
    (medians of the same run); else the reverb median itself. ``op``: "<=" or ">="."""

    row: str
    what: str
    cell: str
    metric: str
    op: str
    bound: float
    ratio: bool = True
    net: bool = False  # (reverb - floor) / raw: the cost above an idle server's, to raw's tick


HELD = "held_hz"  # min(server tick rate, full clients' apply rate): what clients really get

TARGETS = (
    Target(
        "1000 x 8, every field every tick",
        "server CPU/tick",
        "n=1000 m=8 churn=1",
        "server_cpu_ms_per_tick",
        "<=",
        1.5,
    ),
    Target(
        "1000 x 8, every field every tick",
        "bytes/client/tick",
        "n=1000 m=8 churn=1",
        "bytes_per_client_tick",
        "<=",
        1.0,
    ),
    Target(
        "1000 x 8, every field every tick",
        "30 Hz held (at least 29)",
        "n=1000 m=8 churn=1",
        HELD,
        ">=",
        29.0,
        ratio=False,
    ),
    Target(
        "1000 x 32, every field every tick",
        "Hz held with real clients",
        "n=1000 m=32 churn=1",
        HELD,
        ">=",
        27.0,
        ratio=False,
    ),
    Target(
        "1000 x 8, 10 % churn",
        "server CPU/tick vs raw's full-state tick",
        "n=1000 m=8 churn=0.1",
        "server_cpu_ms_per_tick",
        "<=",
        0.35,
    ),
    Target(
        "1000 x 8, 10 % churn",
        "bytes/client/tick",
        "n=1000 m=8 churn=0.1",
        "bytes_per_client_tick",
        "<=",
        0.12,
    ),
    *(
        Target(
            f"{n} x 8, 0 % churn",
            "server CPU/tick",
            f"n={n} m=8 churn=0",
            "server_cpu_ms_per_tick",
            "<=",
            0.05,
        )
        for n in (100, 1000, 5000)
    ),
    *(
        Target(
            f"{n} x 8, 0 % churn",
            "server CPU/tick above the floor",
            f"n={n} m=8 churn=0",
            "server_cpu_ms_per_tick",
            "<=",
            0.05,
            net=True,
        )
        for n in (100, 1000, 5000)
    ),
    Target(
        "client CPU per applied tick, 1000 objects every field",
        "client CPU/applied tick",
        "n=1000 m=8 churn=1",
        "client_cpu_ms_per_tick",
        "<=",
        1.5,
    ),
    Target("RPC, 1 caller", "p50 round trip", "rpc callers=1", "rpc_p50_ms", "<=", 1.2),
    Target("RPC, 1 caller", "calls/s", "rpc callers=1", "rpc_calls_per_s", ">=", 0.9),
    Target("RPC, 8 callers", "p50 round trip", "rpc callers=8", "rpc_p50_ms", "<=", 1.2),
    Target("RPC, 8 callers", "calls/s", "rpc callers=8", "rpc_calls_per_s", ">=", 0.9),
    Target(
        "1000 connected clients x 1000 objects, 10 % churn",
        "Hz held",
        "many n=1000 m=1000 churn=0.1",
        HELD,
        ">=",
        27.0,
        ratio=False,
    ),
)


def add_held(summary: dict[str, dict[str, Json]]) -> None:
    """``held_hz`` per cell and impl: the lower of the tick rate and the clients' apply rate."""
    for cells in summary.values():
        for slot in cells.values():
            tick, apply = slot.get("tick_hz"), slot.get("client_apply_hz")
            if tick is None:
                continue
            if apply is None or slot["kind"] == "rpc" or slot["churn"] == 0:
                slot[HELD] = dict(tick)
            else:
                slot[HELD] = {k: min(tick[k], apply[k]) for k in ("median", "min", "max")}
                slot[HELD]["n"] = tick["n"]


def ratios(summary: dict[str, dict[str, Json]]) -> list[Json]:
    """Every target row, for each Reverb implementation measured."""
    rows: list[Json] = []
    for t in TARGETS:
        cells = summary.get(t.cell, {})
        raw = cells.get("raw", {}).get(t.metric)
        floor = cells.get("floor", {}).get(t.metric)
        for impl in ("threaded", "asyncio"):
            mine = cells.get(impl, {}).get(t.metric)
            row: Json = {
                "row": t.row,
                "what": t.what,
                "cell": t.cell,
                "metric": t.metric,
                "impl": IMPL_LABEL[impl],
                "target": f"{t.op} {t.bound:g}{'x' if t.ratio else ''}",
                "raw": raw,
                "reverb": mine,
                "value": None,
                "met": None,
            }
            if floor is not None and raw and t.metric == "server_cpu_ms_per_tick":
                # the least a server sending only changes pays here, next to the target
                row["floor"] = floor
                row["note"] = f"floor = {floor['median'] / raw['median']:.3g}x raw"
                if not t.net and mine is not None and floor["median"]:
                    row["note"] += f"; reverb = {mine['median'] / floor['median']:.3g}x floor"
            if mine is not None and (not t.ratio or (raw and raw["median"])):
                value = mine["median"] / raw["median"] if t.ratio and raw else mine["median"]
                if t.net:
                    if floor is None:
                        rows.append({**row, "note": "the floor was not measured"})
                        continue
                    value = (mine["median"] - floor["median"]) / raw["median"]
                row["value"] = value
                row["met"] = value <= t.bound if t.op == "<=" else value >= t.bound
            elif t.cell not in summary:
                row["note"] = "not measured in this run"
            rows.append(row)
    return rows


# -- HTML ------------------------------------------------------------------------------------

PLOTS = (
    ("server_cpu_ms_per_tick", "server CPU per tick (ms)", "sync", True),
    (HELD, "tick rate held (Hz)", "sync", False),
    ("bytes_per_client_tick", "bytes per client per tick", "sync", True),
    ("freshness_p50_ms", "freshness p50 (ms, tick → client apply)", "sync", True),
    ("client_cpu_ms_per_tick", "client CPU per applied tick (ms)", "sync", True),
    ("rpc_p50_ms", "RPC round trip p50 (ms)", "rpc", False),
    ("rpc_calls_per_s", "RPC calls per second", "rpc", False),
)
COLORS = {"raw": "#777777", "threaded": "#1f77b4", "asyncio": "#ff7f0e", "floor": "#2ca02c"}


def plot(
    summary: dict[str, dict[str, Json]], metric: str, title: str, kinds: str, log: bool
) -> str:
    """A grouped bar chart (median, min-max whiskers) as a base64 PNG; "" if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [
        c
        for c, by in summary.items()
        if any(
            s["kind"] in (kinds, "many" if kinds == "sync" else "") and metric in s
            for s in by.values()
        )
    ]
    if not cells:
        return ""
    impls = [
        i for i in ("raw", "threaded", "asyncio", "floor") if any(i in summary[c] for c in cells)
    ]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(cells) + 2), 3.6), dpi=90)
    width = 0.8 / max(len(impls), 1)
    for j, impl in enumerate(impls):
        xs, med, lo, hi = [], [], [], []
        for i, c in enumerate(cells):
            s = summary[c].get(impl, {}).get(metric)
            if s is None:
                continue
            xs.append(i + (j - (len(impls) - 1) / 2) * width)
            med.append(s["median"])
            lo.append(s["median"] - s["min"])
            hi.append(s["max"] - s["median"])
        ax.bar(xs, med, width, yerr=[lo, hi], label=IMPL_LABEL[impl], color=COLORS[impl], capsize=2)
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels([c.replace(" churn", "\nchurn") for c in cells], fontsize=7)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def fmt(s: Json | None, digits: int = 3) -> str:
    if not s:
        return "-"
    return f"{s['median']:.{digits}g} [{s['min']:.{digits}g}-{s['max']:.{digits}g}]"


def write_html(data: Json, path: Path) -> Path:
    summary: dict[str, dict[str, Json]] = data["summary"]
    e = html.escape
    parts = [
        "<!doctype html><meta charset='utf-8'><title>Reverb bench</title><style>"
        "body{font:14px sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}.ok{background:#dfd}.no{background:#fdd}"
        "pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}</style>",
        "<h1>Reverb benchmark: Reverb against the raw-JSON baseline</h1>",
        f"<p>{e(data['meta']['command'])}<br>{e(data['meta']['when'])}, "
        f"{data['meta']['reps']} repetitions x {data['meta']['seconds']} s, "
        f"Python {e(data['meta']['python'])}, {data['meta'].get('cpus')} CPUs, load average "
        f"(1/5/15 min) before and after: {data['meta'].get('loadavg_before_after')}. "
        "Medians [min-max] over repetitions; ratios are Reverb's median / raw's median from "
        "the same run.</p>",
        "<h2>Targets (issue 9)</h2><table><tr><th>workload</th><th>measure</th><th>impl</th>"
        "<th>raw</th><th>Reverb</th><th>value</th><th>target</th><th>met</th></tr>",
    ]
    for r in data["ratios"]:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "no")
        cls = "" if r["met"] is None else (" class='ok'" if r["met"] else " class='no'")
        value = "-" if r["value"] is None else f"{r['value']:.3g}"
        if r["value"] is not None and r["target"].endswith("x"):
            value += "x"
        parts.append(
            f"<tr><td>{e(r['row'])}</td><td>{e(r['what'])}</td><td>{e(r['impl'])}</td>"
            f"<td>{fmt(r['raw'])}</td><td>{fmt(r['reverb'])}</td><td{cls}>{value}</td>"
            f"<td>{e(r['target'])}</td><td{cls}>{met}{e(' ' + r.get('note', ''))}</td></tr>"
        )
    parts.append("</table>")
    parts.append("<h2>Plots</h2>")
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # the tables above still hold every figure
        parts.append(
            '<p class="note">matplotlib is not installed: no plots. '
            "<code>pip install matplotlib</code> (a clone's <code>make</code> venv has it)</p>"
        )
    else:
        for metric, title, kinds, log in PLOTS:
            png = plot(summary, metric, title, kinds, log)
            if png:
                parts.append(f"<p><img alt='{e(title)}' src='data:image/png;base64,{png}'></p>")
    parts.append(
        "<h2>Every cell</h2><table><tr><th>cell</th><th>impl</th><th>runs</th>"
        "<th>tick Hz</th><th>held Hz</th><th>server CPU ms/tick</th>"
        "<th>bytes/client/tick</th><th>fresh p50 ms</th><th>fresh p99 ms</th>"
        "<th>client CPU ms/tick</th><th>RPC p50 ms</th><th>RPC calls/s</th>"
        "<th>verified</th><th>closed</th></tr>"
    )
    for cell, by in summary.items():
        for impl, s in by.items():
            parts.append(
                f"<tr><td>{e(cell)}</td><td>{IMPL_LABEL[impl]}</td>"
                f"<td>{s['runs'] - s['errors']}/{s['runs']}</td>"
                + "".join(
                    f"<td>{fmt(s.get(k))}</td>"
                    for k in (
                        "tick_hz",
                        HELD,
                        "server_cpu_ms_per_tick",
                        "bytes_per_client_tick",
                        "freshness_p50_ms",
                        "freshness_p99_ms",
                        "client_cpu_ms_per_tick",
                        "rpc_p50_ms",
                        "rpc_calls_per_s",
                        "verified",
                        "closed_connections",
                    )
                )
                + "</tr>"
            )
    parts.append("</table>")
    errors = [r for r in data["runs"] if "error" in r]
    if errors:
        parts.append("<h2>Runs that did not finish</h2><ul>")
        parts += [
            f"<li>{e(r['cell'])} {e(r['impl'])}: <pre>{e(r['error'])}</pre></li>" for r in errors
        ]
        parts.append("</ul>")
    if data.get("profile_text"):
        parts.append(f"<h2>Profile</h2><pre>{e(data['profile_text'])}</pre>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
