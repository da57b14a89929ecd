"""Photo protection, judged by a recognizer the attack never saw (dlib's face descriptor).

For each photo of a fixed list (``benchmarks/protect_images.json``: 60 real face photos from
``../shared/data``, 20 each from FFHQ/gan140k, openforensics and yonsei, one person each) the
script protects the photo and asks dlib whether the protected copy is still the same person
as the original (descriptor distance < 0.6):

  (a) as saved (PNG, lossless);
  (b) after re-encoding as JPEG quality 75 (Pillow, 4:2:0);
  (c) after resizing to 50 % (area) and back (bicubic).

As a control, the same transformations of the *unprotected* original are judged too: they
show how much the transformations alone move the descriptor. It prints match rates (lower is
better protection), mean distances, PSNR/SSIM and seconds per photo, then times one protect call
on a 1024 x 1024 photo with one face (``examples/astronaut.jpg`` upscaled 2x). A JSON with
every figure is written to ``--out``.

  python benchmarks/protect.py [--strength medium] [--limit N] [--threads 2] [--out FILE]
      [--psnr DB|off] [--eps LEVELS] [--steps N] [--eot N] [--warp-px PX] [--encoders a,b]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from facetrust.media import load_image
from facetrust.protect import Protector
from facetrust.protect.eot import EoTConfig
from facetrust.protect.judge import DlibJudge

ROOT = Path(__file__).resolve().parents[1]
LIST = Path(__file__).with_name("protect_images.json")
EXAMPLE = ROOT / "examples" / "astronaut.jpg"


def jpeg75(img: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=75)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def half_and_back(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


CONDITIONS = {"saved": lambda x: x, "jpeg75": jpeg75, "resize50": half_and_back}


def rate(rows: list[dict], key: str) -> dict:
    decided = [r[key]["match"] for r in rows if r[key]["match"] is not None]
    dists = [r[key]["distance"] for r in rows if r[key]["distance"] is not None]
    return {
        "match_rate": None if not decided else sum(decided) / len(decided),
        "decided": len(decided),
        "mean_distance": None if not dists else float(np.mean(dists)),
        "protected_not_detected": sum(not r[key]["protected_detected"] for r in rows),
    }


def time_1024(protector: Protector) -> dict:
    img = load_image(EXAMPLE)
    big = cv2.resize(img, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    t0 = time.perf_counter()
    res = protector(big)
    return {
        "seconds": round(time.perf_counter() - t0, 2),
        "faces": res.report["faces"],
        "seconds_attack": res.report.get("seconds_attack"),
        "psnr": res.report["psnr"],
        "identity_stability": res.report["identity_stability"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--strength", default="medium")
    ap.add_argument("--eps", type=float, default=None, help="budget in 8-bit levels")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--eot", type=int, default=None, help="EoT draws per step")
    ap.add_argument("--psnr", default=None, help="PSNR target in dB, or 'off' (L-inf PGD)")
    ap.add_argument("--warp-px", type=float, default=None)
    ap.add_argument("--encoders", default=None, help="comma-separated ensemble")
    ap.add_argument("--no-warp", action="store_true")
    ap.add_argument(
        "--no-view-jitter",
        action="store_true",
        help="EoT without the random flips and rotations (the cloak before session 4)",
    )
    ap.add_argument("--seed", type=int, default=0, help="the Protector's seed")
    ap.add_argument("--limit", type=int, default=None, help="only the first N photos")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--skip-1024", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "protect_bench.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    listing = json.loads(LIST.read_text())["images"]
    if args.limit:
        listing = listing[: args.limit]
    kwargs = {}
    if args.encoders:
        kwargs["encoders"] = tuple(n.strip() for n in args.encoders.split(",") if n.strip())
    if args.psnr is not None:
        kwargs["psnr"] = None if args.psnr == "off" else float(args.psnr)
    if args.no_view_jitter:
        kwargs["eot"] = EoTConfig(p_flip=0.0, p_rotate=0.0)
    protector = Protector(
        args.strength,
        eps=None if args.eps is None else args.eps / 255,
        steps=args.steps,
        eot_samples=args.eot,
        warp=not args.no_warp,
        warp_px=args.warp_px,
        seed=args.seed,
        **kwargs,
    )
    print(protector)
    t0 = time.perf_counter()
    _ = protector.attack  # build the encoders before timing
    print(f"encoders built in {time.perf_counter() - t0:.1f} s")
    judge = DlibJudge()

    rows = []
    for i, item in enumerate(listing):
        img = load_image(args.data / item["path"])
        t = time.perf_counter()
        res = protector(img)
        seconds = time.perf_counter() - t
        row = {
            "path": item["path"],
            "source": item["source"],
            "seconds": round(seconds, 3),
            "faces": res.report["faces"],
            "psnr": res.report["psnr"],
            "ssim": res.report["ssim"],
            "linf": res.report["linf"],
            "identity_stability": res.report["identity_stability"],
        }
        for name, fn in CONDITIONS.items():
            row[name] = judge(img, fn(res.image)).to_dict()
            row["control_" + name] = judge(img, fn(img)).to_dict()
        rows.append(row)
        print(
            f"[{i + 1}/{len(listing)}] {item['path']}: faces {row['faces']}, "
            f"dist saved {row['saved']['distance']}, jpeg75 {row['jpeg75']['distance']}, "
            f"resize50 {row['resize50']['distance']}, PSNR {row['psnr']}, {seconds:.1f} s",
            flush=True,
        )

    psnrs = [r["psnr"] for r in rows if r["psnr"] is not None]
    summary = {
        "protector": repr(protector),
        "photos": len(rows),
        "photos_without_detected_face": sum(r["faces"] == 0 for r in rows),
        "judge": {name: rate(rows, name) for name in CONDITIONS},
        "control_unprotected": {name: rate(rows, "control_" + name) for name in CONDITIONS},
        "psnr_mean": float(np.mean(psnrs)) if psnrs else None,
        "psnr_min": float(np.min(psnrs)) if psnrs else None,
        "ssim_mean": float(np.mean([r["ssim"] for r in rows])),
        "seconds_per_photo_mean": float(np.mean([r["seconds"] for r in rows])),
        "seconds_per_photo_median": float(statistics.median([r["seconds"] for r in rows])),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }
    if not args.skip_1024:
        summary["photo_1024_one_face"] = time_1024(protector)

    print()
    print(f"{'condition':10s} {'match rate':>10s} {'mean dist':>10s} {'control':>10s}")
    for name in CONDITIONS:
        j, c = summary["judge"][name], summary["control_unprotected"][name]

        def pct(v):
            return "-" if v is None else f"{100 * v:.1f} %"

        dist = "-" if j["mean_distance"] is None else f"{j['mean_distance']:.3f}"
        print(f"{name:10s} {pct(j['match_rate']):>10s} {dist:>10s} {pct(c['match_rate']):>10s}")
    if psnrs:
        print(f"PSNR mean {summary['psnr_mean']:.2f} dB (min {summary['psnr_min']:.2f})")
    print(
        f"SSIM mean {summary['ssim_mean']:.4f}, "
        f"{summary['seconds_per_photo_mean']:.2f} s per photo "
        f"({summary['torch_threads']} torch threads)"
    )
    if "photo_1024_one_face" in summary:
        print(f"1024 x 1024, one face: {summary['photo_1024_one_face']['seconds']:.2f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
