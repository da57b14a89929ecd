"""Service settings: ``facetrust.config.Settings`` plus what the HTTP service needs.

Every field can be set as ``FACETRUST_<NAME>`` in the environment (``FACETRUST_CORS_ORIGINS``
takes a comma-separated list or a JSON list).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from facetrust.config import Settings

__all__ = ["ServeSettings", "default_job_dir"]

LogLevel = Literal["debug", "info", "warning", "error"]


def default_job_dir() -> Path:
    """``$XDG_STATE_HOME/facetrust/jobs`` (``~/.local/state/facetrust/jobs`` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or "~/.local/state"
    return Path(base).expanduser() / "facetrust" / "jobs"


class ServeSettings(Settings):
    """Settings of ``facetrust serve`` (and ``create_app``)."""

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=1, le=65535, description="TCP port")
    max_upload_bytes: int = Field(
        50 * 1024 * 1024, gt=0, description="largest request body, enforced while it streams in"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed to call the API from a browser"
    )
    workers: int = Field(1, ge=1, le=64, description="protection jobs run at the same time")
    queue_size: int = Field(8, ge=0, le=10_000, description="jobs waiting beyond the workers")
    job_dir: Path = Field(
        default_factory=default_job_dir, description="job store: SQLite file and result files"
    )
    job_ttl_hours: float = Field(
        7 * 24.0, gt=0, description="finished jobs older than this are deleted at startup"
    )
    protect_strength: Literal["low", "medium", "high"] = Field(
        "medium", description="protection strength when a request names none"
    )
    sync_protect_timeout_s: float = Field(
        600.0, gt=0, description="how long the compatibility route /protect waits for its job"
    )
    explain_method: Literal["gradcam", "gradcam++"] = Field(
        "gradcam", description="explanation method when a request names none"
    )
    max_connections: int = Field(
        256, ge=1, description="concurrent connections before the server answers 503"
    )
    log_level: LogLevel = Field("info", description="debug, info, warning or error")
    # a served video is decoded in memory: keep it shorter than the library default
    max_video_seconds: float = Field(600.0, gt=0, description="longest video accepted")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: object) -> object:
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                return json.loads(text)
            return [o.strip() for o in text.split(",") if o.strip()]
        return v

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v
