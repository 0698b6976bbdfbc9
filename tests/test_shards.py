"""Tests of bridge.shards: subscriptions over connections, and connection pacing (§1.2)."""

from __future__ import annotations

import pytest

from bridge.shards import Pacer, plan
from bridge.subscription import Subscription


def subs(n: int) -> list[Subscription]:
    return [Subscription("ticker", f"tA{i:05d}") for i in range(n)]


def test_sixty_subscriptions_over_limit_25_make_three_shards() -> None:
    """60 subscriptions with a limit of 25: 3 shards of ≤ 25, each subscription once, in order."""
    items = subs(60)
    shards = plan(items, 25)
    assert len(shards) == 3
    assert all(len(shard) <= 25 for shard in shards)
    assert [s for shard in shards for s in shard] == items
    assert [len(shard) for shard in shards] == [20, 20, 20]


@pytest.mark.parametrize(
    ("count", "limit", "sizes"),
    [(0, 25, []), (1, 25, [1]), (25, 25, [25]), (26, 25, [13, 13]), (51, 25, [17, 17, 17])],
)
def test_shard_sizes(count: int, limit: int, sizes: list[int]) -> None:
    """As few shards as the limit allows, evenly filled."""
    items = subs(count)
    shards = plan(items, limit)
    assert [len(s) for s in shards] == sizes
    assert [s for shard in shards for s in shard] == items


def test_limit_below_one_is_refused() -> None:
    """A limit of 0 is a ValueError."""
    with pytest.raises(ValueError):
        plan(subs(3), 0)


def test_pacer_allows_twenty_per_minute_then_gives_the_wait() -> None:
    """Pacer(20, 60): 20 attempts pass; the 21st waits until the oldest is 60 s old."""
    pacer = Pacer(20, 60.0)
    assert [pacer.take(float(t)) for t in range(20)] == [0.0] * 20
    assert pacer.delay(19.5) == 40.5
    assert pacer.take(19.5) == 40.5  # refused, nothing recorded
    assert pacer.take(59.9) == pytest.approx(0.1)
    assert pacer.take(60.0) == 0.0  # the attempt at 0.0 has left the window
    assert pacer.delay(60.0) == 1.0  # the next slot frees when the attempt at 1.0 leaves
    assert pacer.take(61.0) == 0.0


def test_pacer_window_slides() -> None:
    """After a quiet minute the full budget is back."""
    pacer = Pacer(2, 60.0)
    assert pacer.take(0.0) == 0.0
    assert pacer.take(0.0) == 0.0
    assert pacer.delay(30.0) == 30.0
    assert pacer.delay(120.0) == 0.0
    assert [pacer.take(120.0), pacer.take(120.0), pacer.take(120.0)] == [0.0, 0.0, 60.0]
