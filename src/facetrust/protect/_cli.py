"""Small helpers of the ``facetrust protect`` command (kept out of the Typer adapter)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["collect_images", "output_paths", "summary_line"]


def collect_images(paths: list[Path]) -> list[Path]:
    """Files named directly (content decides later) and image files under folders (recursive)."""
    from facetrust.media import IMAGE_SUFFIXES

    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
        elif p.exists():
            files.append(p)
    return files


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


def summary_line(d: dict) -> str:
    """One human-readable line for a protect report."""
    parts = [f"{d['path']} -> {d['output']}: {d['message']}"]
    if d.get("psnr") is not None:
        parts.append(f"PSNR {d['psnr']:.1f} dB, SSIM {d['ssim']:.3f}, L-inf {d['linf']}/255")
    if d.get("judge"):
        parts.append(d["judge"]["message"])
    parts.append(f"{d['seconds']:.1f} s")
    return "; ".join(parts)
