"""What keeps other web sites out of the playground, as ASGI middleware around the app.

A page from another origin can make the user's browser send requests here; it cannot read
the answers (no CORS header is ever sent), but it could start runs. So:

- the Host header must name this server (Starlette's TrustedHostMiddleware): a DNS name
  rebound to 127.0.0.1 by an attacker's site is refused;
- every state-changing request (POST, DELETE) must say `Content-Type: application/json`,
  which a form or a "simple" cross-origin fetch cannot send without a CORS preflight, and
  the preflight is never granted;
- every answer says it may not be framed nor sniffed as another type.
"""

from __future__ import annotations

import ipaddress
import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'; "
     b"base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def allowed_hosts(host: str | None = None) -> list[str]:
    """The Host header names the server answers: loopback's, and `host` (the --host name)
    unless it is a wildcard address, which names no host a browser would type."""
    names = list(LOOPBACK_NAMES)
    if host:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:  # a name, such as my-laptop.local
            address = None
        if address is None or not address.is_unspecified:
            name = f"[{host}]" if address is not None and address.version == 6 else host
            if name.lower() not in names:
                names.append(name.lower())
    return names


class JsonOnly:
    """Refuse (415) a state-changing request whose body is not declared as JSON."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING:
            kind = Headers(scope=scope).get("content-type", "")
            if kind.split(";")[0].strip().lower() != "application/json":
                await _json_error(send, 415, f"{scope['method']} requests must send "
                                             f"Content-Type: application/json, got {kind or 'none'!r}")
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Add SECURITY_HEADERS to every answer."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _json_error(send: Send, status: int, text: str) -> None:
    body = json.dumps({"error": text}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
