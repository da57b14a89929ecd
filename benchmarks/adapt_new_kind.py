"""``facetrust adapt`` end to end, with the shipped model, on a kind of fake it never saw.

The shipped default trained on eight sources and no pseudo-fakes, so a kind of pseudo-fake
(``--kinds``: ``resynth``, a whole face re-made by the autoencoder facetrust trained on reals,
i.e. a generator's decoder; ``splice``, a region pasted from another face) stands for a new
generator. The faces are the reals of the default's val and calib splits (``configs/long.yaml``,
faces none of its heads trained on), written as image files; each video (or image) goes by a
hash of its name to the team's side (u < 0.5) or the test side, and within a side to the
reals (v < 0.5) or to the faces the fakes are made from, so no fake has its real twin on
the same side as real. For each ``--ks`` k the team's first k fakes and its reals go to
:class:`facetrust.train.adapt.Adapter` (what ``facetrust adapt`` runs), and the adapted
checkpoint and the shipped one are run by ``Detector`` (what ``facetrust detect`` runs) on
the test files: AUC (95 % interval), ECE, and the shares of test reals called fake and test
fakes caught at each model's own threshold.

Usage:

  uv run python benchmarks/adapt_new_kind.py --out docs/adapt-new-kind.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from facetrust.config import apply_threads
from facetrust.data.pseudo import create_pseudo_fake
from facetrust.detect import Detector
from facetrust.train.adapt import Adapter
from facetrust.train.build import select_rows
from facetrust.train.config import load_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import fold_figures  # noqa: E402


def uniform(name: str, salt: str = "") -> float:
    """A number in [0, 1) per name and salt; independent across salts (a CRC is not: it is
    linear, so two salts of one name give correlated numbers)."""
    digest = hashlib.sha256(f"{salt}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def write_sets(rows, manifest_dir: Path, where: Path, kind: str) -> dict[str, list[Path]]:
    """Files per set (team/test x real/fake); a fake is made from a real of the other half."""
    maker = create_pseudo_fake(kind)
    rng = np.random.default_rng(0)
    sets: dict[str, list[Path]] = {}
    donors = [r for r in rows if uniform(r.group("video"), "v") >= 0.5]
    for i, r in enumerate(rows):
        g = r.group("video")
        side = "team" if uniform(g) < 0.5 else "test"
        as_real = uniform(g, "v") < 0.5
        crop = np.asarray(Image.open(manifest_dir / r.crop).convert("RGB"))
        name = f"{side}-{'real' if as_real else 'fake'}"
        out = where / kind / name / f"{i:05d}.png"
        sets.setdefault(name, []).append(out)
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if not as_real:
            lm = np.load(manifest_dir / r.landmarks) if r.landmarks else None
            d = donors[rng.integers(len(donors))]
            d_img = np.asarray(Image.open(manifest_dir / d.crop).convert("RGB"))
            d_lm = np.load(manifest_dir / d.landmarks) if d.landmarks else None
            crop = maker(crop, lm, rng, donor=d_img, donor_landmarks=d_lm).image
        Image.fromarray(crop).save(out)
    return sets


def scores(detector: Detector, files: list[Path]) -> np.ndarray:
    """The file probability per file (None without a face: dropped by the caller)."""
    return np.array([detector(f).fake_probability for f in files], dtype=object)


def judge(detector: Detector, reals: list[Path], fakes: list[Path]) -> dict:
    pr, pf = scores(detector, reals), scores(detector, fakes)
    pr = np.array([p for p in pr if p is not None], float)
    pf = np.array([p for p in pf if p is not None], float)
    y = np.r_[np.zeros(len(pr)), np.ones(len(pf))].astype(int)
    p = np.r_[pr, pf]
    t = detector.threshold
    return {
        **fold_figures(y, p, np.arange(len(p))),
        "threshold": round(t, 4),
        "reals_called_fake": round(float((pr >= t).mean()), 4),
        "fakes_caught": round(float((pf >= t).mean()), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kinds", default="resynth,splice")
    ap.add_argument("--ks", default="10,25,100")
    ap.add_argument("--fpr", type=float, default=0.05)
    ap.add_argument("--config", default="configs/long.yaml")
    ap.add_argument("--work", default="data/adapt-new-kind", help="image files written here")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    apply_threads(2)
    cfg = load_config(args.config)
    splits = select_rows(cfg)
    rows = [r for s in ("val", "calib") for r in splits[s] if r.y == 0]
    manifest_dir = Path(cfg.data.train_manifest).parent
    base = Detector(None, runtime="torch")
    base.progress = False
    out: dict = {"model": base.model_name, "faces": len(rows)}
    for kind in args.kinds.split(","):
        t0 = time.time()
        sets = write_sets(rows, manifest_dir, Path(args.work), kind)
        res = {n: len(v) for n, v in sets.items()}
        res["shipped"] = judge(base, sets["test-real"], sets["test-fake"])
        print(f"{kind:8s} shipped      {brief(res['shipped'])}", flush=True)
        adapter = Adapter(None)
        team_real = {str(f): adapter.read(f) for f in sets["team-real"]}
        order = np.random.default_rng(0).permutation(len(sets["team-fake"]))
        for k in [int(k) for k in args.ks.split(",")]:
            fakes = {str(f): adapter.read(f) for f in np.array(sets["team-fake"])[order[:k]]}
            a = adapter.fit(team_real, fakes, args.fpr)
            path = Path(args.work) / kind / f"adapted-{k}.safetensors"
            a.save(path)
            det = Detector(path, runtime="torch")
            det.progress = False
            res[f"k{k}"] = {
                **judge(det, sets["test-real"], sets["test-fake"]),
                **{
                    key: a.summary[key]
                    for key in ("auc_before", "auc_after_cv", "C", "real_faces", "fake_faces")
                },
            }
            print(
                f"{kind:8s} k={k:<4d} adapted {brief(res[f'k{k}'])} (C {a.summary['C']:g}, "
                f"cv {a.summary['auc_before']:.3f} -> {a.summary['auc_after_cv']:.3f})",
                flush=True,
            )
        out[kind] = res
        print(f"  ({time.time() - t0:.0f} s)", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


def brief(a: dict) -> str:
    return (
        f"AUC {a['auc']:.3f} ({a['auc_ci'][0]:.3f}-{a['auc_ci'][1]:.3f}) ECE {a['ece']:.3f} "
        f"at {a['threshold']:.3f}: reals called fake {a['reals_called_fake']:.3f}, "
        f"fakes caught {a['fakes_caught']:.3f}"
    )


if __name__ == "__main__":
    main()
