"""The job system: protect jobs end to end (with a quick test protector), persistence across a
restart, the bounded queue (429), and a clear 503 while facetrust.protect is missing."""

import base64
import io
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from facetrust.errors import MediaError
from facetrust.serve import create_app
from facetrust.serve.jobs import INTERRUPTED, JobOutput, JobRunner, JobStore, QueueFull

from .conftest import EXAMPLE, InvertProtector, make_settings


def _wait(client, job_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def _decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_protect_job_end_to_end(client, astronaut):
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="PNG")
    r = client.post("/v1/protect?strength=strong", files={"file": ("me.png", buf.getvalue())})
    assert r.status_code == 202, r.text
    job = r.json()
    assert (
        job["state"] in ("queued", "running", "done") and r.headers["location"] == job["status_url"]
    )
    done = _wait(client, job["id"])
    assert done["state"] == "done" and done["progress"] == 1.0 and done["error"] is None
    result = client.get(done["result_url"]).json()
    assert result["media_type"] == "image/png"
    assert np.array_equal(_decode(result["image"]), 255 - astronaut)
    assert result["report"]["strength"] == "strong" and result["report"]["per_channel_mean"] == 1.5
    png = client.get(done["result_url"] + "?format=png")
    assert png.headers["content-type"] == "image/png"
    assert "attachment" in png.headers["content-disposition"]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.content))), 255 - astronaut)


def test_job_routes_refuse_unknown_ids(client):
    for bad in ("0" * 32, "../../etc/passwd", "x" * 200, "ABCDEF" + "0" * 26):
        assert client.get(f"/v1/jobs/{bad}").status_code == 404
        assert client.get(f"/v1/jobs/{bad}/result").status_code == 404


def test_defake_protect_compat(client, astronaut):
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="JPEG")
    r = client.post("/protect", files={"image": ("me.jpg", buf.getvalue())})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["success"] is True and d["face_detected"] is True
    assert d["similarity_score"] == 0.25 and d["message"] == "inverted"
    assert d["processing_time_s"] == 0.01 and len(d["job_id"]) == 32
    assert _decode(d["protected_image"]).shape == astronaut.shape
    assert client.post("/protect", files={"file": ("me.jpg", buf.getvalue())}).status_code == 422


def test_finished_results_survive_a_restart(tmp_path, tiny_checkpoint, astronaut):
    settings = make_settings(tmp_path, tiny_checkpoint)
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="PNG")
    with TestClient(create_app(settings, protector_factory=InvertProtector)) as c1:
        job_id = c1.post("/v1/protect", files={"file": ("a.png", buf.getvalue())}).json()["id"]
        assert _wait(c1, job_id)["state"] == "done"
    # a new app (a new process would do the same) on the same store
    with TestClient(create_app(settings)) as c2:
        assert c2.get(f"/v1/jobs/{job_id}").json()["state"] == "done"
        result = c2.get(f"/v1/jobs/{job_id}/result").json()
        assert np.array_equal(_decode(result["image"]), 255 - astronaut)
    # the upload itself is not kept once the job is over
    assert not (settings.job_dir / job_id / "input").exists()


def test_generic_jobs_and_interrupted_ones(tmp_path):
    """The runner takes any task; a job still queued when the process stops is reported as
    interrupted by the next start, and its input is deleted."""
    store = JobStore(tmp_path / "jobs")
    gate = threading.Event()

    def invert(ctx):
        ctx.progress(0.5, "inverting")
        image = np.asarray(Image.open(io.BytesIO(ctx.read_input())))
        buf = io.BytesIO()
        Image.fromarray(255 - image).save(buf, format="PNG")
        return JobOutput(report={"pixels": int(image.size)}, files={"inverted.png": buf.getvalue()})

    def blocked(ctx):
        gate.wait(30)
        raise MediaError("image is truncated or corrupt: test")

    runner = JobRunner(store, workers=1, queue_size=1)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, format="PNG")
    first = runner.submit("invert", invert, buf.getvalue())
    for _ in range(200):
        if store.get(first.id).state == "done":
            break
        time.sleep(0.02)
    job = store.get(first.id)
    assert job.state == "done" and job.report == {"pixels": 48} and job.files == ["inverted.png"]
    assert store.read_file(job, "inverted.png").startswith(b"\x89PNG")
    with pytest.raises(FileNotFoundError):
        store.read_file(job, "../jobs.sqlite3")

    running = runner.submit("blocked", blocked, b"data")
    for _ in range(500):
        if store.get(running.id).state == "running":
            break
        time.sleep(0.01)
    queued = runner.submit("blocked", blocked, b"data")
    with pytest.raises(QueueFull):
        runner.submit("blocked", blocked, b"data")
    runner.shutdown(wait=False)  # the process "stops" with one job running, one queued

    restarted = JobStore(tmp_path / "jobs")
    assert restarted.recover() == 2
    for job_id in (running.id, queued.id):
        j = restarted.get(job_id)
        assert j.state == "failed" and j.error == INTERRUPTED
    assert not (tmp_path / "jobs" / queued.id / "input").exists()
    assert restarted.get(first.id).state == "done"  # finished results are kept
    gate.set()


