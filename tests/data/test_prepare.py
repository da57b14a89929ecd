from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facetrust.data import ManifestRow, discover, prepare, read_manifest, write_manifest
from facetrust.data.manifest import resolve
from facetrust.data.prepare import skipped_path_for
from facetrust.errors import InputError
from facetrust.media.jpeg_quality import estimate_jpeg_quality

# --- discovery -------------------------------------------------------------------------------


def _labels(rows):
    return sorted((Path(r.path).name, r.label, r.split) for r in rows)


def test_discover_real_fake_folders(tmp_path, touch):
    src = touch(tmp_path / "celeb", ["real/a.jpg", "fake/b.PNG", "fake/x/y/c.webp", "readme.txt"])
    touch(src, ["real/notes.txt", "stray.jpg", ".hidden/real/h.jpg"])
    rows = discover(src)
    assert _labels(rows) == [
        ("a.jpg", "real", None),
        ("b.PNG", "fake", None),
        ("c.webp", "fake", None),
    ]
    assert {r.source for r in rows} == {"celeb"}
    assert all(Path(r.path).is_absolute() and Path(r.path).is_file() for r in rows)
    assert discover(src, source_name="other")[0].source == "other"


def test_discover_split_folders_case_insensitive(tmp_path, touch):
    src = touch(
        tmp_path / "ds",
        ["Train/Real/a.jpg", "Train/Fake/b.jpg", "Validation/REAL/c.jpg", "Test/fake/d.jpg"],
    )
    assert _labels(discover(src)) == [
        ("a.jpg", "real", "train"),
        ("b.jpg", "fake", "train"),
        ("c.jpg", "real", "val"),
        ("d.jpg", "fake", "test"),
    ]
    src2 = touch(tmp_path / "ds2", ["data/train/real/a.jpg", "data/test/fake/b.jpg"])
    assert _labels(discover(src2)) == [("a.jpg", "real", "train"), ("b.jpg", "fake", "test")]


def test_discover_synonyms_and_words(tmp_path, touch):
    src = touch(
        tmp_path / "ff",
        [
            "original_sequences/youtube/a.jpg",
            "manipulated_sequences/Deepfakes/b.jpg",
            "Pristine/c.jpg",
            "synthetic/d.jpg",
            "genuine/e.jpg",
            "fakes/f.jpg",
        ],
    )
    labels = {Path(r.path).name: r.label for r in discover(src)}
    assert labels == {
        "a.jpg": "real",
        "b.jpg": "fake",
        "c.jpg": "real",
        "d.jpg": "fake",
        "e.jpg": "real",
        "f.jpg": "fake",
    }


def test_unclear_label_is_reported_not_guessed(tmp_path, touch):
    src = touch(tmp_path / "x", ["real/a.jpg", "real/fake/b.jpg", "real_vs_fake/c.jpg"])
    rows = discover(src)
    assert [Path(r.path).name for r in rows] == ["a.jpg"]
    result = prepare([src], tmp_path / "out.jsonl", detector=lambda im: [])
    reasons = {Path(p).name: r for p, r in result.failed}
    assert "unclear label" in reasons["b.jpg"] and "c.jpg" not in reasons


def test_discover_videos_get_video_ids(tmp_path, touch):
    src = touch(tmp_path / "vids", ["fake/m1/clip.mp4", "real/clip.MOV"])
    ids = {r.label: r.video_id for r in discover(src)}
    assert ids == {"fake": "fake/m1/clip", "real": "real/clip"}


def test_discover_csv(tmp_path, touch):
    touch(tmp_path / "imgs", ["a.jpg", "b.jpg", "c.mp4"])
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "Path,Label,Source,identity\n"
        "imgs/a.jpg,0,,p1\n"
        f"{tmp_path / 'imgs' / 'b.jpg'},FAKE,gen,p2\n"
        "imgs/c.mp4,1,,\n"
    )
    rows = discover(csv, source_name="mine")
    assert [(r.label, r.source, r.identity) for r in rows] == [
        ("real", "mine", "p1"),
        ("fake", "gen", "p2"),
        ("fake", "mine", None),
    ]
    assert rows[0].path == str(tmp_path / "imgs" / "a.jpg")
    assert rows[2].video_id == "imgs/c"
    assert discover(csv)[0].source == tmp_path.name


