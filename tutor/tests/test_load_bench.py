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
from pathlib import Path

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
    assert row["server"] == "daphne"  # the production server, by default
    assert set(row["cpu_via_parla"]) == {"simulator 0", "daphne 0", "parla driver 0"}
    assert set(row["cpu_baseline"]) == {"simulator 0", "direct driver 0"}
    assert all(cpu["avg_percent"] > 0 for cpu in row["cpu_via_parla"].values())
    # How full the machine was, and how long the server's event loop waited for a CPU because of it.
    assert 0 < row["machine_busy_percent"] <= 100
    assert row["daphne_waited_percent"] is not None and 0 <= row["daphne_waited_percent"] < 100

    # The server's own measure of its event loop, logged by its loop watch when it stopped, and the
    # CPU of the loop's thread apart from the process's other threads.
    (lag,) = row["loop_lag"]
    assert lag["ticks"] > 100 and lag["stall_threshold_ms"] == 20
    assert 0 <= lag["p50_ms"] <= lag["p99_ms"] <= lag["max_ms"]
    assert len(lag["gc_counts"]) == 3 and sum(lag["gc_counts"]) > 0 and sum(lag["gc_ms"]) > 0
    (threads,) = row["daphne_threads"]
    assert threads["loop"] > 0 and threads["others"] >= 0
    assert threads["loop"] + threads["others"] == pytest.approx(row["daphne_cpu_per_process"][0], abs=0.2)

    # A run without error leaves nothing behind.
    work = done.stderr.split("logs and raw results in ", 1)[1].split()[0]
    assert not Path(work).exists()

    # And the table printed for people carries the same row.
    assert "| 2 | 1 |" in done.stdout and "2 / 2" in done.stdout


