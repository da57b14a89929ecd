"""Tests that fail when training does not learn.

A small learnable synthetic set (made here): 64 px crops of smooth colour fields; each fake
carries a blended patch of fine stripes somewhere, reals do not. ``tiny_cnn`` must separate them
on the validation split (AUC >= 0.9) within seconds; the same run with a fault that breaks
learning (``faults.wrong_loss``, ``faults.shuffle_labels``) must stay at or below 0.6.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facetrust.data.manifest import ManifestRow, write_manifest
from facetrust.models import load_checkpoint, read_checkpoint_meta
from facetrust.train.config import load_config
from facetrust.train.loop import Trainer

SIZE = 64
PATCH = 32


def _crop(rng: np.random.Generator, fake: bool) -> np.ndarray:
    """A smooth colour field with mild noise; fakes get a 24 px patch of 4 px stripes blended in
    at a random place (a texture a forger's blending would leave)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    base = rng.uniform(60, 200, 3)
    slope = rng.uniform(-50, 50, (2, 3))
    img = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
    img = img + rng.normal(0, 4, img.shape)
    if fake:
        p = PATCH
        y0, x0 = rng.integers(0, SIZE - p, 2)
        phase = rng.integers(0, 4)
        stripes = (((np.arange(p) + phase) // 2) % 2 * 2 - 1)[None, :, None] * 45.0
        if rng.random() < 0.5:
            stripes = stripes.transpose(1, 0, 2)
        img[y0 : y0 + p, x0 : x0 + p] += stripes
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def learnable_manifest(tmp_path_factory):
    """160 training, 200 validation crops (half fake), preset splits, crop contract recorded."""
    root = tmp_path_factory.mktemp("learnable")
    rng = np.random.default_rng(7)
    rows = []
    for split, n in (("train", 160), ("val", 200)):
        for i in range(n):
            fake = bool(i % 2)
            name = f"{split}{i}.png"
            Image.fromarray(_crop(rng, fake)).save(root / name)
            rows.append(
                ManifestRow(
                    path=f"{split}{i}.jpg",
                    label="fake" if fake else "real",
                    source="synthetic",
                    video_id=f"{split}{i}",
                    split=split,
                    crop=name,
                    crop_size=SIZE,
                    crop_margin=0.2,
                    crop_alignment="eyes-level-square",
                )
            )
    return write_manifest(root / "manifest.jsonl", rows)


def learn_cfg(manifest, out, *extra):
    return load_config(
        None,
        [
            f"data.train_manifest={manifest}",
            f"output={out}",
            "name=learnable",
            "model.arch=tiny_cnn",
            "model.pretrained=false",
            f"model.input_size={SIZE}",
            "data.calib_fraction=0",
            "aug.strength=0",
            "optim.epochs=6",
            "optim.batch_size=16",
            "optim.warmup_steps=5",
            "optim.lr=0.01",
            "optim.schedule=constant",
            "calibration.method=platt",
            *extra,
        ],
    )


def val_aucs(result) -> list[float]:
    return [h["val_auc"] for h in result.history]


@pytest.fixture(scope="module")
def learned(learnable_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("learned") / "run"
    return Trainer(learn_cfg(learnable_manifest, out), progress=False).run()


def test_a_tiny_model_learns_the_learnable_set(learned):
    assert val_aucs(learned)[-1] >= 0.9, val_aucs(learned)
    # the checkpoint says so too, scored again through the saved file
    meta = read_checkpoint_meta(learned.best)
    assert meta.metrics["val"]["face"]["auc"] >= 0.9
    # the crop contract travelled from the manifest into the checkpoint
    assert (meta.crop_size, meta.face_margin, meta.crop_alignment) == (
        SIZE,
        0.2,
        "eyes-level-square",
    )


@pytest.mark.parametrize("fault", ["faults.wrong_loss=true", "faults.shuffle_labels=true"])
def test_a_fault_that_breaks_learning_shows(learnable_manifest, tmp_path, fault):
    res = Trainer(learn_cfg(learnable_manifest, tmp_path / "run", fault), progress=False).run()
    assert max(val_aucs(res)) <= 0.6, val_aucs(res)  # at every epoch
    meta = read_checkpoint_meta(res.best)
    key = fault.split(".")[1].split("=")[0]
    assert meta.training_data["faults"] == {key: True}  # the checkpoint names its fault


def test_distillation_pulls_the_student_to_the_teacher(learnable_manifest, learned, tmp_path):
    """A student trained on the teacher's logits alone (no labels: ``loss.bce=0``) agrees with
    the teacher and so separates the classes, which its untrained self does not."""
    from facetrust.data.manifest import read_crop, read_manifest
    from facetrust.detect.scoring import FaceScorer
    from facetrust.models import create_model

    cfg = learn_cfg(
        learnable_manifest,
        tmp_path / "student",
        "loss.bce=0",
        "loss.kl=1.0",
        "loss.distill_temperature=1.0",
        f"loss.teacher={learned.best}",
    )
    res = Trainer(cfg, progress=False).run()
    assert "train_distill" in res.history[0] and "train_bce" not in res.history[0]
    rows = [r for r in read_manifest(learnable_manifest) if r.split == "val"]
    crops = [read_crop(learnable_manifest, r.crop) for r in rows]
    y = np.array([r.y for r in rows])
    teacher = FaceScorer(*load_checkpoint(learned.best)).cnn_logits(crops)
    student_model, meta = load_checkpoint(res.final)
    student = FaceScorer(student_model, meta).cnn_logits(crops)
    torch.manual_seed(cfg.seed)  # the student's starting weights (the trainer's model init)
    start = FaceScorer(create_model("tiny_cnn"), meta).cnn_logits(crops)

    def corr(a, b):
        return float(np.corrcoef(a, b)[0, 1])

    assert corr(student, teacher) > 0.8 > corr(start, teacher)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, student) >= 0.85
