"""The load benchmark (bench/load.py) end to end, in its smallest configuration.

Two learners, a few seconds each: the simulator, Daphne and the driving process are real processes,
and the row the benchmark reports is computed from what they measured (frames counted on both sides,
latencies read from the stamps in the audio, the server's CPU and memory from /proc). Speed targets
live in the benchmark itself, never here: this test asserts only that the instrument measures.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tutor.tests.live import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)  # the server process must see the learners


def test_smallest_run_reports_real_measurements(tmp_path):
    result = tmp_path / "load.json"
    command = [
        sys.executable, str(ROOT / "bench" / "load.py"), "--ladder", "2", "--scale-out", "off",
        "--baseline-seconds", "3", "--tutor-audio-ms", "600", "--speech-ms", "400-500",
        "--session-timeout", "60", "--break-ms", "100000", "--database-url", database_url(), "--no-doc", "--json", str(result),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = [row for rows in json.loads(result.read_text())["results"].values() for row in rows]

    # Both learners ran a whole session through Parla: placement, handover, summary, no error. (Slowness
    # cannot break the row: --break-ms is out of reach, so `broken` can only say something failed.)
    assert row["learners"] == 2 and row["processes"] == 1
    assert row["handovers_ok"] == 2, row["failures"]
    assert row["errors"] == [] and row["broken"] is None

    # Frames were counted on both sides of the relay, and none was lost or reordered.
    frames = row["frames"]
    assert frames["tutor_received"] > 0 and frames["learner_received"] > 0
    assert frames["learner_received"] <= frames["learner_sent"]
    assert frames["tutor_lost"] == frames["learner_lost"] == 0
    assert frames["tutor_reordered"] == frames["learner_reordered"] == 0

    # Latencies come from stamps read on every frame, via Parla and straight to the simulator.
    for kind in ("tutor", "learner"):
        latency = row[kind]
        assert latency["samples_via"] > 0 and latency["samples_direct"] > 0, kind
        assert 0 < latency["via_p50"] <= latency["via_p99"], kind
        assert 0 < latency["direct_p50"] <= latency["direct_p99"], kind
        assert latency["added_p99"] == pytest.approx(latency["via_p99"] - latency["direct_p99"])
        assert latency["ratio_p50"] == pytest.approx(latency["via_p50"] / latency["direct_p50"])
    # The tutor answered every spoken answer but the last (which ends the placement), after the VAD's silence.
    assert row["reply"]["samples_via"] >= 2 and row["reply"]["via_p50"] > 500

    # The server was measured: CPU time per session-minute, memory, and the helpers' own CPU.
    assert row["cpu_s_per_session_minute"] > 0
    assert row["rss_mib_idle"][0] > 10
    assert set(row["cpu_via_parla"]) == {"simulator 0", "daphne 0", "parla driver 0"}
    assert set(row["cpu_baseline"]) == {"simulator 0", "direct driver 0"}
    assert all(cpu["avg_percent"] > 0 for cpu in row["cpu_via_parla"].values())
    # How full the machine was, and how long the server's event loop waited for a CPU because of it.
    assert 0 < row["machine_busy_percent"] <= 100
    assert row["daphne_waited_percent"] is not None and 0 <= row["daphne_waited_percent"] < 100

    # And the table printed for people carries the same row.
    assert "| 2 | 1 |" in done.stdout and "2 / 2" in done.stdout
