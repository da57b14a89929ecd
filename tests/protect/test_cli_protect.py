import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from facetrust.cli import app

runner = CliRunner()
FAST = ["--encoders", "tiny", "--steps", "2", "--no-judge"]


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
    assert (
        "visibility: " in res.stdout and "face SSIM" in res.stdout and "preset subtle" in res.stdout
    )


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
    res = runner.invoke(app, ["protect", str(good), "-o", str(tmp_path / "x.png"), "-s", "medium"])
    assert res.exit_code == 2 and "unknown strength" in res.output and "subtle" in res.output
    res = runner.invoke(
        app, ["protect", str(good), "-o", str(tmp_path / "x.png"), "--encoders", "dlib"]
    )
    assert res.exit_code == 2 and "judge" in res.output
    res = runner.invoke(app, ["protect", str(tmp_path / "nope.png"), "-o", str(tmp_path / "y.png")])
    assert res.exit_code == 1 and "file not found" in res.output


def test_ssim_and_psnr_options_set_a_custom_face_budget(tmp_path, small_portrait):
    src = tmp_path / "in.png"
    Image.fromarray(small_portrait).save(src)
    out = tmp_path / "out.png"
    args = ["protect", str(src), "-o", str(out), "--json", *FAST]
    res = runner.invoke(app, [*args, "--ssim", "0.95", "--psnr", "30"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.splitlines()[-1])
    assert (report["budget_ssim"], report["budget_psnr"]) == (0.95, 30.0)
    assert report["strength"] == "custom"
    assert report["face_ssim"] >= 0.95 and report["face_psnr"] >= 30.0
    res = runner.invoke(app, [*args, "-s", "strong"])
    strong = json.loads(res.stdout.splitlines()[-1])
    res = runner.invoke(app, [*args, "-s", "subtle"])
    subtle = json.loads(res.stdout.splitlines()[-1])
    assert subtle["face_psnr"] > strong["face_psnr"] and subtle["face_ssim"] > strong["face_ssim"]
    for bad in (["--ssim", "1.5"], ["--psnr", "5"], ["--psnr", "loud"]):
        res = runner.invoke(app, ["protect", str(src), "-o", str(out), *bad, *FAST])
        assert res.exit_code == 2


def test_no_face_names_whole_image(tmp_path, noise_image):
    src = tmp_path / "noise.png"
    Image.fromarray(noise_image).save(src)
    res = runner.invoke(app, ["protect", str(src), "-o", str(tmp_path / "o.png"), *FAST])
    assert res.exit_code == 0, res.output
    assert "no face" in res.stdout and "--whole-image" in res.stdout


def test_judge_line_names_the_word_and_the_distance(tmp_path, small_portrait):
    import dlib  # noqa: F401  (the protect extra's judge: missing fails loudly, never skips)

    src = tmp_path / "in.png"
    Image.fromarray(small_portrait).save(src)
    fast = [a for a in FAST if a != "--no-judge"]
    res = runner.invoke(app, ["protect", str(src), "-o", str(tmp_path / "o.png"), *fast])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.stdout.splitlines() if "against dlib after JPEG 75" in x)
    assert any(w in line for w in ("protected", "weak", "none", "undecided"))
    assert "distance" in line or "no decision" in line
