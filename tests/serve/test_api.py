import asyncio
import base64
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from facetrust.detect import Detector
from facetrust.serve import ServeSettings, create_app

from .conftest import make_settings


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _without_time(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "processing_time_s"}


def test_health(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model_loaded"] is True
    assert h["model"] == "tiny-test" and h["device"] == "cpu"
    assert h["version"] and h["max_upload_bytes"] == 50 * 1024 * 1024
    assert h["jobs"]["workers"] == 1 and h["protect_available"] is True


def test_detect_returns_the_library_result(client, tiny_checkpoint, example_jpeg):
    expected = Detector(tiny_checkpoint, device="cpu")(example_jpeg).as_json()
    r = client.post("/v1/detect", files={"file": ("x.bin", example_jpeg)})
    assert r.status_code == 200
    assert r.headers["x-request-id"] and r.headers["x-content-type-options"] == "nosniff"
    assert r.json()["path"] == "x.bin"  # the upload's name, never a server path
    assert _without_time(r.json()) == _without_time({**expected, "path": "x.bin"})

    r2 = client.post("/v1/detect", json={"image": _b64(example_jpeg)})
    assert _without_time(r2.json()) == _without_time(expected)
    url = "data:image/jpeg;base64," + _b64(example_jpeg)
    assert client.post("/v1/detect", json={"image": url}).json()["faces"] == expected["faces"]
    urlsafe = base64.urlsafe_b64encode(example_jpeg).decode().rstrip("=")
    assert client.post("/v1/detect", json={"image": urlsafe}).status_code == 200


def test_detect_video_and_no_face(client, face_video, noface_video):
    r = client.post("/v1/detect", files={"file": ("clip.jpg", face_video.read_bytes())})
    d = r.json()
    assert r.status_code == 200 and d["kind"] == "video"
    assert d["frames_analyzed"] == 8 and len(d["frame_predictions"]) == 8
    assert d["faces"] and d["faces"][0]["track_id"] == 0
    r = client.post("/v1/detect", files={"file": ("x.avi", noface_video.read_bytes())})
    assert r.status_code == 200 and r.json()["label"] == "no_face"


def test_explain(client, example_jpeg, astronaut):
    r = client.post("/v1/explain", files={"file": ("a.jpg", example_jpeg)})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["method"] == "gradcam" and d["layer"] == "blocks.3"
    assert d["explains"] == "the model (its CNN)"
    assert d["prediction"]["kind"] == "image" and len(d["faces"]) == 1
    heat = Image.open(io.BytesIO(base64.b64decode(d["heatmap_png"])))
    assert heat.size == (512, 512) == (d["heatmap_width"], d["heatmap_height"])
    crop = Image.open(io.BytesIO(base64.b64decode(d["faces"][0]["heatmap_png"])))
    assert crop.size == (32, 32)
    r = client.post("/v1/explain?method=gradcam%2B%2B", json={"image": _b64(_png(astronaut))})
    assert r.status_code == 200 and r.json()["method"] == "gradcam++"
    assert client.post("/v1/explain?method=lime", json={"image": "x"}).status_code == 422


def test_explain_refuses_video(client, face_video):
    r = client.post("/v1/explain", files={"file": ("v.mp4", face_video.read_bytes())})
    assert r.status_code == 415 and "images" in r.json()["detail"]


def test_compat_predict_deepguard_and_deepfakedefenders(client, example_jpeg, face_video):
    detect = client.post("/v1/detect", files={"file": ("a.jpg", example_jpeg)}).json()
    p = detect["fake_probability"]
    r = client.post("/predict", files={"file": ("a.jpg", example_jpeg)})
    d = r.json()
    assert r.status_code == 200
    assert d["label"] == ("FAKE" if p >= detect["threshold"] else "REAL")  # never UNCERTAIN
    assert d["probabilities"]["FAKE"] == pytest.approx(100 * p, abs=0.01)
    assert d["probabilities"]["REAL"] == pytest.approx(100 - 100 * p, abs=0.01)
    assert d["confidence"] == d["probabilities"][d["label"]]
    assert d["file_type"] == "image" and d["faces_detected"] == 1 and "processing_time" in d

    r = client.post("/predict", json={"image": _b64(example_jpeg)})
    assert r.status_code == 200 and r.json() == {"result": p}

    v = client.post("/predict", files={"file": ("v.mp4", face_video.read_bytes())}).json()
    assert v["file_type"] == "video" and v["frames_analyzed"] == v["total_frames"] == 8
    assert v["faces_detected"] == len(v["frame_predictions"]) > 0
    assert v["frame_predictions"][0]["frame_number"] == 1
    assert 0 <= v["frame_predictions"][0]["prob_fake"] <= 100


def test_compat_errors_use_the_seed_shapes(client):
    gray = np.full((120, 160, 3), 90, np.uint8)
    r = client.post("/predict", files={"file": ("g.png", _png(gray))})
    assert r.status_code == 400 and r.json() == {"error": "No face detected in image"}
    r = client.post("/predict", json={"image": _b64(_png(gray))})
    assert r.status_code == 400 and r.json() == {"error": "No face detected in image"}
    r = client.post("/gradcam", files={"file": ("t.txt", b"plain text")})
    assert r.status_code == 415 and set(r.json()) == {"error"}
    r = client.post("/protect", files={"image": ("t.txt", b"plain text")})
    assert r.status_code == 415 and r.json()["success"] is False and r.json()["error"]


def test_compat_gradcam(client, example_jpeg):
    r = client.post("/gradcam", files={"file": ("a.jpg", example_jpeg)})
    d = r.json()
    assert r.status_code == 200
    assert d["gradcam_image"].startswith("data:image/png;base64,")
    assert d["layer_name"] == "blocks.3"
    assert set(d["prediction"]) == {"label", "confidence", "probabilities"}


@pytest.mark.parametrize(
    ("body", "ctype", "status", "needle"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "not valid JSON"),
        (b'{"img": "abc"}', "application/json", 422, '"image"'),
        (b'{"image": 42}', "application/json", 422, '"image"'),
        (b'["image"]', "application/json", 422, '"image"'),
        (b'{"image": ""}', "application/json", 422, "empty"),
        (b'{"image": "not*base64!"}', "application/json", 422, "base64"),
        (b'{"image": "QUJD\\u0000"}', "application/json", 422, "base64"),
        (b'{"image": "A"}', "application/json", 422, "base64"),
        (b'{"image": "aGVsbG8gd29ybGQ="}', "application/json", 415, "unsupported"),
        (b"raw bytes", "application/octet-stream", 415, "multipart"),
        (b"raw bytes", "", 415, "multipart"),
        (b"--x\r\n", "multipart/form-data", 400, ""),
        (b"--x\r\nnonsense", "multipart/form-data; boundary=x", 422, "'file'"),
    ],
)
def test_request_errors(client, body, ctype, status, needle):
    headers = {"content-type": ctype} if ctype else {}
    r = client.post("/v1/detect", content=body, headers=headers)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and needle in detail and len(detail) < 300


