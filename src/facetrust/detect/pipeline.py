"""``Detector``: image or video in, calibrated per-face and per-file verdicts out."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facetrust.config import Settings, resolve_device
from facetrust.detect.calibration import apply_calibration
from facetrust.detect.experts import ExpertSet
from facetrust.detect.results import FaceResult, FileResult, FramePrediction, Label
from facetrust.detect.tracks import link_tracks
from facetrust.errors import InputError, MediaError
from facetrust.faces import Face, FaceAligner, FaceDetector
from facetrust.media import ImageLimits, load_image, read_video_frames, sniff_kind, sniff_path
from facetrust.models.zoo import resolve_model, shipped_models

Source = str | os.PathLike | bytes | np.ndarray

IMAGE_RULE = "file = max over faces of the calibrated face probability"
VIDEO_RULE = (
    "track = mean over its frames; video = max over tracks seen in >= 2 frames "
    "(all tracks if none is); frame = max over its faces"
)


class Detector:
    """Deepfake detector: faces are found, aligned, scored by a trained checkpoint, calibrated.

    Args:
        model: checkpoint path or shipped model name; ``None`` uses the default shipped model
            (``NoModelError`` if none is installed).
        device: ``auto`` (cuda, mps, cpu), ``cpu``, ``cuda``...
        threshold: decision threshold on the calibrated probability; defaults to the checkpoint's.
        frames: frames sampled uniformly per video; ``fps`` samples at a rate instead.
        settings: limits and defaults (``FACETRUST_*`` environment variables when omitted).

    Call it on a path, bytes, or an RGB array; it returns a ``FileResult``.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str | None = None,
        threshold: float | None = None,
        frames: int | None = None,
        fps: float | None = None,
        batch_size: int = 32,
        settings: Settings | None = None,
        face_detector: FaceDetector | None = None,
    ) -> None:
        import torch

        from facetrust.models.checkpoint import load_checkpoint

        self.settings = settings or Settings()
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise InputError("threshold must be between 0 and 1")
        if fps is not None and fps <= 0:
            raise InputError("fps must be positive")
        self.device = resolve_device(device or self.settings.device)
        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)
        self.model_path = resolve_model(model if model is not None else self.settings.model)
        self.model, self.meta = load_checkpoint(self.model_path, device=self.device)
        # a shipped model is called by its file name (one set of weights may ship under two
        # names, e.g. the fused default's CNN alone as ``facetrust-fast``)
        shipped = shipped_models().get(self.model_path.stem) == self.model_path
        self.model_name = (
            self.model_path.stem if shipped else self.meta.name or self.model_path.stem
        )
        self.threshold = float(self.meta.threshold if threshold is None else threshold)
        self.frames = frames or self.settings.video_frames
        self.fps = fps
        self.batch_size = batch_size
        self.faces = face_detector or FaceDetector(
            min_score=self.settings.face_min_score, landmarks=True, threads=self.settings.threads
        )
        self.aligner = FaceAligner(size=self.meta.input_size, margin=self.meta.face_margin)
        self.experts = ExpertSet(self.meta.experts) if self.meta.experts else None
        if self.experts is not None:
            self.experts.load()  # at start-up, not inside the first request
        # a fused model reads larger crops (the size its experts were trained on); the CNN
        # gets them resized to its input size, as in training
        crop_size = int(self.meta.experts.get("crop_size", 256)) if self.experts else 0
        self._crop_aligner = (
            FaceAligner(size=crop_size, margin=self.meta.face_margin)
            if crop_size and crop_size != self.meta.input_size
            else self.aligner
        )
        self._mean = torch.tensor(self.meta.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(self.meta.std).view(1, 3, 1, 1)

    def __repr__(self) -> str:
        return (
            f"Detector(model={self.model_name!r}, device={self.device!r}, "
            f"threshold={self.threshold}, frames={self.frames}, fps={self.fps})"
        )

    # ---- scoring -------------------------------------------------------------------------
    def score_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """Calibrated fake probabilities for aligned crops (any square size, uint8 RGB)."""
        return self.score_crops_detailed(crops)[0]

    def score_crops_detailed(
        self, crops: list[np.ndarray]
    ) -> tuple[np.ndarray, list[dict[str, float]] | None]:
        """Calibrated probabilities, and for a fused model each input's own probability."""
        import torch

        if not crops:
            return np.zeros(0), None
        size = self.meta.input_size
        cnn_in = [
            c
            if c.shape[:2] == (size, size)
            else cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA)
            for c in crops
        ]
        logits = []
        with torch.inference_mode():
            for i in range(0, len(cnn_in), self.batch_size):
                batch = np.stack(cnn_in[i : i + self.batch_size])
                x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
                x = (x - self._mean) / self._std
                out = self.model(x.to(self.device)).float().reshape(len(batch), -1)[:, 0]
                logits.append(out.cpu().numpy())
        z = np.concatenate(logits)
        per_expert = None
        if self.experts is not None:
            cols = self.experts.expert_logits(z, crops)
            z = self.experts.combine(cols)
            names = self.experts.inputs
            per_expert = [
                {n: float(1 / (1 + np.exp(-v))) for n, v in zip(names, row, strict=True)}
                for row in cols
            ]
        return apply_calibration(z, self.meta.calibration), per_expert

    def _label(self, p: float | None) -> Label:
        if p is None:
            return "no_face"
        return "fake" if p >= self.threshold else "real"

    def _find(self, image: np.ndarray) -> list[Face]:
        faces = self.faces(image)
        for f in faces:
            f.crop = self._crop_aligner(image, f)
        return faces

    # ---- entry points ----------------------------------------------------------------------
    def __call__(self, source: Source, path: str | None = None) -> FileResult:
        """Detect on an image or video given as a path, bytes or an RGB array."""
        if isinstance(source, np.ndarray):
            return self.detect_image(source, path=path)
        if isinstance(source, bytes | bytearray):
            kind = sniff_kind(bytes(source[:64]))
        elif isinstance(source, str | os.PathLike):
            p = Path(source)
            if not p.exists():
                raise MediaError(f"file not found: {p}")
            if p.is_dir():
                raise InputError(f"{p} is a folder; pass files (the CLI walks folders)")
            kind = sniff_path(p)
            path = path or str(source)
        else:
            raise InputError(
                f"cannot detect on a {type(source).__name__}; pass a path, bytes or array"
            )
        if kind == "video":
            return self.detect_video(source, path=path)
        # images, and anything unrecognised (load_image gives the precise error)
        return self.detect_image(source, path=path)

    def detect_image(self, source: Source, path: str | None = None) -> FileResult:
        t0 = time.perf_counter()
        limits = ImageLimits(self.settings.max_image_pixels, self.settings.max_file_bytes)
        image = load_image(source, limits)
        faces = self._find(image)
        probs, per_expert = self.score_crops_detailed([f.crop for f in faces])
        results = [
            FaceResult(f.box, f.score, float(p), self._label(float(p)))
            for f, p in zip(faces, probs, strict=True)
        ]
        for r, e in zip(results, per_expert or [], strict=False):
            r.experts = e
        p_file = float(probs.max()) if len(probs) else None
        return FileResult(
            path=path,
            kind="image",
            faces=results,
            fake_probability=p_file,
            label=self._label(p_file),
            model=self.model_name,
            threshold=self.threshold,
            rule=IMAGE_RULE,
            processing_time_s=time.perf_counter() - t0,
            width=int(image.shape[1]),
            height=int(image.shape[0]),
        )

    def detect_video(
        self, source: str | os.PathLike | bytes, path: str | None = None
    ) -> FileResult:
        t0 = time.perf_counter()
        info, frames = read_video_frames(
            source,
            num_frames=self.frames,
            fps=self.fps,
            max_seconds=self.settings.max_video_seconds,
            max_bytes=self.settings.max_video_bytes,
        )
        per_frame = [self._find(fr.image) for fr in frames]
        flat = [f.crop for faces in per_frame for f in faces]
        probs_flat = self.score_crops(flat)
        probs: list[np.ndarray] = []
        k = 0
        for faces in per_frame:
            probs.append(probs_flat[k : k + len(faces)])
            k += len(faces)

        frame_preds = []
        for fr, faces, p in zip(frames, per_frame, probs, strict=True):
            pf = float(p.max()) if len(p) else None
            frame_preds.append(
                FramePrediction(fr.index, fr.time_s, len(faces), pf, self._label(pf))
            )

        tracks = link_tracks([[f.box for f in faces] for faces in per_frame])
        track_results = []
        for t in tracks:
            ps = [float(probs[pos][fi]) for pos, fi in t.members]
            first_pos, first_fi = t.members[0]
            face = per_frame[first_pos][first_fi]
            mean_p = float(np.mean(ps))
            track_results.append(
                FaceResult(
                    box=face.box,
                    det_score=float(np.mean([per_frame[p][i].score for p, i in t.members])),
                    fake_probability=mean_p,
                    label=self._label(mean_p),
                    track_id=t.id,
                    frames=[frames[pos].index for pos, _ in t.members],
                )
            )
        pairs = zip(track_results, tracks, strict=True)
        steady = [r for r, t in pairs if len(t.members) >= 2] or track_results
        p_video = max((r.fake_probability for r in steady), default=None)
        label = self._label(p_video)
        with_faces = [f for f in frame_preds if f.fake_probability is not None]
        consistency = (
            sum(f.label == label for f in with_faces) / len(with_faces) if with_faces else None
        )
        return FileResult(
            path=path,
            kind="video",
            faces=track_results,
            fake_probability=p_video,
            label=label,
            model=self.model_name,
            threshold=self.threshold,
            rule=VIDEO_RULE,
            processing_time_s=time.perf_counter() - t0,
            width=info.width,
            height=info.height,
            frames_analyzed=len(frames),
            frame_predictions=frame_preds,
            consistency=consistency,
        )

    def info(self) -> dict[str, Any]:
        """What this detector runs: model, its metadata, device and threshold."""
        return {
            "model": self.model_name,
            "path": str(self.model_path),
            "arch": self.meta.arch,
            "device": self.device,
            "threshold": self.threshold,
            "calibration": self.meta.calibration.get("method", "none"),
        }
