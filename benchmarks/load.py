"""Loopback load test of the API: throughput, p50/p99 latency and errors under concurrency.

Starts ``facetrust serve`` on 127.0.0.1 (a free port), then for each client count POSTs the
sample image to ``/v1/detect`` from that many concurrent clients until a fixed number of
requests is done or the time cap is reached, and prints one line per level::

    python benchmarks/load.py --model path/to/checkpoint.safetensors
    python benchmarks/load.py --clients 50 200 --requests 400 --time-cap 60
    python benchmarks/load.py --url http://127.0.0.1:8000   # an already running server

Latencies include queueing: detections share a few inference slots, so with C clients a
request waits for most of the others. Beyond ``FACETRUST_MAX_ACTIVE_REQUESTS`` (64) requests
in the server at once, a request is answered 503 with a JSON body and ``Retry-After``; the
clients here wait that long and try again, as a well-behaved client does. A "connection
error" is any request that got no HTTP answer at all (reset, refused, timed out): there must be
none.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "astronaut.jpg"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str | None, device: str, job_dir: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "FACETRUST_DEVICE": device, "FACETRUST_JOB_DIR": job_dir}
    env["FACETRUST_LOG_LEVEL"] = "warning"
    if model:
        env["FACETRUST_MODEL"] = model
    cmd = [sys.executable, "-m", "facetrust.cli", "serve", "--host", "127.0.0.1"]
    proc = subprocess.Popen(cmd + ["--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited during startup (is a model installed/named?)")
        try:
            health = httpx.get(url + "/health", timeout=2).json()
            if not health["model_loaded"]:
                proc.terminate()
                raise SystemExit("the server has no model: pass --model PATH")
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("the server did not start within 120 s")


async def run_level(url: str, payload: bytes, clients: int, requests: int, cap_s: float) -> dict:
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    issued = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    timeout = httpx.Timeout(cap_s + 30.0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        started = time.perf_counter()
        deadline = started + cap_s

        async def worker() -> None:
            nonlocal issued
            while issued < requests and time.perf_counter() < deadline:
                issued += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/detect", files={"file": ("a.jpg", payload)})
                    if r.status_code == 200:
                        latencies.append(time.perf_counter() - t0)
                    elif r.status_code == 503:
                        shaped = r.headers.get("retry-after") and "detail" in r.json()
                        errors["HTTP 503" if shaped else "HTTP 503 without JSON/Retry-After"] += 1
                        await asyncio.sleep(float(r.headers.get("retry-after") or 1))
                    else:
                        errors[f"HTTP {r.status_code}"] += 1
                except httpx.HTTPError as exc:
                    errors[f"connection error ({type(exc).__name__})"] += 1

        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else None
    return {
        "clients": clients,
        "requests": issued,
        "ok": len(latencies),
        "errors": dict(errors),
        "wall_s": wall,
        "throughput": len(latencies) / wall if wall > 0 else 0.0,
        "p50_ms": 1000 * (q[49] if q else (latencies[0] if latencies else float("nan"))),
        "p99_ms": 1000 * (q[98] if q else (latencies[0] if latencies else float("nan"))),
        "capped": issued < requests,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="checkpoint for the server (default: FACETRUST_MODEL)")
    ap.add_argument("--url", help="use this running server instead of starting one")
    ap.add_argument("--clients", type=int, nargs="+", default=[50, 200, 300])
    ap.add_argument("--requests", type=int, default=400, help="requests per level")
    ap.add_argument("--time-cap", type=float, default=60.0, help="seconds per level at most")
    ap.add_argument("--image", type=Path, default=SAMPLE)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    payload = args.image.read_bytes()

    proc = None
    with tempfile.TemporaryDirectory(prefix="facetrust-load-") as tmp:
        url = args.url
        if url is None:
            proc, url = start_server(args.model, args.device, tmp)
        try:
            info = httpx.get(url + "/health", timeout=10).json()
            print(
                f"server {url}: model {info['model']} on {info['device']}, "
                f"{os.cpu_count()} CPUs; image {args.image.name} ({len(payload)} bytes)"
            )
            httpx.post(url + "/v1/detect", files={"file": ("a.jpg", payload)}, timeout=120)
            print(
                f"{'clients':>7} {'requests':>8} {'ok':>6} {'req/s':>7} {'p50 ms':>8} "
                f"{'p99 ms':>8} {'wall s':>7}  errors"
            )
            for c in args.clients:
                res = asyncio.run(run_level(url, payload, c, args.requests, args.time_cap))
                errs = ", ".join(f"{k}: {v}" for k, v in res["errors"].items()) or "none"
                note = " (time cap reached)" if res["capped"] else ""
                print(
                    f"{res['clients']:>7} {res['requests']:>8} {res['ok']:>6} "
                    f"{res['throughput']:>7.1f} {res['p50_ms']:>8.0f} {res['p99_ms']:>8.0f} "
                    f"{res['wall_s']:>7.1f}  {errs}{note}"
                )
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
