"""Response schemas of the service's own objects (jobs, health, explain, compatibility routes).
Detection results are the library's pydantic ``FileResult``, used as the response model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from facetrust.detect.results import FileResult

Label = Literal["real", "fake", "uncertain", "no_face"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Error(BaseModel):
    detail: str = Field(description="one-line reason")


class CompatError(BaseModel):
    error: str


class CompatProtectError(BaseModel):
    success: Literal[False] = False
    error: str


class ExplainFace(BaseModel):
    box: list[float]
    fake_probability: float
    label: Label
    peak: list[float] | None = Field(
        description="x, y of the heatmap maximum in image pixels; null: no evidence of a fake"
    )
    heatmap_png: str = Field(description="base64 PNG: the aligned crop with its heatmap")


class ExplainResult(BaseModel):
    prediction: FileResult
    method: Literal["gradcam", "gradcam++"]
    layer: str = Field(description="the last spatial layer, where `method` is applied")
    explains: str | None = Field(
        None, description="what the heatmap explains (for a fused model: its CNN expert)"
    )
    layers: list[str] = Field(
        description="layers averaged, coarse to fine (the first with `method`, the rest LayerCAM)"
    )
    heatmap_png: str = Field(description="base64 PNG: the image with every face's heatmap")
    heatmap_width: int
    heatmap_height: int
    report_png: str = Field(
        description="base64 PNG: the heatmap with each face's verdict, a colour bar and the "
        "model's limits (what `facetrust explain -o` writes)"
    )
    faces: list[ExplainFace]


class JobsHealth(BaseModel):
    workers: int
    queue_size: int
    pending: int
    queued: int
    running: int


class Health(BaseModel):
    status: Literal["ok", "no_model"]
    version: str
    model: str | None
    model_loaded: bool
    device: str | None
    explainer_ready: bool
    protect_available: bool
    max_upload_bytes: int
    jobs: JobsHealth


class JobStatus(BaseModel):
    id: str
    kind: str
    state: Literal["queued", "running", "done", "failed"]
    progress: float = Field(ge=0, le=1)
    message: str
    error: str | None
    created: str | None
    started: str | None
    finished: str | None
    status_url: str
    result_url: str


class JobResult(BaseModel):
    id: str
    kind: str
    state: Literal["done"]
    media_type: Literal["image/png"]
    image: str = Field(description="base64 PNG of the protected image")
    report: dict[str, Any]


# ---- compatibility routes (field names are the older clients' own) ---------------------------


class LabelProbabilities(BaseModel):
    REAL: float
    FAKE: float


class CompatFrame(BaseModel):
    frame_number: int
    prob_fake: float
    frame_index: int
    time_s: float


class CompatPrediction(_Open):
    label: Literal["REAL", "FAKE"]
    confidence: float = Field(description="percent: probability of the label given")
    probabilities: LabelProbabilities
    processing_time: float
    file_type: Literal["image", "video"]
    faces_detected: int
    frames_analyzed: int | None = None
    total_frames: int | None = None
    consistency_score: float | None = None
    frame_predictions: list[CompatFrame] | None = None


class CompatScore(BaseModel):
    result: float = Field(ge=0, le=1, description="probability that the file is fake")


class CompatGradcamPrediction(BaseModel):
    label: Literal["REAL", "FAKE"]
    confidence: float
    probabilities: LabelProbabilities


class CompatGradcam(BaseModel):
    gradcam_image: str = Field(description="data:image/png;base64,...")
    prediction: CompatGradcamPrediction
    layer_name: str


class CompatProtect(_Open):
    success: bool
    face_detected: bool
    protected_image: str = Field(description="base64 PNG")
    similarity_score: float | None
    processing_time_s: float
    message: str
    job_id: str
