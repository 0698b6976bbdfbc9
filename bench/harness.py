"""The benchmark's moving parts: a private redis-server, the emulator process, bridge worker
processes, an ``XREAD BLOCK`` watcher, process accounting, and the P7 entry checks.

Everything is written under one work directory (a temporary directory made by ``run.py``);
every process started here is stopped by its ``stop()``, which ``run.py`` calls in ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bridge.emulator import SentFrame  # noqa: E402
from tests.feedcheck import (  # noqa: E402
    assert_well_formed,
    epochs,
    expected_epochs,
    match_epochs,
    read_stream,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
CHILD_ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}


class BenchError(RuntimeError):
    """A benchmark could not run; the message says why."""


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.01) -> Any:
    """Poll ``predicate`` until truthy; BenchError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, all its threads (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    """Resident set size of a live process in MiB (``VmRSS``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def id_seconds(entry_id: bytes | str) -> float:
    """The wall time (seconds) Redis stamped on an auto-generated entry id."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0]) / 1000


# -- redis-server ---------------------------------------------------------------------------


class RedisServer:
    """A private redis-server on a free loopback port, no persistence, data dir in ``work``."""

    def __init__(self, work: Path) -> None:
        self.dir = work / "redis"
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        binary = shutil.which("redis-server", path="/usr/bin:/usr/local/bin") or shutil.which(
            "redis-server"
        )
        if binary is None:
            raise BenchError("redis-server not found: apt-get install redis-server")
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.client()
        wait_until(lambda: _pings(client), 10, f"redis-server on port {self.port}")
        self.version = str(client.info("server")["redis_version"])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


# -- the emulator process -------------------------------------------------------------------


class EmulatorProc:
    """``bench/emulator_proc.py`` in its own process, commanded by JSON lines."""

    def __init__(self, work: Path, name: str, *options: str) -> None:
        self.log_path = work / f"{name}.frames"
        self.err_path = work / f"{name}.emulator.log"
        self._err = self.err_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "emulator_proc.py"),
                "--log",
                str(self.log_path),
                *options,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env=CHILD_ENV,
            cwd=work,
        )
        hello = self._read()
        self.url: str = hello["url"]
        self.control_url: str = hello["control_url"]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, cmd: str, **fields: Any) -> None:
        """Send a command without waiting for its reply (:meth:`receive` reads it)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        reply = self._read()
        if not reply.get("ok", True):
            raise BenchError(f"emulator: {reply.get('error')}")
        return reply

    def cmd(self, cmd: str, **fields: Any) -> dict[str, Any]:
        self.send(cmd, **fields)
        return self.receive()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"the emulator died: {self.err_path.read_text()[-2000:]}")
        data: dict[str, Any] = json.loads(line)
        return data

    def channel_count(self) -> int:
        return sum(len(c["channels"]) for c in self.cmd("channels")["connections"])

    def frames(self) -> list[SentFrame]:
        """Every frame sent so far, from the frame log."""
        self.cmd("flush")
        out = []
        with self.log_path.open(encoding="utf-8") as log:
            for line in log:
                conn, _, text = line.rstrip("\n").partition("\t")
                out.append(SentFrame(int(conn), text, 0.0, "sent"))
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, BenchError):
                self.cmd("stop")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._err.close()


# -- the bridge worker ----------------------------------------------------------------------


class WorkerProc:
    """``python -m bridge worker`` for one group ``bench`` writing under ``prefix``."""

    def __init__(
        self,
        work: Path,
        name: str,
        *,
        ws_url: str,
        redis_url: str,
        prefix: str,
        symbols: list[str],
        channels: list[str],
        extra: str = "",
    ) -> None:
        self.prefix = prefix
        self.config = work / f"{name}.toml"
        self.config.write_text(
            f'[bitfinex]\nurl = "{ws_url}"\nconnections_per_minute = 1000\n{extra}\n'
            f'[redis]\nurl = "{redis_url}"\nprefix = "{prefix}"\nmaxlen = 1000000\n\n'
            f"[health]\ninterval = 2.0\n\n"
            f'[[groups]]\nname = "bench"\nsymbols = {json.dumps(symbols)}\n'
            f"channels = {json.dumps(channels)}\n"
        )
        self.log_path = work / f"{name}.worker.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "worker", "-c", str(self.config), "--group", "bench"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=CHILD_ENV,
            start_new_session=True,
        )
        self.names = stream_names(symbols, channels)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def keys(self) -> list[str]:
        return [f"{self.prefix}:{n}" for n in self.names]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_snapshots(self, r: redis.Redis, timeout: float = 60) -> None:
        """Wait until every stream's newest entry is a snapshot or an update."""

        def ready() -> bool:
            if not self.alive():
                raise BenchError(f"the worker exited: {self.log_path.read_text()[-2000:]}")
            pipe = r.pipeline(transaction=False)
            for key in self.keys:
                pipe.xrevrange(key, count=1)
            return all(
                rows and rows[0][1].get(b"kind") in (b"snapshot", b"update")
                for rows in pipe.execute()
            )

        wait_until(ready, timeout, f"a snapshot on all {len(self.keys)} streams", step=0.05)

    def health(self, r: redis.Redis) -> dict[str, int]:
        """The worker's error counters from its health key (refreshed every 2 s)."""
        raw: Any = r.hgetall(f"{self.prefix}:health:bench")
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        names = ("checksum_errors", "malformed", "reconnects", "dropped", "backpressure")
        return {n: int(fields[n]) for n in names if fields.get(n, "").isdigit()}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


