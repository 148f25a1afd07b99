"""Tables and a plot of latency against the number of sockets, from `python -m bench` runs.

    python -m bench.scaling bench/results/scale-*.json > /tmp/tables.md

Prints markdown (one row per fan-out run and rate, with the command of its
run) and writes bench/results/latency-vs-sockets.svg: p50 and p99 at
1 tick/s against the number of sockets, on log scales.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).parent
SVG = HERE / "results" / "latency-vs-sockets.svg"


def rows(paths: list[Path]) -> list[dict]:
    found = []
    for path in paths:
        run = json.loads(path.read_text())
        for fanout in [f for f in run.get("fanout", []) if "failed" not in f]:
            windows = [
                *fanout["windows"],
                *([fanout["half_saturation"]] if fanout.get("half_saturation") else []),
            ]
            for window in windows:
                found.append(
                    {
                        "file": path.name,
                        "command": run["command"],
                        "target": fanout["target"],
                        "sockets": fanout["connections"],
                        "setup_s": fanout["connect_auth_config_seconds"],
                        "setup_cpu_ms": fanout["connect_server_cpu_ms_per_connection"],
                        "kb": fanout["rss_per_connection_kb"],
                        "half": window is fanout.get("half_saturation"),
                        **window,
                    }
                )
    return found


def markdown(found: list[dict]) -> str:
    lines = [
        "| run | server | sockets | ticks/s | p50 / p99 ms | delivered | alive | full GCs in window (longest ms)"
        " | server CPU-s | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in found:
        rate = f"{row['rate']:g}" + (" (half sat.)" if row["half"] else "")
        lines.append(
            f"| `{row['file']}` | {row['target']} | {row['sockets']:,} | {rate}"
            f" | {row['latency_p50_ms']} / {row['latency_p99_ms']} | {row['delivered_fraction']}"
            f" | {row['alive']:,} | {row.get('full_collections', '?')} ({row.get('longest_full_collection_ms', '?')})"
            f" | {row['server_cpu_seconds']} | {round(row['load_average'], 1) if 'load_average' in row else '?'} |"
        )
    return "\n".join(lines)


def plot(found: list[dict]) -> None:
    """p50 and p99 at 1 tick/s against sockets, log-log, as a small hand-written SVG."""
    by_sockets: dict[int, list[tuple[float, float]]] = {}
    for r in found:
        if r["rate"] == 1 and not r["half"] and r["latency_p50_ms"] and r["latency_p99_ms"]:
            by_sockets.setdefault(r["sockets"], []).append((r["latency_p50_ms"], r["latency_p99_ms"]))
    # Several runs at one size: their medians.
    points = [
        (sockets, statistics.median(p[0] for p in runs), statistics.median(p[1] for p in runs))
        for sockets, runs in sorted(by_sockets.items())
    ]
    if not points:
        return
    width, height, margin = 560, 320, 60
    xs = [math.log10(p[0]) for p in points]
    ys = [math.log10(v) for p in points for v in p[1:]] + [math.log10(50)]
    x0, x1 = min(xs) - 0.1, max(xs) + 0.1
    y0, y1 = min(ys) - 0.2, max(ys) + 0.2

    def at(sockets: float, ms: float) -> tuple[float, float]:
        x = margin + (math.log10(sockets) - x0) / (x1 - x0) * (width - 2 * margin)
        y = height - margin - (math.log10(ms) - y0) / (y1 - y0) * (height - 2 * margin)
        return round(x, 1), round(y, 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif"'
        ' font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="20" text-anchor="middle">publish → receive at 1 tick/s, batched (median of runs)</text>',
    ]
    limit = at(10**x0, 50)
    parts.append(
        f'<line x1="{margin}" y1="{limit[1]}" x2="{width - margin}" y2="{limit[1]}" stroke="#c00"'
        ' stroke-dasharray="4 4"/>'
        f'<text x="{width - margin}" y="{limit[1] - 4}" text-anchor="end" fill="#c00">50 ms target</text>'
    )
    for index, (label, colour) in enumerate((("p50", "#36c"), ("p99", "#f80"))):
        coords = [at(p[0], p[1 + index]) for p in points]
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
            + " ".join(f"{x},{y}" for x, y in coords)
            + '"/>'
        )
        for (x, y), p in zip(coords, points, strict=True):
            parts.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>')
            parts.append(f'<text x="{x + 5}" y="{y - 5}" fill="{colour}">{p[1 + index]:g}</text>')
        parts.append(f'<text x="{margin + 10}" y="{40 + 15 * index}" fill="{colour}">{label}</text>')
    for sockets in sorted({p[0] for p in points}):
        x, _ = at(sockets, 10**y0)
        parts.append(f'<text x="{x}" y="{height - margin + 18}" text-anchor="middle">{sockets:,}</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 15}" text-anchor="middle">sockets (log scale)</text>')
    parts.append(
        f'<text x="15" y="{height / 2}" transform="rotate(-90 15 {height / 2})" text-anchor="middle">'
        "ms (log scale)</text>"
    )
    parts.append("</svg>")
    SVG.write_text("\n".join(parts) + "\n")


def main() -> None:
    found = rows([Path(arg) for arg in sys.argv[1:]])
    print(markdown(found))
    plot(found)


if __name__ == "__main__":
    main()
