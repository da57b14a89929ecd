"""Photo protection per preset: what the eye sees on the face, and what a recognizer the attack
never saw (dlib's face descriptor) still recognises.

For each photo of a fixed list (``benchmarks/protect_images.json``: 60 real face photos from
``../shared/data``, 20 each from FFHQ/gan140k, openforensics and yonsei, one person each) and
each preset, the script protects the photo and reports

- what the eye sees: face-region SSIM and PSNR (the pixels where the face's feathered mask is
  at least 0.5; mean and worst over the photos), whole-image PSNR, and the visibility word;
- what dlib decides (descriptor distance < 0.6 = same person) on the protected copy
  (a) as saved (PNG), (b) after JPEG quality 75 (Pillow, 4:2:0), (c) after resizing to 50 %
  (area) and back (bicubic); the same transformations of the unprotected original are the
  control;
- seconds per photo, and one protect call on a 1024 x 1024 photo with one face
  (``examples/astronaut.jpg`` upscaled 2x).

It writes a JSON with every figure (``--out``) and a contact sheet PNG (``--sheet``): for a few
photos, at 100 % size, the original's face, each preset's protected face, and each preset's
difference amplified 4x around mid-grey.

  OMP_NUM_THREADS=1 python benchmarks/protect.py [--presets subtle,balanced,strong]
      [--every K] [--limit N] [--threads 2] [--steps N] [--eot N] [--target-weight W] [--chroma C]
      [--lowfreq F] [--jnd-power P] [--encoders a,b] [--out FILE] [--sheet FILE]
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
from facetrust.protect import PRESET_NAMES, CloakShape, Protector
from facetrust.protect.judge import DlibJudge

ROOT = Path(__file__).resolve().parents[1]
LIST = Path(__file__).with_name("protect_images.json")
EXAMPLE = ROOT / "examples" / "astronaut.jpg"
SHEET_PHOTOS = (0, 3, 24, 45)  # indices into the list: two FFHQ, one openforensics, one yonsei
TILE = 128  # contact-sheet tile side, pixels at 100 % size


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
        "faces": res.report.faces,
        "seconds_attack": res.report.seconds_attack,
        "face_ssim": res.report.face_ssim,
        "face_psnr": res.report.face_psnr,
    }


def face_tile(img: np.ndarray, box: list[float]) -> np.ndarray:
    """A ``TILE`` x ``TILE`` crop centred on the face box, at 100 % size (edges replicated)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0, y0 = int(round(cx - TILE / 2)), int(round(cy - TILE / 2))
    p = TILE
    padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode="edge")
    return padded[y0 + p : y0 + p + TILE, x0 + p : x0 + p + TILE]


