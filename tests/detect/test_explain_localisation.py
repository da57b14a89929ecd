"""The heatmap lands on the artefact: map -> inverse warp -> image position, on a rotated face.

A ``tiny_cnn`` is trained in the test (seconds) to call a 64 px crop "fake" when a small
saturated-green patch is blended in anywhere, "real" otherwise (windows of photos). Such a
patch is then blended on one cheek of a rotated photo of a face: the explanation must peak
there, and move when the patch moves to the other cheek. The shipped model does not react to
a synthetic artefact reliably; this one does, so the test checks the localisation pipeline
(crop map -> inverse affine warp -> image position), not a detector.
"""

from __future__ import annotations

import numpy as np
import pytest

from facetrust.detect import Detector
from facetrust.detect.explain import Explainer

CROP = 64
STEPS = 100


GREEN = np.array([0.0, 1.0, 0.2], np.float32)  # the artefact's colour: no photo here has it


def _blob(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    """A feathered disc ``(h, w)`` in [0, 1]: 1 inside ``0.7 r``, 0 beyond ``r``."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / r
    return np.clip((1.0 - d) / 0.3, 0.0, 1.0)


def _photo_windows(rng, n: int, photos: list[np.ndarray]) -> np.ndarray:
    """Real-looking crops: random windows of photos at random scales, ``[n, 64, 64, 3]`` 0-1."""
    import cv2

    out = np.empty((n, CROP, CROP, 3), np.float32)
    for i in range(n):
        photo = photos[int(rng.integers(len(photos)))]
        h, w = photo.shape[:2]
        side = int(rng.integers(CROP, min(h, w) // 2))
        y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
        win = photo[y : y + side, x : x + side]
        out[i] = cv2.resize(win, (CROP, CROP), interpolation=cv2.INTER_AREA) / 255.0
    return out


def _paste_blob(rng, crops: np.ndarray) -> np.ndarray:
    out = crops.copy()
    for img in out:
        r = rng.uniform(5, 10)
        cx, cy = rng.uniform(r, CROP - r, 2)
        a = rng.uniform(0.5, 0.9) * _blob(CROP, CROP, cx, cy, r)[:, :, None]
        img[:] = img * (1 - a) + GREEN * a
    return out


@pytest.fixture(scope="module")
def artefact_checkpoint(tmp_path_factory):
    """``tiny_cnn`` at 64 px that learnt "a green blended patch = fake" on windows of photos
    (a few seconds here)."""
    import torch
    from skimage import data

    from facetrust.models import CheckpointMeta, create_model, save_checkpoint

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    photos = [data.astronaut(), data.chelsea(), data.coffee()]
    model = create_model("tiny_cnn")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(STEPS):
        real = _photo_windows(rng, 16, photos)
        fake = _paste_blob(rng, _photo_windows(rng, 16, photos))
        x = torch.from_numpy(np.concatenate([real, fake])).permute(0, 3, 1, 2)
        y = torch.cat([torch.zeros(16), torch.ones(16)])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    meta = CheckpointMeta(
        facetrust_version="test",
        arch="tiny_cnn",
        input_size=CROP,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        face_margin=0.2,
        crop_size=CROP,
        calibration={"method": "temperature", "temperature": 1.0},
        threshold=0.5,
        threshold_rule="test",
        training_data={"synthetic": "photo windows vs the same + a green blended patch, 64 px"},
        metrics={"final_loss": float(loss.detach())},
        created="2026-01-01T00:00:00Z",
        name="artefact-test",
    )
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "artefact.safetensors", model, meta)


@pytest.fixture(scope="module")
def explainer(artefact_checkpoint):
    return Explainer(Detector(artefact_checkpoint, device="cpu", provenance=False))


@pytest.fixture(scope="module")
def rotated_face(astronaut):
    """The astronaut rotated by 20 degrees about her face (so the crop's affine rotates)."""
    import cv2

    m = cv2.getRotationMatrix2D((225.0, 125.0), 20.0, 1.0)
    return cv2.warpAffine(astronaut, m, (512, 512), borderMode=cv2.BORDER_REFLECT)


def _with_patch(image: np.ndarray, box, at: tuple[float, float]) -> tuple[np.ndarray, tuple]:
    """Blend a green disc on the face at ``at`` (fractions of its box: x, y); returns the image
    and the disc's box ``(x1, y1, x2, y2)``."""
    x1, y1, x2, y2 = box
    bw = x2 - x1
    r = 0.12 * bw
    cx, cy = x1 + at[0] * bw, y1 + at[1] * (y2 - y1)
    h, w = image.shape[:2]
    a = 0.8 * _blob(h, w, cx, cy, r)[:, :, None]
    out = image.astype(np.float32) * (1 - a) + 255.0 * GREEN * a
    patch = (int(cx - r), int(cy - r), int(cx + r) + 1, int(cy + r) + 1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), patch


def _inside(a: np.ndarray, patch) -> np.ndarray:
    x1, y1, x2, y2 = patch
    m = np.zeros(a.shape, bool)
    m[y1:y2, x1:x2] = True
    return m


# far from the crop's centre, so a rotation taken the wrong way moves the map off the patch
@pytest.mark.parametrize("at", [(0.22, 0.3), (0.78, 0.3), (0.75, 0.75)])
def test_heatmap_peaks_on_the_pasted_artefact(explainer, rotated_face, at):
    faces = explainer.detector.faces(rotated_face)
    assert len(faces) == 1
    image, patch = _with_patch(rotated_face, [int(v) for v in faces[0].box], at)
    ex = explainer(image)
    assert len(ex.faces) == 1
    face = ex.faces[0]
    assert face.label == "fake"  # the rigged model sees its artefact
    inside = _inside(ex.heatmap, patch)
    face_rest = (ex.coverage > 0.5) & ~inside
    heat_in, heat_out = ex.heatmap[inside].mean(), ex.heatmap[face_rest].mean()
    assert heat_in > 2.0 * heat_out, (heat_in, heat_out)
    # the hottest point is on the patch: within 0.8 of its radius from its centre (measured:
    # 4.5-6.5 px of 12.5; 14-22 px with the rotation reversed, 0 heat with the forward matrix)
    x1, y1, x2, y2 = patch
    r = (x2 - x1) / 2
    dist = np.hypot(face.peak[0] - (x1 + x2) / 2, face.peak[1] - (y1 + y2) / 2)
    assert dist < 0.8 * r, (face.peak, patch)
    # the visible overlay follows: strongest tint on the patch
    assert ex.opacity[inside].mean() > 2.0 * ex.opacity[face_rest].mean()


def test_plain_face_is_faint_and_outside_unchanged(explainer, rotated_face):
    """No artefact: the model says real and the overlay stays within alpha x p(fake)."""
    ex = explainer(rotated_face)
    face = ex.faces[0]
    assert face.label == "real" and face.fake_probability < 0.3
    overlay = ex.overlay().astype(np.int16)
    diff = np.abs(overlay - rotated_face.astype(np.int16)).max()
    assert ex.opacity.max() <= ex.alpha * face.fake_probability + 1e-6
    assert diff <= ex.alpha * face.fake_probability * 255 + 1
