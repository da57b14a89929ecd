"""Running the app under uvicorn with connection hygiene: ``facetrust serve`` uses :func:`run`.

uvicorn alone has two gaps against slow or idle clients: no time limit on receiving a request's
headers, and ``limit_concurrency`` counts open connections, so a few hundred idle sockets make
every new request a 503 (a slowloris lock-out). :class:`GuardedH11Protocol` closes both:

- **header timeout**: a connection has ``header_timeout_s`` from its first byte (or from its
  opening) to deliver a complete request line and headers, else it is closed. Header size is
  capped by h11 (``h11_max_incomplete_event_size``, 16 KiB by default).
- **idle connections cannot exhaust the server**: beyond ``max_connections`` open connections a
  new one evicts the connection that has waited longest for its (next) request headers, if it
  has waited at least ``IDLE_GRACE_S`` (so a kept-alive client about to send is not cut off);
  busy connections are never evicted. Without such a connection the new one is still accepted,
  up to ``HARD_FACTOR`` x ``max_connections``; beyond that it gets a 503 JSON with
  ``Retry-After`` and is closed.
- the limit on requests handled at once is applied by the app
  (:class:`~facetrust.serve.middleware.ConcurrencyLimitMiddleware`), per request, with a 503
  JSON body and ``Retry-After`` that the access log records; the body of a refused request is
  read first, so the client sees the 503 rather than a connection reset.

Body timeouts (a stalled upload) are enforced by
:class:`~facetrust.serve.middleware.BodyLimitMiddleware` (408). One process, one event loop:
the models are loaded once and CPU work runs in threads, serialised where the models need it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from facetrust.serve.errors import RETRY_AFTER_S

__all__ = ["GuardedH11Protocol", "is_loopback", "run", "uvicorn_kwargs"]

log = logging.getLogger("facetrust.serve.connections")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` exposes the server only to this machine."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _busy_response() -> bytes:
    body = json.dumps({"detail": "the server is busy; retry later"}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nretry-after: {RETRY_AFTER_S}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and eviction of idle connections.

    Configure with :meth:`configure` before the server starts (class attributes: one server per
    process)."""

    header_timeout_s: float = 10.0
    max_connections: int = 256
    IDLE_GRACE_S = 1.0
    HARD_FACTOR = 2
    stats: dict[str, int] = {"header_timeouts": 0, "evicted": 0, "refused": 0}  # noqa: RUF012

    @classmethod
    def configure(cls, header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
        """A subclass bound to these limits (so tests can run servers with other limits)."""
        return type(
            "GuardedH11Protocol",
            (cls,),
            {
                "header_timeout_s": float(header_timeout_s),
                "max_connections": int(max_connections),
                "stats": {"header_timeouts": 0, "evicted": 0, "refused": 0},
            },
        )

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self._idle_since: float | None = time.monotonic()
        self._header_timer = None
        super().connection_made(transport)
        self._arm_header_timer()
        if len(self.connections) > self.max_connections:
            self._make_room()

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            type(self).stats["header_timeouts"] += 1
            log.info(
                "connection closed: no complete request headers in time",
                extra={"client": (self.client or ("-",))[0], "seconds": self.header_timeout_s},
            )
            self.transport.close()

    def _make_room(self) -> None:
        now = time.monotonic()
        idle = [
            c
            for c in self.connections
            if c is not self
            and isinstance(c, GuardedH11Protocol)
            and c._idle_since is not None
            and now - c._idle_since >= self.IDLE_GRACE_S
            and c._waiting_for_headers()
            and not c.transport.is_closing()
        ]
        if idle:
            oldest = min(idle, key=lambda c: c._idle_since)
            type(self).stats["evicted"] += 1
            log.info(
                "connection evicted: idle while the server is full",
                extra={"client": (oldest.client or ("-",))[0]},
            )
            oldest.transport.close()
            return
        if len(self.connections) <= self.HARD_FACTOR * self.max_connections:
            return  # every connection is busy or just went idle: accept this one too
        type(self).stats["refused"] += 1
        log.warning("connection refused: every connection is busy", extra={"status": 503})
        self.transport.write(_busy_response())
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            self._disarm_header_timer()
        elif self._waiting_for_headers():
            self._arm_header_timer()  # runs from the first byte of this request, not reset
        else:
            self._idle_since = None
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        self._idle_since = time.monotonic()
        super().on_response_complete()
        # the next request on a kept-alive connection gets uvicorn's keep-alive timeout first,
        # then (once it sends a byte) a fresh header timeout
        self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)


def uvicorn_kwargs(settings: Any) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` under ``settings``."""
    from facetrust.serve.logs import uvicorn_log_config

    return {
        "host": settings.host,
        "port": settings.port,
        "http": GuardedH11Protocol.configure(settings.header_timeout_s, settings.max_connections),
        "log_config": uvicorn_log_config(settings.log_level),
        "access_log": False,  # the app writes its own access log (RequestContextMiddleware)
        "limit_concurrency": None,  # per request, in the app; idle sockets do not count
        "timeout_keep_alive": 5,
        "backlog": 2048,
        "server_header": False,
    }


def run(settings: Any, app: Any = None) -> None:
    """Serve ``app`` (default: ``create_app(settings)``) with :func:`uvicorn_kwargs`."""
    import uvicorn

    from facetrust.serve.app import create_app

    uvicorn.run(app or create_app(settings), **uvicorn_kwargs(settings))
