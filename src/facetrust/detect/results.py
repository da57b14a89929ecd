"""Result objects of ``Detector``; ``to_dict()`` gives the JSON the CLI and API print."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Label = Literal["real", "fake", "no_face"]


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


@dataclass
class FaceResult:
    """One face (in an image) or one face track (in a video)."""

    box: tuple[float, float, float, float]
    det_score: float
    fake_probability: float
    label: Label
    track_id: int | None = None
    frames: list[int] | None = None  # sampled frame indices where this track was seen
    # fused models: each input's own probability of a fake (sigmoid of its logit, before the
    # fitted combination and calibration), e.g. {"cnn": 0.8, "clip": 0.3, "frequency": 0.6}
    experts: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "box": [round(float(v), 1) for v in self.box],
            "det_score": _r(self.det_score),
            "fake_probability": _r(self.fake_probability),
            "label": self.label,
        }
        if self.experts is not None:
            d["experts"] = {k: _r(v) for k, v in self.experts.items()}
        if self.track_id is not None:
            d["track_id"] = self.track_id
            d["frames"] = self.frames
        return d


@dataclass
class FramePrediction:
    frame_index: int
    time_s: float
    num_faces: int
    fake_probability: float | None
    label: Label

    def to_dict(self) -> dict[str, Any]:
        return {
            "frame_index": self.frame_index,
            "time_s": round(self.time_s, 3),
            "num_faces": self.num_faces,
            "fake_probability": _r(self.fake_probability),
            "label": self.label,
        }


@dataclass
class FileResult:
    """The verdict for one image or video file."""

    path: str | None
    kind: Literal["image", "video"]
    faces: list[FaceResult]
    fake_probability: float | None
    label: Label
    model: str
    threshold: float
    rule: str
    processing_time_s: float = 0.0
    width: int | None = None
    height: int | None = None
    frames_analyzed: int | None = None
    frame_predictions: list[FramePrediction] = field(default_factory=list)
    consistency: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "path": self.path,
            "kind": self.kind,
            "label": self.label,
            "fake_probability": _r(self.fake_probability),
            "threshold": _r(self.threshold),
            "rule": self.rule,
            "faces": [f.to_dict() for f in self.faces],
            "width": self.width,
            "height": self.height,
            "model": self.model,
            "processing_time_s": round(self.processing_time_s, 4),
        }
        if self.kind == "video":
            d["frames_analyzed"] = self.frames_analyzed
            d["frame_predictions"] = [f.to_dict() for f in self.frame_predictions]
            d["consistency"] = _r(self.consistency)
        return d
