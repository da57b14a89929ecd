"""Provenance fixtures, all made here (see fixtures.py)."""

from __future__ import annotations

import numpy as np
import pytest

from . import fixtures as F


@pytest.fixture(scope="session")
def rgb() -> np.ndarray:
    return F.example_rgb()


@pytest.fixture(scope="session")
def chain() -> tuple[str, str, str]:
    return F.cert_chain()


@pytest.fixture(scope="session")
def signed_jpeg(rgb, chain) -> bytes:
    return F.c2pa_signed(F.jpeg_bytes(rgb), chain)


@pytest.fixture(scope="session")
def watermarked(rgb) -> np.ndarray:
    return F.watermarked_rgb(rgb)


@pytest.fixture(scope="session")
def files(tmp_path_factory, rgb, signed_jpeg, watermarked) -> dict:
    """One file per evidence kind, plus a plain photo and a file that is not media."""
    d = tmp_path_factory.mktemp("prov")
    out = {
        "a1111": F.a1111_png(rgb),
        "comfy": F.comfy_png(rgb),
        "xmp": F.xmp_jpeg(rgb),
        "watermark": F.png_bytes(watermarked),
        "signed": signed_jpeg,
        "tampered": F.flip_byte(signed_jpeg, F.scan_byte(signed_jpeg)),
        "stripped": F.strip_app11(signed_jpeg),
        "plain": F.jpeg_bytes(rgb),
    }
    paths = {}
    for name, data in out.items():
        ext = "png" if data[:4] == b"\x89PNG" else "jpg"
        paths[name] = d / f"{name}.{ext}"
        paths[name].write_bytes(data)
    paths["garbage"] = d / "garbage.jpg"
    paths["garbage"].write_bytes(b"this is not an image")
    return {"dir": d, "paths": paths, "bytes": out}
