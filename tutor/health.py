"""`/healthz` (liveness) and `/readyz` (readiness) of one server process, for the proxy, compose and
orchestrators.

Answered at the ASGI edge, before Django's middleware: a health check comes from inside the
deployment (compose's healthcheck asks `localhost`), so it must not depend on ALLOWED_HOSTS, the HTTPS
redirect, sessions or the login throttle; and liveness must not depend on the database.

- `/healthz`: 200 "ok" whenever the process's event loop answers at all.
- `/readyz`: 200 "ready" when this process should be given new learners; 503 with the reasons
  otherwise: draining (SIGTERM received, tutor/drain.py), at capacity (PARLA_MAX_SESSIONS_PER_PROCESS,
  tutor/runtime/capacity.py), its event loop stalling (tutor/loopwatch.py), the database or the channel
  layer unreachable within CHECK_SECONDS.
"""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from tutor import drain, loopwatch
from tutor.runtime import capacity

CHECK_SECONDS = 2.0  # each dependency answers within this, or it counts as unreachable


def _why(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {CHECK_SECONDS:g} s"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def _ping_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _database() -> str | None:
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            await database_sync_to_async(_ping_database)()
    except Exception as exc:  # any failure to answer is the reason, said as it is
        return f"database unreachable ({_why(exc)})"
    return None


async def _channel_layer() -> str | None:
    """A message through the layer and back (a new channel of this process): the path the live view
    and the learners' supersede messages take."""
    layer = get_channel_layer()
    if layer is None:
        return None
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            channel = await layer.new_channel()
            await layer.send(channel, {"type": "health.check"})
            await layer.receive(channel)
    except Exception as exc:
        return f"channel layer unreachable ({_why(exc)})"
    return None


async def not_ready() -> list[str]:
    """Why this process should take no new learner now (empty: ready). Draining answers at once."""
    if drain.current.draining:
        return ["draining"]
    reasons = []
    maximum = settings.PARLA_MAX_SESSIONS_PER_PROCESS
    if capacity.sessions.taken >= maximum:
        reasons.append(f"at capacity ({capacity.sessions.taken} of {maximum} sessions)")
    stalled = loopwatch.overloaded()
    if stalled is not None:
        reasons.append(f"event loop stalled ({round(100 * stalled)} % of the last {loopwatch.RECENT_SECONDS:g} s)")
    reasons += [reason for reason in await asyncio.gather(_database(), _channel_layer()) if reason]
    return reasons


async def liveness() -> tuple[int, str]:
    return 200, "ok"


async def readiness() -> tuple[int, str]:
    reasons = await not_ready()
    return (503, "not ready: " + "; ".join(reasons)) if reasons else (200, "ready")


ENDPOINTS = {"/healthz": liveness, "/readyz": readiness}


class HealthEndpoints:
    """ASGI middleware: answers ENDPOINTS itself, passes everything else to `app`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        endpoint = ENDPOINTS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None:
            return await self.app(scope, receive, send)
        status, text = await endpoint()
        body = (text + "\n").encode()
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        })
        await send({"type": "http.response.body", "body": body if scope.get("method") != "HEAD" else b""})
