"""``resynth``: a real re-made whole by the autoencoder facetrust trains on reals."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from PIL import Image

from facetrust.data.pseudo import PSEUDO_FAKES, PseudoFakeMix, create_pseudo_fake
from facetrust.data.pseudo.resynth import (
    DEFAULT_RESYNTH,
    build_resynth_net,
    load_resynth_net,
    match_local_spectrum,
    match_spectrum,
    resynthesise,
)
from facetrust.errors import InputError, ModelError
from facetrust.train.resynth import ResynthTraining, train_resynth


@pytest.fixture(scope="module")
def crop(astronaut) -> np.ndarray:
    """A 256-px crop around the astronaut's face."""
    return np.ascontiguousarray(astronaut[20:276, 100:356])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255**2 / mse)


def _band_energy(img: np.ndarray, lo: float, hi: float) -> float:
    """Spectral energy of ``img`` between radial frequencies ``lo`` and ``hi`` (cycles/pixel)."""
    f = np.fft.rfft2(img.astype(np.float64).mean(axis=2))
    h, w = img.shape[:2]
    r = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)
    return float((np.abs(f[(r >= lo) & (r < hi)]) ** 2).sum())


def test_registered_and_mixable():
    assert "resynth" in PSEUDO_FAKES
    fake = PseudoFakeMix({"resynth": 1.0})(np.full((64, 64, 3), 128, np.uint8), rng=0)
    assert fake.kind == "resynth" and fake.label == "fake" and fake.y == 1


def test_shipped_net_re_makes_the_whole_face(crop):
    fake = create_pseudo_fake("resynth")(crop, rng=0)
    assert fake.image.shape == crop.shape and fake.image.dtype == np.uint8
    assert fake.kind == "resynth" and fake.label == "fake"
    expected = np.abs(fake.image.astype(np.float32) - crop.astype(np.float32)).mean(axis=2) / 255
    assert fake.mask.dtype == np.float32 and np.allclose(fake.mask, expected)
    # content kept: the same picture (identity, pose, colours) within a reconstruction error
    assert 24 < _psnr(fake.image, crop) < 45
    # but every part of it re-made: the change is spread over the face, not one region
    h, w = fake.mask.shape
    cells = fake.mask[: h // 4 * 4, : w // 4 * 4].reshape(4, h // 4, 4, w // 4).mean(axis=(1, 3))
    assert cells.min() > 0.002, cells
    # as sharp as its real: the fine detail's energy matched (not a blur of it) ...
    for lo, hi in [(0.1, 0.2), (0.2, 0.3), (0.3, 0.4)]:
        ratio = _band_energy(fake.image, lo, hi) / _band_energy(crop, lo, hi)
        assert 0.7 < ratio < 1.4, (lo, hi, ratio)
    # ... where the decoder alone is softer than the photo
    soft = create_pseudo_fake("resynth", match_spectrum=False)(crop, rng=0)
    assert _band_energy(soft.image, 0.3, 0.4) < 0.6 * _band_energy(crop, 0.3, 0.4)
    assert not np.array_equal(soft.image, fake.image)


def test_match_spectrum_keeps_phase_and_mean(crop):
    blur = cv2.GaussianBlur(crop, (0, 0), 1.5)
    sharp = match_spectrum(blur, crop)
    assert abs(float(sharp.mean()) - float(blur.mean())) < 1.0  # brightness kept
    # the edges stay where the blurred image had them: closer to the real than the blur is
    assert np.abs(sharp.astype(float) - crop).mean() < np.abs(blur.astype(float) - crop).mean()
    assert _band_energy(sharp, 0.2, 0.3) > 2 * _band_energy(blur, 0.2, 0.3)
    capped = match_spectrum(blur, crop, max_gain=1.0)
    assert np.abs(capped.astype(int) - blur).max() <= 1  # gain 1: the image back
    with pytest.raises(InputError):
        match_spectrum(blur, crop[:100])
    with pytest.raises(InputError):
        create_pseudo_fake("resynth", max_gain=0.5)


def test_deterministic_and_any_size(crop):
    maker = create_pseudo_fake("resynth")
    a, b = maker(crop, rng=0).image, maker(crop, rng=1).image
    assert np.array_equal(a, b)  # the net is the only source of the change
    odd = np.ascontiguousarray(crop[:37, :50])
    out = resynthesise(odd)
    assert out.shape == odd.shape and out.dtype == np.uint8
    assert resynthesise(np.ascontiguousarray(crop[:1, :3])).shape == (1, 3, 3)


def test_net_shapes():
    import torch

    net = build_resynth_net(width=8, latent=2)
    assert net.encoder(torch.zeros(1, 3, 32, 48)).shape == (1, 2, 8, 12)
    assert net(torch.zeros(1, 3, 32, 48)).shape == (1, 3, 32, 48)
    with pytest.raises(InputError):
        build_resynth_net(width=2)


def test_bad_weights(tmp_path):
    with pytest.raises(InputError, match="not found"):
        create_pseudo_fake("resynth", weights=str(tmp_path / "missing.safetensors"))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="cannot load"):
        load_resynth_net(junk)
    with pytest.raises(InputError, match="unknown settings"):
        create_pseudo_fake("resynth", strength=0.5)


