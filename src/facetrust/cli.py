"""The ``facetrust`` command line: a thin Typer adapter over the library."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from facetrust.errors import FacetrustError, InputError, one_line
from facetrust.media.walk import expand_inputs
from facetrust.progress import track


def _untyped_flags(cmd: Any, ctx: Any) -> None:
    # typer's rich help prints <bool> beside every flag (--help, --json, --version); a flag
    # takes no value, so its type column stays empty
    for p in cmd.get_params(ctx):
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""


class _Command(TyperCommand):
    def format_help(self, ctx: Any, formatter: Any) -> None:
        _untyped_flags(self, ctx)
        super().format_help(ctx, formatter)


class _Group(TyperGroup):
    def format_help(self, ctx: Any, formatter: Any) -> None:
        _untyped_flags(self, ctx)
        super().format_help(ctx, formatter)


app = typer.Typer(
    cls=_Group,
    name="facetrust",
    help="Find deepfaked faces in images and video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.echo(f"error: {one_line(message)}", err=True)
    return typer.Exit(code)


_STATE: dict[str, Any] = {"threads": None}

#: ``--runtime`` of detect, serve and scan: where the networks run (facetrust.detect.scoring)
RuntimeOption = Annotated[
    str | None,
    typer.Option(
        "--runtime",
        help="torch, onnx (ONNX Runtime on the CPU; the model is exported to the cache on first "
        "use) or auto (onnx when the model's export is cached, else torch). "
        "(default: auto, or FACETRUST_RUNTIME)",
    ),
]


#: ``--model`` of the commands that score faces: resolved by facetrust.models.zoo.resolve_model,
#: with FACETRUST_MODEL (facetrust.config.Settings) when not given
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Checkpoint path or shipped model name (`facetrust models`). "
        "(default: facetrust-default, or FACETRUST_MODEL)",
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device", help="auto, cpu, cuda, cuda:N or mps. (default: auto, or FACETRUST_DEVICE)"
    ),
]
FramesOption = Annotated[
    int | None,
    typer.Option(
        "--frames",
        min=1,
        max=10_000,
        help="Frames sampled evenly per video. (default: 16, or FACETRUST_VIDEO_FRAMES)",
    ),
]


def command(*args: Any, light: bool = False, **kwargs: Any) -> Callable[[Callable], Callable]:
    """``app.command`` with the one error handler of the CLI: a ``FacetrustError`` (bad input,
    no model, a missing extra) becomes ``error: <one line>`` on stderr and exit status 2.

    Before a command that computes (not ``light``), the thread count is set once, process-wide:
    ``--threads`` / ``FACETRUST_THREADS``, else the cores this process may use.
    """

    def register(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*a: Any, **k: Any) -> Any:
            try:
                if not light:
                    from facetrust.config import apply_threads, default_threads

                    n = _STATE["threads"] or default_threads()
                    os.environ["FACETRUST_THREADS"] = str(n)  # the face models read Settings
                    apply_threads(n)
                return fn(*a, **k)
            except FacetrustError as exc:
                raise _fail(str(exc)) from None

        return app.command(*args, cls=_Command, **kwargs)(run)

    return register


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
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            envvar="FACETRUST_THREADS",
            help="CPU threads for torch, OpenCV and the face models (default: the cores this "
            "process may use). Set once here for every command: facetrust --threads 2 detect ...",
        ),
    ] = None,
) -> None:
    """facetrust: deepfake detection with calibrated probabilities."""
    _STATE["threads"] = threads


def _run_batch(
    files: Iterable[Path],
    missing: list[str],
    work: Callable[[Path], dict],
    json_out: bool,
    show: Callable[[dict], None],
) -> bool:
    """Run ``work`` on each file; a file that fails becomes ``{"path", "error"}`` and the batch
    goes on. With ``json_out`` each result is one JSON line on stdout as soon as it is ready,
    else it goes to ``show``. Returns True when any file failed."""
    failed = False

    def emit(d: dict) -> None:
        nonlocal failed
        failed = failed or "error" in d
        if json_out:
            sys.stdout.write(json.dumps(d) + "\n")
            sys.stdout.flush()
        else:
            show(d)

    for m in missing:
        emit({"path": m, "error": "file not found"})
    for f in files:
        try:
            emit(work(f))
        except FacetrustError as exc:
            emit({"path": str(f), "error": str(exc)})
        except Exception as exc:  # one broken file must not stop a batch; it is reported
            emit({"path": str(f), "error": f"internal error: {type(exc).__name__}: {exc}"})
    return failed


_LABEL_STYLE = {
    "fake": "bold red",
    "uncertain": "bold yellow",
    "real": "bold green",
    "no_face": "dim",
    "error": "bold red",
}


def _table_row(d: dict) -> tuple[str, ...]:
    if "error" in d:  # the message goes where text wraps
        return (d["path"], "-", "error", "-", "-", d["error"], "-")
    p = d["fake_probability"]
    faces = str(len(d["faces"]))
    note = f"{d['frames_analyzed']} frames" if d["kind"] == "video" else ""
    return (
        d["path"],
        d["kind"],
        d["label"],
        "-" if p is None else f"{p:.3f}",
        faces,
        _provenance_cell(d),
        note or f"{d['processing_time_s']:.2f}s",
    )


CSV_COLUMNS = (
    "path",
    "kind",
    "faces",
    "fake_probability",
    "label",
    "threshold",
    "model",
    "model_sha256",
    "provenance",
    "error",
)


def _csv_row(d: dict) -> list[str]:
    """One CSV row per file (``CSV_COLUMNS``); a failed file has only path and error."""
    if "error" in d:
        return [d["path"], "", "", "", "error", "", "", "", "", d["error"]]
    p = d["fake_probability"]
    return [
        d["path"] or "",
        d["kind"],
        str(len(d["faces"])),
        "" if p is None else f"{p:.4f}",
        d["label"],
        f"{d['threshold']:.4f}",
        d["model"],
        d.get("model_sha256") or "",
        _provenance_cell(d),
        "",
    ]


class _StreamTable:
    """The detect table, printed a row at a time as files finish: a header first, then one
    line per file with fixed column widths (a file name is never cut; the provenance column
    wraps), then a footer with the model's limits."""

    COLUMNS = ("file", "kind", "label", "p(fake)", "faces", "provenance", "time / note")

    def __init__(self, paths: list[str]) -> None:
        from rich.console import Console

        self.file_w = max([len(p) for p in paths] + [4])
        self.console = Console(width=max(140, self.file_w + 80, Console().width), highlight=False)
        fixed = (5, 9, 7, 5, 11)
        # one space between columns; the provenance column takes the rest of the line
        rest = self.console.width - self.file_w - sum(fixed) - len(self.COLUMNS) + 1
        self.widths = (self.file_w, *fixed[:4], max(20, rest), fixed[4])
        self.counts: dict[str, int] = {}

    def _print(self, *items: Any) -> None:
        # rendered, then written through sys.stdout: while the progress bar is live on the
        # terminal, rich's stdout proxy puts each row above the bar instead of under it
        with self.console.capture() as cap:
            self.console.print(*items)
        sys.stdout.write(cap.get())
        sys.stdout.flush()

    def _table(self, header: bool):
        from rich.table import Table

        t = Table(show_header=header, box=None, pad_edge=False, padding=(0, 1, 0, 0))
        for col, w in zip(self.COLUMNS, self.widths, strict=True):
            t.add_column(
                col,
                width=w,
                min_width=w,
                no_wrap=col != "provenance",
                overflow="fold" if col == "provenance" else "ellipsis",
            )
        return t

    def header(self, model: str, sha: str | None, threshold: float, band) -> None:
        extra = f", uncertain {band[0]:.3f}-{band[1]:.3f}" if band[1] > band[0] else ""
        sha_text = f" (sha256 {sha})" if sha else ""
        self._print(f"model {model}{sha_text}, threshold {threshold:.3f}{extra}")
        self._print(self._table(True))
        self._print("-" * (sum(self.widths) + len(self.widths) - 1))

    def row(self, d: dict) -> None:
        from rich.markup import escape

        cells = [escape(c) for c in _table_row(d)]
        label = cells[2]
        self.counts[label] = self.counts.get(label, 0) + 1
        cells[2] = f"[{_LABEL_STYLE.get(label, '')}]{label}[/]" if label in _LABEL_STYLE else label
        t = self._table(False)
        t.add_row(*cells)
        self._print(t)

    def footer(self, limits: str | None) -> None:
        from rich.markup import escape

        n = sum(self.counts.values())
        parts = ", ".join(f"{v} {k}" for k, v in sorted(self.counts.items()))
        self._print(f"{n} file{'s' if n != 1 else ''}: {parts}")
        if limits:
            self._print(f"[yellow]limits:[/] {escape(limits)}")


