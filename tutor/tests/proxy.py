"""nginx in front of live servers, for tests: the Debian package run with the repository's own proxy
configuration (deploy/nginx/parla.conf, the file docker-compose.yml mounts), its listen port and its
upstream servers swapped for loopback ones, everything else as deployed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.load_proxy import nginx_binary as find_nginx, write_config
from tutor.tests.live import free_port, stop_process, wait_for_port


def nginx_binary() -> str:
    """The nginx binary; skipped without one, except under CI (scripts/test installs it there)."""
    found = find_nginx()
    if found:
        return found
    if os.environ.get("CI") == "true":
        raise RuntimeError("nginx is not installed (scripts/test installs the Debian package under CI=true)")
    pytest.skip("nginx is not installed (apt-get install nginx; scripts/test does under CI=true)")


@contextmanager
def nginx_proxy(upstream_ports: list[int]):
    """nginx on an ephemeral loopback port in front of `upstream_ports`; yields its base URL."""
    binary = nginx_binary()
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="parla-nginx-"))
    config = write_config(work, port, upstream_ports)
    check = subprocess.run([binary, "-t", *config], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([binary, *config, "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 10, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)  # SIGTERM: nginx's fast shutdown
        shutil.rmtree(work, ignore_errors=True)