def _manifest(tmp_path, n_real: int = 12) -> str:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n_real + 3):
        # smooth blobs plus a little noise: something an autoencoder can learn quickly
        yy, xx = np.mgrid[0:32, 0:32] / 32
        base = np.stack([np.sin(6 * xx + i), np.cos(5 * yy - i), np.sin(4 * (xx + yy))], -1)
        img = np.clip(127 + 100 * base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / f"c{i}.png")
        label, source = ("real", "mine") if i < n_real else ("fake", "mine")
        lines.append({"path": f"c{i}.jpg", "label": label, "source": source, "crop": f"c{i}.png"})
    lines.append({"path": "o.jpg", "label": "real", "source": "other", "crop": "c0.png"})
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return str(path)


def test_train_writes_a_net_the_maker_uses(tmp_path, crop):
    cfg = ResynthTraining(sources=("mine",), steps=30, batch=4, patch=16, width=8, latent=4)
    out = tmp_path / "net.safetensors"
    logs: list[str] = []
    summary = train_resynth(_manifest(tmp_path), out, cfg, log=logs.append)
    assert summary["crops_train"] + summary["crops_heldout"] == 12  # the reals of "mine" only
    assert summary["steps"] == 30 and math.isfinite(summary["psnr_heldout"])
    assert any("held-out reconstruction PSNR" in m for m in logs)
    net = load_resynth_net(out)
    assert net.width == 8 and net.latent == 4
    fake = create_pseudo_fake("resynth", weights=str(out))(crop, rng=0)
    assert fake.image.shape == crop.shape and not np.array_equal(fake.image, crop)
    assert out != DEFAULT_RESYNTH


def test_repr_names_the_weights(tmp_path):
    """A cache keyed by the makers' repr must not take fakes of retrained weights for these."""
    import shutil

    other = tmp_path / "other.safetensors"
    shutil.copy(DEFAULT_RESYNTH, other)
    shipped = repr(create_pseudo_fake("resynth"))
    assert "weights sha256" in shipped
    same = repr(create_pseudo_fake("resynth", weights=str(other)))
    assert same.split("sha256")[1] == shipped.split("sha256")[1]  # same bytes, same digest
    net = build_resynth_net(width=8, latent=2)
    from safetensors.torch import save_file

    save_file(net.state_dict(), str(other), metadata={"width": "8", "latent": "2"})
    retrained = repr(create_pseudo_fake("resynth", weights=str(other)))
    assert retrained.split("sha256")[1] != shipped.split("sha256")[1]
    assert "resynth" in repr(PseudoFakeMix({"resynth": 1.0})) and "sha256" in repr(
        PseudoFakeMix({"resynth": 1.0})
    )


def test_train_refuses_too_few_reals(tmp_path):
    with pytest.raises(InputError, match="need >= 10"):
        train_resynth(
            _manifest(tmp_path, n_real=5),
            tmp_path / "n.safetensors",
            ResynthTraining(sources=("mine",), steps=2, patch=16),
        )
    with pytest.raises(InputError, match="patch"):
        ResynthTraining(patch=18)


