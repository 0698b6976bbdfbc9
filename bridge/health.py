"""Health: what a worker reports about itself, and the thread that writes it to Redis.

``{prefix}:health:{group}`` is a hash refreshed every ``health.interval`` seconds with a TTL
of three intervals, so the key of a dead worker disappears on its own (SPEC §4). Per-stream
detail goes to ``{prefix}:health:{group}:streams`` (field = stream name, value = JSON).
:func:`status_of` is the one place that decides ``starting``/``ok``/``degraded``/
``maintenance``; it is pure and tested on its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis

__all__ = ["HealthReporter", "Vitals", "health_key", "status_of"]

log = logging.getLogger(__name__)

FIELDS = (
    "status", "pid", "host", "updated", "started", "connections", "subscribed", "expected",
    "msgs", "msg_rate", "reconnects", "checksum_errors", "malformed", "subscribe_errors",
    "last_msg", "buffered", "dropped", "written", "backpressure", "redis", "run_id", "version",
    "accounts", "auth_failures",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Vitals:
    """The facts :func:`status_of` decides from."""

    ever_ready: bool  # every channel has been subscribed at least once since start
    maintenance: bool
    connections: int  # open now
    shards: int  # connections planned
    subscribed: int
    expected: int
    redis_ok: bool
    buffered: int
    buffer_limit: int
    accounts: int = 0  # [[accounts]] authenticated now
    accounts_expected: int = 0  # [[accounts]] configured for the group


def status_of(v: Vitals) -> str:
    """``maintenance`` > ``starting`` > ``degraded`` > ``ok``.

    * maintenance: Bitfinex announced it (20060) and has not ended it (20061); silence is
      expected then, not an error.
    * starting: not every channel has been subscribed yet since the worker started.
    * degraded: a connection is down, a channel is not subscribed, an account is not
      authenticated, Redis is unavailable, or more than a tenth of the buffer is in use
      (Redis falling behind).
    """
    if v.maintenance:
        return "maintenance"
    if not v.ever_ready:
        return "starting"
    if (
        v.connections < v.shards
        or v.subscribed < v.expected
        or v.accounts < v.accounts_expected
        or not v.redis_ok
        or v.buffered > v.buffer_limit // 10
    ):
        return "degraded"
    return "ok"


def health_key(prefix: str, group: str) -> str:
    """``{prefix}:health:{group}``."""
    return f"{prefix}:health:{group}"


class HealthReporter:
    """Writes the health hash every ``interval`` seconds on its own thread.

    Args:
        client: a Redis client of its own (health must not queue behind stream entries).
        key: the health hash key; the stream detail goes to ``key + ":streams"``.
        interval: seconds between refreshes; the TTL is three intervals.
        collect: returns (health fields, per-stream detail) when called.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        interval: float,
        collect: Callable[[], tuple[Mapping[str, Any], Mapping[str, Any]]],
    ) -> None:
        self._redis = client
        self.key = key
        self.interval = interval
        self.collect = collect
        self.failures = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)

    def start(self) -> None:
        """Write once now, then every interval."""
        self._thread.start()

    def stop(self, delete: bool = True) -> None:
        """Stop refreshing; delete the keys so that a stopped worker is not reported alive."""
        self._stopping.set()
        self._thread.join(self.interval + 2.0)
        if delete:
            try:
                self._redis.delete(self.key, f"{self.key}:streams")
            except redis.RedisError as exc:
                log.warning("! could not delete %s (%s); it expires on its own", self.key, exc)

    def write(self) -> None:
        """One refresh: HSET both hashes and set their TTL, in one round trip."""
        fields, streams = self.collect()
        fields = {**fields, "interval": self.interval}
        ttl_ms = int(self.interval * 3000)
        # One transaction: if Redis refuses the HSET (out of memory…), the PEXPIRE must not
        # keep a stale "ok" alive.
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self.key, mapping={k: str(v) for k, v in fields.items()})
        pipe.pexpire(self.key, ttl_ms)
        if streams:
            detail = {name: orjson.dumps(info) for name, info in streams.items()}
            pipe.hset(f"{self.key}:streams", mapping=detail)  # type: ignore[arg-type]
            pipe.pexpire(f"{self.key}:streams", ttl_ms)
        pipe.execute()

    def _run(self) -> None:
        while True:
            try:
                self.write()
                if self.failures:
                    log.info("= health key %s written again", self.key)
                self.failures = 0
            except redis.RedisError as exc:
                self.failures += 1
                if self.failures == 1:
                    log.warning("! cannot write health key %s: %s", self.key, exc)
            if self._stopping.wait(self.interval):
                return
