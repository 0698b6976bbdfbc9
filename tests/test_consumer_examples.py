"""The consumer examples of docs/streams.md, run as a user runs them, print what Redis holds.

Each example (``docs/examples/consumer.py``, ``docs/examples/js/consumer.mjs``) is a
subprocess reading a real redis-server. Its output lines are checked value by value against
the stream itself: every book line against the book rebuilt with
:func:`tests.feedcheck.rebuild_book` up to that entry, every trade line against the stream's
trade records, every reset against the stream's reset entry.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

from bridge.streams import Entry, EpochSource, Stream
from tests.conftest import REDIS_URL, ROOT, SCALE, wait_until, write_config
from tests.feedcheck import read_stream, rebuild_book

PY_CONSUMER = ROOT / "docs" / "examples" / "consumer.py"
JS_DIR = ROOT / "docs" / "examples" / "js"
JS_CONSUMER = JS_DIR / "consumer.mjs"
LANGUAGES = ("python", "js")

GROUP = """
[[groups]]
name = "docs"
symbols = ["tBTCUSD", "fUSD"]
channels = ["book", "book:R0", "trades"]
"""
BOOKS = ["book:tBTCUSD:P0", "book:fUSD:P0", "book:tBTCUSD:R0", "book:fUSD:R0"]
TRADES = ["trades:tBTCUSD", "trades:fUSD"]
AFTER_RESTART = {"book": 12, "trades": 5}  # entries each consumer reads from the new worker

_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the JS example's dependencies installed (npm ci) if absent."""
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    if node_bin is None or npm_bin is None:
        pytest.fail(
            "node and npm are needed to test docs/examples/js/consumer.mjs: install Node.js 20 "
            "or later (e.g. apt-get install nodejs npm)"
        )
    if not (JS_DIR / "node_modules" / "redis").is_dir():
        done = subprocess.run(
            [npm_bin, "ci", "--prefix", str(JS_DIR), "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return node_bin


class Consumer:
    """One example consumer subprocess; its stdout goes to a file read as it grows."""

    def __init__(self, cmd: list[str], out: Path) -> None:
        self.out = out
        self._file = out.open("wb")
        self.popen = subprocess.Popen(
            cmd, stdout=self._file, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines()

    def finish(self, timeout: float = 60.0) -> list[str]:
        """Wait for the exit (``--count`` reached); the output lines."""
        try:
            code = self.popen.wait(timeout * SCALE)
        except subprocess.TimeoutExpired:
            self.kill()
            output = self.out.read_text()
            raise AssertionError(f"{self.popen.args} did not exit:\n{output}") from None
        assert code == 0, f"{self.popen.args} exited {code}:\n{self.out.read_text()}"
        return self.lines()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)
        self._file.close()


@pytest.fixture
def consumers(tmp_path: Path, node: str) -> Iterator[Callable[[str, str, int], Consumer]]:
    """Start example consumers: ``start(language, stream_key, count)``; all reaped after."""
    started: list[Consumer] = []

    def start(language: str, key: str, count: int) -> Consumer:
        program = (
            [sys.executable, str(PY_CONSUMER)] if language == "python" else [node, str(JS_CONSUMER)]
        )
        out = tmp_path / f"{language}-{len(started)}.out"
        consumer = Consumer([*program, REDIS_URL, key, "--count", str(count)], out)
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        consumer.kill()


# -- what a line must say, derived from the stream ----------------------------------------------


def parse(line: str) -> dict[str, Any]:
    """``word key=value …`` → ``{"line": word, key: value}``; quoted values JSON-unquoted."""
    fields: dict[str, Any] = {"line": line.split(" ", 1)[0]}
    for name, value in _FIELD.findall(line):
        fields[name] = json.loads(value) if value[0] == '"' else value
    return fields


def top(book: dict[Any, dict[str, Any]], side: str, funding: bool) -> tuple[Any, Any, int]:
    """Best price (rate) of a side, the total |amount| at it, and the side's record count."""
    price = "rate" if funding else "price"
    recs = [r for r in book.values() if r["side"] == side]
    if not recs:
        return None, None, 0
    best = (max if side == "bid" else min)(r[price] for r in recs)
    return best, sum(abs(r["amount"]) for r in recs if r[price] == best), len(recs)


def reset_line(entry: dict[str, Any]) -> dict[str, Any]:
    return {"line": "reset", "epoch": entry["epoch"] or "-", "seq": str(entry["seq"]),
            "reason": entry["data"]["reason"]}  # fmt: skip


def expected_book(entries: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The lines a consumer prints for ``entries`` (starting with a snapshot) of a book."""
    raw, funding = key.endswith(":R0"), ":f" in key
    out: list[dict[str, Any]] = []
    epoch: list[dict[str, Any]] = []
    for entry in entries:
        if entry["kind"] == "reset":
            out.append(reset_line(entry))
            continue
        epoch = [entry] if entry["kind"] == "snapshot" else [*epoch, entry]
        book = rebuild_book(epoch, raw=raw, funding=funding)
        bid, bid_size, bids = top(book, "bid", funding)
        ask, ask_size, asks = top(book, "ask", funding)
        out.append({"line": "book", "epoch": entry["epoch"], "seq": str(entry["seq"]),
                    "bid": bid, "bid_size": bid_size, "ask": ask, "ask_size": ask_size,
                    "bids": str(bids), "asks": str(asks)})  # fmt: skip
    return out


def expected_trades(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines a consumer prints for ``entries`` of a trades stream (snapshot oldest first)."""
    out: list[dict[str, Any]] = []
    for entry in entries:
        if entry["kind"] == "reset":
            out.append(reset_line(entry))
            continue
        trades = entry["data"][::-1] if entry["kind"] == "snapshot" else [entry["data"]]
        for trade in trades:
            line = {"line": "trade", "epoch": entry["epoch"], "seq": str(entry["seq"])}
            line.update({k: v if isinstance(v, str) else float(v) for k, v in trade.items()})
            out.append(line)
    return out


def normalised(line: dict[str, Any]) -> dict[str, Any]:
    """A printed line with its numbers as floats (``-`` → None), to compare with the stream."""
    out: dict[str, Any] = {}
    for name, value in line.items():
        if name in ("bid", "bid_size", "ask", "ask_size"):
            out[name] = None if value == "-" else float(value)
        elif name in ("id", "mts", "amount", "price", "rate", "period"):
            out[name] = float(value)
        else:
            out[name] = value
    return out


def assert_lines_match(printed: list[str], expected: list[dict[str, Any]], who: str) -> None:
    """Every printed line equals its expected line; sizes (sums) to 1e-9 relative."""
    got = [normalised(parse(line)) for line in printed]
    assert [g["line"] for g in got] == [e["line"] for e in expected], (who, printed)
    for number, (g, e) in enumerate(zip(got, expected, strict=True)):
        for size in ("bid_size", "ask_size"):
            if e.get(size) is not None and g.get(size) is not None:
                assert math.isclose(g.pop(size), e.pop(size), rel_tol=1e-9), (who, number, g, e)
        assert g == e, (who, number, printed[number])


# -- tests ---------------------------------------------------------------------------------------


def test_consumers_follow_a_live_worker_across_a_restart(
    emulator: Any,
    r: redis.Redis,
    prefix: str,
    spawn: Any,
    consumers: Callable[[str, str, int], Consumer],
    tmp_path: Path,
) -> None:
    """Both examples print every book top and trade as the stream holds them, across resets."""
    # Given a worker's first run on books (P0, R0; trading, funding) and trades, then SIGTERM
    config = write_config(tmp_path / "bridge.toml", url=emulator.url, prefix=prefix, groups=GROUP)
    keys = [f"{prefix}:{name}" for name in BOOKS + TRADES]
    first = spawn("worker", "-c", str(config), "--group", "docs")

    def updates_everywhere() -> bool:
        return all(sum(e["kind"] == "update" for e in read_stream(r, key)) >= 10 for key in keys)

    wait_until(updates_everywhere, 30, "a snapshot and 10 updates on every stream")
    first.signal(signal.SIGTERM)
    assert first.wait(15) == 0, first.output()
    before = {key: read_stream(r, key) for key in keys}
    for key, entries in before.items():
        assert entries[-1]["kind"] == "reset", (key, entries[-1])
    # When each example starts on each stream, and a second run of the worker follows
    running = []
    for key, entries in before.items():
        start = max(i for i, e in enumerate(entries) if e["kind"] == "snapshot")
        kind = "book" if ":book:" in key else "trades"
        count = len(entries) - start + AFTER_RESTART[kind]
        for language in LANGUAGES:
            running.append((key, start, count, language, consumers(language, key, count)))
    for key, _, _, language, consumer in running:
        last = before[key][-1]
        wait_until(
            lambda c=consumer, e=last: reset_line(e)["reason"] in c.out.read_text(),
            30,
            f"{language} consumer of {key} to reach the end of the first run",
        )
    spawn("worker", "-c", str(config), "--group", "docs")
    # Then each prints, line by line, what the stream holds from its latest snapshot on:
    # the first run, its "worker stopped" reset, the new run's "worker started" reset (no
    # epoch) and the new epoch's snapshot and updates
    for key, start, count, language, consumer in running:
        printed = consumer.finish()
        entries = read_stream(r, key)[start : start + count]
        assert len(entries) == count
        kinds = [e["kind"] for e in entries]
        assert kinds.count("reset") == 2 and kinds.count("snapshot") == 2, (key, kinds)
        books = ":book:" in key
        expected = expected_book(entries, key) if books else expected_trades(entries)
        assert_lines_match(printed, expected, f"{language} {key}")
        resets = [parse(line) for line in printed if line.startswith("reset ")]
        assert [(x["reason"], x["epoch"]) for x in resets] == [
            ("worker stopped", entries[0]["epoch"]),
            ("worker started", "-"),
        ]


def synthetic_book(key: str) -> tuple[list[Entry], list[Entry]]:
    """Entries of a book stream with a lost update and a lost snapshot, in two parts."""
    stream = Stream(key, EpochSource("syn"))

    def level(price: float, count: int, amount: float) -> dict[str, Any]:
        return {"price": price, "count": count, "amount": amount,
                "side": "bid" if amount > 0 else "ask"}  # fmt: skip

    ts, mts = 1_700_000_000_000, 1_700_000_000_000
    first: list[Entry | None] = [stream.reset("worker started", ts)]
    first += stream.snapshot([level(100, 1, 1.5), level(101, 2, -2.25)], ts, mts)
    first.append(stream.update(level(100, 0, 1), ts, mts))  # the bid leaves
    stream.update(level(99.5, 1, 0.5), ts, mts)  # lost: never written
    first.append(stream.update(level(100.5, 1, -0.75), ts, mts))
    first.append(stream.update(level(98, 1, 0.25), ts, mts))
    second: list[Entry | None] = [stream.reset("checksum mismatch: book 1 != server 2", ts)]
    second += stream.snapshot([level(99, 1, 0.5), level(101, 2, -2.25)], ts, mts)
    second.append(stream.update(level(101, 3, -3.5), ts, mts))
    stream.snapshot([level(97, 1, 0.5)], ts, mts)  # lost: a reset and a snapshot never written
    second.append(stream.update(level(96, 1, 0.5), ts, mts))
    second.append(stream.update(level(95, 1, 0.5), ts, mts))
    return [e for e in first if e], [e for e in second if e]


SYNTHETIC_OUTPUT = [
    "book epoch=syn.1 seq=0 bid=100 bid_size=1.5 ask=101 ask_size=2.25 bids=1 asks=1",
    "book epoch=syn.1 seq=1 bid=- bid_size=- ask=101 ask_size=2.25 bids=0 asks=1",
    "gap epoch=syn.1 seq=3 expected_epoch=syn.1 expected_seq=2 "
    "(state dropped, waiting for the next snapshot)",
    "skip update epoch=syn.1 seq=4 (waiting for a snapshot)",
    'reset epoch=syn.1 seq=5 reason="checksum mismatch: book 1 != server 2"',
    "book epoch=syn.2 seq=0 bid=99 bid_size=0.5 ask=101 ask_size=2.25 bids=1 asks=1",
    "book epoch=syn.2 seq=1 bid=99 bid_size=0.5 ask=101 ask_size=3.5 bids=1 asks=1",
    "gap epoch=syn.3 seq=1 expected_epoch=syn.2 expected_seq=2 "
    "(state dropped, waiting for the next snapshot)",
    "skip update epoch=syn.3 seq=2 (waiting for a snapshot)",
]


def test_consumers_detect_gaps_and_wait_for_the_next_snapshot(
    r: redis.Redis, prefix: str, consumers: Callable[[str, str, int], Consumer]
) -> None:
    """A seq jump or an unknown epoch drops the book; updates are skipped until a snapshot."""
    key = f"{prefix}:book:tBTCUSD:P0"
    first, second = synthetic_book(key)

    def write(entries: list[Entry]) -> None:
        for entry in entries:
            r.xadd(entry.stream, entry.fields)  # type: ignore[arg-type]

    # Given a book stream whose first epoch lost its update seq 2
    write(first)
    assert msgpack.unpackb(r.xrange(key)[0][1][b"data"]) == {"reason": "worker started"}
    # When both examples read it, and then a reset, a new epoch, and updates of an epoch
    # whose reset and snapshot were lost follow
    running = [consumers(language, key, len(SYNTHETIC_OUTPUT)) for language in LANGUAGES]
    for consumer in running:
        wait_until(lambda c=consumer: any(x.startswith("skip") for x in c.lines()), 30, "skip")
    write(second)
    # Then both print exactly the same lines: the book, each gap, each skipped update
    for consumer in running:
        assert consumer.finish() == SYNTHETIC_OUTPUT
