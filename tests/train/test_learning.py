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

from facetrust.models import load_checkpoint, read_checkpoint_meta
from facetrust.train.config import load_config
from facetrust.train.loop import Trainer

from .conftest import SIZE


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
            "calibration.min_per_class=2",  # a small synthetic set
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


@pytest.mark.parametrize(
    "native, amp, dtype",
    [
        (True, "true", torch.bfloat16),
        (True, "false", torch.float32),
        (False, "true", torch.float32),
    ],
)
def test_mixed_precision_on_the_cpu_where_it_is_native(
    learnable_manifest, tmp_path, monkeypatch, native, amp, dtype
):
    """``optim.amp`` trains the forward pass in bfloat16 on a CPU that computes it natively
    (in channels-last layout), in float32 where it does not or when off; either way it learns."""
    import facetrust.train.build as build
    import facetrust.train.loop as loop

    monkeypatch.setattr(build, "cpu_bf16", lambda: native)
    seen: set = set()

    def recorded(*args, **kwargs):
        model = build.build_model(*args, **kwargs)

        def hook(module, inputs, out):
            if module.training:
                seen.add((out.dtype, inputs[0].is_contiguous(memory_format=torch.channels_last)))

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(loop, "build_model", recorded)
    res = Trainer(
        learn_cfg(learnable_manifest, tmp_path / "run", f"optim.amp={amp}"), progress=False
    ).run()
    assert seen == {(dtype, True)}
    assert val_aucs(res)[-1] >= 0.9, val_aucs(res)
    said = "bfloat16 autocast (CPU)" if dtype == torch.bfloat16 else "float32"
    assert read_checkpoint_meta(res.best).training_data["precision"] == said
