"""The torch inference path imports no timm, torchvision or torch._dynamo (slow to import).

A fresh interpreter builds the shipped model on torch from its checkpoint, scores a face and
lists the heavy modules it imported. Before facetrust had its own EfficientNet-Lite0, timm
pulled in torchvision and, through torchvision.ops, torch._dynamo (~2 s of CPU at start-up).
"""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import numpy as np
from skimage import data
from facetrust import Detector

det = Detector(model="facetrust-fast", runtime="torch", device="cpu")
assert det.runtime == "torch", det.runtime
result = det(data.astronaut())
assert len(result.faces) == 1 and 0.0 <= result.fake_probability <= 1.0, result
p = det.score_crops([np.full((200, 200, 3), 128, np.uint8)])
assert p.shape == (1,), p
assert "torch" in sys.modules
print(" ".join(m for m in ("timm", "torchvision", "torch._dynamo") if m in sys.modules))
"""


def test_torch_detect_imports_no_timm_torchvision_or_dynamo(tmp_path):
    env = {"FACETRUST_CACHE_DIR": str(tmp_path), "FACETRUST_THREADS": "1"}
    import os

    out = subprocess.run(
        [sys.executable, "-c", CODE],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"imported on the torch detect path: {out.stdout.strip()}"
