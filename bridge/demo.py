"""``bfx-bridge demo``: the whole bridge on one machine, no internet and no Redis needed.

It starts the emulator and an embedded Redis, runs the supervisor (``bfx-bridge run``) on a
built-in example config against them, and shows a live view of every stream (entries, rate,
last price, book top, epoch) and of each group's health until Ctrl-C or ``--duration``.
Then it says how to read the data with ``redis-cli`` and ``bfx-bridge tail``.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from bridge.config import parse
from bridge.embedded import EmbeddedRedis, embedded_dir
from bridge.emulator import Emulator
from bridge.health import health_key
from bridge.streams import decode_fields

__all__ = ["DEMO_CONFIG", "run_demo"]

DEMO_CONFIG = """\
# The demo's example config: two groups against the local emulator.
[bitfinex]
url = "{ws_url}"

[redis]
url = "{redis_url}"
prefix = "bfx"
maxlen = 10000

[health]
interval = 1

[[groups]]
name = "majors"
symbols = ["tBTCUSD", "tETHUSD", "fUSD"]
channels = ["ticker", "trades", "book", "candles"]
status = ["deriv:tBTCF0:USTF0", "liq:global"]

[[groups]]
name = "alts"
symbols = ["tXRPBTC", "tSOLUSD"]
channels = ["ticker", "trades", "book:R0"]
"""

PRICE_KEYS = ("last_price", "price", "rate", "close", "mark_price")


@dataclass
class StreamView:
    """What the live view shows of one stream, updated from its entries."""

    entries: int = 0
    epoch: str = ""
    last_price: Any = None
    book: dict[Any, dict[str, Any]] = field(default_factory=dict)
    times: deque[float] = field(default_factory=lambda: deque(maxlen=2000))

    def apply(self, entry: dict[str, Any], now: float) -> None:
        """Take one decoded entry into account."""
        self.entries += 1
        self.times.append(now)
        if entry["kind"] == "reset":
            self.book.clear()
            return
        self.epoch = entry["epoch"]
        records = entry["data"] if entry["kind"] == "snapshot" else [entry["data"]]
        if entry["kind"] == "snapshot":
            self.book.clear()
        for rec in records:
            if "side" in rec and ("count" in rec or "order_id" in rec or "offer_id" in rec):
                self._book(rec)
            else:
                price = next((rec[k] for k in PRICE_KEYS if k in rec), None)
                self.last_price = price if price is not None else self.last_price

    def _book(self, rec: dict[str, Any]) -> None:
        key = rec.get("order_id", rec.get("offer_id", (rec.get("price"), rec.get("period"))))
        gone = rec.get("count") == 0 or rec.get("price", rec.get("rate")) == 0
        if gone:
            self.book.pop(key, None)
        else:
            self.book[key] = rec

    def rate(self, now: float) -> float:
        """Entries per second over the last five seconds."""
        return sum(1 for t in self.times if now - t <= 5.0) / 5.0

    def top(self) -> str:
        """Best bid / best ask of a book stream."""
        if not self.book:
            return ""
        price = "price" if any("price" in r for r in self.book.values()) else "rate"
        bids = [r[price] for r in self.book.values() if r["side"] == "bid"]
        asks = [r[price] for r in self.book.values() if r["side"] == "ask"]
        return f"{max(bids) if bids else '-'} / {min(asks) if asks else '-'}"


class LiveView:
    """Reads every stream of the demo and renders tables."""

    def __init__(self, client: redis.Redis, prefix: str, streams: list[str], groups: list[str]):
        self.client = client
        self.prefix = prefix
        self.groups = groups
        self.views = {name: StreamView() for name in streams}
        self.last_ids: dict[str, bytes | str] = {f"{prefix}:{n}": "0" for n in streams}

    def poll(self, block_ms: int = 250) -> None:
        """Read whatever arrived on any stream."""
        reply: Any = self.client.xread(self.last_ids, block=block_ms, count=1000)  # type: ignore[arg-type]
        now = time.monotonic()
        for key, rows in reply or []:
            name = key.decode()[len(self.prefix) + 1 :]
            for entry_id, fields in rows:
                self.views[name].apply(decode_fields(fields), now)
                self.last_ids[key.decode()] = entry_id

    def render(self) -> Group:
        """The streams table and the health table."""
        now = time.monotonic()
        streams = Table(title="streams", expand=False)
        for column in (
            "stream",
            "entries",
            "rate/s",
            "last price",
            "book top (bid / ask)",
            "epoch",
        ):
            streams.add_column(
                column, justify="right" if column in ("entries", "rate/s") else "left"
            )
        for name, view in self.views.items():
            last = "" if view.last_price is None else str(view.last_price)
            streams.add_row(name, str(view.entries), f"{view.rate(now):.1f}", last, view.top(),
                            view.epoch)  # fmt: skip
        health = Table(title="health")
        for column in ("group", "status", "subscribed", "msgs/s", "reconnects", "written"):
            health.add_column(column)
        for group in self.groups:
            raw: Any = self.client.hgetall(health_key(self.prefix, group))
            h = {k.decode(): v.decode() for k, v in raw.items()}
            health.add_row(group, h.get("status", "absent"), f"{h.get('subscribed', '-')}/"
                           f"{h.get('expected', '-')}", h.get("msg_rate", "-"),
                           h.get("reconnects", "-"), h.get("written", "-"))  # fmt: skip
        return Group(streams, health)


def run_demo(duration: float | None) -> int:
    """Run the demo (see the module docstring); 0 when every stream received data."""
    console = Console(emoji=False)
    if not console.is_terminal:
        console = Console(emoji=False, width=160)  # logs and pipes: no wrapping of names
    workdir = Path(tempfile.mkdtemp(prefix="bfx-bridge-demo-"))
    with EmbeddedRedis(embedded_dir()) as server:
        emulator = Emulator(port=0, tick_interval=0.1, connect_limit=None, log_frames=False)
        emulator.start()
        path = workdir / "demo.toml"
        path.write_text(DEMO_CONFIG.format(ws_url=emulator.url, redis_url=server.url))
        config = parse(tomllib.loads(path.read_text()), str(path), {})
        streams = [sub.name for g in config.groups for sub in g.subscriptions]
        log_path = workdir / "bridge.log"
        with log_path.open("wb") as log_file:
            bridge = subprocess.Popen(
                [sys.executable, "-m", "bridge", "run", "-c", str(path)],
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            console.print(_instructions(server.url, log_path), markup=False)
            view = LiveView(redis.Redis.from_url(server.url), "bfx", streams,
                            [g.name for g in config.groups])  # fmt: skip
            try:
                _show(console, view, duration, bridge)
                if not console.is_terminal:
                    console.print(view.render())  # one final view when not on a terminal
            except KeyboardInterrupt:
                pass
            finally:
                bridge.send_signal(signal.SIGTERM)
                stopped = _wait(bridge, 15.0)
                emulator.stop()
    empty = [name for name, v in view.views.items() if v.entries == 0]
    console.print(f"\nbridge stopped {'cleanly' if stopped == 0 else f'with code {stopped}'}; "
                  f"the data is saved in {server.directory} (bridge log: {log_path}).")  # fmt: skip
    console.print(_afterwards(), markup=False)
    if empty:
        console.print(f"[red]no data reached: {', '.join(empty)}[/red]")
        return 1
    return 0 if stopped == 0 else 1


def _show(console: Console, view: LiveView, duration: float | None, bridge: Any) -> None:
    deadline = None if duration is None else time.monotonic() + duration
    live = Live(view.render(), console=console, auto_refresh=False) if console.is_terminal else None
    with live or contextlib.nullcontext():
        while deadline is None or time.monotonic() < deadline:
            view.poll()
            if bridge.poll() is not None:
                console.print(f"[red]the bridge exited with code {bridge.returncode}[/red]")
                return
            if live is not None:
                live.update(view.render(), refresh=True)


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


def _instructions(url: str, log_path: Path) -> str:
    port = url.rsplit(":", 1)[1].split("/")[0]
    return (
        f"bfx-bridge demo: emulator + embedded Redis on {url}; Ctrl-C to stop.\n"
        f"While it runs, in another terminal:\n"
        f"  redis-cli -p {port} XREVRANGE bfx:ticker:tBTCUSD + - COUNT 1\n"
        f"  bfx-bridge tail --redis {url} bfx:trades:tBTCUSD\n"
        f'  bfx-bridge status -c <config with [redis] url = "{url}">\n'
        f"Bridge log: {log_path}\n"
    )


def _afterwards() -> str:
    return (
        "To read the data: run `bfx-bridge demo` again and, while it runs, use\n"
        "  redis-cli -p PORT XRANGE bfx:book:tBTCUSD:P0 - + COUNT 5   (fields are plain text; "
        "data is msgpack)\n"
        "  bfx-bridge tail --redis redis://127.0.0.1:PORT/0 bfx:trades:tBTCUSD   (decoded JSON)\n"
        "See docs/streams.md for every stream and field."
    )