def test_full_queue_answers_429(tmp_path, tiny_checkpoint):
    gate = threading.Event()
    settings = make_settings(tmp_path, tiny_checkpoint, workers=1, queue_size=1)
    app = create_app(settings, protector_factory=lambda s: InvertProtector(s, gate))
    jpeg = EXAMPLE.read_bytes()
    try:
        with TestClient(app) as c:
            ids = []
            for _ in range(2):  # one running, one waiting
                r = c.post("/v1/protect", files={"file": ("a.jpg", jpeg)})
                assert r.status_code == 202
                ids.append(r.json()["id"])
            r = c.post("/v1/protect", files={"file": ("a.jpg", jpeg)})
            assert r.status_code == 429 and r.headers["retry-after"]
            assert "queue is full" in r.json()["detail"]
            r = c.post("/protect", files={"image": ("a.jpg", jpeg)})
            assert r.status_code == 429 and r.json()["success"] is False
            assert c.get("/health").json()["jobs"]["pending"] == 2
            assert c.get(f"/v1/jobs/{ids[1]}/result").status_code == 409
            gate.set()
            for job_id in ids:
                assert _wait(c, job_id)["state"] == "done"
            assert c.post("/v1/protect", files={"file": ("a.jpg", jpeg)}).status_code == 202
    finally:
        gate.set()


def test_protect_unavailable_is_503_with_a_clear_message(tmp_path, tiny_checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "facetrust.protect", None)  # as if not installed
    with TestClient(create_app(make_settings(tmp_path, tiny_checkpoint))) as c:
        r = c.post("/v1/protect", files={"file": ("a.jpg", EXAMPLE.read_bytes())})
        assert r.status_code == 503
        assert "facetrust.protect" in r.json()["detail"]
        r = c.post("/protect", files={"image": ("a.jpg", EXAMPLE.read_bytes())})
        assert r.status_code == 503 and r.json()["success"] is False
        assert c.get("/health").json()["jobs"]["pending"] == 0


def test_failing_tasks_report_short_errors(tmp_path):
    store = JobStore(tmp_path / "jobs")
    runner = JobRunner(store, workers=1, queue_size=2)

    def bad_input(ctx):
        raise MediaError("image is truncated or corrupt: test")

    def crash(ctx):
        raise RuntimeError("secret detail at /srv/app/x.py")

    jobs = [runner.submit("a", bad_input, b"x"), runner.submit("b", crash, b"x")]
    for _ in range(300):
        if all(store.get(j.id).state == "failed" for j in jobs):
            break
        time.sleep(0.02)
    assert store.get(jobs[0].id).error == "image is truncated or corrupt: test"
    assert store.get(jobs[1].id).error == "internal error while running the job"
    runner.shutdown(wait=True)
    assert runner.pending == 0


def test_a_photo_without_a_face_says_what_a_server_user_can_do(tmp_path):
    """The real protector on a faceless photo: the job's report does not point a web or API
    user at a command-line flag they cannot set; it says the photo is unchanged and how the
    command line cloaks a whole photo."""
    from facetrust.media.image import ImageLimits
    from facetrust.protect import Protector
    from facetrust.serve.services import NO_FACE_API_MESSAGE, protect_task

    grey = np.full((120, 160, 3), 128, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="PNG")
    task = protect_task(lambda s: Protector(strength=s, judge=False), "subtle", ImageLimits())
    ctx = SimpleNamespace(read_input=lambda: buf.getvalue(), progress=lambda f, m="": None)
    out = task(ctx)
    assert out.report["regions"] == "none" and out.report["message"] == NO_FACE_API_MESSAGE
    assert "--whole-image" not in out.report["message"].split("`")[0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(out.files["protected.png"]))), grey)
