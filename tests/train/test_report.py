import json

import numpy as np
import pytest
from PIL import Image

from facetrust.data.manifest import ManifestRow
from facetrust.errors import InputError
from facetrust.train.report import plot_reliability, plot_roc, write_report


def _strict(text: str):
    def no_constant(name):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=no_constant)


def _synthetic_rows(n_videos: int = 12, frames: int = 3):
    rng = np.random.default_rng(0)
    rows, probs = [], []
    for v in range(n_videos):
        fake = v % 2 == 1
        for f in range(frames):
            rows.append(
                ManifestRow(
                    path=f"v{v}.mp4",
                    label="fake" if fake else "real",
                    source="dfdc",
                    kind="swap" if fake else None,
                    video_id=f"v{v}",
                    frame=f,
                )
            )
            probs.append(rng.beta(5, 2) if fake else rng.beta(2, 5))
    for i in range(10):  # a one-class source of GAN images, given as plain dicts
        rows.append({"path": f"g{i}.png", "label": "fake", "source": "gan140k", "kind": "gan"})
        probs.append(rng.uniform(0.3, 1.0))
    return rows, np.asarray(probs)


def test_write_report_files_are_valid(tmp_path):
    rows, probs = _synthetic_rows()
    out = tmp_path / "eval" / "run1"
    rep = write_report(
        out, rows, probs, 0.5, "tiny-test", extra={"split": "test", "odd": np.float32("nan")}
    )
    assert {p.name for p in out.iterdir()} == {
        "report.json",
        "roc.png",
        "reliability.png",
        "predictions.jsonl",
    }
    data = _strict((out / "report.json").read_text())
    assert data == rep
    assert data["model"] == "tiny-test" and data["threshold"] == 0.5
    assert data["extra"] == {"split": "test", "odd": None}
    assert data["face"]["n"] == len(rows) and data["video"]["n"] == 12 + 10
    assert data["per_source"]["gan140k"]["face"]["auc"] is None
    assert data["per_source"]["gan140k"]["face"]["recall"] is not None
    assert 0.5 < data["per_source"]["dfdc"]["video"]["auc"] <= 1.0
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == len(rows)
    first, last = _strict(lines[0]), _strict(lines[-1])
    assert first["path"] == "v0.mp4" and first["label"] == "real" and first["source"] == "dfdc"
    assert first["prob"] == pytest.approx(probs[0]) and first["frame"] == 0
    assert last == {
        "path": "g9.png",
        "source": "gan140k",
        "label": "fake",
        "prob": pytest.approx(probs[-1]),
        "kind": "gan",
    }
    for name in ("roc.png", "reliability.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


def test_plots_handle_one_class_and_empty_bins(tmp_path):
    roc = plot_roc(
        {"both": ([0, 1, 0, 1], [0.1, 0.9, 0.4, 0.35]), "fakes only": ([1, 1], [0.5, 0.7])},
        tmp_path / "r.png",
    )
    rel = plot_reliability([0, 1, 1], [0.0, 1.0, 0.97], tmp_path / "sub" / "c.png", bins=10)
    for p in (roc, rel):
        with Image.open(p) as im:
            im.verify()


def test_write_report_length_mismatch(tmp_path):
    rows, probs = _synthetic_rows(2, 1)
    with pytest.raises(InputError, match="length"):
        write_report(tmp_path, rows, probs[:-1], 0.5, "m")
