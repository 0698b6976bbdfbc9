"""Logging set-up for operators, and credential redaction.

Lines use websockets' prefixes: ``>`` sent, ``<`` received, ``=`` state, ``%`` counters,
``-`` retry, ``!`` problem. :func:`redact` hides the password of every URL it finds; it is
applied to every URL that reaches a log line, a status output or an event.
"""

from __future__ import annotations

import logging
import re
import sys

__all__ = ["redact", "setup"]

_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/\s]+)@", re.I)


_QUERY_SECRET = re.compile(r"(?P<name>[?&](?:ssl_)?password=)[^&\s#]*", re.I)


def redact(text: str) -> str:
    """Replace credentials in URLs: ``redis://u:secret@h`` → ``redis://u:***@h``, and
    ``?password=secret`` → ``?password=***``."""

    def hide(match: re.Match[str]) -> str:
        user, sep, _ = match.group("userinfo").partition(":")
        masked = f"{user}:***" if sep else "***"
        return f"{match.group('scheme')}{masked}@"

    return _QUERY_SECRET.sub(r"\g<name>***", _CREDENTIALS.sub(hide, text))


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup(level: str = "INFO", name: str = "") -> None:
    """Log to stderr, one line per event, credentials redacted."""
    handler = logging.StreamHandler(sys.stderr)
    tag = f" [{name}]" if name else ""
    handler.setFormatter(
        _RedactingFormatter(f"%(asctime)s %(levelname)s{tag} %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
