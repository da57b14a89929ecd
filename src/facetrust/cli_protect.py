"""Helpers of the ``facetrust protect`` command: the CLI side (files in, paths out, the plain
summary and the progress display), kept beside ``cli.py``; the protection itself is
:mod:`facetrust.protect`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["ProgressDisplay", "collect_images", "output_paths", "summary_text"]


def collect_images(paths: list[Path]) -> list[Path]:
    """Files named directly (content decides later) and image files under folders (recursive,
    hidden files skipped: :func:`facetrust.media.walk.expand_inputs`)."""
    from facetrust.media import IMAGE_SUFFIXES
    from facetrust.media.walk import expand_inputs

    return [p for p in expand_inputs(paths, IMAGE_SUFFIXES) if p.exists()]


def output_paths(files: list[Path], out: Path, many: bool, ext: str) -> list[Path]:
    """Output path per input: ``out`` itself for one file, else ``out/<stem>.<ext>`` (unique)."""
    if not many:
        return [out] * len(files)
    taken: set[str] = set()
    targets = []
    for f in files:
        name, n = f"{f.stem}.{ext}", 1
        while name in taken:
            name, n = f"{f.stem}-{n}.{ext}", n + 1
        taken.add(name)
        targets.append(out / name)
    return targets


def summary_text(d: dict) -> str:
    """What a person needs to know about one protected photo, from its JSON report: where it
    went, how visible the change is (face-region SSIM/PSNR) and what dlib says after JPEG 75."""
    head = f"{d['path']} -> {d['output']}"
    if d.get("regions") == "none":
        return f"{head}: {d['message']}"
    lines = [f"{head}: {d['message']} ({d['seconds']:.1f} s)"]
    if d.get("face_psnr") is not None:
        what = "whole image" if d.get("regions") == "whole_image" else "face"
        lines.append(
            f"  visibility: {d['visibility']} ({what} SSIM {d['face_ssim']:.3f}, "
            f"PSNR {d['face_psnr']:.1f} dB; budget {d['budget_ssim']:g} / {d['budget_psnr']:g} dB, "
            f"preset {d['strength']})"
        )
    judge = d.get("judge")
    if judge:
        dist = judge["jpeg75"]["distance"]
        number = "no decision" if dist is None else f"distance {dist:.2f}; same person below 0.6"
        lines.append(f"  protection against dlib after JPEG 75: {judge['protection']} ({number})")
    elif d.get("judge_error"):
        lines.append(f"  protection against dlib: not measured ({d['judge_error']})")
    return "\n".join(lines)


class ProgressDisplay:
    """A progress bar on stderr with the attack's steps (only when ``enabled``, i.e. a
    terminal); ``photo(path)`` is a context giving the ``progress(fraction, message)`` callback
    for one photo."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.done = 0

    @contextlib.contextmanager
    def photo(self, path: Path) -> Iterator[Callable[[float, str], None] | None]:
        if not self.enabled:
            yield None
            return
        from facetrust.progress import ProgressBar

        self.done += 1
        label = f"[{self.done}/{self.total}] {path.name}" if self.total > 1 else path.name
        with ProgressBar(1, label, enabled=True) as bar:

            def progress(fraction: float, message: str) -> None:
                bar.set(fraction, f"{label}: {message}")

            yield progress
