"""Reading a media upload: multipart ``file`` or JSON ``{"image": base64}``, typed by content.

The body size is bounded by ``BodyLimitMiddleware`` before anything here reads it. Nothing a
client sends is used as a path: uploads stay bytes in memory (Starlette spools multipart
parts larger than 1 MiB to an anonymous temporary file of its own).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from facetrust.media.sniff import sniff_kind
from facetrust.serve.errors import ApiError

__all__ = [
    "MEDIA_KINDS",
    "Upload",
    "media_body",
    "read_media",
    "read_upload",
    "safe_name",
    "sniff_upload",
    "stream_json_with_file",
]

_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+(?:;[\w.+-]+=[\w.+-]+)*;base64,", re.IGNORECASE)
_B64_CHARS = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")
MEDIA_KINDS = "a JPEG, PNG, WEBP, BMP, TIFF or GIF image, or an MP4, MOV, AVI, MKV or WEBM video"


def media_body(
    field: str = "file",
    json_key: str | None = "image",
    what: str = "",
    extra_fields: dict[str, Any] | None = None,
) -> dict:
    """``openapi_extra`` documenting a multipart (and optionally JSON base64) request body;
    ``extra_fields``: other multipart fields (name: JSON schema)."""
    content: dict[str, Any] = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [field],
                "properties": {
                    field: {
                        "type": "string",
                        "format": "binary",
                        "minLength": 1,
                        "description": what or MEDIA_KINDS,
                    },
                    **(extra_fields or {}),
                },
            }
        }
    }
    if json_key:
        content["application/json"] = {
            "schema": {
                "type": "object",
                "required": [json_key],
                "properties": {
                    json_key: {
                        "type": "string",
                        "minLength": 1,
                        "description": "the file as base64 (a data: URL prefix is accepted)",
                    }
                },
            }
        }
    return {"requestBody": {"required": True, "content": content}}


@dataclass
class Upload:
    """An uploaded file: its bytes, its sanitised file name (None when the client sent none)
    and the other multipart form fields (text only)."""

    data: bytes
    name: str | None = None
    fields: dict[str, str] = dataclasses.field(default_factory=dict)


_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def safe_name(name: str | None, limit: int = 255) -> str | None:
    """A client's file name reduced to its last component, without control characters, at most
    ``limit`` characters; None when nothing is left. Never used as a path on the server."""
    if not name:
        return None
    base = _UNSAFE.sub("", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    if base in ("", ".", ".."):
        return None
    return base[-limit:]


async def read_media(
    request: Request, field: str = "file", json_key: str | None = "image"
) -> bytes:
    """The uploaded file's bytes, from multipart ``field`` or JSON ``{json_key: base64}``."""
    return (await read_upload(request, field, json_key)).data


async def read_upload(
    request: Request, field: str = "file", json_key: str | None = "image"
) -> Upload:
    """The uploaded file (bytes, sanitised name, other form fields), from multipart ``field``
    or JSON ``{json_key: base64}``."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=4, max_fields=16, max_part_size=64 * 1024)
        try:
            item = form.get(field)
            if not isinstance(item, UploadFile):
                raise ApiError(422, f"send the file in a multipart field named '{field}'")
            others = {k: v for k, v in form.multi_items() if k != field and isinstance(v, str)}
            return Upload(await item.read(), safe_name(item.filename), others)
        finally:
            await form.close()
    if json_key and (ctype == "application/json" or ctype.endswith("+json")):
        raw = await request.body()
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):
            raise ApiError(400, "the request body is not valid JSON") from None
        value = payload.get(json_key) if isinstance(payload, dict) else None
        if not isinstance(value, str):
            raise ApiError(422, f'send JSON {{"{json_key}": "<base64>"}}')
        return Upload(decode_base64(value, json_key))
    accepted = f"multipart/form-data with a '{field}' field"
    if json_key:
        accepted += f', or JSON {{"{json_key}": "<base64>"}}'
    raise ApiError(415, f"send {accepted}")


def decode_base64(text: str, name: str = "image") -> bytes:
    """Strict base64 (standard or URL-safe alphabet, padding optional, whitespace ignored)."""
    text = text.strip()
    m = _DATA_URL.match(text[:256])
    if m:
        text = text[m.end() :]
    text = "".join(text.split())
    if not text:
        raise ApiError(422, f"'{name}' is empty")
    if not _B64_CHARS.match(text) or len(text.rstrip("=")) % 4 == 1:
        raise ApiError(422, f"'{name}' is not valid base64")
    text += "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text)
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, f"'{name}' is not valid base64") from None


def sniff_upload(data: bytes) -> str:
    """``"image"`` or ``"video"`` by content; 400 for an empty file, 415 for anything else."""
    if not data:
        raise ApiError(400, "empty file")
    kind = sniff_kind(data[:64])
    if kind is None:
        raise ApiError(415, f"unsupported file type: send {MEDIA_KINDS}")
    return kind


def stream_json_with_file(
    head: dict[str, Any], key: str, path: Path, tail: dict[str, Any], chunk: int = 3 * 2**16
) -> Iterator[bytes]:
    """A JSON object ``{**head, key: <base64 of the file>, **tail}`` as byte chunks.

    The file is read and encoded a chunk at a time (a multiple of 3 bytes, so the pieces join
    into one valid base64 string): serving a large result costs ``chunk`` bytes of memory, not
    the file's size times 4/3.
    """
    if chunk % 3:
        raise ValueError("chunk must be a multiple of 3")
    opening = json.dumps(head)[:-1]
    yield (opening + (", " if head else "") + json.dumps(key) + ': "').encode()
    with path.open("rb") as f:
        while piece := f.read(chunk):
            yield base64.b64encode(piece)
    rest = json.dumps(tail)[1:]
    yield ('"' + (", " + rest if tail else "}")).encode()
