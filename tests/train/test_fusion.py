"""Expert features (extraction, resume), head fitting and the fused checkpoint end to end."""

import json

import cv2
import numpy as np
import pytest

from facetrust.data.manifest import ManifestRow, write_manifest
from facetrust.detect.experts import ClipExpert, FrequencyExpert
from facetrust.detect.scoring import crop_contract
from facetrust.errors import InputError
from facetrust.models import read_checkpoint_meta
from facetrust.train import features as feat
from facetrust.train.fusion import FusionSpec, fit_fusion, fit_linear_head


@pytest.fixture(scope="module")
def tiny_tower(make_clip_tower):
    return make_clip_tower(layers=3)


@pytest.fixture(scope="module")
def crops_manifest(tmp_path_factory, face256, landmarks256):
    """24 crops from 3 sources; fakes carry fine grain (a frequency cue), reals are smoothed;
    every crop has the face's 468 landmarks (for pseudo-fakes)."""
    root = tmp_path_factory.mktemp("fusion")
    np.save(root / "lm.npy", landmarks256.astype(np.float16))
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        fake = i % 2 == 1
        img = face256.astype(np.float32) * rng.uniform(0.85, 1.15)
        img = cv2.GaussianBlur(img, (0, 0), 1.5)
        if fake:
            img += rng.normal(0, 12, img.shape)
        name = f"crop{i}.png"
        cv2.imwrite(str(root / name), np.clip(img, 0, 255).astype(np.uint8)[..., ::-1])
        rows.append(
            ManifestRow(
                path=f"/orig/{i}.jpg",
                label="fake" if fake else "real",
                source=f"s{i % 3}",
                crop=name,
                landmarks="lm.npy",
            )
        )
    manifest = write_manifest(root / "m.jsonl", rows)
    return manifest, rows


def test_degrade_is_seeded_and_keeps_the_size(face256):
    a = feat.degrade(face256, 7)
    assert a.shape == face256.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, feat.degrade(face256, 7))
    assert not np.array_equal(a, feat.degrade(face256, 8))
    assert np.abs(a.astype(int) - face256).mean() > 1  # it did lose detail


def test_extract_features_resumes_and_guards_its_folder(
    crops_manifest, tiny_tower, tmp_path, monkeypatch
):
    manifest, rows = crops_manifest
    monkeypatch.setattr(feat, "CHUNK", 10)
    logs: list[str] = []
    out = tmp_path / "f"
    experts = [ClipExpert(layers=(1, 3), tower=tiny_tower), FrequencyExpert()]
    table = feat.extract_features(rows, manifest, out, experts, log=logs.append)
    assert (
        len(logs) == 3 and sorted(p.name for p in out.glob("chunk-*.npz"))[-1] == "chunk-00002.npz"
    )
    idx = table.rows(rows[:5])
    clip3 = ClipExpert(layers=(3,), tower=tiny_tower)
    assert table.get(clip3, "clean", idx).shape == (5, 32)  # derived from the blocks 1, 3 cache
    assert table.get(experts[0], "degraded", idx).shape == (5, 64)
    # the cache holds what the expert itself computes on the crop
    from facetrust.data.manifest import read_crop

    np.testing.assert_allclose(
        table.get(clip3, "clean", idx[:1]),
        clip3.features([read_crop(manifest, rows[0].crop)]),
        rtol=0.02,
        atol=0.02,
    )
    freq = FrequencyExpert()
    assert table.get(freq, "clean", idx).shape == (5, 50)
    assert not np.allclose(table.get(freq, "clean", idx), table.get(freq, "degraded", idx))
    with pytest.raises(InputError, match="no features for ClipExpert"):
        table.get(ClipExpert(layers=(2,), tower=tiny_tower), "clean", idx)
    # consecutive rows of a whole cached expert: a read-only view of the table, not a copy;
    # the same values as rows picked one by one, which are copied
    whole = table.get(experts[0], "clean", idx)
    assert np.shares_memory(whole, table.arrays["e0_clean"]) and not whole.flags.writeable
    picked = table.get(experts[0], "clean", idx[[0, 2, 1, 3, 4]])
    assert not np.shares_memory(picked, table.arrays["e0_clean"])
    np.testing.assert_array_equal(picked[[0, 2, 1, 3, 4]], whole)
    assert not np.shares_memory(table.get(clip3, "clean", idx), table.arrays["e0_clean"])
    first = table.arrays["e0_clean"].copy()

    (out / "chunk-00001.npz").unlink()  # an interrupted run: only the missing chunk is redone
    logs.clear()
    again = feat.extract_features(rows[:12], manifest, out, experts, log=logs.append)
    assert logs == ["features: chunk 2/3 done" + logs[0].split("done", 1)[1]]
    np.testing.assert_allclose(again.arrays["e0_clean"], first, atol=1e-3)

    with pytest.raises(InputError, match="other rows, experts or settings"):
        feat.extract_features(rows, manifest, out, [ClipExpert(layers=(2,), tower=tiny_tower)])
    with pytest.raises(InputError, match="no cached features"):
        table.rows([ManifestRow(path="x", label="real", crop="elsewhere.png")])
    with pytest.raises(InputError, match="no rows with face crops"):
        feat.extract_features(
            [ManifestRow(path="x", label="real")], manifest, tmp_path / "g", [freq]
        )
    # the clean view alone: half the work; its folder is not the two views' resume
    clean = feat.extract_features(rows[:12], manifest, tmp_path / "c", [freq], views=("clean",))
    assert set(clean.arrays) == {"e0_clean"}
    np.testing.assert_allclose(
        clean.get(freq, "clean", clean.rows(rows[:3])), table.get(freq, "clean", idx[:3])
    )
    with pytest.raises(InputError, match="no degraded view"):
        clean.get(freq, "degraded", clean.rows(rows[:3]))
    with pytest.raises(InputError, match="other rows, experts or settings"):
        feat.extract_features(rows[:12], manifest, tmp_path / "c", [freq])
    # a folder of both views serves a clean-only request (it is read, not recomputed)
    logs.clear()
    served = feat.extract_features(rows, manifest, out, experts, log=logs.append, views=("clean",))
    assert not logs and {"e0_degraded", "e1_degraded"} <= set(served.arrays)
    with pytest.raises(InputError, match="views must be"):
        feat.extract_features(rows[:12], manifest, tmp_path / "d", [freq], views=("degraded",))


