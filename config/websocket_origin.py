"""The websocket origin check, port included.

Channels' `AllowedHostsOriginValidator` compares only the Origin's host name with ALLOWED_HOSTS, so a
page on http://127.0.0.1:9999 (another program on the same machine) may open the sockets of a server
on :8000. Browsers send `Origin` on every websocket handshake; this validator admits it when it is
the server's own origin - the same host *and port* as the request's `Host` header, that host being
in ALLOWED_HOSTS (so a rebinding DNS name is refused) - or when it is listed in CSRF_TRUSTED_ORIGINS
(the public origin behind a proxy that rewrites `Host`), the same rule Django's CSRF check applies to
form posts. Anything else, a missing Origin included, is refused at the handshake with HTTP 403.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _host_port(netloc: str, default_port: int) -> tuple[str, int] | None:
    host, port = split_domain_port(netloc)
    if not host:
        return None
    try:
        return host, int(port) if port else default_port
    except ValueError:
        return None


def origin_allowed(origin: str | None, host_header: str | None) -> bool:
    """Whether a websocket handshake with this `Origin` may reach a server addressed as `host_header`."""
    if not origin:
        return False
    if origin.rstrip("/") in {o.rstrip("/") for o in settings.CSRF_TRUSTED_ORIGINS}:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in DEFAULT_PORTS or not host_header:
        return False
    default_port = DEFAULT_PORTS[parts.scheme]
    origin_host = _host_port(parts.netloc.lower(), default_port)
    # A Host without a port means the default port of the scheme the page itself was loaded over.
    request_host = _host_port(host_header.lower(), default_port)
    return (
        origin_host is not None
        and origin_host == request_host
        and validate_host(origin_host[0], settings.ALLOWED_HOSTS)
    )


class SameOriginValidator:
    """ASGI middleware: websocket handshakes only from the server's own origin (or a trusted one)."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(_header(scope, b"origin"), _header(scope, b"host")):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
