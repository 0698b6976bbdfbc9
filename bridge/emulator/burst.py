"""Bursts and paced feeds for benchmarks, written to the socket as pre-built frames.

A *burst* is many market ticks rendered ahead of time and then written to every connection
as ready WebSocket frames, in chunks of ``chunk_bytes``, as fast as each client drains its
socket: the emulator does no per-frame work while the clock runs, so it is never what a
benchmark measures (``bench/run.py`` measures how fast it writes to a client that only
drains). A *paced* feed sends the same kind of messages one at a time at a fixed rate and
keeps each one's send time, for latency benchmarks.

Both come from the emulator's own market, ticked here while its tick thread is paused
(:func:`burst` and :func:`paced` pause it): the books and trades are the very feeds that gave
each subscriber its snapshot, so every update applies to the book the client holds and every
``cs`` is that book's true checksum. Each connection gets what its ``conf`` flags ask for, as
:meth:`~bridge.emulator.connection.EmuConnection.deliver` would send it: SEQ_ALL numbers
(consecutive with everything else sent on the connection), the TIMESTAMP trailer,
BULK_UPDATES arrays and OB_CHECKSUM frames. Every frame is logged (the emulator's frame log
and sink) before it is written, as every other frame is.

While a connection's burst is written its send lock is held
(:meth:`~bridge.emulator.connection.EmuConnection.exclusive`): its heartbeats, pongs and
events wait until the burst is out. Entry counts (:attr:`Burst.entries`) are what a bridge
with default options makes of the frames: one per book level or order, one per executed
trade (``te``/``fte``; ``tu`` makes none), one per ticker, candle or status message.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from bridge.emulator.books import Book
from bridge.emulator.channels import ChannelInfo, stream_name
from bridge.emulator.connection import EmuConnection
from bridge.emulator.feeds import Batch, BookFeed
from bridge.emulator.market import Market
from bridge.emulator.server import Emulator
from bridge.emulator.wire import BULK_UPDATES, OB_CHECKSUM, TIMESTAMP, encode, frame

__all__ = ["Burst", "BurstError", "Message", "Plan", "Sent", "burst", "paced", "render", "ws_frame"]

CHUNK_BYTES = 256 * 1024
_MAX_EMPTY_TICKS = 100  # ticks that produce nothing (F1 books only) before giving up


class BurstError(RuntimeError):
    """A burst cannot be made: no connection, or no subscribed channel produces data."""


@dataclass(frozen=True, slots=True)
class Message:
    """One data message of one channel, without its trailers.

    Attributes:
        chan_id: the channel it is sent on.
        body: the text between the chanId and the trailers (see :mod:`bridge.emulator.wire`).
        entries: stream entries a bridge makes of it (0 for ``cs`` and ``tu``).
        stream: the bridge's stream name for the channel (without prefix).
        follows: sent together with the message before it (a book's ``cs``), not paced.
    """

    chan_id: int
    body: str
    entries: int
    stream: str
    follows: bool = False


@dataclass(slots=True)
class Plan:
    """What one connection will be sent, in order."""

    conn: EmuConnection
    channels: dict[int, ChannelInfo]
    messages: list[Message] = field(default_factory=list)

    def add(self, chan_id: int, batch: Batch) -> int:
        """Append one tick's batch of ``chan_id`` as the connection's flags want it; return
        the entries it makes (0 when the channel is no longer subscribed)."""
        info = self.channels.get(chan_id)
        if info is None:
            return 0
        name = stream_name(info)
        flags = self.conn.flags
        if batch.book and flags & BULK_UPDATES and len(batch.bodies) > 1:
            body = "[" + ",".join(batch.bodies) + "]"
            new = [Message(chan_id, body, len(batch.bodies), name)]
        else:
            new = [Message(chan_id, b, _entries(info, b), name) for b in batch.bodies]
        if batch.book and flags & OB_CHECKSUM:
            new.append(Message(chan_id, f'"cs",{batch.checksum}', 0, name, follows=True))
        self.messages += new
        return sum(m.entries for m in new)


@dataclass(slots=True)
class Burst:
    """What :func:`burst` wrote. Times are ``time.time()`` seconds (wall clock, so that
    other processes can compare them with their own and with Redis entry ids).

    Attributes:
        frames: WebSocket frames written (data and ``cs``).
        bytes: bytes written, frame headers included.
        entries: stream name -> entries a bridge makes of the frames.
        connections: connections written to.
        rounds: market ticks rendered.
        render_seconds: time spent rendering (before ``t0``).
        t0: the first byte was handed to a socket.
        t1: the last write returned (the client had all but its socket buffers' worth).
        complete: every connection was still open at the end.
    """

    frames: int = 0
    bytes: int = 0
    entries: dict[str, int] = field(default_factory=dict)
    connections: int = 0
    rounds: int = 0
    render_seconds: float = 0.0
    t0: float = 0.0
    t1: float = 0.0
    complete: bool = True

    @property
    def frames_per_second(self) -> float:
        """Frames written per second of writing."""
        return self.frames / (self.t1 - self.t0) if self.t1 > self.t0 else 0.0


@dataclass(frozen=True, slots=True)
class Sent:
    """One paced message: where it went, the entries it makes, ``time.time_ns()`` at send."""

    conn_id: int
    chan_id: int
    stream: str
    entries: int
    t_ns: int


def ws_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (server to client, RFC 6455 §5.2) carrying ``payload``."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


def render(
    emulator: Emulator, entries: int, connections: Iterable[EmuConnection] | None = None
) -> tuple[list[Plan], int]:
    """Tick the market until its batches make at least ``entries`` entries on ``connections``
    (default: all); return one plan per connection and the number of ticks.

    The emulator is paused first, so that its own tick thread sends nothing meanwhile.
    """
    emulator.pause()
    conns = list(emulator.connections() if connections is None else connections)
    plans = {id(c): Plan(c, c.channels()) for c in conns}
    if not any(p.channels for p in plans.values()):
        raise BurstError("no subscribed channel: connect and subscribe before a burst")
    total = rounds = empty = 0
    with _fast_checksums(emulator.market):
        while total < entries:
            made = 0
            for subscribers, batch in emulator.market.tick(time.time_ns() // 1_000_000):
                for subscriber, chan_id in subscribers:
                    plan = plans.get(id(subscriber))
                    if plan is not None:
                        made += plan.add(chan_id, batch)
            rounds += 1
            total += made
            empty = 0 if made else empty + 1
            if empty > _MAX_EMPTY_TICKS:
                raise BurstError("the subscribed channels make no entries (only F1 books?)")
    return [p for p in plans.values() if p.messages], rounds


class _CachedChecksum:
    """:meth:`Book.checksum` of one book, with the text of each ``price:amount`` pair cached.

    The same CRC over the same texts (top 25 per side, interleaved, §7.1), about twice as
    fast: rendering a burst is mostly checksums. It is checked against :meth:`Book.checksum`
    when made and once every ``_CHECK_EVERY`` calls, so it cannot drift from the original.
    """

    _CHECK_EVERY = 1000

    def __init__(self, book: Book) -> None:
        self.book = book
        self.texts: dict[object, str] = {}
        self.calls = 0
        self.check()

    def check(self) -> None:
        if self() != Book.checksum(self.book):
            raise BurstError("the cached checksum differs from Book.checksum: fix burst.py")

    def __call__(self) -> int:
        self.calls += 1
        if self.calls % self._CHECK_EVERY == 0:
            self.calls += 1
            self.check()
        book, texts = self.book, self.texts
        sides = [
            sorted(book._sides[bid].values(), key=book._sort_key)[:25] for bid in (True, False)
        ]
        parts: list[str] = []
        for i in range(25):
            for side in sides:
                if i < len(side):
                    pair = book._checksum_pair(side[i])
                    text = texts.get(pair)
                    if text is None:
                        text = texts[pair] = encode(pair[0]) + ":" + encode(pair[1])
                    parts.append(text)
        crc = zlib.crc32(":".join(parts).encode())
        return crc - (1 << 32) if crc >= 1 << 31 else crc


@contextlib.contextmanager
def _fast_checksums(market: Market) -> Iterator[None]:
    """Give every book of ``market`` a :class:`_CachedChecksum` while rendering (an instance
    attribute shadowing the method); removed afterwards."""
    with market.lock:
        books = [f.book for f in market._feeds.values() if isinstance(f, BookFeed)]
    for book in books:
        book.checksum = _CachedChecksum(book)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for book in books:
            del book.checksum


def burst(
    emulator: Emulator,
    entries: int,
    connections: Iterable[EmuConnection] | None = None,
    *,
    chunk_bytes: int = CHUNK_BYTES,
) -> Burst:
    """Render at least ``entries`` entries (see :func:`render`) and write them to every
    connection at once, one thread per connection; return when all is written."""
    started = time.monotonic()
    plans, rounds = render(emulator, entries, connections)
    result = Burst(connections=len(plans), rounds=rounds)
    result.render_seconds = time.monotonic() - started
    for plan in plans:
        for message in plan.messages:
            result.entries[message.stream] = result.entries.get(message.stream, 0)
            result.entries[message.stream] += message.entries
    barrier = threading.Barrier(len(plans))
    outcomes: list[tuple[int, int, float, float, bool]] = []
    lock = threading.Lock()

    def run(plan: Plan) -> None:
        try:
            outcome = _write(emulator, plan, barrier, chunk_bytes)
        except BaseException:
            barrier.abort()
            raise
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=run, args=(p,), name="burst") for p in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(outcomes) != len(plans):
        raise BurstError("a burst writer failed (see the log)")
    result.frames = sum(o[0] for o in outcomes)
    result.bytes = sum(o[1] for o in outcomes)
    result.t0 = min(o[2] for o in outcomes)
    result.t1 = max(o[3] for o in outcomes)
    result.complete = all(o[4] for o in outcomes)
    return result


def _write(
    emulator: Emulator, plan: Plan, barrier: threading.Barrier, chunk_bytes: int
) -> tuple[int, int, float, float, bool]:
    """Number, log and frame one plan under the connection's send lock, wait for the other
    writers, then write it in chunks: (frames, bytes, t0, t1, complete)."""
    conn = plan.conn
    with conn.exclusive():
        texts = _texts(conn, plan.messages)
        for text in texts:
            emulator.record(conn.conn_id, text, "sent")
        chunks = _chunks(texts, chunk_bytes)
        size = sum(len(c) for c in chunks)
        barrier.wait()
        t0 = time.time()
        complete = all(conn.write_frames(chunk) for chunk in chunks)
        t1 = time.time()
    return len(texts), size, t0, t1, complete


def _texts(conn: EmuConnection, messages: list[Message]) -> list[str]:
    """The frames' texts with their trailers; call under :meth:`EmuConnection.exclusive`."""
    first = conn.reserve_seq(len(messages))
    mts = time.time_ns() // 1_000_000 if conn.flags & TIMESTAMP else None
    if first is None:
        return [frame(m.chan_id, m.body, None, mts) for m in messages]
    return [frame(m.chan_id, m.body, first + i, mts) for i, m in enumerate(messages)]


def _chunks(texts: list[str], chunk_bytes: int) -> list[bytes]:
    chunks: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    for text in texts:
        data = ws_frame(text.encode())
        parts.append(data)
        size += len(data)
        if size >= chunk_bytes:
            chunks.append(b"".join(parts))
            parts, size = [], 0
    if parts:
        chunks.append(b"".join(parts))
    return chunks


def paced(
    emulator: Emulator,
    rate: float,
    seconds: float,
    connections: Iterable[EmuConnection] | None = None,
) -> list[Sent]:
    """Send ``rate`` messages per second for about ``seconds`` (a book's ``cs`` goes with its
    update and is not counted); return each message's send record, in send order.

    The messages are rendered first (:func:`render`, whole market ticks, so up to one tick
    more than ``rate * seconds``), then sent one by one on schedule, each under its
    connection's send lock with its own SEQ_ALL number and timestamp.
    """
    count = max(1, int(rate * seconds))
    plans, _ = render(emulator, count, connections)
    queue = _interleave(plans)
    while sum(not m.follows for _, m in queue) < count:
        more, _ = render(emulator, count, connections)
        queue += _interleave(more)
    sent: list[Sent] = []
    start = time.monotonic() + 0.05
    index = 0
    paced_count = 0
    while index < len(queue):  # all that was rendered: an unsent book update would
        # leave the client's book behind the emulator's
        conn, message = queue[index]
        group = [message]
        index += 1
        while index < len(queue) and queue[index][1].follows and queue[index][0] is conn:
            group.append(queue[index][1])
            index += 1
        delay = start + paced_count / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with conn.exclusive():
            texts = _texts(conn, group)
            for text in texts:
                emulator.record(conn.conn_id, text, "sent")
            data = b"".join(ws_frame(t.encode()) for t in texts)
            t_ns = time.time_ns()
            conn.write_frames(data)
        sent.append(Sent(conn.conn_id, message.chan_id, message.stream, message.entries, t_ns))
        paced_count += 1
    return sent


def _interleave(plans: list[Plan]) -> list[tuple[EmuConnection, Message]]:
    """Messages of all plans, round robin by connection, each connection's order kept."""
    out: list[tuple[EmuConnection, Message]] = []
    cursors = Counter[int]()
    remaining = True
    while remaining:
        remaining = False
        for i, plan in enumerate(plans):
            at = cursors[i]
            if at >= len(plan.messages):
                continue
            remaining = True
            out.append((plan.conn, plan.messages[at]))
            at += 1
            while at < len(plan.messages) and plan.messages[at].follows:
                out.append((plan.conn, plan.messages[at]))
                at += 1
            cursors[i] = at
    return out


def _entries(info: ChannelInfo, body: str) -> int:
    """Entries a bridge makes of one single message body (see the module docstring)."""
    if info.channel == "trades":
        return 1 if body.startswith(('"te"', '"fte"')) else 0
    return 1
