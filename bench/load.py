"""Load benchmark: how many learners one Parla server process carries, measured from outside.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/parla_bench REDIS_URL=redis://127.0.0.1:6379/0 \\
      .venv/bin/python bench/load.py [--ladder 10,50,100,200,300,400,600] [--repo PATH ...] [--quick]
      [--servers daphne,uvicorn] [--keep-going] [--proxy]

For each N of the ladder, on loopback only:

1. the simulator starts in its own process(es) (bench/load_sim.py: real-time pace, stamped audio);
2. baseline: N learners (bench/load_driver.py, a separate process) talk straight to the simulator for
   `--baseline-seconds`;
3. one server process serves Parla from `--repo` (DEBUG off, the simulator as its upstream); after one
   warm-up session, N logged-in learners each run a whole placement session through it: they stream
   100 ms microphone frames in real time, answer out loud, answer every flush, hear the handover and
   the summary, until `state: ended`. With `--servers daphne,uvicorn` each ASGI server in turn, against
   the same simulator processes and baseline, the same learners and seeds (which goes first alternates
   from step to step);
4. the row: added latency of tutor and learner audio (via Parla minus direct, and the ratio), frames
   lost and reordered, the server's CPU per session-minute and memory per session, reply delays,
   handovers completed without error, how busy the machine was and how long the server's event loop
   waited for a CPU; with a warning when the driving process, the simulator, other work on the machine
   or a full machine may have limited the run.

The ladder stops after the first N that breaks (a failed handover, an error, a lost frame, or p99
added latency over `--break-ms`), for each server on its own; `--keep-going` measures every N. Then
two server processes with the Redis channel layer carry 2N for the largest N that held (on every
server compared): on one port (SO_REUSEPORT: each gets its own listening socket through `--fd`; the
kernel spreads connections), or with `--proxy` each on a port of its own behind nginx run with
deploy/nginx/parla.conf (bench/load_proxy.py), as deployed. Prints the tables (and the servers side by
side) and writes them into docs/benchmarks.md (its own section, by `--label`). Every child process is
stopped on exit, Ctrl-C or when this process dies.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import datetime
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from doc import write_section  # noqa: E402
from load_proxy import nginx_binary, write_config  # noqa: E402
from load_stamp import proc_cpu_seconds, proc_rss_bytes, thread_cpu_seconds, thread_cpu_wait_seconds  # noqa: E402

DEFAULT_LADDER = "10,50,100,200,300,400,600"
QUICK_LADDER = "5"
BASELINE, VIA_PARLA = 1, 2  # stamp phases: which learners a frame came from
HOT_CPU_PERCENT = 80.0  # a helper process above this (of one core) may be what limits the run
WAITED_PERCENT = 10.0  # Daphne's event loop waiting for a CPU this much of the time: the machine was full
TARGET_P99_MS = 20.0  # issue 14's target for added p99 latency


# --- child processes -------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the child, before exec: receive SIGTERM when the benchmark process dies (Linux prctl)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Children:
    """Every process the benchmark started; all stopped on exit, Ctrl-C or SIGTERM."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], *, log: Path, cpus: set[int] | None = None, nice: int = 0, **kwargs) -> subprocess.Popen:
        """Start `args`, its output in `log`; on the CPUs `cpus` only, when given (Linux affinity), at
        `nice` (higher: it yields the CPU to the others)."""

        def prepare() -> None:
            _die_with_parent()
            if cpus:
                os.sched_setaffinity(0, cpus)
            if nice:
                os.nice(nice)

        with open(log, "ab") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, preexec_fn=prepare, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 10) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.procs)):
            self.stop(proc, timeout=5)


CHILDREN = Children()


def _on_signal(signum, _frame):
    CHILDREN.stop_all()
    raise SystemExit(128 + signum)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"process {proc.args[:3]} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


# --- measuring processes ----------------------------------------------------------------------------

@dataclass
class Watched:
    """CPU and memory of one process over a phase, sampled by `Monitor`."""

    name: str
    pid: int
    cpu0: float = 0.0
    cpu: float = 0.0
    rss0: int = 0
    rss_peak: int = 0
    waited0: float | None = None
    waited: float | None = None  # seconds its main thread was runnable but had no CPU; None: unreadable
    main0: float = 0.0
    main: float = 0.0  # CPU seconds of its main thread (Daphne's event loop); `cpu` less this: its other threads
    windows: list[float] = field(default_factory=list)  # CPU % of one core per window
    _last: tuple[float, float] | None = None

    def sample(self, now: float, first: bool = False) -> None:
        try:
            cpu, rss, main = proc_cpu_seconds(self.pid), proc_rss_bytes(self.pid), thread_cpu_seconds(self.pid, self.pid)
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return
        try:
            waited = thread_cpu_wait_seconds(self.pid)
        except (OSError, IndexError, ValueError):  # no schedstat (a kernel without it): not measured
            waited = None
        if first:
            self.cpu0, self.rss0, self.rss_peak, self._last = cpu, rss, rss, (now, cpu)
            self.waited0, self.main0 = waited, main
            self.windows = []
        self.cpu = cpu - self.cpu0
        self.main = main - self.main0
        self.waited = None if waited is None or self.waited0 is None else waited - self.waited0
        self.rss_peak = max(self.rss_peak, rss)
        if self._last and now - self._last[0] >= 2.0:
            self.windows.append(100 * (cpu - self._last[1]) / (now - self._last[0]))
            self._last = (now, cpu)

    @property
    def peak_percent(self) -> float:
        return max(self.windows, default=0.0)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / ticks, sum(values[:8]) / ticks


