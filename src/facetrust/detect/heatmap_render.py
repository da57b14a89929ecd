"""Drawing explanations: a soft face mask, the heatmap blended inside it, and the annotated PNG.

Pure array and Pillow drawing (no matplotlib, no model): the ``Explainer`` computes the maps,
this module turns them into pixels a reviewer can read.

- ``face_mask``: a feathered ellipse in aligned-crop pixels; warped back with the face, it
  limits the heatmap to the face with no hard edge.
- ``blend``: colour = the heatmap through a colour map; ``opacity`` = ``alpha`` x map ** 1.5 x
  the face's strength (its p(fake)), so weak evidence is nearly transparent and pixels outside
  faces are unchanged.
- ``render_report``: the overlay with each face's box and verdict, and below it a colour bar
  with its meaning and a footer with the model, its threshold and its limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "COLOUR_BAR_TEXT",
    "FaceLabel",
    "blend",
    "colourise",
    "face_mask",
    "opacity",
    "render_report",
]

#: What the colour bar means (printed next to it).
COLOUR_BAR_TEXT = "contribution to the fake score: low -> high"
#: How the opacity follows the verdict (printed under the bar).
OPACITY_TEXT = (
    "Opacity grows with the contribution and with the face's p(fake): a face the model finds "
    "real stays faint."
)

#: Low contributions fade faster than linearly (0.3 of the peak: 0.16 of its opacity), so a
#: face is not washed in the colour map's low end.
OPACITY_GAMMA = 1.5

# verdict colours (RGB): fake red, real green, uncertain amber, as on the web page
_VERDICT_RGB = {
    "fake": (200, 30, 30),
    "real": (30, 140, 60),
    "uncertain": (215, 140, 0),
}


def face_mask(side: int, margin: float, feather: float = 0.18) -> np.ndarray:
    """Soft face mask ``(side, side)`` float32 in [0, 1] on an aligned crop.

    The crop (``facetrust.faces.align``) is a square of ``(1 + 2 margin)`` face-box sides centred
    on the face, eyes level; the face is an ellipse as wide as the box and 1.2 times as tall,
    a little above the centre (forehead). ``feather``: the width of the soft edge as a fraction
    of the radius (smoothstep from 1 at ``1 - feather`` to 0 at ``1 + feather``).
    """
    box = side / (1.0 + 2.0 * margin)
    a, b = 0.5 * box * 1.0, 0.5 * box * 1.2
    cy = side / 2.0 - 0.04 * box
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5
    r = np.sqrt(((xx - side / 2.0) / a) ** 2 + ((yy - cy) / b) ** 2)
    t = np.clip((1.0 + feather - r) / (2.0 * feather), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def opacity(heat: np.ndarray, strength: float | np.ndarray, alpha: float) -> np.ndarray:
    """The overlay's opacity: ``alpha x strength x heat ** OPACITY_GAMMA`` (float32). With
    ``strength`` the face's p(fake), weak maps and unlikely fakes stay nearly transparent."""
    return (alpha * np.asarray(strength, np.float32) * heat**OPACITY_GAMMA).astype(np.float32)


#: The colour map: ColorBrewer's sequential YlOrRd (light yellow -> orange -> dark red), one
#: hue family, so "more red" reads as "more", and skin is not tinted green or blue as by JET.
_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0], np.float32)
_COLOURS = np.array(
    [(255, 237, 160), (254, 178, 76), (253, 141, 60), (227, 26, 28), (150, 0, 38)], np.float32
)
_LUT = np.stack(
    [np.interp(np.linspace(0, 1, 256), _STOPS, _COLOURS[:, c]) for c in range(3)], axis=1
).astype(np.float32)


def colourise(heat: np.ndarray) -> np.ndarray:
    """``(H, W)`` in [0, 1] -> ``(H, W, 3)`` float32 RGB through the YlOrRd colour map."""
    idx = np.clip(np.rint(np.nan_to_num(heat) * 255.0), 0, 255).astype(np.uint8)
    return _LUT[idx]