def test_logs_are_kept_when_a_step_failed_or_a_learner_saw_an_error(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from load import keep_logs

    clean = {"learners": 3, "handovers_ok": 3, "error_count": 0, "failures": []}
    assert not keep_logs([clean, clean], [])
    assert keep_logs([clean, {**clean, "handovers_ok": 2}], [])
    assert keep_logs([{**clean, "error_count": 1}], [])
    assert keep_logs([{**clean, "failures": ["timeout"]}], [])
    assert keep_logs([clean], ["`main`, 200 learners on 1 process(es): not measured (driver failed)"])


def test_pin_and_yield_place_the_server_and_its_helpers(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import argparse
    import os

    from load import CHILDREN, HELPERS_NICE, placement

    cpus = sorted(os.sched_getaffinity(0))
    pinned = argparse.Namespace(pin=True)
    if len(cpus) > 1:
        assert placement(pinned, 1) == ([{cpus[0]}], set(cpus[1:]))  # the server's CPU is its own
    assert placement(pinned, len(cpus)) == (None, None)  # no CPU left for the helpers: nothing pinned
    assert placement(argparse.Namespace(pin=False), 1) == (None, None)

    # A helper started as --pin and --yield start them: on the helpers' CPUs, yielding to the server.
    helper = CHILDREN.start(["sleep", "30"], log=tmp_path / "helper.log", cpus={cpus[-1]}, nice=HELPERS_NICE)
    try:
        assert os.sched_getaffinity(helper.pid) == {cpus[-1]}
        assert os.getpriority(os.PRIO_PROCESS, helper.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + HELPERS_NICE)
    finally:
        CHILDREN.stop(helper)
    assert helper.returncode is not None


def test_learners_refused_at_capacity_are_told_apart_from_failed_handovers(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from load import broken

    row = {"learners": 200, "handovers_ok": 91, "refused": 109, "errors": ["at_capacity"], "frames": {}}
    assert broken(row, 100) == "109 refused at capacity"
    assert broken({**row, "handovers_ok": 90}, 100) == "1 handovers failed, 109 refused at capacity"
    assert broken({**row, "refused": 0, "handovers_ok": 198}, 100) == "2 handovers failed"


def test_refuse_serves_as_deployed_and_the_ladder_lifts_the_limits(monkeypatch, tmp_path):
    """--refuse: the server's own maximum and stall shedding (or the deployment's values); without it
    the ladder measures the process past both."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from load import Server

    monkeypatch.delenv("PARLA_MAX_SESSIONS_PER_PROCESS", raising=False)
    monkeypatch.delenv("PARLA_SHED_STALLED_PERCENT", raising=False)
    ladder = Server.for_repo(ROOT, "sqlite:///x", tmp_path, "s" * 50)
    assert ladder.env["PARLA_MAX_SESSIONS_PER_PROCESS"] == "100000"
    assert ladder.env["PARLA_SHED_STALLED_PERCENT"] == "0"
    deployed = Server.for_repo(ROOT, "sqlite:///x", tmp_path, "s" * 50, refuse=True)
    assert "PARLA_MAX_SESSIONS_PER_PROCESS" not in deployed.env  # settings.py's default
    assert "PARLA_SHED_STALLED_PERCENT" not in deployed.env
    monkeypatch.setenv("PARLA_MAX_SESSIONS_PER_PROCESS", "150")
    assert Server.for_repo(ROOT, "sqlite:///x", tmp_path, "s" * 50, refuse=True).env["PARLA_MAX_SESSIONS_PER_PROCESS"] == "150"


def test_the_header_names_the_cpu_by_family_model_and_clock(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from load import cpu_description

    cpuinfo = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
               "model name\t: AMD EPYC\ncpu MHz\t\t: 2596.096\n\nprocessor\t: 1\nmodel name\t: other\n")
    assert cpu_description(cpuinfo) == "AMD EPYC, family 26 model 2, 2.60 GHz"
    assert cpu_description("processor\t: 0\nmodel name\t: ARMv8\n") == "ARMv8"
    assert cpu_description("") == "unknown CPU"


def test_servers_keep_going_and_proxy_options(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from load import parse_args

    default = parse_args([])
    assert default.servers == ["daphne"] and not default.keep_going and not default.proxy
    both = parse_args(["--servers", "daphne, uvicorn", "--keep-going", "--proxy"])
    assert both.servers == ["daphne", "uvicorn"] and both.keep_going and both.proxy
    for wrong in ("hypercorn", "daphne,daphne", ","):
        with pytest.raises(SystemExit):
            parse_args(["--servers", wrong])


def test_each_server_kind_serves_on_a_port_or_an_inherited_socket(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from load import Server, server_command

    server = Server.for_repo(ROOT, "sqlite:///x", tmp_path, "s" * 50)
    assert server_command(server, "daphne", port=8123)[1:] == ["-m", "daphne", "-b", "127.0.0.1", "-p", "8123",
                                                              "config.asgi:application"]
    assert server_command(server, "daphne", fd=7)[1:] == ["-m", "daphne", "--fd", "7", "config.asgi:application"]
    # Uvicorn as `python -m tutor.serve` serves it (its options are test_serve's).
    assert server_command(server, "uvicorn", port=8123)[1:] == ["-m", "tutor.serve", "--host", "127.0.0.1", "--port", "8123"]
    assert server_command(server, "uvicorn", fd=7)[1:] == ["-m", "tutor.serve", "--fd", "7"]
    # A checkout from before tutor/serve.py: the same options through uvicorn's CLI. uvloop and
    # httptools (what the comparison is about), lifespan on (the loop watch runs), Daphne's frame limit.
    older = Server.for_repo(tmp_path, "sqlite:///x", tmp_path, "s" * 50)
    uvicorn = server_command(older, "uvicorn", port=8123)
    assert uvicorn[1:3] == ["-m", "uvicorn"] and uvicorn[-1] == "config.asgi:application"
    for option, value in (("--loop", "uvloop"), ("--http", "httptools"), ("--lifespan", "on"),
                          ("--ws-max-size", "1048576"), ("--port", "8123")):
        assert uvicorn[uvicorn.index(option) + 1] == value
    assert server_command(older, "uvicorn", fd=7)[-3:] == ["--fd", "7", "config.asgi:application"]
    with pytest.raises(ValueError):
        server_command(server, "hypercorn", port=1)


def test_the_proxy_row_runs_the_deployed_nginx_config_on_loopback(tmp_path):
    from bench.load_proxy import CONF, loopback_config, write_config

    text = loopback_config(8088, [9001, 9002])
    assert "listen 127.0.0.1:8088;" in text and "listen 80;" not in text
    assert "server 127.0.0.1:9001 max_fails" in text and "server 127.0.0.1:9002 max_fails" in text
    assert "web1:8000" not in text
    # Everything else as deployed: the websocket location and its timeouts are the file's own.
    assert "proxy_read_timeout 1500s;" in text and "least_conn;" in text and "proxy_read_timeout 1500s;" in CONF.read_text()
    with pytest.raises(ValueError):
        loopback_config(8088, [9001])  # the file has two upstream servers
    args = write_config(tmp_path, 8088, [9001, 9002], workers="auto", connections=8192)
    assert args == ["-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    main = (tmp_path / "nginx.conf").read_text()
    assert "worker_processes auto;" in main and "worker_connections 8192;" in main
    assert f"include {tmp_path}/parla.conf;" in main and (tmp_path / "parla.conf").read_text() == text


def test_servers_are_compared_side_by_side(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from load import comparison

    def row(server, n, processes, added, lag, proxy=False):
        return {"server": server, "learners": n, "processes": processes, "proxy": proxy,
                "tutor": {"added_p99": added}, "learner": {"added_p99": 1.0},
                "loop_lag": [{"p99_ms": lag, "max_ms": 40.0}] * processes, "daphne_cpu_per_process": [30.0] * processes,
                "cpu_s_per_session_minute": 0.2, "machine_busy_percent": 50.0, "daphne_waited_percent": 5.0,
                "handovers_ok": n, "broken": None if added < 100 else f"tutor audio p99 +{added:.0f} ms"}

    text = comparison([row("uvicorn", 100, 1, 40.0, 9.0), row("daphne", 100, 1, 255.0, 116.0),
                       row("uvicorn", 50, 1, 3.0, 2.0), row("daphne", 200, 2, 20.0, 5.0, proxy=True)])
    lines = text.splitlines()[2:]
    # By processes, learners, then Daphne before Uvicorn: each step's servers on adjacent lines.
    assert [line.split(" | ")[:3] for line in lines] == [
        ["| 50", "1", "uvicorn"], ["| 100", "1", "daphne"], ["| 100", "1", "uvicorn"], ["| 200", "2 behind nginx", "daphne"]]
    assert "| 255.0 |" in lines[1] and "116.0 / 40" in lines[1] and "tutor audio p99 +255 ms" in lines[1]
    assert "5.0 / 40 + 5.0 / 40" in lines[3]


def test_uvicorn_and_the_proxy_row_end_to_end(tmp_path):
    """One learner on one Uvicorn process, then two through nginx in front of two Uvicorn processes on
    Redis: the lifespan ran the loop watch (its figures logged at the stop) and nginx relayed."""
    import os

    from bench.load_proxy import nginx_binary

    if not os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is not set (the two-process row runs on the Redis layer)")
    if nginx_binary() is None and os.environ.get("CI") != "true":
        pytest.skip("nginx is not installed (apt-get install nginx; scripts/test does under CI=true)")
    result = tmp_path / "load.json"
    command = [
        sys.executable, str(ROOT / "bench" / "load.py"), "--ladder", "1", "--servers", "uvicorn", "--scale-out", "1",
        "--proxy", "--baseline-seconds", "2", "--tutor-audio-ms", "600", "--speech-ms", "400-500",
        "--session-timeout", "60", "--break-ms", "100000", "--database-url", database_url(),
        "--redis-url", os.environ["REDIS_URL"], "--no-doc", "--json", str(result),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = [row for rows in json.loads(result.read_text())["results"].values() for row in rows]

    assert (one["server"], one["processes"], one["proxy"]) == ("uvicorn", 1, False)
    assert (two["server"], two["processes"], two["proxy"]) == ("uvicorn", 2, True)
    for row in (one, two):
        assert row["handovers_ok"] == row["learners"] and row["errors"] == [] and row["broken"] is None, row["failures"]
        assert row["frames"]["tutor_received"] > 0 and row["frames"]["learner_received"] > 0
        # Every Uvicorn process ran the loop watch from the lifespan startup and logged it at its stop.
        assert len(row["loop_lag"]) == row["processes"] and all(lag and lag["ticks"] > 10 for lag in row["loop_lag"])
    assert set(one["cpu_via_parla"]) == {"simulator 0", "uvicorn 0", "parla driver 0"}
    assert one["proxy_cpu_percent"] is None
    # The learners went through nginx: its workers worked.
    assert two["proxy_cpu_percent"] > 0 and any(name.startswith("nginx worker") for name in two["cpu_via_parla"])
    assert "| 2 | 2 behind nginx" in done.stdout
