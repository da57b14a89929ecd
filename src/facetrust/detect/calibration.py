"""Turn model logits into calibrated probabilities, as the checkpoint's ``calibration`` says.

Supported ``calibration`` dicts:
  ``{"method": "none"}``                       p = sigmoid(logit)
  ``{"method": "temperature", "temperature": T}`` p = sigmoid(logit / T)
  ``{"method": "platt", "a": a, "b": b}``       p = sigmoid(a * logit + b)
  ``{"method": "isotonic", "x": [...], "y": [...]}``  p = interp(sigmoid(logit), x, y)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facetrust.errors import ModelError

METHODS = ("none", "temperature", "platt", "isotonic")


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(x, dtype=np.float64), -60, 60)
    return 1.0 / (1.0 + np.exp(-x))


def validate_calibration(cal: dict[str, Any]) -> None:
    """Raise ``ModelError`` if ``cal`` is not a usable calibration."""
    method = cal.get("method", "none")
    if method not in METHODS:
        raise ModelError(f"unknown calibration method {method!r}; expected one of {METHODS}")
    if method == "temperature" and not float(cal.get("temperature", 0)) > 0:
        raise ModelError("temperature calibration needs a positive 'temperature'")
    if method == "platt" and not {"a", "b"} <= cal.keys():
        raise ModelError("platt calibration needs 'a' and 'b'")
    if method == "isotonic":
        x, y = np.asarray(cal.get("x", []), float), np.asarray(cal.get("y", []), float)
        if x.ndim != 1 or x.size < 2 or x.shape != y.shape or np.any(np.diff(x) < 0):
            raise ModelError("isotonic calibration needs increasing 'x' and matching 'y' lists")


def apply_calibration(logits: np.ndarray, cal: dict[str, Any]) -> np.ndarray:
    """Calibrated fake probabilities for raw fake logits (any shape)."""
    validate_calibration(cal)
    method = cal.get("method", "none")
    logits = np.asarray(logits, dtype=np.float64)
    if method == "temperature":
        return sigmoid(logits / float(cal["temperature"]))
    if method == "platt":
        return sigmoid(float(cal["a"]) * logits + float(cal["b"]))
    if method == "isotonic":
        return np.interp(sigmoid(logits), np.asarray(cal["x"], float), np.asarray(cal["y"], float))
    return sigmoid(logits)