def write_sheet(path: Path, tiles: dict[int, dict[str, np.ndarray]], presets: list[str]) -> None:
    """Rows: photos; columns: original, each preset's protected face, each preset's difference
    x4 around mid-grey; 2-pixel white gutters; a header row of labels."""
    cols = ["original", *presets, *[f"{p} diff x4" for p in presets]]
    gut = 2
    head = 18
    rows = [i for i in sorted(tiles) if "original" in tiles[i]]
    width = len(cols) * (TILE + gut) + gut
    height = head + len(rows) * (TILE + gut) + gut
    sheet = np.full((height, width, 3), 255, np.uint8)
    for c, name in enumerate(cols):
        cv2.putText(
            sheet,
            name,
            (gut + c * (TILE + gut) + 3, 13),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.38,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    for r, i in enumerate(rows):
        orig = tiles[i]["original"]
        for c, name in enumerate(cols):
            if name == "original":
                t = orig
            elif name in tiles[i]:
                t = tiles[i][name]
            elif name.endswith(" diff x4") and name[:-8] in tiles[i]:
                d = tiles[i][name[:-8]].astype(np.int16) - orig.astype(np.int16)
                t = np.clip(128 + 4 * d, 0, 255).astype(np.uint8)
            else:
                continue
            y, x = head + gut + r * (TILE + gut), gut + c * (TILE + gut)
            sheet[y : y + TILE, x : x + TILE] = t
    Image.fromarray(sheet).save(path, optimize=True)


def summarise(rows: list[dict], protector: Protector) -> dict:
    fs = [r["face_ssim"] for r in rows if r["face_ssim"] is not None]
    fp = [r["face_psnr"] for r in rows if r["face_psnr"] is not None]
    ps = [r["psnr"] for r in rows if r["psnr"] is not None]
    words: dict[str, int] = {}
    for r in rows:
        words[r["visibility"]] = words.get(r["visibility"], 0) + 1
    return {
        "protector": repr(protector),
        "photos": len(rows),
        "photos_without_detected_face": sum(r["faces"] == 0 for r in rows),
        "judge": {name: rate(rows, name) for name in CONDITIONS},
        "control_unprotected": {name: rate(rows, "control_" + name) for name in CONDITIONS},
        "face_ssim_mean": float(np.mean(fs)) if fs else None,
        "face_ssim_worst": float(np.min(fs)) if fs else None,
        "face_psnr_mean": float(np.mean(fp)) if fp else None,
        "face_psnr_worst": float(np.min(fp)) if fp else None,
        "psnr_mean": float(np.mean(ps)) if ps else None,
        "psnr_worst": float(np.min(ps)) if ps else None,
        "visibility": words,
        "seconds_per_photo_mean": float(np.mean([r["seconds"] for r in rows])),
        "seconds_per_photo_median": float(statistics.median([r["seconds"] for r in rows])),
    }


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--presets", default=",".join(PRESET_NAMES))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--eot", type=int, default=None, help="EoT draws per step")
    ap.add_argument("--eps", type=float, default=None, help="L-inf cap in 8-bit levels")
    ap.add_argument(
        "--target-weight", type=float, default=None, help="pull towards another identity"
    )
    ap.add_argument("--chroma", type=float, default=None, help="CloakShape.chroma")
    ap.add_argument("--lowfreq", type=float, default=None, help="CloakShape.lowfreq")
    ap.add_argument("--chroma-lowfreq", type=float, default=None)
    ap.add_argument("--lowfreq-sigma", type=float, default=None)
    ap.add_argument("--jnd-power", type=float, default=None, help="CloakShape.jnd_power")
    ap.add_argument("--jnd-max", type=float, default=None, help="CloakShape.jnd_max")
    ap.add_argument("--encoders", default=None, help="comma-separated ensemble")
    ap.add_argument("--seed", type=int, default=0, help="the Protector's seed")
    ap.add_argument("--every", type=int, default=1, help="only every K-th photo of the list")
    ap.add_argument("--limit", type=int, default=None, help="only the first N photos")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--skip-1024", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "protect_bench.json")
    ap.add_argument("--sheet", type=Path, default=None, help="contact sheet PNG (none if omitted)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    listing = json.loads(LIST.read_text())["images"]
    indices = list(range(len(listing)))[:: args.every]
    if args.limit:
        indices = indices[: args.limit]
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    shape_kw = {
        k: v
        for k, v in (
            ("chroma", args.chroma),
            ("lowfreq", args.lowfreq),
            ("chroma_lowfreq", args.chroma_lowfreq),
            ("lowfreq_sigma", args.lowfreq_sigma),
            ("jnd_power", args.jnd_power),
            ("jnd_max", args.jnd_max),
        )
        if v is not None
    }
    kwargs: dict = {"shape": CloakShape(**shape_kw)}
    if args.encoders:
        kwargs["encoders"] = tuple(n.strip() for n in args.encoders.split(",") if n.strip())
    judge = DlibJudge()
    images = {i: load_image(args.data / listing[i]["path"]) for i in indices}
    controls = {}
    for i in indices:
        controls[i] = {n: judge(images[i], fn(images[i])).to_dict() for n, fn in CONDITIONS.items()}
    tiles: dict[int, dict[str, np.ndarray]] = {}
    results = {}
    for preset in presets:
        protector = Protector(
            preset,
            eps=None if args.eps is None else args.eps / 255,
            steps=args.steps,
            eot_samples=args.eot,
            target_weight=args.target_weight,
            seed=args.seed,
            device="cpu",
            **kwargs,
        )
        print(protector, flush=True)
        _ = protector.attack  # build the encoders before timing
        rows = []
        for n, i in enumerate(indices):
            item, img = listing[i], images[i]
            t = time.perf_counter()
            res = protector(img)
            seconds = time.perf_counter() - t
            rep = res.report
            row = {
                "path": item["path"],
                "source": item["source"],
                "seconds": round(seconds, 3),
                "faces": rep.faces,
                "face_ssim": rep.face_ssim,
                "face_psnr": rep.face_psnr,
                "psnr": rep.psnr,
                "ssim": rep.ssim,
                "linf": rep.linf,
                "visibility": rep.visibility,
                "identity_stability": rep.identity_stability,
            }
            for name, fn in CONDITIONS.items():
                row[name] = judge(img, fn(res.image)).to_dict()
                row["control_" + name] = controls[i][name]
            rows.append(row)
            if i in SHEET_PHOTOS and rep.face_boxes:
                box = rep.face_boxes[0]
                tiles.setdefault(i, {})["original"] = face_tile(img, box)
                tiles[i][preset] = face_tile(res.image, box)
            print(
                f"[{preset} {n + 1}/{len(indices)}] {item['path']}: face SSIM {rep.face_ssim} "
                f"PSNR {rep.face_psnr}, dist saved {row['saved']['distance']}, "
                f"jpeg75 {row['jpeg75']['distance']}, resize50 {row['resize50']['distance']}, "
                f"{seconds:.1f} s",
                flush=True,
            )
        summary = summarise(rows, protector)
        if not args.skip_1024:
            summary["photo_1024_one_face"] = time_1024(protector)
        results[preset] = {"summary": summary, "rows": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"presets": results}, indent=1))  # after each preset
        if args.sheet and tiles:
            write_sheet(args.sheet, tiles, list(results))

    print()
    print(
        f"{'preset':9s} {'face SSIM mean/worst':>21s} {'face PSNR mean/worst':>21s} "
        f"{'image PSNR':>10s} {'saved':>7s} {'jpeg75':>7s} {'resize50':>8s} {'s/photo':>7s}"
    )
    for preset, res in results.items():
        s = res["summary"]
        j = s["judge"]
        print(
            f"{preset:9s} {s['face_ssim_mean']:10.4f} / {s['face_ssim_worst']:.4f} "
            f"{s['face_psnr_mean']:10.2f} / {s['face_psnr_worst']:6.2f} "
            f"{s['psnr_mean']:10.2f} {pct(j['saved']['match_rate']):>7s} "
            f"{pct(j['jpeg75']['match_rate']):>7s} {pct(j['resize50']['match_rate']):>8s} "
            f"{s['seconds_per_photo_mean']:7.2f}"
        )
        if "photo_1024_one_face" in s:
            print(f"          1024 x 1024, one face: {s['photo_1024_one_face']['seconds']:.2f} s")
    c = next(iter(results.values()))["summary"]["control_unprotected"] if results else {}
    if c:
        print(
            "control (unprotected): "
            + ", ".join(f"{n} {pct(c[n]['match_rate'])}" for n in CONDITIONS)
        )
    meta = {
        "photos": [listing[i]["path"] for i in indices],
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "presets": results}, indent=1))
    print(f"written: {args.out}")
    if args.sheet and tiles:
        write_sheet(args.sheet, tiles, presets)
        print(f"contact sheet: {args.sheet} ({args.sheet.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
