"""A real :class:`bridge.connection.Connection` reading over TLS (``wss://``), as in production.

The certificate is self-signed for IP 127.0.0.1, made with the ``openssl`` command line once
per test session in a temporary directory (no key file is ever committed). websocket-client
trusts it through ``WEBSOCKET_CLIENT_CA_BUNDLE`` (read by ``websocket._http._ssl_socket`` at
each connect); verification stays on: certificate and host name are both checked.

Most tests use :class:`TLSServer`, the ``RawServer`` of ``test_connection_frames`` serving wss.
Where a test needs to choose how bytes fall into TLS records (the opening handshake) or how
the TLS transport ends (close_notify or not), :class:`HandWrittenServer` speaks TLS and the
WebSocket handshake itself on plain ``ssl`` sockets.

Over TLS one ``SSLSocket.recv`` returns at most one TLS record (16 KiB) whatever size is asked
(OpenSSL reads no record ahead), so a 300 KB message takes about twenty reads; what the
selector cannot see is what OpenSSL already decrypted and holds (``SSLSocket.pending()``).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.sync.server import serve

from bridge import connection
from bridge.wsframes import CLOSE, PING
from tests.conftest import wait_until
from tests.test_connection_frames import WELCOME, RawServer, Session, sync
from tests.test_wsframes import frame

CA_BUNDLE = "WEBSOCKET_CLIENT_CA_BUNDLE"
TLS_RECORD = 16384  # the largest TLS plaintext record (RFC 8446 §5.1)
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- the certificate ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for IP 127.0.0.1 and its key (cert, key)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]) -> Path:
    """websocket-client trusts the test certificate (and, as always, checks it)."""
    monkeypatch.setenv(CA_BUNDLE, str(certificate[0]))
    return certificate[0]


# -- the servers ----------------------------------------------------------------------------


class TLSServer(RawServer):
    """:class:`RawServer` over TLS: ``send_raw`` writes through the TLS layer, so one write
    of 300 KB leaves as about twenty TLS records."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self.context = context

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/ws/2"

    def start(self) -> None:
        self._server = serve(
            self._handle,
            "127.0.0.1",
            0,
            ssl=self.context,
            compression=None,
            ping_interval=None,
            close_timeout=1,
        )
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()


class HandWrittenServer:
    """TLS and the WebSocket opening handshake on plain ``ssl`` sockets, for what the
    `websockets` library decides by itself: the response to the handshake goes out in one
    write with :data:`WELCOME` (one TLS record, as a proxy that coalesces writes would send
    it) when ``coalesce``, else in a write of its own; then only what a test writes."""

    def __init__(self, context: ssl.SSLContext, *, coalesce: bool) -> None:
        self.context = context
        self.coalesce = coalesce
        self.conns: list[ssl.SSLSocket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # how often accept looks at the stop flag
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/ws/2"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._listener.close()
        for conn in self.conns:
            conn.close()

    def conn(self, index: int) -> ssl.SSLSocket:
        wait_until(lambda: len(self.conns) > index, 20, f"client connection {index}")
        return self.conns[index]

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(20)
            try:
                tls = self.context.wrap_socket(raw, server_side=True)
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = tls.recv(4096)
                    if not chunk:
                        raise ConnectionError("the client left during the handshake")
                    request += chunk
                response = self._response(request)
                if self.coalesce:
                    tls.sendall(response + frame(WELCOME.encode()))
                else:
                    tls.sendall(response)
                    tls.sendall(frame(WELCOME.encode()))
            except OSError:
                raw.close()
                continue
            self.conns.append(tls)

    @staticmethod
    def _response(request: bytes) -> bytes:
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in request.split(b"\r\n")[1:])
        }
        accept = base64.b64encode(hashlib.sha1(headers[b"sec-websocket-key"] + WS_GUID).digest())
        return (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )


@pytest.fixture
def tls_server(server_context: ssl.SSLContext) -> Iterator[TLSServer]:
    raw = TLSServer(server_context)
    raw.start()
    yield raw
    raw.stop()


def _stop(running: Session) -> None:
    running.stopping.set()
    running.conn.join(20)
    assert not running.conn.is_alive()


@pytest.fixture
def tls_session(tls_server: TLSServer, trusted: Path) -> Iterator[Session]:
    """A connected wss session that has read the server's welcome message."""
    running = Session(tls_server)
    running.conn.start()
    wait_until(lambda: WELCOME.encode() in running.core.fed, 20, "the welcome message")
    yield running
    _stop(running)


@pytest.fixture
def hand_written(
    server_context: ssl.SSLContext, trusted: Path
) -> Iterator[Callable[..., tuple[HandWrittenServer, Session]]]:
    """Start a :class:`HandWrittenServer` and a session against it; both end at teardown."""
    started: list[tuple[HandWrittenServer, Session]] = []

    def start(*, coalesce: bool) -> tuple[HandWrittenServer, Session]:
        server = HandWrittenServer(server_context, coalesce=coalesce)
        server.start()
        running = Session(server)  # type: ignore[arg-type]
        started.append((server, running))
        running.conn.start()
        return server, running

    yield start
    for server, running in started:
        _stop(running)
        server.stop()


