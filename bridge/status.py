"""``bfx-bridge status``: every group's health key, as a table or JSON."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson

from bridge.health import health_key
from bridge.publisher import connect_redis

__all__ = ["print_status", "read_status"]

COLUMNS = (
    ("group", "GROUP"), ("status", "STATUS"), ("age", "AGE"), ("connections", "CONN"),
    ("subs", "SUBSCRIBED"), ("msg_rate", "MSG/S"), ("reconnects", "RECONN"),
    ("errors", "ERRORS"), ("buffered", "BUFFERED"), ("dropped", "DROPPED"),
    ("accounts", "ACCOUNTS"),
)  # fmt: skip


def read_status(url: str, prefix: str, groups: Sequence[str]) -> list[dict[str, Any]]:
    """One row per group: its health fields, key age and TTL, and per-stream detail."""
    client = connect_redis(url, socket_timeout=3)
    pipe = client.pipeline(transaction=False)
    for group in groups:
        key = health_key(prefix, group)
        pipe.hgetall(key)
        pipe.pttl(key)
        pipe.hgetall(f"{key}:streams")
    replies: list[Any] = pipe.execute()
    now_ms = time.time() * 1000
    rows = []
    for index, group in enumerate(groups):
        raw, ttl, streams = replies[index * 3 : index * 3 + 3]
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        row: dict[str, Any] = {"group": group, **fields}
        if not fields:
            row["status"] = "absent"
        row["ttl_ms"] = ttl
        row["age"] = round((now_ms - int(fields["updated"])) / 1000, 1) if fields else None
        interval = float(fields.get("interval", 2.0)) if fields else 0.0
        fresh = row["age"] is not None and row["age"] <= 3 * interval
        row["ok"] = fields.get("status") == "ok" and ttl is not None and ttl > 0 and fresh
        row["streams"] = {k.decode(): orjson.loads(v) for k, v in streams.items()}
        rows.append(row)
    return rows


def _cell(row: dict[str, Any], column: str) -> str:
    if row.get("status") == "absent" and column not in ("group", "status"):
        return "-"
    if column == "subs":
        return f"{row.get('subscribed', '?')}/{row.get('expected', '?')}"
    if column == "age":
        return f"{row['age']}s"
    if column == "errors":
        keys = ("checksum_errors", "malformed", "subscribe_errors", "auth_failures")
        return str(sum(int(row.get(k, 0)) for k in keys))
    return str(row.get(column, ""))


def print_status(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    """Print the rows as an aligned table, or as JSON (with per-stream detail)."""
    if as_json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = [[title for _, title in COLUMNS]]
    table += [[_cell(row, column) for column, _ in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    absent = [r["group"] for r in rows if r.get("status") == "absent"]
    if absent:
        print(f"\nno live health key for: {', '.join(absent)} (worker not running, or stopped "
              "more than three health intervals ago)")  # fmt: skip
