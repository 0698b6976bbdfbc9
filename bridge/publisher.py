"""The one writer: entries from every connection, batched into pipelined ``XADD``s.

The read loop (and, for resets, the connection threads) :meth:`Publisher.put_all` entries;
one writer thread takes whatever is queued (up to ``batch``) and sends it as one
non-transactional pipeline of
``XADD key MAXLEN ~ N * field value …``. It flushes as soon as the queue is empty, so at low
rates an entry waits for no timer, and under bursts each round trip carries many entries
(PERFORMANCE.md, "flush when the socket is drained").

When Redis is unavailable the entries stay in a bounded buffer and are retried with backoff.
After a failed pipeline some of its XADDs may have landed: before retrying, the writer reads
each stream's last entry and skips what is already there, so nothing is written twice. Past
the bound the oldest entries are dropped, counted, and their streams reported through
``on_lost`` so the worker can reset and resubscribe them. This is the only module that writes
stream entries.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis

from bridge.errors import RedisUnavailable
from bridge.log import redact
from bridge.resp import PipelineWriter, Writer, is_transient
from bridge.streams import Entry

__all__ = ["Publisher", "connect_redis"]

log = logging.getLogger(__name__)

BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0
MAX_INFLIGHT = 2  # chunks sent before the oldest one's replies must be read
LOST_SPACING, LOST_SPACING_MAX = 5.0, 300.0  # between two resets of one stream for losses
LOST_STREAK_RESET = 600.0  # a stream that lost nothing for this long starts afresh


def connect_redis(url: str, **options: Any) -> redis.Redis:
    """A redis-py client for ``url`` with bounded timeouts and no hidden retries."""
    settings: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5, **options}
    return redis.Redis.from_url(url, **settings)


class Publisher:
    """Batches entries into pipelines on a writer thread.

    Args:
        client: the Redis client (its connection pool is used by the writer thread only).
        maxlen: approximate trim length of every stream.
        batch: most entries per pipeline.
        buffer: most entries held while Redis is unavailable.
        on_lost: called on the writer thread with the streams that lost entries.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        maxlen: int,
        batch: int = 500,
        buffer: int = 100_000,
        on_lost: Callable[[set[str]], None] | None = None,
        writer: Writer | None = None,
    ) -> None:
        self._redis = client
        self._writer: Writer = writer or PipelineWriter(client)
        self.maxlen = maxlen
        self.batch = batch
        self.buffer = buffer
        self.on_lost = on_lost
        self.queue_limit = max(10 * batch, 1000)
        self.written = 0
        self.dropped = 0
        self.stalls = 0
        self.failures = 0
        self.available = True
        self._queue: queue.SimpleQueue[list[Entry]] = queue.SimpleQueue()  # batches
        self._queued = 0  # entries in _queue
        self._queued_lock = threading.Lock()
        self._pending: deque[Entry] = deque()
        self._inflight: deque[list[Entry]] = deque()  # sent, replies not read yet
        self._uncertain = 0  # entries at the head of _pending that may have landed
        self._blocked: set[str] = set()  # streams waiting for their reset after a loss
        self._to_notify: set[str] = set()  # streams that lost entries, worker not told yet
        self._notified: dict[str, tuple[float, int]] = {}  # stream -> (last told, streak)
        self._stopping = threading.Event()
        self._released = threading.Event()
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    @property
    def buffered(self) -> int:
        """Entries accepted but not yet acknowledged by Redis."""
        return len(self._pending) + sum(map(len, self._inflight)) + self._queued

    def put(self, entry: Entry) -> None:
        """Queue one entry (thread-safe); blocks while the writer is stuck in a slow Redis."""
        self.put_all([entry])

    def put_all(self, entries: list[Entry]) -> None:
        """Queue entries in order, as one batch (thread-safe); blocks as :meth:`put`."""
        if self._queued >= self.queue_limit:
            self._wait_for_room()
        with self._queued_lock:
            self._queued += len(entries)
        self._queue.put(entries)

    def _wait_for_room(self) -> None:
        """Back-pressure: the reading thread waits (and so stops reading the sockets) until the
        writer has taken entries off the queue. While Redis is unavailable the writer keeps
        draining into its bounded buffer, so this only waits on a slow, not a dead, Redis."""
        self.stalls += 1
        while self._queued >= self.queue_limit and not self._released.is_set():
            time.sleep(0.001)

    def release(self) -> None:
        """Stop holding readers back (the worker is stopping: they must reach their ordered
        stop instead of waiting on a slow Redis)."""
        self._released.set()

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what is queued (for at most ``timeout`` seconds), then stop the writer."""
        self._deadline = time.monotonic() + timeout
        self._released.set()
        self._stopping.set()
        self._thread.join(timeout + 1.0)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written; False on timeout (tests, stop)."""
        deadline = time.monotonic() + timeout
        while self.buffered and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self.buffered

    # -- writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self._loop()
                return
            except Exception:  # the writer must outlive any bug; entries stay pending
                log.exception("! publisher: unexpected error; continuing in 1s")
                self._stopping.wait(1.0)

    def _loop(self) -> None:
        delay = BACKOFF_MIN
        while True:
            if not self._pending and not self._inflight and not self._take(timeout=0.25):
                if self._stopping.is_set():
                    return
                continue
            if len(self._pending) < self.batch * MAX_INFLIGHT:
                # Take more only when the next chunks need it: a Redis that answers, however
                # slowly, back-pressures the readers through the queue bound; only a Redis
                # that is away fills the buffer (_drain_for), and only then are entries dropped.
                self._take()
            self._enforce_bound()
            try:
                if self._pending and len(self._inflight) < self._depth():
                    self._send_next()
                    if self._pending and len(self._inflight) < self._depth():
                        continue  # keep the pipe full: replies are read when it is
                if self._inflight:
                    self._collect_oldest()
            except RedisUnavailable as exc:
                self._requeue_inflight()
                self.failures += 1
                if self.available:
                    log.warning("! %s", exc)
                self.available = False
                if self._stopping.is_set() and time.monotonic() > self._deadline:
                    self._drop_all("stopping while Redis is unavailable")
                    return
                log.info("- retrying Redis in %.1fs (%d entries buffered)", delay, self.buffered)
                self._drain_for(delay)
                delay = min(BACKOFF_MAX, delay * 2)
                continue
            if not self.available and not self._inflight and not self._uncertain:
                log.warning("= Redis is back; %d entries buffered", self.buffered)
                self.available, delay = True, BACKOFF_MIN
            if self._to_notify and self.available:
                self._notify_lost()

    def _depth(self) -> int:
        """Chunks in flight at most: two (send one while Redis answers the other), one while
        re-sending entries whose fate a failure left unknown."""
        return 1 if self._uncertain else MAX_INFLIGHT

    def _send_next(self) -> None:
        """Send the next chunk of the buffer without waiting for its replies."""
        pending = self._pending
        if self._uncertain:
            self._settle_uncertain()
        chunk = [pending.popleft() for _ in range(min(self.batch, len(pending)))]
        self._inflight.append(chunk)  # in flight from here: requeued if sending fails
        if chunk:
            try:
                self._writer.send(chunk, self.maxlen)
            except OSError as exc:
                raise RedisUnavailable(f"{type(exc).__name__}: {redact(str(exc))}") from exc

    def _settle_uncertain(self) -> None:
        """Find out which of the entries a failure left in doubt did land, all in one pass.

        First the old connection is fenced off (killed by id on the server), so that nothing
        it sent can land after the read-back; then each stream's last stored entry says
        which prefix of its doubtful entries landed, across however many chunks they were.
        """
        pending = self._pending
        region = [pending.popleft() for _ in range(min(self._uncertain, len(pending)))]
        try:
            self._writer.fence()
            survivors = self._not_landed(region)
        except (OSError, RedisUnavailable) as exc:
            pending.extendleft(reversed(region))  # still in doubt: try again later
            if isinstance(exc, RedisUnavailable):
                raise
            raise RedisUnavailable(f"{type(exc).__name__}: {redact(str(exc))}") from exc
        self._uncertain = 0
        pending.extendleft(reversed(survivors))

    def _collect_oldest(self) -> None:
        """Read and check the replies of the oldest chunk in flight."""
        chunk = self._inflight[0]
        try:
            replies = self._writer.collect(len(chunk)) if chunk else []
        except OSError as exc:
            raise RedisUnavailable(f"{type(exc).__name__}: {redact(str(exc))}") from exc
        errors = [r for r in replies if isinstance(r, Exception)]
        if errors and any(is_transient(r) for r in errors):
            raise RedisUnavailable(str(errors[0]))
        self._inflight.popleft()
        if errors:
            refused = {
                e.stream for e, r in zip(chunk, replies, strict=True) if isinstance(r, Exception)
            }
            self.dropped += len(errors)
            log.error(
                "! Redis refused %d XADDs (%s) on %s", len(errors), errors[0], sorted(refused)
            )
            self._lose(refused)
        self.written += len(chunk) - len(errors)

    def _requeue_inflight(self) -> None:
        """After a failure, what was in flight goes back to the head of the buffer, in order;
        whether it landed is found out (read back) before it is sent again."""
        self._writer.close()
        for chunk in reversed(self._inflight):
            self._pending.extendleft(reversed(chunk))
            self._uncertain += len(chunk)
        self._inflight.clear()

    def _drain_for(self, seconds: float) -> None:
        """Wait ``seconds`` (or until stopping) while still moving queued entries into the
        bounded buffer, so that readers never block on a dead Redis and the oldest entries,
        not the newest, are the ones dropped."""
        deadline = time.monotonic() + seconds
        if self._stopping.is_set():  # flushing at stop: retry soon, but do not spin
            time.sleep(min(seconds, 0.1))
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._take(timeout=min(left, 0.05)):
                self._enforce_bound()

    def _take(self, timeout: float = 0.0) -> bool:
        """Move queued entries to the pending buffer, waiting up to ``timeout`` for the first;
        False if nothing came. Every entry passes :meth:`_admit`."""
        try:
            batches = [self._queue.get(timeout=timeout) if timeout else self._queue.get_nowait()]
        except queue.Empty:
            return False
        taken = len(batches[0])
        try:
            while taken < self.batch * 4:
                batch = self._queue.get_nowait()
                batches.append(batch)
                taken += len(batch)
        except queue.Empty:
            pass
        with self._queued_lock:
            self._queued -= taken
        if not self._blocked:
            for batch in batches:
                self._pending.extend(batch)
        else:
            self._pending.extend(e for batch in batches for e in batch if self._admit(e))
        return True

    def _admit(self, entry: Entry) -> bool:
        """Whether an entry may be buffered: a stream that lost entries takes nothing more of
        its broken epoch, only its ``reset`` (which the worker sends) and what follows it."""
        if entry.stream not in self._blocked:
            return True
        if entry.fields.get("kind") == "reset":
            self._blocked.discard(entry.stream)
            return True
        self.dropped += 1
        return False

    def _enforce_bound(self) -> None:
        lost: set[str] = set()
        while len(self._pending) > self.buffer:
            lost.add(self._pending.popleft().stream)
            self.dropped += 1
            self._uncertain = max(0, self._uncertain - 1)  # the doubtful ones go first
        if lost:
            log.error("! buffer full (%d): dropped oldest entries of %s", self.buffer, sorted(lost))
            self._lose(lost)

    def _drop_all(self, why: str) -> None:
        while self._take():  # what is still queued is dropped (and counted) too
            pass
        lost = {e.stream for e in self._pending}
        self.dropped += len(self._pending)
        log.error("! %s: %d entries not written", why, len(self._pending))
        self._pending.clear()
        if lost and self.on_lost is not None:
            self.on_lost(lost)

    def _lose(self, lost: set[str]) -> None:
        """Streams that lost entries: drop the rest of their broken epoch from the buffer (a
        consumer must see a clean prefix, then a reset, never a hole inside an epoch), block
        them until their reset arrives, and tell the worker to reset and resubscribe them."""
        cut = set(lost)
        kept: deque[Entry] = deque()
        for entry in self._pending:
            if entry.stream in cut:
                if entry.fields.get("kind") != "reset":
                    self.dropped += 1
                    continue
                cut.discard(entry.stream)  # a new epoch starts here: keep it
            kept.append(entry)
        self._pending = kept
        self._blocked |= cut
        self._to_notify |= lost

    def _notify_lost(self) -> None:
        """Tell the worker which streams lost entries, once Redis takes writes again (a
        resubscribe while it is still away would only lose the fresh snapshot too), and at
        most once per stream per spacing that doubles while losses repeat (a stream Redis
        keeps refusing must not turn into a subscribe storm)."""
        now = time.monotonic()
        due = set()
        for stream in self._to_notify:
            last, streak = self._notified.get(stream, (-1e9, 0))
            if now - last > LOST_STREAK_RESET:
                streak = 0
            if now - last >= min(LOST_SPACING_MAX, LOST_SPACING * 2**streak) or streak == 0:
                due.add(stream)
                self._notified[stream] = (now, streak + 1)
        if due:
            self._to_notify -= due
            if self.on_lost is not None:
                self.on_lost(due)

    def _not_landed(self, chunk: list[Entry]) -> list[Entry]:
        """Drop the entries of a failed pipeline that Redis did store (read back, not guessed).

        A pipeline runs in order, so of each stream's entries in ``chunk`` a prefix landed:
        the stream's last entry in Redis is found in the chunk and everything of that stream
        up to it is skipped. Entries are compared by all their fields.
        """
        streams = list(dict.fromkeys(e.stream for e in chunk))
        try:
            pipe = self._redis.pipeline(transaction=False)
            for stream in streams:
                pipe.xrevrange(stream, count=1)
            replies: list[Any] = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise RedisUnavailable(f"{type(exc).__name__}: {redact(str(exc))}") from exc
        landed_upto: dict[str, int] = {}
        last = {s: rows[0][1] for s, rows in zip(streams, replies, strict=True) if rows}
        for index, entry in enumerate(chunk):
            if entry.stream in last and _as_stored(entry) == last[entry.stream]:
                landed_upto[entry.stream] = index
        out = [e for i, e in enumerate(chunk) if i > landed_upto.get(e.stream, -1)]
        self.written += len(chunk) - len(out)
        return out


def _as_stored(entry: Entry) -> dict[bytes, bytes]:
    """The entry's fields as Redis returns them."""
    return {
        k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in entry.fields.items()
    }
