"""Who may call the server (Host allow-list, Origin check, API keys), the 503 shapes (busy,
over the deadline), client disconnects, security headers on the docs, library warnings in the
JSON log, and the OpenAPI upload fields."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import warnings

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from facetrust.serve import create_app
from facetrust.serve.middleware import ConcurrencyLimitMiddleware, RequestContextMiddleware

from .conftest import InvertProtector, make_settings


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, tiny_checkpoint):
    s = make_settings(tmp_path_factory.mktemp("keyed"), tiny_checkpoint, api_keys=["k-one", "k2"])
    with TestClient(create_app(s, protector_factory=InvertProtector)) as c:
        yield c


def test_host_allow_list_defaults_to_loopback_names(tmp_path, tiny_checkpoint, example_jpeg):
    # no allowed_hosts: loopback names (and the bound host) only
    app = create_app(make_settings(tmp_path, tiny_checkpoint, allowed_hosts=[]))
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/health").status_code == 200
        for host in ("localhost:8000", "[::1]:8000", "127.0.0.1", "192.168.1.20:8000"):
            assert c.get("/health", headers={"Host": host}).status_code == 200, host
        # DNS rebinding: the attacker's name arrives as the Host header
        r = c.get("/health", headers={"Host": "attacker.example"})
        assert r.status_code == 400 and "Host" in r.json()["detail"]
        r = c.post(
            "/v1/detect",
            headers={"Host": "attacker.example:8000"},
            files={"file": ("a.jpg", example_jpeg)},
        )
        assert r.status_code == 400


def test_cross_origin_posts_are_refused(client, example_jpeg):
    files = {"file": ("a.jpg", example_jpeg)}
    for origin in ("http://evil.example", "null", "http://testserver.evil.example"):
        r = client.post("/v1/detect", files=files, headers={"Origin": origin})
        assert r.status_code == 403, origin
        assert "Origin" in r.json()["detail"]
        r = client.post("/v1/protect", files=files, headers={"Origin": origin})
        assert r.status_code == 403
        r = client.post("/predict", files=files, headers={"Origin": origin})
        assert r.status_code == 403 and "error" in r.json()  # the compat route's shape
    # same origin (the web page) and no Origin at all (curl, scripts) are fine
    assert client.post(
        "/v1/detect", files=files, headers={"Origin": "http://testserver"}
    ).is_success
    assert client.post("/v1/detect", files=files).is_success
    # reading is not state-changing
    assert client.get("/health", headers={"Origin": "http://evil.example"}).status_code == 200


def test_cors_origins_are_allowed_to_post(tmp_path, tiny_checkpoint, example_jpeg):
    s = make_settings(tmp_path, tiny_checkpoint, cors_origins=["http://app.example"])
    with TestClient(create_app(s)) as c:
        r = c.post(
            "/v1/detect",
            files={"file": ("a.jpg", example_jpeg)},
            headers={"Origin": "http://app.example"},
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://app.example"
        r = c.post(
            "/v1/detect",
            files={"file": ("a.jpg", example_jpeg)},
            headers={"Origin": "http://other.example"},
        )
        assert r.status_code == 403


def test_api_keys(keyed, example_jpeg):
    files = {"file": ("a.jpg", example_jpeg)}
    r = keyed.post("/v1/detect", files=files)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in r.json()["detail"]
    assert (
        keyed.post("/v1/detect", files=files, headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    assert (
        keyed.post("/v1/detect", files=files, headers={"Authorization": "Basic k-one"}).status_code
        == 401
    )
    assert keyed.post("/predict", files=files).status_code == 401
    assert keyed.get("/v1/jobs/" + "0" * 32).status_code == 401
    ok = keyed.post("/v1/detect", files=files, headers={"Authorization": "Bearer k-one"})
    assert ok.status_code == 200
    assert (
        keyed.get("/v1/jobs/" + "0" * 32, headers={"Authorization": "Bearer k2"}).status_code == 404
    )
    # the page, its files, the docs, the schema and /health need no key
    for path in ("/", "/health", "/openapi.json", "/docs", "/redoc", "/static/app.js"):
        assert keyed.get(path).status_code == 200, path


def test_serve_refuses_a_public_address_without_keys(monkeypatch):
    from facetrust.cli import app

    monkeypatch.delenv("FACETRUST_API_KEYS", raising=False)
    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert r.exit_code == 2
    assert "without API keys" in r.output and "--insecure" in r.output


def test_settings_hosts_for_a_public_address():
    from facetrust.serve import ServeSettings

    assert ServeSettings(host="0.0.0.0", api_keys=["k"]).host_names() == ["*"]
    assert "0.0.0.0" not in ServeSettings(host="127.0.0.1").host_names()
    s = ServeSettings(allowed_hosts="Example.org, api.example.org")
    assert s.host_names() == ["example.org", "api.example.org"]


def test_over_the_request_limit_is_a_503_json_with_retry_after(caplog):
    """At the ASGI level: with one request in flight and a limit of 1, the next one gets 503
    with a JSON body and Retry-After, and the access log records it."""
    release = asyncio.Event()

    async def slow_app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = RequestContextMiddleware(ConcurrencyLimitMiddleware(slow_app, limit=1))

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            first = asyncio.create_task(c.post("/v1/detect", content=b"x" * 1000))
            await asyncio.sleep(0.05)
            second = await c.post("/v1/detect", content=b"y" * 1000)
            release.set()
            return await first, second

    with caplog.at_level(logging.INFO, logger="facetrust.serve.access"):
        first, second = asyncio.run(scenario())
    assert first.status_code == 200
    assert second.status_code == 503
    assert second.headers["retry-after"] == "5"
    assert second.headers["content-type"] == "application/json"
    assert second.json() == {"detail": "the server is busy; retry later"}
    statuses = [getattr(r, "status", None) for r in caplog.records if r.msg == "request"]
    assert 503 in statuses


def test_work_past_the_deadline_is_a_503_with_retry_after(tmp_path, tiny_checkpoint):
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((4000, 3000, 3), np.uint8)).save(buf, format="PNG")
    s = make_settings(tmp_path, tiny_checkpoint, request_timeout_s=1e-6)
    with TestClient(create_app(s)) as c:
        r = c.post("/v1/detect", files={"file": ("a.png", buf.getvalue())})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    assert r.json()["detail"].startswith("deadline exceeded")


def test_client_disconnect_mid_upload_is_logged_not_a_500(tmp_path, tiny_checkpoint, caplog):
    app = create_app(make_settings(tmp_path, tiny_checkpoint))
    messages = [
        {
            "type": "http.request",
            "body": b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nab',
            "more_body": True,
        },
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/detect",
        "raw_path": b"/v1/detect",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"multipart/form-data; boundary=b"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    with TestClient(app), caplog.at_level(logging.INFO, logger="facetrust"):
        asyncio.run(app(scope, receive, send))
    assert not [m for m in sent if m.get("status") == 500]
    assert any(r.getMessage() == "client disconnected" for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect", "/"])
def test_html_pages_have_csp_and_frame_headers(client, path):
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["x-frame-options"] == "DENY"
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    if "nonce-" in csp:  # every inline script carries the nonce; no other inline script runs
        nonce = csp.split("nonce-")[1].split("'")[0]
        assert r.text.count("<script") == r.text.count(f'nonce="{nonce}"')


def test_upload_fields_have_min_length(client):
    spec = client.get("/openapi.json").json()
    for route in ("/v1/detect", "/v1/explain", "/v1/protect"):
        content = spec["paths"][route]["post"]["requestBody"]["content"]
        assert content["multipart/form-data"]["schema"]["properties"]["file"]["minLength"] == 1
        assert content["application/json"]["schema"]["properties"]["image"]["minLength"] == 1


def test_library_warnings_reach_the_json_log(capsys):
    from facetrust.serve.logs import configure_logging

    logging.captureWarnings(False)  # pytest swaps showwarning per test; start from its own
    configure_logging("info")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a library says something", UserWarning, stacklevel=1)
    logging.getLogger("python_multipart.multipart").warning("Skipping data after last boundary")
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    loggers = {line["logger"] for line in lines}
    assert {"py.warnings", "python_multipart.multipart"} <= loggers
    assert any("a library says something" in line["msg"] for line in lines)
