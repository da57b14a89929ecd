"""Hostile inputs against a real server: status, time and memory for each, and whether a normal
request sent meanwhile is still answered quickly.

Starts ``facetrust serve`` on 127.0.0.1 (a free port), then for each file of
``tests/serve/hostile_inputs.py`` (thin PNG, RGBA 7000x7000 PNG, lossless WebP bomb, FFV1
video of 7000x7000 frames, 20,000-frame video) POSTs it to ``/v1/detect`` and, 0.2 s later,
the example photo. Prints one line per input: the hostile request's status and seconds, the
normal request's seconds, the server's peak RSS during the request (``VmHWM``, reset before
each input through ``/proc/PID/clear_refs``) and its RSS afterwards::

    python benchmarks/hostile.py                      # the shipped default model
    python benchmarks/hostile.py --model path/to/checkpoint.safetensors
    python benchmarks/hostile.py --protect            # also POST each to /v1/protect
    python benchmarks/hostile.py --protect-burst 4    # 4 RGBA 7000^2 PNGs to /v1/protect at once

Linux only (reads /proc). Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "astronaut.jpg"


def _load_inputs():
    path = ROOT / "tests" / "serve" / "hostile_inputs.py"
    spec = importlib.util.spec_from_file_location("hostile_inputs", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["hostile_inputs"] = module
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env_extra: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "FACETRUST_LOG_LEVEL": "warning", **env_extra}
    cmd = [sys.executable, "-m", "facetrust.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited during startup")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("the server did not start within 120 s")


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def probe(url: str, pid: int, route: str, name: str, data: bytes, normal: bytes) -> dict:
    """POST ``data`` to ``route``; 0.2 s later POST the normal photo to /v1/detect."""
    _reset_peak(pid)
    out: dict = {}

    def normal_request() -> None:
        time.sleep(0.2)
        t0 = time.perf_counter()
        r = httpx.post(url + "/v1/detect", files={"file": ("a.jpg", normal)}, timeout=300)
        out["normal_s"] = time.perf_counter() - t0
        out["normal_status"] = r.status_code

    thread = threading.Thread(target=normal_request)
    thread.start()
    t0 = time.perf_counter()
    r = httpx.post(url + route, files={"file": (name, data)}, timeout=300)
    out["seconds"] = time.perf_counter() - t0
    out["status"] = r.status_code
    out["detail"] = r.json().get("detail", "") if r.status_code >= 400 else ""
    thread.join()
    time.sleep(0.5)  # let the gate trim the heap
    out["peak_mb"] = _status_kb(pid, "VmHWM") / 1024
    out["after_mb"] = _status_kb(pid, "VmRSS") / 1024
    return out


def burst(url: str, pid: int, n: int, hostile: list) -> None:
    """``n`` concurrent uploads of the RGBA PNG to /v1/protect (each is decoded to validate it
    before the job is queued): statuses, seconds and the server's peak RSS meanwhile."""
    data = next(h.data for h in hostile if h.name == "rgba7000.png")
    before = _status_kb(pid, "VmRSS") / 1024
    _reset_peak(pid)
    results: list = []

    def post() -> None:
        t0 = time.perf_counter()
        r = httpx.post(url + "/v1/protect", files={"file": ("p.png", data)}, timeout=300)
        results.append((r.status_code, time.perf_counter() - t0))

    threads = [threading.Thread(target=post) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    peak = _status_kb(pid, "VmHWM") / 1024
    statuses = sorted(s for s, _ in results)
    slowest = max(t for _, t in results)
    print(
        f"/v1/protect burst of {n} RGBA 7000x7000 PNGs: statuses {statuses}, all answered in "
        f"{slowest:.2f} s; RSS {before:.0f} MB before, peak {peak:.0f} MB (+{peak - before:.0f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint path or shipped name (default: shipped default)")
    ap.add_argument("--protect", action="store_true", help="also POST each to /v1/protect")
    ap.add_argument(
        "--protect-burst",
        type=int,
        default=0,
        help="POST this many RGBA 7000x7000 PNGs to /v1/protect at once; print the peak RSS "
        "until all are accepted",
    )
    args = ap.parse_args()
    hostile = _load_inputs().hostile_inputs()
    normal = SAMPLE.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"FACETRUST_JOB_DIR": str(Path(tmp) / "jobs"), "FACETRUST_DEVICE": "cpu"}
        if args.model:
            env["FACETRUST_MODEL"] = args.model
        proc, url = start_server(env)
        try:
            httpx.post(url + "/v1/detect", files={"file": ("a.jpg", normal)}, timeout=120)
            base = _status_kb(proc.pid, "VmRSS") / 1024
            alone = []
            for _ in range(3):
                t0 = time.perf_counter()
                httpx.post(url + "/v1/detect", files={"file": ("a.jpg", normal)}, timeout=120)
                alone.append(time.perf_counter() - t0)
            print(
                f"server RSS after one normal request: {base:.0f} MB; a normal request alone: "
                f"{sorted(alone)[1]:.2f} s (median of 3)"
            )
            head = f"{'route':<11} {'input':<14} {'status':>6} {'time s':>7} {'normal s':>9}"
            print(f"{head} {'peak MB':>8} {'after MB':>9}  detail")
            if args.protect_burst:
                burst(url, proc.pid, args.protect_burst, hostile)
            routes = ["/v1/detect"] + (["/v1/protect"] if args.protect else [])
            for route in routes:
                for h in hostile:
                    r = probe(url, proc.pid, route, h.name, h.data, normal)
                    print(
                        f"{route:<11} {h.name:<14} {r['status']:>6} {r['seconds']:>7.2f} "
                        f"{r['normal_s']:>9.2f} {r['peak_mb']:>8.0f} {r['after_mb']:>9.0f}  "
                        f"{r['detail'][:70]}"
                    )
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
