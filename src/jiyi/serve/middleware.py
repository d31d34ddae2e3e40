"""The ASGI middleware of `jiyi serve`, outermost first: `GuardMiddleware` (metrics, security
headers and the Content-Security-Policy, an escaped exception as a JSON 500), `HostMiddleware`
(400 for a Host header not on the allow-list: no DNS rebinding), CORS (when --cors-origin is
given, added by `create_app`), `AuthMiddleware` (the bearer token, before the body is read) and
`BodyMiddleware` (413 past --max-body-bytes, 400 for a JSON body that is not UTF-8)."""

import hmac
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jiyi.serve.errors import error_response, is_json
from jiyi.serve.metrics import Metrics

log = logging.getLogger("jiyi.serve")

DRAIN_LIMIT = 64 << 20  # an oversized body is read (and dropped) up to this, then cut off
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
# The page: its own script and style files only (no inline script, no eval), fetches to this
# server, the data: favicon and canvases; nothing from elsewhere, no framing.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Everything else (JSON, scripts, styles): a document that runs and loads nothing.
API_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"


def endpoint_of(scope: Scope) -> str:
    """The route template of a request (bounded label values), or "unmatched"."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class GuardMiddleware:
    """Outermost: metrics for every request, security headers, and the last line of defence:
    an exception that escaped everything else becomes a JSON 500 (logged, no traceback sent)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if b"content-security-policy" not in present:
                    kind = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                    csp = PAGE_CSP if kind.lower().startswith(b"text/html") else API_CSP
                    headers.append((b"content-security-policy", csp.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                response = error_response(500, "internal error; the server log has the details.")
                await response(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            endpoint = endpoint_of(scope)
            self.metrics.requests.labels(endpoint, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


def host_name(header: str) -> str:
    """The name of a Host header, without the port, lower-case, brackets off an IPv6 address.

    >>> host_name("LocalHost:8000"), host_name("[::1]:8000"), host_name("::1")
    ('localhost', '::1', '::1')
    """
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


class HostMiddleware:
    """400 for a request whose Host header names none of `allowed` (any port): a page on
    another site that rebinds its DNS name to this machine cannot reach the API (nor
    /v1/memory/add). "*" in `allowed` turns the check off."""

    def __init__(self, app: ASGIApp, allowed: list[str]):
        self.app = app
        self.allowed = {host_name(h) for h in allowed}
        self.any = "*" in allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.any:
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope.get("headers", []) if k.lower() == b"host"), None)
        name = host_name(header.decode("latin-1")) if header is not None else ""
        if name in self.allowed:
            await self.app(scope, receive, send)
            return
        shown = repr(name[:100]) if header is not None else "no Host header"
        message = (
            f"Host {shown} is not served here (allowed: {', '.join(sorted(self.allowed))}); "
            "start the server with --allowed-host NAME to answer another name."
        )
        await error_response(400, message, code="bad_host")(scope, receive, send)


def is_protected(path: str) -> bool:
    return path == "/metrics" or path == "/v1" or path.startswith("/v1/")


class AuthMiddleware:
    """Bearer-token auth for /v1/* and /metrics, checked before the body is read; the token is
    compared in constant time. /, /static/*, /healthz, /readyz and /openapi.json stay open."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_protected(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        header = b""
        for key, value in scope.get("headers", []):
            if key.lower() == b"authorization":
                header = value
                break
        scheme, _, credentials = header.strip().partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token):
            await self.app(scope, receive, send)
            return
        if not header:
            message, challenge = (
                "missing token: send the header Authorization: Bearer TOKEN.",
                "Bearer",
            )
        else:
            message, challenge = "wrong token.", 'Bearer error="invalid_token"'
        response = error_response(401, message, headers={"WWW-Authenticate": challenge})
        await response(scope, receive, send)


class BodyMiddleware:
    """Reads a request body whole before the app sees it: 413 past `limit` bytes (by
    Content-Length or as streamed; the rest is read and dropped, up to DRAIN_LIMIT, so the
    client gets the answer), and 400 when a JSON body is not valid UTF-8."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        declared = headers.get(b"content-length")
        too_large = (
            f"the body is larger than --max-body-bytes {self.limit}; send fewer or shorter texts."
        )
        try:
            declared_size = int(declared) if declared is not None else None
        except ValueError:
            declared_size = None
        if declared_size is not None and declared_size > DRAIN_LIMIT:
            await error_response(413, too_large)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        over = declared_size is not None and declared_size > self.limit
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                over = True
            if not over:
                chunks.append(chunk)
            if not message.get("more_body", False) or size > DRAIN_LIMIT:
                break
        if over:
            await error_response(413, too_large)(scope, receive, send)
            return
        body = b"".join(chunks)
        if is_json(headers.get(b"content-type", b"").decode("latin-1")):
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as e:
                message_text = f"the body is not valid UTF-8 (byte {e.start}); send UTF-8 JSON."
                await error_response(400, message_text, code="invalid_utf8")(scope, receive, send)
                return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


__all__ = [
    "API_CSP",
    "DRAIN_LIMIT",
    "PAGE_CSP",
    "SECURITY_HEADERS",
    "AuthMiddleware",
    "BodyMiddleware",
    "GuardMiddleware",
    "HostMiddleware",
    "endpoint_of",
    "host_name",
    "is_protected",
]
