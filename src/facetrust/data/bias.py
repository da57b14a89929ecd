"""Bias report: can a class be told apart by something other than the face?

Counts per class and per source, the distribution of resolution, JPEG quality, colour mode and
file format per class, and warnings whenever one of those (or the source itself) predicts the
label: a detector trained on such data learns the shortcut instead of the manipulation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np

from facetrust.data.manifest import ManifestRow

__all__ = ["BiasReport", "BiasThresholds", "auc", "bias_report"]

CLASSES = ("real", "fake")
RESOLUTION_BINS = ("<64", "64-127", "128-255", "256-511", ">=512")
QUALITY_BINS = ("<50", "50-69", "70-79", "80-89", "90-94", "95-100", "not JPEG")
_SUFFIX_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".gif": "GIF",
}
_PLURAL = {"real": "reals", "fake": "fakes"}


@dataclass(frozen=True)
class BiasThresholds:
    """When a warning fires.

    Attributes:
        dominant, rare: an attribute value covering >= ``dominant`` of one class and <= ``rare``
            of the other.
        partial_share, partial_ratio: a value covering >= ``partial_share`` of one class and at
            most 1/``partial_ratio`` of that share in the other (e.g. 15 % of reals are under
            128 px against 0.2 % of fakes): the value gives the label away for those rows.
        min_count: rows of a value needed before the partial rule fires.
        auc: single-feature AUC (either direction) at or above which a feature separates the
            classes; ``auc_weak`` adds a weaker warning.
        imbalance: largest tolerated ratio between the class counts.
    """

    dominant: float = 0.9
    rare: float = 0.1
    partial_share: float = 0.05
    partial_ratio: float = 10.0
    min_count: int = 10
    auc: float = 0.8
    auc_weak: float = 0.65
    imbalance: float = 4.0


def resolution_bin(side: int | None) -> str | None:
    if side is None:
        return None
    if side < 64:
        return "<64"
    if side < 128:
        return "64-127"
    if side < 256:
        return "128-255"
    if side < 512:
        return "256-511"
    return ">=512"


def quality_bin(fmt: str | None, quality: int | None) -> str | None:
    """JPEG quality bin; ``not JPEG`` for another format, ``None`` when unknown."""
    if quality is not None:
        for upper, name in ((50, "<50"), (70, "50-69"), (80, "70-79"), (90, "80-89")):
            if quality < upper:
                return name
        return "90-94" if quality < 95 else "95-100"
    if fmt is not None and fmt != "JPEG":
        return "not JPEG"
    return None


def row_format(row: ManifestRow) -> str | None:
    """The row's format, else guessed from the file suffix (for manifests without it)."""
    if row.format:
        return row.format.upper()
    return _SUFFIX_FORMATS.get(PurePath(row.path).suffix.lower())


def shorter_side(row: ManifestRow) -> int | None:
    if row.width is None or row.height is None:
        return None
    return int(min(row.width, row.height))


def face_side(row: ManifestRow) -> float | None:
    if row.box is None or len(row.box) != 4:
        return None
    x1, y1, x2, y2 = row.box
    return float(min(x2 - x1, y2 - y1))


