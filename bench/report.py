"""bench/RESULTS.md from a results JSON, with ratios against the baseline."""

from __future__ import annotations

import json
from pathlib import Path

KEPT_MARKER = "<!-- notes below are kept when python -m bench rewrites this file -->"


def _best(entry: dict) -> dict | None:
    kept = [w for w in entry["windows"] if w["kept_up"]]
    return max(kept, key=lambda w: w["delivered_per_second"]) if kept else None


def _per_cpu_second(entry: dict) -> int:
    """Messages per server CPU-second, best window the clients kept up with: a saturated
    server coalesces more frames per write, so its windows would flatter it."""
    kept = [w for w in entry["windows"] if w["kept_up"]] or entry["windows"]
    return max(w["delivered_per_server_cpu_second"] or 0 for w in kept)


def _row(entry: dict) -> str:
    best = _best(entry)
    half = entry.get("half_saturation") or {}
    sat = entry["saturated_at_rate"]
    return (
        f"| {entry['target']} | {entry['connections']:,} | {entry['connect_auth_config_seconds']:.2f} "
        f"| {best['delivered_per_second'] if best else 0:,} | {sat if sat is not None else '> max'} "
        f"| {_per_cpu_second(entry):,} "
        f"| {half.get('rate', '-')} | {half.get('latency_p50_ms', '-')} / {half.get('latency_p95_ms', '-')} "
        f"/ {half.get('latency_p99_ms', '-')} "
        f"| {entry['rss_per_connection_kb']} | {entry['rss_connected_mb']} "
        f"| {entry.get('connect_server_cpu_ms_per_connection', '-')} | {half.get('client_cpu_seconds', '-')} |"
    )


def _key(entry: dict) -> tuple[str, int]:
    return entry["target"], entry["connections"]


def _gc_table(fanout: list[dict]) -> list[str]:
    """Full garbage collections: each stops every socket of its process while it runs."""
    rows = [entry for entry in fanout if entry.get("gc_pauses")]
    if not rows:
        return []
    lines = [
        "Garbage collection in the server process(es) over the whole run (set-up, every window):",
        "",
        "| server | C | full collections | longest full, ms | all collections' pauses, ms |",
        "|---|---|---|---|---|",
    ]
    for entry in rows:
        pauses = entry["gc_pauses"]
        full = pauses.get("gen2", {"count": 0, "max_ms": 0})
        total = sum(generation["total_ms"] for generation in pauses.values())
        lines.append(
            f"| {entry['target']} | {entry['connections']:,} | {full['count']} | {full['max_ms']} | {total:,.0f} |"
        )
    return lines


