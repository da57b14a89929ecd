"""Data: manifests, preparation (faces found and cropped once, cached), bias report, splits."""

from __future__ import annotations

from facetrust.data.bias import BiasReport, BiasThresholds, bias_report
from facetrust.data.manifest import ManifestRow, iter_manifest, read_manifest, write_manifest
from facetrust.data.prepare import PrepareResult, discover, prepare
from facetrust.data.splits import (
    assign_splits,
    cluster_split,
    group_split,
    leave_one_source_out,
)

__all__ = [
    "BiasReport",
    "BiasThresholds",
    "ManifestRow",
    "PrepareResult",
    "assign_splits",
    "bias_report",
    "cluster_split",
    "discover",
    "group_split",
    "iter_manifest",
    "leave_one_source_out",
    "prepare",
    "read_manifest",
    "write_manifest",
]
