"""Cold start of ``facetrust detect`` on one image: median of fresh processes per model, runtime.

Each run is a new ``facetrust detect examples/astronaut.jpg --model M --runtime R --json``
process, timed from spawn to exit (wall) with its CPU time (user + sys, from ``wait4``), as a
user at a shell would see it. Before timing, the package's own modules are compiled to bytecode
(``compileall``; the venv's packages are compiled by ``uv sync --compile-bytecode``) and, for
the onnx runtime, the model's export is put in the cache (``facetrust export --model M``), as
the README's set-up does. One untimed run per configuration warms the OS file cache.

    python benchmarks/cold_start.py                 # fast and default, torch and onnx, 5 runs
    python benchmarks/cold_start.py --runs 3 --models facetrust-fast --runtimes onnx

The machine's load average is printed before and after: on a shared machine the wall time
grows with the load, the CPU time much less.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "astronaut.jpg"
FACETRUST = Path(sys.executable).with_name("facetrust")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def run_once(model: str, runtime: str) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh ``facetrust detect`` process."""
    cmd = [str(FACETRUST), "detect", str(IMAGE), "--model", model, "--runtime", runtime, "--json"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["facetrust-fast", "facetrust-default"])
    ap.add_argument("--runtimes", nargs="+", default=["onnx", "torch"])
    args = ap.parse_args()

    compileall.compile_dir(str(ROOT / "src" / "facetrust"), quiet=1)
    if "onnx" in args.runtimes:
        from facetrust.detect.onnx_export import onnx_cache_path
        from facetrust.models.zoo import resolve_model

        for model in args.models:  # the export in the cache, as after the set-up step
            if not onnx_cache_path(resolve_model(model)).is_file():
                subprocess.run([str(FACETRUST), "export", "--model", model], check=True,
                               stdout=subprocess.DEVNULL)  # fmt: skip
    print(f"load average before: {loadavg()}  ({os.cpu_count()} CPUs)")
    print(f"{'model':20s} {'runtime':8s} {'median wall s':>13s} {'min wall s':>10s} "
          f"{'median CPU s':>12s}  runs")  # fmt: skip
    for model in args.models:
        for runtime in args.runtimes:
            run_once(model, runtime)  # warms the file cache
            times = [run_once(model, runtime) for _ in range(args.runs)]
            walls = [w for w, _ in times]
            cpus = [c for _, c in times]
            print(
                f"{model:20s} {runtime:8s} {statistics.median(walls):13.2f} {min(walls):10.2f} "
                f"{statistics.median(cpus):12.2f}  {args.runs}",
                flush=True,
            )
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
