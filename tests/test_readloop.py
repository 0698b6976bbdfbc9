"""Tests of bridge.readloop: many sessions read on one thread, each ending on its own.

Sessions are socketpairs on this machine; waiting polls (``wait_until``), never sleeps a
fixed time before an assertion.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bridge.errors import ConnectionLost
from bridge.readloop import STALL_CREDIT, Finished, ReadLoop
from tests.conftest import wait_until


class FakeSession:
    """A Reading over one end of a socketpair; it records what the loop did with it."""

    def __init__(self) -> None:
        self.sock, self.peer = socket.socketpair()
        self.sock.setblocking(False)
        self.received = b""
        self.reads = 0
        self.threads: set[str] = set()
        self.chores_at: list[float] = []
        self.credits: list[float] = []
        self.fail_with: BaseException | None = None
        self.block_for = 0.0
        self.result: BaseException | None = None
        self.returned = threading.Event()

    def reading_socket(self) -> socket.socket:
        return self.sock

    def on_readable(self, now: float) -> None:
        self.threads.add(threading.current_thread().name)
        self.reads += 1
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return  # nothing yet (the read made when the session is handed over)
        if not data:
            raise ConnectionLost("peer closed")
        self.received += data
        if self.block_for:  # a handler held up (back-pressure from Redis)
            time.sleep(self.block_for)
            self.block_for = 0.0

    def chores(self, now: float) -> None:
        self.threads.add(threading.current_thread().name)
        self.chores_at.append(now)
        if self.fail_with is not None:
            raise self.fail_with

    def credit(self, seconds: float) -> None:
        self.credits.append(seconds)

    def run_in(self, loop: ReadLoop) -> threading.Thread:
        """Hand the session to the loop from a thread of its own, as a connection does."""

        def target() -> None:
            try:
                loop.read(self)
            except BaseException as exc:
                self.result = exc
            self.returned.set()

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.sock.close()
        self.peer.close()


@pytest.fixture
def sessions() -> Iterator[list[FakeSession]]:
    made: list[FakeSession] = []
    yield made
    for session in made:
        session.fail_with = Finished()
        session.returned.wait(5)
        session.close()


def make(sessions: list[FakeSession], n: int) -> list[FakeSession]:
    new = [FakeSession() for _ in range(n)]
    sessions.extend(new)
    return new


def test_every_session_is_read_on_the_loops_one_thread(sessions: list[FakeSession]) -> None:
    """Forty sessions, data on each: all of it arrives, all read by one thread (the loop's)."""
    loop = ReadLoop(0.05, name="the-loop")
    many = make(sessions, 40)
    for s in many:
        s.run_in(loop)
    for round_ in range(5):
        for i, s in enumerate(many):
            s.peer.sendall(f"{i}:{round_};".encode())
    for i, s in enumerate(many):
        want = "".join(f"{i}:{r};" for r in range(5)).encode()
        wait_until(lambda s=s, want=want: s.received == want, 10, f"session {i}'s data")
    assert set().union(*(s.threads for s in many)) == {"the-loop"}


def test_a_session_that_fails_ends_alone_and_its_thread_gets_the_error(
    sessions: list[FakeSession],
) -> None:
    """The error a session's callback raised reaches the thread that handed it over; the
    other sessions keep being read."""
    loop = ReadLoop(0.05)
    a, b = make(sessions, 2)
    a.run_in(loop)
    b.run_in(loop)
    a.peer.close()  # a's server goes away: on_readable raises ConnectionLost
    wait_until(a.returned.is_set, 10, "a's session to end")
    assert isinstance(a.result, ConnectionLost) and a.result.reason == "peer closed"
    b.peer.sendall(b"still here")
    wait_until(lambda: b.received == b"still here", 10, "b's data")
    assert not b.returned.is_set()


def test_finished_returns_and_chores_run_without_data(sessions: list[FakeSession]) -> None:
    """A quiet session gets its chores every chores_every; raising Finished from them ends
    its session cleanly (read returns, no error)."""
    loop = ReadLoop(0.05)
    (s,) = make(sessions, 1)
    s.run_in(loop)
    wait_until(lambda: len(s.chores_at) >= 5, 10, "chores on a quiet session")
    assert s.received == b"" and s.chores_at == sorted(s.chores_at)
    s.fail_with = Finished()
    wait_until(s.returned.is_set, 10, "the session to end")
    assert s.result is None


def test_a_blocked_handler_credits_the_sessions_it_kept_waiting(
    sessions: list[FakeSession],
) -> None:
    """While one session's handler waits (back-pressure), the others are not read: that
    time is credited to them (not to be taken for their server's silence), not to it."""
    loop = ReadLoop(0.05)
    slow, other = make(sessions, 2)
    slow.run_in(loop)
    other.run_in(loop)
    wait_until(lambda: slow.chores_at and other.chores_at, 10, "both sessions in the loop")
    slow.block_for = STALL_CREDIT * 2
    slow.peer.sendall(b"x")
    wait_until(lambda: other.credits, 10, "the credit")
    assert other.credits[0] >= STALL_CREDIT * 2
    assert slow.credits == []


def test_a_session_whose_socket_is_closed_before_it_is_read_ends_with_an_error(
    sessions: list[FakeSession],
) -> None:
    loop = ReadLoop(0.05)
    (s,) = make(sessions, 1)
    s.sock.close()
    s.run_in(loop)
    wait_until(s.returned.is_set, 10, "the session to end")
    assert isinstance(s.result, ValueError | OSError), s.result


def test_close_ends_the_sessions_still_read_and_refuses_new_ones(
    sessions: list[FakeSession],
) -> None:
    """Closing the loop ends what it still reads with ConnectionLost (their threads clean
    up as after a drop), stops its thread, and a session handed over later is refused."""
    loop = ReadLoop(0.05)
    a, b = make(sessions, 2)
    a.run_in(loop)
    wait_until(lambda: a.chores_at, 10, "a in the loop")
    loop.close()
    wait_until(a.returned.is_set, 10, "a's session to end")
    assert isinstance(a.result, ConnectionLost), a.result
    b.run_in(loop)
    wait_until(b.returned.is_set, 10, "b to be refused")
    assert isinstance(b.result, ConnectionLost), b.result


class BufferedSession(FakeSession):
    """Bytes held inside the session (as an SSL object holds decrypted ones) that its socket
    will never signal: only a read that is not prompted by the selector finds them."""

    def __init__(self, held: bytes) -> None:
        super().__init__()
        self.held = held

    def on_readable(self, now: float) -> None:
        self.received += self.held
        self.held = b""
        super().on_readable(now)


def test_a_session_is_read_once_when_handed_over(sessions: list[FakeSession]) -> None:
    """Data a session holds before it is handed over, which no selector reports, is read:
    the loop reads every session once on arrival."""
    loop = ReadLoop(0.05)
    s = BufferedSession(b"with the handshake")
    sessions.append(s)
    s.run_in(loop)
    wait_until(lambda: s.chores_at, 10, "the session in the loop")
    wait_until(lambda: s.received == b"with the handshake", 10, "the held data")
