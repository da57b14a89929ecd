"""Long detections show progress on stderr through facetrust.progress: a video's frames in
detect, each face's heatmap in explain. Off unless asked (the library default), so JSON and
pipes stay clean; the CLI asks for it (shown on a terminal only)."""

import pytest

import facetrust.progress as progress_mod
from facetrust.detect import Detector
from facetrust.detect.explain import Explainer


class Recorder:
    """Stands in for ProgressBar; records what a bar would show."""

    made: list["Recorder"] = []

    def __init__(self, total, title, *, enabled=None):
        self.total, self.title, self.enabled, self.steps = total, title, enabled, 0
        Recorder.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def advance(self, n=1, **stats):
        self.steps += n


@pytest.fixture
def recorder(monkeypatch):
    Recorder.made = []
    monkeypatch.setattr("facetrust.detect.pipeline.ProgressBar", Recorder)
    monkeypatch.setattr(progress_mod, "ProgressBar", Recorder)
    return Recorder


def test_video_frames_advance_the_bar_once_per_frame(tiny_checkpoint, face_video, recorder):
    det = Detector(tiny_checkpoint, device="cpu", frames=6, progress=True)
    r = det(face_video)
    (bar,) = [b for b in recorder.made if b.title == "video frames"]
    assert bar.enabled is True
    assert r.frames_analyzed == 6
    assert bar.total == bar.steps == 6 + 1  # each frame, then the scoring of its faces


def test_library_default_shows_nothing(tiny_checkpoint, face_video, recorder, capsys):
    Detector(tiny_checkpoint, device="cpu", frames=4)(face_video)
    assert all(b.enabled is False for b in recorder.made)


def test_explain_advances_per_face(tiny_checkpoint, astronaut, recorder):
    det = Detector(tiny_checkpoint, device="cpu")
    ex = Explainer(det, progress=None)(astronaut)
    (bar,) = [b for b in recorder.made if b.title.startswith("explain")]
    assert bar.enabled is None  # the CLI's choice: on a terminal only
    assert bar.total == bar.steps == len(ex.faces) >= 1


def test_real_bar_writes_nothing_to_stdout_when_not_a_terminal(tiny_checkpoint, face_video, capsys):
    Detector(tiny_checkpoint, device="cpu", frames=4, progress=None)(face_video)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""  # stderr is not a terminal under pytest
