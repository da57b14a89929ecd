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


class MissingExtraError(FacetrustError, ImportError):
    """An optional part of facetrust is used without its extra installed; the message names
    the command that installs it."""


def one_line(text: object) -> str:
    """``text`` as one line: line breaks and other control characters escaped, length capped.
    What a CLI error line or an HTTP ``detail`` shows of a message."""
    s = str(text)
    s = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in s)
    return s if len(s) <= 300 else s[:297] + "..."
