"""``create_app``: the FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from facetrust import __version__
from facetrust.config import Settings
from facetrust.serve import api, compat
from facetrust.serve.docs import install_docs
from facetrust.serve.errors import install_handlers
from facetrust.serve.logs import configure_logging
from facetrust.serve.middleware import (
    AccessGuardMiddleware,
    BodyLimitMiddleware,
    ConcurrencyLimitMiddleware,
    RequestContextMiddleware,
)
from facetrust.serve.services import ProtectorFactory, Services
from facetrust.serve.settings import ServeSettings

__all__ = ["create_app"]

DESCRIPTION = """
Find deepfaked faces in images and video, see the evidence (Grad-CAM heatmaps), and protect
your own photos. Uploads are typed by their content; every bad input is answered with a 4xx
and a one-line `detail`. The compatibility routes (`/predict`, `/gradcam`, `/protect`) answer
in the shapes of the projects they replace.
"""


def create_app(
    settings: Settings | None = None,
    detector: Any = None,
    *,
    protector_factory: ProtectorFactory | None = None,
) -> FastAPI:
    """Build the app. Nothing heavy happens here: models load at startup (the lifespan).

    Args:
        settings: ``ServeSettings`` (a plain ``Settings`` is upgraded; ``None`` reads the
            ``FACETRUST_*`` environment).
        detector: a ready ``Detector`` to serve instead of loading ``settings.model``.
        protector_factory: ``factory(strength) -> protector`` instead of
            ``facetrust.protect.Protector`` (for embedding and tests).
    """
    if settings is None:
        settings = ServeSettings()
    elif not isinstance(settings, ServeSettings):
        settings = ServeSettings(**settings.model_dump())
    services = Services(settings, detector=detector, protector_factory=protector_factory)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(services.start)
        try:
            yield
        finally:
            services.stop()

    app = FastAPI(
        title="facetrust",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    app.state.settings = settings
    install_handlers(app)
    app.include_router(api.router)
    app.include_router(compat.router)
    app.mount("/static", StaticFiles(directory=api.WEB_DIR), name="static")
    install_docs(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-Request-ID", "Authorization"],
            expose_headers=["X-Request-ID", "Location", "Retry-After"],
        )
    # outermost last: request context -> access guard -> concurrency limit -> body limit
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_upload_bytes, timeout_s=settings.body_timeout_s
    )
    app.add_middleware(ConcurrencyLimitMiddleware, limit=settings.max_active_requests)
    app.add_middleware(
        AccessGuardMiddleware,
        allowed_hosts=settings.host_names(),
        api_keys=settings.api_keys,
        cors_origins=settings.cors_origins,
    )
    app.add_middleware(RequestContextMiddleware)
    return app
