"""``Detector``: image or video in, calibrated per-face and per-file verdicts out."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, overload

import numpy as np

from facetrust.cache import file_sha256
from facetrust.config import Settings
from facetrust.detect.results import FaceResult, FileResult, FramePrediction, Label
from facetrust.detect.scoring import FaceScores, load_scorer
from facetrust.detect.tracks import Track, link_tracks
from facetrust.errors import InputError, MediaError, ModelError
from facetrust.faces import Face, FaceDetector
from facetrust.faces.find import face_detector_for, find_faces, read_image, read_video
from facetrust.media import VideoFrame, VideoInfo, sniff_kind, sniff_path
from facetrust.media.budget import WorkBudget, budget_in_force, current_budget, use_budget
from facetrust.models.zoo import configured_model, shipped_models
from facetrust.progress import ProgressBar

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
        provenance: read the file's C2PA credentials, watermark and generator metadata
            (:mod:`facetrust.provenance`) into ``result.provenance`` and ``result.verdict``.
        uncertain_band: half-width (probability) of the band around the threshold labelled
            ``uncertain``; defaults to the checkpoint's (0.10 when it has none); 0 turns it off.
        runtime: where the networks run: ``torch``, ``onnx`` (ONNX Runtime on the CPU, from
            the checkpoint's cached export, made on first use, or a ``.onnx`` file) or ``auto``
            (``onnx`` when the export is cached); defaults to ``settings.runtime``.
        quick_start: open an ONNX session without prepacking (for a few images).

    Call it on a path, bytes, or an RGB array (or a list of them); it returns a ``FileResult``
    (or a list). Faces are cut by the checkpoint's crop contract and scored by the one
    :class:`~facetrust.detect.scoring.FaceScorer` that evaluation and training also use.
    Thread counts are the caller's to set (``facetrust.config.apply_threads``); constructing a
    Detector changes no process-wide state.
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
        provenance: bool = True,
        uncertain_band: float | None = None,
        runtime: str | None = None,
        quick_start: bool = False,
        progress: bool | None = False,
    ) -> None:
        self.settings = settings or Settings()
        # a bar on stderr over a video's frames (facetrust.progress): None = on a terminal
        self.progress = progress
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise InputError("threshold must be between 0 and 1")
        if fps is not None and fps <= 0:
            raise InputError("fps must be positive")
        self.model_path = configured_model(model, self.settings)
        # the scoring core on torch or ONNX Runtime (facetrust.detect.scoring.load_scorer)
        self.runtime, self.device, self.scorer = load_scorer(
            self.model_path,
            runtime=runtime or self.settings.runtime,
            device=device or self.settings.device,
            batch_size=batch_size,
            threads=self.settings.threads,
            quick_start=quick_start,
        )
        self.meta = self.scorer.meta
        self._torch_model = None
        if self.model_path.suffix.lower() == ".onnx":  # the hash of the exported checkpoint
            self.model_sha256 = (self.scorer.model_sha256 or "")[:12]
        else:
            self.model_sha256 = file_sha256(self.model_path)[:12]
        self.model_name = model_display_name(self.model_path, self.meta)
        self.threshold = float(self.meta.threshold if threshold is None else threshold)
        if uncertain_band is not None and not 0.0 <= uncertain_band <= 0.5:
            raise InputError("uncertain_band must be between 0 and 0.5")
        meta = self.meta
        if uncertain_band is not None:
            meta = meta.model_copy(update={"uncertain_band": uncertain_band})
        self._meta_band = meta
        self.uncertain = meta.uncertain_interval(self.threshold)
        self.limits = model_limits(self.model_path, self.meta)
        self.provenance = bool(provenance)
        self.frames = frames or self.settings.video_frames
        self.fps = fps
        self.batch_size = batch_size
        self.faces = face_detector or face_detector_for(self.settings)
        self.scorer.load()  # the experts' networks at start-up, not inside the first request
        self.contract = self.scorer.contract
        self.aligner = self.contract.aligner()

    @property
    def model(self):
        """The torch CNN (Grad-CAM reads it); with the ONNX runtime it is loaded on first use."""
        if self.scorer.model is None:
            if self._torch_model is None:
                from facetrust.models.checkpoint import load_checkpoint

                if self.model_path.suffix.lower() == ".onnx":
                    raise ModelError(
                        "this needs the torch model: pass the .safetensors checkpoint, "
                        "not its ONNX export"
                    )
                self._torch_model, _ = load_checkpoint(self.model_path, device="cpu")
            return self._torch_model
        return self.scorer.model

    @property
    def experts(self):
        """The fused model's :class:`~facetrust.detect.experts.ExpertSet` (None: CNN only)."""
        return self.scorer.experts

    def __repr__(self) -> str:
        return (
            f"Detector(model={self.model_name!r}, device={self.device!r}, "
            f"threshold={self.threshold}, frames={self.frames}, fps={self.fps})"
        )

    # ---- scoring -------------------------------------------------------------------------
    def score_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """Calibrated fake probabilities for aligned crops (cut by ``self.contract``)."""
        return self.scorer(crops).probability

    def _label(self, p: float | None) -> Label:
        return label_for(p, self.threshold, self.uncertain)

    def relabel(self, result: FileResult, threshold: float) -> FileResult:
        """``result`` (from this detector) judged at another threshold, in place: every label,
        the uncertain band, the video's consistency and the file verdict; probabilities are
        unchanged. Returns ``result``."""
        if not 0.0 <= threshold <= 1.0:
            raise InputError("threshold must be between 0 and 1")
        interval = self._meta_band.uncertain_interval(threshold)
        for item in [*result.faces, *(result.frame_predictions or [])]:
            item.label = label_for(item.fake_probability, threshold, interval)
        result.label = label_for(result.fake_probability, threshold, interval)
        result.threshold = threshold
        result.uncertain_band = interval if interval[1] > interval[0] else None
        if result.frame_predictions is not None:
            seen = [f for f in result.frame_predictions if f.fake_probability is not None]
            result.consistency = (
                sum(f.label == result.label for f in seen) / len(seen) if seen else None
            )
        if result.provenance is not None:
            from facetrust.provenance import file_verdict

            result.verdict = file_verdict(result.label, result.provenance)
        return result

    def _band(self) -> tuple[float, float] | None:
        low, high = self.uncertain
        return (low, high) if high > low else None

    def _find(self, image: np.ndarray) -> list[Face]:
        return find_faces(self.faces, self.aligner, image)

    def _face_result(self, face: Face, p: float, experts: dict | None) -> FaceResult:
        r = FaceResult(
            box=list(face.box),
            det_score=float(face.score),
            fake_probability=float(p),
            label=self._label(float(p)),
            experts=experts,
        )
        return r.attach(face.crop, self.aligner.matrix(face))

    # ---- entry points ----------------------------------------------------------------------
    @overload
    def __call__(
        self,
        source: Source,
        path: str | None = None,
        *,
        threshold: float | None = None,
        frames: int | None = None,
    ) -> FileResult: ...
    @overload
    def __call__(
        self,
        source: list[Source],
        path: None = None,
        *,
        threshold: float | None = None,
        frames: int | None = None,
    ) -> list[FileResult]: ...

    def __call__(self, source, path=None, *, threshold=None, frames=None):
        """Detect on an image or video given as a path, bytes or an RGB array; a list of them
        gives a list of results (the first failure raises). ``threshold`` and ``frames``
        override the detector's for this call only."""
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise InputError("threshold must be between 0 and 1")
        if frames is not None and frames < 1:
            raise InputError("frames must be at least 1")
        if isinstance(source, list | tuple):
            if path is not None:
                raise InputError("path names one input; pass it per call, not for a list")
            return [self(s, threshold=threshold, frames=frames) for s in source]
        if budget_in_force() is None:  # the library or CLI: this detector's own settings
            with use_budget(WorkBudget.from_settings(self.settings)):
                result = self._detect(source, path, frames)
        else:
            result = self._detect(source, path, frames)
        return result if threshold is None else self.relabel(result, threshold)

    @staticmethod
    def _kind(source: Source) -> str:
        """``video``, or anything else read as an image (an array is one; load_image gives
        the precise error for bytes that are neither); a missing path, a folder or another type
        is refused here."""
        if isinstance(source, np.ndarray):
            return "image"
        if isinstance(source, bytes | bytearray):
            return sniff_kind(bytes(source[:64]))
        if isinstance(source, str | os.PathLike):
            p = Path(source)
            if not p.exists():
                raise MediaError(f"file not found: {p}")
            if p.is_dir():
                raise InputError(f"{p} is a folder; pass files (the CLI walks folders)")
            return sniff_path(p)
        raise InputError(f"cannot detect on a {type(source).__name__}; pass a path, bytes or array")

    def _detect(self, source: Source, path: str | None, frames: int | None = None) -> FileResult:
        kind = self._kind(source)
        if isinstance(source, np.ndarray):
            return self.detect_image(source, path=path)
        if isinstance(source, str | os.PathLike):
            path = path or str(source)
        if kind == "video":
            result = self.detect_video(source, path=path, frames=frames)
        else:  # images, and anything unrecognised (load_image gives the precise error)
            result = self.detect_image(source, path=path)
        return self._with_provenance(result, source)

    def _with_provenance(self, result: FileResult, source: str | os.PathLike | bytes) -> FileResult:
        """Add what the file's bytes and metadata say (no pixels involved) and the file-level
        verdict; the pixel ``fake_probability`` is left exactly as the model gave it."""
        if not self.provenance:
            return result
        from facetrust.errors import one_line
        from facetrust.provenance import Provenance, ProvenanceLimits, file_verdict, read_provenance

        # metadata is read from the bytes in memory: bounded like an image file, also for videos
        analysis = current_budget().analysis_max_pixels
        limits = ProvenanceLimits(
            max_bytes=self.settings.max_file_bytes,
            # the watermark decode reads pixels: no more than the analysis budget allows
            max_watermark_pixels=analysis or self.settings.max_image_pixels,
        )
        try:
            prov = read_provenance(source, limits=limits)
        except MediaError as e:  # e.g. a video larger than the bound: pixels still judged
            prov = Provenance(media=result.kind, notes=[f"not read: {one_line(e)}"])
        result.provenance = prov
        result.verdict = file_verdict(result.label, prov)
        return result

    def find(self, source: Source, frames: int | None = None) -> list[list[Face]]:
        """The faces (aligned crops attached) of an image, or of each sampled video frame, as
        detection finds them, unscored: one list per image or frame (``adapt`` reads them)."""
        if budget_in_force() is None:  # the library or CLI: this detector's own settings
            with use_budget(WorkBudget.from_settings(self.settings)):
                return self.find(source, frames)
        if self._kind(source) == "video":
            _, sampled = read_video(
                source, self.settings, frames=frames or self.frames, fps=self.fps
            )
            return [self._find(fr.image) for fr in sampled]
        return [self._find(read_image(source, self.settings))]

    def detect_image(self, source: Source, path: str | None = None) -> FileResult:
        t0 = time.perf_counter()
        image = read_image(source, self.settings)
        faces = self._find(image)
        scores = self.scorer([f.crop for f in faces])
        return self.image_result(
            faces, scores, path=path, width=image.shape[1], height=image.shape[0], t0=t0
        )

    def image_result(
        self,
        faces: list[Face],
        scores: FaceScores,
        *,
        path: str | None,
        width: int,
        height: int,
        t0: float,
    ) -> FileResult:
        """The verdict for an image from its faces (aligned crops attached) and their scores
        (``t0``: ``time.perf_counter()`` when the work on the file began)."""
        probs = scores.probability
        per_expert = scores.expert_probabilities() or [None] * len(faces)
        results = [
            self._face_result(f, p, e) for f, p, e in zip(faces, probs, per_expert, strict=True)
        ]
        p_file = float(probs.max()) if len(probs) else None
        return FileResult(
            path=path,
            kind="image",
            faces=results,
            fake_probability=p_file,
            label=self._label(p_file),
            model=self.model_name,
            model_sha256=self.model_sha256,
            threshold=self.threshold,
            uncertain_band=self._band(),
            limits=self.limits,
            rule=IMAGE_RULE,
            processing_time_s=time.perf_counter() - t0,
            width=int(width),
            height=int(height),
        )

    def detect_video(
        self, source: str | os.PathLike | bytes, path: str | None = None, frames: int | None = None
    ) -> FileResult:
        t0 = time.perf_counter()
        info, sampled = read_video(
            source, self.settings, frames=frames or self.frames, fps=self.fps
        )
        per_frame: list[list[Face]] = []
        with ProgressBar(len(sampled) + 1, "video frames", enabled=self.progress) as bar:
            for fr in sampled:
                per_frame.append(self._find(fr.image))
                bar.advance()
            scores = self.scorer([f.crop for faces in per_frame for f in faces])
            bar.advance()  # the last step: scoring every face found
        return self.video_result(info, sampled, per_frame, scores, path=path, t0=t0)

    def video_result(
        self,
        info: VideoInfo,
        frames: list[VideoFrame],
        per_frame: list[list[Face]],
        scores: FaceScores,
        *,
        path: str | None,
        t0: float,
    ) -> FileResult:
        """The verdict for a video from its sampled frames (only ``index`` and ``time_s`` are
        read), the faces of each frame (crops attached) and their scores, in frame order."""
        flat = [f for faces in per_frame for f in faces]
        probs: list[np.ndarray] = []
        experts: list[list[dict | None]] = []
        per_expert_flat = scores.expert_probabilities() or [None] * len(flat)
        k = 0
        for faces in per_frame:
            probs.append(scores.probability[k : k + len(faces)])
            experts.append(per_expert_flat[k : k + len(faces)])
            k += len(faces)

        frame_preds = []
        for fr, faces, p in zip(frames, per_frame, probs, strict=True):
            pf = float(p.max()) if len(p) else None
            frame_preds.append(
                FramePrediction(
                    frame_index=fr.index,
                    time_s=fr.time_s,
                    num_faces=len(faces),
                    fake_probability=pf,
                    label=self._label(pf),
                )
            )

        tracks = video_tracks(per_frame)
        track_results = []
        for t in tracks:
            ps = [float(probs[pos][fi]) for pos, fi in t.members]
            first_pos, first_fi = t.members[0]
            face = per_frame[first_pos][first_fi]
            mean_p = float(np.mean(ps))
            member_experts = [experts[pos][fi] for pos, fi in t.members]
            track_experts = (
                {n: float(np.mean([e[n] for e in member_experts])) for n in member_experts[0]}
                if member_experts[0] is not None
                else None
            )
            track_results.append(
                FaceResult(
                    box=list(face.box),
                    det_score=float(np.mean([per_frame[p][i].score for p, i in t.members])),
                    fake_probability=mean_p,
                    label=self._label(mean_p),
                    track_id=t.id,
                    frames=[frames[pos].index for pos, _ in t.members],
                    experts=track_experts,
                ).attach(face.crop, self.aligner.matrix(face))
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
            model_sha256=self.model_sha256,
            threshold=self.threshold,
            uncertain_band=self._band(),
            limits=self.limits,
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
            "sha256": self.model_sha256,
            "arch": self.meta.arch,
            "device": self.device,
            "threshold": self.threshold,
            "uncertain_band": self._band(),
            "limits": self.limits,
            "calibration": self.meta.calibration.method,
            "crop": self.contract.describe(),
            "input_size": self.scorer.preprocess.size,
        }


