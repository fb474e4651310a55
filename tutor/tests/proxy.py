"""nginx in front of live servers, for tests: the Debian package run with the repository's own proxy
configuration (deploy/nginx/parla.conf, the file docker-compose.yml mounts), its listen port and its
upstream servers swapped for loopback ones, everything else as deployed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from tutor.tests.live import ROOT, free_port, stop_process, wait_for_port

CONF = ROOT / "deploy" / "nginx" / "parla.conf"
UPSTREAM_SERVER = re.compile(r"^(\s*server\s+)web\d+:8000(\s)", re.M)


def nginx_binary() -> str:
    """The nginx binary; skipped without one, except under CI (scripts/test installs it there)."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if found:
        return found
    if os.environ.get("CI") == "true":
        raise RuntimeError("nginx is not installed (scripts/test installs the Debian package under CI=true)")
    pytest.skip("nginx is not installed (apt-get install nginx; scripts/test does under CI=true)")


def loopback_config(listen: int, upstream_ports: list[int]) -> str:
    """deploy/nginx/parla.conf with `listen 80` and the `webN:8000` upstream servers on loopback ports."""
    text = CONF.read_text()
    servers = UPSTREAM_SERVER.findall(text)
    assert len(servers) == len(upstream_ports), f"{len(servers)} upstream servers in {CONF}, {len(upstream_ports)} given"
    ports = iter(upstream_ports)
    text = UPSTREAM_SERVER.sub(lambda m: f"{m.group(1)}127.0.0.1:{next(ports)}{m.group(2)}", text)
    text, listens = re.subn(r"^(\s*)listen 80;", rf"\g<1>listen 127.0.0.1:{listen};", text, flags=re.M)
    assert listens == 1, "the proxy config should listen on port 80 once"
    return text


@contextmanager
def nginx_proxy(upstream_ports: list[int]):
    """nginx on an ephemeral loopback port in front of `upstream_ports`; yields its base URL."""
    binary = nginx_binary()
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="parla-nginx-"))
    os.chmod(work, 0o755)  # nginx's workers (an unprivileged user when run as root) use its temp dirs
    (work / "parla.conf").write_text(loopback_config(port, upstream_ports))
    temp = "\n".join(f"  {kind}_temp_path {work}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (work / "nginx.conf").write_text(
        f"worker_processes 1;\nerror_log {work}/error.log info;\npid {work}/nginx.pid;\n"
        f"events {{ worker_connections 1024; }}\n"
        f"http {{\n  access_log {work}/access.log;\n{temp}\n  include {work}/parla.conf;\n}}\n"
    )
    check = subprocess.run([binary, "-t", "-p", str(work), "-c", str(work / "nginx.conf")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([binary, "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 10, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)  # SIGTERM: nginx's fast shutdown
        shutil.rmtree(work, ignore_errors=True)
