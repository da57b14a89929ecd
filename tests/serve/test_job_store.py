"""The job store under a quota: TTL applied by the sweeper, oldest-first eviction, orphan and
interrupted folders removed, results served from disk."""

from __future__ import annotations

import base64
import json
import os
import time

from fastapi.testclient import TestClient

from facetrust.serve import create_app
from facetrust.serve.jobs import JobOutput, JobStore
from facetrust.serve.uploads import stream_json_with_file

from .conftest import InvertProtector, make_settings

MB = 1024**2


def _finished(store: JobStore, size: int, at: float) -> str:
    job = store.create("protect", b"in", {})
    store.finish(job.id, JobOutput(report={"n": size}, files={"protected.png": b"x" * size}))
    with store._connect() as db:  # age the job
        db.execute("UPDATE jobs SET finished = ? WHERE id = ?", (at, job.id))
    return job.id


def test_quota_evicts_oldest_finished_jobs_first(tmp_path):
    store = JobStore(tmp_path)
    now = time.time()
    ids = [_finished(store, MB, now - 100 + i) for i in range(5)]  # ids[0] is the oldest
    running = store.create("protect", b"y" * MB, {})  # unfinished: never evicted
    store.update(running.id, state="running")
    swept = store.sweep(max_age_s=3600, quota_bytes=int(3.5 * MB))
    assert swept["evicted"] == 3
    assert [store.get(i) is None for i in ids] == [True, True, True, False, False]
    assert not (tmp_path / ids[0]).exists() and (tmp_path / ids[4]).exists()
    assert store.get(running.id) is not None
    assert swept["bytes"] <= 3.5 * MB


def test_ttl_is_applied_by_the_running_sweeper(tmp_path):
    store = JobStore(tmp_path)
    old = _finished(store, 10, time.time() - 7200)
    fresh = _finished(store, 10, time.time())
    store.start_sweeper(max_age_s=3600, quota_bytes=10 * MB, interval_s=0.05)
    try:
        deadline = time.monotonic() + 5
        while store.get(old) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        store.stop_sweeper()
    assert store.get(old) is None and not (tmp_path / old).exists()
    assert store.get(fresh) is not None


def test_orphan_and_interrupted_folders_are_removed(tmp_path):
    store = JobStore(tmp_path)
    orphan = tmp_path / ("ab" * 16)
    orphan.mkdir()
    (orphan / "input").write_bytes(b"z" * 1000)
    os.utime(orphan, (time.time() - 3600, time.time() - 3600))
    young = tmp_path / ("cd" * 16)
    young.mkdir()  # a job being created right now: kept
    assert store.sweep(3600, 10 * MB)["orphans"] == 1
    assert not orphan.exists() and young.exists()

    job = store.create("protect", b"upload", {})
    (tmp_path / job.id / ".protected.png.tmp").write_bytes(b"half")
    assert JobStore(tmp_path).recover() == 1  # a restart finds it unfinished
    assert not (tmp_path / job.id).exists()
    assert store.get(job.id).state == "failed"


def test_json_result_is_streamed_from_disk(tmp_path):
    data = os.urandom(3 * 2**16 * 3 + 7)  # several chunks and a remainder
    path = tmp_path / "protected.png"
    path.write_bytes(data)
    chunks = list(stream_json_with_file({"id": "a"}, "image", path, {"report": {"k": [1]}}))
    assert len(chunks) > 3 and max(len(c) for c in chunks) <= 4 * 2**16 + 100
    body = json.loads(b"".join(chunks))
    assert body["id"] == "a" and body["report"] == {"k": [1]}
    assert base64.b64decode(body["image"]) == data


def test_result_routes_stream_the_file(tmp_path, tiny_checkpoint, example_jpeg):
    s = make_settings(tmp_path, tiny_checkpoint, job_quota_mb=64)
    with TestClient(create_app(s, protector_factory=InvertProtector)) as c:
        job = c.post("/v1/protect", files={"file": ("a.jpg", example_jpeg)}).json()
        for _ in range(200):
            if c.get(job["status_url"]).json()["state"] in ("done", "failed"):
                break
            time.sleep(0.05)
        png = c.get(job["result_url"], params={"format": "png"})
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content.startswith(b"\x89PNG")
        assert int(png.headers["content-length"]) == len(png.content)
        body = c.get(job["result_url"]).json()
        assert base64.b64decode(body["image"]) == png.content
        assert body["state"] == "done" and body["report"]["strength"]
