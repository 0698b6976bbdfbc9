"""A real :class:`bridge.connection.Connection` reading frames from a real socket.

The server is the `websockets` library on 127.0.0.1, written here rather than the emulator:
the tests need to write raw, even invalid, frames (``RawServer.send_raw``) and to see the
client's control frames (every frame websockets parses is recorded). The core is a fake that
records what the connection feeds it; waiting is by polling, never a fixed sleep.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.sync.server import Server, ServerConnection, serve

from bridge.connection import Connection
from bridge.events import Event, Malformed, Reconnect
from bridge.pacing import SharedPacer
from bridge.subscription import Subscription
from bridge.wsframes import BINARY, CLOSE, CONTINUATION, PING, TEXT
from tests.conftest import wait_until
from tests.test_wsframes import frame

WELCOME = '{"event":"info","version":2}'


class RawServer:
    """A WebSocket server whose tests write raw bytes and read every frame received.

    Each connection gets :data:`WELCOME` at once (it may share a TCP segment with the
    handshake response), then only what a test sends."""

    def __init__(self) -> None:
        self.conns: list[ServerConnection] = []
        self.received: dict[int, list[tuple[int, bytes]]] = {}  # conn index -> frames
        self._lock = threading.Lock()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/2"

    def start(self) -> None:
        self._server = serve(
            self._handle, "127.0.0.1", 0, compression=None, ping_interval=None, close_timeout=1
        )
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._thread.join(10)

    def _handle(self, ws: ServerConnection) -> None:
        with self._lock:
            index = len(self.conns)
            frames: list[tuple[int, bytes]] = []
            self.received[index] = frames
            original = ws.protocol.recv_frame

            def recv_frame(f: Frame) -> None:
                frames.append((int(f.opcode), bytes(f.data)))
                original(f)

            ws.protocol.recv_frame = recv_frame  # type: ignore[method-assign,assignment]
            self.conns.append(ws)
        ws.send(WELCOME)
        try:
            for _ in ws:
                pass
        except ConnectionClosed:
            pass

    def conn(self, index: int) -> ServerConnection:
        wait_until(lambda: len(self.conns) > index, 20, f"client connection {index}")
        return self.conns[index]

    def send_raw(self, index: int, data: bytes) -> None:
        """Write bytes as they are, under websockets' lock (no frame of its own lands inside)."""
        ws = self.conn(index)
        with ws.protocol_mutex:
            ws.socket.sendall(data)

    def got(self, index: int, opcode: int, payload: bytes) -> bool:
        return (opcode, payload) in self.received.get(index, [])


class FakeCore:
    """A :class:`~bridge.connection.Core` that subscribes nothing and records what it is fed.

    Each message fed gives back one event naming it (``Malformed("fed", text)``), so a test
    can see what was dispatched; the message ``reconnect`` asks for a new session instead."""

    maintenance = False
    checksum_errors = 0

    def __init__(self) -> None:
        self.fed: list[bytes | str] = []
        self.lost: list[str] = []
        self.connects = 0
        self.outgoing: list[bytes] = []  # frames to send, as a core queues them

    @property
    def channels(self) -> Mapping[Subscription, Any]:
        return {}

    def connect(self, now: float) -> None:
        self.connects += 1

    def feed(self, frame: bytes | str, now: float) -> list[Event]:
        self.fed.append(frame)
        if frame == b"reconnect":
            return [Reconnect("the core asked for it")]
        return [Malformed("fed", frame.decode() if isinstance(frame, bytes) else frame)]

    def data_to_send(self) -> list[bytes]:
        out, self.outgoing = self.outgoing, []
        return out

    def next_deadline(self) -> float:
        return float("inf")

    def check_timeouts(self, now: float) -> list[Event]:
        return []

    def connection_lost(self, reason: str) -> list[Event]:
        self.lost.append(reason)
        return []

    def resubscribe(self, sub: Subscription, reason: str, now: float) -> list[Event]:
        return []

    def subscribed_count(self) -> int:
        return 0

    def answered_count(self) -> int:
        return 0

    def credit(self, seconds: float) -> None:
        pass


class Session:
    """A running Connection with its fake core, against a RawServer."""

    def __init__(self, server: RawServer) -> None:
        self.server = server
        self.core = FakeCore()
        self.reports: list[tuple[str, dict[str, Any]]] = []
        self.dispatched: list[Event] = []
        self.stopping = threading.Event()
        self.conn = Connection(
            "test/1",
            server.url,
            self.core,
            on_events=lambda conn, events: self.dispatched.extend(events),
            pacer=SharedPacer(100),
            stopping=self.stopping,
            report=lambda kind, **fields: self.reports.append((kind, fields)),
        )

    def fed_after_welcome(self) -> list[bytes | str]:
        return [f for f in self.core.fed if f != WELCOME.encode()]

    def lost(self) -> str:
        wait_until(lambda: self.core.lost, 20, "the session to end")
        return self.core.lost[0]


