"""One thread that reads every connection of a worker.

With a reader thread per connection, a worker of 40 connections (1 000 streams) spent a
third more per message than one of a single connection: every read woke its own thread,
which then queued for the GIL behind the others (P6 in docs/BENCHMARKS.md). A
:class:`ReadLoop` waits on all the sockets at once (``selectors``) and runs each ready
connection's read on the loop's one thread, then, at least every ``chores_every`` seconds, every
connection's chores (deadlines, requests from other threads, the stop flag).

Each connection's thread still owns its life cycle (connect, handshake, backoff, close): it
hands a live session to :meth:`ReadLoop.read`, which returns when the session ended cleanly
and raises what ended it otherwise. While a session is in the loop, only the loop's thread
touches its protocol core.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

from bridge.errors import ConnectionLost

__all__ = ["Finished", "ReadLoop", "Reading"]

log = logging.getLogger(__name__)

STALL_CREDIT = 0.2  # a callback that blocked longer than this: the others were not read


class Finished(Exception):  # not an error: the way a session ends cleanly
    """Raised by a session's callback when it ends cleanly (the worker is stopping)."""


class Reading(Protocol):
    """What the loop needs of a live session (:class:`~bridge.connection.Connection`)."""

    def reading_socket(self) -> socket.socket: ...

    def on_readable(self, now: float) -> None:
        """Read what arrived and act on it; raise to end the session. Called when the
        socket is readable, and once when the session is handed over (there may be
        nothing to read then)."""

    def chores(self, now: float) -> None:
        """Deadlines, requests, the stop flag; raise to end the session."""

    def credit(self, seconds: float) -> None:
        """It could not be read for ``seconds`` through no fault of its server."""


class _Session:
    __slots__ = ("done", "error", "reading", "sock")

    def __init__(self, reading: Reading) -> None:
        self.reading = reading
        self.sock: socket.socket | None = None  # registered with the selector
        self.done = threading.Event()
        self.error: BaseException | None = None


class ReadLoop:
    """Reads every session handed to :meth:`read` on one thread (see the module docstring).

    Args:
        chores_every: the longest time between two calls of a session's ``chores``.
    """

    def __init__(self, chores_every: float = 0.25, name: str = "reader") -> None:
        self.chores_every = chores_every
        self._name = name
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._added: queue.SimpleQueue[_Session] = queue.SimpleQueue()
        self._sessions: list[_Session] = []
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closing = False

    def read(self, reading: Reading) -> None:
        """Read ``reading`` on the loop's thread until its session ends (any thread).

        Returns when a callback raised :class:`Finished`; re-raises anything else a
        callback raised."""
        session = _Session(reading)
        self._start()
        self._added.put(session)
        self._wake()
        while not session.done.wait(1.0):
            thread = self._thread
            if thread is None or not thread.is_alive():
                raise RuntimeError("the read loop's thread is gone")
        if session.error is not None and not isinstance(session.error, Finished):
            raise session.error

    def close(self, timeout: float = 2.0) -> None:
        """Stop the loop's thread and release its sockets (after every session ended)."""
        with self._lock:
            self._closing = True
            thread = self._thread
        self._wake()
        if thread is not None:
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _start(self) -> None:
        with self._lock:
            if self._closing:  # the worker is stopping: a late session just ends
                raise ConnectionLost("the read loop was closed")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full of wake-ups already
            self._wake_w.send(b"\0")

    # -- the loop's thread ----------------------------------------------------------------------

    def _run(self) -> None:
        next_chores = 0.0
        while not self._closing:
            try:
                next_chores = self._turn(next_chores)
            except Exception:  # a bug must not stop every connection's reading for good
                log.exception("! read loop: unexpected error; continuing")
                time.sleep(0.1)
        for session in list(self._sessions):  # their threads clean up as after a drop
            self._end(session, ConnectionLost("the read loop was closed"))

    def _turn(self, next_chores: float) -> float:
        """Read every ready session; run every session's chores when they are due."""
        timeout = max(0.0, next_chores - time.monotonic())
        for key, _ in self._selector.select(timeout):
            session: _Session | None = key.data
            if session is None:
                self._take_added()
            else:
                self._call(session, session.reading.on_readable)
        if time.monotonic() < next_chores:
            return next_chores
        for session in list(self._sessions):
            self._call(session, session.reading.chores)
        return time.monotonic() + self.chores_every

    def _take_added(self) -> None:
        while True:
            try:
                if not self._wake_r.recv(4096):
                    break
            except BlockingIOError:
                break
        while not self._added.empty():
            session = self._added.get_nowait()
            try:
                sock = session.reading.reading_socket()
                self._selector.register(sock, selectors.EVENT_READ, session)
                session.sock = sock
            except Exception as exc:  # closed before it got here
                self._end(session, exc)
                continue
            self._sessions.append(session)
            # Read once now: the socket may hold data no selector reports (a TLS record that
            # came with the handshake's response is already decrypted, inside the SSL object).
            self._call(session, session.reading.on_readable)

    def _call(self, session: _Session, callback: Callable[[float], None]) -> None:
        if session.done.is_set():
            return
        started = time.monotonic()
        try:
            callback(started)
        except BaseException as exc:  # the session's end (or its bug): its thread re-raises it
            self._end(session, exc)
        stalled = time.monotonic() - started
        if stalled > STALL_CREDIT:  # the others were not read meanwhile: not their silence
            for other in self._sessions:
                if other is not session:
                    other.reading.credit(stalled)

    def _end(self, session: _Session, error: BaseException) -> None:
        if session.sock is not None:
            with contextlib.suppress(KeyError, OSError, ValueError):  # the socket is closed
                self._selector.unregister(session.sock)
        if session in self._sessions:
            self._sessions.remove(session)
        session.error = error
        session.done.set()
