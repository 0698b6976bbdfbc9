"""The writer's hot path to Redis: XADDs packed as raw RESP, replies parsed by hiredis.

redis-py's pipeline costs ~12–15 µs of Python per XADD; joining commands already encoded as
RESP (by :class:`~bridge.streams.Stream` as it makes each entry, see
:func:`~bridge.streams.xadd_command`) into one buffer, sending it with one ``sendall`` and
parsing the replies with ``hiredis.Reader`` costs a small fraction of that (PERFORMANCE.md,
design point 3).
:class:`RespWriter` does exactly that on a socket of its own (TCP, TLS for ``rediss://`` with
certificate verification on, or a Unix socket), authenticating and selecting the database
from the URL. Every reply is returned to the caller to check; an error reply is a
``hiredis.ReplyError`` value, never an exception. Socket failures raise ``OSError``.

:class:`PipelineWriter` is the same interface over redis-py (for fakeredis in unit tests).
"""

from __future__ import annotations

import socket
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import hiredis
import redis
from redis.connection import parse_url

from bridge.streams import Entry, xadd_command

__all__ = ["PipelineWriter", "RespWriter", "Writer", "is_transient"]

# Error replies after which the same write may succeed later (the server is not ready).
# Out of memory, unable to persist (MISCONF) or not yet authenticated are "not now" too: the
# entries wait in the buffer rather than being dropped and resubscribed in a loop.
TRANSIENT_ERRORS = (
    "LOADING",
    "READONLY",
    "BUSY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "OOM",
    "MISCONF",
    "NOAUTH",
    "NOREPLICAS",
)


class Writer(Protocol):
    """Sends chunks of entries and, later, reads one reply per entry (errors as values)."""

    def send(self, chunk: Sequence[Entry], maxlen: int) -> None: ...

    def collect(self, count: int) -> list[Any]: ...

    def fence(self) -> None:
        """Make sure nothing sent before a failure can still land (before a read-back)."""

    def close(self) -> None: ...


def is_transient(reply: Any) -> bool:
    """True for an error reply that says "not now" rather than "never"."""
    return isinstance(reply, Exception) and str(reply).startswith(TRANSIENT_ERRORS)


