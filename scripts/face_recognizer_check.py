"""Do the face-recognizer surrogates recognise faces on the protector's crops? Verification AUC.

Faces: the ``imfdb`` rows of the shared manifest (Indian film actors; identity = the actor's
name in ``origin``, e.g. ``.../images/Dileep_100.jpg`` -> Dileep), at most ``--per-identity``
images per actor (seeded). Each image goes through facetrust's own face stack exactly as the
protector does it: ``FaceDetector``, the largest face, the protector's square crop (face box
plus ``margin`` = 25 % on each side, edges replicated, resampled to ``min(224, side)`` px).

Every pair of faces is scored by cosine similarity; ROC AUC separates same-actor pairs from
different-actor pairs. Rows:

- ``mobilefacenet`` for several sub-squares of the crop (side, vertical centre; fractions of the
  crop) and input ranges, with the converter's PReLU fusion repaired, ``raw`` (the graph's unit
  embeddings) and ``centred`` (minus the mean embedding of a held-out reference set: real faces
  from the ``gan140k`` (FFHQ) and ``openforensics`` sources, never imfdb);
- the same with the graph exactly as shipped (``shipped``), at the registered settings;
- the registered encoder, ``build_encoder("mobilefacenet")`` (uses the shipped mean file);
- dlib's descriptor (the judge, :mod:`facetrust.protect.judge`) on the original image with its
  own detector and 68-point alignment (the facetrust face box when dlib finds no face);
  Euclidean distance (dlib's rule) and cosine;
- HSE FaceRes from the same npm package: the registered encoder, ``build_encoder("faceres")``
  (whole crop at 224 px, 0-255 BGR minus the caffe channel means, as the upstream code feeds it),
  and the same graph fed plain 0-255 RGB as the Human library does; with the cosine between
  different faces' raw embeddings (imfdb different-actor pairs, reference-set pairs), which says
  whether its embeddings need centring like MobileFaceNet's.

``--no-sweep`` skips the MobileFaceNet sub-square/range sweep (the registered rows stay).

``--write-mean PATH`` writes the reference mean for the registered settings (JSON), the file the
encoder ships as ``facetrust/assets/mobilefacenet/embedding_mean.json``.

Usage: uv run python scripts/face_recognizer_check.py [--data ../shared/data]
       [--per-identity 30] [--reference 100] [--no-sweep] [--write-mean FILE]
       [--threads N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from facetrust.faces import FaceDetector
from facetrust.models.tfjs import load_tfjs_graph
from facetrust.protect import Protector
from facetrust.protect.encoders import (
    FACERES_DIR,
    FACERES_OUTPUT,
    MOBILEFACENET_CROP,
    MOBILEFACENET_DIR,
    MOBILEFACENET_RANGE,
    Encoder,
    build_encoder,
)
from facetrust.protect.judge import DlibJudge
from facetrust.protect.protector import _extract

CROPS = [(1.0, 0.5), (0.82, 0.5), (0.82, 0.395)]
RANGES = [(0.0, 1.0), (-1.0, 1.0)]
REFERENCE_SOURCES = ("gan140k", "openforensics")


def imfdb_identity(origin: str) -> str:
    """``muxspace/facial_expressions:images/Dileep_100.jpg`` -> ``Dileep``."""
    return re.sub(r"_\d+\.\w+$", "", origin.rsplit("/", 1)[-1])


def sample_rows(data: Path, per_identity: int, reference: int, seed: int):
    rows = [json.loads(line) for line in (data / "manifest.jsonl").open()]
    rng = np.random.default_rng(seed)
    imfdb: dict[str, list[dict]] = {}
    for r in rows:
        if r["source"] == "imfdb":
            imfdb.setdefault(imfdb_identity(r["origin"]), []).append(r)
    faces = []
    for name in sorted(imfdb):
        picked = rng.permutation(len(imfdb[name]))[:per_identity]
        faces += [(imfdb[name][i], name) for i in picked]
    ref = []
    for src in REFERENCE_SOURCES:
        pool = [r for r in rows if r["source"] == src and r["label"] == "real"]
        ref += [pool[i] for i in rng.permutation(len(pool))[:reference]]
    return faces, ref


def protector_crops(data: Path, rows: list[dict], detector: FaceDetector, protector: Protector):
    """``(image, face, crop)`` per row where a face is found; crop ``(S, S, 3)`` float in [0, 1]."""
    out = []
    for r in rows:
        img = np.asarray(Image.open(data / r["path"]).convert("RGB"))
        faces = detector(img)
        if not faces:
            out.append(None)
            continue
        face = max(faces, key=lambda f: f.width * f.height)
        region = protector._regions(img.shape[:2], [face])[0]
        size = min(protector.work_size, region.side)
        out.append((img, face, _extract(img.astype(np.float32) / 255.0, region, size)))
    return out


@torch.no_grad()
def embed(encoder: Encoder, crops: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """Embeddings of crops of any sizes: each preprocessed alone, the network run in batches."""
    xs = [
        encoder.preprocess(torch.from_numpy(np.ascontiguousarray(c.transpose(2, 0, 1)))[None])
        for c in crops
    ]
    x = torch.cat(xs)
    return (
        torch.cat([encoder.embed_preprocessed(x[i : i + batch]) for i in range(0, len(x), batch)])
        .double()
        .numpy()
    )


def unit(e: np.ndarray) -> np.ndarray:
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def verification_auc(emb: np.ndarray, labels: np.ndarray, distance: bool = False) -> float:
    """ROC AUC of same- vs different-identity pairs: cosine (or minus Euclidean distance)."""
    iu = np.triu_indices(len(labels), 1)
    same = (labels[:, None] == labels[None])[iu]
    if distance:
        score = -np.linalg.norm(emb[:, None] - emb[None], axis=-1)[iu]
    else:
        u = unit(emb)
        score = (u @ u.T)[iu]
    return float(roc_auc_score(same, score))


def spread(emb: np.ndarray, mask: np.ndarray | None = None) -> str:
    """Mean, 95th percentile and max cosine over the pairs ``i < j`` (where ``mask[i, j]``)."""
    u = unit(emb)
    iu = np.triu_indices(len(u), 1)
    cos = (u @ u.T)[iu] if mask is None else (u @ u.T)[iu][mask[iu]]
    return f"mean {cos.mean():.3f} p95 {np.percentile(cos, 95):.3f} max {cos.max():.3f}"


def mobilefacenet_encoder(graph, crop: tuple[float, float], rng: tuple[float, float]) -> Encoder:
    lo, hi = rng
    mean, std = (-lo / (hi - lo),) * 3, (1.0 / (hi - lo),) * 3
    return Encoder("mobilefacenet", graph, 112, mean, std, crop=crop[0], crop_y=crop[1]).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--per-identity", type=int, default=30)
    ap.add_argument("--reference", type=int, default=100, help="reference faces per source")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-sweep", action="store_true", help="skip the MobileFaceNet sweep")
    ap.add_argument("--write-mean", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    face_rows, ref_rows = sample_rows(args.data, args.per_identity, args.reference, args.seed)
    detector = FaceDetector()
    protector = Protector(encoders=("tiny",), warp=False)
    found = protector_crops(args.data, [r for r, _ in face_rows], detector, protector)
    keep = [i for i, f in enumerate(found) if f is not None]
    labels = np.array([face_rows[i][1] for i in keep])
    images = [found[i][0] for i in keep]
    faces = [found[i][1] for i in keep]
    crops = [found[i][2] for i in keep]
    ref = [f[2] for f in protector_crops(args.data, ref_rows, detector, protector) if f]
    n_pairs = len(labels) * (len(labels) - 1) // 2
    n_same = int(sum(k * (k - 1) // 2 for k in np.unique(labels, return_counts=True)[1]))
    print(
        f"imfdb: {len(labels)} faces of {len(set(labels))} actors "
        f"({len(face_rows) - len(keep)} images without a detected face skipped); "
        f"{n_same} same-actor and {n_pairs - n_same} different-actor pairs; "
        f"reference: {len(ref)} faces from {', '.join(REFERENCE_SOURCES)} "
        f"[{time.perf_counter() - t0:.0f} s]"
    )

    model_json = MOBILEFACENET_DIR / "mobilefacenet.json"
    repaired = load_tfjs_graph(model_json, repair_prelu=True).eval()
    shipped = load_tfjs_graph(model_json).eval()
    print(f"\n{'model':34s} {'sub-square':>12s} {'range':>8s} {'raw':>6s} {'centred':>8s}")
    sweep = [] if args.no_sweep else [(c, r) for c in CROPS for r in RANGES]
    configs = [("mobilefacenet (repaired)", repaired, c, r) for c, r in sweep]
    configs.append(
        ("mobilefacenet (shipped graph)", shipped, MOBILEFACENET_CROP, MOBILEFACENET_RANGE)
    )
    best = None
    for name, graph, crop, rng in configs:
        enc = mobilefacenet_encoder(graph, crop, rng)
        e, e_ref = embed(enc, crops), embed(enc, ref)
        raw = verification_auc(e, labels)
        centred = verification_auc(e - e_ref.mean(0), labels)
        print(
            f"{name:34s} {crop[0]:>5.2f}@{crop[1]:<6.3f} {f'{rng[0]:g},{rng[1]:g}':>8s} "
            f"{raw:6.3f} {centred:8.3f}"
        )
        if graph is repaired and (best is None or centred > best[0]):
            best = (centred, crop, rng)
    if best is not None:
        print(f"best (repaired, centred): sub-square {best[1]}, range {best[2]}: {best[0]:.3f}")

    if args.write_mean is not None:
        enc = mobilefacenet_encoder(repaired, MOBILEFACENET_CROP, MOBILEFACENET_RANGE)
        mean = embed(enc, ref).mean(0)
        record = {
            "mean": [round(float(v), 7) for v in mean],
            "what": "mean 192-d unit embedding of held-out real faces (not imfdb)",
            "model_sha256": hashlib.sha256(model_json.read_bytes()).hexdigest(),
            "repair_prelu": True,
            "crop": list(MOBILEFACENET_CROP),
            "input_range": list(MOBILEFACENET_RANGE),
            "faces": len(ref),
            "sources": list(REFERENCE_SOURCES),
            "seed": args.seed,
            "written_by": "scripts/face_recognizer_check.py --write-mean",
        }
        args.write_mean.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote the reference mean ({len(ref)} faces) to {args.write_mean}")

    if (MOBILEFACENET_DIR / "embedding_mean.json").is_file():
        auc = verification_auc(embed(build_encoder("mobilefacenet"), crops), labels)
        print(f"{'build_encoder(mobilefacenet)':34s} registered settings, shipped mean: {auc:.3f}")

    human = load_tfjs_graph(FACERES_DIR / "faceres.json", outputs=[FACERES_OUTPUT]).eval()
    faceres = {
        "faceres (Human's feed: RGB 0-255)": Encoder(
            "faceres", human, 224, (0.0,) * 3, (1 / 255,) * 3
        ),
        "build_encoder(faceres)": build_encoder("faceres"),
    }
    print(f"\n{'model':34s} {'raw':>6s} {'centred':>8s}   cosine of different faces, raw")
    for name, enc in faceres.items():
        e, e_ref = embed(enc.eval(), crops), embed(enc, ref)
        raw, centred = verification_auc(e, labels), verification_auc(e - e_ref.mean(0), labels)
        print(
            f"{name:34s} {raw:6.3f} {centred:8.3f}   "
            f"imfdb {spread(e, labels != labels[:, None])}; reference (all pairs) {spread(e_ref)}"
        )

    judge = DlibJudge()
    desc, hits = [], 0
    for img, face in zip(images, faces, strict=True):
        d = judge.descriptor(img)
        if d is None:
            x1, y1, x2, y2 = (int(round(v)) for v in face.box)
            d = judge.descriptor(img, judge._dlib.rectangle(x1, y1, x2, y2))
        else:
            hits += 1
        desc.append(d)
    desc = np.stack(desc)
    print(
        f"dlib (judge): distance AUC {verification_auc(desc, labels, distance=True):.3f}, "
        f"cosine AUC {verification_auc(desc, labels):.3f} "
        f"(dlib's detector found {hits}/{len(desc)} faces; facetrust's box for the rest)"
    )
    print(f"[{time.perf_counter() - t0:.0f} s]")


if __name__ == "__main__":
    main()