def test_multipart_limits(client, example_jpeg):
    r = client.post("/v1/detect", files={"other": ("a.jpg", example_jpeg)})
    assert r.status_code == 422 and "'file'" in r.json()["detail"]
    r = client.post("/v1/detect", files={"file": (None, "a string, not a file")})
    assert r.status_code == 422
    r = client.post("/v1/detect", data={"file": "urlencoded"})
    assert r.status_code == 415
    many = [("f", (f"{i}.jpg", b"x")) for i in range(6)]
    assert client.post("/v1/detect", files=many).status_code == 400


def test_upload_limit_declared_and_streamed(tmp_path, tiny_checkpoint):
    limit = 100_000
    app = create_app(make_settings(tmp_path, tiny_checkpoint, max_upload_bytes=limit))
    with TestClient(app) as c:
        r = c.post("/v1/detect", files={"file": ("big.jpg", b"\xff\xd8\xff" + b"0" * limit)})
        assert r.status_code == 413 and "upload too large" in r.json()["detail"]
        r = c.post("/predict", files={"file": ("big.jpg", b"0" * limit)})
        assert r.status_code == 413 and "upload too large" in r.json()["error"]

        assert c.get("/health").status_code == 200


def test_upload_limit_stops_reading_a_chunked_body(tmp_path, tiny_checkpoint):
    """At the ASGI level: no Content-Length, the body arrives in 10 kB messages; the app must
    answer 413 having pulled only as many messages as the 100 kB limit needs."""
    app = create_app(make_settings(tmp_path, tiny_checkpoint, max_upload_bytes=100_000))
    pulled = 0
    sent: list[dict] = []

    head = (
        b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )

    async def receive():
        nonlocal pulled
        pulled += 1
        body = head if pulled == 1 else b"0" * 10_000
        return {"type": "http.request", "body": body, "more_body": pulled < 1000}

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
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"multipart/form-data; boundary=xyz")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["detail"].startswith("upload too large")
    assert pulled <= 12  # 11 x 10 kB cross the limit; the other messages were never read


def test_no_model_is_503_without_leaking_paths(tmp_path, monkeypatch, example_jpeg):
    missing = tmp_path / "secret-dir" / "nope.safetensors"
    app = create_app(make_settings(tmp_path, missing))  # nothing is loaded yet
    assert app.state.services._detector is None
    with TestClient(app) as c:
        assert c.get("/health").json()["status"] == "no_model"
        r = c.post("/v1/detect", files={"file": ("a.jpg", example_jpeg)})
        assert r.status_code == 503 and "secret-dir" not in r.text
        r = c.post("/predict", json={"image": _b64(example_jpeg)})
        assert r.status_code == 503 and "error" in r.json()

    import facetrust.models.zoo as zoo

    monkeypatch.setattr(zoo, "shipped_models", lambda: {})
    with TestClient(create_app(make_settings(tmp_path, None))) as c:
        r = c.post("/v1/explain", files={"file": ("a.jpg", example_jpeg)})
        assert r.status_code == 503 and "no detection model is installed" in r.json()["detail"]