def test_fit_linear_head_picks_c_by_source_held_out_cv():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    x = rng.normal(0, 1, (120, 6))
    x[:, 0] += 2.5 * y
    groups = np.tile(["a", "b", "c"], 40)
    before = x.copy()
    head, info = fit_linear_head(x, y, groups, c_grid=(0.01, 1.0))
    assert np.array_equal(x, before)  # standardised on its own copy, not the caller's array
    assert set(info["cv_auc"]) == {"0.01", "1.0"} and info["C"] in (0.01, 1.0)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, head(x)) > 0.9 and abs(head.weight[0]) > abs(head.weight[1:]).max()
    with pytest.raises(InputError, match="real and fake"):
        fit_linear_head(x, np.zeros(120), groups)


def test_fit_fusion_writes_a_checkpoint_detection_can_use(
    crops_manifest, tiny_tower, tiny_checkpoint, tmp_path, face256
):
    manifest, rows = crops_manifest
    table = feat.extract_features(
        rows,
        manifest,
        tmp_path / "f",
        [ClipExpert(tower=tiny_tower, layers=(1, 2, 3)), FrequencyExpert()],
    )
    splits = {"train": rows[:12], "calib": rows[12:18], "val": rows[18:], "test": []}
    out = tmp_path / "fused.safetensors"
    spec = FusionSpec(
        experts=("clip", "frequency"), options={"clip": {"layers": [2, 3]}}, c_grid=(0.1, 1.0)
    )
    runtime = {"clip": {"tower": tiny_tower}}
    metrics = fit_fusion(
        splits,
        manifest,
        tiny_checkpoint,
        table,
        out,
        spec,
        name="fused-test",
        runtime=runtime,
        log=lambda s: None,
    )
    meta = read_checkpoint_meta(out)
    assert meta.name == "fused-test" and meta.experts["fusion"]["inputs"] == [
        "cnn",
        "clip",
        "frequency",
    ]
    assert (
        meta.experts["clip"]["layers"] == [2, 3]
        and len(meta.experts["clip"]["head"]["weight"]) == 64
    )
    assert meta.calibration.method == "none" and 0 <= meta.threshold <= 1
    assert metrics["val"]["face"]["n"] == 6 and set(metrics["auc_per_input"]["val"]) == {
        "cnn",
        "clip",
        "frequency",
    }
    assert metrics["val"]["face"]["auc"] > 0.8  # the grain is easy to see
    json.dumps(meta.metrics)  # the metadata stays JSON

    # detection reads the same file: crops cut by the CNN's contract, experts on those crops
    from facetrust.detect.experts import ExpertSet
    from facetrust.detect.pipeline import Detector

    freq_only = tmp_path / "freq.safetensors"
    fit_fusion(
        splits,
        manifest,
        tiny_checkpoint,
        table,
        freq_only,
        FusionSpec(experts=("frequency",)),
        log=lambda s: None,
    )
    det = Detector(freq_only, device="cpu")
    assert det.experts is not None and det.contract == crop_contract(read_checkpoint_meta(out))
    assert read_checkpoint_meta(out).crop_size == crop_contract(meta).size
    res = det(face256)
    assert len(res.faces) == 1 and 0 <= res.fake_probability <= 1
    evidence = res.as_json()["faces"][0]["experts"]
    assert set(evidence) == {"cnn", "frequency"} and all(0 <= v <= 1 for v in evidence.values())
    with pytest.raises(InputError, match="unknown expert"):
        fit_fusion(splits, manifest, tiny_checkpoint, table, out, FusionSpec(experts=("magic",)))
    cols = ExpertSet(meta.experts, runtime=runtime).expert_logits(np.zeros(1), [face256])
    assert cols.shape == (1, 3)