def auc(scores: Sequence[float] | np.ndarray, y: Sequence[int] | np.ndarray) -> float | None:
    """ROC AUC of ``scores`` for ``y`` (1 = positive), ties counted half; ``None`` if one class."""
    s = np.asarray(scores, dtype=np.float64)
    yy = np.asarray(y).astype(bool)
    n_pos, n_neg = int(yy.sum()), int((~yy).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks of ties (1-based)
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[yy].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# attribute name -> (label in text, getter)
_ATTRIBUTES: dict[str, tuple[str, Callable[[ManifestRow], str | None]]] = {
    "format": ("format", row_format),
    "mode": ("colour mode", lambda r: r.mode),
    "jpeg_quality": ("JPEG quality", lambda r: quality_bin(row_format(r), r.jpeg_quality)),
    "resolution": ("shorter side", lambda r: resolution_bin(shorter_side(r))),
}
_FEATURES: dict[str, tuple[str, Callable[[ManifestRow], float | None]]] = {
    "shorter_side": ("shorter side", shorter_side),
    "jpeg_quality": ("JPEG quality", lambda r: r.jpeg_quality),
    "face_side": ("face size", face_side),
}


@dataclass
class BiasReport:
    """Counts, per-class distributions and shortcut warnings for a set of manifest rows.

    Attributes:
        n_rows: rows looked at.
        classes: rows per class.
        sources: ``{source: {class: rows}}``.
        resolution: per class, shorter side ``min/median/max``, ``bins`` and ``unknown``.
        jpeg_quality, mode, format: per class, ``{value: rows}`` (``unknown`` where missing).
        auc: single-feature AUC per feature (``shorter_side``, ``jpeg_quality``, ``face_side``),
            as ``{"auc": a, "direction": "larger = fake"}``, over all rows.
        warnings: shortcuts across the whole set.
        source_warnings: ``{source: [warnings]}`` for shortcuts inside a two-class source.
    """

    n_rows: int
    classes: dict[str, int]
    sources: dict[str, dict[str, int]]
    resolution: dict[str, dict[str, Any]]
    jpeg_quality: dict[str, dict[str, int]]
    mode: dict[str, dict[str, int]]
    format: dict[str, dict[str, int]]
    auc: dict[str, dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    source_warnings: dict[str, list[str]] = field(default_factory=dict)
    source_auc: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No warning anywhere."""
        return not self.warnings and not any(self.source_warnings.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "n_rows": self.n_rows,
            "classes": self.classes,
            "sources": self.sources,
            "resolution": self.resolution,
            "jpeg_quality": self.jpeg_quality,
            "mode": self.mode,
            "format": self.format,
            "auc": self.auc,
            "source_auc": self.source_auc,
            "warnings": self.warnings,
            "source_warnings": self.source_warnings,
        }

    def to_text(self) -> str:
        """A plain-text report for a terminal."""
        real, fake = self.classes.get("real", 0), self.classes.get("fake", 0)
        lines = [f"Bias report: {self.n_rows} rows, {real} real / {fake} fake", ""]
        lines.append(f"{'source':<24}{'real':>8}{'fake':>8}")
        for src, c in sorted(self.sources.items()):
            lines.append(f"{src:<24}{c.get('real', 0):>8}{c.get('fake', 0):>8}")
        lines += ["", "Shorter side (px)  " + "".join(f"{b:>9}" for b in RESOLUTION_BINS)]
        for c in CLASSES:
            r = self.resolution.get(c)
            if not r:
                continue
            bins = "".join(f"{r['bins'].get(b, 0):>9}" for b in RESOLUTION_BINS)
            stats = (
                f"  min {r['min']} median {r['median']} max {r['max']}"
                if r.get("min") is not None
                else "  (unknown)"
            )
            lines.append(f"  {c:<17}{bins}{stats}")
        for title, table in (
            ("JPEG quality", self.jpeg_quality),
            ("Colour mode", self.mode),
            ("Format", self.format),
        ):
            lines += ["", title]
            for c in CLASSES:
                if c in table:
                    lines.append(f"  {c:<6}" + _fmt_counts(table[c], self.classes.get(c, 0)))
        lines += ["", "Single-feature AUC (0.5 = no signal)"]
        for name, a in self.auc.items():
            lines.append(f"  {_FEATURES[name][0]:<14}{_fmt_auc(a)}")
        lines += ["", "Warnings" if self.warnings else "Warnings: none"]
        lines += [f"  - {w}" for w in self.warnings]
        lines += ["", "Within-source traps (sources with both classes)"]
        if not self.source_warnings:
            lines.append("  (no source has both classes)")
        for src, ws in sorted(self.source_warnings.items()):
            aucs = ", ".join(
                f"{_FEATURES[k][0]} {v['auc']:.2f}"
                for k, v in self.source_auc.get(src, {}).items()
                if v.get("auc") is not None
            )
            lines.append(f"  {src}: {'none' if not ws else ''}{f' (AUC {aucs})' if aucs else ''}")
            lines += [f"    - {w}" for w in ws]
        return "\n".join(lines)


def _fmt_counts(counts: dict[str, int], total: int) -> str:
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v} ({100 * v / max(total, 1):.0f}%)" for k, v in items)


def _fmt_auc(a: dict[str, Any]) -> str:
    if a.get("auc") is None:
        return "n/a (" + a.get("why", "one class") + ")"
    return f"{a['auc']:.2f} ({a['direction']}, n={a['n']})"


def bias_report(
    rows: Iterable[ManifestRow], thresholds: BiasThresholds | None = None
) -> BiasReport:
    """Look for shortcuts in ``rows``: class balance, one-class sources and metadata that
    predicts the label (format, colour mode, JPEG quality, resolution), overall and per source.
    """
    th = thresholds or BiasThresholds()
    rows = list(rows)
    by_class = {c: [r for r in rows if r.label == c] for c in CLASSES}
    classes = {c: len(v) for c, v in by_class.items()}
    sources: dict[str, dict[str, int]] = {}
    for r in rows:
        sources.setdefault(r.source, {"real": 0, "fake": 0})[r.label] += 1

    report = BiasReport(
        n_rows=len(rows),
        classes=classes,
        sources=dict(sorted(sources.items())),
        resolution={c: _resolution_stats(v) for c, v in by_class.items() if v},
        jpeg_quality=_value_counts(by_class, _ATTRIBUTES["jpeg_quality"][1]),
        mode=_value_counts(by_class, _ATTRIBUTES["mode"][1]),
        format=_value_counts(by_class, _ATTRIBUTES["format"][1]),
        auc=_feature_aucs(rows),
    )
    w = report.warnings
    real, fake = classes["real"], classes["fake"]
    if not rows:
        w.append("no rows")
    elif real == 0 or fake == 0:
        only = "fakes" if real == 0 else "reals"
        w.append(f"only {only}: a detector cannot learn from one class")
    elif max(real, fake) / min(real, fake) > th.imbalance:
        big = "real" if real > fake else "fake"
        w.append(
            f"class imbalance {max(real, fake) / min(real, fake):.1f}:1 "
            f"({real} real, {fake} fake): weight or resample the {_PLURAL[big]}"
        )
    one_class = []
    for src, c in report.sources.items():
        if c["real"] == 0 or c["fake"] == 0:
            only = "fakes" if c["real"] == 0 else "reals"
            one_class.append(c["real"] + c["fake"])
            if len(report.sources) > 1:
                w.append(
                    f"source {src} has only {only} ({c['real'] + c['fake']} rows): "
                    "the source predicts the label"
                )
    if one_class and len(report.sources) > 1:
        share = sum(one_class) / max(len(rows), 1)
        w.append(
            f"{100 * share:.0f}% of rows come from one-class sources: validate by leaving "
            "sources out, and compare classes within a source"
        )
    w += _shortcut_warnings(by_class, report.auc, th)

    for src, c in report.sources.items():
        if c["real"] == 0 or c["fake"] == 0:
            continue
        src_rows = [r for r in rows if r.source == src]
        src_by_class = {k: [r for r in src_rows if r.label == k] for k in CLASSES}
        src_auc = _feature_aucs(src_rows)
        report.source_auc[src] = src_auc
        report.source_warnings[src] = _shortcut_warnings(src_by_class, src_auc, th)
    return report


def _resolution_stats(rows: list[ManifestRow]) -> dict[str, Any]:
    sides = [s for s in map(shorter_side, rows) if s is not None]
    bins = Counter(resolution_bin(s) for s in sides)
    out: dict[str, Any] = {
        "min": None,
        "median": None,
        "max": None,
        "bins": {b: bins.get(b, 0) for b in RESOLUTION_BINS},
        "unknown": len(rows) - len(sides),
    }
    if sides:
        out.update(min=int(min(sides)), median=float(np.median(sides)), max=int(max(sides)))
    return out


def _value_counts(
    by_class: dict[str, list[ManifestRow]], get: Callable[[ManifestRow], str | None]
) -> dict[str, dict[str, int]]:
    out = {}
    for c, rows in by_class.items():
        if rows:
            counts = Counter(get(r) or "unknown" for r in rows)
            out[c] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


def _feature_aucs(rows: list[ManifestRow]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, (_, get) in _FEATURES.items():
        pairs = [(v, r.y) for r in rows if (v := get(r)) is not None]
        if not pairs:
            continue
        s, y = zip(*pairs, strict=True)
        a = auc(s, y)
        if a is None:
            out[name] = {"auc": None, "n": len(pairs), "why": "known for one class only"}
            continue
        direction = "larger = fake" if a >= 0.5 else "larger = real"
        out[name] = {"auc": round(max(a, 1 - a), 4), "direction": direction, "n": len(pairs)}
    return out


def _shortcut_warnings(
    by_class: dict[str, list[ManifestRow]], aucs: dict[str, dict[str, Any]], th: BiasThresholds
) -> list[str]:
    """Attribute values and features that tell the classes apart."""
    out: list[str] = []
    for _key, (title, get) in _ATTRIBUTES.items():
        values = {c: [v for r in rows if (v := get(r)) is not None] for c, rows in by_class.items()}
        if not values["real"] or not values["fake"]:
            continue
        counts = {c: Counter(v) for c, v in values.items()}
        n = {c: len(v) for c, v in values.items()}
        for value in sorted(set(counts["real"]) | set(counts["fake"])):
            share = {c: counts[c].get(value, 0) / n[c] for c in CLASSES}
            for a, b in (("real", "fake"), ("fake", "real")):
                sa, sb = share[a], share[b]
                if sa >= th.dominant and sb <= th.rare:
                    out.append(
                        f"{title} {value}: {100 * sa:.0f}% of {_PLURAL[a]} but "
                        f"{100 * sb:.0f}% of {_PLURAL[b]}: the {title} alone predicts the label"
                    )
                elif (
                    sa >= th.partial_share
                    and sb * th.partial_ratio <= sa
                    and counts[a].get(value, 0) >= th.min_count
                ):
                    out.append(
                        f"{title} {value}: {100 * sa:.1f}% of {_PLURAL[a]} but "
                        f"{100 * sb:.1f}% of {_PLURAL[b]}: such rows are almost all {a}"
                    )
    for name, a in aucs.items():
        value = a.get("auc")
        if value is None:
            continue
        title = _FEATURES[name][0]
        if value >= th.auc:
            out.append(
                f"{title} separates the classes (AUC {value:.2f}, {a['direction']}): "
                "resize and augment so the model cannot use it"
            )
        elif value >= th.auc_weak:
            out.append(
                f"{title} partly separates the classes (AUC {value:.2f}, {a['direction']}): "
                "resize and augment so the model cannot use it"
            )
    return out