def _provenance_cell(d: dict) -> str:
    """The provenance column: the verdict when evidence changes it, else what was found."""
    prov, verdict = d.get("provenance"), d.get("verdict") or {}
    if prov is None:
        return "-"
    found = [f"{e['kind']}: {e['claim']} [{e['strength']}]" for e in prov.get("evidence", [])]
    if verdict.get("verdict") in ("ai_declared", "ai_indicated"):
        return f"{verdict['verdict']}: " + "; ".join(found)
    return "; ".join(found) or "none found"


@command()
def detect(
    paths: Annotated[list[Path], typer.Argument(help="Images, videos or folders (recursive).")],
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON object per file per line on stdout.")
    ] = False,
    csv_out: Annotated[
        bool,
        typer.Option(
            "--csv",
            help="One CSV row per file on stdout (path, kind, faces, fake_probability, label, "
            "threshold, model, model_sha256, provenance, error).",
        ),
    ] = False,
    model: ModelOption = None,
    frames: FramesOption = None,
    fps: Annotated[
        float | None,
        typer.Option(
            "--fps",
            min=0.001,
            help="Sample video frames at this rate instead. (default: off, --frames is used)",
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            min=0.0,
            max=1.0,
            help="Decision threshold on the calibrated probability. (default: the model's)",
        ),
    ] = None,
    uncertain_band: Annotated[
        float | None,
        typer.Option(
            "--uncertain-band",
            min=0.0,
            max=0.5,
            help="Probabilities this close to the threshold are labelled uncertain; 0 turns "
            "it off. (default: the model's, else 0.10)",
        ),
    ] = None,
    device: DeviceOption = None,
    runtime: RuntimeOption = None,
) -> None:
    """Score every face in images and videos; rows print as files finish; exit 1 if any file
    failed. Labels: fake, real, uncertain (near the threshold) or no_face."""
    from facetrust.detect import Detector

    if json_out and csv_out:
        raise _fail("--json and --csv cannot be used together")
    missing = [str(p) for p in paths if not p.exists()]
    detector = Detector(
        model,
        device=device,
        threshold=threshold,
        frames=frames,
        fps=fps,
        uncertain_band=uncertain_band,
        runtime=runtime,
        # a few files: an ONNX session that opens sooner beats one that scores faster
        quick_start=len(paths) <= 4 and all(p.is_file() for p in paths),
    )
    files = list(expand_inputs([p for p in paths if p.exists()]))
    if not files and not missing:
        raise _fail("no image or video files found in the given paths")
    detector.progress = None if len(files) == 1 else False  # a video's frames, on a terminal

    table: _StreamTable | None = None
    if csv_out:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)

        def show(d: dict) -> None:
            writer.writerow(_csv_row(d))
            sys.stdout.flush()
    else:
        table = _StreamTable(missing + [str(f) for f in files])
        if not json_out:
            table.header(
                detector.model_name, detector.model_sha256, detector.threshold, detector.uncertain
            )
        show = table.row

    failed = _run_batch(
        track(files, "detecting"), missing, lambda f: detector(f).as_json(), json_out, show
    )
    if table is not None and not json_out:
        table.footer(detector.limits)
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