def test_out_of_fold_stack_trusts_the_input_that_transfers():
    from sklearn.metrics import roc_auc_score

    from facetrust.train.fusion import fit_stack, oof_head_logits

    rng = np.random.default_rng(0)
    y, src, a, b = [], [], [], []
    for s in ("k1", "k2", "k3"):
        for label in (0, 1):
            for _ in range(80):
                y.append(label)
                src.append(s)
                a.append(rng.normal(1.5 * label, 1, 3))  # the same fake cue in every kind
                b.append(rng.normal(0, 1, 3) + (3.0 * label if s == "k1" else 0.0))
    y, src, a, b = np.array(y), np.array(src), np.array(a), np.array(b)
    folds = {"k1": ["k1"], "k2": ["k2"], "k3": ["k3"]}
    oof_a = oof_head_logits([a], y, src, folds, 1.0)
    oof_b = oof_head_logits([b], y, src, folds, 1.0)
    assert not np.isnan(oof_a).any()
    assert roc_auc_score(y, oof_a) > 0.8
    # b looks excellent in-sample but carries nothing to a kind it has not seen
    head_b, _ = fit_linear_head(b, y, src, c_grid=(1.0,))
    assert roc_auc_score(y[src == "k1"], head_b(b[src == "k1"])) > 0.9
    assert roc_auc_score(y[src != "k1"], oof_b[src != "k1"]) < 0.65
    w, _ = fit_stack(np.stack([oof_a, oof_b], 1), y)
    assert w[0] > abs(w[1]) and w[1] < 0.1
    # in-sample logits would have given b a large positive weight
    w_in, _ = fit_stack(np.stack([oof_a, head_b(b)], 1), y)
    assert w_in[1] > 0.5
    partial = oof_head_logits([a], y, src, {"k1": ["k1"]}, 1.0)
    assert np.isnan(partial[src != "k1"]).all() and not np.isnan(partial[src == "k1"]).any()


def test_fit_fusion_can_stack_on_out_of_fold_logits(
    crops_manifest, tiny_tower, tiny_checkpoint, tmp_path
):
    manifest, rows = crops_manifest
    table = feat.extract_features(rows, manifest, tmp_path / "f", [FrequencyExpert()])
    splits = {"train": rows[:18], "calib": rows[18:], "val": rows[18:], "test": []}
    folds = {"f0": ["s0"], "f1": ["s1"], "f2": ["s2"]}
    spec = FusionSpec(
        experts=("frequency",),
        c_grid=(1.0,),
        stack="oof",
        folds=folds,
        cnn_folds={f: str(tiny_checkpoint) for f in folds},
    )
    out = tmp_path / "oof.safetensors"
    metrics = fit_fusion(splits, manifest, tiny_checkpoint, table, out, spec, log=lambda s: None)
    meta = read_checkpoint_meta(out)
    assert meta.experts["fusion"]["fitted_on"] == "oof"
    assert set(metrics["fusion_fit"]["oof"]) == set(folds)
    assert set(metrics["fusion_fit"]["oof"]["f0"]) == {"cnn", "frequency"}
    with pytest.raises(InputError, match="CNN trained without each fold"):
        fit_fusion(
            splits,
            manifest,
            tiny_checkpoint,
            table,
            out,
            FusionSpec(experts=("frequency",), stack="oof", folds=folds),
            log=lambda s: None,
        )


def test_out_of_fold_heads_also_train_on_sources_no_fold_holds_out(
    crops_manifest, tiny_checkpoint, tmp_path
):
    """One fold (s0) of three sources: its out-of-fold head is fitted on s1 and s2, which no
    fold names, as the shipped head is fitted on every train source; the stack's rows are s0's."""
    from sklearn.metrics import roc_auc_score

    from facetrust.train.fusion import fit_expert_head

    manifest, rows = crops_manifest
    table = feat.extract_features(rows, manifest, tmp_path / "f", [FrequencyExpert()])
    train = rows[:18]
    splits = {"train": train, "calib": rows[18:], "val": rows[18:], "test": []}
    spec = FusionSpec(
        experts=("frequency",),
        c_grid=(1.0,),
        stack="oof",
        folds={"f0": ["s0"]},
        cnn_folds={"f0": str(tiny_checkpoint)},
    )
    out = tmp_path / "oof1.safetensors"
    metrics = fit_fusion(splits, manifest, tiny_checkpoint, table, out, spec, log=lambda s: None)
    # the head the fold should get: every train row of the other sources, at the same C
    y = np.array([r.y for r in train])
    src = np.array([r.source for r in train])
    views = [table.get(FrequencyExpert(), v, table.rows(train)) for v in feat.VIEWS]
    other = src != "s0"
    head, _ = fit_expert_head([v[other] for v in views], y[other], src[other], None, (1.0,))
    expected = roc_auc_score(y[~other], head(views[0][~other]))
    assert metrics["fusion_fit"]["oof"]["f0"]["frequency"] == round(float(expected), 4)