def label_for(p: float | None, threshold: float, uncertain: tuple[float, float]) -> Label:
    """``no_face`` without a probability; ``uncertain`` in ``[low, high)``; else ``fake`` at or
    above ``threshold``, ``real`` below."""
    if p is None:
        return "no_face"
    low, high = uncertain
    if low <= p < high:
        return "uncertain"
    return "fake" if p >= threshold else "real"


def video_tracks(per_frame: list[list[Face]]) -> list[Track]:
    """Face tracks across a video's sampled frames (``Track.members``: (frame position, face
    index) pairs): the one linking that video verdicts aggregate over."""
    return link_tracks([[f.box for f in faces] for faces in per_frame])


def model_display_name(path: Path, meta) -> str:
    """A shipped model is called by its file name (one set of weights may ship under two names,
    e.g. the fused default's CNN alone as ``facetrust-fast``); any other file by the name in
    its metadata, never a shipped model's name (then its file stem)."""
    shipped = shipped_models()
    if shipped.get(path.stem) == path:
        return path.stem
    name = meta.name or path.stem
    return path.stem if name in shipped else name


def model_limits(path: Path, meta) -> str | None:
    """One line on what the model was not trained on: the checkpoint's ``limits``; for a
    shipped model without one, the ``**Limits:**`` line of its model card; else the training
    sources named in its metadata (None when it names none)."""
    if meta.limits:
        return meta.limits
    shipped = shipped_models()
    if shipped.get(path.stem) == path:
        card = path.parent / "MODEL_CARD.md"
        if card.is_file():
            for line in card.read_text(encoding="utf-8").splitlines():
                if line.startswith("**Limits:**"):
                    return line.removeprefix("**Limits:**").strip()
    train = (meta.training_data or {}).get("train")
    if isinstance(train, dict) and train:
        names = ", ".join(sorted(str(k) for k in train))
        return f"trained only on the sources {names}; not validated on other kinds of fake"
    return None
