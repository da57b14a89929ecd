"""Micro-batching: concurrent detections share scoring batches, give the probabilities sequential
scoring gives, keep their own deadlines and their own errors."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from facetrust.detect.scoring import FaceScorer
from facetrust.media.budget import DeadlineExceeded, WorkBudget, use_budget
from facetrust.models import load_checkpoint
from facetrust.serve import create_app
from facetrust.serve.batcher import MicroBatcher

from .conftest import make_settings


class Counted:
    """The real scoring core, counting its calls and the faces of each (and optionally slow)."""

    def __init__(self, scorer: FaceScorer, delay: float = 0.0) -> None:
        self.scorer, self.delay = scorer, delay
        self.sizes: list[int] = []
        self.inputs = scorer.inputs

    def __call__(self, crops):
        self.sizes.append(len(crops))
        if self.delay:
            time.sleep(self.delay)
        return self.scorer(crops)


@pytest.fixture(scope="module")
def scorer(tiny_checkpoint) -> FaceScorer:
    model, meta = load_checkpoint(tiny_checkpoint)
    return FaceScorer(model, meta)


def _requests(n: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(1 + i % 3)]
        for i in range(n)
    ]


def test_concurrent_callers_share_batches_and_get_their_own_rows(scorer):
    reqs = _requests(12)
    sequential = [scorer(r) for r in reqs]
    counted = Counted(scorer, delay=0.05)  # a batch takes a while: the others queue up
    batcher = MicroBatcher(counted, max_faces=16, max_wait_ms=20)
    try:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(batcher, reqs))
    finally:
        batcher.close()
    for got, want in zip(results, sequential, strict=True):
        np.testing.assert_allclose(got.probability, want.probability, atol=1e-6)
        np.testing.assert_allclose(got.logits, want.logits, atol=1e-5)
        assert got.inputs == want.inputs
    assert batcher.requests == 12
    assert len(counted.sizes) == batcher.calls < 12  # fewer scorer calls than requests
    assert max(counted.sizes) <= 16 and sum(counted.sizes) == sum(len(r) for r in reqs)


def test_a_failing_request_does_not_fail_the_others(scorer):
    good = _requests(4)
    bad = [np.zeros((32, 32), np.uint8)]  # grey: the scorer refuses it, and so its batch
    counted = Counted(scorer, delay=0.05)
    batcher = MicroBatcher(counted, max_faces=32, max_wait_ms=50)
    start = threading.Barrier(5)

    def call(crops):
        start.wait()
        try:
            return batcher(crops)
        except Exception as e:
            return e

    try:
        with ThreadPoolExecutor(5) as pool:
            out = list(pool.map(call, [*good[:2], bad, *good[2:]]))
    finally:
        batcher.close()
    assert isinstance(out[2], ValueError)
    for got, crops in zip([out[0], out[1], out[3], out[4]], good, strict=True):
        np.testing.assert_allclose(got.probability, scorer(crops).probability, atol=1e-6)


def test_a_request_keeps_its_own_deadline(scorer):
    counted = Counted(scorer, delay=0.5)
    batcher = MicroBatcher(counted, max_faces=4, max_wait_ms=0)
    try:
        busy = threading.Thread(target=batcher, args=(_requests(1)[0] * 4,))
        busy.start()
        time.sleep(0.1)  # the worker is inside the slow batch
        t0 = time.monotonic()
        with use_budget(WorkBudget().with_timeout(0.1)), pytest.raises(DeadlineExceeded):
            batcher(_requests(1)[0])
        assert time.monotonic() - t0 < 0.4  # it did not wait for the busy batch
        busy.join()
        assert batcher(_requests(2)[1]).probability.shape == (2,)  # the worker goes on
    finally:
        batcher.close()
    assert counted.sizes == [4, 2]  # the abandoned request was never scored


def test_empty_and_interface(scorer):
    batcher = MicroBatcher(scorer)
    assert len(batcher([])) == 0 and batcher.inputs == ["cnn"]
    assert batcher.contract == scorer.contract  # the scorer's attributes pass through
    with pytest.raises(ValueError):
        MicroBatcher(scorer, max_faces=0)


def test_api_concurrent_detections_match_sequential_in_fewer_calls(
    tmp_path, tiny_checkpoint, example_jpeg
):
    settings = make_settings(
        tmp_path,
        tiny_checkpoint,
        micro_batch=True,
        inference_slots=8,
        batch_wait_ms=30,
        batch_max_faces=16,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        services = app.state.services
        batcher = services.batcher
        assert isinstance(batcher, MicroBatcher)
        batcher.scorer = Counted(batcher.scorer, delay=0.05)
        one = client.post("/v1/detect", files={"file": ("a.jpg", example_jpeg, "image/jpeg")})
        assert one.status_code == 200, one.text
        want = one.json()["faces"][0]["fake_probability"]
        calls_before = len(batcher.scorer.sizes)

        def post(_):
            r = client.post("/v1/detect", files={"file": ("a.jpg", example_jpeg, "image/jpeg")})
            return r.status_code, r.json()

        with ThreadPoolExecutor(8) as pool:
            out = list(pool.map(post, range(8)))
    assert [s for s, _ in out] == [200] * 8, out
    assert all(body["faces"][0]["fake_probability"] == want for _, body in out)
    calls = len(batcher.scorer.sizes) - calls_before
    assert calls < 8, batcher.scorer.sizes


def test_micro_batching_is_opt_in(tmp_path, tiny_checkpoint):
    app = create_app(make_settings(tmp_path, tiny_checkpoint))
    with TestClient(app):
        assert app.state.services.batcher is None
        assert isinstance(app.state.services.detector.scorer, FaceScorer)


def test_serve_on_the_onnx_runtime(tmp_path, tiny_checkpoint, example_jpeg):
    probs = {}
    for runtime in ("torch", "onnx"):
        app = create_app(make_settings(tmp_path / runtime, tiny_checkpoint, runtime=runtime))
        with TestClient(app) as client:
            assert app.state.services.detector.runtime == runtime
            r = client.post("/v1/detect", files={"file": ("a.jpg", example_jpeg, "image/jpeg")})
            assert r.status_code == 200, r.text
            probs[runtime] = r.json()["faces"][0]["fake_probability"]
    assert probs["onnx"] == pytest.approx(probs["torch"], abs=1e-3)
