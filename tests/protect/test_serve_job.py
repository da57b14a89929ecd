"""The server's protect job with the real Protector: the report is the ProtectReport dumped to
JSON plus its plain summary, and the job's progress messages carry the attack's steps."""

import io
import json

import numpy as np
from PIL import Image

from facetrust.media import ImageLimits
from facetrust.protect import Protector
from facetrust.serve.services import protect_task


class _Ctx:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.seen: list[tuple[float, str]] = []

    def read_input(self) -> bytes:
        return self.data

    def progress(self, fraction: float, message: str = "") -> None:
        self.seen.append((fraction, message))


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def test_protect_job_reports_figures_words_and_steps(face_detector, small_portrait):
    protector = Protector(
        "strong",
        encoders=("tiny",),
        steps=3,
        precision="float32",
        device="cpu",
        detector=face_detector,
    )
    task = protect_task(lambda strength: protector, "strong", ImageLimits())
    ctx = _Ctx(_png(small_portrait))
    out = task(ctx)
    r = out.report
    json.dumps(r, allow_nan=False)
    assert r["strength"] == "strong" and r["faces"] == 1
    assert r["face_ssim"] >= 0.93 and r["visibility"] in {"visible", "visible when enlarged"}
    assert "face SSIM" in r["summary"] and r["visibility"] in r["summary"]
    assert any("step 3 of 3" in m for _, m in ctx.seen)
    assert "protected.png" in out.files


def test_protect_job_without_a_face_names_whole_image(noise_image):
    protector = Protector(encoders=("tiny",), steps=2, device="cpu", detector=lambda im: [])
    task = protect_task(lambda strength: protector, "subtle", ImageLimits())
    out = task(_Ctx(_png(noise_image)))
    assert out.report["regions"] == "none" and "--whole-image" in out.report["summary"]
