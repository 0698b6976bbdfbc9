"""The exception tree of bfx-bridge.

::

    BridgeError
    ├── ConfigError(path, key, problem, fix)       refused before connecting; exit 2
    ├── ProtocolError
    │   ├── RemoteProtocolError(reason, frame)     Bitfinex sent something malformed:
    │   │                                          counted and logged, never fatal
    │   └── LocalProtocolError                     we misused the core: a bug
    ├── SubscriptionError(code, msg, subscription) Bitfinex ``error`` event for a subscribe
    ├── ConnectionLost(reason)                     the socket is gone: reconnect
    │   └── HandshakeFailed(status)                the server refused the upgrade (429, 503…)
    ├── ChecksumMismatch(stream, expected, actual) the local book differs from the server's
    └── RedisUnavailable(cause)                    the publisher buffers and retries

Every message says what is wrong and what to do about it. Foreign exceptions
(websocket-client, redis-py, OSError) are translated at the I/O boundary with
``raise … from exc``; :func:`is_retryable` is the one place that decides what is retried.
"""

from __future__ import annotations

__all__ = [
    "EXIT_BOOT",
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "BridgeError",
    "ChecksumMismatch",
    "ConfigError",
    "ConnectionLost",
    "HandshakeFailed",
    "LocalProtocolError",
    "ProtocolError",
    "RedisUnavailable",
    "RemoteProtocolError",
    "SubscriptionError",
    "is_retryable",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_BOOT = 3


class BridgeError(Exception):
    """Root of every exception bfx-bridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration is refused; nothing has connected yet."""

    def __init__(self, path: str, key: str, problem: str, fix: str) -> None:
        self.path, self.key, self.problem, self.fix = path, key, problem, fix
        super().__init__(f"{path}: {key}: {problem}. Fix: {fix}")


class ProtocolError(BridgeError):
    """Base of protocol errors; see the two subclasses."""


class RemoteProtocolError(ProtocolError):
    """The server sent a frame we cannot use. Counted and logged, never fatal."""

    def __init__(self, reason: str, frame: str = "") -> None:
        self.reason, self.frame = reason, frame
        super().__init__(f"{reason}: {frame[:200]!r}")


class LocalProtocolError(ProtocolError):
    """The protocol core was misused by our own code: a bug, raised loudly."""


class SubscriptionError(BridgeError):
    """Bitfinex answered a subscribe with an ``error`` event."""

    def __init__(self, code: int, msg: str, subscription: str) -> None:
        self.code, self.msg, self.subscription = code, msg, subscription
        super().__init__(f"subscribe {subscription} refused: {code} {msg}")


class ConnectionLost(BridgeError):
    """The WebSocket connection is gone; the connection loop reconnects."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class HandshakeFailed(ConnectionLost):
    """The server refused the WebSocket upgrade with an HTTP status."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"handshake refused with HTTP {status}; backing off before retrying")


class ChecksumMismatch(BridgeError):
    """The local book's CRC32 differs from the server's ``cs`` value."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        self.stream, self.expected, self.actual = stream, expected, actual
        super().__init__(f"{stream}: checksum {actual} != server {expected}; resubscribing")


class RedisUnavailable(BridgeError):
    """Redis cannot be reached or refused a write; entries stay buffered."""

    def __init__(self, cause: str) -> None:
        self.cause = cause
        super().__init__(f"Redis unavailable ({cause}); entries are buffered and retried")


def is_retryable(exc: BaseException) -> bool:
    """Return True for failures that a retry with backoff can cure."""
    return isinstance(exc, ConnectionLost | RedisUnavailable | OSError)
