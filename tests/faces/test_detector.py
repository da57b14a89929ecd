import numpy as np
import pytest

from facetrust.faces import Face, FaceAligner, FaceDetector, box_iou
from facetrust.faces.detector import plan_windows
from facetrust.faces.types import weighted_nms


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def test_single_face_with_landmarks(detector, astronaut):
    faces = detector(astronaut)
    assert len(faces) == 1
    f = faces[0]
    x1, y1, x2, y2 = f.box
    # the astronaut's face is around x 175-275, y 70-170
    assert 150 < x1 < 200 and 240 < x2 < 300 and 50 < y1 < 100 and 150 < y2 < 200
    assert f.score > 0.7
    assert f.keypoints.shape == (6, 2)
    assert f.landmarks.shape == (468, 3)
    # landmarks lie on the face
    assert np.all((f.landmarks[:, 0] > x1 - 30) & (f.landmarks[:, 0] < x2 + 30))
    # the eyes: right eye (image left) is left of the left eye
    assert f.keypoints[0, 0] < f.keypoints[1, 0]


def test_multi_face_group(detector, group_photo):
    image, places = group_photo
    faces = detector(image)
    assert len(faces) == len(places)
    iou = box_iou(np.array([f.box for f in faces]), np.array(places))
    # each pasted face is matched by one detection
    assert np.all(iou.max(axis=0) > 0.3)


def test_tight_crop_face_fills_frame(detector, face_crop):
    faces = detector(face_crop)
    assert len(faces) == 1


def test_small_face_in_large_image(detector, astronaut):
    """A ~40 px face in a 12 MP photo is found by the tiled pass."""
    from PIL import Image

    canvas = np.full((3000, 4000, 3), 200, np.uint8)
    head = np.asarray(Image.fromarray(astronaut[0:260, 100:360]).resize((104, 104)))
    canvas[2000:2104, 3100:3204] = head  # face at about x 3130-3170
    faces = detector(canvas)
    assert len(faces) == 1
    assert 3115 < faces[0].box[0] < 3145


def test_no_face(detector):
    rng = np.random.default_rng(1)
    assert detector(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)) == []
    assert detector(np.zeros((50, 50, 3), np.uint8)) == []


def test_rejects_wrong_array(detector):
    with pytest.raises(ValueError):
        detector(np.zeros((10, 10), np.uint8))


def test_plan_windows_covers_image():
    wins = plan_windows(4000, 3000, min_face=20)
    assert wins[0][2] == 4000  # whole image first
    sides = sorted({round(w[2]) for w in wins})
    assert min(sides) >= 20 * 192 / 12
    # every pixel of the image is inside some window of the finest level
    finest = [w for w in wins if round(w[2]) == sides[0]]
    xs = np.zeros(4000, bool)
    for x0, _, s in finest:
        xs[int(max(x0, 0)) : int(min(x0 + s, 4000))] = True
    assert xs.all()


def test_weighted_nms_merges_overlaps():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7])
    pts = np.zeros((3, 6, 2))
    out = weighted_nms(boxes, scores, pts, 0.3)
    assert len(out) == 2
    assert out[0][1] == pytest.approx(0.9)
    assert 0 < out[0][0][0] < 1  # blended


def test_aligner_levels_eyes_and_keeps_size(detector, astronaut):
    face = detector(astronaut)[0]
    crop = FaceAligner(size=96, margin=0.2)(astronaut, face)
    assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
    # a rotated copy gives a crop where the face is upright again: eye line level
    import cv2

    m = cv2.getRotationMatrix2D((256, 256), 20, 1.0)
    rotated = cv2.warpAffine(astronaut, m, (512, 512))
    rf = detector(rotated)[0]
    assert abs(np.degrees(rf.eye_angle())) > 10
    aligned = FaceAligner(size=128)(rotated, rf)
    again = detector(np.ascontiguousarray(aligned))
    assert again and abs(np.degrees(again[0].eye_angle())) < 6


def test_face_to_dict():
    f = Face(box=(1.0, 2.0, 3.0, 4.0), score=0.5, keypoints=np.zeros((6, 2)))
    d = f.to_dict()
    assert d["box"] == [1.0, 2.0, 3.0, 4.0] and d["det_score"] == 0.5


def test_building_the_face_models_prints_nothing_on_stderr():
    """LiteRT's C++ side announces its XNNPACK delegate on fd 2 (once per process, so this
    runs in a fresh one); users should not see it, and fd 2 works again afterwards."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from facetrust.faces._tflite import TfliteModel\n"
        "TfliteModel('face_detection_short_range.tflite', threads=1)\n"
        "print('still here', file=sys.stderr)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "XNNPACK" not in res.stderr and "still here" in res.stderr


def test_window_plan_is_capped_whatever_the_shape():
    """A 1 x 4,000,000 image planned 21,844 windows (198 s of detection) before the cap."""
    import time

    t0 = time.perf_counter()
    for w, h in [(1, 4_000_000), (4_000_000, 1), (1, 49_000_000), (7000, 7000), (16383, 2900)]:
        plan = plan_windows(w, h, 20)
        assert 1 <= len(plan) <= 256, (w, h, len(plan))
    assert time.perf_counter() - t0 < 0.5
    # ordinary photos are not affected: 12 MP keeps every level
    assert len(plan_windows(4000, 3000, 20)) == 115
    assert len(plan_windows(4000, 3000, 20, max_windows=10**9)) == 115
    # a 50 MP image loses only its finest level
    full = plan_windows(7000, 7000, 20, max_windows=10**9)
    capped = plan_windows(7000, 7000, 20)
    assert len(full) == 597 and capped == full[: len(capped)]
    assert min(side for _, _, side in capped) == 2 * min(side for _, _, side in full)


def test_window_cap_and_deadline_follow_the_budget(detector):
    from facetrust.media.budget import DeadlineExceeded, WorkBudget, use_budget

    with use_budget(WorkBudget(max_windows=5)):
        assert len(plan_windows(4000, 3000, 20)) == 1  # level 1 would need 6
    thin = np.full((2, 50_000, 3), 128, np.uint8)
    import time

    t0 = time.perf_counter()
    assert detector(thin) == []
    assert time.perf_counter() - t0 < 5.0
    with use_budget(WorkBudget().with_timeout(-1)), pytest.raises(DeadlineExceeded):
        detector(np.zeros((3000, 4000, 3), np.uint8))
