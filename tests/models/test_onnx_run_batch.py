"""The ONNX Runtime scorer runs its graph one face at a time (less CPU per face than batches on
ONNX Runtime's CPU kernels), with the same probabilities as one batched run."""

from __future__ import annotations

import numpy as np
import pytest

from facetrust.detect.onnx_export import export_onnx
from facetrust.detect.onnx_runtime import OnnxFaceScorer


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRUST_CACHE_DIR", str(tmp_path / "cache"))


class CountingSession:
    def __init__(self, session) -> None:
        self.session = session
        self.batches: list[int] = []

    def run(self, outputs, feeds):
        self.batches.append(max(len(v) for v in feeds.values()))
        return self.session.run(outputs, feeds)


def test_one_face_per_graph_run_same_probabilities(tiny_checkpoint, tmp_path):
    out = export_onnx(tiny_checkpoint, tmp_path / "tiny.onnx")
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(7)]
    one = OnnxFaceScorer(out, batch_size=32, threads=1)
    one.session = CountingSession(one.session)
    batched = OnnxFaceScorer(out, batch_size=32, threads=1)
    batched.run_batch = 32
    batched.session = CountingSession(batched.session)
    p1, p32 = one(crops).probability, batched(crops).probability
    assert one.session.batches == [1] * 7
    assert batched.session.batches == [7]
    np.testing.assert_allclose(p1, p32, atol=1e-6, rtol=0)