class RespWriter:
    """XADD pipelines over a raw socket (see the module docstring)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader = hiredis.Reader()
        self._client_id: int | None = None  # CLIENT ID of the current/last connection

    def write(self, chunk: Sequence[Entry], maxlen: int) -> list[Any]:
        """:meth:`send` then :meth:`collect`: one round trip for the whole chunk."""
        self.send(chunk, maxlen)
        return self.collect(len(chunk))

    def send(self, chunk: Sequence[Entry], maxlen: int) -> None:
        """Send every XADD of ``chunk`` in one buffer; the replies wait in the socket."""
        if self._sock is None:
            self._connect()
        buf = [
            entry.command or xadd_command(entry.stream, entry.maxlen or maxlen, entry.fields)
            for entry in chunk
        ]
        try:
            self._sock.sendall(b"".join(buf))  # type: ignore[union-attr]
        except OSError:
            self.close()
            raise

    def collect(self, count: int) -> list[Any]:
        """Read the next ``count`` replies (of what was sent, in order)."""
        if self._sock is None:
            raise ConnectionResetError("nothing was sent on this connection")
        try:
            return self._read(count)
        except OSError:
            self.close()
            raise

    def command(self, *args: Any) -> Any:
        """One command, one reply (for set-up and the retry's read-back)."""
        if self._sock is None:
            self._connect()
        try:
            (reply,) = self._roundtrip(hiredis.pack_command(args), 1)
        except OSError:
            self.close()
            raise
        return reply

    def fence(self) -> None:
        """Connect afresh and kill the previous connection on the server: commands it sent
        that Redis has not run yet are then never run (a timeout does not mean "not sent")."""
        previous = self._client_id
        self.close()
        self._connect()
        if previous is not None and previous != self._client_id:
            self.command(b"CLIENT", b"KILL", b"ID", previous)  # "No such client" is fine

    def close(self) -> None:
        """Drop the socket; the next write reconnects."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._reader = hiredis.Reader()

    def _roundtrip(self, data: bytes, count: int) -> list[Any]:
        assert self._sock is not None
        self._sock.sendall(data)
        return self._read(count)

    def _read(self, count: int) -> list[Any]:
        sock = self._sock
        assert sock is not None
        replies: list[Any] = []
        reader = self._reader
        while len(replies) < count:
            reply = reader.gets()
            if reply is False:
                block = sock.recv(65536)
                if not block:
                    raise ConnectionResetError("Redis closed the connection")
                reader.feed(block)
                continue
            replies.append(reply)
        return replies

    def _connect(self) -> None:
        opts = self.options
        if "path" in opts:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            sock.connect(opts["path"])
        else:
            host, port = opts.get("host", "127.0.0.1"), opts.get("port", 6379)
            sock = socket.create_connection((host, port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if opts.get("connection_class") is redis.connection.SSLConnection:
                sock = self._tls(sock, host)
        self._sock, self._reader = sock, hiredis.Reader()
        try:
            if opts.get("password") is not None:
                auth = [opts["username"]] if opts.get("username") else []
                self._check(self.command(b"AUTH", *auth, opts["password"]), "AUTH")
            if opts.get("db"):
                self._check(self.command(b"SELECT", opts["db"]), "SELECT")
            client_id = self.command(b"CLIENT", b"ID")  # an error if CLIENT is renamed
            self._client_id = client_id if isinstance(client_id, int) else None
        except Exception:
            self.close()
            raise

    def _tls(self, sock: socket.socket, host: str) -> socket.socket:
        """TLS with verification on; a private CA and a client certificate come from the
        URL's ``ssl_ca_certs``, ``ssl_certfile`` and ``ssl_keyfile`` as for redis-py."""
        opts = self.options
        context = ssl.create_default_context(cafile=opts.get("ssl_ca_certs"))
        if opts.get("ssl_certfile"):
            context.load_cert_chain(opts["ssl_certfile"], opts.get("ssl_keyfile"))
        if opts.get("ssl_check_hostname") is False:
            context.check_hostname = False  # an explicit choice in the URL; CA still checked
        return context.wrap_socket(sock, server_hostname=host)

    def _check(self, reply: Any, what: str) -> None:
        if isinstance(reply, Exception):
            self.close()
            raise ConnectionRefusedError(f"Redis refused {what}: {reply}")


class PipelineWriter:
    """The :class:`Writer` interface over a redis-py client (non-transactional pipeline)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._sent: deque[tuple[Sequence[Entry], int]] = deque()

    def send(self, chunk: Sequence[Entry], maxlen: int) -> None:
        """Remember the chunk: redis-py sends a pipeline when its replies are wanted."""
        self._sent.append((chunk, maxlen))

    def collect(self, count: int) -> list[Any]:
        """Run the oldest remembered chunk as one pipeline; its replies, errors as values."""
        chunk, maxlen = self._sent.popleft()
        assert len(chunk) == count
        return self.write(chunk, maxlen)

    def write(self, chunk: Sequence[Entry], maxlen: int) -> list[Any]:
        """One pipeline of XADDs; replies with errors as values."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for entry in chunk:
                pipe.xadd(entry.stream, entry.fields, maxlen=entry.maxlen or maxlen,  # type: ignore[arg-type]
                          approximate=True)  # fmt: skip
            replies: list[Any] = pipe.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ConnectionError(str(exc)) from exc
        return replies

    def fence(self) -> None:
        """Nothing to fence: a redis-py pipeline is sent only when its replies are read."""

    def close(self) -> None:
        """Forget what was not run; the client's pool reconnects by itself."""
        self._sent.clear()