def stream_names(symbols: list[str], channels: list[str]) -> list[str]:
    """The stream names (no prefix) of a group, as the bridge's config makes them."""
    from bridge.config import parse

    text = {"groups": [{"name": "x", "symbols": symbols, "channels": channels}]}
    config = parse(text, "<bench>", {})
    return [sub.name for sub in config.groups[0].subscriptions]


def xlens(r: redis.Redis, keys: Iterable[str]) -> dict[str, int]:
    keys = list(keys)
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.xlen(key)
    return dict(zip(keys, pipe.execute(), strict=True))


def last_ids(r: redis.Redis, keys: Iterable[str]) -> dict[str, bytes]:
    keys = list(keys)
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.xrevrange(key, count=1)
    return {k: rows[0][0] if rows else b"0-0" for k, rows in zip(keys, pipe.execute(), strict=True)}


# -- the XREAD BLOCK watcher ----------------------------------------------------------------


class Watcher(threading.Thread):
    """Reads every new entry of ``keys`` with ``XREAD BLOCK`` and notes when it saw each:
    ``seen[key]`` is a list of ``(kind, seq, time.time_ns())`` in stream order."""

    def __init__(self, r: redis.Redis, keys: list[str]) -> None:
        super().__init__(name="watcher", daemon=True)
        self.r = r
        self.ids: dict[str, bytes] = last_ids(r, keys)
        self.seen: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
        self.count = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            reply: Any = self.r.xread(self.ids, block=100, count=10_000)  # type: ignore[arg-type]
            now = time.time_ns()
            for key, rows in reply or []:
                name = key.decode()
                for _, fields in rows:
                    self.seen[name].append((fields[b"kind"].decode(), int(fields[b"seq"]), now))
                    self.count += 1
                self.ids[name] = rows[-1][0]

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


# -- P7: what reached Redis against what was sent --------------------------------------------


def check_entries(r: redis.Redis, prefix: str, frames: list[SentFrame]) -> dict[str, Any]:
    """Compare every stream of ``prefix`` with the frames the emulator sent (P7).

    Per stream, each epoch in Redis is matched to the subscription it came from and compared
    entry by entry (:mod:`tests.feedcheck`). ``lost``: entries sent but missing from an epoch
    (a hole, or the tail of the last epoch); ``duplicated``: entries stored more often than
    sent; ``misordered``: epochs with the right entries in the wrong order; ``cut``: entries
    of an epoch that a ``reset`` announced as lost (a dropped connection), not counted as
    lost. ``malformed`` counts streams that break the epoch/seq rules.
    """
    sent = expected_epochs(frames)
    out = Counter[str]()
    problems: list[str] = []
    for name, sent_epochs in sorted(sent.items()):
        entries = read_stream(r, f"{prefix}:{name}")
        try:
            assert_well_formed(entries)
        except AssertionError as exc:
            out["malformed"] += 1
            problems.append(f"{name}: {exc}")
        stored = epochs(entries)
        try:
            matched = match_epochs(stored, sent_epochs)
        except AssertionError as exc:
            out["unmatched"] += 1
            problems.append(f"{name}: {exc}")
            continue
        for position, (epoch, index) in enumerate(zip(stored, matched, strict=True)):
            got = [_key(e["kind"], e["data"]) for e in epoch]
            want = [_key(k, d) for k, d in sent_epochs[index]]
            last = position == len(stored) - 1
            out["checked"] += len(got)
            _compare(got, want, last, out)
    result: dict[str, Any] = {
        k: out[k]
        for k in ("checked", "lost", "duplicated", "misordered", "cut", "malformed", "unmatched")
    }
    result["streams"] = len(sent)
    result["problems"] = problems[:10]
    return result


def _key(kind: str, data: Any) -> bytes:
    return orjson.dumps([kind, data], option=orjson.OPT_SORT_KEYS)


def _compare(got: list[bytes], want: list[bytes], last: bool, out: Counter[str]) -> None:
    if got == want[: len(got)]:
        missing = len(want) - len(got)
        out["lost" if last else "cut"] += missing
        return
    have, need = Counter(got), Counter(want if last else want[: len(got)])
    duplicated = sum((have - need).values())
    lost = sum((need - have).values())
    out["duplicated"] += duplicated
    out["lost"] += lost
    if not duplicated and not lost:
        out["misordered"] += 1


def settle(r: redis.Redis, keys: list[str], quiet: float = 1.0, timeout: float = 120) -> None:
    """Wait until no stream of ``keys`` has grown for ``quiet`` seconds (the feed is paused)."""
    state = {"lens": xlens(r, keys), "since": time.monotonic()}

    def quiet_enough() -> bool:
        now = xlens(r, keys)
        if now != state["lens"]:
            state["lens"], state["since"] = now, time.monotonic()
        return time.monotonic() - state["since"] >= quiet

    wait_until(quiet_enough, timeout, "the streams to stop growing", step=0.1)