def _where_time_goes(fanout: list[dict]) -> list[str]:
    """Each profiled run: the machine's CPU in the profiled window, and what the server did."""
    rows = [entry for entry in fanout if entry.get("profile")]
    if not rows:
        return []
    lines = [
        "## Where the time goes",
        "",
        "Each server again at its half-saturation rate, in a window of its own, sampled by py-spy",
        "(`bench/profile.py`; the collapsed stacks are in `bench/results/latest-profiles/`). CPU",
        "seconds of everything on the machine in that window (publishing, then the drain); the",
        "server's share is of the publishing seconds (1.0: one CPU all the time).",
        "",
        "| server | C | ticks/s | server CPU share (kernel part) | server CPU-s | load client | publisher "
        "| Redis | interrupts | idle (of 2 CPUs × window) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in rows:
        window = entry["profile"]["window"]
        machine = window.get("machine_cpu_seconds", {})
        lines.append(
            f"| {entry['target']} | {entry['connections']:,} | {entry['profile']['rate']:g} "
            f"| {window['server_cpu_share']} ({window.get('server_system_cpu_seconds', 0) / max(window['server_cpu_seconds'], 0.01):.0%}) "
            f"| {window['server_cpu_seconds']} | {window['client_cpu_seconds']} | {window.get('publisher_cpu_seconds', '-')} "
            f"| {window.get('redis_cpu_seconds', '-')} | {machine.get('interrupts', '-')} | {machine.get('idle', '-')} |"
        )
    lines += ["", "What the server process was doing (share of py-spy's samples):", ""]
    categories = [c["category"] for c in rows[0]["profile"]["categories"]]
    for entry in rows[1:]:
        categories += [
            c["category"] for c in entry["profile"]["categories"] if c["category"] not in categories
        ]
    lines += [
        "| server | C | " + " | ".join(categories) + " |",
        "|---|---|" + "---|" * len(categories),
    ]
    for entry in rows:
        shares = {c["category"]: c["share"] for c in entry["profile"]["categories"]}
        lines.append(
            f"| {entry['target']} | {entry['connections']:,} | "
            + " | ".join(f"{shares.get(c, 0):.0%}" for c in categories)
            + " |"
        )
    busiest = next(
        (e for e in rows if e["target"] == "dashboard-server, 1 process" and e["connections"] == 1000),
        rows[0],
    )
    lines += [
        "",
        f"Busiest lines of {busiest['target']}, C={busiest['connections']:,} (self time: the innermost Python"
        " line, with the C code and system calls it made):",
        "",
        "| line | share |",
        "|---|---|",
        *[f"| `{item['function']}` | {item['share']:.1%} |" for item in busiest["profile"]["self"][:8]],
    ]
    return lines


def _scaling(by_key: dict) -> list[str]:
    """`--workers 2` against one process at each C both ran: set-up, saturation, latency."""
    lines = []
    for (target, connections), two in by_key.items():
        one = by_key.get(("dashboard-server, 1 process", connections))
        if target != "dashboard-server --workers 2" or one is None:
            continue
        if not lines:
            lines = [
                "`--workers 2` against one process (same clients; the load client shares the 2 CPUs, so",
                "what scales is what the server alone limits: set-up and per-update fan-out time):",
                "",
                "| C | set-up s, 1 → 2 processes | saturates at ticks/s, 1 → 2 | at ticks/s | p50 ms, 1 → 2 | p99 ms, 1 → 2 |",
                "|---|---|---|---|---|---|",
            ]
        both = {w["rate"]: w for w in one["windows"] if w["kept_up"]}
        common = [w for w in two["windows"] if w["kept_up"] and w["rate"] in both]
        at = max(common, key=lambda w: w["rate"]) if common else None
        lines.append(
            f"| {connections:,} | {one['connect_auth_config_seconds']:.2f} → {two['connect_auth_config_seconds']:.2f} "
            f"| {one['saturated_at_rate'] or '> max'} → {two['saturated_at_rate'] or '> max'} "
            + (
                f"| {at['rate']} | {both[at['rate']]['latency_p50_ms']} → {at['latency_p50_ms']} "
                f"| {both[at['rate']]['latency_p99_ms']} → {at['latency_p99_ms']} |"
                if at
                else "| - | - | - |"
            )
        )
    return lines


def write_markdown(results: dict, path: Path, baseline_path: Path) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Made by `{results['command']}` on {results['date']} "
        f"({results['machine']['cpus']} CPUs, Python {results['machine']['python']}, {results['machine']['platform']}).",
        f"Load client: bench/wsload.{'c' if results.get('load_client') == 'c' else 'py'}. "
        "Raw numbers: `bench/results/latest.json`; the baseline compared against: `bench/results/baseline.json`.",
        "",
        "## Fan-out",
        "",
        "A tick is one published message carrying 10 values (one per metric); every connection is",
        "subscribed to all 10, so C connections at R ticks/s are offered 10·C·R messages per second.",
        "*Batched updates*: the same server, sockets opened with `?updates=batch` (docs/protocol.md):",
        "a message carries all values a socket is due in one turn; messages counted are values.",
        "*Delivered/s*: the best rate all clients kept up with (≥ 95 % delivered, p99 < 1 s, none",
        "disconnected, and the median latency of the values published in the window's last third",
        "at most twice that of its first third plus 20 ms: a queue that grows with the window is not",
        "kept up with, however short the window). *Per server CPU-s*: messages delivered per CPU-second (user + system) of the",
        "server process(es), best window all clients kept up in. *Saturates at*: the first rate not kept",
        "up; the ramp doubles the rate, then narrows the step below it to quarter octaves (19 %).",
        "Latency is from the publish to the client's receipt, sampled, at half of the highest rate kept",
        "up, in a window of its own. *Set-up CPU*: server CPU-ms per socket while all C were set up;",
        "*client CPU-s*: the load client's CPU seconds in the half-saturation window (it shares the",
        "machine with the server). When updates come faster than a socket's writes, the frames",
        "pending for it are joined into one write per event-loop turn, so messages per CPU-second",
        "grow with the rate until the server saturates.",
        "",
        "| server | C | connect+auth+config s (all C) | delivered/s | saturates at ticks/s "
        "| per server CPU-s | half-sat. ticks/s | p50 / p95 / p99 ms | RSS KB per idle conn | RSS MB "
        "| set-up CPU ms/socket | client CPU-s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[_row(entry) for entry in results["fanout"]],
        "",
    ]
    by_key = {_key(e): e for e in results["fanout"]}
    ours = by_key.get(("dashboard-server, 1 process", 1000))
    naive = by_key.get(("naive reference (send_str per client per message)", 1000))
    if ours and naive:
        a, b = _per_cpu_second(ours), _per_cpu_second(naive)
        lines.append(
            f"At C=1,000 the fan-out delivers **{a / b:.1f}×** the naive reference's messages per server CPU-second in this run."
        )
    lines += [
        "",
        *_scaling(by_key),
        "",
        *_gc_table(results["fanout"]),
        "",
        *_where_time_goes(results["fanout"]),
    ]
    ingest, history = results["ingest"], results["history"]
    lines += [
        "",
        "## Store",
        "",
        "| measure | value |",
        "|---|---|",
        f"| worker ingest (binary COPY, ticks of {ingest['rows_per_tick']:,} values) | {ingest['rows_per_second']:,} rows/s |",
        f"| the same rows by INSERT (pushes, small ticks) | {ingest['insert_rows_per_second']:,} rows/s |",
        f"| the same rows by a raw binary COPY, tick by tick in turn with the two above | {ingest['raw_copy_rows_per_second']:,} rows/s |",
        f"| share of the raw COPY: worker / INSERT | {ingest['share_of_raw_copy']} / {ingest['insert_share_of_raw_copy']} |",
        f"| latest-100 history, table of {history['table_rows']:,} rows: p50 / p99 / max | "
        f"{history['p50_ms']} / {history['p99_ms']} / {history['max_ms']} ms |",
        "",
    ]
    if baseline_path.exists():
        baseline = json.loads(baseline_path.read_text())
        base_by_key = {_key(e): e for e in baseline["fanout"]}
        lines += [
            "## Against the baseline",
            "",
            "| server | C | per server CPU-s now / baseline |",
            "|---|---|---|",
        ]
        for entry in results["fanout"]:
            base = base_by_key.get(_key(entry))
            if base:
                now, then = _per_cpu_second(entry), _per_cpu_second(base) or 1
                lines.append(f"| {entry['target']} | {entry['connections']:,} | {now / then:.2f} |")
        lines.append(
            f"| ingest rows/s | | {ingest['rows_per_second'] / baseline['ingest']['rows_per_second']:.2f} |"
        )
        lines.append("")
    # Notes below the marker (measurements of one change, with their commands)
    # are written by hand and kept when a run rewrites the tables above.
    kept = path.read_text().partition(KEPT_MARKER) if path.exists() else ("", "", "")
    if kept[1]:
        lines += [KEPT_MARKER + kept[2].rstrip("\n"), ""]
    path.write_text("\n".join(lines))
