"""Fixtures for the service tests: an app on the tiny checkpoint, a quick test protector, and a
real uvicorn server on 127.0.0.1 for the browser and socket tests."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from facetrust.serve import ServeSettings, create_app

from .servers import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "astronaut.jpg"


class InvertProtector:
    """Test scaffolding for the job machinery: "protects" by inverting the image. It is passed
    to ``create_app(protector_factory=...)`` explicitly; the product never falls back to it."""

    def __init__(self, strength: str, gate: threading.Event | None = None) -> None:
        self.strength = strength
        self.gate = gate

    def __call__(self, image: np.ndarray) -> SimpleNamespace:
        if self.gate is not None:
            assert self.gate.wait(30), "test gate never opened"
        return SimpleNamespace(
            image=255 - image,
            report={
                "faces": 1,
                "identity_stability": 0.25,
                "strength": self.strength,
                "seconds": 0.01,
                "message": "inverted",
                "per_channel_mean": np.float32(1.5),  # numpy values must serialise
            },
        )


def make_settings(tmp: Path, checkpoint: Path | None, **overrides) -> ServeSettings:
    values = {
        "model": str(checkpoint) if checkpoint else None,
        "device": "cpu",
        "job_dir": tmp / "jobs",
        "log_level": "warning",
        "video_frames": 8,
        # Starlette's TestClient sends "Host: testserver"
        "allowed_hosts": ["testserver", "127.0.0.1", "localhost"],
        **overrides,
    }
    return ServeSettings(**values)


@pytest.fixture(scope="module")
def settings(tmp_path_factory, tiny_checkpoint) -> ServeSettings:
    return make_settings(tmp_path_factory.mktemp("serve"), tiny_checkpoint)


@pytest.fixture(scope="module")
def client(settings):
    app = create_app(settings, protector_factory=InvertProtector)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="session")
def example_jpeg() -> bytes:
    return EXAMPLE.read_bytes()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, tiny_checkpoint):
    """``python -m facetrust.cli serve`` on a free loopback port; yields its base URL."""
    tmp = tmp_path_factory.mktemp("live")
    port = free_port()
    env = {
        **os.environ,
        "FACETRUST_MODEL": str(tiny_checkpoint),
        "FACETRUST_DEVICE": "cpu",
        "FACETRUST_JOB_DIR": str(tmp / "jobs"),
        "FACETRUST_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
        "FACETRUST_LOG_LEVEL": "info",
    }
    log = (tmp / "server.log").open("wb")
    cmd = [sys.executable, "-m", "facetrust.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {(tmp / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in 90 s")
            time.sleep(0.3)
        yield SimpleNamespace(url=base, port=port, tmp=tmp)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def serve_process(tmp: Path, checkpoint: Path, **settings: object):
    """``python -m facetrust.cli serve`` on a free loopback port with ``FACETRUST_<NAME>``
    settings; yields (base URL, process, log path)."""
    port = free_port()
    env = {
        **os.environ,
        "FACETRUST_MODEL": str(checkpoint),
        "FACETRUST_DEVICE": "cpu",
        "FACETRUST_JOB_DIR": str(tmp / "jobs"),
        "FACETRUST_LOG_LEVEL": "info",
        **{f"FACETRUST_{k.upper()}": str(v) for k, v in settings.items()},
    }
    log_path = tmp / f"server-{port}.log"
    log = log_path.open("wb")
    cmd = [sys.executable, "-m", "facetrust.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in 90 s")
            time.sleep(0.3)
        yield base, proc, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