# -- messages -------------------------------------------------------------------------------

BIG_SIZES = [20_000, 300_000, 65_535, 16_379, 150_000, 70_001, 250_000, 32_768, 100_000]


def message(index: int, size: int) -> bytes:
    """``[index,"…"]`` of ``size`` bytes in all; the filler differs for every index."""
    head = f'[{index},"'.encode()
    filler = hashlib.shake_128(str(index).encode()).hexdigest(max(0, size - len(head) - 2))
    return head + filler.encode() + b'"]'


def bursts(count: int) -> list[list[bytes]]:
    """``count`` bursts of 20-60 small messages (10-600 bytes), each with one or two of
    :data:`BIG_SIZES` somewhere among them (a big one ends every third burst)."""
    out: list[list[bytes]] = []
    index = 0
    big = iter(BIG_SIZES * count)
    for number in range(count):
        sizes = [10 + (number * 37 + k * 101) % 590 for k in range(20 + number * 7 % 40)]
        sizes.insert(len(sizes) // 3, next(big))
        if number % 2:
            sizes.insert(2 * len(sizes) // 3, next(big))
        if number % 3 == 0:
            sizes.append(next(big))
        burst = []
        for size in sizes:
            burst.append(message(index, size))
            index += 1
        out.append(burst)
    return out


# -- the TLS session itself -----------------------------------------------------------------


def test_the_session_runs_over_verified_tls(tls_session: Session) -> None:
    """The connection's socket is an SSLSocket that checked the certificate and host name."""
    sock = tls_session.conn._sock
    assert isinstance(sock, ssl.SSLSocket) and tls_session.conn._tls
    assert sock.context.verify_mode is ssl.CERT_REQUIRED and sock.context.check_hostname
    assert ("IP Address", "127.0.0.1") in sock.getpeercert()["subjectAltName"]
    assert tls_session.core.fed == [WELCOME.encode()] and tls_session.core.connects == 1


def test_an_untrusted_certificate_is_refused(
    tls_server: TLSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the CA bundle the same server is refused (verification is on): connect
    failures are reported and retried, and no session ever starts."""
    monkeypatch.delenv(CA_BUNDLE, raising=False)
    running = Session(tls_server)
    running.conn.start()
    try:
        failed = wait_until(
            lambda: [f["reason"] for kind, f in running.reports if kind == "connect_failed"],
            20,
            "a failed connect",
        )
        assert "CERTIFICATE_VERIFY_FAILED" in failed[0]
        assert running.core.connects == 0 and running.conn.sessions == 0
    finally:
        _stop(running)


# -- reading --------------------------------------------------------------------------------


@pytest.mark.parametrize("recv_size", [None, 1000], ids=["recv-256KiB", "recv-1000B"])
def test_bursts_of_mixed_sizes_reach_the_core_whole_and_in_order(
    tls_server: TLSServer,
    tls_session: Session,
    monkeypatch: pytest.MonkeyPatch,
    recv_size: int | None,
) -> None:
    """Eight bursts of small messages among messages of 16-300 KB (up to 19 TLS records
    each), written in one write per burst or one per message: every message is fed whole
    and in order, each burst before the next one is written, in one session.

    With the production read size (256 KiB) each read returns one TLS record. With 1000
    bytes a read leaves most of a record decrypted inside the SSL object, where the selector
    cannot see it: only the ``sock.pending()`` loop of ``on_readable`` reads it, and without
    that loop a burst's last record stays there and the wait for it times out."""
    if recv_size is not None:
        monkeypatch.setattr(connection, "RECV_SIZE", recv_size)
    ws = tls_server.conn(0)
    expected: list[bytes] = []
    for number, burst in enumerate(bursts(8)):
        if number % 2:
            for payload in burst:  # websockets' encoder, a write per message
                ws.send(payload.decode())
        else:
            tls_server.send_raw(0, b"".join(frame(payload) for payload in burst))
        expected += burst
        total = len(expected)
        wait_until(
            lambda total=total: len(tls_session.fed_after_welcome()) >= total,
            60,
            f"burst {number}: {total} messages fed in all",
        )
        assert tls_session.fed_after_welcome() == expected
    assert sum(len(payload) for payload in expected) > 100 * TLS_RECORD
    assert tls_session.conn.msgs == len(expected) + 1
    assert tls_session.core.lost == [] and tls_session.conn.sessions == 1


def test_ping_over_tls_is_answered_with_a_pong(tls_server: TLSServer, tls_session: Session) -> None:
    """A PING from websockets gets its PONG; so does one written raw between two messages of
    200 KB in the same write (the PING sits inside a TLS record, mid-burst)."""
    pong = tls_server.conn(0).ping(b"over-tls")
    wait_until(pong.is_set, 20, "websockets to see the pong")
    assert tls_server.got(0, int(Opcode.PONG), b"over-tls")
    first, second = message(1, 200_000), message(2, 200_001)
    tls_server.send_raw(0, frame(first) + frame(b"mid-burst", PING) + frame(second))
    wait_until(lambda: tls_server.got(0, int(Opcode.PONG), b"mid-burst"), 20, "the pong mid-burst")
    wait_until(lambda: len(tls_session.fed_after_welcome()) == 2, 20, "both messages")
    assert tls_session.fed_after_welcome() == [first, second]
    sync(tls_server, 0, b"after")  # websockets' own ping once more, after the burst
    assert tls_session.core.lost == [] and tls_session.conn.sessions == 1


# -- the end of a session ---------------------------------------------------------------------


def test_close_frame_over_tls_ends_the_session_and_the_connection_reconnects(
    tls_server: TLSServer, tls_session: Session
) -> None:
    """websockets closes (1001) after a large message: the message is fed, the session ends
    with ConnectionLost naming the server's close, the Close is echoed, a new TLS session
    starts and reads its welcome."""
    ws = tls_server.conn(0)
    big = message(7, 120_000)
    ws.send(big.decode())
    ws.close(1001, "going away")
    reason = tls_session.lost()
    assert reason.startswith("server closed the connection (") and "1001" in reason
    assert tls_session.fed_after_welcome() == [big]
    assert ("disconnected", {"connection": "test/1", "reason": reason}) in tls_session.reports
    wait_until(lambda: ws.protocol.state is State.CLOSED, 20, "the server to see the end")
    assert any(opcode == CLOSE for opcode, _ in tls_server.received[0])
    tls_server.conn(1)
    wait_until(lambda: tls_session.conn.sessions == 2, 20, "reconnect")
    wait_until(lambda: tls_session.core.fed.count(WELCOME.encode()) == 2, 20, "second welcome")
    assert tls_session.core.connects == 2 and isinstance(tls_session.conn._sock, ssl.SSLSocket)


def _close_notify(tls: ssl.SSLSocket) -> None:
    """Send TLS close_notify, then FIN (not waiting for the client's close_notify)."""
    tls.setblocking(False)
    with suppress(ssl.SSLError, OSError):
        tls.unwrap()  # writes close_notify; reading the answer would block
    tls.close()


def _drop(tls: ssl.SSLSocket) -> None:
    """FIN with no close_notify: the TLS stream just stops (a proxy or a peer that died)."""
    socket.socket.shutdown(tls, socket.SHUT_RDWR)
    tls.close()


@pytest.mark.parametrize("end", [_close_notify, _drop], ids=["close_notify", "no-close_notify"])
def test_the_end_of_the_tls_transport_ends_the_session_and_it_reconnects(
    hand_written: Callable[..., tuple[HandWrittenServer, Session]],
    end: Callable[[ssl.SSLSocket], None],
) -> None:
    """The server ends the TLS connection without a WebSocket Close, after a message: the
    message is fed, the session ends with a ConnectionLost reason, a new session starts."""
    server, running = hand_written(coalesce=False)
    wait_until(lambda: WELCOME.encode() in running.core.fed, 20, "the welcome message")
    tls = server.conn(0)
    tls.sendall(frame(message(1, 40_000)))
    wait_until(lambda: running.fed_after_welcome() == [message(1, 40_000)], 20, "the message")
    end(tls)
    assert running.lost() == "the server closed the TCP connection"
    assert ("disconnected", {"connection": "test/1", "reason": running.lost()}) in running.reports
    server.conn(1)
    wait_until(lambda: running.conn.sessions == 2, 20, "reconnect")
    wait_until(lambda: running.core.fed.count(WELCOME.encode()) == 2, 20, "second welcome")


# -- the opening handshake --------------------------------------------------------------------


@pytest.mark.parametrize(
    "coalesce",
    [
        pytest.param(False, id="own-record"),
        pytest.param(True, id="same-record-as-the-101"),
    ],
)
def test_first_message_right_after_the_handshake_is_read(
    hand_written: Callable[..., tuple[HandWrittenServer, Session]], coalesce: bool
) -> None:
    """The welcome message, written right after the 101 response, is fed while the server
    writes nothing more: in a TLS record of its own, or in the same record as the response
    (a server or TLS-terminating proxy that coalesces the two writes)."""
    server, running = hand_written(coalesce=coalesce)
    server.conn(0)
    wait_until(lambda: running.core.connects == 1, 20, "the session to start")
    wait_until(lambda: WELCOME.encode() in running.core.fed, 10, "the welcome message")
    assert running.core.fed == [WELCOME.encode()] and running.core.lost == []
