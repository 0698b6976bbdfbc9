"""The emulator's HTTP control API: the faults of :mod:`bridge.emulator.faults`, by hand.

Started with the emulator when it is given ``control_port``; it listens on 127.0.0.1 only.
Parameters go in the query string; every reply is a JSON object with ``"ok"``. A POST
that injects faults also returns their fault-log entries under ``"faults"``. Bad input
gets 400 (404 for an unknown path, 405 for the wrong method) and ``"error"`` says why.

====================================================  ======================================
request                                               effect
====================================================  ======================================
``GET /connections``                                  conn ids, flags, channels (chanId,
                                                      channel, symbol, key, prec, freq,
                                                      len, stream, silenced, …)
``GET /faults``                                       the fault log
``POST /drop[?conn=N]``                               TCP reset of one connection or all
``POST /silence?chan=N|conn=N|stream=S[&on=1|0]``     silence a channel or a connection
``POST /checksum?chan=N|stream=S[&count=K]``          the next K ``cs`` frames wrong
``POST /malformed?kind=K[&conn=N]``                   one malformed frame (kinds: faults)
``POST /seqgap[?conn=N][&count=K]``                   a SEQ_ALL gap of K numbers
``POST /info?code=20051``                             an info event on every connection
``POST /maintenance?on=1|0``                          20060 + silence, or 20061 + data
``POST /reject?status=429[&count=K]``                 refuse the next K handshakes
``POST /pause``, ``POST /resume``                     stop / restart market data
====================================================  ======================================

``stream=`` takes a stream name or its first tokens (``book:tBTCUSD:P0``, see
:meth:`~bridge.emulator.faults.Faults.channel_ids`) and acts on every matching channel.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from bridge.emulator.faults import FaultError

if TYPE_CHECKING:
    from bridge.emulator.server import Emulator

__all__ = ["ControlServer"]

logger = logging.getLogger(__name__)

_MAX_BODY = 65536
_TRUE = ("1", "true", "on", "yes")
_FALSE = ("0", "false", "off", "no")


class _Query:
    """The query string of one request, checked against the parameters its route takes."""

    def __init__(self, path: str, text: str, allowed: tuple[str, ...]) -> None:
        self._values: dict[str, str] = {}
        for name, value in parse_qsl(text, keep_blank_values=True):
            if name not in allowed:
                takes = ", ".join(allowed) or "no parameters"
                raise FaultError(f"{path} takes no parameter {name!r}; it takes: {takes}")
            if name in self._values:
                raise FaultError(f"parameter {name!r} given twice")
            self._values[name] = value

    def has(self, name: str) -> bool:
        return name in self._values

    def text(self, name: str) -> str:
        if name not in self._values:
            raise FaultError(f"parameter {name!r} is required")
        return self._values[name]

    def integer(self, name: str, default: int | None = None) -> int:
        if name not in self._values and default is not None:
            return default
        value = self.text(name)
        try:
            return int(value)
        except ValueError:
            raise FaultError(f"parameter {name!r} must be an integer, not {value!r}") from None

    def optional_integer(self, name: str) -> int | None:
        return self.integer(name) if self.has(name) else None

    def flag(self, name: str, default: bool) -> bool:
        value = self._values.get(name, "1" if default else "0").lower()
        if value not in _TRUE + _FALSE:
            raise FaultError(f"parameter {name!r} must be 1 or 0, not {value!r}")
        return value in _TRUE

    def one_of(self, *names: str) -> str:
        """The single parameter of ``names`` that was given."""
        given = [n for n in names if self.has(n)]
        if len(given) != 1:
            raise FaultError(f"give exactly one of {', '.join(names)} (got {len(given)})")
        return given[0]


def _channels(emu: Emulator, query: _Query) -> list[int]:
    """The chanIds a request names with ``chan=N`` or ``stream=NAME``."""
    if query.one_of("chan", "stream") == "chan":
        return [query.integer("chan")]
    stream = query.text("stream")
    found = emu.channel_ids(stream)
    if not found:
        raise FaultError(f"no subscribed channel matches stream {stream!r}; see GET /connections")
    return found


def _silence(emu: Emulator, query: _Query) -> dict[str, Any]:
    on = query.flag("on", True)
    if query.one_of("chan", "conn", "stream") == "conn":
        emu.silence_connection(query.integer("conn"), on)
        return {}
    for chan_id in _channels(emu, query):
        emu.silence_channel(chan_id, on)
    return {}


def _checksum(emu: Emulator, query: _Query) -> dict[str, Any]:
    count = query.integer("count", 1)
    for chan_id in _channels(emu, query):
        emu.corrupt_checksum(chan_id, count)
    return {}


def _connections(emu: Emulator, query: _Query) -> dict[str, Any]:
    connections = [c.describe() for c in emu.connections()]
    return {"connections": connections, "paused": emu.paused, "maintenance": emu.maintenance}


def _faults(emu: Emulator, query: _Query) -> dict[str, Any]:
    return {"faults": emu.fault_log()}


def _drop(emu: Emulator, query: _Query) -> dict[str, Any]:
    return {"dropped": emu.drop(query.optional_integer("conn"))}


def _malformed(emu: Emulator, query: _Query) -> dict[str, Any]:
    kind, conn = query.text("kind"), query.optional_integer("conn")
    return {"connections": emu.send_malformed(kind, conn)}


def _seqgap(emu: Emulator, query: _Query) -> dict[str, Any]:
    conn, count = query.optional_integer("conn"), query.integer("count", 1)
    return {"connections": emu.skip_seq(conn, count)}


def _info(emu: Emulator, query: _Query) -> dict[str, Any]:
    return {"connections": emu.send_info(query.integer("code"))}


def _maintenance(emu: Emulator, query: _Query) -> dict[str, Any]:
    on = query.flag("on", True)
    return {"connections": emu.maintenance_start() if on else emu.maintenance_end()}


def _reject(emu: Emulator, query: _Query) -> dict[str, Any]:
    emu.reject_handshakes(query.integer("status"), query.integer("count", 1))
    return {}


def _pause(emu: Emulator, query: _Query) -> dict[str, Any]:
    emu.pause()
    return {}


def _resume(emu: Emulator, query: _Query) -> dict[str, Any]:
    emu.resume()
    return {}


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    params: tuple[str, ...]
    action: Callable[[Emulator, _Query], dict[str, Any]]


_ROUTES: dict[str, _Route] = {
    "/connections": _Route("GET", (), _connections),
    "/faults": _Route("GET", (), _faults),
    "/drop": _Route("POST", ("conn",), _drop),
    "/silence": _Route("POST", ("chan", "conn", "stream", "on"), _silence),
    "/checksum": _Route("POST", ("chan", "stream", "count"), _checksum),
    "/malformed": _Route("POST", ("kind", "conn"), _malformed),
    "/seqgap": _Route("POST", ("conn", "count"), _seqgap),
    "/info": _Route("POST", ("code",), _info),
    "/maintenance": _Route("POST", ("on",), _maintenance),
    "/reject": _Route("POST", ("status", "count"), _reject),
    "/pause": _Route("POST", (), _pause),
    "/resume": _Route("POST", (), _resume),
}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, emulator: Emulator, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.emulator = emulator


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to :data:`_ROUTES`; answers JSON."""

    server: _HTTPServer
    server_version = "bfx-bridge-emulator-control"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = self.headers.get("Content-Length", "0")
        if length.isdigit():  # read the body: left unread, it could turn our close into a reset
            self.rfile.read(min(int(length), _MAX_BODY))
        url = urlsplit(self.path)
        route = _ROUTES.get(url.path.rstrip("/"))
        if route is None:
            paths = ", ".join(f"{r.method} {p}" for p, r in _ROUTES.items())
            self._reply(404, {"ok": False, "error": f"no endpoint {url.path}; there are {paths}"})
            return
        if route.method != method:
            error = f"{url.path} takes {route.method}, not {method}"
            self._reply(405, {"ok": False, "error": error}, allow=route.method)
            return
        emu = self.server.emulator
        try:
            query = _Query(url.path, url.query, route.params)
            with emu.capture_faults() as faults:
                body = route.action(emu, query)
        except FaultError as exc:
            self._reply(400, {"ok": False, "error": str(exc)})
            return
        except Exception as exc:  # a bug: say so rather than hang up
            logger.exception("! emulator control %s %s failed", method, self.path)
            self._reply(500, {"ok": False, "error": f"internal error: {exc!r}"})
            return
        if method == "POST":
            body["faults"] = faults
        self._reply(200, {"ok": True, **body})

    def _reply(self, status: int, body: dict[str, Any], allow: str | None = None) -> None:
        data = orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if allow is not None:
            self.send_header("Allow", allow)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("= emulator control " + format, *args)


class ControlServer:
    """The HTTP control API of one emulator; binds in the constructor.

    Args:
        emulator: the emulator whose faults it injects.
        port: TCP port on 127.0.0.1; 0 picks a free one (see :attr:`url`).
    """

    def __init__(self, emulator: Emulator, port: int) -> None:
        self._httpd = _HTTPServer(emulator, port)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        """Serve on a background thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.1,), name="emulator-control", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
