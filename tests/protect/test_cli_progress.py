"""The CLI's progress display carries the attack's steps for each photo."""

from pathlib import Path

from facetrust.cli_protect import ProgressDisplay
from facetrust.protect import Protector


class _Bar:
    """Records what the display asks a progress bar to show."""

    seen: list[tuple[float, str | None]] = []

    def __init__(self, total, title, enabled=None) -> None:
        self.seen.append((0.0, title))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def set(self, completed: float, description: str | None = None) -> None:
        self.seen.append((completed, description))


def test_progress_display_shows_the_steps(monkeypatch, face_detector, small_portrait):
    monkeypatch.setattr("facetrust.progress.ProgressBar", _Bar)
    _Bar.seen = []
    p = Protector(
        encoders=("tiny",), steps=3, precision="float32", device="cpu", detector=face_detector
    )
    display = ProgressDisplay(2, enabled=True)
    with display.photo(Path("a.jpg")) as progress:
        p(small_portrait, progress=progress)
    texts = [t for _, t in _Bar.seen]
    assert "[1/2] a.jpg: cloaking: step 3 of 3" in texts, texts
    assert _Bar.seen[-1][0] == 1.0  # ends full
    with ProgressDisplay(1, enabled=False).photo(Path("b.jpg")) as none:
        assert none is None  # not a terminal: no bar
