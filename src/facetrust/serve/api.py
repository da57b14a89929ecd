"""The REST API (``/v1``), ``/health`` and the web page: thin routes over the library."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from facetrust.detect.results import FileResult
from facetrust.names import ProtectPreset
from facetrust.provenance import (
    ProvenanceReport,
    provenance_report,
)
from facetrust.serve import schemas
from facetrust.serve.errors import ApiError
from facetrust.serve.jobs import Job, QueueFull, is_job_id
from facetrust.serve.services import Services
from facetrust.serve.uploads import (
    media_body,
    read_media,
    read_upload,
    sniff_upload,
    stream_json_with_file,
)

__all__ = ["WEB_DIR", "router", "services_of"]

WEB_DIR = Path(__file__).resolve().parent / "web"
router = APIRouter()

Method = Literal["gradcam", "gradcam++"]
Strength = ProtectPreset
MAX_API_FRAMES = 64  # /v1/detect: most video frames a request may ask for


def _query_names(dependant) -> set[str]:
    """The query parameters a route (and its dependencies) declares."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def known_query_only(request: Request) -> None:
    """422 for a query parameter the route does not take (every /v1 route): a misspelt
    ``?treshold=0.9`` must not be silently ignored."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    allowed = _query_names(dependant) if dependant is not None else set()
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "none"
        raise ApiError(
            422,
            f"unknown query parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)} "
            f"(this route takes: {takes})",
        )


V1 = [Depends(known_query_only)]


def _errors(*codes: int, model: type = schemas.Error) -> dict:
    text = {
        400: "bad request (empty file, malformed JSON or multipart)",
        404: "no such job",
        409: "the job has not finished successfully",
        413: "upload too large, or an image/video beyond the size or duration limits",
        415: "unsupported file type (decided by content)",
        422: "invalid request or undecodable file",
        429: "the job queue is full; retry later",
        503: "the model (or photo protection) is not available on this server",
        504: "the job did not finish in time",
    }
    return {c: {"model": model, "description": text[c]} for c in codes}


def services_of(request: Request) -> Services:
    return request.app.state.services


# ---- status and page -------------------------------------------------------------------------


@router.get("/health", response_model=schemas.Health, tags=["status"])
def health(request: Request) -> dict:
    """Liveness and what is loaded: version, model, device, job queue."""
    return services_of(request).health()


@router.get(
    "/",
    response_class=FileResponse,
    tags=["web"],
    responses={200: {"content": {"text/html": {}}, "description": "the web page"}},
)
def index() -> FileResponse:
    """The web page (static files, no build step)."""
    return FileResponse(WEB_DIR / "index.html", media_type="text/html")


# ---- detection and explanation ---------------------------------------------------------------


_DETECT_FIELDS = {
    "threshold": {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": "decision threshold (the query parameter of that name, as a form field)",
    },
    "frames": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_API_FRAMES,
        "description": "video frames to sample (the query parameter, as a form field)",
    },
}


def _detect_options(
    fields: dict[str, str], threshold: float | None, frames: int | None
) -> dict[str, float | int | None]:
    """threshold and frames from the query or the multipart form (not both), validated."""
    unknown = sorted(set(fields) - set(_DETECT_FIELDS))
    if unknown:
        raise ApiError(
            422, f"unknown form field: {', '.join(unknown)} (send file, threshold, frames)"
        )
    out: dict[str, float | int | None] = {"threshold": threshold, "frames": frames}
    for name, kind, low, high in (
        ("threshold", float, 0.0, 1.0),
        ("frames", int, 1, MAX_API_FRAMES),
    ):
        if name not in fields:
            continue
        if out[name] is not None:
            raise ApiError(422, f"{name} was given twice (query and form); give it once")
        try:
            value = kind(fields[name])
        except ValueError:
            raise ApiError(422, f"{name} must be a number from {low} to {high}") from None
        if not low <= value <= high:
            raise ApiError(422, f"{name} must be from {low} to {high}, got {fields[name]}")
        out[name] = value
    return out


@router.post(
    "/v1/detect",
    tags=["detect"],
    response_model=FileResult,
    responses=_errors(400, 413, 415, 422, 503),
    openapi_extra=media_body(extra_fields=_DETECT_FIELDS),
    dependencies=V1,
)
async def detect(
    request: Request,
    threshold: Annotated[
        float | None,
        Query(ge=0, le=1, description="decision threshold (default: the model's)"),
    ] = None,
    frames: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_API_FRAMES,
            description="video frames sampled evenly (default: the server's, 16)",
        ),
    ] = None,
) -> dict:
    """Score every face in an image or video: the same object as ``facetrust detect --json``
    (the library's ``FileResult``, validated against it on the way out); ``path`` is the
    upload's file name. ``threshold`` and ``frames`` may also come as multipart form fields."""
    services = services_of(request)
    services.detector  # noqa: B018 - 503 before reading an upload the server cannot use
    upload = await read_upload(request)
    options = _detect_options(upload.fields, threshold, frames)
    sniff_upload(upload.data)
    return await run_in_threadpool(services.detect, upload.data, upload.name, **options)


@router.post(
    "/v1/explain",
    tags=["detect"],
    response_model=None,
    responses={200: {"model": schemas.ExplainResult}, **_errors(400, 413, 415, 422, 503)},
    openapi_extra=media_body(what="a JPEG, PNG, WEBP, BMP, TIFF or GIF image"),
    dependencies=V1,
)
async def explain(
    request: Request,
    method: Annotated[
        Method | None, Query(description="gradcam or gradcam++ (server default)")
    ] = None,
) -> JSONResponse:
    """Grad-CAM heatmaps of the "fake" evidence on each face, plus the prediction."""
    services = services_of(request)
    services.detector  # noqa: B018
    data = await read_media(request)
    if sniff_upload(data) == "video":
        raise ApiError(415, "explanations are computed for images; send a video frame as an image")
    ex = await run_in_threadpool(services.explain, data, method or services.settings.explain_method)
    return JSONResponse(await run_in_threadpool(explanation_body, ex))


def explanation_body(ex) -> dict:
    """The /v1/explain answer for an ``Explanation``."""
    from facetrust.detect.explain import encode_png, png_base64

    overlay = ex.overlay()  # at most OVERLAY_MAX_SIDE pixels on a side (see Services)
    h, w = overlay.shape[:2]
    return {
        "prediction": ex.prediction,
        "method": ex.method,
        "layer": ex.layer,
        "explains": ex.explains,
        "layers": list(ex.layers),
        "heatmap_png": base64.b64encode(encode_png(overlay)).decode("ascii"),
        "heatmap_width": w,
        "heatmap_height": h,
        # what `facetrust explain -o` writes: with verdicts, colour bar and the model's limits
        "report_png": png_base64(ex.report()),
        "faces": [
            {**f.to_dict(), "heatmap_png": png_base64(f.overlay(ex.alpha))} for f in ex.faces
        ],
    }


# ---- provenance ------------------------------------------------------------------------------


@router.post(
    "/v1/provenance",
    tags=["provenance"],
    response_model=ProvenanceReport,
    responses=_errors(400, 413, 415, 422),
    openapi_extra=media_body(),
    dependencies=V1,
)
async def provenance(request: Request) -> ProvenanceReport:
    """C2PA credentials, invisible watermarks and generator metadata of an image or video, with
    the verdict they support alone; no model runs. Finding nothing is not evidence of
    authenticity: most platforms strip metadata and credentials."""
    data = await read_media(request)
    sniff_upload(data)
    prov = await run_in_threadpool(services_of(request).provenance, data)
    return provenance_report(prov)


# ---- protection jobs -------------------------------------------------------------------------


def job_body(job: Job) -> dict:
    return {
        **job.to_dict(),
        "status_url": f"/v1/jobs/{job.id}",
        "result_url": f"/v1/jobs/{job.id}/result",
    }


async def submit_protect(request: Request, data: bytes, strength: str) -> Job:
    """Queue a protection job for an upload (shared with the compatibility route)."""
    services = services_of(request)
    if sniff_upload(data) == "video":
        raise ApiError(415, "photo protection works on images; this is a video")
    try:
        return await run_in_threadpool(services.submit_protect, data, strength)
    except QueueFull:
        raise ApiError(429, "the job queue is full; retry later", {"Retry-After": "5"}) from None


@router.post(
    "/v1/protect",
    tags=["protect"],
    status_code=202,
    response_model=None,
    responses={
        202: {"model": schemas.JobStatus, "description": "job queued"},
        **_errors(400, 413, 415, 422, 429, 503),
    },
    openapi_extra=media_body(what="a JPEG, PNG, WEBP, BMP, TIFF or GIF image"),
    dependencies=V1,
)
async def protect(
    request: Request,
    strength: Annotated[
        Strength | None,
        Query(description="subtle, balanced or strong: how much may show on the face"),
    ] = None,
) -> JSONResponse:
    """Start protecting a photo; poll ``status_url``, then fetch ``result_url``."""
    services = services_of(request)
    services.start()
    services.protector_factory()  # 503 before reading the upload
    if services.runner is not None and services.runner.full():
        raise ApiError(429, "the job queue is full; retry later", {"Retry-After": "5"})
    data = await read_media(request)
    job = await submit_protect(request, data, strength or services.settings.protect_strength)
    return JSONResponse(job_body(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


def _job(request: Request, job_id: str) -> Job:
    services = services_of(request)
    services.start()
    job = services.store.get(job_id) if is_job_id(job_id) and services.store else None
    if job is None:
        raise ApiError(404, "no such job")
    return job


@router.get(
    "/v1/jobs/{job_id}",
    tags=["protect"],
    response_model=schemas.JobStatus,
    responses=_errors(404),
    dependencies=V1,
)
def job_status(request: Request, job_id: str) -> dict:
    """A job's state (queued, running, done, failed) and progress in [0, 1]."""
    return job_body(_job(request, job_id))


@router.get(
    "/v1/jobs/{job_id}/result",
    tags=["protect"],
    response_model=None,
    responses={
        200: {
            "model": schemas.JobResult,
            "content": {"image/png": {}},
            "description": "JSON (image as base64 + report), or the PNG with format=png",
        },
        **_errors(404, 409, 422),
    },
    dependencies=V1,
)
def job_result(
    request: Request,
    job_id: str,
    format: Annotated[Literal["json", "png"], Query(description="json or png")] = "json",
) -> Response:
    """The protected image and its report, once the job is done."""
    job = _job(request, job_id)
    if job.state != "done":
        detail = f"job failed: {job.error}" if job.state == "failed" else f"job is {job.state}"
        raise ApiError(409, detail)
    store = services_of(request).store
    assert store is not None
    images = [n for n in job.files if n.endswith(".png")]
    try:
        png = store.file_path(job, images[0])
    except (IndexError, FileNotFoundError):
        raise ApiError(409, "the job left no image") from None
    if format == "png":  # the binary download, streamed from disk
        return FileResponse(
            png,
            media_type="image/png",
            headers={"Content-Disposition": f'attachment; filename="{images[0]}"'},
        )
    head = {"id": job.id, "kind": job.kind, "state": job.state, "media_type": "image/png"}
    return StreamingResponse(
        stream_json_with_file(head, "image", png, {"report": job.report or {}}),
        media_type="application/json",
    )
