"""ASGI middleware: request ids, access logs, security headers, a last-resort 500, the upload
limit and body timeout enforced while the body streams in, the limit on requests handled at
once (503 + Retry-After beyond it), and who may call (Host allow-list, Origin check on
state-changing requests, API keys)."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facetrust.serve.errors import RETRY_AFTER_S, error_body

__all__ = [
    "AccessGuardMiddleware",
    "BodyLimitMiddleware",
    "ConcurrencyLimitMiddleware",
    "RequestContextMiddleware",
    "UploadTooLarge",
]

log = logging.getLogger("facetrust.serve")
access = logging.getLogger("facetrust.serve.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


class UploadTooLarge(HTTPException):
    """The request body grew past the upload limit (raised from ``receive``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"upload too large: the limit is {limit / 1024**2:.1f} MiB")


async def _send_json(send: Send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class BodyTimeout(HTTPException):
    """The client stopped sending its request body (raised from ``receive``)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"request body timed out: nothing received for {seconds:g} s")


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with 413, and stalled ones with 408.

    A declared ``Content-Length`` above the limit is refused before a byte of the body is read;
    otherwise the bytes are counted as they arrive and reading stops at the limit, so a client
    cannot make the server buffer more than ``max_bytes`` (chunked uploads included). A wait of
    more than ``timeout_s`` for the next piece of the body ends the request with 408.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float | None = None) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _send_json(send, 400, error_body(path, "invalid Content-Length header"))
                return
            if length > self.max_bytes:
                exc = UploadTooLarge(self.max_bytes)
                await _send_json(send, 413, error_body(path, exc.detail))
                return

        received = 0
        limit = self.max_bytes

        timeout = self.timeout_s

        async def limited_receive() -> Message:
            nonlocal received
            if timeout is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), timeout)
                except TimeoutError:
                    raise BodyTimeout(timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise UploadTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class RequestContextMiddleware:
    """Outermost layer: request id, one JSON access-log line, security headers, and a generic
    500 for any exception that escaped the handlers (logged here with its traceback)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope.get("path", "")
        started = time.perf_counter()
        status: dict[str, Any] = {"code": None}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [
                    (b"x-request-id", request_id.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                ctype = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"")
                if path == "/" or path.startswith("/static/") or ctype.startswith(b"text/html"):
                    extra += [(b"content-security-policy", _CSP.encode())]
                    extra += [(b"x-frame-options", b"DENY")]
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # the client went away mid-request (e.g. mid-upload): nobody to answer, no error
            log.info("client disconnected", extra={"request_id": request_id, "path": path})
            if status["code"] is None:
                status["code"] = "disconnected"
        except HTTPException as exc:  # e.g. UploadTooLarge raised outside a route
            if status["code"] is not None:
                raise
            status["code"] = exc.status_code
            await _send_json(send, exc.status_code, error_body(path, str(exc.detail)))
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id, "path": path})
            if status["code"] is None:
                status["code"] = 500
                await _send_json(
                    send,
                    500,
                    error_body(path, "internal server error"),
                    [(b"x-request-id", request_id.encode())],
                )
        finally:
            access.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "path": path,
                    "status": status["code"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "client": (scope.get("client") or ("-",))[0],
                },
            )


