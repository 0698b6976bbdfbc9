"""The benchmark plot: P3 latency percentiles, and P1/P2 throughput against redis-py and
cryptofeed, from ``run.py``'s results (``python bench/run.py --plot FILE``, or
``python bench/plot.py RESULTS.json OUT.png``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CURVE = [0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]


def plot(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, thr, cost) = plt.subplots(1, 3, figsize=(16, 4.8))
    p3 = results.get("P3", {})
    if "curve" in p3:
        labels = [f"p{q:g}" if q not in (0, 100) else ("min" if q == 0 else "max") for q in CURVE]
        values = [v / 1000 for v in p3["curve"]]
        lat.plot(labels, values, marker="o", label=p3.get("label", "bfx-bridge worker"))
        for label, curve in results.get("P3_more", []):  # other runs, for the spread
            lat.plot(labels, [v / 1000 for v in curve], marker=".", alpha=0.6, label=label)
        lat.axhline(2.0, color="red", linestyle="--", label="target p99 ≤ 2 ms")
        lat.set_yscale("log")
        lat.set_ylabel("ms, emulator send → seen by XREAD BLOCK")
        lat.set_title(f"P3 added latency at {p3.get('msg_per_s', '?')} msg/s")
        lat.legend()
        lat.grid(True, which="both", alpha=0.3)
    bars: list[tuple[str, float]] = []
    p1, p2 = results.get("P1", {}), results.get("P2", {})
    if "entries_per_s" in p1:
        bars.append(("bfx-bridge worker\n(WS → Redis)", p1["entries_per_s"]))
        bars.append(("redis-py pipelined\nXADD only", p1["baseline_entries_per_s"]))
    if "entries_per_s" in p2:
        bars.append(("cryptofeed 2.4.1\n(WS → Redis)", p2["entries_per_s"]))
    if bars:
        names, rates = zip(*bars, strict=True)
        drawn = thr.bar(names, [x / 1000 for x in rates], color=["C0", "C7", "C1"][: len(bars)])
        thr.bar_label(drawn, labels=[f"{x / 1000:.1f}k" for x in rates])
        thr.set_ylabel("thousand entries/s")
        thr.set_title(
            f"P1/P2 throughput, burst of {p1.get('reps', [{}])[0].get('entries', '?')}"
            " entries, same run"
        )
        thr.grid(True, axis="y", alpha=0.3)
    p6 = results.get("P6", {}).get("sizes", {})
    if p6:
        streams = list(p6)
        cost.plot(
            streams,
            [p6[s]["cpu_us_per_entry"] for s in streams],
            marker="o",
            label="worker CPU µs/entry",
        )
        cost.plot(
            streams,
            [1e6 / p6[s]["entries_per_s"] for s in streams],
            marker="s",
            label="wall µs/entry (1 / throughput)",
        )
        cost.plot(
            streams,
            [p6[s]["redis_cpu_us_per_entry"] for s in streams],
            marker="^",
            label="redis-server CPU µs/entry",
        )
        cost.set_xlabel("streams (book + trades per symbol)")
        cost.set_ylabel("µs per entry")
        cost.set_ylim(bottom=0)
        cost.set_title("P6 cost per message as streams grow")
        cost.legend()
        cost.grid(True, alpha=0.3)
    machine = results.get("machine", {})
    fig.suptitle(
        f"bfx-bridge benchmarks ({results.get('mode')}), {machine.get('nproc')} × "
        f"{machine.get('cpu')}, Python {machine.get('python')}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    plot(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
