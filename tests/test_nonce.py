"""Tests of bridge.nonce against the real redis-server: nonces strictly increase per API key
across reconnects, restarts, clocks that step back, and processes sharing a key."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bridge.credentials import Secret, fingerprint
from bridge.nonce import NonceSource, nonce_key

KEY = Secret("aPiKeY0123456789aPiKeY0123456789aPiKeY01234")
NOW = 1_800_000_000_000_000


def clock(*values: int) -> Callable[[], int]:
    """A µs clock that returns ``values`` in turn, then the last one forever."""
    ticks = itertools.chain(values, itertools.repeat(values[-1]))
    return ticks.__next__


def test_the_key_is_named_by_a_fingerprint_and_never_stored(r: redis.Redis, prefix: str) -> None:
    """{prefix}:nonce:{sha256(key)[:16]}; neither name nor value holds the key."""
    key = nonce_key(prefix, KEY)
    assert key == f"{prefix}:nonce:{fingerprint(KEY)}"
    NonceSource(r, key, clock(NOW))()
    assert list(r.scan_iter(f"{prefix}:*")) == [key.encode()]
    assert r.get(key) == str(NOW).encode() and KEY.reveal().encode() not in key.encode()


def test_nonces_follow_the_clock_and_never_repeat(r: redis.Redis, prefix: str) -> None:
    """µs now when it is larger; last + 1 when the clock has not moved."""
    source = NonceSource(r, nonce_key(prefix, KEY), clock(NOW, NOW, NOW + 50))
    assert [source(), source(), source()] == [NOW, NOW + 1, NOW + 50]


def test_a_restart_with_a_clock_behind_still_goes_up(r: redis.Redis, prefix: str) -> None:
    """A new process (new source) whose clock is an hour behind continues from Redis."""
    key = nonce_key(prefix, KEY)
    first = NonceSource(r, key, clock(NOW))
    sent = [first(), first()]
    restarted = NonceSource(r, key, clock(NOW - 3_600_000_000))
    assert restarted() == sent[-1] + 1
    assert int(r.get(key) or 0) == sent[-1] + 1


def test_two_processes_sharing_a_key_never_hand_out_one_nonce(r: redis.Redis, prefix: str) -> None:
    """Interleaved sources of one key with the same clock: all values distinct, increasing."""
    key = nonce_key(prefix, KEY)
    a, b = NonceSource(r, key, clock(NOW)), NonceSource(r, key, clock(NOW))
    values = [source() for source in (a, b, a, b, b, a)]
    assert values == list(range(NOW, NOW + 6))


def test_without_redis_the_process_still_counts_up(prefix: str) -> None:
    """Redis unreachable: the clock floor and the process's own last value (logged)."""
    dead = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    source = NonceSource(dead, nonce_key(prefix, KEY), clock(NOW, NOW - 5, NOW + 9))
    assert [source(), source(), source()] == [NOW, NOW + 1, NOW + 9]
    assert NonceSource(None, "unused", clock(NOW))() == NOW


def test_values_above_two_to_the_53_are_not_needed_but_exact(r: redis.Redis, prefix: str) -> None:
    """The largest nonce Bitfinex accepts (2^53 - 1) round-trips exactly through the script."""
    top = 9007199254740990
    source = NonceSource(r, nonce_key(prefix, KEY), clock(top))
    assert [source(), source()] == [top, top + 1]
