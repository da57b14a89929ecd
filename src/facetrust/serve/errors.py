"""Errors to HTTP answers: short messages, the right 4xx, never a stack trace or a server path.

``InputError``/``MediaError`` become 400, 413, 415 or 422; ``NoModelError``/``ModelError``
503; anything unexpected a generic 500 (the details go to the server log only).
The compatibility routes answer in their seed projects' error shape (``{"error": ...}``).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from facetrust.errors import InputError, MediaError, ModelError, NoModelError, one_line
from facetrust.media.budget import DeadlineExceeded

__all__ = [
    "ApiError",
    "error_body",
    "error_response",
    "install_handlers",
    "status_for",
]

#: Seconds a client is told to wait (``Retry-After``) when the server is busy.
RETRY_AFTER_S = 5

log = logging.getLogger("facetrust.serve")

# Paths whose clients expect DeepGuard's / DEFAKE's error shape.
_DEEPGUARD_PATHS = frozenset({"/predict", "/gradcam"})
_DEFAKE_PATHS = frozenset({"/protect"})

_TOO_LARGE = (
    "image too large",
    "image is too large",
    "file too large",
    "video too long",
    "video frame too large",
    "video has too many frames",
    "video is too large",
)
_UNSUPPORTED = (
    "not a supported image",
    "not a readable video: content is not",
    "not a readable video: no decoder",
    "not a readable video: the content is an image",
    "explanations are computed for images",
    "photo protection works on images",
)


class ApiError(Exception):
    """An error the service raises itself, with its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def status_for(exc: BaseException) -> int:
    """HTTP status for a facetrust error."""
    if isinstance(exc, ModelError | DeadlineExceeded):
        return 503
    if isinstance(exc, MediaError):
        msg = str(exc).lower()
        if msg.startswith(_TOO_LARGE):
            return 413
        if msg.startswith(_UNSUPPORTED):
            return 415
        if msg.startswith("empty file"):
            return 400
        return 422
    if isinstance(exc, InputError):
        return 400
    return 500


def public_message(exc: BaseException) -> str:
    """The message a client may see for ``exc``: one line, capped, no internals."""
    if isinstance(exc, NoModelError):
        return "no detection model is installed on this server (set FACETRUST_MODEL)"
    if isinstance(exc, ModelError):
        return "the detection model could not be loaded; see the server log"
    if isinstance(exc, InputError | DeadlineExceeded):
        return one_line(exc)
    return "internal server error"


def error_body(path: str, message: str) -> dict:
    """The JSON error body for a request to ``path``."""
    if path in _DEEPGUARD_PATHS:
        return {"error": message}
    if path in _DEFAKE_PATHS:
        return {"success": False, "error": message}
    return {"detail": message}


def error_response(
    path: str, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(path, message), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    return one_line("invalid request: " + "; ".join(parts))


def install_handlers(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request.url.path, exc.status, exc.message, exc.headers)

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        status = status_for(exc)
        log.info("rejected input", extra={"status": status, "reason": one_line(exc)})
        return error_response(request.url.path, status, public_message(exc))

    @app.exception_handler(ModelError)
    async def _model_error(request: Request, exc: ModelError) -> JSONResponse:
        log.error("model unavailable", extra={"reason": one_line(exc)})
        return error_response(request.url.path, 503, public_message(exc))

    @app.exception_handler(DeadlineExceeded)
    async def _deadline(request: Request, exc: DeadlineExceeded) -> JSONResponse:
        log.warning("request over its deadline", extra={"path": request.url.path})
        return error_response(
            request.url.path, 503, public_message(exc), {"Retry-After": str(RETRY_AFTER_S)}
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request.url.path, 422, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(
            request.url.path, exc.status_code, one_line(detail), getattr(exc, "headers", None)
        )
