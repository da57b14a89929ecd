"""Compatibility routes, so clients written for the seed projects keep working.

* ``POST /predict`` with multipart ``file``: DeepGuard's answer (``label`` REAL/FAKE,
  ``confidence`` and ``probabilities`` in percent, ``processing_time``, ``file_type``; for
  videos ``frames_analyzed``, ``total_frames``, ``faces_detected``, ``consistency_score``,
  ``frame_predictions``). DeepGuard's ``frequency_score``/``adjusted_confidence`` are not
  produced: they came from an ad-hoc score mix, not a fitted model.
* ``POST /predict`` with JSON ``{"image": base64}``: DeepFakeDefenders' ``{"result": p}``.
* ``POST /gradcam`` with multipart ``file``: DeepGuard's ``gradcam_image`` (a data URL),
  ``prediction`` and ``layer_name``.
* ``POST /protect`` with multipart ``image``: DEFAKE's ``success``, ``face_detected``,
  ``protected_image`` (base64 PNG), ``similarity_score`` (the protector's
  ``identity_stability``: encoder cosine similarity, original vs protected, as DEFAKE's
  "identity stability score"), ``processing_time_s``, ``message``, plus ``job_id``; it runs as
  a job in the same bounded pool and waits for it.

Errors use the seeds' shapes: ``{"error": ...}`` (DeepGuard) and ``{"success": false,
"error": ...}`` (DEFAKE), with the same status codes as the ``/v1`` routes; a file without a
face is DeepGuard's 400 ``No face detected in image``.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from facetrust.errors import FacetrustError
from facetrust.serve import schemas
from facetrust.serve.api import _errors, explanation_body, services_of, submit_protect
from facetrust.serve.errors import ApiError
from facetrust.serve.uploads import media_body, read_media, sniff_upload

__all__ = ["compat_prediction", "router"]

router = APIRouter(tags=["compatibility"])

_DG = {"model": schemas.CompatError}


def _no_face(kind: str) -> ApiError:
    return ApiError(
        400, "No faces detected in video" if kind == "video" else "No face detected in image"
    )


def _percent(p: float) -> float:
    return round(100.0 * float(p), 2)


def compat_labels(result: dict) -> dict[str, Any]:
    """``label``, ``confidence`` and ``probabilities`` in DeepGuard's form."""
    p_fake = _percent(result["fake_probability"])
    p_real = round(100.0 - p_fake, 2)
    # two labels only: an "uncertain" verdict is given by which side of the threshold it is on
    fake = result["fake_probability"] >= result["threshold"]
    return {
        "label": "FAKE" if fake else "REAL",
        "confidence": p_fake if fake else p_real,
        "probabilities": {"REAL": p_real, "FAKE": p_fake},
    }


def compat_prediction(result: dict) -> dict[str, Any]:
    """DeepGuard's /predict answer for a ``FileResult`` dict with at least one face."""
    out: dict[str, Any] = {
        **compat_labels(result),
        "processing_time": round(float(result["processing_time_s"]), 2),
        "file_type": result["kind"],
        "faces_detected": len(result["faces"]),
    }
    if result["kind"] == "video":
        frames = [
            f for f in result.get("frame_predictions") or [] if f["fake_probability"] is not None
        ]
        consistency = result.get("consistency")
        out.update(
            frames_analyzed=result.get("frames_analyzed"),
            total_frames=result.get("frames_analyzed"),
            faces_detected=len(frames),
            consistency_score=None if consistency is None else _percent(consistency),
            frame_predictions=[
                {
                    "frame_number": i + 1,
                    "prob_fake": _percent(f["fake_probability"]),
                    "frame_index": f["frame_index"],
                    "time_s": f["time_s"],
                }
                for i, f in enumerate(frames)
            ],
        )
    return out


@router.post(
    "/predict",
    response_model=None,
    responses={
        200: {
            "model": schemas.CompatPrediction | schemas.CompatScore,
            "description": "multipart: label, confidence, probabilities ...; JSON: {result}",
        },
        **_errors(400, 413, 415, 422, 503, model=schemas.CompatError),
    },
    openapi_extra=media_body(),
)
async def predict(request: Request) -> JSONResponse:
    """DeepGuard's /predict (multipart ``file``) and DeepFakeDefenders' (JSON ``image``)."""
    services = services_of(request)
    services.detector  # noqa: B018 - 503 before reading the upload
    is_json = "json" in request.headers.get("content-type", "").split(";")[0].lower()
    data = await read_media(request)
    kind = sniff_upload(data)
    result = await run_in_threadpool(services.detect, data)
    if result["fake_probability"] is None:
        raise _no_face(kind)
    if is_json:
        return JSONResponse({"result": result["fake_probability"]})
    return JSONResponse(compat_prediction(result))


