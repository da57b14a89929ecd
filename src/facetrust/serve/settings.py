"""Service settings: ``facetrust.config.Settings`` plus what the HTTP service needs.

Every field can be set as ``FACETRUST_<NAME>`` in the environment (``FACETRUST_CORS_ORIGINS``,
``FACETRUST_API_KEYS`` and ``FACETRUST_ALLOWED_HOSTS`` take a comma-separated list or a JSON
list).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from facetrust.config import Settings
from facetrust.names import DEFAULT_PROTECT_PRESET, ProtectPreset

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
    protect_strength: ProtectPreset = Field(
        DEFAULT_PROTECT_PRESET,
        description="protection preset (subtle, balanced, strong) when a request names none",
    )
    sync_protect_timeout_s: float = Field(
        600.0, gt=0, description="how long the compatibility route /protect waits for its job"
    )
    explain_method: Literal["gradcam", "gradcam++"] = Field(
        "gradcam", description="explanation method when a request names none"
    )
    max_connections: int = Field(
        256, ge=1, description="open connections before idle ones are evicted for new ones"
    )
    log_level: LogLevel = Field("info", description="debug, info, warning or error")
    # a served video is decoded in memory: keep it shorter than the library default
    max_video_seconds: float = Field(600.0, gt=0, description="longest video accepted")

    # ---- work and memory budgets (see facetrust.media.budget) ----
    analysis_max_pixels: int | None = Field(
        16_000_000, gt=0, description="uploads above this many pixels are analysed reduced"
    )
    max_video_decoded_bytes: int = Field(
        128 * 1024**2, gt=0, description="RGB bytes of the sampled video frames, all together"
    )
    max_video_decode_pixels: int = Field(
        8_000_000_000, gt=0, description="frames decoded x pixels per frame, per video"
    )
    request_timeout_s: float = Field(
        60.0, gt=0, description="work on one request stops after this (503 + Retry-After)"
    )
    memory_budget_mb: int = Field(
        1536, ge=64, description="decoded pixels in flight at once (the decode gate), in MiB"
    )
    inference_slots: int = Field(
        2, ge=1, le=64, description="detections run side by side (an explanation runs alone)"
    )
    max_active_requests: int = Field(
        64, ge=1, description="requests handled at once; more get 503 + Retry-After"
    )
    micro_batch: bool = Field(
        False,
        description="score the faces of concurrent detections together, one batch at a time "
        "(with inference_slots >= 8; no gain measured on 2 shared cores, see docs/onnx.md)",
    )
    batch_max_faces: int = Field(32, ge=1, le=1024, description="most faces in one micro-batch")
    batch_wait_ms: float = Field(
        5.0, ge=0.0, le=1000.0, description="how long a micro-batch waits for more requests"
    )

    # ---- connections ----
    header_timeout_s: float = Field(
        10.0, gt=0, description="time a client has to send its request line and headers"
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="longest wait for the next piece of a request body"
    )

    # ---- job store ----
    job_quota_mb: int = Field(
        1024, ge=1, description="result files kept, in MiB (oldest finished jobs go first)"
    )
    job_sweep_s: float = Field(60.0, gt=0, description="how often the TTL and quota are applied")

    # ---- who may call ----
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="keys accepted as 'Authorization: Bearer <key>' (none: no key needed)",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="host names served besides IP addresses (default: localhost, the bound host)",
    )

    def host_names(self) -> list[str]:
        """The Host names served: ``allowed_hosts``, else loopback names plus the bound host
        (``*`` when bound to every address with API keys set)."""
        if self.allowed_hosts:
            return [h.lower() for h in self.allowed_hosts]
        names = ["localhost", "127.0.0.1", "::1", self.host.lower().strip("[]")]
        if self.host in ("0.0.0.0", "::") and self.api_keys:
            return ["*"]
        return names

    @field_validator("cors_origins", "api_keys", "allowed_hosts", mode="before")
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
