"""Every malformed or hostile upload gets a 4xx with a short message; the server stays up."""

import re

import numpy as np
import pytest

from .corpus import EXAMPLE, build_corpus

LEAKS = re.compile(r"Traceback|File \"|/work/|/tmp/|/home/|site-packages|\.py\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"))


def _check_error(r, body_key: str) -> str:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    message = r.json()[body_key]
    assert isinstance(message, str) and 0 < len(message) < 300
    assert not LEAKS.search(r.text), r.text[:300]
    return message


def test_corpus_is_large_and_varied(corpus):
    assert len(corpus) >= 50
    assert {h.status for h in corpus} == {400, 413, 415, 422}


def test_every_hostile_file_is_a_4xx_on_every_route(client, corpus):
    wrong = []
    for h in corpus:
        r = client.post("/v1/detect", files={"file": (h.name, h.data)})
        _check_error(r, "detail")
        if r.status_code != h.status:
            wrong.append((h.name, h.why, h.status, r.status_code, r.json()["detail"]))
        _check_error(client.post("/v1/explain", files={"file": (h.name, h.data)}), "detail")
        _check_error(client.post("/v1/protect", files={"file": (h.name, h.data)}), "detail")
        _check_error(client.post("/predict", files={"file": (h.name, h.data)}), "error")
        _check_error(client.post("/protect", files={"image": (h.name, h.data)}), "error")
    assert not wrong, wrong
    # still healthy, still working
    assert client.get("/health").json()["status"] == "ok"
    r = client.post("/v1/detect", files={"file": ("a.jpg", EXAMPLE.read_bytes())})
    assert r.status_code == 200 and len(r.json()["faces"]) == 1
    assert client.get("/health").json()["jobs"]["pending"] == 0  # no job was queued


def test_hostile_files_as_base64_json(client, corpus):
    import base64

    for h in corpus:
        if not h.data:
            continue  # an empty base64 string is a 422 of its own (tested in test_api)
        r = client.post("/v1/detect", json={"image": base64.b64encode(h.data).decode()})
        assert r.status_code == h.status, (h.name, r.status_code, r.text[:200])


def test_content_decides_not_the_name(client, face_video):
    """A valid JPEG named .mp4 and a video named .jpg are read as what they are; a valid JPEG
    followed by a ZIP (a JPEG+ZIP polyglot) is read as the JPEG: the tail is never parsed."""
    jpeg = EXAMPLE.read_bytes()
    r = client.post("/v1/detect", files={"file": ("clip.mp4", jpeg)})
    assert r.status_code == 200 and r.json()["kind"] == "image"
    r = client.post("/v1/detect", files={"file": ("photo.jpg", face_video.read_bytes())})
    assert r.status_code == 200 and r.json()["kind"] == "video"
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../etc/evil.sh", "#!/bin/sh\necho pwned\n")
    r = client.post("/v1/detect", files={"file": ("poly.jpg", jpeg + buf.getvalue())})
    assert r.status_code == 200 and r.json()["kind"] == "image"


def test_tiny_and_odd_but_valid_images_are_fine(client):
    import io

    from PIL import Image

    for mode, size in [("RGB", (1, 1)), ("L", (3, 500)), ("RGBA", (40, 30)), ("I;16", (20, 20))]:
        buf = io.BytesIO()
        Image.fromarray(np.zeros(size[::-1], np.uint8)).convert(mode).save(buf, format="PNG")
        r = client.post("/v1/detect", files={"file": ("x.png", buf.getvalue())})
        assert r.status_code == 200 and r.json()["label"] == "no_face", (mode, r.text)