def test_discover_csv_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\na.jpg,maybe\n")
    with pytest.raises(InputError, match=r"bad\.csv:2: label must be"):
        discover(bad)
    bad.write_text("file,y\na.jpg,1\n")
    with pytest.raises(InputError, match="path and label"):
        discover(bad)


def test_discover_manifest_file_and_folder(tmp_path, touch):
    root = touch(tmp_path / "shared", ["dfdc/real/a.jpg", "sdfd/fake/b.jpg"])
    write_manifest(
        root / "manifest.jsonl",
        [
            ManifestRow(path="dfdc/real/a.jpg", label="real", source="dfdc", width=224, height=224),
            ManifestRow.model_validate(
                {"path": "sdfd/fake/b.jpg", "label": "fake", "licence": "x"}
            ),
        ],
    )
    for src in (root, root / "manifest.jsonl"):
        rows = discover(src)
        assert [r.source for r in rows] == ["dfdc", "shared"]
        assert rows[0].path == str((root / "dfdc/real/a.jpg").resolve())
        assert rows[0].width is None  # per-file facts are measured again by prepare
        assert rows[1].model_extra == {"licence": "x"}


def test_discover_errors(tmp_path, touch):
    with pytest.raises(InputError, match="not found"):
        discover(tmp_path / "nope")
    src = touch(tmp_path / "flat", ["a.jpg", "b.jpg"])
    with pytest.raises(InputError, match="2 media files but no real/fake folders"):
        discover(src)
    with pytest.raises(InputError, match="give a folder"):
        discover(src / "a.jpg")


# --- JPEG quality ----------------------------------------------------------------------------


@pytest.mark.parametrize("quality", [10, 30, 50, 75, 85, 90, 95, 100])
def test_estimate_jpeg_quality_is_exact_for_ijg_tables(small_face, quality):
    buf = io.BytesIO()
    Image.fromarray(small_face).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        assert estimate_jpeg_quality(im.quantization[0]) == quality


def test_estimate_jpeg_quality_bad_table():
    assert estimate_jpeg_quality([1, 2, 3]) is None


# --- prepare ---------------------------------------------------------------------------------


def test_prepare_end_to_end(tmp_path, face_folder, counting):
    out = tmp_path / "prep" / "train.jsonl"
    res = prepare([face_folder], out, crop_size=64, detector=counting)

    assert res.out == out and out.is_file()
    assert res.n_files == 7 and res.n_faces == 4 and res.cached == 0
    assert [Path(p).name for p in res.no_face] == ["noise.png"]
    failed = {Path(p).name: reason for p, reason in res.failed}
    assert set(failed) == {"broken.jpg", "notes.jpg"}
    assert "truncated or corrupt" in failed["broken.jpg"]
    assert "not a supported image" in failed["notes.jpg"]

    skipped = [json.loads(line) for line in skipped_path_for(out).read_text().splitlines()]
    assert res.skipped_path == tmp_path / "prep" / "train.skipped.jsonl"
    assert {Path(s["path"]).name: s["reason"] for s in skipped}["noise.png"] == "no face found"
    assert all(s["label"] in ("real", "fake") and s["source"] == "mydata" for s in skipped)

    rows = read_manifest(out)
    assert [r.model_dump() for r in rows] == [r.model_dump() for r in res.rows]
    by_name = {Path(r.path).name: r for r in rows}
    assert set(by_name) == {"a.jpg", "b.png", "c.jpg", "d.jpg"}
    a, b, c = by_name["a.jpg"], by_name["b.png"], by_name["c.jpg"]
    assert (a.format, a.mode, a.jpeg_quality, a.label) == ("JPEG", "RGB", 80, "real")
    assert (b.format, b.mode, b.jpeg_quality) == ("PNG", "L", None)
    assert (c.format, c.jpeg_quality, c.label, c.source) == ("JPEG", 95, "fake", "mydata")
    for r in rows:
        assert (r.width, r.height, r.face, r.frame) == (192, 192, 0, None)
        assert r.det_score > 0.5 and len(r.box) == 4
        x1, y1, x2, y2 = r.box
        assert 50 < x1 < x2 < 120 and 10 < y1 < y2 < 80  # the astronaut's face at 192 px
        crop_path = resolve(out, r.crop)
        assert not Path(r.crop).is_absolute()  # under the manifest's folder: relative
        assert crop_path.parent.parent == tmp_path / "prep" / ".facetrust-cache" / "crops"
        with Image.open(crop_path) as im:
            assert (im.format, im.size, im.mode) == ("PNG", (64, 64), "RGB")
        lm = np.load(resolve(out, r.landmarks))
        assert lm.shape == (468, 2) and lm.dtype == np.float16
        # the face fills the middle of the crop: a box with a 20 % margin each side
        assert lm[:, 0].min() > 0 and lm[:, 0].max() < 64 and lm[:, 1].min() > 0
        assert abs(float(lm[:, 0].mean()) - 32) < 8
    # the source file paths lie outside the manifest's folder: absolute
    assert Path(a.path).is_absolute()
    assert counting.calls == 4 + 1  # four faces and the noise image; bad files never decoded