def test_face_blend_keeps_the_real_outside_the_face(crop):
    whole = create_pseudo_fake("resynth")(crop, rng=0)
    pasted = create_pseudo_fake("resynth", face_blend=1.0)(crop, rng=0)
    h, w = crop.shape[:2]
    corner = (slice(0, h // 8), slice(0, w // 8))
    centre = (slice(3 * h // 8, 5 * h // 8), slice(3 * w // 8, 5 * w // 8))
    assert np.array_equal(pasted.image[corner], crop[corner])  # outside the face: the real
    assert not np.array_equal(whole.image[corner], crop[corner])  # whole: re-made there too
    assert pasted.mask[centre].mean() > 0.5 * whole.mask[centre].mean()  # inside: re-made
    assert np.allclose(
        pasted.mask, np.abs(pasted.image.astype(np.float32) - crop).mean(axis=2) / 255
    )
    with pytest.raises(InputError, match="face_blend"):
        create_pseudo_fake("resynth", face_blend=1.5)


def _sharpness(img: np.ndarray, region=(slice(None), slice(None))) -> float:
    """Variance of the grey image's Laplacian: its finest detail."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(cv2.Laplacian(grey, cv2.CV_64F)[region].var())


def test_match_local_spectrum_matches_sharpness_where_it_is(crop):
    h, w = crop.shape[:2]
    left, right = (slice(8, -8), slice(8, w // 2 - 24)), (slice(8, -8), slice(w // 2 + 24, -8))
    half = crop.copy()  # the reference: the crop with its right half blurred
    half[:, w // 2 :] = cv2.GaussianBlur(crop, (0, 0), 1.0)[:, w // 2 :]
    out = match_local_spectrum(crop, half)
    assert out.shape == crop.shape and out.dtype == np.uint8
    # softened on the right as much as the reference, left as it was on the left
    assert 0.5 < _sharpness(out, right) / _sharpness(half, right) < 2
    assert _sharpness(out, right) < 0.3 * _sharpness(crop, right)
    assert 0.85 < _sharpness(out, left) / _sharpness(crop, left) < 1.15
    # and the other way: a blurred image sharpened back (gains capped), its brightness kept
    blur = cv2.GaussianBlur(crop, (0, 0), 1.0)
    sharp = match_local_spectrum(blur, crop)
    assert _sharpness(sharp) > 2 * _sharpness(blur)
    assert abs(float(sharp.mean()) - float(blur.mean())) < 1.0
    # its own reference, or any size (thinner than a tile too): the image back
    np.testing.assert_array_equal(match_local_spectrum(crop, crop), crop)
    odd = np.ascontiguousarray(crop[:37, :5])
    np.testing.assert_array_equal(match_local_spectrum(odd, odd), odd)
    with pytest.raises(InputError, match="one size"):
        match_local_spectrum(crop, crop[:100])
    with pytest.raises(InputError, match="even"):
        match_local_spectrum(crop, crop, tile=7)
    with pytest.raises(InputError, match="max_gain"):
        match_local_spectrum(crop, crop, max_gain=0.5)


def test_control_is_the_real_as_soft_as_its_twin(crop):
    maker = create_pseudo_fake("resynth")
    fake = maker(crop, rng=0).image
    control = maker.control(crop, fake)
    assert control.shape == crop.shape and control.dtype == np.uint8
    # the twin is softer than its real; its control is as soft as the twin
    assert _sharpness(fake) < 0.7 * _sharpness(crop)
    assert 0.75 < _sharpness(control) / _sharpness(fake) < 1.33
    # but it is the real, not the decoder's remake: its coarse content is the real's
    coarse = lambda im: cv2.GaussianBlur(im.astype(np.float64), (0, 0), 4)  # noqa: E731
    assert (
        np.abs(coarse(control) - coarse(crop)).mean()
        < 0.5 * np.abs(coarse(fake) - coarse(crop)).mean()
    )
    with pytest.raises(InputError, match="no real-labelled control"):
        create_pseudo_fake("sbi").control(crop, fake)
