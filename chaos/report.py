"""The run's report: JSON for the record, a Markdown table for the README."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos.faults import KINDS


def build(options, faults, checker, verifiers, pushers) -> dict[str, Any]:
    """The report of a run; chaos.run adds its timings."""
    by_kind: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        mine = [f for f in faults if f.kind == kind]
        times = [f.recovery() for f in mine if f.recovery() is not None]
        by_kind[kind] = {
            "count": len(mine),
            "recover_p50_s": _round(statistics.median(times)) if times else None,
            "recover_max_s": _round(max(times)) if times else None,
            "not_healed": len(mine) - len(times),
        }
    closes: Counter[str] = Counter()
    for verifier in verifiers:
        closes.update(verifier.closes)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": options.seed,
        "fault_seconds": options.seconds,
        "clients": options.clients,
        "dashboards": options.dashboards,
        "client_forms": dict(Counter(v.form + (" switching" if v.switch else "") for v in verifiers)),
        "faults": by_kind,
        "faults_injected": len(faults),
        "values_stored": sum(len(rows) for rows in checker.stored.values()),
        "values_checked": checker.checked,
        "recoveries": dict(checker.counts),
        "connections": sum(v.connection for v in verifiers),
        "closes": dict(closes.most_common()),
        "pushes": {
            "numbers": sum(p.next_seq - 1 for p in pushers),
            "acked": sum(len(p.acked) for p in pushers),
            "ambiguous": sum(len(p.ambiguous) for p in pushers),
            "refused": sum(p.refusals for p in pushers),
        },
        "violations": len(checker.violations),
        "violation_list": [
            {"client": v.client, "metric_id": v.metric_id, "message": v.message}
            for v in checker.violations[:50]
        ],
    }


def table(result: dict[str, Any]) -> str:
    """The README's Faults table."""
    lines = [
        "| fault | injected | recovered p50 | max |",
        "|---|---|---|---|",
    ]
    for kind, row in result["faults"].items():
        p50 = "-" if row["recover_p50_s"] is None else f"{row['recover_p50_s']} s"
        worst = "-" if row["recover_max_s"] is None else f"{row['recover_max_s']} s"
        if row["not_healed"]:
            worst += f" ({row['not_healed']} not within the limit)"
        lines.append(f"| {kind} | {row['count']} | {p50} | {worst} |")
    lines.append("")
    lines.append(
        f"Seed {result['seed']}, {result['fault_seconds']:.0f} s of faults, {result['clients']} clients"
        f" on {result['dashboards']} dashboards, {result['connections']} connections:"
        f" {result['values_checked']:,} values checked against {result['values_stored']:,} stored,"
        f" **{result['violations']} violations**."
    )
    return "\n".join(lines)


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 2)


TABLE_START, TABLE_END = "<!-- chaos-table -->", "<!-- /chaos-table -->"


def update_readme(readme: Path, result: dict[str, Any]) -> None:
    """Put the run's table between the README's chaos-table markers."""
    text = readme.read_text()
    before, rest = text.split(TABLE_START, 1)
    _, after = rest.split(TABLE_END, 1)
    readme.write_text(f"{before}{TABLE_START}\n{table(result)}\n{TABLE_END}{after}")
