"""bfx-bridge benchmarks: one command, every figure with its ratio (docs/BENCHMARKS.md).

    python bench/run.py [--quick] [--only P1,P3] [--profile] [--json FILE] [--plot FILE]

Runs E0 (the emulator alone) and P1–P7 of shared PERFORMANCE.md against a private
redis-server on a free port and an emulator in its own process, prints each figure and its
ratio to its baseline or target, and writes nothing outside a temporary directory (removed
at the end) unless ``--json``/``--plot`` name files. ``--quick`` shortens P3/P5/P6 and runs
P1 once; ``--tiny`` is the smoke test's seconds-long mode (figures meaningless, checks
real). P2 creates its own venv with cryptofeed 2.4.1 in the temporary directory
(``--cryptofeed-venv DIR`` reuses one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import peer, scenarios  # noqa: E402
from bench.harness import RedisServer  # noqa: E402
from bench.scenarios import SIZES, Context  # noqa: E402

STEPS = ["E0", "P1", "P2", "P3", "P4", "P5", "P6"]
TARGETS = {
    "P1": "worker ÷ redis-py ≥ 1.0 (aim 2)",
    "P2": "worker ÷ cryptofeed ≥ 3",
    "P3": "p99 ≤ 2 ms",
    "P4": "≤ 1 s, every stream",
    "P5": "≤ 80 MB",
    "P6": "flat (within noise)",
    "P7": "0 lost, 0 duplicated",
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    only = [s.strip().upper() for s in args.only.split(",")] if args.only else STEPS
    if args.no_cryptofeed and "P2" in only:
        only.remove("P2")
    work = Path(tempfile.mkdtemp(prefix="bfx-bench-"))
    os.environ["MPLCONFIGDIR"] = str(work / "mpl")
    results: dict[str, Any] = {"mode": mode, "machine": machine(), "command": _command(argv)}
    server = RedisServer(work)
    try:
        server.start()
        results["machine"]["redis_server"] = server.version
        ctx = Context(work, server, SIZES[mode], say=_say, profile=args.profile)
        run_steps(ctx, only, results, args)
        if ctx.profiles:
            results["profiles"] = ctx.profiles
        results["P7"] = p7_summary(results)
        print_report(results)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        if args.plot:  # before the work directory goes: matplotlib keeps its cache there
            from bench.plot import plot

            plot(results, Path(args.plot))
    finally:
        server.stop()
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    p7 = results.get("P7", {"lost": 1})
    return 1 if failed or p7["lost"] or p7.get("duplicated") else 0


def run_steps(ctx: Context, only: list[str], results: dict[str, Any], args: Any) -> None:
    """Run each selected step; a step that fails is reported (with why) and the rest go on."""
    for step in STEPS:
        if step not in only:
            continue
        ctx.say(f"--- {step}")
        started = time.monotonic()
        try:
            if step == "E0":
                results[step] = scenarios.emulator_alone(ctx)
            elif step == "P1":
                results[step] = scenarios.p1_throughput(ctx)
            elif step == "P2":
                bridge = results.get("P1", {}).get("entries_per_s")
                results[step] = peer.p2_cryptofeed(ctx, bridge, args.cryptofeed_venv)
            elif step == "P3":
                results[step] = scenarios.p3_latency(ctx)
            elif step == "P4":
                results[step] = scenarios.p4_recovery(ctx)
            elif step == "P5":
                results[step] = scenarios.p5_memory(ctx)
            elif step == "P6":
                results[step] = scenarios.p6_scaling(ctx)
        except Exception as exc:
            results[step] = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc()
        results[step]["elapsed_s"] = round(time.monotonic() - started, 1)
        results[step]["load_avg_1m_after"] = round(os.getloadavg()[0], 2)


def p7_summary(results: dict[str, Any]) -> dict[str, Any]:
    """P7 over every run: the sum of each step's entry checks."""
    total = {"checked": 0, "lost": 0, "duplicated": 0, "runs": []}
    for step, figures in results.items():
        if not isinstance(figures, dict):
            continue
        checks = [figures.get("p7")] + [
            r["baseline"].get("p7") for r in figures.get("reps", []) if "baseline" in r
        ]
        for check in checks:
            if check:
                total["checked"] += check.get("checked", 0)
                total["lost"] += check.get("lost", 0)
                total["duplicated"] += check.get("duplicated", 0)
                if step not in total["runs"]:
                    total["runs"].append(step)
    return total


def print_report(results: dict[str, Any]) -> None:
    """Every figure with its ratio or target, one block per step."""
    m = results["machine"]
    print(
        f"\n== bfx-bridge benchmarks ({results['mode']}) on {m['cpu']} × {m['nproc']}, "
        f"Python {m['python']}, redis-server {m.get('redis_server')}"
    )
    for step in [*STEPS, "P7"]:
        figures = results.get(step)
        if figures is None:
            continue
        if "error" in figures:
            print(f"{step}: did not run: {figures['error']}")
            continue
        for line in _lines(step, figures):
            print(f"{step}: {line}")