class ConcurrencyLimitMiddleware:
    """At most ``limit`` requests handled at once; one more is answered 503 with a JSON body
    and ``Retry-After`` (and logged like any request). Idle connections do not count: only
    requests whose headers have arrived do. Its body is read and dropped first (up to
    ``drain_bytes``), so the client reads the 503 instead of a connection reset. Paths in
    ``exempt`` (``/health``) are always served."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        exempt: Iterable[str] = ("/health",),
        drain_bytes: int = 64 * 1024**2,
    ) -> None:
        self.app = app
        self.limit = int(limit)
        self.exempt = frozenset(exempt)
        self.drain_bytes = int(drain_bytes)
        self.active = 0
        self.rejected = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            self.rejected += 1
            await _drain(receive, self.drain_bytes)
            path = scope.get("path", "")
            body = error_body(path, "the server is busy; retry later")
            await _send_json(send, 503, body, [(b"retry-after", str(RETRY_AFTER_S).encode())])
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


async def _drain(receive: Receive, limit: int, timeout: float = 5.0) -> None:
    """Read and drop a request body (at most ``limit`` bytes, ``timeout`` s per piece)."""
    seen = 0
    while seen <= limit:
        try:
            message = await asyncio.wait_for(receive(), timeout)
        except (TimeoutError, HTTPException):
            return
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Paths served without an API key: the page, its files, the docs and the schema, /health.
_PUBLIC = re.compile(r"^/(?:$|static/|docs|redoc$|openapi\.json$|health$)")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_of(value: str) -> str:
    """The host name of a ``Host`` header value (port and IPv6 brackets removed, lower case)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


class AccessGuardMiddleware:
    """Who may call the API.

    - ``Host`` must be an IP address or one of ``allowed_hosts`` (``*`` allows any): a page on
      another site that re-binds its DNS name to 127.0.0.1 sends its own name as ``Host`` and
      is refused (400). An IP literal cannot be re-bound (the page's origin is then that
      address itself), so clients on a LAN may use the server's address.
    - A state-changing request (POST, PUT, PATCH, DELETE) that carries an ``Origin`` must come
      from this server's own origin or one of ``cors_origins`` (403): a page elsewhere cannot
      queue work on a local server with a cross-site form post.
    - With ``api_keys``, every route but the page, its static files, the docs, the schema and
      ``/health`` needs ``Authorization: Bearer <key>`` (401); keys are compared in constant
      time.
    """

    def __init__(
        self,
        app: ASGIApp,
        allowed_hosts: Iterable[str],
        api_keys: Iterable[str] = (),
        cors_origins: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.allowed_hosts = frozenset(host_of(h) if h != "*" else "*" for h in allowed_hosts)
        self.api_keys = [k.encode() for k in api_keys if k]
        self.cors_origins = frozenset(o.rstrip("/").lower() for o in cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = self._check(scope)
        if problem is None:
            await self.app(scope, receive, send)
            return
        status, message, headers = problem
        path = scope.get("path", "")
        log.warning(
            "request refused",
            extra={"status": status, "reason": message, "path": path},
        )
        await _drain(receive, 1024**2, timeout=2.0)
        await _send_json(send, status, error_body(path, message), headers)

    def _check(self, scope: Scope) -> tuple[int, str, list] | None:
        given = _header(scope, b"host")  # absent only in HTTP/1.0: nothing to re-bind
        host = host_of(given or "")
        if (
            given is not None
            and "*" not in self.allowed_hosts
            and host not in self.allowed_hosts
            and not _is_ip(host)
        ):
            return 400, "unknown Host header: this server answers only its own names", []
        if scope.get("method") in _STATE_CHANGING:
            origin = _header(scope, b"origin")
            if origin is not None and not self._origin_ok(origin, scope):
                return 403, "cross-origin request refused (Origin not allowed)", []
        public = _PUBLIC.match(scope.get("path", "")) or scope.get("method") == "OPTIONS"
        if self.api_keys and not public:
            auth = _header(scope, b"authorization") or ""
            scheme, _, token = auth.partition(" ")
            given = token.strip().encode()
            ok = scheme.lower() == "bearer" and any(
                hmac.compare_digest(given, key) for key in self.api_keys
            )
            if not ok:
                return (
                    401,
                    "an API key is required: send 'Authorization: Bearer <key>'",
                    [(b"www-authenticate", b"Bearer")],
                )
        return None

    def _origin_ok(self, origin: str, scope: Scope) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if origin in self.cors_origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (sandboxed frames, file: pages) and anything odd
        host = (_header(scope, b"host") or "").strip().lower()
        return parts.netloc == host