@pytest.fixture
def server() -> Iterator[RawServer]:
    raw = RawServer()
    raw.start()
    yield raw
    raw.stop()


@pytest.fixture
def session(server: RawServer) -> Iterator[Session]:
    """A connected session that has read the server's welcome message."""
    running = Session(server)
    running.conn.start()
    wait_until(lambda: WELCOME.encode() in running.core.fed, 20, "the welcome message")
    yield running
    running.stopping.set()
    running.conn.join(20)
    assert not running.conn.is_alive()


def sync(server: RawServer, index: int, token: bytes) -> None:
    """Ping from the server and wait for the pong: the client has read all sent before."""
    pong = server.conn(index).ping(token)
    wait_until(pong.is_set, 20, f"the pong to {token!r}")


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


# -- control frames --------------------------------------------------------------------------


def test_first_message_right_after_the_handshake_is_read(session: Session) -> None:
    """The welcome message, written as soon as the handshake ends, reached the core as bytes."""
    assert session.core.fed == [WELCOME.encode()]
    assert session.conn.msgs == 1 and session.core.connects == 1


@pytest.mark.parametrize("payload", [b"ping-payload-1", b"", bytes(range(125))])
def test_ping_is_answered_with_a_pong_carrying_its_payload(
    server: RawServer, session: Session, payload: bytes
) -> None:
    """A PING from websockets (which waits for the matching pong) and the same PING written
    raw both get a PONG with exactly their payload; no message reaches the core for them."""
    pong = server.conn(0).ping(payload)
    wait_until(pong.is_set, 20, "websockets to see the pong")
    assert server.got(0, int(Opcode.PONG), payload)
    raw = payload[::-1] + b"raw" if len(payload) < 123 else payload[:-3] + b"raw"
    server.send_raw(0, frame(raw, PING))
    wait_until(lambda: server.got(0, int(Opcode.PONG), raw), 20, "the pong to a raw ping")
    assert session.fed_after_welcome() == []
    assert session.core.lost == [] and session.conn.sessions == 1


# -- fragmented messages ---------------------------------------------------------------------


def test_fragmented_message_reaches_the_core_whole(server: RawServer, session: Session) -> None:
    """Fragments written raw, with a PING between them and a read boundary proven by a
    ping/pong round trip after the first fragment: one message, whole, and a pong."""
    server.send_raw(0, frame(b'[17,"hb"', TEXT, fin=False))
    sync(server, 0, b"after-first-fragment")
    assert session.fed_after_welcome() == []  # the first fragment alone is no message
    server.send_raw(
        0,
        frame(b",12", CONTINUATION, fin=False)
        + frame(b"between", PING)
        + frame(b"]", CONTINUATION),
    )
    wait_until(lambda: session.fed_after_welcome(), 20, "the reassembled message")
    assert session.fed_after_welcome() == [b'[17,"hb",12]']
    wait_until(lambda: server.got(0, int(Opcode.PONG), b"between"), 20, "the pong between")
    assert session.conn.msgs == 2 and session.core.lost == []


def test_fragments_sent_by_websockets_and_large_messages(
    server: RawServer, session: Session
) -> None:
    """websockets' own encoder: a message sent as fragments (an iterable), a binary one, and a
    300 000-byte text frame (64-bit length, larger than one 256 KiB read)."""
    ws = server.conn(0)
    ws.send(["[0,", '"te",', "[1,2,3]]"])
    big = "[" + ",".join(["1"] * 150_000) + "]"
    ws.send(big)
    ws.send(b"\x00\x01binary")
    expected = [b'[0,"te",[1,2,3]]', big.encode(), b"\x00\x01binary"]
    wait_until(lambda: len(session.fed_after_welcome()) == 3, 20, "three messages")
    assert session.fed_after_welcome() == expected
    assert session.core.lost == []


# -- the end of a session ------------------------------------------------------------------


