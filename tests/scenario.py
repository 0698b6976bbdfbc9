"""A fault scenario: a worker subprocess on the emulator and a redis-server, then the proof.

``Scenario`` writes a config, starts ``bfx-bridge worker``, waits for streams, and at the end
pauses the emulator, waits until Redis holds everything that was sent, and checks every
stream entry by entry against the emulator's log (:func:`feedcheck.assert_stream_faithful`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bridge.config import parse
from tests.conftest import REDIS_URL, Proc, wait_until
from tests.feedcheck import (
    assert_stream_faithful,
    caught_up,
    epochs,
    expected_epochs,
    read_stream,
)

# The production ratios (channel 30 s > connection 20 s > ping 10 s), scaled down.
FAST = """
channel_timeout = 3.0
connection_timeout = 2.0
ping_interval = 0.5
"""


class Scenario:
    """One worker for one ``[[groups]]`` table named ``g`` (see the module docstring)."""

    def __init__(
        self,
        r: redis.Redis,
        prefix: str,
        emulator: Any,
        spawn: Callable[..., Proc],
        tmp_path: Path,
        group: str,
        *,
        bitfinex: str = FAST,
        sections: str = "",
        redis_url: str = REDIS_URL,
        redis_extra: str = "",
    ) -> None:
        self.r, self.prefix, self.emulator, self.spawn = r, prefix, emulator, spawn
        self.text = (
            f'[bitfinex]\nurl = "{emulator.url}"\n{bitfinex}\n'
            f'[redis]\nurl = "{redis_url}"\nprefix = "{prefix}"\n{redis_extra}\n'
            f"[health]\ninterval = 0.5\n\n{sections}\n"
            f'[[groups]]\nname = "g"\n{group}\n'
        )
        self.path = tmp_path / "bridge.toml"
        self.path.write_text(self.text)
        config = parse(tomllib.loads(self.text), str(self.path), {})
        self.names = [sub.name for sub in config.groups[0].subscriptions]
        self.worker: Proc | None = None

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def start(self) -> Proc:
        """Start the worker and wait for a snapshot on every stream."""
        self.worker = self.spawn("worker", "-c", str(self.path), "--group", "g")
        self.wait_epochs({name: 1 for name in self.names}, "a first snapshot everywhere")
        return self.worker

    def epoch_count(self, name: str) -> int:
        return len(epochs(read_stream(self.r, self.key(name))))

    def epoch_counts(self) -> dict[str, int]:
        return {name: self.epoch_count(name) for name in self.names}

    def wait_epochs(self, minimum: dict[str, int], what: str, timeout: float = 30) -> None:
        """Wait until each named stream has at least that many epochs."""

        def reached() -> bool:
            return all(self.epoch_count(n) >= k for n, k in minimum.items())

        wait_until(reached, timeout, what)

    def health(self) -> dict[str, str]:
        raw: Any = self.r.hgetall(f"{self.prefix}:health:g")
        return {k.decode(): v.decode() for k, v in raw.items()}

    def resets(self, name: str) -> list[str]:
        """The reasons of every reset of a stream, in order."""
        return [e["data"]["reason"] for e in read_stream(self.r, self.key(name))
                if e["kind"] == "reset"]  # fmt: skip

    def settle_and_check(self, names: list[str] | None = None) -> None:
        """Pause the feed, wait for Redis to hold all that was sent, check every stream."""
        self.emulator.pause()
        names = names or self.names
        sent: dict[str, list[Any]] = {}

        def done() -> bool:
            # Re-read the log each time: a resubscribe may still be answered after the pause.
            sent.clear()
            sent.update(expected_epochs(self.emulator.sent_frames()))
            return all(caught_up(self.r, self.key(n), sent.get(n, [])) for n in names)

        try:
            wait_until(done, 30, "Redis to hold everything the emulator sent")
        except AssertionError:
            behind = [
                (n, [len(e) for e in epochs(read_stream(self.r, self.key(n)))],
                 [len(x) for x in sent.get(n, [])], _trace(read_stream(self.r, self.key(n))))
                for n in names
                if not caught_up(self.r, self.key(n), sent.get(n, []))
            ]  # fmt: skip
            log = str(self.worker.log) if self.worker else ""
            raise AssertionError(f"not caught up (stream, stored, sent): {behind}\n{log}") from None
        for name in names:
            assert_stream_faithful(read_stream(self.r, self.key(name)), sent[name], name)
        assert self.worker is None or self.worker.popen.poll() is None, self.worker.output()


def _trace(entries: list[dict[str, Any]]) -> str:
    """A compact picture of a stream for failure messages: r(eason) s(napshot) u(pdates)."""
    out, updates = [], 0
    for e in entries:
        if e["kind"] == "update":
            updates += 1
            continue
        if updates:
            out.append(f"u{updates}")
            updates = 0
        out.append(f"S{e['epoch']}" if e["kind"] == "snapshot" else f"R({e['data']['reason']})")
    if updates:
        out.append(f"u{updates}")
    return " ".join(out)
