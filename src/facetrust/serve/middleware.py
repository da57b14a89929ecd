"""ASGI middleware: request ids, access logs, security headers, a last-resort 500, and the
upload limit enforced while the body streams in."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facetrust.serve.errors import error_body

__all__ = ["BodyLimitMiddleware", "RequestContextMiddleware", "UploadTooLarge"]

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


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with 413.

    A declared ``Content-Length`` above the limit is refused before a byte of the body is read;
    otherwise the bytes are counted as they arrive and reading stops at the limit, so a client
    cannot make the server buffer more than ``max_bytes`` (chunked uploads included).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

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

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
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
                if path == "/" or path.startswith("/static/"):
                    extra += [(b"content-security-policy", _CSP.encode())]
                    extra += [(b"x-frame-options", b"DENY")]
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
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
