"""Connection pacing shared by every worker of a host, through Redis.

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
import os
import socket
from typing import Any

import redis

__all__ = ["HostPacer"]

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
