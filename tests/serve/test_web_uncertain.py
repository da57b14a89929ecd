"""The web page shows an uncertain verdict in amber, the band on its meter, and the model's
limits line (headless Chromium against a real server on a checkpoint with a stored band)."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from facetrust.detect import Detector
from facetrust.models import create_model, read_checkpoint_meta, save_checkpoint
from facetrust.serve import create_app

from .conftest import EXAMPLE, InvertProtector, make_settings
from .servers import served_in_thread

LIMITS = "trained only on synthetic test crops; never saw a real deepfake"


@pytest.fixture(scope="module")
def banded_checkpoint(tmp_path_factory, tiny_checkpoint):
    """The tiny model with its threshold at the sample's probability, a band and limits."""
    p = Detector(tiny_checkpoint, device="cpu")(str(EXAMPLE)).fake_probability
    meta = read_checkpoint_meta(tiny_checkpoint).model_copy(
        update={"threshold": p, "uncertain_band": 0.05, "limits": LIMITS}
    )
    model = create_model("tiny_cnn")
    model.load_state_dict(load_file(str(tiny_checkpoint)))
    return save_checkpoint(tmp_path_factory.mktemp("banded") / "b.safetensors", model, meta)


@pytest.fixture(scope="module")
def banded_server(tmp_path_factory, banded_checkpoint):
    tmp = tmp_path_factory.mktemp("banded-server")
    app = create_app(make_settings(tmp, banded_checkpoint), protector_factory=InvertProtector)
    with served_in_thread(app) as base:
        yield base


def test_uncertain_verdict_is_amber_with_band_and_limits(chromium, banded_server, tmp_path):
    errors: list[str] = []
    page = chromium(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(banded_server + "/")
    page.set_input_files("#file-input", str(EXAMPLE))
    page.wait_for_selector("#verdict[data-label='uncertain']", timeout=60_000)
    assert page.inner_text("#verdict-label") == "Uncertain"
    assert "Too close to the threshold" in page.inner_text("#verdict-note")
    assert page.inner_text("#verdict-limits") == f"Limits: {LIMITS}"
    colour = page.eval_on_selector("#verdict-label", "e => getComputedStyle(e).color")
    assert colour == "rgb(184, 110, 0)"  # amber, not green or red
    band = page.locator("#verdict-meter-band")
    assert band.is_visible() and float(band.evaluate("e => e.offsetWidth")) > 0
    assert page.locator("#boxes rect.face-box.uncertain").count() == 1
    page.screenshot(path=str(tmp_path / "uncertain.png"), full_page=True)
    assert not errors, errors
