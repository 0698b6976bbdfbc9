"""Connection pacing: per worker (:class:`SharedPacer`, shared by its connection threads)
and per host, shared by every worker through Redis (:class:`HostPacer`).

Bitfinex counts new connections per IP address (20 a minute, bitfinex-ws-v2.md §1.2); the
supervisor runs one worker process per group, so a per-process limit would allow N times
too many after a mass reconnect. :class:`HostPacer` keeps the attempts of the last window in
a sorted set ``{prefix}:pacing:{host}`` and admits one only while fewer than the limit are
there; a Lua script makes the check and the record one atomic step, timed by Redis's own
clock so that every process agrees. When Redis cannot be reached the caller falls back to
its own per-process limit.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from typing import Any

import redis

from bridge.shards import Pacer

__all__ = ["HostPacer", "SharedPacer"]

log = logging.getLogger(__name__)

_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""


class HostPacer:
    """At most ``count`` connection attempts per ``window`` seconds for the whole host."""

    def __init__(self, client: redis.Redis, prefix: str, count: int, window: float) -> None:
        self.key = f"{prefix}:pacing:{socket.gethostname()}"
        self.count = count
        self.window = window
        self._script: Any = client.register_script(_SCRIPT)
        self._ids = itertools.count()

    def take(self) -> float:
        """Record an attempt and return 0, or return how long to wait (nothing recorded).

        Raises:
            redis.RedisError: Redis is unavailable; the caller paces on its own.
        """
        member = f"{os.getpid()}.{next(self._ids)}"
        reply = self._script(keys=[self.key], args=[self.window, self.count, member])
        return max(0.0, float(reply))


class SharedPacer:
    """A :class:`~bridge.shards.Pacer` shared by a worker's connection threads: at most
    ``count`` new connections per ``window`` seconds."""

    def __init__(self, count: int, window: float = 60.0, host: HostPacer | None = None) -> None:
        self._pacer = Pacer(count, window)
        self._host = host
        self._lock = threading.Lock()

    def wait(self, stopping: threading.Event, name: str) -> bool:
        """Block until a new connection may open; False if stopping came first.

        The worker's own limit applies first, then the host's (shared with the other workers
        through Redis) when there is one and Redis answers."""
        while not stopping.is_set():
            with self._lock:
                delay = self._pacer.delay(time.monotonic())
                if delay == 0.0:
                    delay = self._host_delay(name)
                if delay == 0.0:
                    self._pacer.take(time.monotonic())
                    return True
            log.info("- %s: pacing connections, next attempt in %.1fs", name, delay)
            stopping.wait(delay)
        return False

    def _host_delay(self, name: str) -> float:
        if self._host is None:
            return 0.0
        try:
            return self._host.take()
        except redis.RedisError as exc:
            log.debug("%s: host pacing unavailable (%s); pacing this worker alone", name, exc)
            return 0.0
