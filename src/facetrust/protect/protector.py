"""``Protector``: cloak the faces in a photo within a visible-change budget, and report it.

Pipeline for one image (all in [0, 1] pixel space until the final 8-bit rounding):

1. decode (EXIF orientation applied, the settings' image limits) and find faces with landmarks;
   no face: the image comes back unchanged with a message naming whole-image protection,
   unless ``whole_image=True``;
2. optionally micro-warp eyes, nose and mouth by at most ``warp_px`` pixels (:mod:`.warp`;
   off in the presets);
3. for each face (largest ``max_faces``): cut a square crop around it and resample it to at most
   ``work_size`` pixels (:mod:`.geometry`); run PGD with EoT on that crop inside the perceptual
   budget (:mod:`.budget`): a JND-weighted, grey-level dominant cloak whose face-region SSIM and
   PSNR are held at the budget after each step; the loss pushes the face's embedding away from
   the original and pulls it towards the least similar of 48 synthetic identities
   (``target_weight``);
4. bring each crop's cloak back to full resolution (bilinear), multiply it by the face's
   full-resolution feathered mask, and fit it onto the budget on the real output: rounded to
   8-bit levels and capped at ``eps``, each face's cloak is scaled (bisection) to the largest
   size at which its face region keeps both targets (:func:`.budget.fit_budget`);
5. measure and report (:class:`.report.ProtectReport`), with dlib's verdict when ``judge``.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from facetrust.config import Settings, resolve_device
from facetrust.errors import FacetrustError, InputError
from facetrust.faces import Face
from facetrust.media import ImageLimits, load_image
from facetrust.protect.attack import PGD, PGDConfig
from facetrust.protect.budget import (
    DEFAULT_PRESET,
    PRESETS,
    Budget,
    BudgetProjector,
    CloakShape,
    fit_budget,
)
from facetrust.protect.encoders import (
    DEFAULT_ENCODERS,
    IDENTITY_ENCODERS,
    build_encoders,
    check_encoder_names,
    identity_bank,
    resolve_dtype,
)
from facetrust.protect.eot import EoT, EoTConfig
from facetrust.protect.geometry import (
    Region,
    add_back,
    extract,
    regions_for,
    shift_face,
    window_for,
)
from facetrust.protect.metrics import identity_band, linf, ssim, ssim_map, visibility
from facetrust.protect.report import JudgeReport, JudgeVerdict, ProtectReport, protection_word
from facetrust.protect.warp import MAX_WARP_PX, micro_warp

__all__ = ["NO_FACE_MESSAGE", "PRESETS", "ProtectResult", "Protector"]

NO_FACE_MESSAGE = (
    "no face found: the photo is returned unchanged; use --whole-image "
    "(whole_image=True) to cloak the whole photo anyway"
)

#: PGD steps and pull towards another identity (``target_weight``) per preset (figures in
#: docs/protect.md). Every preset pushes away from the original only: on all 60 benchmark
#: photos (dlib after JPEG 75) ``subtle`` left 73.3 % matched with 64 or 80 such steps against
#: 78.3 % for 48 steps with the pull towards a synthetic identity; 64 steps keep a 1024 x 1024
#: photo under 10 s on 2 idle cores (8.4 s; 80 steps: 11.3 s). At ``strong`` (20 photos) fewer
#: steps and the pull moved dlib less.
PRESET_STEPS: dict[str, int] = {"subtle": 64, "balanced": 80, "strong": 80}
PRESET_TARGET_WEIGHT: dict[str, float] = {"subtle": 0.0, "balanced": 0.0, "strong": 0.0}
DEFAULT_STEPS = PRESET_STEPS[DEFAULT_PRESET]
DEFAULT_EOT_SAMPLES = 1
DEFAULT_EPS = 16 / 255  # L-infinity cap of the cloak
DEFAULT_TARGET_WEIGHT = PRESET_TARGET_WEIGHT[DEFAULT_PRESET]


@dataclass
class ProtectResult:
    """``image``: protected ``(H, W, 3)`` uint8 RGB, same size and orientation as the upright
    input; ``report``: the :class:`ProtectReport`; ``faces``: faces found."""

    image: np.ndarray
    report: ProtectReport
    faces: list[Face] = field(default_factory=list, repr=False)

    def save(self, path: str | Path, format: str | None = None, quality: int = 95) -> Path:
        """Write the image without any metadata: PNG, or JPEG (``format="jpeg"``, 4:4:4)."""
        path = Path(path)
        fmt = (format or ("jpeg" if path.suffix.lower() in {".jpg", ".jpeg"} else "png")).lower()
        im = Image.fromarray(self.image, "RGB")
        if fmt in {"jpeg", "jpg"}:
            im.save(path, format="JPEG", quality=int(quality), subsampling=0)
        elif fmt == "png":
            im.save(path, format="PNG", optimize=False)
        else:
            raise InputError(f"output format must be png or jpeg, got {format!r}")
        return path


class Protector:
    """Protect photos against face-swap and identity models. Configure once, call on images.

    Args:
        strength: a preset of :data:`PRESETS` by what a person sees: ``subtle`` (default),
            ``balanced`` or ``strong``, each a face-region SSIM and PSNR target.
        ssim: custom face-region SSIM target (overrides the preset's), in [0.5, 0.999].
        psnr: custom face-region PSNR target in dB (overrides the preset's), in [20, 60].
        eps: L-infinity cap of the cloak in [0, 1] pixel units (16/255 by default).
        steps: PGD steps (default: the ``strength`` preset's, :data:`PRESET_STEPS`, also when
            ``ssim``/``psnr`` override its budget); ``eot_samples``: EoT draws per step.
        target_weight: weight of the pull towards another identity (a synthetic face of the
            bank in ``facetrust/assets/protect_identities``, the one least like the original);
            0: the cloak only pushes away from the original (default: the ``strength``
            preset's, :data:`PRESET_TARGET_WEIGHT`). Needs an encoder with a bank
            (``faceres``, ``mobilefacenet``) when asked for explicitly.
        shape: where the change goes (:class:`CloakShape`: JND map, colour weight, low
            frequencies removed).
        encoders: surrogate ensemble by name (see ``facetrust.protect.encoders``).
        warp: apply the landmark micro-warp; ``warp_px``: its largest displacement (<= 2 px,
            0 by default: the warp spends budget that the cloak uses better).
        whole_image: cloak the whole image (also when no face is found).
        judge: add dlib's verdict (a recognizer the attack never sees), as saved and after JPEG
            75, to the report (when dlib is missing the report says why in ``judge_error``).
        max_faces: protect at most this many faces (largest first).
        work_size: attack resolution of a face crop, pixels.
        margin: crop margin on each side, as a fraction of the face side.
        feather: mask feathering (Gaussian sigma) as a fraction of the face side.
        eot: the transform distribution (default :class:`EoTConfig`).
        device: ``auto`` (the settings' device: cuda, then mps, then cpu), ``cpu``, ``cuda``...
        precision: encoder compute dtype, ``auto`` (bf16 where native), ``float32``, ``bfloat16``.
        seed: seeds the warp and the EoT draws (same input, same output); no global RNG is
            touched, nor the number of threads.
        detector: a face detector ``(H, W, 3) uint8 -> list[Face]`` (default ``FaceDetector``).
        settings: :class:`facetrust.config.Settings` (``FACETRUST_*``): device and image limits.
        limits: decode limits (default: from ``settings``).

    ``__call__(image, progress=None)`` takes a path, encoded bytes, a numpy array or a PIL image
    and returns a :class:`ProtectResult` whose ``report`` is a :class:`ProtectReport`.
    """

    def __init__(
        self,
        strength: str = DEFAULT_PRESET,
        *,
        ssim: float | None = None,
        psnr: float | None = None,
        eps: float | None = None,
        steps: int | None = None,
        eot_samples: int | None = None,
        target_weight: float | None = None,
        shape: CloakShape | None = None,
        encoders: tuple[str, ...] | list[str] = DEFAULT_ENCODERS,
        warp: bool = True,
        warp_px: float = 0.0,
        whole_image: bool = False,
        judge: bool = False,
        max_faces: int = 4,
        work_size: int = 224,
        margin: float = 0.25,
        feather: float = 0.05,
        eot: EoTConfig | None = None,
        device: str | None = None,
        precision: str = "auto",
        seed: int = 0,
        detector: Any = None,
        settings: Settings | None = None,
        limits: ImageLimits | None = None,
    ) -> None:
        if strength not in PRESETS:
            raise InputError(f"unknown strength {strength!r}; use one of {', '.join(PRESETS)}")
        preset = PRESETS[strength]
        self.budget = Budget(
            ssim=preset.ssim if ssim is None else ssim,
            psnr=preset.psnr if psnr is None else psnr,
        )
        self.strength = strength if self.budget == preset else "custom"
        if eps is not None and not (isinstance(eps, int | float) and 0 < eps <= 64 / 255):
            raise InputError(
                f"eps must be in (0, 64/255] pixel units (8/255 = {8 / 255:.4f}), got {eps!r}"
            )
        self.encoder_names = check_encoder_names(encoders)
        has_bank = any(n in IDENTITY_ENCODERS for n in self.encoder_names)
        if target_weight is not None:
            if isinstance(target_weight, bool) or not isinstance(target_weight, int | float):
                raise InputError(f"target_weight must be a number in [0, 4], got {target_weight!r}")
            if target_weight > 0 and not has_bank:
                raise InputError(
                    "target_weight > 0 needs an encoder with an identity bank "
                    f"({', '.join(IDENTITY_ENCODERS)})"
                )
        weight = PRESET_TARGET_WEIGHT[strength] if target_weight is None else float(target_weight)
        self.pgd_config = PGDConfig(
            eps=float(eps if eps is not None else DEFAULT_EPS),
            steps=steps if steps is not None else PRESET_STEPS[strength],
            eot_samples=eot_samples if eot_samples is not None else DEFAULT_EOT_SAMPLES,
            norm="budget",
            target_weight=weight if has_bank else 0.0,
        )
        self.shape = shape if shape is not None else CloakShape()
        if not isinstance(self.shape, CloakShape):
            raise InputError("shape must be a CloakShape")
        self.warp = bool(warp)
        wpx = float(warp_px)
        if not 0.0 <= wpx <= MAX_WARP_PX:
            raise InputError(f"warp_px must be in [0, {MAX_WARP_PX}], got {wpx}")
        self.warp_px = wpx if self.warp else 0.0
        self.whole_image = bool(whole_image)
        self.judge = bool(judge)
        if isinstance(max_faces, bool) or not isinstance(max_faces, int) or max_faces < 1:
            raise InputError(f"max_faces must be a positive integer, got {max_faces!r}")
        self.max_faces = max_faces
        if not isinstance(work_size, int) or not 32 <= work_size <= 1024:
            raise InputError(f"work_size must be an integer in [32, 1024], got {work_size!r}")
        self.work_size = work_size
        if not 0.0 <= margin <= 1.0:
            raise InputError(f"margin must be in [0, 1], got {margin}")
        self.margin = float(margin)
        if not 0.0 < feather <= 0.5:
            raise InputError(f"feather must be in (0, 0.5], got {feather}")
        self.feather = float(feather)
        self.eot_config = eot if eot is not None else EoTConfig()
        if not isinstance(self.eot_config, EoTConfig):
            raise InputError("eot must be an EoTConfig")
        self.settings = settings if settings is not None else Settings()
        try:
            self.device = torch.device(resolve_device(device or self.settings.device))
        except (RuntimeError, TypeError) as exc:
            raise InputError(f"bad device {device!r}: {exc}") from None
        self.dtype = resolve_dtype(precision, self.device)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InputError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self.limits = limits or ImageLimits(
            self.settings.max_image_pixels, self.settings.max_file_bytes
        )
        self._detector = detector
        self._pgd: PGD | None = None
        self._judge = None

    def __repr__(self) -> str:
        c = self.pgd_config
        return (
            f"Protector(strength={self.strength!r}, face_ssim>={self.budget.ssim}, "
            f"face_psnr>={self.budget.psnr}, eps={c.eps * 255:g}/255, steps={c.steps}, "
            f"eot_samples={c.eot_samples}, target_weight={c.target_weight:g}, "
            f"shape={self.shape}, "
            f"encoders={list(self.encoder_names)}, "
            f"warp_px={self.warp_px:g}, whole_image={self.whole_image}, judge={self.judge}, "
            f"max_faces={self.max_faces}, work_size={self.work_size}, device='{self.device}', "
            f"dtype={str(self.dtype).replace('torch.', '')}, seed={self.seed})"
        )

    # --- lazily built parts ------------------------------------------------------------------

    @property
    def attack(self) -> PGD:
        """The PGD attack (builds the encoders on first use)."""
        if self._pgd is None:
            encs = build_encoders(self.encoder_names, self.device, self.dtype, self.seed)
            bank = None
            if self.pgd_config.target_weight > 0:
                bank = [identity_bank(n) for n in self.encoder_names]
            self._pgd = PGD(encs, self.pgd_config, EoT(self.eot_config), bank)
        return self._pgd

    def _detect(self, image: np.ndarray) -> list[Face]:
        if self._detector is None:
            from facetrust.faces import FaceDetector

            self._detector = FaceDetector(
                min_score=self.settings.face_min_score,
                landmarks=True,
                threads=self.settings.threads,
            )
        faces = list(self._detector(image))
        faces.sort(key=lambda f: f.width * f.height, reverse=True)
        return faces[: self.max_faces]

    def _get_judge(self):
        if self._judge is None:
            from facetrust.protect.judge import DlibJudge

            self._judge = DlibJudge()
        return self._judge

    # --- the call ----------------------------------------------------------------------------

    def __call__(
        self, image: Any, progress: Callable[[float, str], None] | None = None
    ) -> ProtectResult:
        """Protect one image (path, bytes, array or PIL image).

        ``progress(fraction, message)``, when given, is called as the work advances (after each
        attack step, with the step in the message).
        """
        t0 = time.perf_counter()

        def report_progress(fraction: float, message: str) -> None:
            if progress is not None:
                progress(min(1.0, max(0.0, fraction)), message)

        img = load_image(image, self.limits)
        h, w = img.shape[:2]
        report_progress(0.0, "finding faces")
        faces = self._detect(img)
        base: dict[str, Any] = {
            "width": w,
            "height": h,
            "faces": len(faces),
            "face_boxes": [[round(float(v), 1) for v in f.box] for f in faces],
            "strength": self.strength,
            "budget_ssim": self.budget.ssim,
            "budget_psnr": self.budget.psnr,
            "eps": round(self.pgd_config.eps * 255, 3),
            "steps": self.pgd_config.steps,
            "eot_samples": self.pgd_config.eot_samples,
            "target_weight": self.pgd_config.target_weight,
            "warp_px": self.warp_px if faces else 0.0,
            "encoders": list(self.encoder_names),
        }
        if not faces and not self.whole_image:
            report = ProtectReport(
                **base,
                regions="none",
                visibility=visibility(None, None),
                ssim=1.0,
                seconds=round(time.perf_counter() - t0, 3),
                message=NO_FACE_MESSAGE,
            )
            report_progress(1.0, "done")
            return ProtectResult(img.copy(), report, faces)

        setup = 0.0
        if self._pgd is None:  # one-time model building is not counted in "seconds"
            t_setup = time.perf_counter()
            _ = self.attack
            setup = time.perf_counter() - t_setup
            base["seconds_setup"] = round(setup, 3)
        # everything below works inside a window around the faces (the whole image when asked)
        wx0, wy0, wx1, wy1 = window_for((h, w), faces, self.margin, self.feather, self.whole_image)
        sub = img[wy0:wy1, wx0:wx1]
        sub_faces = [shift_face(f, -wx0, -wy0) for f in faces]
        rng = np.random.default_rng(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        x0 = sub.astype(np.float32) / 255.0
        if faces and self.warp_px > 0:
            xw, _ = micro_warp(x0, sub_faces, self.warp_px, rng, self.feather)
            warped = np.clip(np.rint(xw * 255.0), 0, 255).astype(np.uint8)
        else:
            warped = sub.copy()
        regions = regions_for(sub.shape[:2], sub_faces, self.margin, self.feather, self.whole_image)
        t_attack = time.perf_counter()
        xw01 = warped.astype(np.float32) / 255.0
        attack = self.attack
        perts = []
        n_steps = self.pgd_config.steps
        for k, r in enumerate(regions):
            size = min(self.work_size, r.side)
            start = self._to_tensor(extract(xw01, r, size))
            ref = self._to_tensor(extract(x0, r, size))
            mask = self._to_tensor(extract(r.mask[..., None], r, size))
            projector = BudgetProjector(ref, mask >= 0.5, self.budget)

            def step_done(i: int, n: int, k: int = k) -> None:
                face = f" (face {k + 1} of {len(regions)})" if len(regions) > 1 else ""
                report_progress(
                    0.05 + 0.8 * (k + i / max(n, 1)) / len(regions),
                    f"cloaking: step {i} of {n}{face}",
                )

            res = attack(start, mask, ref, gen, step_done, shape=self.shape, projector=projector)
            delta = res.delta[0].permute(1, 2, 0).float().cpu().numpy()
            perts.append(add_back(delta, r, sub.shape[:2]))
        if n_steps == 0:
            report_progress(0.85, "cloaking: no steps asked for")
        report_progress(0.86, "fitting the cloak to the budget")
        faces_region = [r.face for r in regions]
        cloaked, _, figures = fit_budget(
            sub, warped, perts, faces_region, self.budget, self.pgd_config.eps
        )
        seconds_attack = time.perf_counter() - t_attack
        protected = img.copy()
        protected[wy0:wy1, wx0:wx1] = cloaked

        report_progress(0.92, "measuring")
        sims, sims_jpeg = self._identity(sub, cloaked, regions)
        score = float(np.mean(list(sims.values())))
        score_jpeg = float(np.mean(list(sims_jpeg.values())))
        band = identity_band(score)
        face_ssim = min(m[0] for m in figures)
        face_psnr = min(m[1] for m in figures)
        p = _window_psnr(sub, cloaked, h * w)
        what = "the whole image" if self.whole_image else _plural(len(regions), "face")
        judge, judge_error = None, None
        if self.judge:
            report_progress(0.95, "asking the judge (dlib)")
            judge, judge_error = self._judge_report(img, protected)
        report = ProtectReport(
            **base,
            regions="whole_image" if self.whole_image else "faces",
            face_ssim=round(face_ssim, 4),
            face_psnr=None if math.isinf(face_psnr) else round(face_psnr, 2),
            visibility=visibility(face_ssim, face_psnr),
            identity_stability=round(score, 4),
            identity_band=band,
            identity_per_encoder={k: round(v, 4) for k, v in sims.items()},
            identity_stability_jpeg75=round(score_jpeg, 4),
            psnr=None if math.isinf(p) else round(p, 2),
            ssim=round(_window_ssim(img, protected, (wx0, wy0, wx1, wy1)), 4),
            linf=linf(warped, cloaked),
            linf_total=linf(sub, cloaked),
            judge=judge,
            judge_error=judge_error,
            seconds_attack=round(seconds_attack, 3),
            seconds=round(time.perf_counter() - t0 - setup, 3),
            message=f"protected {what}: identity stability {score:.2f} ({band})",
        )
        report_progress(1.0, "done")
        return ProtectResult(protected, report, faces)

    # --- helpers -------------------------------------------------------------------------------

    def _judge_report(
        self, original: np.ndarray, protected: np.ndarray
    ) -> tuple[JudgeReport | None, str | None]:
        try:
            judge = self._get_judge()
        except (FacetrustError, ImportError) as exc:
            return None, str(exc).splitlines()[0]
        saved = JudgeVerdict(**judge(original, protected).to_dict())
        jpeg = JudgeVerdict(**judge(original, jpeg_round_trip(protected, 75)).to_dict())
        word = protection_word(jpeg.distance, jpeg.threshold)
        if jpeg.distance is None:
            msg = "the judge (dlib) found no face in the original and cannot decide"
        else:
            verdict = "takes it for another person" if not jpeg.match else "still recognises it"
            msg = (
                f"after JPEG 75, dlib {verdict}: distance {jpeg.distance:.2f} "
                f"(same person below {jpeg.threshold:g})"
            )
        return JudgeReport(saved=saved, jpeg75=jpeg, protection=word, message=msg), None

    def _to_tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].to(self.device)

    @torch.no_grad()
    def _identity(
        self, original: np.ndarray, protected: np.ndarray, regions: list[Region]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Mean cosine similarity per encoder, as saved and after a real JPEG q75 round trip."""
        jpeg = jpeg_round_trip(protected, 75)
        names = [getattr(e, "name", str(i)) for i, e in enumerate(self.attack.encoders)]
        sims: dict[str, list[float]] = {n: [] for n in names}
        sims_j: dict[str, list[float]] = {n: [] for n in names}
        for r in regions:
            s = min(self.work_size, r.side)
            crops = [
                extract(a.astype(np.float32) / 255.0, r, s) for a in (original, protected, jpeg)
            ]
            embs = self.attack.embed(torch.cat([self._to_tensor(c) for c in crops]))
            for n, e in zip(names, embs, strict=True):
                sims[n].append(float(e[0] @ e[1]))
                sims_j[n].append(float(e[0] @ e[2]))
        return (
            {n: float(np.mean(v)) for n, v in sims.items()},
            {n: float(np.mean(v)) for n, v in sims_j.items()},
        )


def jpeg_round_trip(image: np.ndarray, quality: int = 75) -> np.ndarray:
    """``image`` encoded as JPEG at ``quality`` (Pillow defaults, 4:2:0) and decoded."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _window_psnr(a: np.ndarray, b: np.ndarray, total_pixels: int) -> float:
    """PSNR of the full image when ``a`` and ``b`` (a window of it) hold every difference."""
    err = float(np.sum((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if err == 0 else 10 * math.log10(255.0**2 / (err / (total_pixels * 3)))


def _window_ssim(a: np.ndarray, b: np.ndarray, window: tuple[int, int, int, int]) -> float:
    """Full-image SSIM computed on the changed window only.

    Outside the window grown by the 5-pixel SSIM radius the two images have identical
    neighbourhoods, where the SSIM map is exactly 1; the map inside is computed on the window
    grown by twice the radius (so each value there sees its whole neighbourhood, or the same
    reflected image border as a full computation).
    """
    h, w = a.shape[:2]
    x0, y0, x1, y1 = window
    if (x0, y0, x1, y1) == (0, 0, w, h) or min(h, w) < 11:
        return ssim(a, b)
    r = 5
    cx0, cy0 = max(0, x0 - 2 * r), max(0, y0 - 2 * r)
    cx1, cy1 = min(w, x1 + 2 * r), min(h, y1 + 2 * r)
    smap = ssim_map(a[cy0:cy1, cx0:cx1], b[cy0:cy1, cx0:cx1])
    # the values that count: inside the window grown by r, and inside the image cropped by r
    vx0, vy0 = max(x0 - r, r), max(y0 - r, r)
    vx1, vy1 = min(x1 + r, w - r), min(y1 + r, h - r)
    inner = smap[vy0 - cy0 : vy1 - cy0, vx0 - cx0 : vx1 - cx0]
    n_total = (h - 2 * r) * (w - 2 * r)
    return float((inner.sum() + (n_total - inner.size)) / n_total)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
