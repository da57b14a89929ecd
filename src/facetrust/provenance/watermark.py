"""The invisible watermark of the Stable Diffusion reference code (``invisible-watermark``'s
DWT-DCT method), decoded from pixels.

The reference scripts embed a fixed payload with ``WatermarkEncoder().encode(bgr, 'dwtDct')``:
SD 1.x ``txt2img.py`` the bytes ``StableDiffusionV1`` (136 bits), SD 2.x the bytes ``SDV2``
(32 bits), SDXL (Stability's ``sgm`` and the diffusers pipelines) the 48 bits
``0b101100111110110010010000011110111011000110011110``. The sgm code hands the encoder BGR pixels,
diffusers hands it RGB ones, so both channel orders are read.

:func:`decode_bits` is a vectorised form of ``imwatermark.maxDct.EmbedMaxDct.decode`` (the
package's decoder loops over 4x4 blocks in Python: 5-9x slower on 512x512 here); a test checks
that both give the same bits. Only the U channel carries the payload (the package's scales
[0, 36, 36] are read by a ``range(2)`` loop). The package itself embeds the watermarks in the
tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facetrust.provenance.types import Evidence

__all__ = [
    "FOUND_AGREEMENT",
    "MIN_PIXELS",
    "PAYLOADS",
    "Payload",
    "decode_bits",
    "find_watermarks",
    "payload_agreement",
]

#: The decoder (as the package's) needs an image of at least 256x256 pixels' area.
MIN_PIXELS = 256 * 256
#: Agreement between decoded bits and a payload above which it counts as found. Unmarked
#: images agree with a payload about half the time; see the README for measured rates.
FOUND_AGREEMENT = 0.9

_SCALE = 36.0  # the package's default scale of the U channel (the only one it reads)
_BLOCK = 4


@dataclass(frozen=True)
class Payload:
    name: str
    generator: str
    bits: tuple[int, ...]


def _bytes_bits(b: bytes) -> tuple[int, ...]:
    return tuple(int(x) for x in np.unpackbits(np.frombuffer(b, dtype=np.uint8)))


PAYLOADS: tuple[Payload, ...] = (
    Payload(
        "StableDiffusionV1",
        "Stable Diffusion 1.x reference scripts",
        _bytes_bits(b"StableDiffusionV1"),
    ),
    Payload("SDV2", "Stable Diffusion 2.x reference scripts", _bytes_bits(b"SDV2")),
    Payload(
        "SDXL",
        "Stable Diffusion XL (sgm, diffusers)",
        tuple(int(c) for c in bin(0b101100111110110010010000011110111011000110011110)[2:]),
    ),
)


_H = 0.7071067811865476  # the Haar filter tap pywt uses


def _haar_approx(x: np.ndarray) -> np.ndarray:
    """``pywt.dwt2(x, 'haar')[0]`` for even-sized ``x``, bit for bit (same products and sums,
    rows first), without its ~10 ms per 512x512 of overhead."""
    x = x.astype(np.float64)
    t = x[0::2] * _H + x[1::2] * _H
    return t[:, 0::2] * _H + t[:, 1::2] * _H


def _block_scores(img: np.ndarray, code: int = cv2.COLOR_BGR2YUV) -> list[np.ndarray]:
    """Per 4x4 block of the Haar approximation of U: the package's 0/1 score, in its block
    order (row-major), one array per channel read."""
    h, w = img.shape[:2]
    yuv = cv2.cvtColor(img, code)
    out = []
    for ch in (1,):  # the package loops over range(2) with scales [0, 36, 36]: U only
        ca = _haar_approx(yuv[: h // 4 * 4, : w // 4 * 4, ch])
        r, c = ca.shape[0] // _BLOCK, ca.shape[1] // _BLOCK
        blocks = ca[: r * _BLOCK, : c * _BLOCK].reshape(r, _BLOCK, c, _BLOCK)
        flat = blocks.transpose(0, 2, 1, 3).reshape(r * c, _BLOCK * _BLOCK)
        rest = np.abs(flat[:, 1:])
        val = np.take_along_axis(rest, rest.argmax(axis=1)[:, None], axis=1)[:, 0]
        out.append((np.mod(val, _SCALE) > 0.5 * _SCALE).astype(np.float64))
    return out


def _bits_from_scores(scores: list[np.ndarray], length: int) -> np.ndarray:
    sums = np.zeros(length)
    counts = np.zeros(length)
    for s in scores:
        idx = np.arange(s.size) % length
        sums += np.bincount(idx, weights=s, minlength=length)
        counts += np.bincount(idx, minlength=length)
    with np.errstate(invalid="ignore"):
        avg = sums / counts
    return (avg * 255 > 127).astype(np.uint8)


def decode_bits(bgr: np.ndarray, length: int) -> np.ndarray:
    """``length`` watermark bits from an ``HxWx3`` uint8 BGR image, as
    ``imwatermark.WatermarkDecoder('bits', length).decode(bgr, 'dwtDct')`` gives them."""
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(f"decode_bits needs HxWx3 uint8, got {bgr.shape} {bgr.dtype}")
    return _bits_from_scores(_block_scores(bgr), length)


def payload_agreement(image: np.ndarray, channels: str = "RGB") -> dict[str, tuple[float, str]]:
    """For each known payload: (bit agreement in [0, 1], channel order) of the better of the two
    channel orders, for an ``HxWx3`` uint8 image (at least 256x256 pixels' area) whose channels
    are ``channels`` ("RGB" or "BGR"). Unmarked images score about 0.5."""
    if channels not in ("RGB", "BGR"):
        raise ValueError(f"channels must be 'RGB' or 'BGR', got {channels!r}")
    image = np.ascontiguousarray(image)
    # "BGR": the encoder was given BGR pixels (SD 1.x/2.x scripts, sgm); "RGB": it was given
    # RGB pixels as if BGR (diffusers)
    as_bgr, as_rgb = (
        (cv2.COLOR_RGB2YUV, cv2.COLOR_BGR2YUV)
        if channels == "RGB"
        else (cv2.COLOR_BGR2YUV, cv2.COLOR_RGB2YUV)
    )
    best: dict[str, tuple[float, str]] = {}
    for order, code in (("BGR", as_bgr), ("RGB", as_rgb)):
        scores = _block_scores(image, code)
        for p in PAYLOADS:
            bits = _bits_from_scores(scores, len(p.bits))
            agree = float(np.mean(bits == np.asarray(p.bits, dtype=np.uint8)))
            if agree > best.get(p.name, (-1.0, ""))[0]:
                best[p.name] = (agree, order)
    return best


def find_watermarks(image: np.ndarray, notes: list[str], channels: str = "RGB") -> list[Evidence]:
    """Evidence for each known payload found in an ``HxWx3`` uint8 image whose channels are
    ``channels`` ("RGB" or "BGR"); a note instead when the image is too small to decode."""
    h, w = image.shape[:2]
    if h * w < MIN_PIXELS:
        notes.append(
            f"watermark: the image is {w}x{h}, below the 256x256 pixels the DWT-DCT decoder "
            "needs; not checked"
        )
        return []
    best = payload_agreement(image, channels)
    ev = []
    for p in PAYLOADS:
        agree, order = best[p.name]
        if agree >= FOUND_AGREEMENT:
            ev.append(
                Evidence(
                    kind="watermark",
                    claim="created by a generative model (Stable Diffusion invisible watermark)",
                    generative=True,
                    source=f"{p.generator}: DWT-DCT payload '{p.name}'",
                    strength="embedded",
                    raw={
                        "payload": p.name,
                        "bits": len(p.bits),
                        "bit_agreement": round(agree, 4),
                        "channel_order": order,
                        "method": "dwtDct",
                    },
                )
            )
    return ev