def _lines(step: str, f: dict[str, Any]) -> list[str]:
    target = f"[target: {TARGETS[step]}]" if step in TARGETS else ""
    if step == "E0":
        return [
            f"emulator alone writes {f['frames_per_s']:,} frames/s "
            f"({f['client_frames_per_s']:,} frames/s, {f['mb_per_s']} MB/s as received by a "
            f"draining client); {f['frames']:,} frames, {f['entries']:,} entries, "
            f"rendered in {f['render_s']} s beforehand"
        ]
    if step == "P1":
        out = [
            f"worker {f['entries_per_s']:,} entries/s ÷ redis-py {f['baseline_entries_per_s']:,}"
            f"/s = {f['ratio']} (median of {len(f['reps'])}) {target}"
        ]
        for i, r in enumerate(f["reps"], 1):
            b = r["baseline"]
            out.append(
                f"  run {i}: {r['entries']:,} entries ({r['frames']:,} frames) in {r['seconds']} s"
                f" = {r['entries_per_s']:,}/s, worker {r['cpu_us_per_entry']} µs CPU/entry, "
                f"redis {r['redis_cpu_us_per_entry']} µs; redis-py {b['entries_per_s']:,}/s, "
                f"{b['cpu_us_per_entry']} µs CPU/entry; ratio {r['ratio']}"
            )
        return out
    if step == "P2":
        if "skipped" in f:
            return [f"skipped: {f['skipped']}"]
        bridge = f["bridge_entries_per_s"]
        head = (
            f"worker {bridge:,} entries/s ÷ cryptofeed {f['entries_per_s']:,}/s = "
            f"{f['ratio']} {target}"
            if bridge
            else f"cryptofeed {f['entries_per_s']:,} entries/s (run P1 too for the ratio)"
        )
        return [
            head,
            f"  cryptofeed: {f['entries']:,} entries in {f['seconds']} s, "
            f"{f['cpu_us_per_entry']} µs CPU/entry, RSS {f['rss_mb']} MB; "
            f"its own check: lost {f['p7']['lost']}, duplicated {f['p7']['duplicated']}",
        ]
    if step == "P3":
        return [
            f"p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, p99.9 {f['p999_ms']} ms, max "
            f"{f['max_ms']} ms over {f['n']:,} entries at {f['msg_per_s']:,} msg/s; "
            f"p99 ÷ 2 ms = {round(f['p99_ms'] / 2, 3)} {target}"
        ]
    if step == "P4":
        return [
            f"drop -> first new snapshot: p50 {f['p50_ms']} ms, max {f['max_ms']} ms over "
            f"{f['streams']} streams × {f['drops']} drops; max ÷ 1 s = "
            f"{round(f['max_ms'] / 1000, 3)} {target}"
        ]
    if step == "P5":
        return [
            f"RSS {f['rss_start_mb']} MB after the snapshots, max {f['rss_max_mb']} MB, "
            f"{f['rss_end_mb']} MB after {f['seconds']} s ({f['channels']} channels, "
            f"{f['entries_per_s']:,} entries/s); growth {f['growth_mb_per_min_2nd_half']} "
            f"MB/min over the 2nd half; max ÷ 80 MB = {round(f['rss_max_mb'] / 80, 3)} "
            f"{target}"
        ]
    if step == "P6":
        out = []
        for streams, r in f["sizes"].items():
            out.append(
                f"{streams:>5} streams ({r['connections']} conn): {r['entries_per_s']:,} "
                f"entries/s, worker {r['cpu_us_per_entry']} µs CPU/entry, redis "
                f"{r['redis_cpu_us_per_entry']} µs"
            )
        out.append(
            f"CPU/entry last ÷ first = {f['cpu_ratio_last_first']}, wall/entry last ÷ "
            f"first = {f['wall_ratio_last_first']} {target}"
        )
        return out
    if step == "P7":
        return [
            f"{f['lost']} lost, {f['duplicated']} duplicated of {f['checked']:,} entries "
            f"checked one by one ({', '.join(f['runs'])}) {target}"
        ]
    return [json.dumps(f)]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    libs = {}
    for name in ("websocket-client", "redis", "hiredis", "msgpack", "orjson", "websockets"):
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "libraries": libs,
        "load_before": os.getloadavg()[0],
    }


def _command(argv: list[str] | None) -> str:
    return "python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="shorter runs (P5 60 s, one P1 burst)")
    size.add_argument("--tiny", action="store_true", help="seconds-long smoke mode")
    parser.add_argument("--only", help=f"comma-separated steps of {','.join(STEPS)}")
    parser.add_argument("--no-cryptofeed", action="store_true", help="skip P2")
    parser.add_argument("--cryptofeed-venv", help="reuse this venv for P2 instead of a new one")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker during P1")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--plot", help="also draw the PNG plot to this file (matplotlib)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser


if __name__ == "__main__":
    sys.exit(main())
