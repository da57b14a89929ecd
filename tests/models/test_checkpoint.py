"""Self-describing checkpoints: round trip, header-only reads, every error, atomic writes."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from facetrust.errors import ModelError
from facetrust.models import (
    CheckpointMeta,
    create_model,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)


def _meta(**fields) -> CheckpointMeta:
    base = dict(arch="tiny_cnn", input_size=64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return CheckpointMeta(**{**base, **fields})


@pytest.fixture()
def saved(tmp_path) -> tuple[Path, torch.nn.Module, CheckpointMeta]:
    torch.manual_seed(0)
    model = create_model("tiny_cnn").eval()
    with torch.no_grad():  # make the BatchNorm buffers non-trivial
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    meta = _meta(
        calibration={"method": "temperature", "temperature": 1.7},
        threshold=0.62,
        threshold_rule="EER on validation",
        training_data={"sources": ["a", "b"], "n": 10},
        metrics={"auc": 0.91},
        name="tiny test",
    )
    return save_checkpoint(tmp_path / "m.safetensors", model, meta), model, meta


def _one_line_error(path) -> str:
    with pytest.raises(ModelError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_meta_defaults():
    meta = _meta()
    assert meta.format_version == 1
    assert meta.facetrust_version  # package version, or "0+unknown"
    assert meta.calibration.method == "none" and meta.threshold == 0.5
    assert meta.face_margin == 0.2 and meta.name is None
    assert "T" in meta.created
    with pytest.raises(ValueError):
        _meta(colour="red")  # extra fields are forbidden


def test_meta_for_model():
    model = create_model("tiny_att", att_width=4)
    meta = CheckpointMeta.for_model(model, threshold=0.3)
    assert meta.arch == "tiny_att"
    assert meta.arch_args == {"num_classes": 1, "att_width": 4}
    assert meta.input_size == 64 and meta.threshold == 0.3


def test_round_trip(saved):
    path, model, meta = saved
    assert path.suffix == ".safetensors"
    loaded, meta2 = load_checkpoint(path)
    assert meta2 == meta
    assert not loaded.training
    assert loaded.facetrust_arch == "tiny_cnn"
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_round_trip_with_arch_args(tmp_path):
    model = create_model("tiny_att", num_classes=2, att_width=4).eval()
    meta = CheckpointMeta.for_model(model)
    path = save_checkpoint(tmp_path / "sub" / "att.safetensors", model, meta)
    loaded, meta2 = load_checkpoint(path, device="cpu")
    assert meta2.arch_args == {"num_classes": 2, "att_width": 4}
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert torch.equal(loaded.get_attention(x), model.get_attention(x))


def test_read_meta_reads_only_the_header(saved, monkeypatch):
    path, _, meta = saved
    import safetensors.torch

    def boom(*a, **k):
        raise AssertionError("weights were read")

    monkeypatch.setattr(safetensors.torch, "load_file", boom)
    monkeypatch.setattr(torch, "load", boom)
    assert read_checkpoint_meta(path) == meta
    assert read_checkpoint_meta(str(path)).threshold == 0.62


def test_meta_sits_in_safetensors_metadata(saved):
    from safetensors import safe_open

    path, _, meta = saved
    with safe_open(str(path), "pt") as f:
        doc = json.loads(f.metadata()["facetrust"])
    assert doc["arch"] == "tiny_cnn" and doc["calibration"]["temperature"] == 1.7


def test_missing_file(tmp_path):
    msg = _one_line_error(tmp_path / "nope.safetensors")
    assert "not found" in msg
    with pytest.raises(ModelError, match="not found"):
        read_checkpoint_meta(tmp_path / "nope.safetensors")


def test_directory(tmp_path):
    assert "directory" in _one_line_error(tmp_path)


def test_jpeg_is_not_a_checkpoint(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, "JPEG")
    path = tmp_path / "photo.safetensors"
    path.write_bytes(buf.getvalue())
    assert "not a safetensors file" in _one_line_error(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"hi", b"hello, this is a text file\n" * 10, struct.pack("<Q", 5) + b"nope!"],
)
def test_other_junk_is_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    assert "not a safetensors file" in _one_line_error(path)


def test_plain_safetensors_is_not_a_facetrust_checkpoint(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file(create_model("tiny_cnn").state_dict(), str(path))
    assert "not a facetrust checkpoint" in _one_line_error(path)
    save_file({"x": torch.zeros(2)}, str(path), metadata={"other": "1"})
    assert "not a facetrust checkpoint" in _one_line_error(path)


@pytest.mark.parametrize("keep", [0.9, 0.5, 20])
def test_truncated_file(saved, keep):
    path, _, _ = saved
    data = path.read_bytes()
    n = int(len(data) * keep) if keep < 1 else keep
    path.write_bytes(data[:n])
    assert "truncated" in _one_line_error(path)
    with pytest.raises(ModelError, match="truncated"):
        read_checkpoint_meta(path)


def _write_meta(path: Path, doc: str) -> Path:
    save_file(create_model("tiny_cnn").state_dict(), str(path), metadata={"facetrust": doc})
    return path


def test_metadata_not_json(tmp_path):
    path = _write_meta(tmp_path / "bad.safetensors", "{arch: tiny_cnn")
    assert "not valid JSON" in _one_line_error(path)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"arch": None}, "arch"),
        ({"threshold": 1.5}, "threshold"),
        ({"mean": [0.5, 0.5]}, "mean"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_metadata_fails_validation(tmp_path, change, words):
    doc = _meta().model_dump(mode="json")
    doc.update(change)
    doc = {k: v for k, v in doc.items() if v is not None}
    path = _write_meta(tmp_path / "bad.safetensors", json.dumps(doc))
    msg = _one_line_error(path)
    assert "invalid facetrust metadata" in msg and words in msg


def test_newer_format_is_refused(tmp_path):
    doc = _meta().model_dump(mode="json") | {"format_version": 2}
    path = _write_meta(tmp_path / "new.safetensors", json.dumps(doc))
    assert "upgrade facetrust" in _one_line_error(path)


@pytest.mark.parametrize(
    "meta_change, words",
    [
        ({"arch": "tiny_att"}, "2 missing"),
        ({"arch_args": {"num_classes": 3}}, "another shape"),
        ({"arch": "no_such_arch"}, "unknown model 'no_such_arch'"),
    ],
)
def test_weights_not_matching_the_architecture(tmp_path, meta_change, words):
    path = _write_meta(tmp_path / "w.safetensors", _meta(**meta_change).model_dump_json())
    msg = _one_line_error(path)
    assert words in msg


def test_save_refuses_meta_for_another_model(tmp_path):
    model = create_model("tiny_cnn")
    with pytest.raises(ModelError, match="metadata says"):
        save_checkpoint(tmp_path / "a.safetensors", model, _meta(arch="tiny_att"))
    with pytest.raises(ModelError, match="arch_args"):
        save_checkpoint(tmp_path / "a.safetensors", model, _meta(arch_args={"num_classes": 2}))
    with pytest.raises(ModelError, match="JSON"):
        save_checkpoint(tmp_path / "a.safetensors", model, _meta(metrics={"x": object()}))
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_the_old_file_intact(saved, monkeypatch):
    import safetensors.torch

    path, model, meta = saved
    before = path.read_bytes()

    def half_write(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", half_write)
    with pytest.raises(ModelError, match="No space left"):
        save_checkpoint(path, model, meta.model_copy(update={"threshold": 0.1}))
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temporary file left behind
    assert read_checkpoint_meta(path).threshold == 0.62


def test_overwrite_replaces_the_file(saved):
    path, model, meta = saved
    save_checkpoint(path, model, meta.model_copy(update={"threshold": 0.3}))
    assert read_checkpoint_meta(path).threshold == 0.3
    assert sorted(os.listdir(path.parent)) == [path.name]


def test_calibration_and_fusion_stack_are_typed_and_checked(tmp_path):
    from pydantic import ValidationError

    from facetrust.models.checkpoint import Calibration

    meta = _meta(calibration={"method": "temperature", "temperature": 2.0, "n": 10})
    assert isinstance(meta.calibration, Calibration) and meta.calibration.temperature == 2.0
    assert meta.model_dump(mode="json")["calibration"] == {
        "method": "temperature",
        "temperature": 2.0,
        "n": 10,
    }
    for bad in (
        {"method": "temperature"},
        {"method": "platt", "a": 1.0},
        {"method": "isotonic", "x": [0.5, 0.2], "y": [0.1, 0.2]},
        {"method": "magic"},
    ):
        with pytest.raises(ValidationError):
            _meta(calibration=bad)
    stack = {"inputs": ["cnn", "clip"], "weight": [1.0], "bias": 0.0}
    with pytest.raises(ValidationError, match="one weight per input"):
        _meta(experts={"clip": {"head": {}}, "fusion": stack})
    with pytest.raises(ValidationError, match="lacks it"):
        _meta(experts={"fusion": {**stack, "weight": [1.0, 2.0]}})
    # an unvalidated copy is checked when saved
    model = create_model("tiny_cnn")
    broken = _meta().model_copy(update={"calibration": {"method": "platt"}})
    with pytest.raises(ModelError, match="invalid checkpoint metadata"):
        save_checkpoint(tmp_path / "x.safetensors", model, broken)
    assert not (tmp_path / "x.safetensors").exists()
