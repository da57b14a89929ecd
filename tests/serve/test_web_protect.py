"""The web page's Protect tab with the real Protector (a tiny random encoder, two steps, dlib as
the judge) in headless Chromium: the result says the face-region SSIM/PSNR, the visibility word
and dlib's word with its distance, and shows an enlarged before/after crop of the face."""

from __future__ import annotations

import re

import pytest

from facetrust.serve import create_app

from .conftest import EXAMPLE, make_settings
from .servers import served_in_thread


def _quick_protector(strength: str):
    from facetrust.protect import Protector

    return Protector(
        strength, encoders=("tiny",), steps=2, judge=True, device="cpu", precision="float32"
    )


@pytest.fixture(scope="module")
def protect_server(tmp_path_factory, tiny_checkpoint):
    tmp = tmp_path_factory.mktemp("protect-server")
    app = create_app(make_settings(tmp, tiny_checkpoint), protector_factory=_quick_protector)
    with served_in_thread(app) as base:
        yield base


def test_protect_tab_reports_visibility_protection_and_an_enlarged_face(
    chromium, protect_server, tmp_path
):

    errors: list[str] = []
    page = chromium(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(protect_server + "/")
    page.click("#tab-btn-protect")
    page.select_option("#strength", "strong")
    page.set_input_files("#protect-input", str(EXAMPLE))
    page.wait_for_selector("#protect-result:not([hidden])", timeout=120_000)
    summary = page.inner_text("#protect-summary")
    assert re.search(
        r"Visibility: (invisible at normal size|visible when enlarged|visible)\.", summary
    ), summary
    m = re.search(r"On the face: SSIM (0\.\d{3}), PSNR (\d+\.\d) dB", summary)
    assert m and float(m[1]) >= 0.93, summary  # strong keeps face SSIM >= 0.93
    assert "preset strong" in summary
    assert re.search(
        r"Protection against dlib after JPEG 75: (protected|weak|none) "
        r"\(distance \d\.\d\d; the same person below 0\.60\)",
        summary,
    ), summary
    # the enlarged crop of the face, before and after, at least 2x
    page.wait_for_selector("#face-compare:not([hidden])", timeout=30_000)
    sizes = page.evaluate(
        "['face-before', 'face-after'].map(id => "
        "[document.getElementById(id).width, document.getElementById(id).height])"
    )
    assert sizes[0] == sizes[1] and sizes[0][0] >= 2 * 120, sizes  # face box ~120 px
    differs = page.evaluate(
        """() => {
          const px = (id) => { const c = document.getElementById(id);
            return c.getContext('2d').getImageData(0, 0, c.width, c.height).data; };
          const a = px('face-before'), b = px('face-after');
          let n = 0; for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
          return n; }"""
    )
    assert differs > 0  # the after crop is the protected photo
    page.screenshot(path=str(tmp_path / "protect.png"), full_page=True)
    # phone width: the Protect tab (its preset labels say the measured figures) fits
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert "still recognised" in page.inner_text("#strength")
    assert not errors, errors


def test_api_refuses_the_old_whole_image_presets(client):
    """``low``/``medium``/``high`` (the whole-image-PSNR presets) are gone: 422 naming the new
    ones."""
    for old in ("low", "medium", "high"):
        r = client.post(f"/v1/protect?strength={old}", files={"file": ("me.png", b"x")})
        assert r.status_code == 422, (old, r.status_code)
        assert "subtle" in r.text and "strong" in r.text


def test_the_server_protector_asks_the_judge():
    """The API's protector reports dlib's verdict after JPEG 75 (the word and the distance)."""
    from facetrust.serve.services import _import_protector_factory

    p = _import_protector_factory("cpu")("subtle")
    assert p.judge is True and p.strength == "subtle"