@command()
def threshold(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Known-real images and videos, or folders of them (recursive)."),
    ],
    fpr: Annotated[
        float,
        typer.Option(
            "--fpr",
            min=0.0001,
            max=0.5,
            help="Share of images like these that may be called fake.",
        ),
    ] = 0.05,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    model: ModelOption = None,
    frames: FramesOption = None,
    device: DeviceOption = None,
    runtime: RuntimeOption = None,
) -> None:
    """Set the decision threshold from your own known-real images: the one that calls at most
    --fpr of them fake, and the rate it should hold on more like them; use it with detect
    --threshold or the API's threshold parameter. Exit 1 if any file failed."""
    from facetrust.detect import Detector
    from facetrust.detect.calibration import threshold_for_reals

    missing = [str(p) for p in paths if not p.exists()]
    files = list(expand_inputs([p for p in paths if p.exists()]))
    if not files:
        raise _fail("no image or video files found in the given paths")
    detector = Detector(model, device=device, frames=frames, runtime=runtime)
    detector.progress = False
    done: list[dict] = []

    def keep(d: dict) -> None:  # detect's batch: a file that fails is reported, the rest go on
        if "error" in d:
            typer.echo(f"error: {d['path']}: {one_line(d['error'])}", err=True)
        done.append(d)

    def work(f: Path) -> dict:  # the probability unrounded, as detect compares it
        return {"path": str(f), "fake_probability": detector(f).fake_probability}

    _run_batch(track(files, "scoring known reals"), missing, work, False, keep)
    probs = [d["fake_probability"] for d in done if d.get("fake_probability") is not None]
    no_face = sum("error" not in d and d["fake_probability"] is None for d in done)
    failed = sum("error" in d for d in done)
    if not probs:
        raise _fail(f"no face in the {len(files)} files: no threshold to set", EXIT_FAILED)
    t = threshold_for_reals(probs, fpr)
    about = {"model": detector.model_name, "model_sha256": detector.model_sha256}
    counts = {"files": len(files) + len(missing), "no_face": no_face, "failed": failed}
    if json_out:
        typer.echo(json.dumps({**t, **about, **counts, "default_threshold": detector.threshold}))
    else:
        low, high = t["expected"]
        typer.echo(
            f"model {detector.model_name}: {t['n']} files with faces scored "
            f"({no_face} without a face, {failed} failed)"
        )
        typer.echo(
            f"threshold {t['threshold']:.6f} calls {100 * t['called_fake']:.1f} % of them fake "
            f"(the model's own {detector.threshold:.4f} calls "
            f"{100 * sum(p >= detector.threshold for p in probs) / len(probs):.1f} %); "
            f"on more files like them expect {100 * low:.1f}-{100 * high:.1f} % "
            f"({100 * t['level']:.0f} %)"
        )
        if t["few"]:
            typer.echo(
                f"warning: only {t['n']} files: the rate it holds is loose; "
                "use a few hundred known reals",
                err=True,
            )
        # the model's uncertain band was set around its own threshold, not this one
        typer.echo(
            f"use it: facetrust detect --threshold {t['threshold']:.6f} --uncertain-band 0 ..."
        )
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


@command()
def adapt(
    reals: Annotated[
        list[Path],
        typer.Option("--reals", help="Known-real images and videos, or folders (repeatable)."),
    ],
    fakes: Annotated[
        list[Path],
        typer.Option("--fakes", help="Confirmed fakes of the new kind, or folders (repeatable)."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Adapted checkpoint to write.")],
    fpr: Annotated[
        float,
        typer.Option(
            "--fpr", min=0.0001, max=0.5, help="Share of reals like yours it may call fake."
        ),
    ] = 0.05,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    model: ModelOption = None,
    frames: FramesOption = None,
    device: DeviceOption = None,
) -> None:
    """Adapt the model to a kind of fake it has not seen, from a few confirmed examples and
    your own known reals: its CLIP expert gets a correction fitted on them alone, its threshold
    calls --fpr of your reals fake, both judged by cross-validation. Writes a checkpoint for
    detect --model. Exit 1 if any file failed (the checkpoint is still written)."""
    from facetrust.train.adapt import Adapter

    if out.exists() and not force:
        raise _fail(f"{out} exists; pass --force to replace it")
    if out.suffix != ".safetensors":
        raise _fail(f"--out must end in .safetensors, got {out.name}")
    adapter = Adapter(model, device=device, frames=frames)
    read: dict[str, dict] = {"real": {}, "fake": {}}  # path -> its faces' numbers
    failed = 0

    def keep(d: dict) -> None:
        nonlocal failed
        if "error" in d:
            failed += 1
            typer.echo(f"error: {d['path']}: {one_line(d['error'])}", err=True)

    for kind, paths in (("real", reals), ("fake", fakes)):
        missing = [str(p) for p in paths if not p.exists()]
        files = list(expand_inputs([p for p in paths if p.exists()]))

        def work(f: Path, kind: str = kind) -> dict:
            read[kind][str(f)] = adapter.read(f)
            return {"path": str(f)}

        _run_batch(track(files, f"reading {kind} files"), missing, work, False, keep)
    no_face = {k: sum(not len(v) for v in read[k].values()) for k in read}
    adaptation = adapter.fit(read["real"], read["fake"], fpr)
    adaptation.save(out)
    s = {**adaptation.summary, "out": str(out), "failed": failed, "no_face": no_face}
    if json_out:
        typer.echo(json.dumps(s))
    else:
        low, high = s["expected_reals_called_fake"]
        typer.echo(
            f"{s['real_faces']} real faces from {s['real_files']} files, {s['fake_faces']} fake "
            f"faces from {s['fake_files']} files ({no_face['real'] + no_face['fake']} files "
            f"without a face, {failed} failed)"
        )
        typer.echo(
            f"AUC on your faces: {s['base_model']} {s['auc_before']:.3f}, adapted "
            f"{s['auc_after_cv']:.3f} (cross-validated; C {s['C']:g}"
            + (", no correction helped" if s["C"] == 0 else "")
            + ")"
        )
        typer.echo(
            f"threshold {s['threshold']:.4f}: cross-validated, it calls "
            f"{100 * s['reals_called_fake_cv']:.1f} % of your reals fake (expect "
            f"{100 * low:.1f}-{100 * high:.1f} % on more like them) and catches "
            f"{100 * s['fakes_caught_cv']:.1f} % of your fakes"
        )
        if min(s["real_files"], s["fake_files"]) < 20:
            typer.echo(
                "warning: few files: these figures are loose; check the adapted model on "
                "files it did not see",
                err=True,
            )
        typer.echo(f"wrote {out}; use it: facetrust detect --model {out} ...")
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


@command()
def prepare(
    sources: Annotated[
        list[Path], typer.Argument(help="Folders (real/ fake/ layouts), CSV files or manifests.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Manifest to write (JSONL).")],
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Crop cache folder (default beside -o).")
    ] = None,
    crop_size: Annotated[int, typer.Option("--crop-size", min=32, max=1024)] = 256,
    margin: Annotated[float, typer.Option("--margin", min=0.0, max=2.0)] = 0.2,
    frames: Annotated[int, typer.Option("--frames", min=1, help="Frames per video.")] = 8,
    max_faces: Annotated[int, typer.Option("--max-faces", min=1, help="Faces kept per image.")] = 1,
    source: Annotated[
        str | None,
        typer.Option("--source", help="Source name for rows. (default: from the folder layout)"),
    ] = None,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Print the bias report.")
    ] = True,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Processes.")] = 1,
) -> None:
    """Find faces, cache aligned crops and write a manifest; print a bias report."""
    from facetrust.data.bias import bias_report
    from facetrust.data.prepare import prepare as run_prepare

    missing = [str(p) for p in sources if not p.exists()]
    if missing:
        raise _fail(f"not found: {', '.join(missing)}")
    res = run_prepare(
        sources,
        out,
        cache_dir=cache,
        crop_size=crop_size,
        margin=margin,
        frames_per_video=frames,
        max_faces=max_faces,
        source_name=source,
        progress=sys.stderr.isatty(),
        workers=workers,
    )
    typer.echo(res.summary())
    if report:
        typer.echo(bias_report(res.rows).to_text())


