"""Tests of bridge.log: credentials in URLs are redacted (SPEC §7)."""

from __future__ import annotations

import logging

import pytest

from bridge import log as log_module
from bridge.log import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://user:pass@host:6379/0", "redis://user:***@host:6379/0"),
        ("rediss://:s3cr3t@redis.example:6380/2", "rediss://:***@redis.example:6380/2"),
        ("REDIS://admin:hunter2@10.0.0.1", "REDIS://admin:***@10.0.0.1"),
        ("redis://token@host", "redis://***@host"),
        (
            "primary redis://a:one@h1 replica rediss://:two@h2/1",
            "primary redis://a:***@h1 replica rediss://:***@h2/1",
        ),
        ("connect to redis://u:p%40ss@host failed", "connect to redis://u:***@host failed"),
        # redis-py takes everything up to the last "@" as the password (urlparse rpartition).
        ("redis://:p@ss@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:p@ss@host", "redis://user:***@host"),
        # redis-py also reads passwords from the query string
        (
            "redis://127.0.0.1:6379/0?password=secret&db=1",
            "redis://127.0.0.1:6379/0?password=***&db=1",
        ),
        ("rediss://h/0?ssl_password=keypass", "rediss://h/0?ssl_password=***"),
    ],
)
def test_redact_hides_passwords(text: str, expected: str) -> None:
    """The password part of every URL is replaced by ***."""
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://redis.example:6380/2",
        "wss://api-pub.bitfinex.com/ws/2",
        "embedded",
        "mail me at ops@example.com",
        "",
    ],
)
def test_redact_leaves_urls_without_credentials_unchanged(text: str) -> None:
    """Text without URL credentials is returned as is."""
    assert redact(text) == text


def test_secret_never_survives_redaction() -> None:
    """The password text does not appear anywhere in the redacted output."""
    for url in ("redis://user:topsecret@host", "rediss://:topsecret@host:1/0"):
        assert "topsecret" not in redact(f"Redis {url} unavailable")


def test_log_lines_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    """setup() installs a formatter that redacts every line written to stderr."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        log_module.setup("INFO", name="g1")
        logging.getLogger("bridge.test").warning("connecting to %s", "redis://u:pw123@h:1/0")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "redis://u:***@h:1/0" in err
    assert "pw123" not in err
    assert "[g1] bridge.test: connecting to" in err
