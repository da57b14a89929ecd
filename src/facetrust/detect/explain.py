"""Class-activation explanations: which pixels of each face pushed the model towards "fake".

``Explainer`` is configured once (a ``Detector`` or a checkpoint, a method) and called on
images. It runs the detector once (the result keeps each face's aligned crop and affine
matrix), then computes on every crop a multi-layer class-activation map of the "fake" logit
(:mod:`facetrust.detect.cam`): the model's last spatial layer (``facetrust_cam_layer``, Grad-CAM,
Grad-CAM++ or LayerCAM) averaged with LayerCAM maps of up to two earlier, finer stages (for the
shipped EfficientNet-Lite0 at 192 px: 6 x 6, 12 x 12 and 24 x 24). Hooks live only for one call.

Each face's map is warped back onto the image with the inverse of its crop's affine transform
(rotation included), multiplied by a feathered face ellipse, and blended with an opacity of
``alpha x map^1.5 x p(fake)`` (:mod:`facetrust.detect.heatmap_render`): the colour says *where* the
evidence for "fake" lies within a face (each map is scaled to its own maximum, as Grad-CAM
does); the opacity also says *how much* the model believes it, so a face it finds real at p 0.15
stays faint instead of showing bright red eyes. Pixels outside faces are unchanged.
``Explanation.report()`` adds each face's box and verdict, a colour bar with its meaning and a
footer naming the model, its threshold and its limits.
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

__all__ = ["METHODS", "Explainer", "Explanation", "FaceExplanation"]

Method = Literal["gradcam", "gradcam++", "layercam"]
#: Supported methods (at the last spatial layer; the finer layers always use LayerCAM).
METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "layercam")
_METHOD_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "layercam": "LayerCAM"}


@dataclass
class FaceExplanation:
    """One face: where it is, its verdict, and its heatmap on the aligned crop.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in image pixels.
        fake_probability: calibrated probability (as in the detector's result).
        label: ``"fake"``, ``"real"`` or ``"uncertain"``.
        heatmap: ``(S, S)`` float32 in [0, 1] on the aligned crop (S = the crop contract's side),
            scaled to its own maximum (all zero: nothing pushed the model towards "fake").
        mask: ``(S, S)`` float32 in [0, 1]: the feathered face ellipse the heatmap is shown in.
        crop: the aligned ``(S, S, 3)`` uint8 crop the model saw.
        matrix: the ``2x3`` affine taking image pixels to crop pixels.
        peak: ``(x, y)`` image pixel where this face's masked heatmap is largest; ``None`` when
            the map is all zero.
    """

    box: tuple[float, float, float, float]
    fake_probability: float
    label: str
    heatmap: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    crop: np.ndarray = field(repr=False)
    matrix: np.ndarray = field(repr=False)
    peak: tuple[float, float] | None = None

    def overlay(self, alpha: float = 0.6) -> np.ndarray:
        """The crop with its heatmap blended on top (opacity ``alpha x map^1.5 x mask x p(fake)``),
        ``(S, S, 3)`` uint8."""
        from facetrust.detect.heatmap_render import blend, opacity

        shown = opacity(self.heatmap, self.fake_probability, alpha) * self.mask
        return blend(self.crop, self.heatmap, shown)

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
        image: the decoded ``(H, W, 3)`` uint8 RGB image, resized by ``scale`` (the explainer's
            ``max_side`` / ``min_side``).
        heatmap: ``(H, W)`` float32 in [0, 1]; each face's map warped back (where faces
            overlap, the face whose mask is stronger), 0 outside the face masks.
        coverage: ``(H, W)`` float32 in [0, 1]; the feathered face masks warped back.
        opacity: ``(H, W)`` float32: the overlay's opacity, ``alpha x heatmap^1.5 x coverage x
            p(fake)`` of the face.
        faces: one ``FaceExplanation`` per face, in the order of ``prediction["faces"]``
            (boxes and peaks in pixels of the original image).
        prediction: the detector's result dict (the same as ``facetrust detect --json``).
        method: the method at the last layer (``"gradcam"``, ``"gradcam++"``, ``"layercam"``).
        layers: the layers averaged, coarse to fine (the first one with ``method``, the others
            with LayerCAM).
    """

    image: np.ndarray = field(repr=False)
    heatmap: np.ndarray = field(repr=False)
    coverage: np.ndarray = field(repr=False)
    opacity: np.ndarray = field(repr=False)
    faces: list[FaceExplanation]
    prediction: dict[str, Any]
    method: str
    layers: tuple[str, ...]
    alpha: float = 0.6
    scale: float = 1.0
    # what the heatmap explains: the CNN; for a fused model only its CNN expert has one
    explains: str = "the model (its CNN)"
    # a fused model's other experts (they weigh in the verdict and have no heatmap)
    other_experts: tuple[str, ...] = ()

    @property
    def layer(self) -> str:
        """The last spatial layer (where ``method`` is applied; ``layers[0]``)."""
        return self.layers[0]

    @property
    def method_note(self) -> str:
        """One line: which maps of which model are shown."""
        name = _METHOD_NAMES.get(self.method, self.method)
        fine = f" + LayerCAM at {', '.join(self.layers[1:])}" if len(self.layers) > 1 else ""
        if self.other_experts:
            others = ", ".join(self.other_experts)
            cnn = f"the CNN expert only ({others}: in the verdict, no heatmap)"
        else:  # a CNN, or a ViT (clip_vit_b16_ln: its patch grid)
            cnn = "the model"
        return f"Heatmap of {cnn}: {name} at {self.layers[0]}{fine}"

    def overlay(self) -> np.ndarray:
        """The image with the heatmap blended inside every face, ``(H, W, 3)`` uint8; pixels
        outside the faces' masks are the image's own."""
        from facetrust.detect.heatmap_render import blend

        return blend(self.image, self.heatmap, self.opacity)

    def report(self, min_width: int = 480) -> np.ndarray:
        """``overlay()`` annotated: each face's box and verdict (label, p(fake), model), then a
        strip with the colour bar and its meaning, the method and a footer (model, limits).
        ``(H + strip, W, 3)`` uint8; an overlay narrower than ``min_width`` is enlarged first
        (bicubic) so the text stays readable."""
        import cv2

        from facetrust.detect.heatmap_render import FaceLabel, render_report

        overlay = self.overlay()
        h, w = overlay.shape[:2]
        grow = max(1.0, min_width / w)
        if grow > 1.0:
            size = (round(w * grow), round(h * grow))
            overlay = cv2.resize(overlay, size, interpolation=cv2.INTER_CUBIC)
        p = self.prediction
        labels = [
            FaceLabel(
                tuple(float(v) * self.scale * grow for v in f.box),  # type: ignore[arg-type]
                f.label,
                f.fake_probability,
            )
            for f in self.faces
        ]
        model = str(p.get("model") or "model")
        sha = p.get("model_sha256")
        rule = ""
        if p.get("threshold") is not None:
            rule = f": fake at p(fake) >= {float(p['threshold']):.2f}"
            band = p.get("uncertain_band")
            if band:
                rule += f", uncertain {float(band[0]):.2f}-{float(band[1]):.2f}"
        limits = p.get("limits") or "no limits stated with this model"
        notes = [
            self.method_note + ".",
            f"{model}{f' ({sha})' if sha else ''}{rule}. Limits: {limits}",
        ]
        return render_report(overlay, labels, model=model, notes=notes)

    def overlay_png(self, max_side: int | None = None) -> bytes:
        """``overlay()`` as PNG bytes, downscaled so its longer side is at most ``max_side``."""
        return encode_png(self.overlay(), max_side)

    def report_png(self) -> bytes:
        """``report()`` as PNG bytes (what ``facetrust explain -o`` writes)."""
        return encode_png(self.report())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: prediction, method, layers and per-face peaks (no pixels)."""
        return {
            "method": self.method,
            "layer": self.layer,
            "layers": list(self.layers),
            "explains": self.explains,
            "opacity": "alpha x map^1.5 x p(fake) of the face",
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


class Explainer:
    """Class-activation heatmaps of the "fake" logit for every face in an image.

    Args:
        detector: a ``Detector``, or a checkpoint path / shipped model name to build one
            (``None``: the default model; ``NoModelError`` when none is installed).
        method: ``"gradcam"``, ``"gradcam++"`` or ``"layercam"`` at the last spatial layer.
        alpha: the overlay's largest opacity (at the map's peak, for a face at p(fake) 1), in
            [0, 1]; the opacity is ``alpha x map^1.5 x p(fake)``.
        max_side: composite at most this many pixels on the longer side (detection still runs
            on the full image); ``None``: no downscaling.
        min_side: composite at least this many pixels on the longer side (small images are
            upscaled so the report's text stays readable); ``None``: no upscaling.
        layers: layers to average, coarse to fine; ``None``: the model's ``facetrust_cam_layer``
            and up to ``fine_layers`` earlier layers at finer resolutions (``finer_layers``).
        fine_layers: how many finer layers to add when ``layers`` is ``None`` (0: the last
            layer alone, as plain Grad-CAM).
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
        alpha: float = 0.6,
        max_side: int | None = None,
        min_side: int | None = None,
        layers: list[str] | tuple[str, ...] | None = None,
        fine_layers: int = 2,
        device: str | None = None,
        progress: bool | None = False,
    ) -> None:
        from facetrust.detect.cam import MultiLayerCAM, finer_layers

        self.progress = progress  # a bar on stderr over the steps; None = on a terminal
        from facetrust.detect.pipeline import Detector

        if method not in METHODS:
            raise InputError(f"unknown explanation method {method!r}; use one of {METHODS}")
        if not 0.0 <= alpha <= 1.0:
            raise InputError("alpha must be between 0 and 1")
        if max_side is not None and max_side < 16:
            raise InputError("max_side must be at least 16 pixels")
        if min_side is not None and max_side is not None and min_side > max_side:
            raise InputError("min_side must not exceed max_side")
        if fine_layers < 0:
            raise InputError("fine_layers must be 0 or more")
        if not isinstance(detector, Detector):
            detector = Detector(detector, device=device)
        self.detector = detector
        self.method = method
        self.alpha = float(alpha)
        self.max_side = max_side
        self.min_side = min_side

        self.model = copy.deepcopy(detector.model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)  # gradients are needed for activations only
        last = str(getattr(self.model, "facetrust_cam_layer", "") or "")
        if layers is None:
            if not last:
                raise InputError("the model names no facetrust_cam_layer to explain at")
            size = int(detector.scorer.preprocess.size)
            layers = finer_layers(self.model, last, size, extra=fine_layers)
        layers = tuple(str(n) for n in layers)
        if not layers:
            raise InputError("name at least one layer to explain at")
        for name in layers:
            try:
                self.model.get_submodule(name)
            except AttributeError:
                raise InputError(f"the model has no layer {name!r}") from None
        self.layers = layers
        self._cam = MultiLayerCAM(self.model, layers, [method, *(["layercam"] * (len(layers) - 1))])
        contract = detector.contract
        from facetrust.detect.heatmap_render import face_mask

        self._mask = face_mask(int(contract.size), float(contract.margin))
        self._lock = threading.Lock()

    @property
    def layer(self) -> str:
        """The last spatial layer (where ``method`` is applied; ``layers[0]``)."""
        return self.layers[0]

    def __repr__(self) -> str:
        return (
            f"Explainer(model={self.detector.model_name!r}, method={self.method!r}, "
            f"layers={list(self.layers)!r}, alpha={self.alpha}, max_side={self.max_side}, "
            f"min_side={self.min_side})"
        )

    # ---- heatmaps on crops -------------------------------------------------------------------
    def heatmaps(self, crops: list[np.ndarray]) -> np.ndarray:
        """Maps for aligned crops (each ``S x S x 3`` uint8, cut by the detector's crop
        contract): ``(N, S, S)`` float32 in [0, 1], each scaled to its own maximum. The model
        reads them through the scoring core's preprocessing (resized to its input size)."""
        if not crops:
            return np.zeros((0, 0, 0), np.float32)
        det = self.detector
        side = crops[0].shape[0]
        x = det.scorer.preprocess(crops).to(det.device)
        with self._lock:
            maps, _ = self._cam(x, side)
        return maps

    # ---- whole images ------------------------------------------------------------------------
    def _scale(self, h: int, w: int) -> float:
        longer = max(h, w)
        scale = 1.0
        if self.max_side is not None and longer > self.max_side:
            scale = self.max_side / longer
        if self.min_side is not None and longer < self.min_side:
            scale = self.min_side / longer
        return scale

    def __call__(
        self, image: str | os.PathLike | bytes | np.ndarray, path: str | None = None
    ) -> Explanation:
        """Explain the detector's verdict on an image (path, encoded bytes or RGB array); the
        detector runs once and its faces' crops and transforms are reused."""
        import cv2

        from facetrust.detect.heatmap_render import opacity as face_opacity
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
        from facetrust.progress import ProgressBar

        result = det.detect_image(rgb, path=path)  # faces keep their crops and transforms
        prediction = result.as_json()
        crops = [f.crop for f in result.faces]
        maps = []
        with ProgressBar(len(crops), "explain: heatmaps", enabled=self.progress) as bar:
            for crop in crops:  # one CAM pass per face (each map scaled to its own maximum)
                maps.append(self.heatmaps([crop])[0])
                bar.advance()

        h, w = rgb.shape[:2]
        scale = self._scale(h, w)
        oh, ow = max(1, round(h * scale)), max(1, round(w * scale))
        if scale == 1.0:
            base = rgb
        else:
            interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
            base = cv2.resize(rgb, (ow, oh), interpolation=interp)
        heat = np.zeros((oh, ow), np.float32)
        cover = np.zeros((oh, ow), np.float32)
        opacity = np.zeros((oh, ow), np.float32)
        out_faces = []
        for res, crop, fmap in zip(result.faces, crops, maps, strict=True):
            m = res.matrix
            inv = cv2.invertAffineTransform(m)  # crop pixels -> image pixels
            inv_out = inv * scale  # crop pixels -> composite pixels
            warped = self._warp(fmap, inv_out, (ow, oh))
            mask = self._warp(self._mask, inv_out, (ow, oh))
            p = float(res.fake_probability)
            stronger = mask > cover
            heat[stronger] = warped[stronger]
            np.maximum(cover, mask, out=cover)
            np.maximum(opacity, face_opacity(warped, p, self.alpha) * mask, out=opacity)
            shown = fmap * self._mask
            peak = None
            if shown.max() > 0:
                py, px = np.unravel_index(int(np.argmax(shown)), shown.shape)
                x, y = inv @ np.array([px + 0.5, py + 0.5, 1.0])
                peak = (float(x), float(y))
            out_faces.append(
                FaceExplanation(
                    box=tuple(float(v) for v in res.box),  # type: ignore[arg-type]
                    fake_probability=p,
                    label=str(res.label),
                    heatmap=fmap,
                    mask=self._mask,
                    crop=crop,
                    matrix=m,
                    peak=peak,
                )
            )
        heat[cover <= 0] = 0.0
        others = (
            tuple(n for n in det.experts.inputs if n != "cnn") if det.experts is not None else ()
        )
        return Explanation(
            image=base,
            heatmap=np.clip(heat, 0.0, 1.0),
            coverage=cover,
            opacity=np.clip(opacity, 0.0, 1.0),
            faces=out_faces,
            prediction=prediction,
            method=self.method,
            layers=self.layers,
            alpha=self.alpha,
            scale=scale,
            explains=(
                "the CNN expert of a fused model (the verdict also weighs "
                + ", ".join(others)
                + ", which have no heatmap; see each face's experts)"
                if det.experts is not None
                else "the model (its CNN)"
            ),
            other_experts=others,
        )

    @staticmethod
    def _warp(a: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Warp a crop-space ``(S, S)`` float map into the composite by ``matrix`` (crop ->
        composite pixels); 0 outside the crop."""
        import cv2

        return cv2.warpAffine(
            a, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