@command()
def train(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="YAML config (see configs/). (default: none, "
            "the overrides and built-in defaults only)",
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key.sub=value overrides, e.g. optim.lr=1e-3")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in output.")] = False,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            help="MLflow URI (turns tracking on). (default: the config's tracking settings)",
        ),
    ] = None,
) -> None:
    """Train a detector; writes best/final checkpoints, config.yaml and a report."""
    from facetrust.train.config import load_config
    from facetrust.train.loop import Trainer

    extra = list(overrides or [])
    if tracking_uri:
        extra += ["tracking.mlflow=true", f"tracking.uri={tracking_uri}"]
    cfg = load_config(config, extra)
    result = Trainer(cfg, progress=True).run(resume=resume)
    typer.echo(f"best checkpoint: {result.best} (epoch {result.best_epoch}/{result.epochs_run})")
    for split, m in result.metrics.items():
        face = m.get("face", {})
        typer.echo(f"{split}: {_auc(face)}, {_ece(face)}")


@command()
def calibrate(
    checkpoint: Annotated[Path, typer.Argument(help="A trained (not fused) checkpoint.")],
    config: Annotated[
        Path, typer.Option("--config", "-c", help="The config it was trained with (splits).")
    ],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key.sub=value overrides, e.g. output=runs/x")
    ] = None,
) -> None:
    """Refit calibration and threshold on the calib split; writes <output>/best.safetensors."""
    from facetrust.train.config import load_config
    from facetrust.train.loop import Trainer

    cfg = load_config(config, list(overrides or []))
    path, metrics = Trainer(cfg, progress=False).recalibrate(checkpoint)
    typer.echo(f"recalibrated checkpoint: {path}")
    for split, m in metrics.items():
        f = m["face"]
        typer.echo(f"{split}: {_auc(f)}, {_ece(f)}, threshold {m['threshold']:.3f}")