@router.post(
    "/gradcam",
    response_model=None,
    responses={
        200: {"model": schemas.CompatGradcam},
        **_errors(400, 413, 415, 422, 503, model=schemas.CompatError),
    },
    openapi_extra=media_body(what="a JPEG, PNG, WEBP, BMP, TIFF or GIF image"),
)
async def gradcam(request: Request) -> JSONResponse:
    """DeepGuard's /gradcam: the heatmap overlay as a data URL, with the prediction."""
    services = services_of(request)
    services.detector  # noqa: B018
    data = await read_media(request)
    if sniff_upload(data) == "video":
        raise ApiError(415, "Grad-CAM only supports image files")
    ex = await run_in_threadpool(services.explain, data, services.settings.explain_method)
    if ex.prediction["fake_probability"] is None:
        raise _no_face("image")
    body = await run_in_threadpool(explanation_body, ex)
    return JSONResponse(
        {
            "gradcam_image": "data:image/png;base64," + body["heatmap_png"],
            "prediction": compat_labels(ex.prediction),
            "layer_name": ex.layer,
        }
    )


def _report_number(report: dict, *keys: str) -> float | None:
    nested = report.get("identity")
    for source in (report, nested if isinstance(nested, dict) else {}):
        for key in keys:
            value = source.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
    return None


def _faces_in_report(report: dict) -> bool | None:
    if isinstance(report.get("face_detected"), bool):
        return report["face_detected"]
    for key in ("faces", "num_faces", "faces_protected"):
        value = report.get(key)
        if isinstance(value, list):
            return len(value) > 0
        if isinstance(value, int) and not isinstance(value, bool):
            return value > 0
    return None


@router.post(
    "/protect",
    response_model=None,
    responses={
        200: {"model": schemas.CompatProtect},
        **_errors(400, 413, 415, 422, 429, 503, 504, model=schemas.CompatProtectError),
    },
    openapi_extra=media_body(
        field="image", json_key=None, what="a JPEG, PNG, WEBP, BMP, TIFF or GIF image"
    ),
)
async def protect_compat(request: Request) -> JSONResponse:
    """DEFAKE's /protect: protect the photo in multipart ``image`` and wait for the result."""
    services = services_of(request)
    services.start()
    services.protector_factory()  # 503 before reading the upload
    data = await read_media(request, field="image", json_key=None)
    job = await submit_protect(request, data, services.settings.protect_strength)
    store = services.store
    assert store is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + services.settings.sync_protect_timeout_s
    while True:
        job = await run_in_threadpool(store.get, job.id)
        if job.state in ("done", "failed"):
            break
        if loop.time() > deadline:
            raise ApiError(504, f"protection is still running; poll /v1/jobs/{job.id}")
        await asyncio.sleep(0.2)
    if job.state == "failed":
        status = 500 if (job.error or "").startswith("internal error") else 422
        raise ApiError(status, job.error or "protection failed")
    png = await run_in_threadpool(store.read_file, job, "protected.png")
    report = job.report or {}
    faces = _faces_in_report(report)
    if faces is None:
        faces = await run_in_threadpool(_count_faces, services, data)
    seconds = report.get("seconds", report.get("processing_time_s"))
    if not isinstance(seconds, int | float):
        seconds = (job.finished or 0.0) - (job.started or 0.0)
    message = report.get("message")
    if not isinstance(message, str):
        message = "Image successfully protected." if faces else "No face detected."
    return JSONResponse(
        {
            "success": True,
            "face_detected": bool(faces),
            "protected_image": base64.b64encode(png).decode("ascii"),
            "similarity_score": _report_number(
                report, "identity_stability", "identity_similarity", "similarity_score"
            ),
            "processing_time_s": round(float(seconds), 3),
            "message": message,
            "job_id": job.id,
        }
    )


def _count_faces(services, data: bytes) -> bool:
    """Whether the server's face finder sees a face in the upload (when the report says not)."""
    from facetrust.media import load_image

    try:
        detector = services.detector
    except FacetrustError:  # no detector loaded: the report was the only source
        return False
    with services.budgeted(data, exclusive=False):  # memory gate, slot and deadline
        image = load_image(data, services.limits)
        return len(detector.faces(image)) > 0
