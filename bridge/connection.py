"""I/O for one Bitfinex connection: socket, session, reconnects.

A :class:`Connection` owns one websocket-client socket (opened with ``create_connection``
and ``skip_utf8_validation``; no ``WebSocketApp``) and one thread for its life cycle: the
thread opens the socket, lets the sans-I/O :class:`~bridge.protocol.Protocol` subscribe
everything, and hands the live session to the worker's :class:`~bridge.readloop.ReadLoop`,
whose one thread reads every connection: 256 KiB at a time, split into messages by
:class:`~bridge.wsframes.FrameReader` (websocket-client's per-frame reads cost more than
everything else a frame needs), each fed to the core, the resulting events handed to the
worker. When the session ends, the connection's thread reports it and reconnects forever
with tenacity's jittered exponential backoff. A session that ran healthy reconnects at once
(backoff resets only after proven health); one that failed early backs off.

This is the only module that imports ``websocket``; its exceptions become
:class:`~bridge.errors.ConnectionLost` here.
"""

from __future__ import annotations

import logging
import queue
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, Protocol

import tenacity
import websocket

from bridge.errors import ConnectionLost, HandshakeFailed, is_retryable
from bridge.events import EntriesLost, Event, Reconnect
from bridge.log import redact
from bridge.pacing import SharedPacer
from bridge.readloop import STALL_CREDIT, Finished, ReadLoop
from bridge.subscription import Subscription
from bridge.wsframes import BINARY, CLOSE, PING, TEXT, FrameError, FrameReader, Message

__all__ = ["Connection", "Core"]

log = logging.getLogger(__name__)

RECV_SIZE = 262144  # one read takes whatever arrived, up to this (a burst: ~2 000 frames)
RECV_TIMEOUT = 0.25  # how often a quiet reader checks deadlines and the stop flag
OPEN_TIMEOUT = 10.0
SEND_TIMEOUT = 5.0  # a send buffer full this long: the server is not reading
STATUS_NORMAL = websocket.STATUS_NORMAL
# Close codes a Close may carry back (RFC 6455 §7.4): not 1005/1006/1015, never sent.
ECHOED_CLOSE_CODES = frozenset(range(1000, 5000)) - {1004, 1005, 1006, 1015}
HEALTHY_AFTER = 5.0  # a session subscribed this long resets the backoff

EventHandler = Callable[["Connection", list[Event]], None]
Reporter = Callable[..., None]  # report(kind, **fields): one entry of the events stream


class Core(Protocol):
    """The sans-I/O core a connection drives: :class:`~bridge.protocol.Protocol` for public
    channels, :class:`~bridge.account.AccountProtocol` for an authenticated account."""

    maintenance: bool  # Bitfinex announced maintenance (20060) on this connection
    checksum_errors: int  # book checksum mismatches counted by the core

    @property
    def channels(self) -> Mapping[Subscription, Any]:
        """Public channels by subscription; each has ``chan_id`` (int or None)."""
        ...

    def connect(self, now: float) -> None: ...
    def feed(self, frame: bytes | str, now: float) -> list[Event]: ...
    def data_to_send(self) -> list[bytes]: ...
    def next_deadline(self) -> float: ...
    def check_timeouts(self, now: float) -> list[Event]: ...
    def connection_lost(self, reason: str) -> list[Event]: ...
    def resubscribe(self, sub: Subscription, reason: str, now: float) -> list[Event]: ...
    def subscribed_count(self) -> int: ...
    def answered_count(self) -> int: ...
    def credit(self, seconds: float) -> None: ...


