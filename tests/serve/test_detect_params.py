"""/v1/detect's threshold and frames (query or form), unknown parameters refused on /v1 routes
only, the upload's name as ``path``, and the neutral schema names in /openapi.json."""

import base64

import pytest

from facetrust.serve.uploads import safe_name


def _detect(client, data: bytes, name: str = "a.jpg", params=None, data_fields=None):
    return client.post(
        "/v1/detect", files={"file": (name, data)}, params=params or {}, data=data_fields or {}
    )


def test_threshold_from_query_or_form_relabels(client, example_jpeg):
    base = _detect(client, example_jpeg).json()
    p = base["fake_probability"]
    low = _detect(client, example_jpeg, params={"threshold": 0}).json()
    assert low["threshold"] == 0 and low["label"] == "fake"
    assert low["fake_probability"] == p  # the probability never moves
    near = _detect(client, example_jpeg, data_fields={"threshold": str(round(p, 4))}).json()
    assert (
        near["label"] == "uncertain" and near["uncertain_band"][0] < p < near["uncertain_band"][1]
    )
    assert near["faces"][0]["label"] == "uncertain"


def test_frames_sets_the_video_sample(client, face_video):
    video = face_video.read_bytes()
    r = _detect(client, video, "clip.mp4", params={"frames": 3})
    assert r.status_code == 200 and r.json()["frames_analyzed"] == 3
    r = _detect(client, video, "clip.mp4", data_fields={"frames": "5"})
    assert r.status_code == 200 and r.json()["frames_analyzed"] == 5


@pytest.mark.parametrize(
    ("params", "fields", "words"),
    [
        ({"threshold": 1.5}, {}, "threshold"),
        ({"threshold": "high"}, {}, "threshold"),
        ({"frames": 0}, {}, "frames"),
        ({"frames": 10_000}, {}, "frames"),
        ({}, {"threshold": "2"}, "threshold must be from 0.0 to 1.0"),
        ({}, {"frames": "x"}, "frames must be a number"),
        ({"threshold": 0.5}, {"threshold": "0.5"}, "given twice"),
        ({"treshold": 0.9}, {}, "unknown query parameter: treshold"),
        ({}, {"treshold": "0.9"}, "unknown form field: treshold"),
    ],
)
def test_bad_parameters_are_refused_with_a_message(client, example_jpeg, params, fields, words):
    r = _detect(client, example_jpeg, params=params, data_fields=fields)
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"]


def test_unknown_query_refused_on_every_v1_route_but_not_on_compat(client, example_jpeg):
    r = client.post("/v1/explain?verbose=1", files={"file": ("a.jpg", example_jpeg)})
    assert r.status_code == 422 and "verbose" in r.json()["detail"]
    assert "method" in r.json()["detail"]  # names what the route takes
    r = client.get("/v1/jobs/0123?x=1")
    assert r.status_code == 422 and "unknown query parameter: x" in r.json()["detail"]
    r = client.post("/v1/provenance?x=1", files={"file": ("a.jpg", example_jpeg)})
    assert r.status_code == 422
    # the declared ones still work, and the compatibility routes ignore extras as before
    r = client.post("/v1/explain?method=gradcam", files={"file": ("a.jpg", example_jpeg)})
    assert r.status_code == 200
    r = client.post("/predict?x=1", files={"file": ("a.jpg", example_jpeg)})
    assert r.status_code == 200 and r.json()["label"] in ("REAL", "FAKE")
    assert client.get("/health?x=1").status_code == 200


def test_path_is_the_sanitised_upload_name(client, example_jpeg):
    r = _detect(client, example_jpeg, name="../../etc/My photo.jpg")
    assert r.status_code == 200 and r.json()["path"] == "My photo.jpg"
    r = client.post("/v1/detect", json={"image": base64.b64encode(example_jpeg).decode()})
    assert r.json()["path"] is None


def test_safe_name():
    assert safe_name("C:\\Users\\me\\a.png") == "a.png"
    assert safe_name("/x/..") is None and safe_name("") is None and safe_name(None) is None
    assert safe_name("a\nb\x00.jpg") == "ab.jpg"
    assert len(safe_name("x" * 1000 + ".jpg")) == 255


def test_openapi_names_are_neutral_and_docs_load(client):
    spec = client.get("/openapi.json").json()
    names = set(spec["components"]["schemas"])
    for other in ("DeepGuard", "DeepFakeDefenders", "Defake", "DEFAKE"):
        assert not [n for n in names if other.lower() in n.lower()], names
    assert {"CompatPrediction", "CompatScore", "CompatGradcam", "CompatProtect"} <= names
    detect = spec["paths"]["/v1/detect"]["post"]
    assert {p["name"] for p in detect["parameters"]} == {"threshold", "frames"}
    form = detect["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"file", "threshold", "frames"} <= set(form)
    assert client.get("/docs").status_code == 200 and client.get("/redoc").status_code == 200
