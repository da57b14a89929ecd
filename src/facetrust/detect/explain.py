"""Grad-CAM explanations: which pixels of each face pushed the model towards "fake".

``Explainer`` is configured once (a ``Detector`` or a checkpoint, a method) and called on
images. For every face the detector finds it computes a Grad-CAM (or Grad-CAM++) map of the
"fake" logit at the model's last spatial layer (``model.facetrust_cam_layer``) on the aligned
face crop, and maps it back onto the full image with the inverse of the crop's affine
transform. The maps come from pytorch-grad-cam; its hooks live only for the duration of one
call (its context manager removes them).

Each map is min-max scaled to [0, 1] per face, as Grad-CAM does: it shows *where* the evidence
for "fake" lies within a face, not *how much* there is. The probability says how much.
"""

from __future__ import annotations

import base64
import copy
import io
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from facetrust.errors import InputError, MediaError

__all__ = ["METHODS", "Explainer", "Explanation", "FaceExplanation", "FakeLogitTarget"]

Method = Literal["gradcam", "gradcam++"]
#: Supported explanation methods.
METHODS: tuple[str, ...] = ("gradcam", "gradcam++")


class FakeLogitTarget:
    """pytorch-grad-cam target: the model's "fake" logit (output column 0) of one sample."""

    def __call__(self, output):  # output: [num_classes] for one sample
        return output[..., 0]


@dataclass
class FaceExplanation:
    """One face: where it is, its verdict, and its heatmap on the aligned crop.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in image pixels.
        fake_probability: calibrated probability (as in the detector's result).
        label: ``"fake"`` or ``"real"``.
        heatmap: ``(S, S)`` float32 in [0, 1] on the aligned crop (S = the crop contract's side).
        crop: the aligned ``(S, S, 3)`` uint8 crop the model saw.
        matrix: the ``2x3`` affine taking image pixels to crop pixels.
        peak: ``(x, y)`` image pixel where this face's heatmap is largest; ``None`` when the map
            is all zero (nothing in the face pushed the model towards "fake").
    """

    box: tuple[float, float, float, float]
    fake_probability: float
    label: str
    heatmap: np.ndarray = field(repr=False)
    crop: np.ndarray = field(repr=False)
    matrix: np.ndarray = field(repr=False)
    peak: tuple[float, float] | None = None

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """The crop with its heatmap blended on top, ``(S, S, 3)`` uint8."""
        return blend_heatmap(self.crop, self.heatmap, np.ones_like(self.heatmap), alpha)

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "fake_probability": round(float(self.fake_probability), 4),
            "label": self.label,
            "peak": None if self.peak is None else [round(float(v), 1) for v in self.peak],
        }


