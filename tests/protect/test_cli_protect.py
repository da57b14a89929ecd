import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from facetrust.cli import app

runner = CliRunner()
FAST = ["--encoders", "tiny", "--steps", "2"]


def _jpeg_with_exif(path, image):
    exif = Image.Exif()
    exif[0x010F] = "FaceTrust Test Camera"  # Make
    exif[0x0132] = "2024:01:01 10:00:00"  # DateTime
    Image.fromarray(image).save(path, exif=exif.tobytes(), quality=95)
    assert Image.open(path).getexif()  # the input does carry metadata
    return path


def test_protect_writes_a_same_size_png_without_exif(tmp_path, small_portrait):
    src = _jpeg_with_exif(tmp_path / "selfie.jpg", small_portrait)
    out = tmp_path / "safe.png"
    res = runner.invoke(app, ["protect", str(src), "-o", str(out), *FAST])
    assert res.exit_code == 0, res.output
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (160, 160)
        assert not im.getexif() and "exif" not in im.info
    assert "safe.png" in res.stdout and "identity stability" in res.stdout


def test_several_inputs_go_to_a_folder_with_json_lines(tmp_path, small_portrait, noise_image):
    a = _jpeg_with_exif(tmp_path / "a.jpg", small_portrait)
    b = tmp_path / "b.png"
    Image.fromarray(noise_image).save(b)
    out = tmp_path / "out"
    res = runner.invoke(app, ["protect", str(a), str(b), "-o", str(out), "--json", *FAST])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.stdout.splitlines() if x.strip()]
    assert [r["faces"] for r in rows] == [1, 0]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    # the no-face photo comes back pixel for pixel
    assert np.array_equal(np.asarray(Image.open(out / "b.png")), noise_image)
    assert "no face" in rows[1]["message"]


def test_jpeg_output_on_request(tmp_path, small_portrait):
    src = tmp_path / "in.png"
    Image.fromarray(small_portrait).save(src)
    out = tmp_path / "out.jpg"
    res = runner.invoke(app, ["protect", str(src), "-o", str(out), "--jpeg", *FAST])
    assert res.exit_code == 0, res.output
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == (160, 160) and not im.getexif()


def test_bad_file_exit_1_and_usage_errors_exit_2(tmp_path, small_portrait):
    good = tmp_path / "good.png"
    Image.fromarray(small_portrait).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    res = runner.invoke(app, ["protect", str(good), str(bad), "-o", str(out), *FAST])
    assert res.exit_code == 1
    assert (out / "good.png").exists() and not (out / "bad.png").exists()
    assert "bad.jpg" in res.output and "error" in res.output
    assert len([x for x in res.output.splitlines() if x.startswith("error")]) == 1
    res = runner.invoke(app, ["protect", str(good), "-o", str(tmp_path / "x.png"), "-s", "max"])
    assert res.exit_code == 2 and "unknown strength" in res.output
    res = runner.invoke(
        app, ["protect", str(good), "-o", str(tmp_path / "x.png"), "--encoders", "dlib"]
    )
    assert res.exit_code == 2 and "judge" in res.output
    res = runner.invoke(app, ["protect", str(tmp_path / "nope.png"), "-o", str(tmp_path / "y.png")])
    assert res.exit_code == 1 and "file not found" in res.output


def test_psnr_option(tmp_path, small_portrait):
    src = tmp_path / "in.png"
    Image.fromarray(small_portrait).save(src)
    out = tmp_path / "out.png"
    res = runner.invoke(app, ["protect", str(src), "-o", str(out), "--psnr", "30", "--json", *FAST])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.splitlines()[-1])
    assert report["psnr_target"] == 30.0 and report["psnr"] >= 29.95
    res = runner.invoke(
        app, ["protect", str(src), "-o", str(out), "--psnr", "off", "--eps", "4", "--json", *FAST]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.splitlines()[-1])
    assert report["psnr_target"] is None and report["linf"] <= 4
    res = runner.invoke(
        app, ["protect", str(src), "-o", str(out), "--warp-px", "1.5", "--json", *FAST]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[-1])["warp_px"] == 1.5
    for bad in ("loud", "5"):
        res = runner.invoke(app, ["protect", str(src), "-o", str(out), "--psnr", bad, *FAST])
        assert res.exit_code == 2 and "psnr" in res.output
        assert len(res.output.strip().splitlines()) == 1
