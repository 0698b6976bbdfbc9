"""P2: the same burst through cryptofeed 2.4.1 and its Redis Streams backend, side by side.

cryptofeed gets a venv of its own in the work directory (``python -m venv`` + ``pip install
cryptofeed==2.4.1``; newer releases need Python ≥ 3.12), then ``bench/cryptofeed_runner.py``
runs in it against a fresh emulator and the same redis-server. It asks for SEQ_ALL only, so
its connection gets no checksums, no timestamps and one frame per book update: the emulator
serves each client what it asked for. Its figure is entries/s from the first byte of the
burst to its last entry in Redis, as for the worker in P1; the ratio is P1's median ÷ this.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import redis

from bench.harness import (
    ROOT,
    BenchError,
    EmulatorProc,
    cpu_seconds,
    rss_mb,
    wait_until,
    xlens,
)
from bench.scenarios import SYMBOLS, Context, wait_written, xadd_calls

CRYPTOFEED = "cryptofeed==2.4.1"


def requirements() -> list[str]:
    """cryptofeed 2.4.1, and for its Redis backend the redis-py (+ hiredis) the bridge runs
    with here (cryptofeed does not require redis itself)."""
    pins = [CRYPTOFEED]
    for name in ("redis", "hiredis"):
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def normalized(symbol: str) -> str:
    """``tBTCUSD`` -> ``BTC-USD`` (as bench/cryptofeed_runner.py names streams)."""
    pair = symbol[1:]
    base, quote = pair.split(":") if ":" in pair else (pair[:3], pair[3:])
    return f"{base}-{quote}"


def key_of(name: str) -> str:
    """The bridge's stream name -> cryptofeed's key: ``book:tBTCUSD:P0`` ->
    ``cf:book-BITFINEX-BTC-USD``."""
    channel, _, symbol = name.partition(":")
    if channel == "book":
        symbol = symbol.rsplit(":", 1)[0]  # the precision
    return f"cf:{channel}-BITFINEX-{normalized(symbol)}"


def venv_python(ctx: Context, reuse: str | None) -> Path:
    """A Python with cryptofeed 2.4.1: ``reuse`` if given, else a new venv in the work dir."""
    if reuse:
        python = Path(reuse) / "bin" / "python"
        if not python.exists():
            raise BenchError(f"--cryptofeed-venv {reuse}: no bin/python there")
        return python
    venv = ctx.work / "cryptofeed-venv"
    log = ctx.work / "cryptofeed-pip.log"
    ctx.say(f"P2: creating a venv with {' '.join(requirements())} (python -m venv + pip)")
    with log.open("wb") as out:
        for command in (
            [sys.executable, "-m", "venv", str(venv)],
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                *requirements(),
            ],
        ):
            code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, cwd=ctx.work)
            if code:
                tail = log.read_text(errors="replace")[-1500:]
                raise BenchError(f"`{' '.join(command)}` failed ({code}): {tail}")
    return venv / "bin" / "python"


def p2_cryptofeed(ctx: Context, bridge_rate: float | None, reuse: str | None) -> dict[str, Any]:
    """P2 (see the module docstring); P7 for cryptofeed is checked by trade id and count."""
    python = venv_python(ctx, reuse)
    r = ctx.client()
    emu = EmulatorProc(ctx.work, "p2", "--paused")
    log = ctx.work / "p2.cryptofeed.out"
    out = log.open("wb")
    proc = subprocess.Popen(
        [
            str(python),
            str(ROOT / "bench" / "cryptofeed_runner.py"),
            "--url",
            emu.url,
            "--redis-port",
            str(ctx.redis.port),
            "--symbols",
            ",".join(SYMBOLS),
            "--log",
            str(ctx.work / "p2.cryptofeed.log"),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=ctx.work,
        start_new_session=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )

    def alive() -> bool:
        if proc.poll() is not None:
            raise BenchError(f"cryptofeed exited ({proc.returncode}): {_tail(log)}")
        return True

    try:
        names = [
            f"{c}:{s}" + (":P0" if c == "book" else "") for s in SYMBOLS for c in ("book", "trades")
        ]
        keys = [key_of(n) for n in names]

        def ready() -> bool:
            alive()
            lens = xlens(r, keys)
            return emu.channel_count() == len(names) and all(
                lens[key_of(n)] >= (1 if n.startswith("book") else 30) for n in names
            )

        wait_until(ready, 60, "cryptofeed's snapshots", step=0.2)
        lens = xlens(r, keys)
        calls0 = xadd_calls(r)
        cpu0, rcpu0 = cpu_seconds(proc.pid), cpu_seconds(ctx.redis.pid)
        ctx.say(f"P2: burst of {ctx.sizes.burst} entries to cryptofeed")
        burst = emu.cmd("burst", entries=ctx.sizes.burst)
        entries = sum(burst["entries"].values())
        want = {key_of(n): lens[key_of(n)] + k for n, k in burst["entries"].items() if k}
        done = wait_written(r, calls0 + entries, want, 120 + entries / 1000, alive)
        cpu, rcpu = cpu_seconds(proc.pid) - cpu0, cpu_seconds(ctx.redis.pid) - rcpu0
        rss = rss_mb(proc.pid)
        time.sleep(1.0)  # anything written late (duplicates) would land now
        p7 = _check(r, emu, names)
    finally:
        _stop(proc)
        out.close()
        emu.stop()
    r.flushdb()
    seconds = done - burst["t0"]
    rate = round(entries / seconds)
    return {
        "entries": entries,
        "frames": burst["frames"],
        "seconds": round(seconds, 3),
        "entries_per_s": rate,
        "cpu_us_per_entry": round(cpu / entries * 1e6, 2),
        "redis_cpu_us_per_entry": round(rcpu / entries * 1e6, 2),
        "rss_mb": round(rss, 1),
        "bridge_entries_per_s": bridge_rate,
        "ratio": round(bridge_rate / rate, 3) if bridge_rate else None,
        "p7": p7,
    }


def _check(r: redis.Redis, emu: EmulatorProc, names: list[str]) -> dict[str, Any]:
    """cryptofeed's streams against the frames sent: trades by id, book updates by count
    (one entry per update message after one snapshot entry)."""
    chan_names: dict[int, str] = {}
    te_ids: dict[str, list[int]] = defaultdict(list)
    snapshot_ids: dict[str, list[int]] = defaultdict(list)
    updates: dict[str, int] = defaultdict(int)
    for frame in emu.frames():
        msg = orjson.loads(frame.text)
        if isinstance(msg, dict):
            if msg.get("event") == "subscribed":
                suffix = ":P0" if msg["channel"] == "book" else ""
                chan_names[msg["chanId"]] = f"{msg['channel']}:{msg['symbol']}{suffix}"
            continue
        name = chan_names.get(msg[0])
        if name is None or msg[1] in ("hb", "cs", "tu"):
            continue
        if name.startswith("trades"):
            if msg[1] == "te":
                te_ids[name].append(msg[2][0])
            else:
                snapshot_ids[name] = [t[0] for t in msg[1]]
        elif isinstance(msg[1][0], list):
            updates[name] = updates[name]  # the snapshot
        else:
            updates[name] += 1
    lost = duplicated = checked = 0
    for name in names:
        key = key_of(name)
        rows: Any = r.xrange(key)
        checked += len(rows)
        if name.startswith("trades"):
            stored = [int(fields[b"id"]) for _, fields in rows]
            sent = set(snapshot_ids[name]) | set(te_ids[name])
            lost += len(sent - set(stored))
            duplicated += len(stored) - len(set(stored))
        else:
            stored_updates = len(rows) - 1
            lost += max(0, updates[name] - stored_updates)
            duplicated += max(0, stored_updates - updates[name])
    return {
        "checked": checked,
        "lost": lost,
        "duplicated": duplicated,
        "by": "trade ids; book updates by count",
    }


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-1500:] if path.exists() else ""


__all__ = ["p2_cryptofeed"]