def test_equal_weights_are_a_platt_scaled_mean_of_spread_scaled_inputs():
    from facetrust.train.fusion import fit_equal_weights, fit_stack

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(300), np.ones(300)].astype(int)
    # input a: strong on these faces and wide; input b: weak and narrow
    a = (y * 4.0 + rng.normal(0, 1, 600)) * 10.0
    b = y * 0.3 + rng.normal(0, 1, 600) * 0.1
    z = np.stack([a, b], 1)
    w, c = fit_equal_weights(z, y)
    # each input weighs by the inverse of its spread: equal once scaled
    assert w[0] * z[:, 0].std() == pytest.approx(w[1] * z[:, 1].std(), rel=1e-9)
    # a logistic stack would lean on the strong input instead
    wl, _ = fit_stack(z, y)
    assert wl[0] * z[:, 0].std() > 3 * wl[1] * z[:, 1].std()
    # the Platt scaling calibrates the mean: predicted rate = observed rate
    p = 1 / (1 + np.exp(-(z @ w + c)))
    assert p.mean() == pytest.approx(y.mean(), abs=0.01)
    with pytest.raises(InputError, match="constant"):
        fit_equal_weights(np.stack([a, np.ones(600)], 1), y)


def test_stack_row_weights_count_rows_that_often():
    """Weights 2 and 0 fit the stack of those rows twice and not at all."""
    from facetrust.train.fusion import fit_stack

    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(200), np.ones(200)].astype(int)
    z = np.stack([y * 2.0 + rng.normal(0, 1, 400), rng.normal(0, 1, 400)], 1)
    w = rng.integers(0, 3, 400).astype(float)
    keep = np.repeat(np.arange(400), w.astype(int))
    a, b = fit_stack(z, y, sample_weight=w)
    a2, b2 = fit_stack(z[keep], y[keep])
    np.testing.assert_allclose(a, a2, rtol=1e-3, atol=1e-4)
    assert b == pytest.approx(b2, abs=1e-3)
    assert not np.allclose(a, fit_stack(z, y)[0], rtol=1e-3)


def test_fit_fusion_with_equal_weights_writes_them(crops_manifest, tiny_checkpoint, tmp_path):
    manifest, rows = crops_manifest
    table = feat.extract_features(rows, manifest, tmp_path / "f", [FrequencyExpert()])
    splits = {"train": rows[:18], "calib": rows[18:], "val": rows[18:], "test": []}
    out = tmp_path / "eq.safetensors"
    spec = FusionSpec(experts=("frequency",), c_grid=(1.0,), weights="equal")
    fit_fusion(splits, manifest, tiny_checkpoint, table, out, spec, log=lambda s: None)
    fusion = read_checkpoint_meta(out).experts["fusion"]
    assert fusion["weights"] == "equal" and len(fusion["weight"]) == 2
    # a bad rule is refused when the spec is made, before any feature is read
    with pytest.raises(InputError, match="weights must be"):
        FusionSpec(experts=("frequency",), weights="best")
    with pytest.raises(InputError, match="stack must be"):
        FusionSpec(experts=("frequency",), stack="val")


def test_parse_pseudo_and_the_spec_refuse_unknown_kinds():
    from facetrust.train.fusion import parse_pseudo

    assert parse_pseudo("sbi, splice:0.5") == {"sbi": 1.0, "splice": 0.5}
    assert parse_pseudo("") == {} and parse_pseudo("none") == {}
    with pytest.raises(InputError, match="magic"):
        parse_pseudo("sbi,magic")
    with pytest.raises(InputError, match="not a number"):
        parse_pseudo("sbi:lots")
    with pytest.raises(InputError):
        parse_pseudo("sbi:0")  # nothing left to make
    with pytest.raises(InputError, match="magic"):
        FusionSpec(pseudo={"magic": 1.0})


def test_pseudo_twins_are_seeded_fakes_made_from_the_reals(crops_manifest, tmp_path):
    from facetrust.data.manifest import read_crop

    manifest, rows = crops_manifest
    reals, make, makers = feat.pseudo_twins(
        rows, manifest, {"sbi": 1.0, "splice": 1.0, "trace": 1.0}
    )
    assert [r.crop for r in reals] == [r.crop for r in rows if r.label == "real"]
    assert makers.startswith("PseudoFakeMix(") and "SpliceConfig(" in makers  # what makes them
    a = make(reals[0])
    crop = read_crop(manifest, reals[0].crop)
    assert a.shape == crop.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, make(reals[0]))  # seeded by the row
    assert np.abs(a.astype(int) - crop).mean() > 0.1  # it is not the real
    # the twin table holds features of the fakes (clean and degraded), not of the crops
    freq = FrequencyExpert()
    about = {"pseudo": {"sbi": 1.0, "splice": 1.0, "trace": 1.0}}
    twins = feat.extract_features(reals, manifest, tmp_path / "p", [freq], make=make, about=about)
    plain = feat.extract_features(reals, manifest, tmp_path / "c", [freq])
    idx = twins.rows(reals)
    np.testing.assert_allclose(twins.get(freq, "clean", idx[:1]), freq.features([a]), atol=1e-4)
    assert not np.allclose(twins.get(freq, "clean", idx), plain.get(freq, "clean", idx))
    with pytest.raises(InputError, match="other rows, experts or settings"):
        feat.extract_features(reals, manifest, tmp_path / "p", [freq], make=make, about={})
    with pytest.raises(InputError, match="landmarks"):
        feat.pseudo_twins(
            [r.model_copy(update={"landmarks": None}) for r in rows], manifest, {"sbi": 1}
        )