def blend(image: np.ndarray, heat: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3 uint8) with ``colourise(heat)`` laid over it at ``opacity`` (H, W in
    [0, 1]); where ``opacity`` is 0 the pixels are returned unchanged."""
    a = np.clip(opacity, 0.0, 1.0).astype(np.float32)[:, :, None]
    out = image.astype(np.float32) * (1.0 - a) + colourise(heat) * a
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    keep = a[:, :, 0] <= 0
    out[keep] = image[keep]
    return out


@dataclass(frozen=True)
class FaceLabel:
    """What is written at one face: its box in output pixels and its verdict."""

    box: tuple[float, float, float, float]
    label: str
    probability: float


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError, ValueError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _fit(draw, text: str, font, width: float) -> str:
    """``text`` cut with an ellipsis so it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "\u2026", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "\u2026"


def _wrap(draw, text: str, font, width: float, max_lines: int) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        trial = f"{cur} {w}".strip()
        if cur and draw.textlength(trial, font=font) > width:
            lines.append(cur)
            cur = w
        else:
            cur = trial
    if cur:
        lines.append(cur)
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], _fit(draw, " ".join(lines[max_lines - 1 :]), font, width)]
    return lines


def render_report(
    overlay: np.ndarray,
    faces: Sequence[FaceLabel],
    *,
    model: str,
    notes: Sequence[str],
) -> np.ndarray:
    """The annotated explanation: ``overlay`` (H, W, 3 uint8) with each face's box and verdict
    (label, p(fake), model), then a strip with the colour bar and its meaning, how opacity is
    set, and ``notes`` (method, model, threshold, limits; each wrapped to at most 4 lines).
    Returns ``(H + strip, W, 3)`` uint8; the image part is ``overlay`` except under the boxes
    and labels."""
    from PIL import Image, ImageDraw

    h, w = overlay.shape[:2]
    fs = int(np.clip(round(w / 38), 11, 40))
    font, small = _font(fs), _font(max(10, round(fs * 0.85)))
    pad = max(4, fs // 2)
    line = round(fs * 1.3)
    probe = ImageDraw.Draw(Image.new("RGB", (8, 8)))
    texts = [OPACITY_TEXT, *notes]
    wrapped = [ln for t in texts for ln in _wrap(probe, t, small, w - 2 * pad, max_lines=4)]
    strip_h = pad + line + line + len(wrapped) * line + pad
    canvas = Image.new("RGB", (w, h + strip_h), (250, 250, 250))
    canvas.paste(Image.fromarray(np.ascontiguousarray(overlay)), (0, 0))
    draw = ImageDraw.Draw(canvas)

    # ---- faces: box and verdict ----------------------------------------------------------
    thick = max(1, round(w / 400))
    for f in faces:
        x1, y1, x2, y2 = (float(v) for v in f.box)
        colour = _VERDICT_RGB.get(f.label, (90, 90, 90))
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=thick)
        text = f"{f.label} \u00b7 p(fake) {f.probability:.2f} \u00b7 {model}"
        text = _fit(draw, text, small, w - pad - 2)
        tw = draw.textlength(text, font=small)
        th = round(line * 0.9)
        tx = min(max(0.0, x1), w - tw - pad)
        ty = y1 - th - 1 if y1 - th - 1 >= 0 else min(y2 + 1, h - th)
        draw.rectangle([tx, ty, tx + tw + pad, ty + th], fill=colour)
        draw.text((tx + pad / 2, ty + th / 2), text, font=small, fill=(255, 255, 255), anchor="lm")

    # ---- colour bar and notes ---------------------------------------------------------------
    y = h + pad
    bar_w = max(60, round(w * 0.32))
    ramp = np.linspace(0.0, 1.0, bar_w, dtype=np.float32)[None, :].repeat(line, axis=0)
    bar = blend(np.full((line, bar_w, 3), 160, np.uint8), ramp, opacity(ramp, 1.0, 0.85))
    canvas.paste(Image.fromarray(bar), (pad, y))
    draw.rectangle([pad, y, pad + bar_w, y + line], outline=(60, 60, 60), width=1)
    tx = 2 * pad + bar_w
    draw.text((tx, y + line / 2), _fit(draw, COLOUR_BAR_TEXT, font, w - tx - pad), font=font,
              fill=(20, 20, 20), anchor="lm")  # fmt: skip
    y += line
    draw.text((pad, y), "low", font=small, fill=(60, 60, 60), anchor="la")
    draw.text((pad + bar_w, y), "high", font=small, fill=(60, 60, 60), anchor="ra")
    y += line
    for i, text in enumerate(wrapped):
        colour = (20, 20, 20) if i == 0 else (80, 80, 80)
        draw.text((pad, y), text, font=small, fill=colour, anchor="la")
        y += line
    return np.asarray(canvas)
