"""Structured logs: one JSON object per line on stderr, for the service and for uvicorn."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["JsonFormatter", "configure_logging", "uvicorn_log_config"]

# LogRecord attributes that are not "extra" fields.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is at the time of each record."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


#: Libraries whose log lines go through the same JSON handler: Python warnings (Pillow's
#: among them, via ``logging.captureWarnings``) and the multipart parser.
LIBRARY_LOGGERS = ("py.warnings", "python_multipart", "multipart", "PIL")


def configure_logging(level: str = "info") -> None:
    """Send ``facetrust`` logs, Python warnings and the multipart parser's lines to stderr as
    JSON lines at ``level`` (idempotent)."""
    logging.captureWarnings(True)
    for name in ("facetrust", *LIBRARY_LOGGERS):
        logger = logging.getLogger(name)
        logger.setLevel(level.upper() if name == "facetrust" else max(logging.WARNING, _num(level)))
        if not any(getattr(h, "_facetrust_json", False) for h in logger.handlers):
            handler = _StderrHandler()
            handler.setFormatter(JsonFormatter())
            handler._facetrust_json = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
        logger.propagate = False


def _num(level: str) -> int:
    return logging.getLevelName(level.upper()) if isinstance(level, str) else int(level)


def uvicorn_log_config(level: str = "info") -> dict[str, Any]:
    """A ``logging.config`` dict for uvicorn that writes its own logs as JSON lines too."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["json"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"handlers": ["json"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": ["json"], "level": "WARNING", "propagate": False},
        },
    }
