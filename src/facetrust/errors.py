"""Error types. Every error a user can cause is an ``InputError`` with a one-line message."""

from __future__ import annotations


class FacetrustError(Exception):
    """Base class for all facetrust errors."""


class InputError(FacetrustError, ValueError):
    """The input (file, bytes, argument) cannot be used; the message says why in one line."""


class MediaError(InputError):
    """An image or video cannot be decoded, or breaks a size limit."""


class ModelError(FacetrustError):
    """A model or checkpoint cannot be built or loaded."""


class NoModelError(ModelError):
    """No trained detector is installed or named."""
