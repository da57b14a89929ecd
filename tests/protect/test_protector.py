import io

import numpy as np
import pytest
from PIL import Image

from facetrust.errors import InputError, MediaError
from facetrust.protect import STRENGTHS, Protector
from facetrust.protect.mask import faces_mask

REPORT_KEYS = {
    "width",
    "height",
    "faces",
    "face_boxes",
    "regions",
    "identity_stability",
    "identity_band",
    "identity_per_encoder",
    "identity_stability_jpeg75",
    "psnr",
    "ssim",
    "linf",
    "linf_total",
    "eps",
    "steps",
    "eot_samples",
    "warp_px",
    "encoders",
    "seconds",
    "message",
    "strength",
    "psnr_target",
}


def test_report_fields_present_and_in_range(tiny_protector, small_portrait):
    res = tiny_protector(small_portrait)
    r = res.report
    assert set(r) >= REPORT_KEYS
    assert res.image.shape == small_portrait.shape and res.image.dtype == np.uint8
    assert r["faces"] == 1 and r["regions"] == "faces"
    assert (r["width"], r["height"]) == (160, 160)
    assert -1.0 <= r["identity_stability"] <= 1.0
    assert -1.0 <= r["identity_stability_jpeg75"] <= 1.0
    assert r["identity_band"] in {"strong", "moderate", "weak"}
    assert set(r["identity_per_encoder"]) == {"tiny"}
    assert 20.0 < r["psnr"] < 100.0 and 0.0 < r["ssim"] <= 1.0
    assert 0 < r["linf"] <= 20 and r["eps"] == pytest.approx(20.0)  # medium: cap 20/255
    assert r["psnr_target"] == pytest.approx(33.5) and r["psnr"] >= 33.5 - 0.006
    assert r["linf_total"] >= r["linf"]
    assert r["seconds"] > 0 and r["steps"] == 3
    assert r["warp_px"] == 1.0
    assert "protected 1 face" in r["message"]
    import json

    json.dumps(r, allow_nan=False)


def test_eps_bound_and_mask_containment(face_detector, astronaut):
    p = Protector(
        psnr=None,
        eps=12 / 255,
        encoders=("tiny",),
        steps=3,
        warp=False,
        precision="float32",
        detector=face_detector,
    )
    assert p.warp_px == 0 and p.pgd_config.norm == "linf"
    res = p(astronaut)
    diff = np.abs(res.image.astype(int) - astronaut.astype(int))
    assert diff.max() <= 12 and diff.max() > 0  # plain L-inf PGD at 12/255
    mask = faces_mask(astronaut.shape[:2], res.faces, p.feather)
    assert diff[mask == 0].max() == 0
    assert res.report["linf"] == res.report["linf_total"] == diff.max()


def test_warp_and_cloak_stay_inside_the_mask(tiny_protector, small_portrait):
    res = tiny_protector(small_portrait)
    mask = faces_mask(small_portrait.shape[:2], res.faces, tiny_protector.feather)
    assert (mask == 0).any()
    assert np.array_equal(res.image[mask == 0], small_portrait[mask == 0])


def test_no_face_returns_the_input_unchanged(tiny_protector, noise_image):
    res = tiny_protector(noise_image)
    assert np.array_equal(res.image, noise_image)
    assert res.image is not noise_image
    r = res.report
    assert r["faces"] == 0 and r["regions"] == "none" and "no face" in r["message"]
    assert r["identity_stability"] is None and r["psnr"] is None and r["linf"] == 0


def test_whole_image_protects_without_a_face(face_detector, noise_image):
    p = Protector(
        encoders=("tiny",),
        steps=2,
        whole_image=True,
        precision="float32",
        detector=face_detector,
        eps=4 / 255,
    )
    res = p(noise_image)
    diff = np.abs(res.image.astype(int) - noise_image.astype(int))
    assert 0 < diff.max() <= 4
    assert res.report["regions"] == "whole_image"


def test_exif_orientation_and_determinism(tiny_protector, small_portrait, tmp_path):
    wide = np.ascontiguousarray(np.rot90(small_portrait[:, :120]))  # stored 120 x 160 (H x W)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(wide).save(path, exif=exif.tobytes(), quality=95)
    res = tiny_protector(path)
    assert res.image.shape == (160, 120, 3)  # upright, as shown
    again = tiny_protector(path)
    assert np.array_equal(res.image, again.image)


def test_progress_callback(tiny_protector, small_portrait):
    seen = []
    tiny_protector(small_portrait, progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) >= 4


def test_bad_input_is_a_clear_error(tiny_protector, tmp_path):
    broken = tmp_path / "broken.jpg"
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(buf, format="JPEG")
    broken.write_bytes(buf.getvalue()[:300])
    with pytest.raises(MediaError):
        tiny_protector(broken)
    with pytest.raises(MediaError):
        tiny_protector(b"this is not an image")
    with pytest.raises(InputError, match="cannot load an image from int"):
        tiny_protector(5)
    with pytest.raises(InputError):
        tiny_protector(tmp_path / "missing.png")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"strength": "max"}, "unknown strength"),
        ({"eps": 8}, "pixel units"),
        ({"encoders": ("dlib",)}, "judge"),
        ({"encoders": ("resnet9000",)}, "valid names: clip_vit_b16"),
        ({"encoders": ()}, "at least one"),
        ({"warp_px": 3.0}, "warp_px"),
        ({"steps": -2}, "steps"),
        ({"device": "nonsense"}, "device"),
        ({"precision": "fp8"}, "precision"),
    ],
)
def test_configuration_is_validated(kwargs, match):
    with pytest.raises(InputError, match=match):
        Protector(**kwargs)


def test_repr_shows_the_configuration():
    text = repr(Protector("high", encoders=("tiny",), precision="float32"))
    high = STRENGTHS["high"]
    for part in (
        "strength='high'",
        f"psnr={high.psnr}",
        f"eps={high.eps * 255:g}/255",
        f"steps={high.steps}",
        f"eot_samples={high.eot_samples}",
        "'tiny'",
    ):
        assert part in text


@pytest.mark.parametrize("warp_px", [0.0, 1.0])
def test_psnr_target_is_kept_and_spent(face_detector, small_portrait, warp_px):
    """The PSNR budget holds for the whole photo (warp included) and the attack uses most of it;
    the L-inf cap and the mask still hold."""
    p = Protector(
        psnr=30.0,
        eps=24 / 255,
        encoders=("tiny",),
        steps=12,
        warp_px=warp_px,
        precision="float32",
        detector=face_detector,
        seed=2,
    )
    res = p(small_portrait)
    r = res.report
    assert r["psnr_target"] == 30.0
    assert 30.0 - 0.006 <= r["psnr"] <= 31.0
    assert r["linf"] <= 24
    mask = faces_mask(small_portrait.shape[:2], res.faces, p.feather)
    assert np.array_equal(res.image[mask == 0], small_portrait[mask == 0])


@pytest.mark.parametrize("psnr", [10, 70, "high", True, float("nan")])
def test_bad_psnr_is_an_input_error(psnr):
    with pytest.raises(InputError, match="psnr"):
        Protector(psnr=psnr, encoders=("tiny",))
