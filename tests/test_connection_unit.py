"""A Connection's session driven by hand with fake sockets (no server): what it does with
what one read brings when something fails midway (each test came from a review finding)."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest
import websocket

from bridge.connection import Connection
from bridge.errors import ConnectionLost
from bridge.events import Event, Malformed
from bridge.pacing import SharedPacer
from tests.test_connection_frames import FakeCore


def text_frame(payload: bytes) -> bytes:
    assert len(payload) < 126
    return b"\x81" + bytes([len(payload)]) + payload


def ping_frame(payload: bytes = b"") -> bytes:
    return b"\x89" + bytes([len(payload)]) + payload


class ScriptedSocket:
    """recv() returns (or raises) the next scripted item; pending() is always 0."""

    def __init__(self, *script: bytes | BaseException) -> None:
        self.script = list(script)

    def recv(self, size: int) -> bytes:
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def pending(self) -> int:
        return 0


class FailingPongWs:
    sock = None  # as a WebSocket whose socket is gone

    def pong(self, payload: bytes) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def send(self, payload: bytes) -> None:
        pass


def make_connection() -> tuple[Connection, FakeCore, list[Event]]:
    core = FakeCore()
    dispatched: list[Event] = []
    conn = Connection(
        "review/1",
        "ws://127.0.0.1:1/",
        core,
        on_events=lambda c, events: dispatched.extend(events),
        pacer=SharedPacer(100),
        stopping=threading.Event(),
    )
    return conn, core, dispatched


def test_tls_want_write_while_draining_records_does_not_lose_bytes_already_read() -> None:
    """A TLS record already decrypted is not thrown away when the next read wants a write."""
    # Given a TLS session whose first record holds a whole message, and whose next read
    # raises SSLWantWriteError (renegotiation / key update with a full send buffer)
    conn, core, _ = make_connection()
    conn._tls = True
    conn._ws = FailingPongWs()  # type: ignore[assignment]
    conn._sock = ScriptedSocket(text_frame(b'["first"]'), ssl.SSLWantWriteError())
    # When the loop reads it
    conn.on_readable(1.0)
    # Then the message of the first record reached the core
    assert core.fed == [b'["first"]']


def test_events_of_messages_before_a_failed_pong_are_still_dispatched() -> None:
    """A pong that cannot be sent ends the session, but the messages read before it are
    not dropped unseen (their events reach the worker before the session ends)."""
    # Given one read holding a text message and then a ping, and a socket that cannot pong
    conn, core, dispatched = make_connection()
    conn._tls = False
    conn._ws = FailingPongWs()  # type: ignore[assignment]
    conn._sock = ScriptedSocket(text_frame(b'["before"]') + ping_frame(b"p"))
    # When the loop reads it, the session ends
    with pytest.raises(ConnectionLost):
        conn.on_readable(1.0)
    # Then the message before the ping was fed and its event dispatched
    assert core.fed == [b'["before"]']
    assert [str(e) for e in dispatched] != [], "the event of the first message was lost"


def test_a_momentarily_full_send_buffer_does_not_end_the_session() -> None:
    """ws.send on the non-blocking socket: a full send buffer (EAGAIN) is not a lost
    connection."""
    # Given a session socket (non-blocking, as the read loop sets it) whose send buffer is full
    ours, peer = socket.socketpair()
    try:
        ours.setblocking(False)
        with pytest.raises(BlockingIOError):
            while True:
                ours.send(b"x" * 65536)
        ws = websocket.WebSocket(skip_utf8_validation=True)
        ws.sock, ws.connected = ours, True
        conn, core, _ = make_connection()
        core.outgoing = [b'{"event":"ping","cid":1}']

        # When the connection sends a frame (a ping, a subscribe) while the peer is slow
        # (it drains its socket a moment later)
        def drain() -> None:
            try:
                peer.settimeout(5)
                while peer.recv(1 << 20):
                    pass
            except OSError:
                pass

        timer = threading.Timer(0.2, drain)
        timer.start()
        # Then the session goes on (the frame waits), rather than ending with ConnectionLost
        try:
            conn._send(ws)
        finally:
            timer.cancel()
            ours.close()  # the drain (if it started) then sees the end and returns
            timer.join(6)
    finally:
        ours.close()
        peer.close()


def test_messages_before_a_frame_violation_in_the_same_read_are_dispatched() -> None:
    """A read holding a good message and then a frame that breaks RFC 6455 (masked): the
    good one is fed and its event dispatched, then the session ends."""
    conn, core, dispatched = make_connection()
    conn._tls = False
    conn._ws = FailingPongWs()  # type: ignore[assignment]
    masked = b"\x81\x82abcd" + bytes(b ^ m for b, m in zip(b"[]", b"ab", strict=True))
    conn._sock = ScriptedSocket(text_frame(b'["good"]') + masked)
    with pytest.raises(ConnectionLost, match="masked"):
        conn.on_readable(1.0)
    assert core.fed == [b'["good"]']
    assert [e.frame for e in dispatched if isinstance(e, Malformed)] == ['["good"]']