def test_twin_features_extract_the_twins_of_the_reals_once_per_mix(crops_manifest, tmp_path):
    from facetrust.train.fusion import twin_features

    manifest, rows = crops_manifest
    freq = FrequencyExpert()
    reals, table = twin_features(rows, manifest, tmp_path, {"sbi": 1.0, "trace": 0.5}, [freq])
    assert [r.crop for r in reals] == [r.crop for r in rows if r.label == "real"]
    folder = tmp_path / "pseudo-sbi+trace0.5"  # named by kinds and ratios
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]
    _, make, _ = feat.pseudo_twins(rows, manifest, {"sbi": 1.0, "trace": 0.5})
    idx = table.rows(reals)
    np.testing.assert_allclose(
        table.get(freq, "clean", idx[:1]), freq.features([make(reals[0])]), atol=1e-4
    )
    # a second call reads what the first wrote, even for fewer rows; another mix: a new folder
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again, _ = twin_features(rows[:6], manifest, tmp_path, {"trace": 0.5, "sbi": 1.0}, [freq])
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp
    assert [r.crop for r in again] == [r.crop for r in rows[:6] if r.label == "real"]
    twin_features(rows, manifest, tmp_path, {"sbi": 1.0}, [freq])
    assert (tmp_path / "pseudo-sbi").is_dir()


def test_twin_features_for_clean_view_heads_make_the_clean_view_alone(crops_manifest, tmp_path):
    from facetrust.train.fusion import twin_features

    manifest, rows = crops_manifest
    freq = FrequencyExpert()
    reals, table = twin_features(rows, manifest, tmp_path, {"sbi": 1.0}, [freq], views=("clean",))
    idx = table.rows(reals)
    assert table.get(freq, "clean", idx).shape[0] == len(reals)
    with pytest.raises(InputError, match="no degraded view"):
        table.get(freq, "degraded", idx)
    # a run that wants both views cannot reuse the clean-only folder
    with pytest.raises(InputError, match="other rows, experts or settings"):
        twin_features(rows, manifest, tmp_path, {"sbi": 1.0}, [freq])


