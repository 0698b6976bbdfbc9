"""The benchmarks E0 and P1–P7 (P2 is in :mod:`bench.peer`), each a function of a :class:`Context`
returning a JSON-ready dict of figures. ``run.py`` calls them in order and prints them."""

from __future__ import annotations

import math
import signal
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
import websocket

from bench.harness import (
    BenchError,
    EmulatorProc,
    RedisServer,
    Watcher,
    WorkerProc,
    check_entries,
    cpu_seconds,
    id_seconds,
    last_ids,
    rss_mb,
    settle,
    wait_until,
    xlens,
)

SYMBOLS = [
    "tBTCUSD",
    "tETHUSD",
    "tLTCUSD",
    "tXRPUSD",
    "tSOLUSD",
    "tDOGE:USD",
    "tADAUSD",
    "tEOSUSD",
    "tLEOUSD",
    "tXRPBTC",
]
CHANNELS = ["book", "trades"]  # book = P0, F0, len 25 (the bridge's default)
ALL_FLAGS = 65536 | 32768 | 131072 | 536870912  # what the bridge asks: SEQ_ALL TIMESTAMP CS BULK
BASELINE_BATCH = 500
DROP_SPACING = 8.0  # seconds between P4 drops
MAXLEN = 1_000_000  # nothing is trimmed, so that P7 can compare every entry


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does (``--quick`` and the smoke test's ``--tiny`` shrink it)."""

    burst: int = 300_000
    reps: int = 3
    p3_rate: float = 1000.0
    p3_seconds: float = 30.0
    drops: int = 5
    p5_seconds: float = 600.0
    p6_burst: int = 200_000
    p6_streams: tuple[int, ...] = (10, 100, 1000)


SIZES = {
    "full": Sizes(),
    "quick": Sizes(reps=1, p3_seconds=10, drops=3, p5_seconds=60, p6_burst=60_000),
    "tiny": Sizes(
        burst=4_000,
        reps=1,
        p3_seconds=1,
        drops=1,
        p5_seconds=3,
        p6_burst=2_000,
        p6_streams=(10, 100),
    ),
}


@dataclass
class Context:
    work: Path
    redis: RedisServer
    sizes: Sizes
    say: Callable[[str], None]
    profile: bool = False
    profiles: dict[str, Any] = field(default_factory=dict)

    def client(self) -> redis.Redis:
        return self.redis.client()


def xadd_calls(r: redis.Redis) -> int:
    """XADD commands the server has run so far (one cheap command to poll, any number of keys)."""
    stats: Any = r.info("commandstats")
    return int(stats.get("cmdstat_xadd", {}).get("calls", 0))


def wait_written(
    r: redis.Redis, target: int, want: dict[str, int], timeout: float, alive: Callable[[], bool]
) -> float:
    """Wait until the server has run ``target`` XADDs in all (one cheap command to poll, any
    number of streams) and each key of ``want`` holds that many entries; return the wall time
    of the newest entry (its Redis id)."""

    def counted() -> bool:
        if not alive():
            raise BenchError("the process under test exited")
        return xadd_calls(r) >= target

    wait_until(counted, timeout, f"{target} XADDs in all", step=0.005)
    wait_until(
        lambda: all(xlens(r, want)[k] >= n for k, n in want.items()),
        timeout,
        "every stream to hold its entries",
        step=0.005,
    )
    return max(id_seconds(i) for i in last_ids(r, want).values())


# -- E0: the emulator alone -----------------------------------------------------------------


def emulator_alone(ctx: Context) -> dict[str, Any]:
    """How fast the emulator writes a burst to a client that only drains its socket."""
    emu = EmulatorProc(ctx.work, "e0", "--paused")
    try:
        ws = websocket.create_connection(emu.url, skip_utf8_validation=True)
        ws.send(orjson.dumps({"event": "conf", "flags": ALL_FLAGS}))
        for symbol in SYMBOLS:
            ws.send(
                orjson.dumps(
                    {
                        "event": "subscribe",
                        "channel": "book",
                        "symbol": symbol,
                        "prec": "P0",
                        "len": 25,
                    }
                )
            )
            ws.send(orjson.dumps({"event": "subscribe", "channel": "trades", "symbol": symbol}))
        snapshots = 0
        while snapshots < 2 * len(SYMBOLS):
            msg = orjson.loads(ws.recv())
            snapshots += isinstance(msg, list) and msg[1] != "hb"
        replies: list[dict[str, Any]] = []
        emu.send("burst", entries=ctx.sizes.burst)
        reader = threading.Thread(target=lambda: replies.append(emu.receive()), daemon=True)
        reader.start()
        sock, buffer, received = ws.sock, bytearray(1 << 20), 0
        sock.settimeout(0.01)
        t_last = 0.0
        while not replies or received < replies[0]["bytes"]:
            try:
                received += sock.recv_into(buffer)
                t_last = time.time()
            except TimeoutError:
                pass
        reader.join()
        ws.abort()
        burst = replies[0]
        return {
            "frames": burst["frames"],
            "entries": sum(burst["entries"].values()),
            "bytes": burst["bytes"],
            "render_s": round(burst["render_seconds"], 2),
            "write_s": round(burst["t1"] - burst["t0"], 4),
            "frames_per_s": round(burst["frames"] / (burst["t1"] - burst["t0"])),
            "client_frames_per_s": round(burst["frames"] / (t_last - burst["t0"])),
            "mb_per_s": round(burst["bytes"] / (t_last - burst["t0"]) / 1e6),
        }
    finally:
        emu.stop()


# -- P1 (and P7): one worker on a burst, against a plain redis-py writer ----------------------


def p1_throughput(ctx: Context) -> dict[str, Any]:
    """P1: entries/s of one worker on bursts; the same entries through redis-py pipelines."""
    r = ctx.client()
    emu = EmulatorProc(ctx.work, "p1", "--paused")
    worker = WorkerProc(
        ctx.work,
        "p1",
        ws_url=emu.url,
        redis_url=ctx.redis.url,
        prefix="p1",
        symbols=SYMBOLS,
        channels=CHANNELS,
    )
    reps = []
    try:
        worker.wait_snapshots(r)
        for rep in range(ctx.sizes.reps):
            ctx.say(f"P1: burst {rep + 1}/{ctx.sizes.reps} of {ctx.sizes.burst} entries")
            before = last_ids(r, worker.keys)
            result = _burst(ctx, r, emu, worker.pid, "p1", worker.keys, worker.alive)
            rows = _read_since(r, before)
            result["baseline"] = baseline_writer(ctx, rows)
            result["ratio"] = round(
                result["entries_per_s"] / result["baseline"]["entries_per_s"], 3
            )
            reps.append(result)
            ctx.say(
                f"P1: worker {result['entries_per_s']:.0f}/s, redis-py "
                f"{result['baseline']['entries_per_s']:.0f}/s, ratio {result['ratio']}"
            )
        if ctx.profile:
            ctx.say("P1: one more burst under py-spy (not in the figures)")
            ctx.profiles["P1 worker"] = _profiled_burst(ctx, r, emu, worker, "p1")
        ctx.say("P7: checking every P1 entry against the frames sent")
        p7 = check_entries(r, "p1", emu.frames())
        time.sleep(2.5)  # one more health refresh
        health = worker.health(r)
    finally:
        worker.stop()
        emu.stop()
    r.flushdb()
    ratios = sorted(x["ratio"] for x in reps)
    rates = sorted(x["entries_per_s"] for x in reps)
    return {
        "reps": reps,
        "entries_per_s": rates[len(rates) // 2],
        "baseline_entries_per_s": sorted(x["baseline"]["entries_per_s"] for x in reps)[
            len(reps) // 2
        ],
        "ratio": ratios[len(ratios) // 2],
        "p7": p7,
        "worker_health": health,
    }


def _burst(
    ctx: Context,
    r: redis.Redis,
    emu: EmulatorProc,
    pid: int,
    prefix: str,
    keys: list[str],
    alive: Callable[[], bool],
    size: int | None = None,
) -> dict[str, Any]:
    """One burst through a process: entries/s from the first byte sent to the last entry in
    Redis, and the CPU that process and redis-server spent per entry. Keys are
    ``{prefix}:{stream name}``."""
    lens = xlens(r, keys)
    calls0 = xadd_calls(r)
    cpu0, rcpu0 = cpu_seconds(pid), cpu_seconds(ctx.redis.pid)
    burst = emu.cmd("burst", entries=size or ctx.sizes.burst)
    entries = sum(burst["entries"].values())
    want = {f"{prefix}:{name}": n for name, n in burst["entries"].items() if n}
    want = {k: lens[k] + n for k, n in want.items()}
    done = wait_written(r, calls0 + entries, want, 60 + entries / 2000, alive)
    cpu, rcpu = cpu_seconds(pid) - cpu0, cpu_seconds(ctx.redis.pid) - rcpu0
    seconds = done - burst["t0"]
    return {
        "entries": entries,
        "frames": burst["frames"],
        "streams": len(burst["entries"]),
        "seconds": round(seconds, 3),
        "entries_per_s": round(entries / seconds),
        "cpu_us_per_entry": round(cpu / entries * 1e6, 2),
        "redis_cpu_us_per_entry": round(rcpu / entries * 1e6, 2),
        "emulator_write_s": round(burst["t1"] - burst["t0"], 3),
        "render_s": round(burst["render_seconds"], 1),
    }


def _profiled_burst(
    ctx: Context,
    r: redis.Redis,
    emu: EmulatorProc,
    worker: WorkerProc,
    prefix: str,
    size: int | None = None,
) -> dict[str, Any]:
    """A burst with ``py-spy record`` attached to the worker: where its time goes."""
    spy = Spy(worker.pid, ctx.work / f"{prefix}-worker.pyspy")
    result = _burst(ctx, r, emu, worker.pid, prefix, worker.keys, worker.alive, size)
    profile = spy.stop()
    profile["run"] = {k: result[k] for k in ("entries", "entries_per_s", "cpu_us_per_entry")}
    return profile


def _read_since(r: redis.Redis, before: dict[str, bytes]) -> list[tuple[str, dict[bytes, bytes]]]:
    """Every entry added to each stream after ``before`` (its id then), in stream order."""
    rows: list[tuple[str, dict[bytes, bytes]]] = []
    for key, last in before.items():
        for _, fields in r.xrange(key, min=b"(" + last):  # type: ignore[union-attr]
            rows.append((key, fields))
    return rows


def baseline_writer(ctx: Context, rows: list[tuple[str, dict[bytes, bytes]]]) -> dict[str, Any]:
    """The same entries XADDed by plain redis-py: pipelines of 500, transaction=False, MAXLEN ~.

    Entries keep their order within each stream; streams are interleaved as the worker saw
    them. Runs in this process; its CPU is this process's CPU time.
    """
    r = redis.Redis(port=ctx.redis.port)
    entries = [(f"base:{key}", fields) for key, fields in _interleave(rows)]
    rcpu0, cpu0, t0 = cpu_seconds(ctx.redis.pid), time.process_time(), time.perf_counter()
    for start in range(0, len(entries), BASELINE_BATCH):
        pipe = r.pipeline(transaction=False)
        for key, fields in entries[start : start + BASELINE_BATCH]:
            pipe.xadd(key, fields, maxlen=MAXLEN, approximate=True)  # type: ignore[arg-type]
        pipe.execute()
    seconds = time.perf_counter() - t0
    cpu, rcpu = time.process_time() - cpu0, cpu_seconds(ctx.redis.pid) - rcpu0
    keys = sorted({k for k, _ in entries})
    stored = sum(xlens(r, keys).values())
    r.delete(*keys)
    return {
        "entries": len(entries),
        "seconds": round(seconds, 3),
        "entries_per_s": round(len(entries) / seconds),
        "cpu_us_per_entry": round(cpu / len(entries) * 1e6, 2),
        "redis_cpu_us_per_entry": round(rcpu / len(entries) * 1e6, 2),
        "p7": {"lost": max(0, len(entries) - stored), "duplicated": max(0, stored - len(entries))},
    }


def _interleave(rows: list[tuple[str, dict[bytes, bytes]]]) -> list[tuple[str, dict[bytes, bytes]]]:
    """Round robin over streams (each stream's order kept), as a live feed arrives."""
    per: dict[str, list[dict[bytes, bytes]]] = defaultdict(list)
    for key, fields in rows:
        per[key].append(fields)
    out: list[tuple[str, dict[bytes, bytes]]] = []
    queues = [(k, v) for k, v in per.items()]
    index = 0
    while queues:
        nxt = []
        for key, items in queues:
            chunk = items[index : index + 3]
            out += [(key, f) for f in chunk]
            if index + 3 < len(items):
                nxt.append((key, items))
        queues = nxt
        index += 3
    return out


# -- P3: added latency at 1 000 msg/s --------------------------------------------------------


def p3_latency(ctx: Context) -> dict[str, Any]:
    """P3: emulator send time of each message -> the moment an XREAD BLOCK consumer sees its
    entry, for a paced feed (one book update or trade per message)."""
    r = ctx.client()
    emu = EmulatorProc(ctx.work, "p3", "--paused", "--updates", "1,1")
    worker = WorkerProc(
        ctx.work,
        "p3",
        ws_url=emu.url,
        redis_url=ctx.redis.url,
        prefix="p3",
        symbols=SYMBOLS,
        channels=CHANNELS,
    )
    try:
        worker.wait_snapshots(r)
        watcher = Watcher(ctx.client(), worker.keys)
        watcher.start()
        out = ctx.work / "p3.sent"
        rate, seconds = ctx.sizes.p3_rate, ctx.sizes.p3_seconds
        ctx.say(f"P3: {rate:.0f} msg/s for {seconds:.0f}s")
        paced = emu.cmd("paced", rate=rate, seconds=seconds, out=str(out))
        sent: dict[str, list[int]] = defaultdict(list)
        for line in out.read_text().splitlines():
            _, _, stream, entries, t_ns = line.split("\t")
            sent[f"p3:{stream}"] += [int(t_ns)] * int(entries)

        def updates(key: str) -> list[int]:
            return [t for kind, _, t in list(watcher.seen[key]) if kind == "update"]

        wait_until(
            lambda: all(len(updates(k)) >= len(v) for k, v in sent.items()),
            30,
            "the watcher to see every paced entry",
        )
        watcher.stop()
        latencies = sorted(
            (seen - t) / 1000
            for key, times in sent.items()
            for seen, t in zip(updates(key), times, strict=False)
        )
        settle(r, worker.keys)
        p7 = check_entries(r, "p3", emu.frames())
    finally:
        worker.stop()
        emu.stop()
    r.flushdb()
    result = summary_us(latencies)
    result.update(
        messages=paced["sent"],
        seconds=round(paced["seconds"], 2),
        msg_per_s=round(paced["sent"] / max(paced["seconds"], 1e-9)),
        entries=len(latencies),
        p7=p7,
    )
    result["curve"] = [round(percentile(latencies, q), 1) for q in CURVE]
    return result


CURVE = [0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile of sorted ``values`` (nearest rank)."""
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))
    return values[index]


def summary_us(values: list[float]) -> dict[str, Any]:
    """p50/p90/p99/p99.9/max/mean of sorted microsecond values, as milliseconds."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) / 1000, 3),
        "p90_ms": round(percentile(values, 90) / 1000, 3),
        "p99_ms": round(percentile(values, 99) / 1000, 3),
        "p999_ms": round(percentile(values, 99.9) / 1000, 3),
        "max_ms": round(values[-1] / 1000, 3),
        "mean_ms": round(sum(values) / len(values) / 1000, 3),
    }


# -- P4: recovery after an abrupt drop --------------------------------------------------------


def p4_recovery(ctx: Context) -> dict[str, Any]:
    """P4: TCP reset of the worker's connection -> first new snapshot seen, per stream."""
    r = ctx.client()
    emu = EmulatorProc(ctx.work, "p4")
    worker = WorkerProc(
        ctx.work,
        "p4",
        ws_url=emu.url,
        redis_url=ctx.redis.url,
        prefix="p4",
        symbols=SYMBOLS,
        channels=CHANNELS,
    )
    per_drop: list[dict[str, Any]] = []
    every: list[float] = []
    try:
        worker.wait_snapshots(r)
        watcher = Watcher(ctx.client(), worker.keys)
        watcher.start()
        for drop in range(ctx.sizes.drops):
            # A session that ran healthy (5 s) reconnects at once; one dropped sooner backs
            # off on purpose (bridge/connection.py HEALTHY_AFTER): wait past it.
            time.sleep(DROP_SPACING)
            t_drop = emu.cmd("drop")["t"]
            ns = int(t_drop * 1e9)

            def first_snapshots(ns: int = ns) -> dict[str, float] | None:
                found = {}
                for key in worker.keys:
                    times = [
                        t for kind, _, t in list(watcher.seen[key]) if kind == "snapshot" and t > ns
                    ]
                    if not times:
                        return None
                    found[key] = (times[0] - ns) / 1e6
                return found

            found = wait_until(first_snapshots, 30, f"a new snapshot everywhere after drop {drop}")
            values = sorted(found.values())
            every += values
            per_drop.append(
                {"max_ms": round(values[-1], 1), "p50_ms": round(percentile(values, 50), 1)}
            )
            ctx.say(f"P4: drop {drop + 1}: every stream recovered within {values[-1]:.0f} ms")
        watcher.stop()
        emu.cmd("pause")
        settle(r, worker.keys)
        p7 = check_entries(r, "p4", emu.frames())
    finally:
        worker.stop()
        emu.stop()
    r.flushdb()
    every.sort()
    return {
        "drops": len(per_drop),
        "streams": len(worker.keys),
        "p50_ms": round(percentile(every, 50), 1),
        "max_ms": round(every[-1], 1),
        "per_drop": per_drop,
        "p7": p7,
    }


# -- P5: memory over time -------------------------------------------------------------------


def p5_memory(ctx: Context) -> dict[str, Any]:
    """P5: RSS of one worker with 25 books (len 100) + 50 other channels (trades, ticker)."""
    r = ctx.client()
    symbols = [f"tM{i:02d}USD" for i in range(25)]
    emu = EmulatorProc(ctx.work, "p5")
    worker = WorkerProc(
        ctx.work,
        "p5",
        ws_url=emu.url,
        redis_url=ctx.redis.url,
        prefix="p5",
        symbols=symbols,
        channels=["book:P0:F0:100", "trades", "ticker"],
    )
    samples: list[tuple[float, float]] = []
    try:
        worker.wait_snapshots(r)
        seconds = ctx.sizes.p5_seconds
        ctx.say(f"P5: sampling the worker's RSS for {seconds:.0f}s")
        start = time.monotonic()
        step = min(1.0, seconds / 20)
        calls0 = xadd_calls(r)
        while (elapsed := time.monotonic() - start) < seconds:
            if not worker.alive():
                raise BenchError(f"the worker exited: {worker.log_path.read_text()[-2000:]}")
            samples.append((round(elapsed, 1), round(rss_mb(worker.pid), 2)))
            time.sleep(step)
        samples.append((round(time.monotonic() - start, 1), round(rss_mb(worker.pid), 2)))
        written = xadd_calls(r) - calls0
        emu.cmd("pause")
        settle(r, worker.keys)
        ctx.say("P7: checking every P5 entry")
        p7 = check_entries(r, "p5", emu.frames())
    finally:
        worker.stop()
        emu.stop()
    r.flushdb()
    rss = [m for _, m in samples]
    half = samples[len(samples) // 2 :]
    slope = _slope(half) * 60 if len(half) > 2 else 0.0
    return {
        "seconds": round(samples[-1][0]),
        "channels": len(worker.keys),
        "entries_per_s": round(written / max(samples[-1][0], 1e-9)),
        "rss_start_mb": rss[0],
        "rss_max_mb": max(rss),
        "rss_end_mb": rss[-1],
        "growth_mb_per_min_2nd_half": round(slope, 3),
        "samples": samples[:: max(1, len(samples) // 120)],
        "p7": p7,
    }


def _slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


# -- P6: cost per message as streams grow -----------------------------------------------------


def p6_scaling(ctx: Context) -> dict[str, Any]:
    """P6: the same burst size over 10, 100 and 1 000 streams (book + trades per symbol)."""
    r = ctx.client()
    sizes: dict[str, Any] = {}
    for streams in ctx.sizes.p6_streams:
        symbols = [f"t{chr(65 + i // 100)}{i % 100:02d}USD" for i in range(streams // 2)]
        prefix = f"p6s{streams}"
        emu = EmulatorProc(ctx.work, prefix, "--paused")
        worker = WorkerProc(
            ctx.work,
            prefix,
            ws_url=emu.url,
            redis_url=ctx.redis.url,
            prefix=prefix,
            symbols=symbols,
            channels=CHANNELS,
        )
        try:
            worker.wait_snapshots(r, timeout=180)
            ctx.say(f"P6: {streams} streams, burst of {ctx.sizes.p6_burst} entries")
            result = _burst(
                ctx, r, emu, worker.pid, prefix, worker.keys, worker.alive, ctx.sizes.p6_burst
            )
            result["connections"] = -(-streams // 25)
            if ctx.profile and streams == ctx.sizes.p6_streams[-1]:
                ctx.say("P6: one more burst under py-spy (not in the figures)")
                profile = _profiled_burst(ctx, r, emu, worker, prefix, ctx.sizes.p6_burst)
                ctx.profiles[f"P6 worker, {streams} streams"] = profile
            result["p7"] = check_entries(r, prefix, emu.frames())
            time.sleep(2.5)  # one more health refresh
            result["worker_health"] = worker.health(r)
        finally:
            worker.stop()
            emu.stop()
        r.flushdb()
        sizes[str(streams)] = result
        ctx.say(
            f"P6: {streams} streams: {result['entries_per_s']}/s, "
            f"{result['cpu_us_per_entry']} µs CPU/entry"
        )
    first, last = sizes[str(ctx.sizes.p6_streams[0])], sizes[str(ctx.sizes.p6_streams[-1])]
    return {
        "sizes": sizes,
        "cpu_ratio_last_first": round(last["cpu_us_per_entry"] / first["cpu_us_per_entry"], 3),
        "wall_ratio_last_first": round(first["entries_per_s"] / last["entries_per_s"], 3),
        "p7": _sum_p7([s["p7"] for s in sizes.values()]),
    }


def _sum_p7(parts: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("checked", "lost", "duplicated", "misordered", "cut", "malformed", "unmatched")
    return {k: sum(p.get(k, 0) for p in parts) for k in keys}


# -- py-spy -----------------------------------------------------------------------------------


class Spy:
    """``py-spy record --gil`` attached to a process until :meth:`stop`: raw collapsed stacks
    of the thread holding the GIL only, i.e. where the process spends its Python CPU time
    (threads waiting in ``recv`` or on a lock are not counted)."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.err = out.with_suffix(".log").open("wb")
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self.proc = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                    "--nonblocking",
                    "--gil",
                ],
                stdout=self.err,
                stderr=subprocess.STDOUT,
            )
        except FileNotFoundError:
            self.proc = None
        time.sleep(1.0)  # py-spy attaches

    def stop(self) -> dict[str, Any]:
        if self.proc is None:
            return {"error": "py-spy is not installed (pip install py-spy)"}
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.err.close()
        if not self.out.exists():
            return {"error": self.out.with_suffix(".log").read_text()[-500:]}
        return summarize_stacks(self.out)


def summarize_stacks(path: Path, top: int = 18) -> dict[str, Any]:
    """Where the samples of a py-spy raw profile are: per function, the share of samples it
    is on the stack (total) and at the top (self)."""
    total_samples = 0
    own: dict[str, int] = defaultdict(int)
    inclusive: dict[str, int] = defaultdict(int)
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        total_samples += count
        functions = [_short(f) for f in frames]
        if functions:
            own[functions[-1]] += count
        for name in set(functions):
            inclusive[name] += count

    def share(table: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(table.items(), key=lambda kv: -kv[1])[:top]
        return [(name, round(100 * n / total_samples, 1)) for name, n in ranked]

    return {"samples": total_samples, "self": share(own), "total": share(inclusive)}


def _short(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)``."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})" if file else name
