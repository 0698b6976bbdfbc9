"""The raw RESP writer against real redis-servers: databases, passwords, error replies."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from bridge.resp import RespWriter, is_transient
from bridge.streams import Entry, decode_fields
from tests.conftest import REDIS_URL, RedisServer


def entry(key: str, n: int) -> Entry:
    return Entry(
        key, {"kind": "update", "epoch": "e.1", "seq": n, "ts": 1, "data": b"\x81\xa1a\x01"}
    )


def test_writes_every_entry_in_order_with_one_reply_each(r: redis.Redis, prefix: str) -> None:
    """A chunk becomes one XADD per entry, stored in order; each reply is the entry's id."""
    writer = RespWriter(REDIS_URL)
    replies = writer.write([entry(f"{prefix}:a", i) for i in range(5)], maxlen=1000)
    rows = r.xrange(f"{prefix}:a")
    assert replies == [entry_id for entry_id, _ in rows]
    assert [decode_fields(fields)["seq"] for _, fields in rows] == [0, 1, 2, 3, 4]
    assert decode_fields(rows[0][1]) == {"kind": "update", "epoch": "e.1", "seq": 0, "ts": 1,
                                         "data": {"a": 1}}  # fmt: skip
    writer.close()


def test_error_reply_is_a_value_and_the_rest_of_the_chunk_lands(
    r: redis.Redis, prefix: str
) -> None:
    """XADD on a key of the wrong type gives an error reply in its place, not an exception."""
    r.set(f"{prefix}:string", "x")
    writer = RespWriter(REDIS_URL)
    replies = writer.write([entry(f"{prefix}:ok", 1), entry(f"{prefix}:string", 2),
                            entry(f"{prefix}:ok", 3)], maxlen=1000)  # fmt: skip
    assert isinstance(replies[1], Exception) and "WRONGTYPE" in str(replies[1])
    assert not is_transient(replies[1])
    assert r.xlen(f"{prefix}:ok") == 2
    writer.close()


def test_password_and_database_come_from_the_url(tmp_path: Path) -> None:
    """redis://:PASSWORD@host:port/3 authenticates and selects database 3; a wrong password
    is refused with a clear error (a connection error, so the writer retries later)."""
    server = RedisServer(tmp_path, "--requirepass", "s3cret")
    server.start()
    try:
        url = f"redis://:s3cret@127.0.0.1:{server.port}/3"
        RespWriter(url).write([entry("k", 1)], maxlen=10)
        assert redis.Redis(port=server.port, password="s3cret", db=3).xlen("k") == 1
        assert redis.Redis(port=server.port, password="s3cret", db=0).xlen("k") == 0
        with pytest.raises(ConnectionRefusedError, match="AUTH"):
            RespWriter(f"redis://:wrong@127.0.0.1:{server.port}/0").write([entry("k", 2)], 10)
    finally:
        server.stop()


def test_unreachable_server_raises_oserror() -> None:
    """Nothing listening: OSError (which the publisher turns into RedisUnavailable)."""
    writer = RespWriter("redis://127.0.0.1:1/0", timeout=1)
    with pytest.raises(OSError):
        writer.write([entry("k", 1)], maxlen=10)


def test_transient_errors_are_recognised() -> None:
    """LOADING, READONLY and BUSY replies mean "not now"; others mean "never"."""
    assert is_transient(redis.exceptions.ResponseError("LOADING Redis is loading"))
    assert is_transient(redis.exceptions.ResponseError("READONLY You can't write"))
    assert not is_transient(redis.exceptions.ResponseError("WRONGTYPE Operation"))
    assert not is_transient(b"1-0")