def test_controls_are_the_reals_given_their_twins_side_effects(crops_manifest, tmp_path):
    from facetrust.data.manifest import read_crop
    from facetrust.train.fusion import _head_rows, twin_features

    manifest, rows = crops_manifest
    reals, make_twin, makers = feat.pseudo_twins(rows, manifest, {"resynth": 1.0})
    again, make_control, about = feat.pseudo_twins(rows, manifest, {"resynth": 1.0}, controls=True)
    assert [r.crop for r in again] == [r.crop for r in reals] and about == makers + " controls"
    real = read_crop(manifest, reals[0].crop)
    twin, control = make_twin(reals[0]), make_control(reals[0])
    np.testing.assert_array_equal(control, make_control(reals[0]))  # seeded by the row
    assert not np.array_equal(control, twin) and not np.array_equal(control, real)
    # what the maker's control gives for the very twin of that row
    from facetrust.data.pseudo import create_pseudo_fake

    np.testing.assert_array_equal(control, create_pseudo_fake("resynth").control(real, twin))
    with pytest.raises(InputError, match="sbi pseudo-fakes have no real-labelled control"):
        feat.pseudo_twins(rows, manifest, {"sbi": 1.0, "resynth": 1.0}, controls=True)
    # their features: a folder of their own beside the twins'
    freq = FrequencyExpert()
    _, table = twin_features(rows, manifest, tmp_path, {"resynth": 1.0}, [freq], controls=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pseudo-resynth-controls"]
    np.testing.assert_allclose(
        table.get(freq, "clean", table.rows(reals[:1])), freq.features([control]), atol=1e-4
    )
    # a head's rows: the faces, the twins as fakes, the controls as reals
    x = np.zeros((4, 2))
    views = ([np.ones((3, 2))], np.array(["a", "b", "c"]))
    controls = ([np.full((3, 2), 2.0)], np.array(["a", "b", "c"]))
    xt, yt, gt = _head_rows([x], np.array([0, 1, 0, 1]), np.array(list("aabb")), views, controls)
    assert xt.shape == (10, 2) and yt.tolist() == [0, 1, 0, 1, 1, 1, 1, 0, 0, 0]
    assert xt[7:].tolist() == [[2.0, 2.0]] * 3 and gt[7:].tolist() == ["a", "b", "c"]


def test_fit_fusion_adds_pseudo_fakes_of_the_train_reals_to_the_heads(
    crops_manifest, tiny_checkpoint, tmp_path, monkeypatch
):
    from facetrust.train import fusion

    manifest, rows = crops_manifest
    freq = FrequencyExpert()
    table = feat.extract_features(rows, manifest, tmp_path / "f", [freq])
    reals, make, _ = feat.pseudo_twins(rows, manifest, {"sbi": 1.0})
    twins = feat.extract_features(reals, manifest, tmp_path / "p", [freq], make=make, about=1)
    splits = {"train": rows[:12], "calib": rows[12:18], "val": rows[18:], "test": []}
    fitted: list = []
    real_fit = fusion.fit_linear_head

    def spy(x, y, groups, *a, **k):
        fitted.append((len(x), int(np.sum(y)), set(groups)))
        return real_fit(x, y, groups, *a, **k)

    monkeypatch.setattr(fusion, "fit_linear_head", spy)
    spec = FusionSpec(experts=("frequency",), c_grid=(1.0,), pseudo={"sbi": 1.0})
    out = tmp_path / "p.safetensors"
    metrics = fit_fusion(
        splits, manifest, tiny_checkpoint, table, out, spec, pseudo=(reals, twins), log=print
    )
    n_real_train = sum(r.label == "real" for r in splits["train"])
    n_fake_train = 12 - n_real_train
    # train rows (two views) + one twin per train real (two views); the val reals' twins stay out
    assert fitted == [
        (2 * (12 + n_real_train), 2 * (n_fake_train + n_real_train), {"s0", "s1", "s2"})
    ]
    assert metrics["fusion_fit"]["pseudo"] == {"kinds": {"sbi": 1.0}, "faces": n_real_train}
    with pytest.raises(InputError, match="none were extracted"):
        fit_fusion(splits, manifest, tiny_checkpoint, table, out, spec, log=lambda s: None)


def test_out_of_fold_heads_see_only_the_other_sources_pseudo_fakes(monkeypatch):
    from facetrust.train import fusion

    rng = np.random.default_rng(0)
    # k1 has fakes; k2 and k3 are real-only: only pseudo-fakes make their folds fittable
    src = np.repeat(["k1", "k2", "k3"], 40)
    y = ((src == "k1") & (np.arange(120) % 2 == 1)).astype(np.int64)
    x = rng.normal(0, 1, (120, 4)) + y[:, None]
    psrc = np.repeat(["k1", "k2", "k3"], 10)
    xp = rng.normal(1, 1, (30, 4))
    folds = {"k1": ["k1"], "k2": ["k2"], "k3": ["k3"]}
    with pytest.raises(InputError, match="lack real or fake"):
        fusion.oof_head_logits([x], y, src, {"k1": ["k1"]}, 1.0)
    seen: list = []
    real_fit = fusion.fit_linear_head

    def spy(xx, yy, gg, *a, **k):
        seen.append((set(gg[yy == 1]), int(yy.sum())))
        return real_fit(xx, yy, gg, *a, **k)

    monkeypatch.setattr(fusion, "fit_linear_head", spy)
    out = fusion.oof_head_logits([x], y, src, folds, 1.0, ([xp], psrc))
    assert not np.isnan(out).any()
    assert seen == [({"k2", "k3"}, 20), ({"k1", "k3"}, 40), ({"k1", "k2"}, 40)]


def test_cli_fuse_fits_the_stack_out_of_fold_with_fold_cnns(
    crops_manifest, tiny_checkpoint, tmp_path
):
    from typer.testing import CliRunner

    from facetrust.cli import app

    manifest, _ = crops_manifest
    out = tmp_path / "oof.safetensors"
    base = ["fuse", "--cnn", str(tiny_checkpoint), "-o", str(out), "--experts", "frequency"]
    base += ["--features", str(tmp_path / "f")]
    overrides = [f"data.train_manifest={manifest}", "data.split_by=video", "name=oof-cli"]
    overrides += ["data.val_fraction=0.2", "data.calib_fraction=0.2", "calibration.min_per_class=1"]
    folds = [f"--fold=f{i}=s{i}:{tiny_checkpoint}" for i in range(3)]
    res = CliRunner().invoke(app, [*base, *folds, *overrides])
    assert res.exit_code == 0, res.output
    meta = read_checkpoint_meta(out)
    assert meta.experts["fusion"]["fitted_on"] == "oof"
    assert set(meta.metrics["fusion_fit"]["oof"]) <= {"f0", "f1", "f2"}
    for bad, message in (
        ("--fold=f0:s0", "expected NAME=SOURCE"),
        (f"--fold=f0=s0:{tmp_path / 'none.safetensors'}", "no CNN checkpoint"),
    ):
        res = CliRunner().invoke(app, [*base, bad, *overrides])
        assert res.exit_code == 2 and message in res.output, res.output
    res = CliRunner().invoke(app, [*base, folds[0], folds[0], *overrides])
    assert res.exit_code == 2 and "its own name" in res.output


def test_cell_weights_make_every_source_and_label_count_alike():
    from facetrust.train.fusion import cell_weights

    groups = np.array(["a"] * 8 + ["b"] * 2)
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 1])
    w = cell_weights(groups, y)
    assert w.mean() == pytest.approx(1.0)
    totals = {
        (g, v): w[(groups == g) & (y == v)].sum()
        for g, v in {("a", 0), ("a", 1), ("b", 0), ("b", 1)}
    }
    assert len({round(t, 9) for t in totals.values()}) == 1


