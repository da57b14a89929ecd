"""The web page's provenance panel, in headless Chromium against a real uvicorn server."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from facetrust.serve import ServeSettings, create_app

from . import fixtures as F


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_checkpoint):
    import uvicorn

    tmp = tmp_path_factory.mktemp("web")
    settings = ServeSettings(
        model=str(tiny_checkpoint), device="cpu", job_dir=tmp / "jobs", log_level="warning"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


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
