"""Wall time of the CLI with the default threads against ``--threads 1`` (oversubscription check).

Runs the installed entry point (``.venv/bin/facetrust``, bytecode already compiled by a warm-up
run) as a user would, and prints one table with the median wall time per command and thread
setting, together with the load average before and after (other processes on the machine share
the cores, so the figures depend on that load).

    uv run python benchmarks/threads.py                     # detect x5, protect x1 each
    uv run python benchmarks/threads.py --detect-runs 3 --protect-runs 0
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXE = ROOT / ".venv" / "bin" / "facetrust"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def run(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode not in (0,):
        sys.exit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(ROOT / "examples" / "astronaut.jpg"))
    ap.add_argument("--detect-runs", type=int, default=5)
    ap.add_argument("--protect-runs", type=int, default=1)
    ap.add_argument(
        "--threads-1-first", action="store_true", help="run --threads 1 before the default"
    )
    a = ap.parse_args()

    # No inherited thread settings: "default" must be what a user gets.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env.pop("FACETRUST_THREADS", None)
    exe = str(EXE)
    settings = [("default", []), ("--threads 1", ["--threads", "1"])]
    if a.threads_1_first:
        settings.reverse()
    cmds = [("detect", ["detect", a.image], a.detect_runs)]
    if a.protect_runs:
        cmds.append(("protect", ["protect", a.image, "-o", "/tmp/p.png"], a.protect_runs))

    run([exe, "detect", a.image], env)  # warm-up: bytecode, model export caches, page cache
    cores = len(os.sched_getaffinity(0))
    print(f"cores available: {cores}  load before: {loadavg()}")
    rows = []
    for name, cmd, n in cmds:
        for label, flag in settings:
            times = []
            for _ in range(n):
                times.append(run([exe, *flag, *cmd], env))
            rows.append((name, label, n, statistics.median(times), min(times), max(times)))
            print(f"  {name} {label}: {[round(t, 2) for t in times]}  load {loadavg()}", flush=True)
    print(f"load after: {loadavg()}")
    print()
    print("| command | threads | runs | median s | min s | max s |")
    print("|---|---|---|---|---|---|")
    for name, label, n, med, lo, hi in rows:
        print(f"| {name} | {label} | {n} | {med:.2f} | {lo:.2f} | {hi:.2f} |")


if __name__ == "__main__":
    main()