@command()
def fuse(
    cnn: Annotated[Path, typer.Option("--cnn", help="The trained CNN checkpoint to fuse.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Fused checkpoint to write.")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="The CNN's training config (its splits). (default: none)"
        ),
    ] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key.sub=value overrides")] = None,
    features: Annotated[
        Path, typer.Option("--features", help="Feature cache folder (resumable).")
    ] = Path("data/features"),
    experts: Annotated[
        str,
        typer.Option("--experts", help="Comma-separated registered experts: clip, frequency."),
    ] = "clip,frequency",
    clip_layers: Annotated[
        str,
        typer.Option(
            "--clip-layers", help="CLIP blocks (1-12) read, e.g. '6,9,12', '7-12' or 'all'."
        ),
    ] = "all",
    weights: Annotated[
        str,
        typer.Option(
            "--weights",
            help="How the stack weighs the inputs: 'learned' (logistic regression) or 'equal' "
            "(spread-scaled mean, then Platt; transfers better to unseen kinds).",
        ),
    ] = "learned",
    clip_norms: Annotated[
        Path | None,
        typer.Option(
            "--clip-norms",
            help="A clip_vit_b16_ln checkpoint (configs/clip-ln.yaml) whose tuned LayerNorms "
            "the CLIP expert uses. (default: CLIP's own)",
        ),
    ] = None,
    clip_pool: Annotated[
        str,
        typer.Option(
            "--clip-pool",
            help="CLIP tokens read per block, '+'-joined: cls (class token), mean (mean patch "
            "token), center (mean of the central 8x8 patches, the inner face), e.g. 'cls+mean'.",
        ),
    ] = "cls",
    clip_l2: Annotated[
        bool,
        typer.Option("--clip-l2", help="L2-normalise each block's CLIP tokens (RINE-style)."),
    ] = False,
    clip_size: Annotated[
        int,
        typer.Option(
            "--clip-size",
            help="Side the crop is resized to for CLIP (a multiple of 16, 64-448): 160 reads "
            "100 patches instead of 196, ~0.55-0.65 of the CLIP time (docs/training.md).",
        ),
    ] = 224,
    fold: Annotated[
        list[str] | None,
        typer.Option(
            "--fold",
            help="NAME=SOURCE[,SOURCE...]:CNN_CHECKPOINT, repeated: fit the stack on "
            "out-of-fold leave-one-kind-out logits (each fold's sources scored by heads and a "
            "CNN trained without them, as benchmarks/loso.py writes them) instead of the "
            "calib split, so it trusts and is as confident as what transfers. (default: none, "
            "the stack is fitted on the calib split)",
        ),
    ] = None,
    balance: Annotated[
        bool,
        typer.Option(
            "--balance",
            help="Weigh the expert heads' training faces so every (source, label) counts alike.",
        ),
    ] = False,
    pseudo: Annotated[
        str,
        typer.Option(
            "--pseudo",
            help="Pseudo-fake kinds (sbi, splice, trace, resynth; KIND:RATIO to weigh them) made "
            "once from each real training face and added to the expert heads' fakes. "
            "(default: none)",
        ),
    ] = "",
    views: Annotated[
        str,
        typer.Option(
            "--views",
            help="What the expert heads train on: 'both' (each face and its degraded copy), "
            "'clean' (the face alone) or 'routed' (a head on each of those, mixed per face by "
            "a router that tells a degraded face from a sharp one).",
        ),
    ] = "both",
    c: Annotated[
        str | None,
        typer.Option(
            "--c",
            help="L2 strength C of the expert heads: one for every head (0.003) or per expert "
            "(clip=0.0003,frequency=0.3; the others by cross-validation). Default: picked per "
            "head from 0.003-0.3 by cross-validation that holds out whole sources.",
        ),
    ] = None,
) -> None:
    """Fuse a trained CNN with frozen experts (CLIP probe, frequency) into one checkpoint."""
    from facetrust.train.config import load_config
    from facetrust.train.fusion import fusion_spec, run_fusion

    spec = fusion_spec(
        experts,
        clip_layers=clip_layers,
        clip_pool=clip_pool,
        clip_l2=clip_l2,
        clip_norms=clip_norms,
        clip_size=clip_size,
        weights=weights,
        pseudo=pseudo,
        folds=fold or [],
        balance=balance,
        views=views,
        c=c,
    )
    cfg = load_config(config, list(overrides or []))
    metrics = run_fusion(cfg, cnn, features, out, spec, log=typer.echo)
    for split in ("val", "test"):
        if split in metrics:
            face = metrics[split]["face"]
            typer.echo(
                f"{split}: {_auc(face)}, {_ece(face)}; per input "
                f"{metrics['auc_per_input'].get(split, {})}"
            )
    typer.echo(f"fused checkpoint: {out}")


@command(name="eval")
def eval_cmd(
    manifest: Annotated[Path, typer.Argument(help="A prepared manifest (facetrust prepare).")],
    model: ModelOption = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("report"),
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold", min=0.0, max=1.0, help="Decision threshold. (default: the model's)"
        ),
    ] = None,
    device: DeviceOption = None,
    source: Annotated[
        list[str] | None,
        typer.Option("--source", help="Only rows of this source (repeatable). (default: all)"),
    ] = None,
) -> None:
    """Metrics per face/frame/video, per source and kind; ROC and reliability plots."""
    from facetrust.train.evaluate import evaluate_checkpoint

    rep = evaluate_checkpoint(
        manifest, model, out, device=device, threshold=threshold, sources=source
    )
    typer.echo(_summary_table(rep))
    for level in ("face", "frame", "video"):  # an ECE on too few rows or bins says so
        m = rep.get(level) or {}
        if m.get("ece_note"):
            typer.echo(f"all/{level}: {_ece(m)}")
    typer.echo(f"report: {out}/report.json, {out}/roc.png, {out}/reliability.png")


def _auc(m: dict) -> str:
    """``AUC 0.8912 (95 % CI 0.8664-0.9183)``: the interval resamples whole videos."""
    from facetrust.train.metrics import auc_text

    return auc_text(m, digits=4)


def _ece(m: dict) -> str:
    """``ECE 0.0123``, or with why it is not meaningful (too few rows, crowded bins)."""
    from facetrust.train.metrics import ece_text

    return ece_text(m, digits=4)


def _summary_table(rep: dict) -> str:
    def f(v):
        return "-" if v is None else f"{v:.3f}"

    def ci(m):  # the AUC's 95 % interval, whole videos resampled
        c = m.get("auc_ci")
        return "-" if not c else f"{c[0]:.3f}-{c[1]:.3f}"

    def line(name, m):
        return (
            f"{name:24s} {m.get('n', 0):6d} {f(m.get('auc')):>6s} {ci(m):>11s} "
            f"{f(m.get('accuracy')):>6s} {f(m.get('ece')):>6s} {f(m.get('eer')):>6s}"
        )

    lines = [
        f"{'group':24s} {'n':>6s} {'AUC':>6s} {'AUC 95% CI':>11s} {'acc':>6s} {'ECE':>6s} "
        f"{'EER':>6s}"
    ]
    for level in ("face", "frame", "video"):
        m = rep.get(level) or {}
        if m:
            lines.append(line("all/" + level, m))
    for src, by_level in (rep.get("per_source") or {}).items():
        lines.append(line("source/" + src, by_level.get("face", by_level)))
    return "\n".join(lines)


@command()
def tune(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Base YAML config. (default: none, overrides only)"),
    ] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key.sub=value overrides")] = None,
    trials: Annotated[int, typer.Option("--trials", min=1)] = 10,
    sampler: Annotated[str, typer.Option("--sampler", help="tpe or grid")] = "tpe",
    storage: Annotated[
        str | None, typer.Option("--storage", help="Optuna storage (default sqlite in output).")
    ] = None,
) -> None:
    """Search learning rate, batch size, augmentation, SBI ratio and architecture (Optuna)."""
    from facetrust.train.config import load_config
    from facetrust.train.tune import tune as run_tune

    cfg = load_config(config, list(overrides or []))
    study = run_tune(cfg, trials=trials, sampler=sampler, storage=storage, progress=False)
    done = [t for t in study.trials if t.value is not None]
    for t in done:
        typer.echo(f"trial {t.number}: val AUC {t.value:.4f} {t.params}")
    if done:
        typer.echo(
            f"best: trial {study.best_trial.number}, val AUC {study.best_value:.4f}, "
            f"{study.best_params}"
        )
        typer.echo(f"best config: {Path(cfg.output) / 'best.yaml'}")


