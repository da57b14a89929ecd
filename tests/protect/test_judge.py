import io

import numpy as np
import pytest
from PIL import Image

from facetrust.errors import InputError
from facetrust.protect.judge import DlibJudge


@pytest.fixture(scope="module")
def judge():
    return DlibJudge()


def test_same_photo_matches_and_survives_jpeg(judge, astronaut):
    r = judge(astronaut, astronaut)
    assert r.match is True and r.distance == pytest.approx(0.0, abs=1e-6)
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="JPEG", quality=60)
    r = judge(astronaut, np.asarray(Image.open(buf)))
    assert r.match is True and r.distance < 0.2
    assert r.original_detected and r.protected_detected
    assert set(r.to_dict()) >= {"match", "distance", "threshold", "message"}


def test_no_face_in_the_protected_image_uses_the_original_box(judge, astronaut):
    blank = np.full_like(astronaut, 128)
    r = judge(astronaut, blank)
    assert r.protected_detected is False
    assert r.match is False and r.distance > 0.6
    assert "no face" in r.message


def test_no_face_in_the_original_cannot_decide(judge, noise_image):
    r = judge(noise_image, noise_image)
    assert r.match is None and r.distance is None
    assert "cannot decide" in r.message


def test_tight_crop_found_by_the_padded_pass(judge, face_crop):
    assert judge.locate(face_crop) is not None


def test_bad_input(judge):
    with pytest.raises(InputError):
        judge(np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError):
        DlibJudge(threshold=0)