def test_prepare_is_incremental(tmp_path, face_folder, counting, small_face, save_image):
    out = tmp_path / "m.jsonl"
    first = prepare([face_folder], out, crop_size=64, detector=counting)
    calls = counting.calls

    again = prepare([face_folder], out, crop_size=64, detector=counting)
    assert counting.calls == calls  # nothing decoded again, no-face image included
    assert again.cached == 5  # four faces and the no-face file; bad files are tried again
    assert [r.model_dump() for r in again.rows] == [r.model_dump() for r in first.rows]
    assert len(again.failed) == 2

    # a changed file is redone; a different crop size is a different cache entry
    target = face_folder / "real" / "a.jpg"
    save_image(target, small_face, quality=60)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    third = prepare([face_folder], out, crop_size=64, detector=counting)
    assert counting.calls == calls + 1 and third.cached == 4
    assert {Path(r.path).name: r.jpeg_quality for r in third.rows}["a.jpg"] == 60
    prepare([face_folder], out, crop_size=48, detector=counting)
    assert counting.calls == calls + 1 + 5


def test_prepare_redoes_a_missing_crop(tmp_path, face_folder, counting):
    out = tmp_path / "m.jsonl"
    res = prepare([face_folder], out, crop_size=64, detector=counting)
    calls = counting.calls
    resolve(out, res.rows[0].crop).unlink()
    again = prepare([face_folder], out, crop_size=64, detector=counting)
    assert counting.calls == calls + 1 and again.n_faces == 4
    assert resolve(out, again.rows[0].crop).is_file()


def test_prepare_video_frames(tmp_path, face_video, noface_video, counting):
    src = tmp_path / "vids"
    (src / "fake").mkdir(parents=True)
    (src / "real").mkdir()
    shutil.copy(face_video, src / "fake" / "face.mp4")
    shutil.copy(noface_video, src / "real" / "noface.avi")
    out = tmp_path / "v.jsonl"
    res = prepare([src], out, crop_size=48, frames_per_video=3, detector=counting)
    assert res.n_files == 2 and res.n_faces == 3
    assert [Path(p).name for p in res.no_face] == ["noface.avi"]
    frames = [r.frame for r in res.rows]
    assert frames == sorted(set(frames)) and frames[0] == 0 and frames[-1] == 19
    assert {r.video_id for r in res.rows} == {"fake/face"}
    assert {(r.width, r.height, r.format, r.mode) for r in res.rows} == {(320, 240, "MOV", None)}
    xs = [r.box[0] for r in res.rows]
    assert xs == sorted(xs)  # the face drifts to the right
    assert len({r.crop for r in res.rows}) == 3