# the explain PNG: small images upscaled so its text is readable, large ones kept reviewable
EXPLAIN_MIN_SIDE, EXPLAIN_MAX_SIDE = 512, 2048


@command()
def explain(
    image: Annotated[Path, typer.Argument(help="An image file (content decides the format).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Heatmap overlay PNG to write.")],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the prediction and per-face peaks as JSON.")
    ] = False,
    model: ModelOption = None,
    method: Annotated[
        str, typer.Option("--method", help="gradcam, gradcam++ or layercam (last layer).")
    ] = "gradcam",
    device: DeviceOption = None,
) -> None:
    """Heatmap of the "fake" evidence on every face, blended into the image, with each face's
    verdict, a colour bar and the model's limits (see docs/explain.md)."""
    from facetrust.detect.explain import METHODS, Explainer

    if method not in METHODS:
        raise _fail(f"unknown method {method!r}; use one of: {', '.join(METHODS)}")
    if not image.is_file():
        raise _fail(f"not a file: {image}")
    from facetrust.detect import Detector

    # one image: an ONNX session that opens sooner (runtime auto) beats one that scores faster
    detector = Detector(model, device=device, quick_start=True)
    explainer = Explainer(
        detector,
        method=method,  # type: ignore[arg-type]
        min_side=EXPLAIN_MIN_SIDE,
        max_side=EXPLAIN_MAX_SIDE,
        progress=None,  # a bar over the faces' heatmaps, on a terminal
    )
    try:
        ex = explainer(image)
    except FacetrustError as exc:
        raise _fail(str(exc), EXIT_FAILED) from None
    if not ex.faces:
        raise _fail(f"no face found in {image}: no heatmap written", EXIT_FAILED)
    try:
        out.write_bytes(ex.report_png())
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc.strerror or exc}", EXIT_FAILED) from None
    if json_out:
        sys.stdout.write(json.dumps({**ex.to_dict(), "output": str(out)}) + "\n")
    else:
        p = ex.prediction
        prob = p["fake_probability"]
        verdict = p["label"] if prob is None else f"{p['label']} (p(fake) {prob:.3f})"
        typer.echo(f"{image}: {verdict}, {len(ex.faces)} face(s); heatmap written to {out}")


@command()
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Port (default 8000).")
    ] = None,
    model: ModelOption = None,
    device: DeviceOption = None,
    runtime: RuntimeOption = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Protection jobs run at once. (default: 1, or FACETRUST_WORKERS)",
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            help="debug, info, warning or error. (default: info, or FACETRUST_LOG_LEVEL)",
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", help="Allow a non-loopback address without API keys (not advised)."
        ),
    ] = False,
) -> None:
    """Serve the REST API and the web page (settings also from FACETRUST_* variables).

    On an address other than loopback, API keys (FACETRUST_API_KEYS) are required."""
    from pydantic import ValidationError

    from facetrust.serve import ServeSettings
    from facetrust.serve.server import is_loopback, run

    flags = {"host": host, "port": port, "model": model, "device": device, "workers": workers}
    flags["log_level"] = log_level
    flags["runtime"] = runtime
    try:
        settings = ServeSettings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ()))
        raise _fail(f"invalid setting {where}: {err.get('msg')}") from None
    if not is_loopback(settings.host) and not settings.api_keys:
        if not insecure:
            raise _fail(
                f"refusing to serve on {settings.host} without API keys: set FACETRUST_API_KEYS "
                "(clients send 'Authorization: Bearer <key>'), or pass --insecure"
            )
        typer.echo(
            f"warning: serving on {settings.host} with no API key: anyone who can reach this "
            "address can use the server",
            err=True,
        )
    typer.echo(f"facetrust: serving on http://{settings.host}:{settings.port}/", err=True)
    run(settings)


