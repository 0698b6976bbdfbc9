"""Auth nonces that strictly increase per API key, across reconnects and restarts.

Bitfinex refuses an ``auth`` whose nonce is not larger than the last one it saw for the key
(10114 ``nonce: small``, bitfinex-ws-v2.md §8.1 and §11 pitfall 21). Microseconds since the
Unix epoch increase on their own, until the clock steps back (NTP, a VM restored, a host
with a slower clock taking over the worker). So the last nonce of each key is kept in Redis
under ``{prefix}:nonce:{sha256(key)[:16]}`` (a fingerprint: never the key itself), and each
new one is ``max(last + 1, now in µs)``, computed by one Lua script so that two processes
sharing a key and a Redis never hand out the same nonce.

When Redis cannot be reached the nonce falls back to ``max(now µs, last in this process
+ 1)`` (logged): still increasing within the process, and as safe across restarts as the
clock. Redis without persistence forgets the values when it restarts; the clock floor
then carries on alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from bridge.credentials import Secret, fingerprint
from bridge.log import redact

__all__ = ["NonceSource", "nonce_key"]

log = logging.getLogger(__name__)

# KEYS[1] the key's nonce; ARGV[1] the floor (µs now, or last + 1 in this process).
# Numbers below 2^53 compare exactly as Lua doubles; the value is stored as the text given
# or advanced with INCR, so Lua never formats a large number (it would write 1.7e+15).
_NEXT = """
local last = redis.call('GET', KEYS[1])
if (not last) or tonumber(ARGV[1]) > tonumber(last) then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return redis.call('INCR', KEYS[1])
"""


def nonce_key(prefix: str, api_key: Secret) -> str:
    """``{prefix}:nonce:{fingerprint}``: where the last nonce of ``api_key`` is kept."""
    return f"{prefix}:nonce:{fingerprint(api_key)}"


class NonceSource:
    """Hands out the nonces of one API key (call it); thread-safe through Redis.

    Args:
        client: the Redis that keeps the last nonce; None to use the clock alone.
        key: the Redis key (:func:`nonce_key`).
        clock_us: the current time in µs (injectable for tests).
    """

    def __init__(
        self,
        client: redis.Redis | None,
        key: str,
        clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        self.key = key
        self.clock_us = clock_us
        self.last = 0
        self._script: Any = client.register_script(_NEXT) if client is not None else None

    def __call__(self) -> int:
        """The next nonce: larger than every one given before for this key."""
        floor = max(self.clock_us(), self.last + 1)
        value = floor
        if self._script is not None:
            try:
                value = max(floor, int(self._script(keys=[self.key], args=[floor])))
            except (redis.RedisError, OSError, ValueError) as exc:
                log.warning("! cannot keep the auth nonce in Redis (%s); using the clock",
                            redact(str(exc)))  # fmt: skip
        self.last = value
        return value
