"""Prometheus metrics at ``/metrics``: the health counters, per group and per stream.

A custom collector reads the worker's counters at scrape time, so the hot path pays nothing
for metrics. Served by prometheus-client's own HTTP server on ``[metrics] host:port``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from bridge.worker import Worker

__all__ = ["WorkerCollector", "serve_metrics"]

COUNTERS = {
    "msgs": "Frames received from Bitfinex.",
    "reconnects": "Reconnections after a lost connection.",
    "checksum_errors": "Book checksum mismatches (each resets and resubscribes a book).",
    "malformed": "Frames that could not be used.",
    "subscribe_errors": "Subscriptions refused by Bitfinex.",
    "written": "Entries acknowledged by Redis.",
    "dropped": "Entries dropped (buffer full while Redis was unavailable, or refused).",
    "auth_failures": "Account auths refused by Bitfinex (bad key or secret, nonce too small).",
}
GAUGES = {
    "connections": "Bitfinex connections open.",
    "subscribed": "Channels subscribed.",
    "expected": "Channels configured.",
    "buffered": "Entries waiting for Redis.",
    "last_msg": "Time of the last frame received (ms since the Unix epoch).",
}
STATUSES = ("starting", "ok", "degraded", "maintenance")


class WorkerCollector(Collector):
    """Turns :meth:`Worker.collect` into Prometheus metric families."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Any]:
        """Yield every metric family (called at each scrape)."""
        fields, streams = self.worker.collect(measure_rate=False)
        group = self.worker.group.name
        for name, doc in COUNTERS.items():
            family = CounterMetricFamily(f"bfx_bridge_{name}", doc, labels=["group"])
            family.add_metric([group], float(fields[name]))
            yield family
        for name, doc in GAUGES.items():
            gauge = GaugeMetricFamily(f"bfx_bridge_{name}", doc, labels=["group"])
            gauge.add_metric([group], float(fields[name]))
            yield gauge
        authenticated, configured = str(fields.get("accounts", "0/0")).split("/")
        accounts = GaugeMetricFamily(
            "bfx_bridge_accounts", "[[accounts]] by state.", labels=["group", "state"]
        )
        accounts.add_metric([group, "authenticated"], float(authenticated))
        accounts.add_metric([group, "configured"], float(configured))
        yield accounts
        status = GaugeMetricFamily(
            "bfx_bridge_status", "1 for the worker's current status.", labels=["group", "status"]
        )
        for value in STATUSES:
            status.add_metric([group, value], 1.0 if fields["status"] == value else 0.0)
        yield status
        entries = CounterMetricFamily(
            "bfx_bridge_stream_entries", "Entries made per stream.", labels=["group", "stream"]
        )
        seq = GaugeMetricFamily(
            "bfx_bridge_stream_seq", "Last seq of the stream's epoch.", labels=["group", "stream"]
        )
        last = GaugeMetricFamily(
            "bfx_bridge_stream_last_ts",
            "Receive time of the stream's last entry (ms since the Unix epoch).",
            labels=["group", "stream"],
        )
        for stream, info in streams.items():
            entries.add_metric([group, stream], float(info["entries"]))
            seq.add_metric([group, stream], float(info["seq"]))
            last.add_metric([group, stream], float(info["last_ts"]))
        yield entries
        yield seq
        yield last


def serve_metrics(worker: Worker, host: str, port: int) -> Any:
    """Start the ``/metrics`` HTTP server; returns the server (call ``shutdown()`` to stop)."""
    registry = CollectorRegistry()
    registry.register(WorkerCollector(worker))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