def test_fit_linear_head_follows_the_sample_weights():
    rng = np.random.default_rng(1)
    # a big source whose fakes differ in x0, a small one whose fakes differ in x1
    x = rng.normal(0, 1, (440, 2))
    groups = np.array(["big"] * 400 + ["small"] * 40)
    y = np.tile([0, 1], 220)
    x[:400, 0] += 2 * y[:400]
    x[400:, 1] += 2 * y[400:]
    plain, _ = fit_linear_head(x, y, groups, c_grid=(1.0,))
    from facetrust.train.fusion import cell_weights

    weighted, _ = fit_linear_head(
        x, y, groups, c_grid=(1.0,), sample_weight=cell_weights(groups, y)
    )
    ratio = lambda h: h.weight[1] / h.weight[0]  # noqa: E731
    assert ratio(plain) < 0.5 < ratio(weighted)


def _fit_frequency_heads(crops_manifest, checkpoint, tmp_path, monkeypatch, specs):
    """``fit_fusion`` with each spec on the tiny crops (frequency expert): the rows and sample
    weights every head fit received, the feature table and the train split."""
    from facetrust.train import fusion

    manifest, rows = crops_manifest
    table = feat.extract_features(rows, manifest, tmp_path / "f", [FrequencyExpert()])
    splits = {"train": rows[:12], "calib": rows[12:18], "val": rows[18:], "test": []}
    calls: list = []
    real_fit = fusion.fit_linear_head

    def spy(x, y, groups, *a, sample_weight=None, **k):
        calls.append((x.copy(), sample_weight))
        return real_fit(x, y, groups, *a, sample_weight=sample_weight, **k)

    monkeypatch.setattr(fusion, "fit_linear_head", spy)
    for spec in specs:
        fit_fusion(
            splits, manifest, checkpoint, table, tmp_path / "h.safetensors", spec, log=lambda s: 0
        )
    return calls, table, splits["train"]


def test_fit_fusion_balance_weighs_the_heads_rows_by_source_and_label(
    crops_manifest, tiny_checkpoint, tmp_path, monkeypatch
):
    from facetrust.train import fusion

    specs = [FusionSpec(experts=("frequency",), c_grid=(1.0,), balance=b) for b in (False, True)]
    calls, _, train = _fit_frequency_heads(
        crops_manifest, tiny_checkpoint, tmp_path, monkeypatch, specs
    )
    assert calls[0][1] is None
    y = np.tile([r.y for r in train], 2)
    groups = np.tile([r.source for r in train], 2)
    np.testing.assert_allclose(calls[1][1], fusion.cell_weights(groups, y))
    assert fusion.fusion_spec("frequency", balance=True).balance


def test_fit_fusion_views_clean_trains_the_heads_on_the_clean_view_alone(
    crops_manifest, tiny_checkpoint, tmp_path, monkeypatch
):
    from facetrust.train import fusion

    specs = [fusion.fusion_spec("frequency", views=v) for v in ("both", "clean")]
    calls, table, train = _fit_frequency_heads(
        crops_manifest, tiny_checkpoint, tmp_path, monkeypatch, specs
    )
    idx = table.rows(train)
    clean, degraded = (table.get(FrequencyExpert(), v, idx) for v in ("clean", "degraded"))
    np.testing.assert_allclose(calls[0][0], np.concatenate([clean, degraded]))
    np.testing.assert_allclose(calls[1][0], clean)
    with pytest.raises(InputError, match="--views"):
        fusion.fusion_spec("frequency", views="degraded")
    with pytest.raises(InputError, match="views must be"):
        FusionSpec(experts=("frequency",), views=("degraded",))


