"""Process leases: a claim on work that dies with the process holding it, not after a fixed age.

Sessions are run, and pending assessments claimed, by a process named by `process_id()`. Heartbeats
(`services.heartbeat`) say a process was alive a while ago; after a `kill -9` they only go stale after
PARLA_STALE_SECONDS, and meanwhile nobody may take over what the dead process held. A lease says it at
once: each process holds a PostgreSQL session-level advisory lock, keyed by its id, on a connection of
its own for as long as it lives. When the process dies, however it dies, the kernel closes that
connection and PostgreSQL releases the lock ("a session-level advisory lock is held until explicitly
released or the session ends": PostgreSQL docs, Explicit Locking, 13.3.5 Advisory Locks). Any process
can then see from `pg_locks` that the claimer holds no lease: its sessions are ended and its claims
taken over by the next sweep or `grade_pending`, without waiting.

Only PostgreSQL has them: on SQLite (one development process) `alive()` answers None and the heartbeat's
age decides, as before. The lease needs a connection of its own that stays with its server session:
behind PgBouncer in transaction pooling point DATABASE_URL at PostgreSQL directly, or claims fall back
to ages.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import zlib
from collections.abc import Iterable

from django.db import connections

logger = logging.getLogger(__name__)

LEASE_CLASS = 0x50415241  # the advisory lock's first key ("PARA"): Parla's leases, apart from other locks

_lock = threading.Lock()
_held: dict[int, object] = {}  # pid -> the connection holding this process's lease
_ids: dict[int, str] = {}  # pid -> this process's id


def process_id() -> str:
    """Who runs sessions and claims work: this process (host:pid) and a random tag, so that a restarted
    process that gets the same pid (a container's pid 1) is someone else."""
    pid = os.getpid()
    if pid not in _ids:
        _ids[pid] = f"{socket.gethostname()}:{pid}:{secrets.token_hex(4)}"[:128]
    return _ids[pid]


def lease_key(claimer: str) -> int:
    """The advisory lock's second key for `claimer` (a positive int4). A collision (two live claimers
    with one key) only makes a dead claimer look alive: its work then waits for its age, as before."""
    return zlib.crc32(claimer.encode()) & 0x7FFFFFFF


def _postgres() -> bool:
    return connections["default"].vendor == "postgresql"


def hold() -> bool:
    """Take this process's lease if it does not hold it yet (idempotent); False where there are none."""
    pid = os.getpid()
    if pid in _held or not _postgres():
        return pid in _held
    with _lock:
        if pid in _held:
            return True
        import psycopg

        wrapper = connections["default"]
        params = wrapper.get_connection_params()
        params.pop("cursor_factory", None)
        conn = psycopg.connect(**params, autocommit=True)
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (LEASE_CLASS, lease_key(process_id())))
        _held[pid] = conn
    logger.info("process lease held", extra={"claimer": process_id()})
    return True


def release() -> None:
    """Give the lease up (a process that ends its work on purpose; the test run before it drops its
    database, which PostgreSQL refuses while the lease's connection uses it)."""
    conn = _held.pop(os.getpid(), None)
    if conn is not None:
        conn.close()


def alive(claimers: Iterable[str]) -> set[str] | None:
    """Which of `claimers` hold their lease now; None where leases cannot be seen (not PostgreSQL)."""
    claimers = {c for c in claimers if c}
    if not _postgres():
        return None
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %s AND objsubid = 2"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [LEASE_CLASS],
        )
        held = {int(row[0]) for row in cursor.fetchall()}
    return {c for c in claimers if lease_key(c) in held}


def dead(claimers: Iterable[str]) -> set[str]:
    """Which of `claimers` are known to be dead (hold no lease); none where leases cannot be seen."""
    claimers = {c for c in claimers if c}
    living = alive(claimers)
    return set() if living is None else claimers - living