def _more_records(sock: ssl.SSLSocket, first: bytes) -> bytes:
    """An SSL socket's ``recv`` returns one TLS record (at most 16 KiB): read on while more
    are there, up to RECV_SIZE, so that a burst over TLS costs as few wake-ups as over TCP.
    This also takes what the SSL object decrypted but the socket can no longer signal."""
    chunks, size = [first], len(first)
    while size < RECV_SIZE:
        try:
            more = sock.recv(RECV_SIZE - size)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            break  # no whole record more (or the TLS layer wants to write first)
        if not more:
            break  # the end of the stream: the next read reports it
        chunks.append(more)
        size += len(more)
    while sock.pending():  # never leave decrypted bytes behind: nothing would signal them
        chunks.append(sock.recv(sock.pending()))
    return b"".join(chunks)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Map websocket-client and socket errors to ConnectionLost (httpcore style)."""
    try:
        yield
    except websocket.WebSocketBadStatusException as exc:
        raise HandshakeFailed(exc.status_code) from exc
    except (websocket.WebSocketException, OSError) as exc:
        raise ConnectionLost(f"{what}: {type(exc).__name__}: {exc}") from exc


class Connection:
    """One connection: its life-cycle thread and its live session (see the module docstring).

    Args:
        name: for logs and health, e.g. ``majors/1``.
        url: the WebSocket endpoint.
        protocol: the sans-I/O core holding this connection's subscriptions.
        on_events: called with each batch of events: on the read loop's thread while the
            session lives, on this connection's thread with the events of its end.
        pacer: shared limit on new connections.
        stopping: set to stop; the thread unsubscribes, closes and exits.
        loop: the read loop shared by the worker's connections (default: one of its own).
    """

    def __init__(
        self,
        name: str,
        url: str,
        protocol: Core,
        *,
        on_events: EventHandler,
        pacer: SharedPacer,
        stopping: threading.Event,
        report: Reporter | None = None,
        throttle_wait: float = 15.0,
        loop: ReadLoop | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.protocol = protocol
        self.on_events = on_events
        self.pacer = pacer
        self.stopping = stopping
        self.throttle_wait = throttle_wait
        self.report: Reporter = report or (lambda kind, **fields: None)
        self.connected = False
        self.reconnects = 0
        self.sessions = 0
        self._last_frame = 0.0  # monotonic time of the last frame received
        self.msgs = 0
        self._ws: websocket.WebSocket | None = None
        self._next_check = 0.0  # monotonic time of the next check_timeouts
        self._owns_loop = loop is None
        self._loop = loop or ReadLoop(RECV_TIMEOUT, name=f"read-{name}")
        self._sock: Any = None  # the live session's socket (socket.socket or ssl.SSLSocket)
        self._frames = FrameReader()
        self._tls = False  # the live session's socket is an ssl.SSLSocket
        self._opened = 0.0  # monotonic time the live session opened
        self._healthy = False  # the live session has proven itself (backoff resets)
        self._requests: queue.SimpleQueue[tuple[Subscription, str]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"conn-{name}", daemon=True)

    @property
    def last_msg(self) -> float:
        """Wall-clock seconds of the last frame received (0 if none yet)."""
        if not self._last_frame:
            return 0.0
        return time.time() - (time.monotonic() - self._last_frame)

    def start(self) -> None:
        """Start the connection's thread."""
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait for the thread to finish after ``stopping`` was set."""
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        """True while the connection's thread runs."""
        return self._thread.is_alive()

    def report_lost(self, sub: Subscription, reason: str) -> None:
        """Entries of ``sub`` were lost (any thread): reset it and subscribe it afresh."""
        self._requests.put((sub, reason))

    def abort(self) -> None:
        """Cut the live session by shutting its socket down (any thread): the read loop
        sees the end at once and the connection reconnects."""
        ws = self._ws
        if ws is not None:
            ws.abort()

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        retrying = tenacity.Retrying(
            wait=self._wait,
            retry=tenacity.retry_if_exception(is_retryable),
            stop=lambda state: self.stopping.is_set(),
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        while not self.stopping.is_set():
            try:
                retrying(self._session)
            except ConnectionLost:
                pass  # stopping while retrying
            except Exception:
                log.exception("! %s: unexpected error; reconnecting in 1s", self.name)
                self.stopping.wait(1.0)
        if self._owns_loop:
            self._loop.close()

    def _sleep(self, seconds: float) -> None:
        self.stopping.wait(seconds)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        # First retry within ~0.25 s, then doubling up to 30 s, full jitter. After HTTP 429
        # (Bitfinex gives no Retry-After) at least throttle_wait, plus jitter.
        base: float = tenacity.wait_random_exponential(multiplier=0.25, max=30)(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, HandshakeFailed) and exc.status == 429:
            base = max(base, self.throttle_wait * random.uniform(1.0, 1.3))
        return base

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.upcoming_sleep
        log.warning("- %s: %s; retry %d in %.2fs", self.name, exc, state.attempt_number, delay)
        self.report("connect_failed", connection=self.name, reason=str(exc),
                    retry_in=f"{delay:.2f}")  # fmt: skip

    def _session(self) -> None:
        """One connection from open to loss; returns (no backoff) if it had been healthy."""
        if not self.pacer.wait(self.stopping, self.name):
            return
        with _translated("connect"):
            ws = websocket.create_connection(
                self.url, timeout=OPEN_TIMEOUT, skip_utf8_validation=True, enable_multithread=True
            )
        self._ws = ws
        self.sessions += 1
        if self.sessions > 1:
            self.reconnects += 1
        self.connected = True
        log.info("= %s: connected to %s", self.name, redact(self.url))
        self.report("connected", connection=self.name, url=redact(self.url))
        reason = "connection lost"
        self._healthy = False
        try:
            ws.settimeout(0)  # reads never wait in recv: the read loop waits for every socket
            self._opened = time.monotonic()
            self.protocol.connect(self._opened)
            self._send(ws)
            if ws.sock is None:
                raise ConnectionLost("the socket closed during the handshake")
            self._sock, self._frames = ws.sock, FrameReader()
            self._tls = isinstance(ws.sock, ssl.SSLSocket)
            self._loop.read(self)  # until the session ends: returns if stopping, else raises
            reason = "worker stopped"
            ws.settimeout(OPEN_TIMEOUT)
            self._unsubscribe_all(ws)
        except ConnectionLost as exc:
            reason = exc.reason
            if not self._healthy:
                raise
            log.warning("! %s: %s; reconnecting now", self.name, reason)
        finally:
            self.connected = False
            self._ws = None
            self.on_events(self, self.protocol.connection_lost(reason))
            self.report("disconnected", connection=self.name, reason=reason)
            self._close(ws, graceful=reason == "worker stopped")

    # -- the session, on the read loop's thread --------------------------------------------

    def reading_socket(self) -> socket.socket:
        """The socket the read loop waits on."""
        if self._sock is None:
            raise ConnectionLost("no session")
        sock: socket.socket = self._sock
        return sock

    def on_readable(self, now: float) -> None:
        """Read what arrived (up to 256 KiB) and act on every message in it.

        The hot path: one syscall and one clock read per read, not per frame; plain
        try/except, no context managers. Reading stops at the first message that ends the
        session (a sequence gap, say): what follows it belongs to no valid epoch."""
        sock = self._sock
        try:
            data = sock.recv(RECV_SIZE)
            if self._tls and data:
                data = _more_records(sock, data)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return  # woken without a whole TLS record, or by nothing: wait for more
        except OSError as exc:
            raise ConnectionLost(f"receive: {type(exc).__name__}: {exc}") from exc
        if not data:
            raise ConnectionLost("the server closed the TCP connection")
        try:
            messages = self._frames.feed(data)
        except FrameError as exc:  # what came before the fault is valid: act on it first
            if exc.messages:
                self._last_frame = now
                self._dispatch(self._messages(self._ws_now(), exc.messages, now))
            raise ConnectionLost(f"receive: {exc.reason}") from exc
        if messages:
            self._last_frame = now
            self._dispatch(self._messages(self._ws_now(), messages, now))
        self.chores(now)

    def chores(self, now: float) -> None:
        """Requests from other threads, deadlines, the frames to send, the stop flag."""
        if self.stopping.is_set():
            raise Finished
        while not self._requests.empty():
            sub, why = self._requests.get_nowait()
            self._dispatch([EntriesLost(sub, why), *self.protocol.resubscribe(sub, why, now)])
        if now >= self._next_check:
            self._dispatch(self.protocol.check_timeouts(now))
            # the core's deadlines only move later as frames arrive; re-read them at least
            # every RECV_TIMEOUT (walking every channel after each frame cost a quarter of
            # the worker's time under bursts)
            self._next_check = min(self.protocol.next_deadline(), now + RECV_TIMEOUT)
            if not self._healthy and now - self._opened > HEALTHY_AFTER:
                self._healthy = self.protocol.subscribed_count() > 0
        self._send(self._ws_now())

    def credit(self, seconds: float) -> None:
        """The read loop could not read this connection for ``seconds`` (another one's
        handler waited on Redis back-pressure): not silence of the server."""
        self.protocol.credit(seconds)

    def _ws_now(self) -> websocket.WebSocket:
        ws = self._ws
        if ws is None:
            raise ConnectionLost("the connection was closed")
        return ws

    def _messages(
        self, ws: websocket.WebSocket, messages: list[Message], now: float
    ) -> list[Event]:
        """The events of a batch of messages, up to the first that ends the session."""
        feed = self.protocol.feed
        events: list[Event] = []
        try:
            for opcode, payload in messages:
                if opcode in (TEXT, BINARY):  # Bitfinex sends text; anything is parsed
                    self.msgs += 1
                    got = feed(payload, now)
                    if got:
                        events += got
                        for event in got:
                            if type(event) is Reconnect:
                                return events
                elif opcode == PING:
                    self._send_frame(ws, ws.pong, payload)
                elif opcode == CLOSE:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    # RFC 6455 §5.5.1: answer a Close with a Close (echoing its code)
                    with suppress(websocket.WebSocketException, OSError):
                        ws.send_close(code if code in ECHOED_CLOSE_CODES else STATUS_NORMAL)
                    raise ConnectionLost(f"server closed the connection ({code or 'no code'})")
        except BaseException:
            self._dispatch(events)  # what was read before the end still reaches the worker
            raise
        return events

    def _dispatch(self, events: list[Event]) -> None:
        if not events:
            return
        started = time.monotonic()
        self.on_events(self, events)
        stalled = time.monotonic() - started
        if stalled > STALL_CREDIT:  # back-pressure from a slow Redis is not exchange silence
            self.protocol.credit(stalled)
        for event in events:
            if type(event) is Reconnect:
                raise ConnectionLost(event.reason)

    def _send(self, ws: websocket.WebSocket) -> None:
        frames = self.protocol.data_to_send()
        for frame in frames:
            self._send_frame(ws, ws.send, frame)

    def _send_frame(
        self, ws: websocket.WebSocket, send: Callable[[bytes], object], payload: bytes
    ) -> None:
        """Send on the session's socket, which the read loop keeps non-blocking: a full send
        buffer is waited out (up to SEND_TIMEOUT), not taken for a lost connection."""
        sock = ws.sock
        if sock is not None:
            sock.settimeout(SEND_TIMEOUT)
        try:
            with _translated("send"):
                send(payload)
        finally:
            if sock is not None:
                with suppress(OSError):  # closed meanwhile: the next read says so
                    sock.settimeout(0)

    def _unsubscribe_all(self, ws: websocket.WebSocket) -> None:
        for channel in self.protocol.channels.values():
            if channel.chan_id is not None:
                try:
                    ws.send(f'{{"event":"unsubscribe","chanId":{channel.chan_id}}}')
                except (websocket.WebSocketException, OSError):
                    return

    def _close(self, ws: websocket.WebSocket, *, graceful: bool) -> None:
        try:
            if graceful:
                ws.close(timeout=1.0)
            else:
                ws.abort()
                ws.shutdown()
        except (websocket.WebSocketException, OSError):
            pass
