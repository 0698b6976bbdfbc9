"""Smoke test of the benchmark harness (bench/run.py): it runs, it measures, it loses nothing.

Timings are never asserted here (STYLE.md); the figures of ``--tiny`` mean nothing. What is
asserted is that every step produced its numbers and that P7's entry-by-entry checks found
no entry lost or duplicated. P2 (cryptofeed in a venv of its own) is left to the real runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.scenarios import percentile, summarize_stacks
from tests.conftest import ROOT

STEPS = ("E0", "P1", "P3", "P4", "P5", "P6")


def test_tiny_run_produces_every_figure_and_p7_finds_nothing_lost(tmp_path: Path) -> None:
    """bench/run.py --tiny prints every figure, and no entry is lost or duplicated."""
    # Given the harness in its seconds-long mode, without cryptofeed
    out = tmp_path / "results.json"
    command = [sys.executable, "bench/run.py", "--tiny", "--no-cryptofeed", "--json", str(out)]
    # When it runs
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280)
    # Then it succeeds and every step has its figures
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    results = json.loads(out.read_text())
    for step in STEPS:
        assert "error" not in results[step], (step, results[step])
        assert f"{step}: " in proc.stdout, step
    assert results["E0"]["frames_per_s"] > 0
    assert results["P1"]["entries_per_s"] > 0 and results["P1"]["baseline_entries_per_s"] > 0
    assert results["P3"]["n"] > 0 and results["P3"]["p99_ms"] > 0
    assert results["P4"]["max_ms"] > 0
    assert results["P5"]["rss_max_mb"] > 0
    assert all(s["entries_per_s"] > 0 for s in results["P6"]["sizes"].values())
    # And P7 checked every entry and found none lost or duplicated
    assert results["P7"]["checked"] > 0
    assert results["P7"]["lost"] == 0 and results["P7"]["duplicated"] == 0
    for step in ("P1", "P3", "P5"):  # no drop there: nothing cut, every stream well formed
        check = results[step]["p7"]
        assert check["cut"] == check["malformed"] == check["unmatched"] == 0, (step, check)


def test_percentile_is_nearest_rank() -> None:
    """percentile() picks the nearest-rank value of a sorted list."""
    values = [float(x) for x in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50.0,
        99.0,
        100.0,
    )
    assert percentile([3.0], 99.9) == 3.0


def test_summarize_stacks_counts_self_and_total_shares(tmp_path: Path) -> None:
    """A py-spy raw profile becomes per-function self and total shares of the samples."""
    raw = tmp_path / "profile.txt"
    raw.write_text("run (w.py:1);read (c.py:5);recv (s.py:9) 3\nrun (w.py:1);write (p.py:7) 1\n")
    summary = summarize_stacks(raw)
    assert summary["samples"] == 4
    assert summary["self"][0] == ("recv (s.py)", 75.0)
    assert ("run (w.py)", 100.0) in summary["total"]


def test_hotpath_replays_a_frame_log_and_counts_its_entries(tmp_path: Path) -> None:
    """bench/hotpath.py replays a frame log (two connections, --connection all) through the
    reader's Python and counts every message and entry (timings not asserted)."""
    log = tmp_path / "frames"
    lines = [
        '1\t{"event":"info","version":2,"serverId":"x","platform":{"status":1}}',
        '1\t{"event":"subscribed","channel":"trades","chanId":7,"symbol":"tBTCUSD",'
        '"subId":"trades:tBTCUSD"}',
        '2\t{"event":"subscribed","channel":"book","chanId":8,"symbol":"tETHUSD","prec":"P0",'
        '"freq":"F0","len":"25","subId":"book:tETHUSD:P0"}',
        "1\t[7,[[1,1700000000000,0.5,100]],1,1700000000001]",
        "2\t[8,[[2000,1,1.5],[2001,1,-2]],1,1700000000001]",
        '1\t[7,"te",[2,1700000000002,-0.1,101],2,1700000000002]',
        '1\t[7,"tu",[2,1700000000002,-0.1,101],3,1700000000002]',
        "2\t[8,[[2000,0,1],[1999,2,0.5]],2,1700000000003]",
    ]
    log.write_text("\n".join(lines) + "\n")
    command = [sys.executable, "bench/hotpath.py", str(log), "--connection", "all",
               "--repeat", "1"]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # 2 x (reset + snapshot) + 1 trade (te; its tu is not a second trade) + 2 book updates
    assert "2 channels on 2 connections, 8 messages, 7 entries" in proc.stdout, proc.stdout
