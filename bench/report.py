"""The "Results" tables of docs/BENCHMARKS.md from a run's JSON (``run.py --json FILE``).

    python bench/report.py RESULTS.json > results.md

Prints Markdown: the machine, the command, one row per figure with its ratio and target and
whether it is met, the per-run details, and the py-spy summaries of ``--profile``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def report(r: dict[str, Any]) -> str:
    out = [
        _machine(r),
        "",
        "| # | figure | ratio / against target | target | met |",
        "|---|---|---|---|---|",
    ]
    out += [
        _row(step, r[step])
        for step in ("E0", "P1", "P2", "P3", "P4", "P5", "P6", "P7")
        if step in r
    ]
    out += ["", *_details(r), *_profiles(r)]
    return "\n".join(out) + "\n"


def _machine(r: dict[str, Any]) -> str:
    m = r["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    return (
        f"Command: `{r['command'].strip()}` ({r['mode']} mode). Machine: {m['nproc']} vCPUs, "
        f"`{m['cpu']}` (/proc/cpuinfo), Linux {m['kernel']}, Python {m['python']}, "
        f"redis-server {m.get('redis_server')}, {libs}; 1-minute load average "
        f"{m['load_before']:.1f} at the start (other jobs share this VM)."
    )


def _row(step: str, f: dict[str, Any]) -> str:
    if "error" in f:
        lines = [x.strip() for x in f["error"].splitlines() if x.strip()]
        why = lines[0] if len(lines) < 2 else f"{lines[0]} … {lines[-1]}"
        return f"| {step} | did not run: {why[:300]} | | | ✗ |"
    if step == "E0":
        return (
            f"| E0 | emulator alone: {f['frames_per_s']:,} frames/s written, "
            f"{f['client_frames_per_s']:,} frames/s ({f['mb_per_s']} MB/s) drained by a client "
            f"| vs. P1 worker: see P1 | not the bottleneck | ✓ |"
        )
    if step == "P1":
        met = "✓" if f["ratio"] >= 1 else "✗"
        return (
            f"| P1 | worker {f['entries_per_s']:,} entries/s; redis-py "
            f"{f['baseline_entries_per_s']:,}/s | **{f['ratio']}** (median of "
            f"{len(f['reps'])}) | ≥ 1.0, aim 2 | {met} |"
        )
    if step == "P2":
        ratio = f.get("ratio")
        met = "✓" if ratio and ratio >= 3 else "✗"
        return (
            f"| P2 | cryptofeed {f['entries_per_s']:,} entries/s | **{ratio}** (P1 ÷ this) "
            f"| ≥ 3 | {met} |"
        )
    if step == "P3":
        met = "✓" if f["p99_ms"] <= 2 else "✗"
        return (
            f"| P3 | p50 {f['p50_ms']} ms, **p99 {f['p99_ms']} ms**, max {f['max_ms']} ms "
            f"({f['n']:,} entries, {f['msg_per_s']:,} msg/s) | p99 ÷ 2 ms = "
            f"{round(f['p99_ms'] / 2, 2)} | p99 ≤ 2 ms | {met} |"
        )
    if step == "P4":
        met = "✓" if f["max_ms"] <= 1000 else "✗"
        return (
            f"| P4 | p50 {f['p50_ms']} ms, **max {f['max_ms']} ms** ({f['streams']} streams"
            f" × {f['drops']} drops) | max ÷ 1 s = {round(f['max_ms'] / 1000, 2)} | ≤ 1 s | "
            f"{met} |"
        )
    if step == "P5":
        met = "✓" if f["rss_max_mb"] <= 80 else "✗"
        return (
            f"| P5 | RSS {f['rss_start_mb']} → **max {f['rss_max_mb']} MB** over "
            f"{f['seconds']} s, {f['growth_mb_per_min_2nd_half']} MB/min in the 2nd half | "
            f"max ÷ 80 MB = {round(f['rss_max_mb'] / 80, 2)} | ≤ 80 MB | {met} |"
        )
    if step == "P6":
        sizes = f["sizes"]
        cells = ", ".join(f"{k}: {v['cpu_us_per_entry']} µs" for k, v in sizes.items())
        met = "✓" if f["cpu_ratio_last_first"] <= 1.2 else "✗"
        return (
            f"| P6 | worker CPU per entry {cells} | last ÷ first = "
            f"**{f['cpu_ratio_last_first']}** (wall {f['wall_ratio_last_first']}) | flat | "
            f"{met} |"
        )
    if step == "P7":
        met = "✓" if not f["lost"] and not f["duplicated"] else "✗"
        return (
            f"| P7 | **{f['lost']} lost, {f['duplicated']} duplicated** of "
            f"{f['checked']:,} entries checked ({', '.join(f['runs'])}) | | 0 | {met} |"
        )
    return f"| {step} | {json.dumps(f)[:200]} | | | |"


def _details(r: dict[str, Any]) -> list[str]:
    out: list[str] = []
    p1 = r.get("P1", {})
    if "reps" in p1:
        out += [
            "P1 runs (each: the worker on a fresh burst, then redis-py on the same entries):",
            "",
            "| run | entries (frames) | worker | worker CPU/entry | redis CPU/entry | "
            "redis-py | redis-py CPU/entry | ratio |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for i, x in enumerate(p1["reps"], 1):
            b = x["baseline"]
            out.append(
                f"| {i} | {x['entries']:,} ({x['frames']:,}) | {x['entries_per_s']:,}/s "
                f"| {x['cpu_us_per_entry']} µs | {x['redis_cpu_us_per_entry']} µs | "
                f"{b['entries_per_s']:,}/s | {b['cpu_us_per_entry']} µs | {x['ratio']} |"
            )
        if p1.get("worker_health"):
            out += ["", f"Worker counters after P1: {p1['worker_health']}."]
        out.append("")
    p2 = r.get("P2", {})
    if "entries_per_s" in p2:
        out += [
            f"P2: cryptofeed wrote {p2['entries']:,} entries in {p2['seconds']} s, "
            f"{p2['cpu_us_per_entry']} µs CPU per entry (redis-server "
            f"{p2['redis_cpu_us_per_entry']} µs), RSS {p2['rss_mb']} MB at the end; its "
            f"streams: {p2['p7']['lost']} lost, {p2['p7']['duplicated']} duplicated.",
            "",
        ]
    p6 = r.get("P6", {})
    if "sizes" in p6:
        out += [
            "| P6 streams | connections | entries/s | worker CPU/entry | redis CPU/entry |",
            "|---|---|---|---|---|",
        ]
        for k, v in p6["sizes"].items():
            out.append(
                f"| {k} | {v['connections']} | {v['entries_per_s']:,} | "
                f"{v['cpu_us_per_entry']} µs | {v['redis_cpu_us_per_entry']} µs |"
            )
        out.append("")
    return out


def _profiles(r: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for name, p in r.get("profiles", {}).items():
        if "error" in p:
            out += [f"Profile {name}: {p['error']}", ""]
            continue
        run = p.get("run", {})
        out += [
            f"py-spy, {name} ({p['samples']:,} samples of the GIL holder; that burst: "
            f"{run.get('entries_per_s', '?'):,} entries/s, {run.get('cpu_us_per_entry')} µs "
            f"CPU/entry):",
            "",
            "| self % | function | | total % | function |",
            "|---|---|---|---|---|",
        ]
        total = [t for t in p["total"] if not t[0].startswith(("Thread.", "<module>"))]
        for i in range(min(14, len(p["self"]))):
            s = p["self"][i]
            t = total[i] if i < len(total) else ("", "")
            out.append(f"| {s[1]} | `{s[0]}` | | {t[1]} | `{t[0]}` |")
        out.append("")
    return out


if __name__ == "__main__":
    sys.stdout.write(report(json.loads(Path(sys.argv[1]).read_text())))
