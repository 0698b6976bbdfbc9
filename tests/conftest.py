"""Shared fixtures: the real redis-server, the emulator, worker subprocesses, polling.

Integration tests use the redis-server on 127.0.0.1:6379 that tests/run.sh starts; if it is
absent they fail (never skip). Each test writes under its own key prefix and deletes only
those keys. Waiting is done by polling a condition with a generous timeout, never by sleeping
a fixed time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

REDIS_URL = os.environ.get("BFX_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SCALE = float(os.environ.get("BFX_TEST_TIMEOUT_SCALE", "1"))  # websockets' MS-style factor
ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout * SCALE
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout * SCALE:.0f}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def r() -> Iterator[redis.Redis]:
    """A client of the shared redis-server; fails loudly when none answers."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"no redis-server at {REDIS_URL} ({exc}); tests/run.sh starts one")
    yield client
    client.close()


@pytest.fixture
def prefix(r: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    keys = list(r.scan_iter(match=f"{name}:*", count=1000))
    if keys:
        r.delete(*keys)


@pytest.fixture
def emulator() -> Iterator[Any]:
    """A running emulator on 127.0.0.1 with fast ticks and 1 s heartbeats."""
    from bridge.emulator import Emulator

    emu = Emulator(port=0, heartbeat_interval=1.0, tick_interval=0.02, seed=7, connect_limit=None)
    emu.start()
    yield emu
    emu.stop()


def write_config(path: Path, *, url: str, prefix: str, groups: str, extra: str = "") -> Path:
    """Write a bridge config for ``groups`` (TOML text of [[groups]] tables)."""
    path.write_text(
        f"""
[bitfinex]
url = "{url}"
channel_timeout = 10
connection_timeout = 8
ping_interval = 2
{extra}
[redis]
url = "{REDIS_URL}"
prefix = "{prefix}"
maxlen = 100000

{groups}
"""
    )
    return path


class Proc:
    """A bridge subprocess with its output in a file; always reaped."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._out = log.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bridge", *args],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout * SCALE)

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)
        self._out.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start ``python -m bridge ARGS`` subprocesses; all are killed at teardown."""
    procs: list[Proc] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(list(args), tmp_path / f"proc{len(procs)}.log", env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()


class RedisServer:
    """A redis-server of the test's own on a free port, which the test may stop and restart.

    It persists to an append-only file in a temporary directory, so that a restart keeps
    what was written (as a production Redis would); the shared server is never touched.
    """

    def __init__(self, directory: Path, *extra: str) -> None:
        self.directory = directory
        self.extra = list(extra)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = self.client()
        wait_until(lambda: _pings(client), 10, f"redis-server on port {self.port}")

    def stop(self) -> None:
        """SIGTERM: the server saves its AOF and exits; clients get connection errors."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def client(self) -> redis.Redis:
        password = self.extra[self.extra.index("--requirepass") + 1] if "--requirepass" in \
            self.extra else None  # fmt: skip
        return redis.Redis(port=self.port, password=password)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started redis-server of this test's own; stopped at teardown."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