class Monitor:
    """Samples the watched processes every half second while a phase runs."""

    def __init__(self, watched: list[Watched]) -> None:
        self.watched = watched
        self.started = time.monotonic()
        for w in watched:
            w.sample(self.started, first=True)
        self.machine0 = machine_busy()

    def sample(self) -> None:
        now = time.monotonic()
        for w in self.watched:
            w.sample(now)

    def machine_percent(self) -> float:
        """How busy the whole machine was over the phase, % of all its cores."""
        busy, total = machine_busy()
        return 100 * (busy - self.machine0[0]) / (total - self.machine0[1]) if total > self.machine0[1] else 0.0

    def others_percent(self) -> float:
        """CPU used by processes the benchmark did not start, % of one core, over the phase."""
        busy, _total = machine_busy()
        wall = time.monotonic() - self.started
        ours = sum(w.cpu for w in self.watched)
        return max(0.0, 100 * ((busy - self.machine0[0]) - ours) / wall) if wall > 0 else 0.0


# --- the server under test ------------------------------------------------------------------------------

@dataclass
class Server:
    """One checkout of Parla to measure: where it is, how to run its Python, its environment."""

    repo: Path
    python: str
    env: dict
    label: str
    commit: str

    @classmethod
    def for_repo(cls, repo: Path, database_url: str, media: Path, secret: str, refuse: bool = False) -> "Server":
        venv = repo / ".venv" / "bin" / "python"
        python = str(venv) if venv.exists() else sys.executable
        env = {k: v for k, v in os.environ.items() if k not in {"OPENAI_API_KEY", "REDIS_URL", "DATABASE_URL"}}
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=database_url,
            DEBUG="false",  # production: no debug-only validation of what is sent upstream
            SECRET_KEY=secret,
            ALLOWED_HOSTS="127.0.0.1",
            SESSION_COOKIE_SECURE="false",
            SECURE_SSL_REDIRECT="false",
            PARLA_GRADER="rules",
            # The ladder measures the process, not its configured cap nor its refusals while its loop
            # stalls; --refuse keeps both as deployed (the defaults, or the values in this environment).
            PARLA_MAX_SESSIONS_PER_PROCESS="100000",
            PARLA_SHED_STALLED_PERCENT="0",
            PARLA_LOOP_STALL_MS="20",  # the loop's pauses counted as stalls: the target's 20 ms (tutor/loopwatch.py)
            MEDIA_ROOT=str(media),
            LOG_LEVEL=os.environ.get("LOG_LEVEL", "INFO"),
        )
        if refuse:
            for name in ("PARLA_MAX_SESSIONS_PER_PROCESS", "PARLA_SHED_STALLED_PERCENT"):
                env.pop(name)
                if name in os.environ:  # a deployment's own value, as it would run
                    env[name] = os.environ[name]
        git = ["git", "-C", str(repo)]
        branch = subprocess.run([*git, "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True, text=True).stdout.strip()
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        return cls(repo, python, env, branch or repo.name, commit + ("+changes" if dirty else ""))

    def manage(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run([self.python, "manage.py", *args], cwd=self.repo, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def learners(self, count: int) -> list[str]:
        """Migrates the database, then `count` learners (users loadbench-NNNN with a Learner profile),
        each logged in: their session cookies, made as Django's test client's force_login makes them
        (a real session row; no password hashing, which would only load the machine). One Django
        start-up for both."""
        code = (
            "import json\n"
            "from django.core.management import call_command\n"
            "call_command('migrate', interactive=False, verbosity=0)\n"
            "from django.conf import settings\n"
            "from django.contrib.auth import get_user_model\n"
            "from django.test import Client\n"
            "from assessments.models import Learner\n"
            "cookies = []\n"
            f"for i in range({count}):\n"
            "    user, made = get_user_model().objects.get_or_create(username=f'loadbench-{i:04d}')\n"
            "    if made:\n"
            "        user.set_unusable_password(); user.save()\n"
            "    Learner.objects.get_or_create(user=user)\n"
            "    client = Client()\n"
            "    client.force_login(user)\n"
            "    name = settings.SESSION_COOKIE_NAME\n"
            "    cookies.append(f'{name}={client.cookies[name].value}')\n"
            "print('COOKIES=' + json.dumps(cookies))\n"
        )
        out = self.manage("shell", "-c", code)
        line = next(line for line in out.splitlines() if line.startswith("COOKIES="))
        return json.loads(line.removeprefix("COOKIES="))


HELPERS_NICE = 19  # --yield: the helpers' nice value; CFS then gives a nice-0 server ~98 % of a contended CPU


def placement(args: argparse.Namespace, processes: int) -> tuple[list[set[int]] | None, set[int] | None]:
    """With --pin: each Daphne process on a CPU of its own, the helpers (simulators, drivers) on the
    rest, so that the server's event loop never waits for a CPU the benchmark took (what a production
    server has: the learners' machines and the API are elsewhere). (None, None) without --pin or
    without a CPU left for the helpers. (--yield does the same by priority instead: no CPU is idle
    that a helper could use.)"""
    cpus = sorted(os.sched_getaffinity(0))
    if not args.pin or len(cpus) <= processes:
        return None, None
    return [{cpu} for cpu in cpus[:processes]], set(cpus[processes:])


def start_simulators(count: int, port: int, args: argparse.Namespace, work: Path, tag: str,
                     cpus: set[int] | None = None, nice: int = 0) -> list[tuple[subprocess.Popen, Path]]:
    sims = []
    for i in range(count):
        stats = work / f"sim-{tag}-{i}.json"
        command = [sys.executable, str(BENCH / "load_sim.py"), "--port", str(port), "--stats", str(stats),
                   "--pace", "1", "--true-level", "A1", "--seed", str(args.seed + i), "--reuse-port"]
        if args.tutor_audio_ms:
            command += ["--audio-ms", str(args.tutor_audio_ms)]
        sims.append((CHILDREN.start(command, log=work / f"sim-{tag}-{i}.log", cwd=ROOT, cpus=cpus, nice=nice), stats))
    wait_for_port(port, 20, [p for p, _ in sims])
    return sims


def stop_simulators(sims) -> dict:
    """Stop them; merged learner-audio stats by phase."""
    merged: dict[str, dict] = {}
    for proc, stats in sims:
        CHILDREN.stop(proc)
        if not stats.exists():
            continue
        for phase, entry in json.loads(stats.read_text())["phases"].items():
            into = merged.setdefault(phase, {"latency_ms": [], "received": 0, "lost": 0, "reordered": 0, "clients": 0})
            into["latency_ms"] += entry["latency_ms"]
            for key in ("received", "lost", "reordered", "clients"):
                into[key] += entry[key]
    return merged


# The ASGI servers a run can compare (--servers). Uvicorn as `python -m tutor.serve` serves it
# (uvloop's event loop, httptools' HTTP parser, the websockets-sansio implementation, Daphne's 1 MiB
# frame limit, the drain on SIGTERM). A checkout from before tutor/serve.py existed
# runs the same options through uvicorn's CLI, its graceful shutdown bounded so a process the
# benchmark stops logs its loop's figures within Children.stop's 10 s.
SERVER_KINDS = ("daphne", "uvicorn")
UVICORN_OPTIONS = ["--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio", "--ws-max-size", "1048576",
                   "--lifespan", "on", "--timeout-graceful-shutdown", "5"]


def server_command(server: Server, kind: str, *, port: int | None = None, fd: int | None = None) -> list[str]:
    """The command that serves `server` with the ASGI server `kind`, on a loopback `port` or an
    inherited listening socket `fd`."""
    where = ["--fd", str(fd)] if fd is not None else None
    if kind == "daphne":
        where = where or ["-b", "127.0.0.1", "-p", str(port)]
        return [server.python, "-m", "daphne", *where, "config.asgi:application"]
    if kind == "uvicorn":
        where = where or ["--host", "127.0.0.1", "--port", str(port)]
        if (server.repo / "tutor" / "serve.py").exists():
            return [server.python, "-m", "tutor.serve", *where]
        return [server.python, "-m", "uvicorn", *UVICORN_OPTIONS, *where, "config.asgi:application"]
    raise ValueError(f"unknown server {kind!r} (one of {', '.join(SERVER_KINDS)})")


def start_servers(server: Server, kind: str, count: int, sim_url: str, redis_url: str | None, work: Path, tag: str,
                  cpus: list[set[int]] | None = None, own_ports: bool = False):
    """`count` server processes of `kind` serving `server`: on one port (SO_REUSEPORT, each process with
    its own listening socket: the kernel spreads connections), or each on a port of its own with
    `own_ports` (a proxy in front). Returns (ports, processes, their logs)."""
    env = {**server.env, "PARLA_REALTIME_URL": sim_url, "CHANNELS_PREFIX": f"loadbench-{os.getpid()}-{tag}"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    procs, logs, ports = [], [], []
    if count == 1 or own_ports:
        for i in range(count):
            ports.append(free_port())
            logs.append(work / f"{kind}-{tag}-{i}.log")
            procs.append(CHILDREN.start(server_command(server, kind, port=ports[-1]), log=logs[-1], cwd=server.repo,
                                        env=env, cpus=cpus and cpus[i]))
    else:
        ports.append(free_port())
        for i in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(("127.0.0.1", ports[0]))
            sock.listen(1024)
            fd = sock.fileno()
            logs.append(work / f"{kind}-{tag}-{i}.log")
            procs.append(CHILDREN.start(server_command(server, kind, fd=fd), log=logs[-1], cwd=server.repo, env=env,
                                        pass_fds=(fd,), cpus=cpus and cpus[i]))
            sock.close()  # the child holds its own copy of the listening socket
    for port in ports:
        wait_for_port(port, 30, procs)
    return ports, procs, logs


def start_proxy(upstream_ports: list[int], work: Path, tag: str) -> tuple[int, subprocess.Popen, list[int]]:
    """nginx with deploy/nginx/parla.conf (bench/load_proxy.py) in front of `upstream_ports`, its
    workers as the official image runs them (`worker_processes auto`). Returns (its port, the master
    process, the worker processes' pids)."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx): --proxy runs the Debian package")
    port = free_port()
    conf = work / f"nginx-{tag}"
    conf.mkdir()
    config = write_config(conf, port, upstream_ports, workers="auto", connections=8192)
    check = subprocess.run([binary, "-t", *config], capture_output=True, text=True)
    if check.returncode:
        raise RuntimeError(f"nginx -t failed: {check.stderr}")
    proc = CHILDREN.start([binary, *config, "-g", "daemon off;"], log=conf / "stdout.log")
    wait_for_port(port, 10, [proc])
    return port, proc, _children(proc.pid)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def loop_lag(log: Path) -> dict | None:
    """The figures of the "event loop lag" line a server process logs when it stops (tutor/loopwatch.py),
    or None (a checkout without it, or a process that did not stop cleanly)."""
    found = None
    try:
        for line in log.read_text(errors="replace").splitlines():
            if " event loop lag " in line:
                found = {k: json.loads(v) for k, v in re.findall(r"(\w+)=(\[[^\]]*\]|\S+)", line.split(" event loop lag ", 1)[1])}
    except OSError:
        return None
    return found


async def _warm_up_one(base_url: str, cookie: str, timeout: float = 20) -> None:
    """One short session: the server imports and connects what the first session needs."""
    from websockets.asyncio.client import connect

    async with connect(base_url.replace("http", "ws", 1) + "/ws/tutor/",
                       additional_headers={"Cookie": cookie, "Origin": base_url}) as ws:
        async with asyncio.timeout(timeout):
            async for raw in ws:
                if isinstance(raw, bytes):
                    return  # the tutor is speaking: everything a session needs has run once
                event = json.loads(raw)
                if event.get("type") == "state" and event.get("state") == "ready":
                    await ws.send(json.dumps({"type": "session.start"}))


def warm_up(base_url: str, cookies: list[str]) -> None:
    async def all_of_them():
        await asyncio.gather(*(_warm_up_one(base_url, c) for c in cookies))

    asyncio.run(all_of_them())


def run_driver(plan: dict, work: Path, name: str, watched: list[Watched], deadline_s: float,
               cpus: set[int] | None = None, nice: int = 0) -> dict:
    """Run the learners in driver processes (plan["clients"] split among them) while sampling the
    watched processes and the drivers; the learners' results and each process's CPU over the phase."""
    drivers = plan.pop("drivers")
    procs = []
    for i in range(drivers):
        part = {**plan, "clients": plan["clients"][i::drivers]}
        plan_path, result_path = work / f"plan-{name}-{i}.json", work / f"result-{name}-{i}.json"
        plan_path.write_text(json.dumps(part))
        proc = CHILDREN.start([sys.executable, str(BENCH / "load_driver.py"), str(plan_path), str(result_path)],
                              log=work / f"driver-{name}-{i}.log", cwd=ROOT, cpus=cpus, nice=nice)
        procs.append((proc, result_path))
    driver_watch = [Watched(f"{plan['mode']} driver {i}", p.pid) for i, (p, _) in enumerate(procs)]
    monitor = Monitor(watched + driver_watch)
    deadline = time.monotonic() + deadline_s
    while any(p.poll() is None for p, _ in procs):
        if time.monotonic() > deadline:
            for p, _ in procs:
                CHILDREN.stop(p)
            raise TimeoutError(f"the {name} learners did not finish within {deadline_s:.0f} s")
        monitor.sample()
        time.sleep(0.5)
    monitor.sample()
    wall = time.monotonic() - monitor.started
    helpers = {w.name: {"avg_percent": round(100 * w.cpu / wall, 1), "peak_percent": round(w.peak_percent, 1)}
               for w in watched + driver_watch}
    learners = []
    for proc, result_path in procs:
        CHILDREN.stop(proc)
        if proc.returncode != 0 or not result_path.exists():
            raise RuntimeError(f"driver failed ({proc.returncode}); see {work}/driver-{name}-*.log")
        learners += json.loads(result_path.read_text())["learners"]
    return {"learners": learners, "wall_s": wall, "others_percent": monitor.others_percent(),
            "machine_percent": monitor.machine_percent(), "helpers": helpers}


# --- one row ----------------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _cat(learners: list[dict], key: str) -> list[float]:
    return [v for learner in learners for v in learner[key]]


def run_rung(server: Server, n: int, processes: int, kinds: list[str], args, cookies: list[str], redis_url: str | None,
             work: Path, proxy: bool = False) -> list[tuple[str, dict | Exception]]:
    """One step of the ladder: the baseline straight to the simulator once, then N learners through
    each server kind of `kinds` in turn (same simulator processes, same learners and seeds; each kind's
    learner audio told apart by its stamp phase). With `proxy`, through nginx in front of the
    processes. (kind, its row or why it could not be measured), in `kinds`' order."""
    tag = f"{server.commit}-{n}x{processes}{'-proxy' if proxy else ''}"
    sims_count = args.sim_procs or max(1, -(-n // 100))
    drivers = args.drivers or max(1, -(-n // 150))
    sim_port = free_port()
    sim_url = f"ws://127.0.0.1:{sim_port}/v1/realtime"
    print(f"[{server.label}] {n} learners, {processes} process(es): baseline straight to the simulator "
          f"({sims_count} simulator process(es), {drivers} driver process(es))", file=sys.stderr, flush=True)
    server_cpus, helper_cpus = placement(args, processes)
    nice = HELPERS_NICE if args.helpers_yield else 0  # the simulators' and the drivers'
    sims = start_simulators(sims_count, sim_port, args, work, tag, helper_cpus, nice)
    sim_watch = [Watched(f"simulator {i}", p.pid) for i, (p, _) in enumerate(sims)]
    ramp = args.ramp_seconds if args.ramp_seconds is not None else min(10.0, max(1.0, n / 20))
    common = {"seed": args.seed, "ramp_s": ramp, "drivers": drivers, "speech_ms": args.speech_ms}
    measured: list[tuple[str, dict | Exception]] = []
    try:
        base_plan = {**common, "mode": "direct", "phase": BASELINE, "seconds": args.baseline_seconds, "timeout_s": 0,
                     "clients": [{"index": i, "url": sim_url} for i in range(n)]}
        base = run_driver(base_plan, work, f"{tag}-direct", sim_watch, args.baseline_seconds + ramp + 60, helper_cpus, nice)
        for index, kind in enumerate(kinds):
            phase = VIA_PARLA + index
            print(f"[{server.label}] {n} learners via Parla on {kind}{' behind nginx' if proxy else ''}",
                  file=sys.stderr, flush=True)
            try:
                measured.append((kind, via_server(server, kind, n, processes, phase, common, args, cookies, sim_url,
                                                  redis_url, work, f"{tag}-{kind}", server_cpus, helper_cpus, nice,
                                                  sim_watch, proxy)))
            except (RuntimeError, TimeoutError, OSError) as exc:
                measured.append((kind, exc))
    finally:
        upstream = stop_simulators(sims)
    rows = []
    for index, (kind, via) in enumerate(measured):
        if isinstance(via, Exception):
            rows.append((kind, via))
            continue
        row = summarize(n, processes, base, via["via"], upstream, via["watch"], via["lags"], args,
                        phase=VIA_PARLA + index, proxy_watch=via["proxy_watch"])
        row.update(server=kind, proxy=proxy, pinned=server_cpus is not None, helpers_yield=args.helpers_yield)
        rows.append((kind, row))
    return rows


def via_server(server: Server, kind: str, n: int, processes: int, phase: int, common: dict, args, cookies: list[str],
               sim_url: str, redis_url: str | None, work: Path, tag: str, server_cpus, helper_cpus, nice: int,
               sim_watch: list[Watched], proxy: bool) -> dict:
    """N learners through `processes` processes of the server `kind` (behind nginx with `proxy`)."""
    ports, procs, logs = start_servers(server, kind, processes, sim_url, redis_url if processes > 1 else None, work,
                                       tag, server_cpus, own_ports=proxy)
    proxy_proc = None
    try:
        proxy_watch = []
        if proxy:
            port, proxy_proc, workers = start_proxy(ports, work, tag)
            proxy_watch = [Watched(f"nginx worker {i}", pid) for i, pid in enumerate(workers)]
        else:
            (port,) = ports
        base_url = f"http://127.0.0.1:{port}"
        warm_up(base_url, cookies[-min(len(cookies), 2 * processes):])
        watch = [Watched(f"{kind} {i}", p.pid) for i, p in enumerate(procs)]
        plan = {**common, "mode": "parla", "phase": phase, "seconds": 0, "timeout_s": args.session_timeout,
                "clients": [{"index": i, "url": base_url, "cookie": cookies[i]} for i in range(n)]}
        via = run_driver(plan, work, f"{tag}-parla", sim_watch + watch + proxy_watch,
                         args.session_timeout + common["ramp_s"] + 60, helper_cpus, nice)
    finally:
        for proc in procs:
            CHILDREN.stop(proc)
        if proxy_proc is not None:
            CHILDREN.stop(proxy_proc)
    return {"via": via, "watch": watch, "lags": [loop_lag(log) for log in logs], "proxy_watch": proxy_watch}


def summarize(n, processes, base, via, upstream, server_watch, lags, args, phase: int = VIA_PARLA,
              proxy_watch: list[Watched] = ()) -> dict:
    direct_learners, parla_learners = base["learners"], via["learners"]
    tutor_direct, tutor_via = _cat(direct_learners, "tutor_latency_ms"), _cat(parla_learners, "tutor_latency_ms")
    up_direct = upstream.get(str(BASELINE), {"latency_ms": [], "received": 0, "lost": 0, "reordered": 0})
    up_via = upstream.get(str(phase), {"latency_ms": [], "received": 0, "lost": 0, "reordered": 0})
    session_minutes = sum(learner["session_s"] for learner in parla_learners) / 60
    daphne_cpu = sum(w.cpu for w in server_watch)
    rss_growth = sum(max(0, w.rss_peak - w.rss0) for w in server_watch)
    handovers_ok = sum(1 for x in parla_learners if x["ended"] and x["assessment"] == "delivered" and not x["errors"])
    error_codes = sorted({c for x in parla_learners for c in x["errors"]})
    failures = [x["failure"] for x in parla_learners if x["failure"]]

    def latency(direct: list[float], via_parla: list[float]) -> dict:
        out = {"direct_p50": pct(direct, 0.5), "direct_p99": pct(direct, 0.99), "via_p50": pct(via_parla, 0.5),
               "via_p99": pct(via_parla, 0.99), "samples_direct": len(direct), "samples_via": len(via_parla)}
        for p in ("p50", "p99"):
            d, v = out[f"direct_{p}"], out[f"via_{p}"]
            out[f"added_{p}"] = None if d is None or v is None else v - d
            out[f"ratio_{p}"] = None if not d or v is None else v / d
        return out

    warnings = []
    servers = {w.name for w in server_watch}
    for measured, name in ((base, "baseline"), (via, "via Parla")):
        for helper, cpu in measured["helpers"].items():
            if helper not in servers and cpu["peak_percent"] > HOT_CPU_PERCENT:
                warnings.append(f"{helper} at {cpu['peak_percent']:.0f}% of a core ({name})")
    lag = pct(_cat(parla_learners, "mic_lag_ms") + _cat(direct_learners, "mic_lag_ms"), 0.99) or 0.0
    if lag > 20:
        warnings.append(f"driver late by {lag:.0f} ms (p99) sending frames")
    waits = [w.waited for w in server_watch]
    waited = 100 * sum(waits) / via["wall_s"] / processes if via["wall_s"] and None not in waits else None
    if waited is not None and waited > WAITED_PERCENT:
        warnings.append(f"the machine was full: the server's event loop waited for a CPU {waited:.0f}% of the time")
    others = max(base["others_percent"], via["others_percent"])
    if others > 25:
        warnings.append(f"other work on the machine used {others:.0f}% of a core")

    row = {
        "learners": n,
        "processes": processes,
        "tutor": latency(tutor_direct, tutor_via),
        "learner": latency(up_direct["latency_ms"], up_via["latency_ms"]),
        "reply": {"direct_p50": pct(_cat(direct_learners, "replies_ms"), 0.5),
                  "via_p50": pct(_cat(parla_learners, "replies_ms"), 0.5),
                  "via_p99": pct(_cat(parla_learners, "replies_ms"), 0.99),
                  "samples_via": len(_cat(parla_learners, "replies_ms"))},
        "frames": {"tutor_received": sum(x["frames_received"] for x in parla_learners),
                   "tutor_lost": sum(x["tutor_lost"] for x in parla_learners),
                   "tutor_reordered": sum(x["tutor_reordered"] for x in parla_learners),
                   "learner_sent": sum(x["frames_sent"] for x in parla_learners),
                   "learner_received": up_via["received"], "learner_lost": up_via["lost"],
                   "learner_reordered": up_via["reordered"],
                   "direct_tutor_lost": sum(x["tutor_lost"] for x in direct_learners),
                   "direct_learner_lost": up_direct["lost"]},
        "daphne_cpu_percent": 100 * daphne_cpu / via["wall_s"] / processes if via["wall_s"] else None,
        "daphne_cpu_per_process": [round(100 * w.cpu / via["wall_s"], 1) for w in server_watch],
        # With --proxy: nginx's workers, % of one core summed (on the path, on the same machine).
        "proxy_cpu_percent": round(sum(100 * w.cpu / via["wall_s"] for w in proxy_watch), 1) if proxy_watch else None,
        # Each process's event loop thread and its other threads (Channels' database thread, asyncio's
        # default executor): CPU % of one core. Python in another thread takes the GIL from the loop.
        "daphne_threads": [{"loop": round(100 * w.main / via["wall_s"], 1),
                            "others": round(100 * (w.cpu - w.main) / via["wall_s"], 1)} for w in server_watch],
        # Each process's own measure of its stalls (tutor/loopwatch.py): how late its loop's timer ran.
        "loop_lag": lags,
        "cpu_s_per_session_minute": daphne_cpu / session_minutes if session_minutes else None,
        "machine_busy_percent": round(via["machine_percent"], 1),
        "daphne_waited_percent": waited,
        "rss_mib_per_session": rss_growth / n / 2**20,
        "rss_mib_idle": [round(w.rss0 / 2**20, 1) for w in server_watch],
        "session_s_median": statistics.median([x["session_s"] for x in parla_learners]) if parla_learners else None,
        "handovers_ok": handovers_ok,
        "refused": sum(1 for x in parla_learners if "at_capacity" in x["errors"]),  # with --refuse
        "errors": error_codes,
        "error_count": sum(len(x["errors"]) for x in parla_learners),
        "failures": failures[:5],
        "cpu_baseline": base["helpers"],
        "cpu_via_parla": via["helpers"],
        "others_percent": round(others, 1),
        "warnings": warnings,
    }
    row["broken"] = broken(row, args.break_ms)
    return row


def broken(row: dict, break_ms: float) -> str | None:
    """Why this N is past what the server carries, or None."""
    f = row["frames"]
    if row["handovers_ok"] < row["learners"]:
        refused = row.get("refused", 0)
        failed = row["learners"] - row["handovers_ok"] - refused
        return ", ".join(part for part in (f"{failed} handovers failed" if failed else "",
                                           f"{refused} refused at capacity" if refused else "") if part)
    if row["errors"]:
        return "errors: " + ", ".join(row["errors"])
    if f["tutor_lost"] or f["learner_lost"] or f["tutor_reordered"] or f["learner_reordered"]:
        return "frames lost or reordered"
    for kind in ("tutor", "learner"):
        added = row[kind]["added_p99"]
        if added is None:
            return f"no {kind} audio measured"
        if added > break_ms:
            return f"{kind} audio p99 +{added:.0f} ms"
    return None


# --- the tables ---------------------------------------------------------------------------------------

def _ms(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _percent(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}%"


def _added(lat: dict) -> str:
    parts = []
    for p in ("p50", "p99"):
        a, r = lat[f"added_{p}"], lat[f"ratio_{p}"]
        parts.append("-" if a is None else f"{a:+.1f} ({r:.1f}x)" if r else f"{a:+.1f}")
    return " / ".join(parts)


def _threads(row: dict) -> str:
    return " + ".join(f"{t['loop']:.0f}% / {t['others']:.0f}%" for t in row.get("daphne_threads", [])) or "-"


def _lags(row: dict) -> str:
    """Per process: its loop's lag p99 / max (ms), the seconds its stalls added up to, and the seconds
    the garbage collector ran (all generations)."""
    return " + ".join(
        "-" if lag is None else f"{_ms(lag['p99_ms'])} / {_ms(lag['max_ms'], 0)}, {lag['stalled_ms'] / 1000:.1f}"
        + (f", gc {sum(lag['gc_ms']) / 1000:.1f}" if "gc_ms" in lag else "")
        for lag in row.get("loop_lag", [])
    ) or "-"


def _errors(row: dict) -> str:
    return f"{row['error_count']} ({', '.join(row['errors'])})" if row["error_count"] else "0"


def _helpers(cpu: dict) -> str:
    """Average CPU of the simulator and driver processes (% of one core, summed per kind)."""
    sim = sum(v["avg_percent"] for k, v in cpu.items() if k.startswith("simulator"))
    drivers = sum(v["avg_percent"] for k, v in cpu.items() if "driver" in k)
    return f"{sim:.0f}% / {drivers:.0f}%"


def table(rows: list[dict]) -> str:
    lines = [
        "| learners | processes | tutor audio added p50 / p99 ms (ratio) | via Parla p50 / p99 | direct p50 / p99 "
        "| learner audio added p50 / p99 ms (ratio) | via Parla p50 / p99 | direct p50 / p99 "
        "| reply p50 via / direct (s) | frames tutor / learner | lost | reordered | handovers ok "
        "| server CPU | loop / other threads | loop lag p99 / max ms, stalled s, gc s | CPU s / session-min | RSS / session "
        "| simulator / driver CPU | machine busy / loop waited | errors | warnings |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, u, f = r["tutor"], r["learner"], r["frames"]
        reply = r["reply"]
        lines.append(
            f"| {r['learners']} | {r['processes']}{' (pinned)' if r.get('pinned') else ''}"
            f"{' behind nginx (' + _percent(r['proxy_cpu_percent']) + ' CPU)' if r.get('proxy') else ''}"
            f"{' (helpers yield)' if r.get('helpers_yield') else ''} | {_added(t)} | {_ms(t['via_p50'])} / {_ms(t['via_p99'])} "
            f"| {_ms(t['direct_p50'])} / {_ms(t['direct_p99'])} | {_added(u)} | {_ms(u['via_p50'])} / {_ms(u['via_p99'])} "
            f"| {_ms(u['direct_p50'])} / {_ms(u['direct_p99'])} "
            f"| {_ms(reply['via_p50'] and reply['via_p50'] / 1000, 2)} / {_ms(reply['direct_p50'] and reply['direct_p50'] / 1000, 2)} "
            f"| {f['tutor_received']} / {f['learner_received']} | {f['tutor_lost'] + f['learner_lost']} "
            f"| {f['tutor_reordered'] + f['learner_reordered']} | {r['handovers_ok']} / {r['learners']}"
            f"{' (' + str(r['refused']) + ' refused)' if r.get('refused') else ''} "
            f"| {' + '.join(f'{c:.0f}%' for c in r['daphne_cpu_per_process'])} | {_threads(r)} | {_lags(r)} "
            f"| {_ms(r['cpu_s_per_session_minute'], 2)} "
            f"| {r['rss_mib_per_session']:.2f} MiB | {_helpers(r['cpu_via_parla'])} "
            f"| {r['machine_busy_percent']:.0f}% / {_percent(r['daphne_waited_percent'])} | {_errors(r)} "
            f"| {'; '.join(r['warnings']) or '-'}{' (broke: ' + r['broken'] + ')' if r['broken'] else ''} |"
        )
    return "\n".join(lines) + "\n"


def comparison(rows: list[dict]) -> str:
    """The server kinds side by side, step by step (--servers with more than one)."""
    lines = [
        "| learners | processes | server | tutor audio added p99 ms | learner audio added p99 ms | loop lag p99 / max ms "
        "| server CPU | CPU s / session-min | machine busy / loop waited | handovers ok | broke |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["processes"], r["learners"], SERVER_KINDS.index(r["server"]))):
        lags = [lag for lag in r.get("loop_lag", []) if lag]
        lag = " + ".join(f"{_ms(x['p99_ms'])} / {_ms(x['max_ms'], 0)}" for x in lags) or "-"
        lines.append(
            f"| {r['learners']} | {r['processes']}{' behind nginx' if r.get('proxy') else ''} | {r['server']} "
            f"| {_ms(r['tutor']['added_p99'])} | {_ms(r['learner']['added_p99'])} | {lag} "
            f"| {' + '.join(f'{c:.0f}%' for c in r['daphne_cpu_per_process'])} | {_ms(r['cpu_s_per_session_minute'], 2)} "
            f"| {r['machine_busy_percent']:.0f}% / {_percent(r['daphne_waited_percent'])} "
            f"| {r['handovers_ok']} / {r['learners']} | {r['broken'] or '-'} |"
        )
    return "\n".join(lines) + "\n"


def cpu_description(cpuinfo: str) -> str:
    """The first CPU of /proc/cpuinfo: its name, family and model (a virtual machine's name may say only
    "AMD EPYC", whatever generation it is) and clock. Machines of one kind differ: the same code carried
    200 learners on one and about 100 on another (docs/benchmarks.md), so a row says which it ran on."""
    first = cpuinfo.split("\n\n", 1)[0]
    fields = dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in first.splitlines()) if v)
    parts = [fields.get("model name", "unknown CPU")]
    if "cpu family" in fields and "model" in fields:
        parts.append(f"family {fields['cpu family']} model {fields['model']}")
    try:
        parts.append(f"{float(fields['cpu MHz']) / 1000:.2f} GHz")
    except (KeyError, ValueError):
        pass
    return ", ".join(parts)


def header(args, servers: list[Server], started: datetime.datetime, elapsed: float, database_url: str) -> str:
    try:
        cpu_model = cpu_description(Path("/proc/cpuinfo").read_text())
    except OSError:
        cpu_model = "unknown CPU"
    engine = "PostgreSQL" if database_url.startswith("postgres") else "SQLite (not comparable: set DATABASE_URL)"
    return (
        f"Run {started:%Y-%m-%d %H:%M} ({elapsed / 60:.1f} min) on {os.cpu_count()} cores ({cpu_model}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}); database {engine}; "
        f"server: " + ", ".join(f"`{s.label}` at {s.commit}" for s in servers) + ". "
        f"Command: `{' '.join(['.venv/bin/python', 'bench/load.py', *sys.argv[1:]])}`.\n"
    )


# --- the command -----------------------------------------------------------------------------------------

def redis_reachable(url: str | None) -> bool:
    if not url:
        return False
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=2):
            return True
    except OSError:
        return False


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ladder", default=None, help=f"learners per step, comma-separated (default {DEFAULT_LADDER})")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: ladder {QUICK_LADDER}, an 8 s baseline, then 2 x {QUICK_LADDER} on two processes")
    parser.add_argument("--repo", action="append", type=Path, help="checkout to serve (repeat for before/after; default this one)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                        help="the benchmark's database (default $DATABASE_URL, else a new SQLite file); it is migrated "
                             "and gets users loadbench-NNNN")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="for the two-process row (default $REDIS_URL)")
    parser.add_argument("--scale-out", default="auto",
                        help="N of the two-process row carrying 2N: a number, 'auto' (largest N that held) or 'off'")
    parser.add_argument("--baseline-seconds", type=float, default=None, help="baseline duration (default 30; 8 with --quick)")
    parser.add_argument("--session-timeout", type=float, default=300, help="a learner's session must end within this")
    parser.add_argument("--ramp-seconds", type=float, default=None, help="learners arrive over this (default N/20, 1-10 s)")
    parser.add_argument("--tutor-audio-ms", type=int, default=3000,
                        help="audio per tutor response (simulator knob audio_ms_per_response; 0 = by text length)")
    parser.add_argument("--speech-ms", default="2000-4000", help="length of each spoken answer, min-max ms (default 2000-4000)")
    parser.add_argument("--break-ms", type=float, default=100.0, help="p99 added latency that ends the ladder")
    parser.add_argument("--sim-procs", type=int, default=None, help="simulator processes (default one per 100 learners)")
    parser.add_argument("--drivers", type=int, default=None, help="driver processes (default one per 150 learners)")
    parser.add_argument("--max-minutes", type=float, default=90, help="no new step starts after this")
    parser.add_argument("--label", default=None, help="section of docs/benchmarks.md to write (default 'smoke' with --quick, else 'full')")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--json", type=Path, default=None, help="also write every row, with its raw measures, here")
    parser.add_argument("--pin", action="store_true",
                        help="each Daphne process on a CPU of its own, the simulators and drivers on the others")
    parser.add_argument("--yield", dest="helpers_yield", action="store_true",
                        help=f"the simulators and drivers at nice {HELPERS_NICE}: the server first on every CPU")
    parser.add_argument("--refuse", action="store_true",
                        help="the server refuses new sessions past PARLA_MAX_SESSIONS_PER_PROCESS and while its loop "
                             "stalls, as deployed (off by default: the ladder measures the process past that "
                             "point); refused learners are counted apart")
    parser.add_argument("--servers", default="daphne",
                        help=f"ASGI servers to measure at each step, comma-separated, in turn against the same simulator "
                             f"and baseline ({', '.join(SERVER_KINDS)}; default daphne, the production server)")
    parser.add_argument("--keep-going", action="store_true",
                        help="measure every step of the ladder, also after one that broke (to compare servers at the same N)")
    parser.add_argument("--proxy", action="store_true",
                        help="the two-process row through nginx (deploy/nginx/parla.conf, the Debian package) in front of "
                             "the processes, each on a port of its own, instead of one SO_REUSEPORT port")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    args.servers = [kind.strip() for kind in args.servers.split(",") if kind.strip()]
    unknown = [kind for kind in args.servers if kind not in SERVER_KINDS]
    if unknown or not args.servers or len(set(args.servers)) < len(args.servers):
        parser.error(f"--servers: one or more of {', '.join(SERVER_KINDS)}, each once (got {','.join(args.servers)})")
    args.ladder = [int(x) for x in (args.ladder or (QUICK_LADDER if args.quick else DEFAULT_LADDER)).split(",")]
    low, _, high = args.speech_ms.partition("-")
    args.speech_ms = [int(low), int(high or low)]
    if args.baseline_seconds is None:
        args.baseline_seconds = 8.0 if args.quick else 30.0
    args.label = args.label or ("smoke" if args.quick else "full")
    args.repo = [r.resolve() for r in (args.repo or [ROOT])]
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    started, t0 = datetime.datetime.now(), time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="parla-loadbench-"))
    database_url = args.database_url or f"sqlite:///{work / 'db.sqlite3'}"
    secret = secrets.token_urlsafe(50)
    print(f"logs and raw results in {work} (removed after a run in which every step was measured without error)",
          file=sys.stderr)
    servers = [Server.for_repo(repo, database_url, work / "media", secret, args.refuse) for repo in args.repo]
    scale_out_possible = redis_reachable(args.redis_url)
    results: dict[str, list[dict]] = {}
    notes: list[str] = []
    interrupted: BaseException | None = None

    def step(server: Server, n: int, processes: int, kinds: list[str], redis_url: str | None,
             proxy: bool = False) -> dict[str, dict]:
        """One step for each server kind of `kinds`: their rows (a kind that could not be measured is
        left out, with a note)."""
        try:
            measured = run_rung(server, n, processes, kinds, args, cookies, redis_url, work, proxy)
        except (RuntimeError, TimeoutError, OSError) as exc:
            measured = [(kind, exc) for kind in kinds]
        rows = {}
        for kind, row in measured:
            if isinstance(row, Exception):
                notes.append(f"`{server.label}` on {kind}, {n} learners on {processes} process(es): not measured ({row}); "
                             f"logs in {work}")
                print(notes[-1], file=sys.stderr)
                continue
            results[result_key(server, kind)].append(row)
            print(table([row]), flush=True)
            rows[kind] = row
        return rows

    def result_key(server: Server, kind: str) -> str:
        return f"{server.label} at {server.commit}" + (f", {kind}" if args.servers != ["daphne"] else "")

    try:
        scale_out = None if args.scale_out in ("auto", "off") else int(args.scale_out)
        need = 2 * max(args.ladder + [scale_out or 0])
        cookies = servers[0].learners(need + 4)  # migrates the database too
        for index, server in enumerate(servers):
            for kind in args.servers:
                results[result_key(server, kind)] = []
            if index:
                server.manage("migrate", "--noinput")  # this checkout's migrations, if it has more
            held: dict[str, int] = {}
            going = list(args.servers)
            for rung, n in enumerate(args.ladder):
                if (time.monotonic() - t0) / 60 > args.max_minutes:
                    notes.append(f"time limit ({args.max_minutes:.0f} min) reached: the ladder stopped before {n}")
                    break
                # The kinds take turns going first, so that neither always runs on a machine the other warmed.
                order = going[rung % len(going):] + going[:rung % len(going)]
                rows = step(server, n, 1, order, None)
                for kind in order:
                    row = rows.get(kind)
                    if row is not None and not row["broken"]:
                        held[kind] = n
                    elif not args.keep_going:
                        going.remove(kind)
                if not going:
                    break
            # A smoke run exercises the two-process row whatever its one-process step showed; compared
            # servers carry the same N there: the largest that held on every one of them.
            all_held = min((held.get(kind, 0) for kind in args.servers), default=0) or None
            target = scale_out or {"auto": max(args.ladder) if args.quick else all_held, "off": None}[args.scale_out]
            if args.scale_out == "auto" and not target:
                notes.append("two-process row skipped: no step held on " + ("every server" if len(args.servers) > 1 else "one process")
                             + " (--scale-out N runs it at 2N all the same)")
            elif target and not scale_out_possible:
                notes.append("two-process row skipped: no reachable Redis (--redis-url or REDIS_URL)")
            elif target:
                step(server, 2 * target, 2, list(args.servers), args.redis_url, proxy=args.proxy)
    except (KeyboardInterrupt, SystemExit) as exc:
        interrupted = exc
        notes.append("interrupted: the rows above are what was measured before")
    finally:
        CHILDREN.stop_all()
    elapsed = time.monotonic() - t0
    text = header(args, servers, started, elapsed, database_url) + "\n"
    for name, rows in results.items():
        text += f"Server `{name}`:\n\n" + table(rows) + "\n"
    all_rows = [row for rows in results.values() for row in rows]
    if len(args.servers) > 1:
        text += "Servers side by side:\n\n" + comparison(all_rows) + "\n"
    text += "".join(f"- {note}\n" for note in notes)
    print(text)
    if interrupted is not None:
        raise interrupted
    if args.json:
        args.json.write_text(json.dumps({"header": header(args, servers, started, elapsed, database_url),
                                         "results": results}, indent=1))
    if not args.no_doc:
        title = "Smoke run (small N on a shared machine: not a capacity measurement)" if args.quick else "Ladder"
        write_section(args.output, f"load-{args.label}", f"### Load: {title} [{args.label}]\n\n{text}")
    if keep_logs(all_rows, notes):
        print(f"logs kept in {work}: a step was not measured or had errors", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return all_rows


def keep_logs(rows: list[dict], notes: list[str]) -> bool:
    """The servers' logs are what tells why a step failed: kept when a step was not measured, or a
    learner saw an error or a failed handover."""
    return any("not measured" in note for note in notes) or any(
        row["error_count"] or row["failures"] or row["handovers_ok"] < row["learners"] for row in rows
    )


if __name__ == "__main__":
    main()
