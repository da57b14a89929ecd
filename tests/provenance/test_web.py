"""The web page's provenance panel, in headless Chromium against a real uvicorn server."""

from __future__ import annotations

import pytest

from facetrust.serve import ServeSettings, create_app
from tests.serve.servers import served_in_thread

from . import fixtures as F


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_checkpoint):
    tmp = tmp_path_factory.mktemp("web")
    settings = ServeSettings(
        model=str(tiny_checkpoint), device="cpu", job_dir=tmp / "jobs", log_level="warning"
    )
    with served_in_thread(create_app(settings)) as base:
        yield base


def test_provenance_panel_beside_the_verdict(chromium, server, tmp_path, signed_jpeg, rgb):
    errors: list[str] = []
    page = chromium(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.set_input_files(
        "#file-input",
        files=[{"name": "signed.jpg", "mimeType": "image/jpeg", "buffer": signed_jpeg}],
    )
    page.wait_for_selector("#provenance[data-verdict='ai_indicated']", timeout=60_000)
    page.wait_for_selector("#verdict:not([data-label='pending'])", timeout=60_000)
    text = page.inner_text("#provenance")
    assert "untrusted signer" in text and "created by a generative model" in text
    assert "facetrust test signer" in text
    page.screenshot(path=str(tmp_path / "provenance-desktop.png"), full_page=True)

    page.set_input_files(
        "#file-input",
        files=[{"name": "plain.jpg", "mimeType": "image/jpeg", "buffer": F.jpeg_bytes(rgb)}],
    )
    page.wait_for_selector("#provenance[data-verdict='unknown']", timeout=60_000)
    assert "pixel verdict stands" in page.inner_text("#prov-headline")

    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "provenance-phone.png"), full_page=True)
    assert errors == []
