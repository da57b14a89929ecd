"""Against real uvicorn servers on 127.0.0.1: the web page in headless Chromium, the upload limit
over a raw socket, and ``facetrust serve``."""

from __future__ import annotations

import io
import json
import select
import socket
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from facetrust.serve import create_app

from .conftest import EXAMPLE, InvertProtector, make_settings
from .servers import served_in_thread


@pytest.fixture(scope="module")
def thread_server(tmp_path_factory, tiny_checkpoint):
    """uvicorn in a thread of this process, so the app can get the quick test protector."""
    tmp = tmp_path_factory.mktemp("thread-server")
    app = create_app(make_settings(tmp, tiny_checkpoint), protector_factory=InvertProtector)
    with served_in_thread(app) as base:
        yield base


def test_web_page_end_to_end_in_headless_chromium(chromium, thread_server, tmp_path, face_video):
    page_errors: list[str] = []
    page = chromium(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.goto(thread_server + "/")
    assert page.title().startswith("facetrust")

    # a real face photo: verdict, probability and a box
    page.set_input_files("#file-input", str(EXAMPLE))
    page.wait_for_selector(
        "#verdict[data-label='real'], #verdict[data-label='fake']", timeout=60_000
    )
    assert page.inner_text("#verdict-label") in ("Likely real", "Likely fake")
    assert "probability of a fake" in page.inner_text("#verdict-prob")
    assert page.locator("#boxes rect.face-box").count() == 1
    assert "model" in page.inner_text("#facts")
    page.wait_for_selector("#heatmap-toggle:not([disabled])", timeout=60_000)
    page.screenshot(path=str(tmp_path / "desktop.png"), full_page=True)

    # the heatmap toggle swaps in the Grad-CAM overlay
    original = page.get_attribute("#preview-img", "src")
    page.check("#heatmap-toggle")
    assert page.get_attribute("#preview-img", "src") != original
    page.screenshot(path=str(tmp_path / "desktop-heatmap.png"), full_page=True)

    # phone width: one column, nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    # clear messages: an unsupported file, then a photo without a face
    page.set_input_files(
        "#file-input",
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}],
    )
    page.wait_for_selector("#detect-error:not([hidden])", timeout=30_000)
    assert "not supported" in page.inner_text("#detect-error")
    gray = io.BytesIO()
    Image.fromarray(np.full((200, 300, 3), 120, np.uint8)).save(gray, format="PNG")
    page.set_input_files(
        "#file-input",
        files=[{"name": "wall.png", "mimeType": "image/png", "buffer": gray.getvalue()}],
    )
    page.wait_for_selector("#verdict[data-label='no_face']", timeout=30_000)
    assert page.inner_text("#verdict-label") == "No face found"

    # a video: per-frame chart
    page.set_input_files("#file-input", str(face_video))
    page.wait_for_selector("#chart-card:not([hidden])", timeout=60_000)
    assert page.locator("#chart circle.chart-dot").count() >= 4
    assert "track" in page.inner_text("#face-list").lower()
    page.screenshot(path=str(tmp_path / "video.png"), full_page=True)

    # Protect tab: progress, before/after, download
    page.click("#tab-btn-protect")
    page.set_input_files("#protect-input", str(EXAMPLE))
    page.wait_for_selector("#protect-result:not([hidden])", timeout=60_000)
    assert page.get_attribute("#after-img", "src").startswith("blob:")
    page.screenshot(path=str(tmp_path / "protect.png"), full_page=True)
    with page.expect_download() as info:
        page.click("#download")
    saved = tmp_path / "downloaded.png"
    info.value.save_as(saved)
    original_px = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(saved)), 255 - original_px)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    page.screenshot(path=str(tmp_path / "phone-protect.png"), full_page=True)

    # API docs render offline: every request that leaves the loopback is refused
    page.set_viewport_size({"width": 1280, "height": 900})
    outside: list[str] = []

    def _local_only(route):
        if route.request.url.startswith(thread_server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", _local_only)
    page.goto(thread_server + "/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert "/v1/detect" in page.inner_text("body")
    page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
    assert not outside, outside
    assert not page_errors, page_errors
    for name in ("desktop.png", "desktop-heatmap.png", "phone.png", "protect.png", "docs.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def _status(sock: socket.socket) -> int:
    data = b""
    sock.settimeout(10)
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_upload_limit_is_enforced_while_streaming(live_server):
    """The live server's limit is 2 MiB. A chunked upload is answered 413 while the client is
    still sending; a declared Content-Length over the limit is answered before any body."""
    head = (
        b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
    mib = b"0" * (1 << 20)
    with socket.create_connection(("127.0.0.1", live_server.port)) as s:
        s.sendall(head + b"%x\r\n%s\r\n" % (len(part), part))
        sent_mib = 0
        for _ in range(64):
            if select.select([s], [], [], 0.05)[0]:
                break  # the answer arrived mid-upload
            try:
                s.sendall(b"%x\r\n%s\r\n" % (len(mib), mib))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent_mib += 1
        assert _status(s) == 413
        assert sent_mib < 16  # answered long before the 64 MiB the client meant to send

    declared = (
        b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 1000000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", live_server.port)) as s:
        s.sendall(declared)  # and no body at all
        assert _status(s) == 413
    assert httpx.get(live_server.url + "/health").json()["status"] == "ok"


def test_facetrust_serve_cli(live_server):
    """``facetrust serve`` reads FACETRUST_* settings, serves the API, logs JSON lines."""
    h = httpx.get(live_server.url + "/health").json()
    assert h["model"] == "tiny-test" and h["max_upload_bytes"] == 2 * 1024 * 1024
    r = httpx.post(live_server.url + "/v1/detect", files={"file": ("a.jpg", EXAMPLE.read_bytes())})
    assert r.status_code == 200 and len(r.json()["faces"]) == 1
    assert r.headers.get("server") is None  # no server banner
    # the access line is written after the response is sent: wait for it (bounded)
    deadline = time.monotonic() + 10
    while True:
        log = (live_server.tmp / "server.log").read_text()
        records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        access = [rec for rec in records if rec.get("path") == "/v1/detect"]
        ok = [rec for rec in access if rec["status"] == 200 and rec["request_id"]]
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert any(rec["logger"] == "uvicorn.error" for rec in records)  # uvicorn's own lines too
    assert ok, access


@pytest.mark.parametrize(("path", "rendered"), [("/docs", ".swagger-ui .info"), ("/redoc", "h1")])
def test_docs_render_under_their_csp_in_headless_chromium(
    chromium, thread_server, tmp_path, path, rendered
):
    """Swagger UI and ReDoc run with a nonce-based CSP: they render, and the browser blocks
    nothing they need."""

    messages: list[str] = []
    page = chromium()
    page.on("console", lambda m: messages.append(m.text))
    page.on("pageerror", lambda e: messages.append(str(e)))
    response = page.goto(thread_server + path)
    assert "nonce-" in response.headers["content-security-policy"]
    page.wait_for_selector(rendered, timeout=30_000)
    assert "facetrust" in page.inner_text("body")
    # ReDoc's "powered by" logo comes from its CDN: blocking that (no third-party request) is
    # the policy working; anything else blocked would break the page
    blocked = [m for m in messages if "Content Security Policy" in m]
    assert all("https://cdn.redoc.ly/" in m and "img-src" in m for m in blocked), blocked
