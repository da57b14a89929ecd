"""`facetrust prepare`, `train`, `eval` and `tune` end to end on a small folder data set."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facetrust.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def folder_dataset(tmp_path_factory, astronaut):
    """data/real/*.jpg and data/fake/*.png: the astronaut with variations; fakes get a texture."""
    root = tmp_path_factory.mktemp("ds") / "data"
    rng = np.random.default_rng(0)
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
        for i in range(12):
            img = astronaut[:300, 60:420].astype(np.float32) * rng.uniform(0.8, 1.2)
            if label == "fake":
                img += rng.normal(0, 25, (75, 90, 3)).repeat(4, 0).repeat(4, 1)
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / label / f"{i}.jpg")
    (root / "fake" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    Image.new("RGB", (120, 90), (40, 90, 200)).save(root / "real" / "blank.png")  # no face
    return root


def test_prepare_train_eval_tune(folder_dataset, tmp_path):
    manifest = tmp_path / "m.jsonl"
    res = runner.invoke(
        app, ["prepare", str(folder_dataset), "-o", str(manifest), "--crop-size", "64"]
    )
    assert res.exit_code == 0, res.output
    assert (
        "24 faces" in res.stdout and "1 without a face" in res.stdout and "1 failed" in res.stdout
    )
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert len(rows) == 24 and {r["label"] for r in rows} == {"real", "fake"}
    # rerun is incremental
    again = runner.invoke(
        app,
        ["prepare", str(folder_dataset), "-o", str(manifest), "--crop-size", "64", "--no-report"],
    )
    assert again.exit_code == 0 and "25 from cache" in again.stdout  # the broken file is retried

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"output: {tmp_path / 'run'}\nname: cli-tiny\n"
        f"data: {{train_manifest: {manifest}, val_fraction: 0.25, calib_fraction: 0.25}}\n"
        "model: {arch: tiny_cnn, pretrained: false, input_size: 48}\n"
        "optim: {epochs: 2, batch_size: 8, warmup_steps: 1, lr: 0.003}\n"
        "calibration: {min_per_class: 2}\n"  # 6 calib rows: below the default minimum
    )
    # at the default minimum (20 per class) the 6 calib rows are refused before training,
    # in one line naming the counts and the minimum
    res = runner.invoke(app, ["train", "-c", str(cfg), "calibration.min_per_class=20"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output
    assert "at least 20 real and 20 fake" in res.stderr and not (tmp_path / "run").exists()
    res = runner.invoke(app, ["train", "-c", str(cfg), "optim.epochs=1"])
    assert res.exit_code == 0, res.output
    best = tmp_path / "run" / "best.safetensors"
    assert best.is_file() and "best checkpoint" in res.stdout
    assert "epochs: 1" in (tmp_path / "run" / "config.yaml").read_text()
    from facetrust.models import read_checkpoint_meta

    meta = read_checkpoint_meta(best)  # the crop contract travelled: prepare -> train
    assert (meta.crop_size, meta.face_margin) == (64, 0.2)
    res = runner.invoke(
        app,
        ["train", "-c", str(cfg), f"output={tmp_path / 'r2'}", "model.margin=0.4"],
    )
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "margin 0.2" in res.stderr and "model.margin=0.4" in res.stderr

    out = tmp_path / "report"
    res = runner.invoke(app, ["eval", str(manifest), "-m", str(best), "-o", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["face"]["n"] == 24 and rep["video"]["n"] == 24
    # 24 faces: the ECE comes with its bin counts and is flagged, in the JSON and the summary
    assert sum(rep["face"]["ece_bins"]) == 24 and rep["face"]["ece_bins_used"] >= 1
    assert rep["face"]["ece_note"].startswith("not meaningful: 24 faces, ")
    assert f"all/face: ECE {rep['face']['ece']:.4f} (not meaningful: 24 faces" in res.stdout
    assert (out / "roc.png").is_file() and (out / "reliability.png").is_file()
    # the AUC comes with its bootstrap interval (whole videos resampled), in both
    lo, hi = rep["face"]["auc_ci"]
    assert lo <= rep["face"]["auc"] <= hi and "AUC 95% CI" in res.stdout
    assert f"{lo:.3f}-{hi:.3f}" in res.stdout

    # fuse the CNN with the frequency expert; eval and detect read the fused file
    fused = tmp_path / "fused" / "fused.safetensors"
    res = runner.invoke(
        app,
        ["fuse", "-c", str(cfg), "--cnn", str(best), "-o", str(fused), "--experts", "frequency"]
        + ["--features", str(tmp_path / "features")],
    )
    assert res.exit_code == 0, res.output
    assert "val: AUC" in res.stdout and fused.is_file()
    assert (tmp_path / "fused" / "fused-report" / "val" / "report.json").is_file()
    res = runner.invoke(app, ["eval", str(manifest), "-m", str(fused), "-o", str(tmp_path / "fr")])
    assert res.exit_code == 0, res.output
    # no -m: FACETRUST_MODEL names the model, as for detect and scan
    env_out = tmp_path / "fr-env"
    res = runner.invoke(
        app, ["eval", str(manifest), "-o", str(env_out)], env={"FACETRUST_MODEL": str(fused)}
    )
    assert res.exit_code == 0, res.output
    assert json.loads((env_out / "report.json").read_text())["extra"]["checkpoint"] == str(fused)
    res = runner.invoke(
        app, ["detect", str(folder_dataset / "fake" / "0.jpg"), "--json", "-m", str(fused)]
    )
    assert res.exit_code == 0 and json.loads(res.stdout)["faces"], res.output
    res = runner.invoke(
        app,
        ["fuse", "-c", str(cfg), "--cnn", str(best), "-o", str(fused)] + ["--clip-layers", "0,13"],
    )
    assert res.exit_code == 2 and "--clip-layers" in res.output
    # tuned CLIP LayerNorms: only for the CLIP expert, only from a clip_vit_b16_ln checkpoint
    fuse = ["fuse", "-c", str(cfg), "--cnn", str(best), "-o", str(fused), "--clip-norms", str(best)]
    res = runner.invoke(app, [*fuse, "--experts", "frequency"])
    assert res.exit_code == 2 and "--clip-norms needs the clip expert" in res.output
    res = runner.invoke(app, fuse)
    assert res.exit_code == 2 and "clip_vit_b16_ln" in res.output
    # CLIP pooling / L2 options and pseudo-fake kinds are checked before any feature is read
    fuse = ["fuse", "-c", str(cfg), "--cnn", str(best), "-o", str(tmp_path / "no.safetensors")]
    for bad, message in (
        (["--clip-pool", "max"], "--clip-pool: CLIP pool must be"),
        (["--clip-l2", "--experts", "frequency"], "--clip-l2 needs the clip expert"),
        (["--pseudo", "sbi,magic"], "magic"),
        (["--views", "degraded"], "--views must be"),
        (["--c", "0"], "--c must be a positive number"),
        (["--c", "clip=fast"], "--c must be a positive number for clip"),
        (["--c", "magic=0.1"], "--c names experts not fitted: ['magic']"),
        (["--c", "clip="], "--c: expected EXPERT=C"),
    ):
        res = runner.invoke(app, [*fuse, *bad])
        assert res.exit_code == 2 and message in res.output, (bad, res.output)
    assert not (tmp_path / "no.safetensors").exists()
    # pseudo-fake twins of the train reals join the frequency head's fakes
    pfused = tmp_path / "pfused" / "fused.safetensors"
    res = runner.invoke(
        app,
        [*fuse[:-1], str(pfused), "--experts", "frequency", "--pseudo", "sbi,trace"]
        + ["--features", str(tmp_path / "features")],
    )
    assert res.exit_code == 0, res.output
    assert "pseudo-fakes (sbi, trace) join the heads" in res.stdout
    pmeta = read_checkpoint_meta(pfused)
    assert pmeta.metrics["fusion_fit"]["pseudo"]["faces"] > 0
    assert pmeta.metrics["fusion_fit"]["views"] == ["clean", "degraded"]
    assert (tmp_path / "features" / "pseudo-sbi+trace" / "index.json").is_file()
    # routed heads: the twins' views are routed like the faces'
    res = runner.invoke(
        app,
        [*fuse[:-1], str(pfused), "--experts", "frequency", "--pseudo", "sbi,trace"]
        + ["--features", str(tmp_path / "features"), "--views", "routed"],
    )
    assert res.exit_code == 0, res.output
    assert "frequency head C=" in res.stdout and "of rows to their view)" in res.stdout
    rmeta = read_checkpoint_meta(pfused)
    assert rmeta.experts["frequency"]["head"]["kind"] == "routed"
    assert rmeta.metrics["fusion_fit"]["routed"] is True
    assert rmeta.metrics["fusion_fit"]["frequency"]["C"] != 0.7
    # one C for every head, instead of the grouped cross-validation's pick
    res = runner.invoke(
        app,
        [*fuse[:-1], str(pfused), "--experts", "frequency", "--c", "0.7"]
        + ["--features", str(tmp_path / "features")],
    )
    assert res.exit_code == 0, res.output
    cmeta = read_checkpoint_meta(pfused)
    assert cmeta.metrics["fusion_fit"]["frequency"]["C"] == 0.7
    assert cmeta.metrics["fusion_fit"]["frequency"]["cv_auc"] == {}
    # or per expert
    res = runner.invoke(
        app,
        [*fuse[:-1], str(pfused), "--experts", "frequency", "--c", "frequency=0.2"]
        + ["--features", str(tmp_path / "features")],
    )
    assert res.exit_code == 0, res.output
    assert read_checkpoint_meta(pfused).metrics["fusion_fit"]["frequency"]["C"] == 0.2
    # other ratios: a twin cache of their own beside the first, not a refusal
    res = runner.invoke(
        app,
        [*fuse[:-1], str(pfused), "--experts", "frequency", "--pseudo", "sbi:2,trace"]
        + ["--features", str(tmp_path / "features")],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "features" / "pseudo-sbi2+trace" / "index.json").is_file()

    # the trained checkpoint drives `detect`
    res = runner.invoke(
        app, ["detect", str(folder_dataset / "real" / "0.jpg"), "--json", "-m", str(best)]
    )
    assert res.exit_code == 0 and json.loads(res.stdout)["model"] == "cli-tiny"

    res = runner.invoke(
        app,
        ["tune", "-c", str(cfg), f"output={tmp_path / 'tune'}", "optim.epochs=1", "--trials", "2"],
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.count("trial ") >= 2 and "best: trial" in res.stdout


def test_cli_errors_are_one_line(tmp_path):
    res = runner.invoke(app, ["prepare", str(tmp_path / "nope"), "-o", str(tmp_path / "m.jsonl")])
    assert res.exit_code == 2 and res.stderr.startswith("error: not found")
    res = runner.invoke(app, ["train", "-c", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "config file not found" in res.stderr
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    res = runner.invoke(app, ["eval", str(tmp_path / "bad.jsonl"), "-m", "x"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1


def test_clip_layers_parse_all_lists_and_reject_out_of_range(tmp_path):
    from facetrust.errors import InputError
    from facetrust.train.fusion import parse_clip_layers

    assert parse_clip_layers("all") == tuple(range(1, 13))
    assert parse_clip_layers(" 6, 9,12 ") == (6, 9, 12)
    assert parse_clip_layers("1-3,9") == (1, 2, 3, 9)
    assert parse_clip_layers("7-12") == tuple(range(7, 13))
    assert parse_clip_layers("9,1-3,2") == (9, 1, 2, 3)
    for bad in ("0,13", "", "six", "1,2,13", "1-13", "6-", "3-1"):
        with pytest.raises(InputError, match="clip-layers"):
            parse_clip_layers(bad)
    # the CLI: one line, exit 2
    ckpt = tmp_path / "cnn.safetensors"
    ckpt.write_bytes(b"x")
    res = CliRunner().invoke(
        app,
        [
            "fuse",
            "--cnn",
            str(ckpt),
            "-o",
            str(tmp_path / "f.safetensors"),
            "--clip-layers",
            "0,13",
            "data.train_manifest=x.jsonl",
        ],
    )
    assert res.exit_code == 2 and "--clip-layers: 'all' or blocks 1-12" in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1
