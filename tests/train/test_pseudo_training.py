"""Training with pseudo-fake twins, one normalisation for every image and paired batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facetrust.data.manifest import read_manifest
from facetrust.data.sampling import BatchItem
from facetrust.train.build import build_data
from facetrust.train.loop import Trainer

from .test_learning import learn_cfg, val_aucs


@pytest.mark.parametrize("kind", ["trace", "resynth"])
def test_paired_batches_hold_reals_and_their_twins(learnable_manifest, tmp_path, kind):
    cfg = learn_cfg(
        learnable_manifest,
        tmp_path / "run",
        "data.sampler=paired",
        f"data.pseudo_kinds={{{kind}: 1.0}}",
        "data.normalise=true",
        "data.normalise_scale=[0.8, 1.0]",
    )
    data = build_data(cfg)
    data.start_epoch(0)
    x, y, idx = next(iter(data.loader))
    assert x.shape[0] == cfg.optim.batch_size and float(y.mean()) == 0.5  # pairs: half fake
    ds = data.dataset
    real_i = next(i for i, r in enumerate(ds.rows) if r.label == "real")
    torch.manual_seed(0)
    twin, label = ds.raw_item(BatchItem(real_i, pseudo=True))
    torch.manual_seed(0)
    real, real_label = ds.raw_item(BatchItem(real_i, pseudo=False))
    assert (label, real_label) == (1, 0)
    # the twin is the real (normalised the same way), traced or re-made: the same content
    diff = np.abs(twin.astype(float) - real.astype(float))
    assert 0 < diff.mean() < 20
    raw = ds.load_crop(ds.rows[real_i])
    assert not np.array_equal(real, raw)  # the normaliser re-encoded it


def test_training_on_paired_normalised_batches_learns(learnable_manifest, tmp_path):
    cfg = learn_cfg(
        learnable_manifest,
        tmp_path / "run",
        "data.sampler=paired",
        "data.pseudo_kinds={trace: 1.0}",
        "data.pseudo_fraction=0.3",
        "optim.epochs=4",
        "data.normalise=true",
        "data.normalise_scale=[0.8, 1.0]",
    )
    res = Trainer(cfg, progress=False).run()
    assert val_aucs(res)[-1] >= 0.85, val_aucs(res)
    rows = read_manifest(learnable_manifest)
    assert len({r.source for r in rows}) == 1


def test_samples_per_epoch_sizes_a_paired_epoch(learnable_manifest, tmp_path):
    """With the paired sampler an epoch holds about data.samples_per_epoch items (every
    source's pairs scaled alike), instead of one pass over every source's pairs."""
    base = ["data.sampler=paired", "optim.batch_size=8"]
    natural = build_data(learn_cfg(learnable_manifest, tmp_path / "a", *base)).steps_per_epoch
    short = build_data(
        learn_cfg(learnable_manifest, tmp_path / "b", *base, "data.samples_per_epoch=16")
    ).steps_per_epoch
    assert natural > 2 and short == 2
    long = build_data(
        learn_cfg(
            learnable_manifest, tmp_path / "c", *base, f"data.samples_per_epoch={natural * 16}"
        )
    ).steps_per_epoch
    assert long == 2 * natural


def test_head_lr_scale_gives_the_classifier_its_own_rate(learnable_manifest, tmp_path):
    from facetrust.errors import InputError
    from facetrust.train.build import build_model, build_optimisation

    cfg = learn_cfg(learnable_manifest, tmp_path / "r", "optim.head_lr_scale=20")
    model = build_model(cfg, "cpu")
    opt = build_optimisation(cfg, model, steps_per_epoch=4, device="cpu").optimizer
    body, head = opt.param_groups
    assert head["lr"] == pytest.approx(20 * body["lr"])  # warm-up scales both alike
    assert {id(p) for p in head["params"]} == {id(p) for p in model.get_classifier().parameters()}
    assert len(body["params"]) + len(head["params"]) == len(list(model.parameters()))
    one = build_optimisation(learn_cfg(learnable_manifest, tmp_path / "s"), model, 4, "cpu")
    assert len(one.optimizer.param_groups) == 1

    class NoHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 1)

    with pytest.raises(InputError, match="no classifier"):
        build_optimisation(cfg, NoHead(), 4, "cpu")
