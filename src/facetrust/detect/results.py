"""Result objects of ``Detector``: pydantic models, the one definition of the JSON that the CLI
prints (``model_dump(mode="json")``) and the API returns (its ``response_model``s)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    Field,
    PlainSerializer,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from facetrust.provenance import FileVerdict, Provenance

# "uncertain": the calibrated probability lies in the band around the threshold stored with the
# model (``CheckpointMeta.uncertain_interval``): neither label is safe there
Label = Literal["real", "fake", "uncertain", "no_face"]

__all__ = ["FaceResult", "FileResult", "FramePrediction", "Label"]


def _round(nd: int):
    return PlainSerializer(lambda v: None if v is None else round(float(v), nd), return_type=float)


Prob = Annotated[float, Field(ge=0, le=1), _round(4)]
OptProb = Annotated[float | None, Field(ge=0, le=1), _round(4)]
Score = Annotated[float, _round(4)]
Coord = Annotated[float, _round(1)]


class _Result(BaseModel):
    # keys left out of the JSON when None (optional parts: videos only, fused models only)
    _omit_none: tuple[str, ...] = ()

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        d = handler(self)
        for k in self._omit_none:
            if d.get(k) is None:
                d.pop(k, None)
        return d


class FaceResult(_Result):
    """One face (in an image) or one face track (in a video)."""

    box: Annotated[list[Coord], Field(min_length=4, max_length=4)] = Field(
        description="x1, y1, x2, y2 in pixels"
    )
    det_score: Score
    fake_probability: Prob = Field(description="calibrated probability of a fake")
    label: Label
    track_id: int | None = Field(None, description="videos: face track id")
    frames: list[int] | None = Field(None, description="videos: frame indices of the track")
    experts: dict[str, Prob] | None = Field(
        None,
        description="fused models: each expert's own probability of a fake (sigmoid of its "
        "logit, before fusion and calibration); for a video track, the mean over its frames",
    )
    # kept for the Explainer (never serialised): the aligned crop and the 2x3 affine that cut it
    _crop: np.ndarray | None = PrivateAttr(None)
    _matrix: np.ndarray | None = PrivateAttr(None)

    _omit_none = ("track_id", "frames", "experts")

    def attach(self, crop: np.ndarray, matrix: np.ndarray) -> FaceResult:
        """Keep the aligned crop (cut by the model's crop contract) and the 2x3 affine taking
        image pixels to crop pixels; returns self."""
        self._crop, self._matrix = crop, matrix
        return self

    @property
    def crop(self) -> np.ndarray | None:
        return self._crop

    @property
    def matrix(self) -> np.ndarray | None:
        return self._matrix


class FramePrediction(_Result):
    """One sampled video frame: the max over its faces."""

    frame_index: int
    time_s: Annotated[float, _round(3)]
    num_faces: int
    fake_probability: OptProb
    label: Label


class FileResult(_Result):
    """The verdict for one image or video file: the object ``facetrust detect --json`` prints."""

    path: str | None
    kind: Literal["image", "video"]
    label: Label
    fake_probability: OptProb
    threshold: Prob
    uncertain_band: tuple[Prob, Prob] | None = Field(
        None,
        description="probabilities from low (inclusive) to high (exclusive) labelled uncertain",
    )
    rule: str
    faces: list[FaceResult]
    width: int | None = None
    height: int | None = None
    model: str
    model_sha256: str | None = Field(
        None, description="first 12 hex digits of the checkpoint file's SHA-256"
    )
    limits: str | None = Field(
        None, description="what the model was not trained on (from its checkpoint or model card)"
    )
    processing_time_s: Annotated[float, _round(4)] = 0.0
    frames_analyzed: int | None = None
    frame_predictions: list[FramePrediction] | None = None
    consistency: OptProb = None
    provenance: Provenance | None = Field(
        None,
        description="evidence beyond pixels (C2PA credentials, watermarks, generator metadata), "
        "read from the file's bytes; absent for raw pixel input",
    )
    verdict: FileVerdict | None = Field(
        None,
        description="the file-level verdict: pixels and provenance combined by the stated rule "
        "(fake_probability is the model's alone)",
    )

    _omit_none = (
        "uncertain_band",
        "limits",
        "frames_analyzed",
        "frame_predictions",
        "consistency",
        "provenance",
        "verdict",
    )

    def as_json(self) -> dict[str, Any]:
        """The JSON object (plain types) of this result."""
        return self.model_dump(mode="json")
