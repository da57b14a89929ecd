from __future__ import annotations

import json

import numpy as np
import pytest

from facetrust.data import BiasThresholds, ManifestRow, bias_report
from facetrust.data.bias import auc, quality_bin, resolution_bin


def _row(label, source="s", fmt="JPEG", mode="RGB", q=90, side=256, i=0, **kw):
    return ManifestRow(
        path=f"{source}/{label}/{i}.{'png' if fmt == 'PNG' else 'jpg'}",
        label=label,
        source=source,
        format=fmt,
        mode=mode,
        jpeg_quality=q if fmt == "JPEG" else None,
        width=side,
        height=side,
        **kw,
    )


def _balanced(n=40, seed=0, source="s"):
    """Both classes drawn from the same distribution of format, mode, quality and size."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in ("real", "fake"):
        for i in range(n):
            fmt = "PNG" if rng.random() < 0.5 else "JPEG"
            rows.append(
                _row(
                    label,
                    source,
                    fmt=fmt,
                    mode="L" if rng.random() < 0.3 else "RGB",
                    q=int(rng.integers(60, 100)),
                    side=int(rng.integers(100, 600)),
                    i=i,
                )
            )
    return rows


def test_rigged_dataset_warns_about_format_and_mode():
    rows = [_row("real", fmt="PNG", mode="L", i=i) for i in range(20)]
    rows += [_row("fake", fmt="JPEG", mode="RGB", q=85, i=i) for i in range(20)]
    report = bias_report(rows)
    text = " | ".join(report.warnings)
    assert "format PNG: 100% of reals but 0% of fakes" in text
    assert "format JPEG: 100% of fakes but 0% of reals" in text
    assert "colour mode L: 100% of reals" in text
    assert "JPEG quality not JPEG: 100% of reals" in text
    assert not report.ok
    assert report.format == {"real": {"PNG": 20}, "fake": {"JPEG": 20}}
    assert report.mode["real"] == {"L": 20}


def test_balanced_dataset_has_no_warnings():
    report = bias_report(_balanced(60))
    assert report.warnings == []
    assert report.source_warnings == {"s": []}
    assert report.ok
    assert 0.5 <= report.auc["shorter_side"]["auc"] < 0.65


def test_resolution_auc_and_bins():
    rows = [_row("real", side=s, i=i) for i, s in enumerate(range(40, 240, 10))]
    rows += [_row("fake", side=s, i=i) for i, s in enumerate(range(300, 700, 20))]
    report = bias_report(rows)
    a = report.auc["shorter_side"]
    assert a["auc"] == 1.0 and a["direction"] == "larger = fake" and a["n"] == 40
    assert any("shorter side separates the classes (AUC 1.00" in w for w in report.warnings)
    res = report.resolution["real"]
    assert (res["min"], res["max"], res["median"]) == (40, 230, 135.0)
    assert res["bins"] == {"<64": 3, "64-127": 6, "128-255": 11, "256-511": 0, ">=512": 0}
    assert report.resolution["fake"]["bins"][">=512"] == 9


def test_weak_auc_and_partial_value_warn():
    # like the development data: some small reals, otherwise the same sizes
    rows = [_row("real", side=100, i=i) for i in range(30)]
    rows += [_row("real", side=224, i=100 + i) for i in range(70)]
    rows += [_row("fake", side=224, i=i) for i in range(100)]
    report = bias_report(rows)
    text = " | ".join(report.warnings)
    expected = (
        "shorter side 64-127: 30.0% of reals but 0.0% of fakes: such rows are almost all real"
    )
    assert expected in text
    assert "partly separates the classes (AUC 0.65" in text


def test_one_class_sources_and_imbalance():
    rows = _balanced(20, source="both")
    rows += [_row("fake", source="gan", i=i) for i in range(200)]
    report = bias_report(rows)
    assert report.sources["gan"] == {"real": 0, "fake": 200}
    text = " | ".join(report.warnings)
    assert "source gan has only fakes (200 rows): the source predicts the label" in text
    assert "class imbalance 11.0:1 (20 real, 220 fake)" in text
    assert "83% of rows come from one-class sources" in text
    assert "gan" not in report.source_warnings  # one class: nothing to compare inside it


def test_within_source_trap_is_reported_per_source():
    rows = _balanced(30, source="clean")
    rows += [_row("real", "trap", fmt="PNG", i=i) for i in range(15)]
    rows += [_row("fake", "trap", fmt="JPEG", i=i) for i in range(15)]
    report = bias_report(rows)
    assert report.source_warnings["clean"] == []
    assert any("format PNG: 100% of reals" in w for w in report.source_warnings["trap"])
    text = report.to_text()
    assert "Within-source traps" in text and "trap:" in text and "clean: none" in text


def test_format_from_suffix_and_unknowns_do_not_warn():
    rows = [ManifestRow(path=f"r/{i}.jpg", label="real", source="a") for i in range(10)]
    rows += [ManifestRow(path=f"f/{i}.png", label="fake", source="a") for i in range(10)]
    report = bias_report(rows)
    assert report.format == {"real": {"JPEG": 10}, "fake": {"PNG": 10}}
    assert report.mode == {"real": {"unknown": 10}, "fake": {"unknown": 10}}
    assert any(w.startswith("format JPEG") for w in report.warnings)
    assert not any("colour mode" in w or "shorter side" in w for w in report.warnings)


def test_to_dict_is_json_and_text_renders():
    report = bias_report(_balanced(10) + [_row("fake", source="x", i=99, box=[0, 0, 50, 40])])
    d = json.loads(json.dumps(report.to_dict()))
    assert d["classes"] == {"real": 10, "fake": 11}
    assert set(d["auc"]) == {"shorter_side", "jpeg_quality", "face_side"}
    assert d["auc"]["face_side"]["auc"] is None  # known for one class only
    text = report.to_text()
    for part in ("Bias report: 21 rows", "JPEG quality", "Colour mode", "Format", "source x"):
        assert part in text


def test_empty_and_single_class():
    assert bias_report([]).warnings == ["no rows"]
    report = bias_report([_row("fake", i=i) for i in range(3)])
    assert report.warnings[0].startswith("only fakes")


def test_thresholds_are_configurable():
    rows = [_row("real", fmt="PNG", i=i) for i in range(10)]
    rows += [_row("real", i=10 + i) for i in range(10)]
    rows += [_row("fake", i=i) for i in range(20)]
    assert bias_report(rows).warnings  # PNG: 50% of reals, 0% of fakes (partial rule)
    strict = BiasThresholds(partial_share=0.6, dominant=0.95)
    assert not any("format" in w for w in bias_report(rows, strict).warnings)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pairwise_definition(seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 10, 200).astype(float)  # many ties
    y = rng.integers(0, 2, 200)
    pos, neg = s[y == 1], s[y == 0]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert auc(s, y) == pytest.approx(pairwise)
    assert auc(s, np.zeros(200)) is None


def test_bins():
    assert [resolution_bin(s) for s in (None, 10, 64, 200, 256, 512)] == [
        None,
        "<64",
        "64-127",
        "128-255",
        "256-511",
        ">=512",
    ]
    assert quality_bin("PNG", None) == "not JPEG"
    assert quality_bin("JPEG", None) is None
    assert [quality_bin("JPEG", q) for q in (10, 69, 75, 85, 92, 95)] == [
        "<50",
        "50-69",
        "70-79",
        "80-89",
        "90-94",
        "95-100",
    ]