def _two_view_rows(seed=0, n=150):
    """Rows of three sources in two views: on the clean view the fake cue is feature 0; the
    degradation wipes it, leaves a weaker cue on feature 1 and marks itself on feature 2."""
    rng = np.random.default_rng(seed)
    y = np.tile(np.repeat([0, 1], n // 2), 3)
    src = np.repeat(["a", "b", "c"], n)
    noise = lambda: rng.normal(0, 1, len(y))  # noqa: E731
    clean = np.stack([2.5 * y + noise(), noise(), noise()], 1)
    degraded = np.stack([noise(), 1.2 * y + noise(), 8 + noise()], 1)
    return clean, degraded, y, src


def test_fit_routed_head_reads_each_view_with_its_own_head():
    from sklearn.metrics import roc_auc_score

    from facetrust.detect.experts import RoutedHead
    from facetrust.train.fusion import fit_expert_head

    clean, degraded, y, src = _two_view_rows()
    head, info = fit_expert_head([clean, degraded], y, src, c_grid=(0.1, 1.0), routed=True)
    single, _ = fit_expert_head([clean, degraded], y, src, c_grid=(0.1, 1.0))
    assert isinstance(head, RoutedHead) and info["router_accuracy"] > 0.95
    assert info["C"] in (0.1, 1.0) and set(info["cv_auc"]) == {"0.1", "1.0"}
    # a sharp face is read by the clean head, a degraded one by the both head
    assert np.median(head.route(clean)) < 0.01 and np.median(head.route(degraded)) > 0.99
    assert np.mean(np.abs(head(clean) - head.clean(clean))) < 0.1
    assert np.mean(np.abs(head(degraded) - head.both(degraded))) < 0.1
    auc = lambda h, x: roc_auc_score(y, h(x))  # noqa: E731
    # the clean view's cue is read at full weight, not diluted by the degraded rows' cue
    assert abs(head.clean.weight[0]) > 2 * abs(single.weight[0])
    assert auc(head, clean) >= auc(single, clean) - 0.005
    assert auc(head, degraded) > auc(head.clean, degraded) + 0.1
    # tied to its rows' views
    rows = np.concatenate([clean, degraded])
    from facetrust.train.fusion import fit_routed_head

    with pytest.raises(InputError, match="clean view"):
        fit_routed_head(rows, np.tile(y, 2), np.tile(src, 2), np.zeros(len(rows)))


def test_out_of_fold_routed_heads_score_each_fold_on_its_clean_view(monkeypatch):
    from facetrust.train import fusion

    clean, degraded, y, src = _two_view_rows(1)
    folds = {"a": ["a"], "b": ["b"], "c": ["c"]}
    seen = []
    real = fusion.fit_routed_head

    def spy(x, yy, gg, view, *a, **k):
        seen.append(set(gg))
        return real(x, yy, gg, view, *a, **k)

    monkeypatch.setattr(fusion, "fit_routed_head", spy)
    oof = fusion.oof_head_logits([clean, degraded], y, src, folds, 1.0, routed=True)
    assert seen == [{"b", "c"}, {"a", "c"}, {"a", "b"}]  # each fold's head: the other sources
    assert not np.isnan(oof).any()
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, oof) > 0.9


def test_fit_fusion_views_routed_writes_a_routed_head_detection_reads(
    crops_manifest, tiny_checkpoint, tmp_path, monkeypatch, face256
):
    from facetrust.detect.experts import RoutedHead
    from facetrust.detect.pipeline import Detector
    from facetrust.train import fusion

    spec = fusion.fusion_spec("frequency", views="routed")
    assert spec.routed and spec.views == feat.VIEWS
    calls, table, train = _fit_frequency_heads(
        crops_manifest, tiny_checkpoint, tmp_path, monkeypatch, [spec]
    )
    idx = table.rows(train)
    clean, degraded = (table.get(FrequencyExpert(), v, idx) for v in ("clean", "degraded"))
    # the both head on every row, the clean head on the clean rows, the router on every row
    assert len(calls) == 3
    np.testing.assert_allclose(calls[0][0], np.concatenate([clean, degraded]))
    np.testing.assert_allclose(calls[1][0], clean)
    np.testing.assert_allclose(calls[2][0], np.concatenate([clean, degraded]))
    out = tmp_path / "h.safetensors"
    meta = read_checkpoint_meta(out)
    assert meta.experts["frequency"]["head"]["kind"] == "routed"
    assert meta.metrics["fusion_fit"]["routed"] is True
    assert 0 <= meta.metrics["fusion_fit"]["frequency"]["router_accuracy"] <= 1
    det = Detector(out, device="cpu")
    assert isinstance(det.experts.experts["frequency"].head, RoutedHead)
    res = det(face256)
    assert len(res.faces) == 1 and 0 <= res.fake_probability <= 1
    with pytest.raises(InputError, match="needs both views"):
        FusionSpec(experts=("frequency",), views=("clean",), routed=True)
    with pytest.raises(InputError, match="'both', 'clean' or 'routed'"):
        fusion.fusion_spec("frequency", views="mixed")


def test_parse_c_takes_one_strength_or_one_per_expert(
    crops_manifest, tiny_checkpoint, tmp_path, monkeypatch
):
    from facetrust.train import fusion

    assert fusion.parse_c(None) == (None, {}) and fusion.parse_c("") == (None, {})
    assert fusion.parse_c("0.01") == (0.01, {}) and fusion.parse_c(0.5) == (0.5, {})
    assert fusion.parse_c("clip=0.0003, frequency=0.3") == (None, {"clip": 3e-4, "frequency": 0.3})
    for bad in ("-1", "nan", "inf", "clip=0", "clip=x"):
        with pytest.raises(InputError, match="--c must be a positive number"):
            fusion.parse_c(bad)
    spec = fusion.fusion_spec("clip,frequency", c="clip=0.0003")
    assert spec.c_grid == fusion.C_GRID and spec.expert_c == {"clip": 3e-4}
    with pytest.raises(InputError, match="not fitted"):
        fusion.fusion_spec("frequency", c="clip=0.1")
    # the named expert's head is fitted at its C, the others by the grid
    specs = [fusion.fusion_spec("frequency", c="frequency=0.7")]
    _fit_frequency_heads(crops_manifest, tiny_checkpoint, tmp_path, monkeypatch, specs)
    meta = read_checkpoint_meta(tmp_path / "h.safetensors")
    assert meta.metrics["fusion_fit"]["frequency"]["C"] == 0.7
    assert meta.metrics["fusion_fit"]["frequency"]["cv_auc"] == {}