@command()
def protect(
    paths: Annotated[list[Path], typer.Argument(help="Photos, or folders of photos (recursive).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output file (one photo) or folder (several).")
    ],
    strength: Annotated[
        str,
        typer.Option(
            "--strength",
            "-s",
            help="Preset by what shows on the face: subtle (default), balanced or strong "
            "(on 60 test photos dlib still recognised 73 %, 52 %, 27 % after JPEG 75).",
        ),
    ] = "subtle",
    ssim: Annotated[
        float | None,
        typer.Option(
            "--ssim", min=0.5, max=0.999, help="Face-region SSIM to keep. (default: the preset's)"
        ),
    ] = None,
    psnr: Annotated[
        float | None,
        typer.Option(
            "--psnr", min=20.0, max=60.0, help="Face-region PSNR, dB. (default: the preset's)"
        ),
    ] = None,
    eps: Annotated[
        float | None,
        typer.Option("--eps", min=0.5, max=64.0, help="L-inf cap in 8-bit levels (default 16)."),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps",
            min=0,
            max=10_000,
            help="PGD steps (default: 48 for subtle, 80 for the other presets).",
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON report per photo per line on stdout.")
    ] = False,
    jpeg: Annotated[
        bool, typer.Option("--jpeg", help="Write JPEG (quality 95) instead of PNG.")
    ] = False,
    whole_image: Annotated[
        bool, typer.Option("--whole-image", help="Cloak the whole image, face or not.")
    ] = False,
    warp: Annotated[
        bool,
        typer.Option(
            "--warp/--no-warp",
            help="Landmark micro-warp of eyes, nose and mouth by up to --warp-px (off in every "
            "preset: the cloak spends the budget better).",
        ),
    ] = False,
    warp_px: Annotated[
        float,
        typer.Option(
            "--warp-px", min=0.1, max=2.0, help="Largest warp displacement with --warp, pixels."
        ),
    ] = 0.5,
    judge: Annotated[
        bool,
        typer.Option(
            "--judge/--no-judge",
            help="Ask dlib's face recognizer (never attacked) as saved and after JPEG 75.",
        ),
    ] = True,
    encoders: Annotated[
        str | None,
        typer.Option(
            "--encoders", help="Comma-separated surrogate encoders to attack. (default: faceres)"
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the warp and the attack.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Cloak the faces in photos against face-swap and identity models; exit 1 if any failed.

    The change is budgeted on the face (face-region SSIM and PSNR); each photo's line says how
    visible it is and whether dlib still recognises the person after JPEG 75. Output is PNG (or
    JPEG with --jpeg), same size and orientation, with no metadata.
    """
    from facetrust.cli_protect import ProgressDisplay, collect_images, output_paths, summary_text
    from facetrust.protect import Protector
    from facetrust.protect.encoders import DEFAULT_ENCODERS

    ext = "jpg" if jpeg or out.suffix.lower() in {".jpg", ".jpeg"} else "png"
    if jpeg and out.suffix.lower() == ".png":
        raise _fail("--jpeg was given but the output name ends in .png")
    missing = [str(p) for p in paths if not p.exists()]
    files = collect_images(paths)
    if not files and not missing:
        raise _fail("no image files found in the given paths")
    many = len(paths) > 1 or any(p.is_dir() for p in paths) or out.is_dir()
    if many and out.exists() and not out.is_dir():
        raise _fail(f"with several photos the output must be a folder, and {out} is a file")
    names = tuple(n.strip() for n in encoders.split(",") if n.strip()) if encoders else None
    protector = Protector(
        strength,
        ssim=ssim,
        psnr=psnr,
        eps=None if eps is None else eps / 255.0,
        steps=steps,
        encoders=names or DEFAULT_ENCODERS,
        warp=warp,
        warp_px=warp_px,
        whole_image=whole_image,
        judge=judge,
        seed=seed,
        device=device,
    )
    if many:
        out.mkdir(parents=True, exist_ok=True)
    targets = dict(zip(files, output_paths(files, out, many, ext), strict=True))
    display = ProgressDisplay(len(files), enabled=sys.stderr.isatty())

    def protect_one(f: Path) -> dict:
        target = targets[f]
        if target.exists() and target.resolve() == f.resolve():
            raise InputError("the output would overwrite the input")
        with display.photo(f) as progress:
            res = protector(f, progress=progress)
        res.save(target, "jpeg" if ext == "jpg" else "png")
        return {"path": str(f), "output": str(target), **res.report.model_dump(mode="json")}

    def show(d: dict) -> None:
        if "error" in d:
            typer.echo(f"error: {d['path']}: {d['error']}", err=True)
        else:
            typer.echo(summary_text(d))

    failed = _run_batch(files, missing, protect_one, json_out, show)
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


@command()
def scan(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Folders (recursive), files, manifests (JSONL with a path field, CSV with a "
            "path column) or - (paths on stdin, one a line)."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Results store (SQLite .db; created if missing).")
    ],
    model: ModelOption = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=0,
            help="Decoding and face-finding processes (0: none). With --engine ray: the CPUs of "
            "the local Ray. (default: half the threads, at most threads - 1; with --engine "
            "ray: 2)",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Faces per forward pass.")
    ] = 32,
    retry_errors: Annotated[
        bool, typer.Option("--retry-errors", help="Scan again the files that failed before.")
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="CPU threads in all, workers included. (default: facetrust --threads, "
            "FACETRUST_THREADS, else the cores this process may use)",
        ),
    ] = None,
    frames: FramesOption = None,
    device: DeviceOption = None,
    runtime: RuntimeOption = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="local (processes on this machine) or ray (a Ray Data pipeline; needs the "
            "scale extra; see docs/scale.md).",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="With --engine ray: the Ray cluster to run on (auto, ray://HOST:10001). "
            "(default: a private local Ray with --workers CPUs)",
        ),
    ] = None,
    score_actors: Annotated[
        int,
        typer.Option(
            "--score-actors",
            min=1,
            help="With --engine ray: scoring actors, each with the model loaded once (one GPU "
            "each with --device cuda).",
        ),
    ] = 1,
) -> None:
    """Scan folders, files, manifests or stdin into a results store; rerun to resume."""
    from facetrust.scan.scanner import Scanner, resume_hint

    if engine not in ("local", "ray"):
        raise _fail(f"unknown --engine {engine!r}; use local or ray")
    if engine != "ray" and (address is not None or score_actors != 1):
        raise _fail("--address and --score-actors need --engine ray")
    common: dict[str, Any] = dict(
        model=model,
        workers=workers,
        threads=threads or _STATE["threads"],
        batch_size=batch_size,
        retry_errors=retry_errors,
        frames=frames,
        device=device,
        runtime=runtime,
        engine_args={"command": sys.argv[1:]},
    )
    if engine == "ray":
        from facetrust.scan.ray_engine import RayScanner

        scanner = RayScanner(out, address=address, score_actors=score_actors, **common)
    else:
        scanner = Scanner(out, **common)
    summary = scanner.run(sources, stdin=sys.stdin)
    typer.echo(summary.text())
    if summary.interrupted:
        typer.echo(resume_hint(), err=True)
        raise typer.Exit(130)


@command(light=True)
def provenance(
    paths: Annotated[list[Path], typer.Argument(help="Images, videos or folders (recursive).")],
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON object per file per line on stdout.")
    ] = False,
    trust_anchors: Annotated[
        Path | None,
        typer.Option(
            "--trust-anchors",
            help="PEM file of root certificates whose C2PA signers count as trusted. "
            "(default: none, so no signature counts as trusted)",
        ),
    ] = None,
    watermark: Annotated[
        bool, typer.Option("--watermark/--no-watermark", help="Decode invisible watermarks.")
    ] = True,
) -> None:
    """Read C2PA credentials, invisible watermarks and generator metadata (no model is
    loaded); exit 1 if any file failed."""
    from facetrust.provenance import file_verdict, read_provenance

    anchors = None
    if trust_anchors is not None:
        try:
            anchors = trust_anchors.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise _fail(f"cannot read --trust-anchors {trust_anchors}: {exc}") from None
        if "-----BEGIN CERTIFICATE-----" not in anchors:
            raise _fail(f"--trust-anchors {trust_anchors} holds no PEM certificate")
    missing = [str(p) for p in paths if not p.exists()]
    files = list(expand_inputs([p for p in paths if p.exists()]))
    if not files and not missing:
        raise _fail("no image or video files found in the given paths")

    def read_one(f: Path) -> dict:
        prov = read_provenance(f, trust_anchors=anchors, watermark=watermark)
        return {
            "path": str(f),
            **prov.model_dump(mode="json"),
            "verdict": file_verdict(None, prov).model_dump(),
        }

    rows: list[dict] = []
    failed = _run_batch(files, missing, read_one, json_out, rows.append)
    if not json_out:
        _print_provenance(rows)
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _print_provenance(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from facetrust.provenance import STRENGTH_WORDS

    table = Table(title="provenance (absence of evidence is not evidence of authenticity)")
    for col in ("file", "verdict", "evidence", "notes"):
        table.add_column(col, overflow="fold")
    for d in rows:
        if "error" in d:
            table.add_row(escape(d["path"]), "error", "-", escape(d["error"]))
            continue
        ev = [
            f"{e['kind']}: {e['claim']} [{STRENGTH_WORDS[e['strength']]}] ({e['source']})"
            for e in d["evidence"]
        ]
        table.add_row(
            escape(d["path"]),
            d["verdict"]["verdict"],
            escape("\n".join(ev) or "none found"),
            escape("\n".join(d["notes"])),
        )
    Console(width=max(120, Console().width)).print(table)


@command(light=True)
def models(
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON object per model per line.")
    ] = False,
) -> None:
    """List the shipped models: architecture, experts, size, threshold, headline figures."""
    from facetrust.models import list_models

    shipped = list_models()
    if json_out:
        for m in shipped:
            typer.echo(m.model_dump_json())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="shipped models (val: held-out faces of the training sources)")
    for col in ("name", "arch", "experts", "MB", "crops -> input", "threshold", "val AUC", "ECE"):
        table.add_column(col)
    for m in shipped:
        table.add_row(
            m.name,
            m.arch,
            "+".join(m.experts),
            f"{m.size_mb:g}",
            f"{m.crop_size} -> {m.input_size} px",
            f"{m.threshold:.4f}",
            "-" if m.val_auc is None else f"{m.val_auc:.3f}",
            "-" if m.val_ece is None else f"{m.val_ece:.3f}",
        )
    Console(width=max(120, Console().width)).print(table)
    if shipped:
        typer.echo(f"limits and figures on unseen kinds of fake: {shipped[0].card}")


@command(light=True)
def report(
    store: Annotated[Path, typer.Argument(help="A results store written by facetrust scan.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML page to write.")],
    model: Annotated[
        str | None,
        typer.Option("--model", help="Model to report (NAME or NAME@SHA); default: last scan's."),
    ] = None,
    top: Annotated[int, typer.Option("--top", min=0, help="Most suspicious files shown.")] = 25,
    csv_out: Annotated[
        Path | None,
        typer.Option("--csv", help="Also write one CSV row per file here. (default: none)"),
    ] = None,
) -> None:
    """Write a self-contained HTML report of a scan (no network needed to view it)."""
    from facetrust.scan.report import load_report, write_csv, write_html

    rep = load_report(store, model=model, top=top)
    write_html(rep, out)
    typer.echo(
        f"{out}: {rep.files} files of model {rep.model.describe()} "
        f"({', '.join(f'{v} {k}' for k, v in rep.by_status.items())})"
    )
    if csv_out is not None:
        n = write_csv(store, csv_out, model=model)
        typer.echo(f"{csv_out}: {n} rows")


@command(name="scan-export", light=True)
def scan_export(
    store: Annotated[Path, typer.Argument(help="A results store written by facetrust scan.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="The files table (.parquet or .csv); faces, frames and scans go beside it as "
            "OUT.faces.parquet, OUT.frames.parquet, OUT.scans.parquet.",
        ),
    ],
    fmt: Annotated[
        str | None, typer.Option("--format", help="parquet or csv (default: from --out).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Only this model's rows (NAME or NAME@SHA). (default: every model's)"
        ),
    ] = None,
) -> None:
    """Export a results store's tables to Parquet or CSV for analytics."""
    from facetrust.scan.export import export_store

    for t in export_store(store, out, fmt=fmt, model=model):
        typer.echo(f"{t.path}: {t.rows} {t.table} rows")


@command()
def export(
    model: ModelOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="ONNX file to write. (default: the cache that --runtime onnx/auto reads, "
            "$XDG_CACHE_HOME/facetrust/onnx)",
        ),
    ] = None,
    int8: Annotated[
        bool,
        typer.Option("--int8", help="Quantise MatMul weights to int8 (dynamic; needs -o)."),
    ] = False,
) -> None:
    """Export a model to ONNX: the CNN and, for fused models, the CLIP tower and heads, with
    the model's metadata (calibration, crop contract, fusion, SHA-256) in the file."""
    import time

    from facetrust.detect.onnx_export import export_onnx, onnx_cache_path
    from facetrust.models.zoo import configured_model

    path = configured_model(model)
    if out is None:
        if int8:
            raise _fail("--int8 writes to a file of your choice: pass -o PATH")
        out = onnx_cache_path(path)
    cached = out == onnx_cache_path(path)  # the cache keeps the weights beside the graph
    t0 = time.perf_counter()
    written = export_onnx(path, out, int8=int8, external_data=cached)
    weights = written.with_name(written.name + ".data")  # the cache's weights file
    size = (written.stat().st_size + (weights.stat().st_size if cached else 0)) / 1e6
    typer.echo(f"{written} ({size:.1f} MB, {time.perf_counter() - t0:.0f} s)")


def main() -> None:
    """Console entry point."""
    try:
        app()
    except InputError as exc:  # pragma: no cover - commands catch their own
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
