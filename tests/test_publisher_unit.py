"""Batching tests of bridge.publisher against fakeredis (STYLE: fakeredis for batching only).

:class:`RecordingRedis` wraps a FakeRedis: it records every pipeline's XADDs with their
arguments and can make the next pipelines fail, optionally after some of their XADDs have
landed, as a connection cut mid-pipeline does. Entries are queued before the writer starts
so that each scenario is deterministic; waiting uses :meth:`Publisher.flush`, a poller.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis

from bridge.publisher import Publisher
from bridge.streams import Entry, EpochSource, Stream, decode_fields
from tests.conftest import wait_until

Call = tuple[str, dict[str, Any], dict[str, Any]]


class RecordingPipeline:
    """Collects XADDs; execute() runs them on the server (or fails as scheduled)."""

    def __init__(self, owner: RecordingRedis) -> None:
        self.owner = owner
        self.calls: list[Call] = []
        self.reads: list[tuple[str, dict[str, Any]]] = []

    def xadd(self, name: str, fields: dict[str, Any], **kwargs: Any) -> RecordingPipeline:
        self.calls.append((name, fields, kwargs))
        return self

    def xrevrange(self, name: str, **kwargs: Any) -> RecordingPipeline:
        """A read (the retry's look at what landed): never fails, never recorded as a write."""
        self.reads.append((name, kwargs))
        return self

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        owner = self.owner
        if self.reads:
            assert not self.calls, "reads and writes are never mixed in one pipeline"
            return [owner.server.xrevrange(name, **kw) for name, kw in self.reads]
        if owner.failures:
            owner.failures -= 1
            for name, fields, kwargs in self.calls[: owner.land_before_failing]:
                owner.server.xadd(name, fields, **kwargs)
            raise redis.ConnectionError("Connection reset by peer")
        owner.pipelines.append(self.calls)
        return [owner.server.xadd(n, f, **kw) for n, f, kw in self.calls]


class RecordingRedis:
    """A FakeRedis whose pipelines are recorded; ``failures`` next pipelines raise."""

    def __init__(self, failures: int = 0, land_before_failing: int = 0) -> None:
        self.server = fakeredis.FakeRedis()
        self.pipelines: list[list[Call]] = []
        self.failures = failures
        self.land_before_failing = land_before_failing

    def pipeline(self, transaction: bool = True) -> RecordingPipeline:
        return RecordingPipeline(self)

    def xrevrange(self, name: str, **kwargs: Any) -> Any:
        return self.server.xrevrange(name, **kwargs)

    def stream(self, key: str) -> list[dict[str, Any]]:
        """Every entry of ``key`` decoded, oldest first."""
        return [decode_fields(fields) for _, fields in self.server.xrange(key)]


def entries(key: str, n: int, run: str = "run") -> list[Entry]:
    """A snapshot (with its leading reset) and updates of one stream: n entries in all."""
    stream = Stream(key, EpochSource(run))
    out = stream.snapshot([{"price": 1}], ts=1, mts=None)
    out += [e for i in range(n - 2) if (e := stream.update({"price": i + 2}, ts=2 + i, mts=None))]
    assert len(out) == n
    return out


def updates(key: str, n: int, run: str = "run") -> list[Entry]:
    """n updates of one epoch of one stream (its reset and snapshot left out)."""
    stream = Stream(key, EpochSource(run))
    stream.snapshot([{"price": 0}], ts=0, mts=None)
    return [e for i in range(n) if (e := stream.update({"price": i}, ts=1 + i, mts=None))]


@pytest.fixture
def started() -> Iterator[list[Publisher]]:
    """Publishers started by a test; stopped at teardown."""
    publishers: list[Publisher] = []
    yield publishers
    for publisher in publishers:
        publisher.stop(timeout=1.0)


def run(publisher: Publisher, started: list[Publisher], queued: list[Entry]) -> None:
    """Queue ``queued``, start the writer, wait until everything is written or dropped."""
    publisher.put_all(queued)
    started.append(publisher)
    publisher.start()
    assert publisher.flush(timeout=5.0)


def expected(entry: Entry) -> dict[str, Any]:
    """An entry as decode_fields gives it back from Redis."""
    return decode_fields(
        {
            k.encode(): v if isinstance(v, bytes) else str(v).encode()
            for k, v in entry.fields.items()
        }
    )


def test_entries_written_in_order_with_maxlen(started: list[Publisher]) -> None:
    """Every entry lands in its stream in order, each XADD with MAXLEN ~ maxlen."""
    client = RecordingRedis()
    book, ticker = entries("bfx:book:tBTCUSD:P0", 6), entries("bfx:ticker:tBTCUSD", 4, "r2")
    mixed = [book[0], ticker[0], book[1], ticker[1], *book[2:], *ticker[2:]]
    publisher = Publisher(client, maxlen=1000, batch=500)  # type: ignore[arg-type]
    run(publisher, started, mixed)
    assert client.stream("bfx:book:tBTCUSD:P0") == [expected(e) for e in book]
    assert client.stream("bfx:ticker:tBTCUSD") == [expected(e) for e in ticker]
    calls = [call for pipeline in client.pipelines for call in pipeline]
    assert [(name, fields) for name, fields, _ in calls] == [(e.stream, e.fields) for e in mixed]
    assert {tuple(sorted(kw.items())) for _, _, kw in calls} == {
        (("approximate", True), ("maxlen", 1000))
    }
    assert publisher.written == 10
    assert publisher.dropped == 0


def test_batches_bounded_by_batch(started: list[Publisher]) -> None:
    """With batch=3, ten queued entries go out as pipelines of 3, 3, 3 and 1, in order."""
    client = RecordingRedis()
    queued = entries("bfx:trades:tBTCUSD", 10)
    publisher = Publisher(client, maxlen=100, batch=3)  # type: ignore[arg-type]
    run(publisher, started, queued)
    assert [len(p) for p in client.pipelines] == [3, 3, 3, 1]
    flat = [fields for pipeline in client.pipelines for _, fields, _ in pipeline]
    assert flat == [e.fields for e in queued]


def test_buffer_bound_drops_oldest_and_reports_their_streams(started: list[Publisher]) -> None:
    """Past `buffer` the oldest entries are dropped, counted, and on_lost names their streams."""
    client = RecordingRedis(failures=1)
    a, b, c = entries("bfx:a", 2), entries("bfx:b", 2), entries("bfx:c", 3)
    lost: list[set[str]] = []
    publisher = Publisher(client, maxlen=100, batch=10, buffer=3, on_lost=lost.append)  # type: ignore[arg-type]
    run(publisher, started, [*a, *b, *c])
    # the worker is told once Redis takes writes again (not while it is away)
    wait_until(lambda: lost, 5, "on_lost")
    assert lost == [{"bfx:a", "bfx:b"}]
    assert publisher.dropped == 4
    assert client.stream("bfx:a") == [] and client.stream("bfx:b") == []
    assert client.stream("bfx:c") == [expected(e) for e in c]
    assert publisher.failures == 1


def test_retry_after_failed_pipeline_writes_nothing_twice(started: list[Publisher]) -> None:
    """A pipeline cut after 2 of its 5 XADDs (reset, snapshot) landed: the retry writes 3."""
    client = RecordingRedis(failures=1, land_before_failing=2)
    queued = entries("bfx:trades:tBTCUSD", 5)
    publisher = Publisher(client, maxlen=100, batch=10)  # type: ignore[arg-type]
    run(publisher, started, queued)
    assert client.stream("bfx:trades:tBTCUSD") == [expected(e) for e in queued]
    assert [len(p) for p in client.pipelines] == [3]
    assert publisher.written == 5


def test_retry_within_one_epoch_writes_nothing_twice(started: list[Publisher]) -> None:
    """A pipeline of updates cut after 3 of 6 landed: the retry writes only the other 3."""
    client = RecordingRedis(failures=1, land_before_failing=3)
    queued = updates("bfx:trades:tBTCUSD", 6)
    publisher = Publisher(client, maxlen=100, batch=10)  # type: ignore[arg-type]
    run(publisher, started, queued)
    assert client.stream("bfx:trades:tBTCUSD") == [expected(e) for e in queued]
    assert [[fields for _, fields, _ in p] for p in client.pipelines] == [
        [e.fields for e in queued[3:]]
    ]
    assert publisher.written == 6


def test_not_landed_skips_entries_already_in_redis() -> None:
    """_not_landed drops the chunk's entries whose (epoch, seq) Redis already holds."""
    server = fakeredis.FakeRedis()
    chunk = updates("bfx:book:tBTCUSD:P0", 4) + updates("bfx:ticker:tBTCUSD", 3, "r2")
    for entry in (chunk[0], chunk[1], chunk[4]):  # what a cut pipeline left behind
        server.xadd(entry.stream, entry.fields)  # type: ignore[arg-type]
    publisher = Publisher(server, maxlen=100)
    assert publisher._not_landed(chunk) == [chunk[2], chunk[3], chunk[5], chunk[6]]
    assert publisher.written == 3


def test_not_landed_keeps_entries_of_a_stream_with_older_history() -> None:
    """Entries of an earlier run (other epoch) in Redis do not hide the new ones."""
    server = fakeredis.FakeRedis()
    old = entries("bfx:ticker:tBTCUSD", 3, "old")
    for entry in old:
        server.xadd(entry.stream, entry.fields)  # type: ignore[arg-type]
    new = entries("bfx:ticker:tBTCUSD", 3, "new")
    publisher = Publisher(server, maxlen=100)
    assert publisher._not_landed(new) == new
    assert publisher.written == 0


def test_not_landed_skips_landed_entries_of_an_earlier_epoch_in_the_chunk() -> None:
    """A chunk spanning reset + new snapshot: landed entries of the old epoch are not resent."""
    server = fakeredis.FakeRedis()
    stream = Stream("bfx:book:tBTCUSD:P0", EpochSource("run"))
    stream.snapshot([{"price": 1}], ts=1, mts=None)
    chunk = [
        stream.update({"price": 2}, ts=2, mts=None),  # run.1 seq 1
        stream.reset("checksum mismatch", ts=3),  # run.1 seq 2
        *stream.snapshot([{"price": 3}], ts=4, mts=None),  # run.2 seq 0
        stream.update({"price": 4}, ts=5, mts=None),  # run.2 seq 1
    ]
    landed = [e for e in chunk if e is not None][:3]
    for entry in landed:
        server.xadd(entry.stream, entry.fields)  # type: ignore[arg-type]
    publisher = Publisher(server, maxlen=100)
    assert publisher._not_landed([e for e in chunk if e is not None]) == [chunk[-1]]


class LandThenLoseReplies:
    """A writer like RespWriter under a timeout: XADDs land as soon as they are sent, and
    the first time replies are read the connection fails (replies lost, entries stored)."""

    def __init__(self, server: fakeredis.FakeRedis) -> None:
        self.server = server
        self.replies: list[Any] = []
        self.failed = False
        self.fences = 0

    def send(self, chunk: list[Entry], maxlen: int) -> None:
        self.replies += [self.server.xadd(e.stream, e.fields, maxlen=maxlen) for e in chunk]

    def collect(self, count: int) -> list[Any]:
        if not self.failed:
            self.failed = True
            self.replies.clear()
            raise ConnectionResetError("lost while reading replies")
        out, self.replies = self.replies[:count], self.replies[count:]
        return out

    def fence(self) -> None:
        self.fences += 1

    def close(self) -> None:
        self.replies.clear()


def test_replies_lost_with_two_chunks_in_flight_write_nothing_twice() -> None:
    """Both chunks in flight landed but their replies were lost: the retry fences the old
    connection and settles the whole doubtful region at once, so no entry lands twice."""
    server = fakeredis.FakeRedis()
    stream = Stream("bfx:book:tBTCUSD:P0", EpochSource("run"))
    queued = stream.snapshot([{"price": 0}], ts=1, mts=None)
    queued += [e for i in range(1, 9) if (e := stream.update({"price": i}, ts=1 + i, mts=None))]
    writer = LandThenLoseReplies(server)
    publisher = Publisher(server, maxlen=1000, batch=3, writer=writer)
    publisher.put_all(queued)
    publisher.start()
    assert publisher.flush(5.0)
    publisher.stop(1.0)
    stored = [decode_fields(f) for _, f in server.xrange("bfx:book:tBTCUSD:P0")]
    assert [(e["kind"], e["seq"]) for e in stored] == [(e.fields["kind"], e.fields["seq"])
                                                       for e in queued]  # fmt: skip
    assert writer.fences == 1
    assert publisher.written == len(queued) and publisher.dropped == 0


class SlowWriter:
    """A writer whose Redis answers every chunk, but slowly (a burst on a busy server)."""

    def __init__(self, server: fakeredis.FakeRedis, delay: float) -> None:
        self.server, self.delay = server, delay
        self.replies: list[Any] = []

    def send(self, chunk: list[Entry], maxlen: int) -> None:
        self.replies += [self.server.xadd(e.stream, e.fields, maxlen=maxlen) for e in chunk]

    def collect(self, count: int) -> list[Any]:
        time.sleep(self.delay)
        out, self.replies = self.replies[:count], self.replies[count:]
        return out

    def fence(self) -> None:
        """Nothing to fence: this writer never fails."""

    def close(self) -> None:
        """Nothing to close."""


def test_slow_but_answering_redis_back_pressures_readers_and_drops_nothing(
    started: list[Publisher],
) -> None:
    """Readers faster than a slow Redis wait on the queue bound: the writer keeps no more
    than the next chunks in its buffer, so nothing is dropped and every entry lands once,
    in order (the buffer is for a Redis that is away, not for a slow one)."""
    server = fakeredis.FakeRedis()
    lost: list[set[str]] = []
    publisher = Publisher(server, maxlen=100_000, batch=50, buffer=1_000, on_lost=lost.append,
                          writer=SlowWriter(server, 0.002))  # fmt: skip
    started.append(publisher)
    publisher.start()
    queued = updates("bfx:trades:tBTCUSD", 12_000)
    peak = 0
    for i in range(0, len(queued), 10):  # a reader thread: batches of 10, as fast as it can
        publisher.put_all(queued[i : i + 10])
        peak = max(peak, len(publisher._pending))
    assert publisher.flush(timeout=60.0)
    assert publisher.dropped == 0 and lost == []
    assert publisher.stalls > 0  # the reader did wait
    assert peak <= publisher.batch * 2 + publisher.batch * 4 + 10
    stored = [decode_fields(fields) for _, fields in server.xrange("bfx:trades:tBTCUSD")]
    assert stored == [expected(e) for e in queued]


class DeadWriter:
    """A writer whose Redis is away: every send fails."""

    def send(self, chunk: list[Entry], maxlen: int) -> None:
        raise ConnectionRefusedError("Redis is away")

    def collect(self, count: int) -> list[Any]:
        raise ConnectionRefusedError("Redis is away")

    def fence(self) -> None:
        raise ConnectionRefusedError("Redis is away")

    def close(self) -> None:
        """Nothing to close."""


def test_stop_while_redis_is_away_counts_what_was_still_queued_as_dropped() -> None:
    """Stopping with Redis away drops what is buffered *and* what is still queued, all of it
    counted and its streams reported, none of it forgotten."""
    lost: list[set[str]] = []
    publisher = Publisher(fakeredis.FakeRedis(), maxlen=100, batch=5, on_lost=lost.append,
                          writer=DeadWriter())  # fmt: skip
    publisher.start()
    a, b = updates("bfx:a", 200), updates("bfx:b", 300)
    for i in range(0, 200, 10):
        publisher.put_all(a[i : i + 10])
    wait_until(lambda: publisher.failures > 0, 10, "the first failure")
    publisher.put_all(b)  # queued while the writer waits to retry
    publisher.stop(timeout=0.5)
    assert publisher.dropped == 500 and publisher.written == 0
    assert publisher.buffered == 0
    assert set().union(*lost) == {"bfx:a", "bfx:b"}


def test_drop_all_counts_entries_still_queued() -> None:
    """The last resort at stop (Redis away past the deadline) drops the buffer and the queue
    alike: entries a reader queued after the writer's last take are counted and reported."""
    lost: list[set[str]] = []
    publisher = Publisher(fakeredis.FakeRedis(), maxlen=100, on_lost=lost.append)
    publisher.put_all(updates("bfx:queued", 7))
    publisher._pending.extend(updates("bfx:pending", 3))
    publisher._drop_all("stopping while Redis is unavailable")
    assert publisher.dropped == 10 and publisher.buffered == 0
    assert lost == [{"bfx:queued", "bfx:pending"}]
