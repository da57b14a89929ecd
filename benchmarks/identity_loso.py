"""Does a face recognizer's view of a face transfer to kinds of fake it never saw?

  python benchmarks/identity_loso.py [--kinds sbi,splice,trace] [--c 0.01] [--control]

A face recognizer is trained to give one identity the same embedding whatever the camera,
light, resolution or codec, which is what tells the sources of this data apart (every CLIP and
CNN feature predicts the source at 0.93-0.99 balanced accuracy, from reals alone). So its
features might carry what a generated or edited face looks like and less of where it came from.
This benchmark measures that on the same stratified sample, pseudo-fake twins and
leave-one-kind-out folds as ``benchmarks/pseudo_loso.py``, with the two recognizers facetrust
ships for protection (``facetrust.protect.encoders``):

  faceres       HSE FaceRes's 1024-d descriptor, L2-normalised
  faceres-L     its pooled feature maps of 6 blocks (pointwise convolutions 3, 5, ..., 13) and
                the descriptor, each L2-normalised (the CLIP expert's RINE-style layout)
  mobilefacenet MobileFaceNet's 192-d centred embedding, L2-normalised

For each view: (a) how well it predicts the source (8-way, grouped; reals alone too), then set-ups
A (real fakes of the other kinds) and B (A + the pseudo-fake twins of the training reals) of
``pseudo_loso.py``, AUC / ECE per held-out kind; ``clip+VIEW`` averages that head with the CLIP
head on class + mean tokens, L2 (``pseudo_loso.py``'s reference, setup B) with equal weights
after dividing each by its spread on the training rows (``facetrust fuse --weights equal``'s
rule); ``clip`` is that CLIP head alone, for reference. ``--control`` adds the real-vs-real
control of each single head fitted on every kind.

Embeddings are cached in data/identity-loso-<kinds>.npz (~5 min on 2 cores for 2,562 crops and
1,500 twins); the CLIP tokens come from pseudo_loso.py's cache (~50 min to build if missing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_crop, read_manifest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pseudo_loso as pl  # noqa: E402
from loso import FOLDS  # noqa: E402
from shortcuts import sample  # noqa: E402

FACERES_BLOCKS = tuple(f"conv_pw_{i}_relu/Relu" for i in (3, 5, 7, 9, 11, 13))
VIEWS = ("faceres", "faceres-L", "mobilefacenet")


class Embedder:
    """Crops (``(H, W, 3)`` uint8 RGB) -> ``{"faceres": (N, 7, 1024 max), ...}`` raw vectors."""

    def __init__(self) -> None:
        from facetrust.models.tfjs import load_tfjs_graph
        from facetrust.protect.encoders import FACERES_DIR, FACERES_OUTPUT, build_encoder

        self.faceres = build_encoder("faceres")  # its preprocessing (224 px, BGR, caffe means)
        graph = load_tfjs_graph(
            FACERES_DIR / "faceres.json", outputs=[*FACERES_BLOCKS, FACERES_OUTPUT]
        )
        self.faceres_maps = graph.eval()  # fed BGR, as the encoder feeds its own graph
        self.mobilefacenet = build_encoder("mobilefacenet")

    def __call__(self, crops: list[np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            outs = self.faceres_maps(self.faceres.preprocess(x).flip(1))
            # block maps come in TF layout (N, H, W, C): their mean over space, then the
            # descriptor; padded to one width so they stack as (N, 7, 1024)
            vecs = [o.mean(dim=(1, 2)) if o.ndim == 4 else o for o in outs]
            width = max(v.shape[1] for v in vecs)
            layers = torch.stack(
                [torch.nn.functional.pad(v, (0, width - v.shape[1])) for v in vecs], 1
            )
            mfn = self.mobilefacenet(x)
        return {"faceres": layers.numpy().astype(np.float32), "mobilefacenet": mfn.numpy()}


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def view(raw: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name == "faceres":
        return unit(raw["faceres"][:, -1])
    if name == "faceres-L":
        return unit(raw["faceres"]).reshape(len(raw["faceres"]), -1)
    if name == "mobilefacenet":
        return unit(raw["mobilefacenet"])
    raise ValueError(name)


def embeddings(manifest: Path, rows, reals, kinds: list[str], seed: int) -> dict:
    """``{"x": {...}, "xp": {...}}``: the raw vectors of the sample's crops and of one pseudo-fake
    twin per real (the same twins as pseudo_loso.py's cache of the same kinds and seed)."""
    keys = [r.crop for r in rows]
    sfx = f"-seed{seed}" if seed else ""
    cache = Path(f"data/identity-loso-{'+'.join(kinds)}{sfx}.npz")
    if cache.is_file():
        with np.load(cache) as z:
            if list(z["keys"]) == keys:
                return {
                    part: {k: z[f"{part}_{k}"] for k in ("faceres", "mobilefacenet")}
                    for part in ("x", "xp")
                }
    embed = Embedder()
    t0 = time.time()
    got: dict[str, dict[str, list]] = {"x": {}, "xp": {}}
    for b in range(0, len(rows), 32):
        for k, v in embed([read_crop(manifest, r.crop) for r in rows[b : b + 32]]).items():
            got["x"].setdefault(k, []).append(v)
        print(
            f"  crops {min(b + 32, len(rows))}/{len(rows)} ({time.time() - t0:.0f} s)", flush=True
        )
    make, _ = pl.make_fakes(kinds)
    for b, fakes in pl.twin_batches(manifest, rows, reals, make, seed):
        for k, v in embed(fakes).items():
            got["xp"].setdefault(k, []).append(v)
        print(f"  twins {b + len(fakes)}/{len(reals)} ({time.time() - t0:.0f} s)", flush=True)
    out = {part: {k: np.concatenate(v) for k, v in d.items()} for part, d in got.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        cache,
        keys=np.array(keys),
        **{f"{part}_{k}": v for part, d in out.items() for k, v in d.items()},
    )
    return out


def fused_head(heads, datas, setup: str, tr, keep):
    """The equal-weight mean of ``heads`` (one per feature view, fitted on ``datas``), each
    divided by its spread on the training rows, then one Platt scaling on them."""
    from facetrust.train.fusion import fit_equal_weights

    yy = pl.training_rows(setup, datas[0], tr, keep)[1]
    z = [h(pl.training_rows(setup, d, tr, keep)[0]) for h, d in zip(heads, datas, strict=True)]
    weight, bias = fit_equal_weights(np.stack(z, 1), yy)

    def head(xs: list[np.ndarray]) -> np.ndarray:
        return np.stack([h(x) for h, x in zip(heads, xs, strict=True)], 1) @ weight + bias

    return head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--per-class", type=int, default=250)
    ap.add_argument("--kinds", default="sbi,splice,trace")
    ap.add_argument("--views", nargs="+", default=list(VIEWS))
    ap.add_argument("--setups", default="AB")
    ap.add_argument("--c", type=float, default=0.01, help="the heads' regularisation strength")
    ap.add_argument("--no-clip", action="store_true", help="skip the fusion with the CLIP head")
    ap.add_argument("--control", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs/identity-loso.json")
    args = ap.parse_args()
    if not args.setups or set(args.setups) - set("ABC"):
        ap.error("--setups: letters of ABC (D has no real fakes to fuse with)")
    apply_threads(args.threads)
    pl.C_GRID = (args.c,)
    from facetrust.train.metrics import ece_score, roc_auc
    from facetrust.train.shortcuts import source_predictability

    manifest = Path(args.manifest)
    kinds = [k for k in args.kinds.split(",") if k]
    rows = sample(read_manifest(manifest), args.per_class, args.seed)
    reals = [i for i, r in enumerate(rows) if r.label == "real" and r.landmarks]
    raw = embeddings(manifest, rows, reals, kinds, args.seed)
    y = np.array([r.y for r in rows])
    src = np.array([r.source for r in rows])
    groups = np.array([r.group("video") for r in rows])
    datas = {
        v: (
            view(raw["x"], v),
            pl.Data(view(raw["x"], v), y, src, view(raw["xp"], v), np.array(reals)),
        )
        for v in args.views
    }
    if not args.no_clip:
        clip_raw = pl.mixed_features(manifest, rows, reals, kinds, [], args.seed)
        datas["clip"] = pl.view_data(clip_raw, rows, reals, pl.parse_view("clsmean-l2"))
    plain = pl.View("id")
    report: dict = {"n": len(rows), "pseudo_fakes": len(reals), "kinds": kinds, "c": args.c}

    print("(a) source predictability, balanced accuracy (chance): all faces / reals only")
    for v in args.views:
        f = source_predictability(datas[v][0], src, groups, labels=y, name=v)
        report.setdefault("source_predictability", {})[v] = f.figures
        cells = [
            f"{k} {s['balanced_accuracy']:.3f} ({s['chance']:.3f})" for k, s in f.figures.items()
        ]
        print(f"  {v:14s} " + "   ".join(cells), flush=True)

    print("\n(c) leave-one-kind-out, AUC / ECE per held-out kind")
    fused = ["clip", *(f"clip+{v}" for v in args.views)] if not args.no_clip else []
    for name in [*args.views, *fused]:
        parts = name.split("+")
        for setup in args.setups:
            res = {}
            for fold, held in FOLDS.items():
                test = np.isin(src, held)
                if len(np.unique(y[test])) < 2:
                    continue
                keep = ~np.isin(src[reals], held)
                heads = [pl.fit_setup(setup, datas[p][1], ~test, keep, plain) for p in parts]
                if len(heads) == 1:
                    logit = heads[0](datas[parts[0]][0][test])
                else:
                    head = fused_head(heads, [datas[p][1] for p in parts], setup, ~test, keep)
                    logit = head([datas[p][0][test] for p in parts])
                p = 1 / (1 + np.exp(-logit))
                res[fold] = {
                    "auc": round(roc_auc(y[test], p), 4),
                    "ece": round(ece_score(y[test], p), 4),
                }
            aucs = [r["auc"] for r in res.values()]
            entry = {
                "folds": res,
                "mean_auc": round(float(np.mean(aucs)), 4),
                "worst_auc": min(aucs),
            }
            cells = "  ".join(f"{k} {r['auc']:.3f}/{r['ece']:.3f}" for k, r in res.items())
            print(
                f"  {name:20s} {setup}  {cells}  mean {entry['mean_auc']:.3f} "
                f"worst {entry['worst_auc']:.3f}",
                flush=True,
            )
            if args.control and len(parts) == 1:
                rvr = pl.control(datas[name][1], datas[name][0], groups, setup, plain)
                entry["real_vs_real"] = rvr
                print(
                    f"  {'':20s} {setup}  real-vs-real: {rvr['outside']} of {len(rvr['pairs'])} "
                    f"outside 0.40-0.60, worst {rvr['worst']}",
                    flush=True,
                )
            report.setdefault("held_out", {}).setdefault(name, {})[setup] = entry
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
