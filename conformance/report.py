"""report.json and report.md writers."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from conformance.model import GROUPS, VERDICTS
from conformance.runner import CaseResult


def totals(results: list[CaseResult]) -> dict[str, int]:
    counts = Counter(r.verdict for r in results)
    return {verdict: counts.get(verdict, 0) for verdict in VERDICTS} | {"total": len(results)}


def summary_line(results: list[CaseResult]) -> str:
    t = totals(results)
    return (
        f"{t['total']} cases: {t['pass']} pass, {t['non-strict']} non-strict, "
        f"{t['fail']} fail, {t['info']} info"
    )


def write_json(path: Path, results: list[CaseResult], meta: dict[str, Any]) -> None:
    document = {
        "suite": "reverb-conformance",
        "protocol_version": 1,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **meta,
        "totals": totals(results),
        "cases": [r.as_dict() for r in results],
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _cell(text: str, limit: int = 220) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def write_markdown(path: Path, results: list[CaseResult], meta: dict[str, Any]) -> None:
    t = totals(results)
    lines = [
        "# Reverb protocol conformance report",
        "",
        f"- target: `{meta.get('target', '?')}`",
        f"- wall time: {meta.get('wall_time', 0):.1f} s",
        f"- {summary_line(results)}",
        "",
        "| verdict | count |",
        "|---------|-------|",
    ]
    lines += [f"| {verdict} | {t[verdict]} |" for verdict in VERDICTS]
    lines.append("")
    for group, name in GROUPS.items():
        members = [r for r in results if r.group == group]
        if not members:
            continue
        counts = Counter(r.verdict for r in members)
        tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])
        lines += [
            f"## {group}. {name} ({tally})",
            "",
            "| id | verdict | time (s) | description | detail |",
            "|----|---------|----------|-------------|--------|",
        ]
        for r in members:
            verdict = f"**{r.verdict}**" if r.verdict == "fail" else r.verdict
            lines.append(
                f"| {r.id} | {verdict} | {r.duration:.2f} | {_cell(r.description)} "
                f"| {_cell(r.detail)} |"
            )
        lines.append("")
    lines += [
        "## Slowest cases",
        "",
        "| id | time (s) | description |",
        "|----|----------|-------------|",
    ]
    for r in sorted(results, key=lambda r: -r.duration)[:10]:
        lines.append(f"| {r.id} | {r.duration:.2f} | {_cell(r.description)} |")
    lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def write_reports(directory: Path, results: list[CaseResult], meta: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "report.json", results, meta)
    write_markdown(directory / "report.md", results, meta)