class _Boom:
    model_name = "boom"
    device = "cpu"

    def __call__(self, data):
        raise RuntimeError("kaboom at /srv/secret/path.py line 12")


def test_unexpected_errors_are_generic_500(tmp_path, example_jpeg):
    app = create_app(make_settings(tmp_path, None), detector=_Boom())
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/detect", files={"file": ("a.jpg", example_jpeg)})
        assert r.status_code == 500
        assert r.json() == {"detail": "internal server error"}
        assert "kaboom" not in r.text and "Traceback" not in r.text
        assert c.get("/health").status_code == 200


def test_web_page_and_static_files(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "/static/app.js" in r.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/static/../api.py").status_code == 404
    assert client.get("/static/%2e%2e/api.py").status_code == 404
    assert client.get("/openapi.json").json()["paths"]["/v1/detect"]["post"]["requestBody"]
    assert client.get("/docs").status_code == 200


def test_api_docs_work_offline(client):
    """/docs and /redoc load Swagger UI / ReDoc from the app itself, never from a CDN."""
    import re

    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200, page
        urls = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert urls, page
        assert not [u for u in urls if u.startswith(("http:", "https:", "//"))], (page, urls)
        for url in urls:
            if url.startswith("/docs-assets/"):
                asset = client.get(url)
                assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert "/openapi.json" in client.get("/docs").text
    bundle = client.get("/docs-assets/swagger-ui-bundle.js").text
    assert 'PACKAGE_VERSION:"5.' in bundle  # Swagger UI 5 renders OpenAPI 3.1


def test_cors(tmp_path, tiny_checkpoint):
    s = make_settings(tmp_path, tiny_checkpoint, cors_origins=["https://news.example"])
    with TestClient(create_app(s)) as c:
        pre = {"Access-Control-Request-Method": "POST"}
        ok = c.options("/v1/detect", headers={"Origin": "https://news.example", **pre})
        assert ok.headers.get("access-control-allow-origin") == "https://news.example"
        bad = c.options("/v1/detect", headers={"Origin": "https://evil.example", **pre})
        assert "access-control-allow-origin" not in bad.headers


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FACETRUST_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("FACETRUST_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("FACETRUST_WORKERS", "3")
    monkeypatch.setenv("FACETRUST_JOB_DIR", str(tmp_path / "j"))
    monkeypatch.setenv("FACETRUST_LOG_LEVEL", "DEBUG")
    s = ServeSettings()
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    assert (s.max_upload_bytes, s.workers, s.log_level) == (1234, 3, "debug")
    assert s.job_dir == tmp_path / "j"
    monkeypatch.setenv("FACETRUST_CORS_ORIGINS", '["https://c.example"]')
    assert ServeSettings().cors_origins == ["https://c.example"]


def test_structured_logs(capsys, tmp_path, tiny_checkpoint, example_jpeg):
    s = make_settings(tmp_path, tiny_checkpoint, log_level="info")
    with TestClient(create_app(s)) as c:
        files = {"file": ("a.jpg", example_jpeg)}
        c.post("/v1/detect", files=files, headers={"X-Request-ID": "r-1"})
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    access = [x for x in lines if x.get("path") == "/v1/detect"]
    assert access and access[-1]["status"] == 200 and access[-1]["request_id"] == "r-1"
    assert {"ts", "level", "logger", "msg", "duration_ms"} <= set(access[-1])


def test_fused_model_reports_each_expert(tmp_path, tiny_checkpoint, example_jpeg):
    """A fused checkpoint (here CNN + frequency expert) answers with each expert's probability,
    and the explanation says its heatmap is the CNN expert's."""
    from facetrust.detect.experts import LinearHead
    from facetrust.models import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(tiny_checkpoint)
    head = LinearHead(np.zeros(50), np.ones(50), np.full(50, 0.02), -0.1)
    experts = {
        "crop_size": 64,
        "frequency": {"head": head.to_dict()},
        "fusion": {"inputs": ["cnn", "frequency"], "weight": [1.0, 0.5], "bias": 0.0},
    }
    fused = save_checkpoint(
        tmp_path / "fused.safetensors",
        model,
        meta.model_copy(update={"experts": experts, "name": "fused-tiny"}),
    )
    with TestClient(create_app(make_settings(tmp_path, fused))) as c:
        d = c.post("/v1/detect", files={"file": ("a.jpg", example_jpeg)}).json()
        assert d["model"] == "fused-tiny" and len(d["faces"]) == 1
        evidence = d["faces"][0]["experts"]
        assert set(evidence) == {"cnn", "frequency"} and all(0 <= v <= 1 for v in evidence.values())
        ex = c.post("/v1/explain", files={"file": ("a.jpg", example_jpeg)}).json()
        assert ex["explains"].startswith("the CNN expert") and "frequency" in ex["explains"]