def test_close_frame_ends_the_session_and_the_connection_reconnects(
    server: RawServer, session: Session
) -> None:
    """A CLOSE (4001, "bye") after a message in the same write: the message is fed, then the
    session ends with ConnectionLost naming a server close, and a new session starts."""
    server.send_raw(0, frame(b"[1,2]") + frame(close_payload(4001, b"bye"), CLOSE))
    reason = session.lost()
    assert reason.startswith("server closed the connection (")
    assert session.fed_after_welcome() == [b"[1,2]"]
    assert Malformed("fed", "[1,2]") in session.dispatched  # its events went out first
    assert ("disconnected", {"connection": "test/1", "reason": reason}) in session.reports
    server.conn(1)
    wait_until(lambda: session.conn.sessions == 2 and session.core.connects == 2, 20, "reconnect")
    wait_until(lambda: session.core.fed.count(WELCOME.encode()) == 2, 20, "the second welcome")


def test_close_frame_without_a_code(server: RawServer, session: Session) -> None:
    server.send_raw(0, frame(b"", CLOSE))
    assert session.lost() == "server closed the connection (no code)"


@pytest.mark.parametrize("code", [1000, 4001])
def test_close_reason_names_the_close_code_in_decimal(
    server: RawServer, session: Session, code: int
) -> None:
    """RFC 6455 §7.4 codes are numbers (1000, 1001, 4001...); the reason today reads
    "server closed the connection (03e8)" for 1000 and "(0fa1)" for 4001."""
    server.send_raw(0, frame(close_payload(code), CLOSE))
    assert str(code) in session.lost()


def test_close_frame_is_answered_with_a_close_frame(server: RawServer, session: Session) -> None:
    """RFC 6455 §5.5.1: an endpoint that receives a Close it did not start MUST send a Close
    back, echoing its code."""
    server.send_raw(0, frame(close_payload(1000), CLOSE))
    session.lost()
    ws = server.conn(0)
    wait_until(lambda: ws.protocol.state is State.CLOSED, 20, "the server to see the end")
    assert any(opcode == CLOSE for opcode, _ in server.received[0]), server.received[0]


def test_masked_frame_ends_the_session_and_the_connection_reconnects(
    server: RawServer, session: Session
) -> None:
    """A masked frame breaks RFC 6455 §5.1: the session ends with a reason saying so, the
    frame never reaches the core, and the connection opens a new session."""
    server.send_raw(0, frame(b"[1]"))
    wait_until(lambda: session.fed_after_welcome() == [b"[1]"], 20, "the valid message")
    server.send_raw(0, frame(b"[2]", mask=b"\x11\x22\x33\x44"))
    reason = session.lost()
    assert reason.startswith("receive: masked frame")
    server.conn(1)
    wait_until(lambda: session.conn.sessions == 2 and session.core.connects == 2, 20, "reconnect")
    wait_until(lambda: session.core.fed.count(WELCOME.encode()) == 2, 20, "the second welcome")
    assert session.fed_after_welcome() == [b"[1]"]
    assert any(kind == "connect_failed" and "masked" in f["reason"] for kind, f in session.reports)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (frame(b"x", 0x3), "reserved opcode 0x3"),
        (frame(b"x", BINARY, rsv=0x4), "RSV bits"),
        (frame(b"x", PING, fin=False), "control frame"),
        (frame(b"x", CONTINUATION), "continuation frame outside"),
    ],
)
def test_other_rfc_6455_violations_end_the_session(
    server: RawServer, session: Session, data: bytes, words: str
) -> None:
    server.send_raw(0, data)
    assert words in session.lost()
    server.conn(1)
    wait_until(lambda: session.conn.sessions == 2, 20, "reconnect")


def test_protocol_error_reason_has_no_empty_frame_suffix(
    server: RawServer, session: Session
) -> None:
    """The reason logged and published reads "receive: masked frame from the server (RFC 6455
    §5.1): ''": connection.py formats the exception, whose str appends ``: {frame!r}``."""
    server.send_raw(0, frame(b"[2]", mask=b"\x11\x22\x33\x44"))
    assert not session.lost().endswith("''")


def test_reading_stops_at_the_message_that_ends_the_session(
    server: RawServer, session: Session
) -> None:
    """Messages after one whose events say Reconnect (a sequence gap, say) belong to no valid
    session: in one write of three, the third is never fed and the session ends."""
    server.send_raw(0, frame(b"[1]") + frame(b"reconnect") + frame(b"[3]"))
    assert session.lost() == "the core asked for it"
    assert session.fed_after_welcome()[:2] == [b"[1]", b"reconnect"]
    assert b"[3]" not in session.core.fed
    assert Malformed("fed", "[1]") in session.dispatched
    assert Reconnect("the core asked for it") in session.dispatched
    wait_until(lambda: session.conn.sessions == 2, 20, "reconnect")