def test_prepare_keeps_largest_faces(tmp_path, group_photo, save_image, counting):
    image, places = group_photo
    save_image(tmp_path / "g" / "fake" / "group.png", image, "PNG")
    out = tmp_path / "g.jsonl"
    res = prepare([tmp_path / "g"], out, crop_size=48, max_faces=2, detector=counting)
    assert [r.face for r in res.rows] == [0, 1]
    areas = [(r.box[2] - r.box[0]) * (r.box[3] - r.box[1]) for r in res.rows]
    assert areas[0] >= areas[1]
    # the two largest pasted heads are 360 and 300 px wide
    assert sorted(round(r.box[0], -2) for r in res.rows) == [100, 900]


def test_prepare_csv_with_missing_and_clashing_files(tmp_path, small_face, save_image, counting):
    save_image(tmp_path / "imgs" / "a.jpg", small_face)
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\nimgs/a.jpg,real\nimgs/gone.jpg,fake\n")
    clash = tmp_path / "clash.csv"
    clash.write_text("path,label\nimgs/a.jpg,fake\n")
    res = prepare([listing], tmp_path / "out" / "m.jsonl", detector=counting, crop_size=32)
    assert res.n_faces == 1 and res.rows[0].source == tmp_path.name
    assert [(Path(p).name, "gone" in r) for p, r in res.failed] == [("gone.jpg", True)]
    res2 = prepare([listing, clash], tmp_path / "out" / "m.jsonl", detector=counting, crop_size=32)
    reasons = dict(res2.failed)
    assert reasons[str(tmp_path / "imgs" / "a.jpg")] == "listed as both real and fake"
    assert res2.n_faces == 0 and res2.n_files == 2


def test_prepare_skipped_file_removed_when_clean(tmp_path, small_face, save_image, counting):
    save_image(tmp_path / "d" / "real" / "a.jpg", small_face)
    out = tmp_path / "m.jsonl"
    stale = skipped_path_for(out)
    stale.write_text("{}\n")
    res = prepare(tmp_path / "d", out, detector=counting, crop_size=32, progress=True)
    assert res.skipped_path is None and not stale.exists()
    assert "1 files -> 1 faces" in res.summary()


def test_prepare_argument_errors(tmp_path, face_folder):
    with pytest.raises(InputError, match="crop_size"):
        prepare([face_folder], tmp_path / "m.jsonl", crop_size=4)
    with pytest.raises(InputError, match="margin"):
        prepare([face_folder], tmp_path / "m.jsonl", margin=3.0)
    with pytest.raises(InputError, match="no sources"):
        prepare([], tmp_path / "m.jsonl")
    write_manifest(tmp_path / "manifest.jsonl", [ManifestRow(path="a.jpg", label="real")])
    with pytest.raises(InputError, match="source manifest itself"):
        prepare([tmp_path], tmp_path / "manifest.jsonl")
    with pytest.raises(InputError, match="picklable"):
        prepare([face_folder], tmp_path / "m.jsonl", workers=2, detector=lambda im: [])


def test_prepare_with_workers_matches_in_process(tmp_path, face_folder, face_detector):
    serial = prepare(
        [face_folder], tmp_path / "a" / "m.jsonl", crop_size=48, detector=face_detector
    )
    parallel = prepare([face_folder], tmp_path / "b" / "m.jsonl", crop_size=48, workers=2)
    assert parallel.cached == 0 and parallel.n_faces == serial.n_faces == 4

    def key(res):
        return [(r.path, r.box, r.det_score, r.width, r.format, r.jpeg_quality) for r in res.rows]

    assert key(parallel) == key(serial)
    assert sorted(parallel.failed) == sorted(serial.failed)
    for r1, r2 in zip(serial.rows, parallel.rows, strict=True):
        c1 = np.asarray(Image.open(resolve(serial.out, r1.crop)))
        c2 = np.asarray(Image.open(resolve(parallel.out, r2.crop)))
        assert np.array_equal(c1, c2)
