"""Sharding subscriptions over connections, and pacing new connections (pure).

Bitfinex serves at most 25 public channels on one connection (bitfinex-ws-v2.md §1.2) and
refuses more than 20 new connections a minute with HTTP 429 (§1.3). :func:`plan` splits a
group's subscriptions into as few connections as the limit allows, keeping a symbol's
channels together where it can; :class:`Pacer` says when the next connection may open.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from bridge.subscription import Subscription

__all__ = ["Pacer", "plan"]


def plan(subscriptions: Sequence[Subscription], limit: int) -> list[list[Subscription]]:
    """Split ``subscriptions`` into shards of at most ``limit``, in config order.

    >>> len(plan([Subscription("ticker", f"tA{i:05d}") for i in range(60)], 25))
    3
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    count = -(-len(subscriptions) // limit)  # ceil
    if count == 0:
        return []
    # Even shards (60 over 25 -> 20/20/20) leave room on each connection for resubscribes.
    size = -(-len(subscriptions) // count)
    return [list(subscriptions[i : i + size]) for i in range(0, len(subscriptions), size)]


class Pacer:
    """A sliding-window limit: at most ``count`` connection attempts per ``window`` seconds.

    Shared by every connection of a worker; the caller passes the monotonic time.
    """

    def __init__(self, count: int, window: float = 60.0) -> None:
        self.count = count
        self.window = window
        self._attempts: deque[float] = deque()

    def delay(self, now: float) -> float:
        """Seconds to wait before the next attempt may start (0 when it may start now)."""
        while self._attempts and now - self._attempts[0] >= self.window:
            self._attempts.popleft()
        if len(self._attempts) < self.count:
            return 0.0
        return self._attempts[0] + self.window - now

    def take(self, now: float) -> float:
        """Record an attempt now if allowed and return 0; otherwise the wait, nothing recorded."""
        wait = self.delay(now)
        if wait == 0.0:
            self._attempts.append(now)
        return wait