@dataclass
class Explanation:
    """The result of an ``Explainer`` call.

    Attributes:
        image: the decoded ``(H, W, 3)`` uint8 RGB image (downscaled by ``scale`` when the
            explainer has a ``max_side``).
        heatmap: ``(H, W)`` float32 in [0, 1]; each face's map warped back, 0 outside faces.
        coverage: ``(H, W)`` float32 in [0, 1]; where the face crops cover the image.
        faces: one ``FaceExplanation`` per face, in the order of ``prediction["faces"]``
            (boxes and peaks in pixels of the original image).
        prediction: the detector's result dict (the same as ``facetrust detect --json``).
        method: ``"gradcam"`` or ``"gradcam++"``.
        layer: the model layer the maps were taken at.
    """

    image: np.ndarray = field(repr=False)
    heatmap: np.ndarray = field(repr=False)
    coverage: np.ndarray = field(repr=False)
    faces: list[FaceExplanation]
    prediction: dict[str, Any]
    method: str
    layer: str
    alpha: float = 0.5
    scale: float = 1.0
    # what the heatmap explains: the CNN; for a fused model only its CNN expert has one
    explains: str = "the model (its CNN)"

    def overlay(self) -> np.ndarray:
        """The image with the heatmap blended over every face, ``(H, W, 3)`` uint8."""
        return blend_heatmap(self.image, self.heatmap, self.coverage, self.alpha)

    def overlay_png(self, max_side: int | None = None) -> bytes:
        """``overlay()`` as PNG bytes, downscaled so its longer side is at most ``max_side``."""
        return encode_png(self.overlay(), max_side)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: prediction, method, layer and per-face peaks (no pixels)."""
        return {
            "method": self.method,
            "layer": self.layer,
            "explains": self.explains,
            "prediction": self.prediction,
            "faces": [f.to_dict() for f in self.faces],
        }


def encode_png(image: np.ndarray, max_side: int | None = None) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 RGB array as PNG, optionally downscaled (area filter)."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image))
    if max_side is not None and max(im.size) > max_side:
        scale = max_side / max(im.size)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(size, Image.Resampling.BOX)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def png_base64(image: np.ndarray, max_side: int | None = None) -> str:
    """``encode_png`` as an ASCII base64 string."""
    return base64.b64encode(encode_png(image, max_side)).decode("ascii")


def blend_heatmap(
    image: np.ndarray, heatmap: np.ndarray, coverage: np.ndarray, alpha: float = 0.5
) -> np.ndarray:
    """Blend a jet-coloured ``heatmap`` (H, W in [0, 1]) over ``image`` where ``coverage`` > 0."""
    import cv2

    heat8 = np.clip(np.rint(heatmap * 255.0), 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(heat8, cv2.COLORMAP_JET)[:, :, ::-1].astype(np.float32)
    a = (alpha * np.clip(coverage, 0.0, 1.0)).astype(np.float32)[:, :, None]
    out = image.astype(np.float32) * (1.0 - a) + colour * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class Explainer:
    """Grad-CAM heatmaps of the "fake" logit for every face in an image.

    Args:
        detector: a ``Detector``, or a checkpoint path / shipped model name to build one
            (``None``: the default model; ``NoModelError`` when none is installed).
        method: ``"gradcam"`` or ``"gradcam++"``.
        alpha: heatmap opacity in overlays, in [0, 1].
        max_side: composite the full-image heatmap at most this many pixels on the longer
            side (detection still runs on the full image); ``None``: full resolution.
        device: device for a detector built here.

    The explainer works on its own copy of the detector's model, so its hooks never touch the
    detector's forward passes. Calls on one explainer are serialised by a lock; the detector's
    face finder is not thread-safe, so callers sharing a ``Detector`` across threads must
    serialise its use too.
    """

    def __init__(
        self,
        detector: Any = None,
        *,
        method: Method = "gradcam",
        alpha: float = 0.5,
        max_side: int | None = None,
        device: str | None = None,
    ) -> None:
        from facetrust.detect.pipeline import Detector

        if method not in METHODS:
            raise InputError(f"unknown explanation method {method!r}; use one of {METHODS}")
        if not 0.0 <= alpha <= 1.0:
            raise InputError("alpha must be between 0 and 1")
        if max_side is not None and max_side < 16:
            raise InputError("max_side must be at least 16 pixels")
        if not isinstance(detector, Detector):
            detector = Detector(detector, device=device)
        self.detector = detector
        self.method = method
        self.alpha = float(alpha)
        self.max_side = max_side

        from facetrust._torchvision_compat import ensure_torchvision

        ensure_torchvision()  # pytorch_grad_cam imports torchvision
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus

        self._cam_class = GradCAM if method == "gradcam" else GradCAMPlusPlus
        self.model = copy.deepcopy(detector.model).eval()
        for p in self.model.parameters():
            p.requires_grad_(True)
        self.layer = str(getattr(self.model, "facetrust_cam_layer", "") or "")
        if not self.layer:
            raise InputError("the model names no facetrust_cam_layer to explain at")
        self._target_layer = self.model.get_submodule(self.layer)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Explainer(model={self.detector.model_name!r}, method={self.method!r}, "
            f"layer={self.layer!r}, alpha={self.alpha}, max_side={self.max_side})"
        )

    # ---- heatmaps on crops -------------------------------------------------------------------
    def heatmaps(self, crops: list[np.ndarray]) -> np.ndarray:
        """Grad-CAM maps for aligned crops (each ``S x S x 3`` uint8, cut by the detector's crop
        contract): ``(N, S, S)`` float32. The model reads them through the scoring core's
        preprocessing (resized to its input size); the maps are brought back to ``S``."""
        import cv2
        import torch

        if not crops:
            return np.zeros((0, 0, 0), np.float32)
        det = self.detector
        side = crops[0].shape[0]
        x = det.scorer.preprocess(crops).to(det.device)
        maps = None
        with self._lock, torch.enable_grad():
            with self._cam_class(model=self.model, target_layers=[self._target_layer]) as cam:
                maps = cam(input_tensor=x, targets=[FakeLogitTarget()] * len(crops))
            self.model.zero_grad(set_to_none=True)
        if maps is None:  # pytorch-grad-cam's context manager swallows IndexError
            raise RuntimeError(f"Grad-CAM failed at layer {self.layer!r}")
        maps = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0)
        if maps.shape[1] != side:
            maps = np.stack(
                [cv2.resize(m, (side, side), interpolation=cv2.INTER_LINEAR) for m in maps]
            )
        return np.clip(maps, 0.0, 1.0)

    # ---- whole images ------------------------------------------------------------------------
    def __call__(
        self, image: str | os.PathLike | bytes | np.ndarray, path: str | None = None
    ) -> Explanation:
        """Explain the detector's verdict on an image (path, encoded bytes or RGB array)."""
        import cv2

        from facetrust.media import ImageLimits, load_image
        from facetrust.media.sniff import sniff_kind, sniff_path

        det = self.detector
        if isinstance(image, bytes | bytearray) and sniff_kind(bytes(image[:64])) == "video":
            raise MediaError("explanations are computed for images; this is a video")
        if isinstance(image, str | os.PathLike):
            if Path(image).is_file() and sniff_path(image) == "video":
                raise MediaError("explanations are computed for images; this is a video")
            path = path or str(image)
        limits = ImageLimits(det.settings.max_image_pixels, det.settings.max_file_bytes)
        rgb = load_image(image, limits)
        result = det.detect_image(rgb, path=path)  # faces keep their crops and transforms
        prediction = result.as_json()
        crops = [f.crop for f in result.faces]
        maps = self.heatmaps(crops)

        h, w = rgb.shape[:2]
        scale = 1.0 if self.max_side is None else min(1.0, self.max_side / max(h, w))
        oh, ow = max(1, round(h * scale)), max(1, round(w * scale))
        base = rgb if scale == 1.0 else cv2.resize(rgb, (ow, oh), interpolation=cv2.INTER_AREA)
        heat = np.zeros((oh, ow), np.float32)
        cover = np.zeros((oh, ow), np.float32)
        out_faces = []
        size = det.contract.size
        for res, crop, fmap in zip(result.faces, crops, maps, strict=True):
            m = res.matrix
            inv = cv2.invertAffineTransform(m)  # crop pixels -> image pixels
            inv_out = inv * scale  # crop pixels -> composite pixels
            warped = cv2.warpAffine(
                fmap, inv_out, (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
            )
            mask = cv2.warpAffine(
                np.ones((size, size), np.float32),
                inv_out,
                (ow, oh),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
            )
            np.maximum(heat, warped, out=heat)
            np.maximum(cover, mask, out=cover)
            peak = None
            if fmap.max() > 0:
                py, px = np.unravel_index(int(np.argmax(fmap)), fmap.shape)
                x, y = inv @ np.array([px + 0.5, py + 0.5, 1.0])
                peak = (float(x), float(y))
            out_faces.append(
                FaceExplanation(
                    box=tuple(float(v) for v in res.box),  # type: ignore[arg-type]
                    fake_probability=float(res.fake_probability),
                    label=str(res.label),
                    heatmap=fmap,
                    crop=crop,
                    matrix=m,
                    peak=peak,
                )
            )
        return Explanation(
            image=base,
            heatmap=np.clip(heat, 0.0, 1.0),
            coverage=cover,
            faces=out_faces,
            prediction=prediction,
            method=self.method,
            layer=self.layer,
            alpha=self.alpha,
            scale=scale,
            explains=(
                "the CNN expert of a fused model (the verdict also weighs "
                + ", ".join(n for n in det.experts.inputs if n != "cnn")
                + ", which have no heatmap; see each face's experts)"
                if det.experts is not None
                else "the model (its CNN)"
            ),
        )
