"""The ``facetrust`` command line: a thin Typer adapter over the library."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from facetrust.errors import FacetrustError, InputError

app = typer.Typer(
    name="facetrust",
    help="Find deepfaked faces in images and video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        from facetrust import __version__

        typer.echo(f"facetrust {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """facetrust: deepfake detection with calibrated probabilities."""


def expand_inputs(paths: list[Path]) -> Iterator[Path]:
    """Files named directly (any extension: content decides) and media files under folders."""
    from facetrust.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    for p in paths:
        if p.is_dir():
            yield from sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes
            )
        else:
            yield p


def _table_row(d: dict) -> tuple[str, ...]:
    if "error" in d:
        return (d["path"], "-", "error", "-", "-", d["error"])
    p = d["fake_probability"]
    faces = str(len(d["faces"]))
    note = f"{d['frames_analyzed']} frames" if d["kind"] == "video" else ""
    return (
        d["path"],
        d["kind"],
        d["label"],
        "-" if p is None else f"{p:.3f}",
        faces,
        note or f"{d['processing_time_s']:.2f}s",
    )


@app.command()
def detect(
    paths: Annotated[list[Path], typer.Argument(help="Images, videos or folders (recursive).")],
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON object per file per line on stdout.")
    ] = False,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Checkpoint path or shipped model name.")
    ] = None,
    frames: Annotated[
        int | None, typer.Option("--frames", min=1, max=10_000, help="Frames sampled per video.")
    ] = None,
    fps: Annotated[
        float | None, typer.Option("--fps", min=0.001, help="Sample video frames at this rate.")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", min=0.0, max=1.0, help="Decision threshold.")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")
    ] = None,
) -> None:
    """Score every face in images and videos; exit 1 if any file failed."""
    from facetrust.detect import Detector

    missing = [str(p) for p in paths if not p.exists()]
    try:
        detector = Detector(model, device=device, threshold=threshold, frames=frames, fps=fps)
    except FacetrustError as exc:
        raise _fail(str(exc)) from None
    files = list(expand_inputs([p for p in paths if p.exists()]))
    if not files and not missing:
        raise _fail("no image or video files found in the given paths")

    rows: list[dict] = []
    failed = False

    def emit(d: dict) -> None:
        nonlocal failed
        failed = failed or "error" in d
        if json_out:
            sys.stdout.write(json.dumps(d) + "\n")
            sys.stdout.flush()
        else:
            rows.append(d)

    for m in missing:
        emit({"path": m, "error": "file not found"})
    for f in _progress(files):
        try:
            emit(detector(f).to_dict())
        except FacetrustError as exc:
            emit({"path": str(f), "error": str(exc)})
        except Exception as exc:  # one broken file must not stop a batch; it is reported
            emit({"path": str(f), "error": f"internal error: {type(exc).__name__}: {exc}"})

    if not json_out:
        _print_table(rows, detector.model_name, detector.threshold)
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _progress(files: list[Path]) -> Iterator[Path]:
    if len(files) < 5 or not sys.stderr.isatty():
        yield from files
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("detecting", total=len(files))
        for f in files:
            yield f
            bar.advance(task)


def _print_table(rows: list[dict], model: str, threshold: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"model {model}, threshold {threshold:.3f}", title_justify="left")
    for col in ("file", "kind", "label", "p(fake)", "faces", "time / note"):
        table.add_column(col)
    for d in rows:
        table.add_row(*_table_row(d))
    Console(width=max(100, Console().width)).print(table)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except InputError as exc:  # pragma: no cover - commands catch their own
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
