"""nginx on loopback with the repository's own proxy configuration (deploy/nginx/parla.conf, the file
docker-compose.yml mounts), its listen port and its upstream servers swapped for loopback ones,
everything else as deployed. Used by the load benchmark's two-process row behind the proxy
(bench/load.py --proxy) and by the proxy test (tutor/tests/proxy.py). Standard library only: the
benchmark imports it without Django or pytest.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "deploy" / "nginx" / "parla.conf"
UPSTREAM_SERVER = re.compile(r"^(\s*server\s+)web\d+:8000(\s)", re.M)
TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> str | None:
    """The nginx binary (the Debian package's), or None."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


def loopback_config(listen: int, upstream_ports: list[int], conf: Path = CONF) -> str:
    """`conf` with `listen 80` and the `webN:8000` upstream servers on loopback ports."""
    text = conf.read_text()
    servers = UPSTREAM_SERVER.findall(text)
    if len(servers) != len(upstream_ports):
        raise ValueError(f"{len(servers)} upstream servers in {conf}, {len(upstream_ports)} given")
    ports = iter(upstream_ports)
    text = UPSTREAM_SERVER.sub(lambda m: f"{m.group(1)}127.0.0.1:{next(ports)}{m.group(2)}", text)
    text, listens = re.subn(r"^(\s*)listen 80;", rf"\g<1>listen 127.0.0.1:{listen};", text, flags=re.M)
    if listens != 1:
        raise ValueError(f"the proxy config {conf} should listen on port 80 once")
    return text


def write_config(work: Path, listen: int, upstream_ports: list[int], *, workers: str = "1",
                 connections: int = 1024) -> list[str]:
    """Write nginx.conf (the main context, everything under `work`) and parla.conf into `work`;
    the arguments that run nginx with them in the foreground (after the binary)."""
    os.chmod(work, 0o755)  # nginx's workers (an unprivileged user when run as root) use its temp dirs
    (work / "parla.conf").write_text(loopback_config(listen, upstream_ports))
    temp = "\n".join(f"  {kind}_temp_path {work}/{kind};" for kind in TEMP_KINDS)
    (work / "nginx.conf").write_text(
        f"worker_processes {workers};\nerror_log {work}/error.log info;\npid {work}/nginx.pid;\n"
        f"events {{ worker_connections {connections}; }}\n"
        f"http {{\n  access_log {work}/access.log;\n{temp}\n  include {work}/parla.conf;\n}}\n"
    )
    return ["-p", str(work), "-c", str(work / "nginx.conf")]
