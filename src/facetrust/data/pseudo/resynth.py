"""``resynth``: a real face re-made whole by a small decoder that facetrust trained on reals.

A GAN or diffusion face is not a real photo with a pasted region: every pixel of it comes out
of a decoder, and what those decoders share (up-sampling layers, a latent that keeps the
layout and drops fine texture, the spectrum that leaves) is what a detector can hope to meet
again in a generator it never saw. AlignedForensics / DDA (Rajan et al., ICLR 2025) make such
fakes by passing reals through a latent autoencoder: each reconstruction keeps its real's
content, pose and identity, so only the decoder's traces separate the pair (B-Free, Guillaro
et al., CVPR 2025). No latent autoencoder of a generator ships in a registry package here
(Stable Diffusion's VAE downloads at run time), so facetrust trains its own small one on real
face crops (``facetrust.train.resynth``; weights in ``facetrust/assets/resynth``, about
1 MB) with the layers generators use: strided convolutions down to a latent of ``1/16`` the
pixels, then a transposed convolution and a nearest up-sampling followed by convolutions back.

A small decoder trained for a short while also smooths: its reconstructions keep 13-64 % of a
crop's finest detail. Left so, a detector learns "soft = fake", which real photos of low
resolution contradict (on the development data it turned the diffusion fold upside down). So by
default (``match_spectrum``) the reconstruction's radial amplitude spectrum is matched to its
real's, band by band (gains capped at ``max_gain``): most of the blur is undone, and what is left
to tell them apart is mostly the decoder's phase and texture.

Matching the spectrum cannot give back what the decoder dropped: above a quarter of the sampling
rate its reconstructions hold about 1/20 of a photo's energy, more than the capped gains restore,
so a matched twin is still softer than its real (Laplacian variance lower for 96 % of 79 reals of
the development data), and a head fitted on (real, twin) pairs still learns "soft = fake" (the
diffusion fold: AUC 0.24). :meth:`Resynth.control` gives the other half of the pair: the real
softened to its twin where the twin is softer (:func:`match_local_spectrum`), a real-labelled
face as soft as the fake, so sharpness tells neither apart.

The fake is the whole reconstruction or, with probability ``face_blend``, the reconstruction
pasted into its real inside a soft landmark-hull face mask (SBI's, ``landmark_hull_mask``): the
way autoencoder face swaps (DeepFakes, DFDC's DFAE) put their decoder's face into the frame.
The mask is ``|fake - real|`` averaged over channels, / 255 (as for ``trace``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrust.data.pseudo.registry import PseudoFakeMaker, register_pseudo_fake
from facetrust.data.sbi import _check_image, landmark_hull_mask
from facetrust.errors import InputError, ModelError

__all__ = [
    "DEFAULT_RESYNTH",
    "Resynth",
    "ResynthConfig",
    "build_resynth_net",
    "load_resynth_net",
    "match_local_spectrum",
    "match_spectrum",
    "resynthesise",
    "weights_digest",
]

DEFAULT_RESYNTH = Path(__file__).resolve().parents[2] / "assets" / "resynth" / "resynth.safetensors"
FACTOR = 4  # the latent is FACTOR x smaller than the image on each side


def build_resynth_net(width: int = 32, latent: int = 4):
    """The autoencoder: RGB in [0, 1] -> latent ``(latent, H/4, W/4)`` -> RGB in [0, 1].

    Encoder: 3x3 conv, a stride-2 4x4 conv, 3x3 conv, a stride-2 4x4 conv, 1x1 to the latent.
    Decoder: 3x3 conv, a stride-2 transposed 4x4 conv, 3x3 conv, nearest x2, two 3x3 convs.
    ``H`` and ``W`` must be multiples of 4 (``resynthesise`` pads).
    """
    import torch
    from torch import nn

    if width < 4 or latent < 1:
        raise InputError(f"resynth net needs width >= 4 and latent >= 1, got {width}, {latent}")
    w = int(width)

    class ResynthNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            act = nn.SiLU
            self.encoder = nn.Sequential(
                nn.Conv2d(3, w, 3, padding=1), act(),
                nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), act(),
                nn.Conv2d(2 * w, 2 * w, 3, padding=1), act(),
                nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1), act(),
                nn.Conv2d(4 * w, latent, 1),
            )  # fmt: skip
            self.decoder = nn.Sequential(
                nn.Conv2d(latent, 4 * w, 3, padding=1), act(),
                nn.ConvTranspose2d(4 * w, 2 * w, 4, stride=2, padding=1), act(),
                nn.Conv2d(2 * w, 2 * w, 3, padding=1), act(),
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(2 * w, w, 3, padding=1), act(),
                nn.Conv2d(w, 3, 3, padding=1),
            )  # fmt: skip
            self.width, self.latent = w, latent

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.decoder(self.encoder(x * 2 - 1)) * 0.5 + 0.5

    return ResynthNet()


@functools.lru_cache(maxsize=4)
def load_resynth_net(path: str | Path = DEFAULT_RESYNTH):
    """The trained net from a ``.safetensors`` file (its metadata holds width and latent)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"resynth weights not found: {path} (train them: facetrust.train.resynth)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        net = build_resynth_net(int(meta.get("width", 32)), int(meta.get("latent", 4)))
        net.load_state_dict(load_file(str(path)))
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
        raise ModelError(f"cannot load resynth weights {path}: {exc}") from exc
    return net.eval()


def resynthesise(image: np.ndarray, net=None) -> np.ndarray:
    """Pass a uint8 ``(H, W, 3)`` RGB crop through the autoencoder; uint8, same size."""
    import torch

    _check_image(image)
    net = net if net is not None else load_resynth_net()
    h, w = image.shape[:2]
    ph, pw = -h % FACTOR, -w % FACTOR
    x = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).float()[None] / 255
        y = net(t)[0].clamp(0, 1).mul(255).round().byte().numpy().transpose(1, 2, 0)
    return np.ascontiguousarray(y[:h, :w])


def match_spectrum(
    image: np.ndarray, reference: np.ndarray, bins: int = 48, max_gain: float = 6.0
) -> np.ndarray:
    """``image`` with the radial amplitude spectrum of ``reference`` (same-size uint8 RGB).

    Both are Fourier-transformed; the frequencies are grouped into ``bins`` rings by radius;
    each ring of ``image`` is scaled (all channels alike, phases kept) so its energy equals the
    reference's ring, the gain clipped to ``[1/max_gain, max_gain]`` (the mean is kept)."""
    if image.shape != reference.shape:
        raise InputError(f"shapes differ: {image.shape} vs {reference.shape}")
    if max_gain < 1:
        raise InputError(f"max_gain must be >= 1, got {max_gain}")
    h, w = image.shape[:2]
    f = np.fft.rfft2(image.astype(np.float64), axes=(0, 1))
    ref = np.fft.rfft2(reference.astype(np.float64), axes=(0, 1))
    radius = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)
    ring = np.minimum((radius / max(float(radius.max()), 1e-12) * bins).astype(int), bins - 1)
    e_img = np.bincount(ring.ravel(), (np.abs(f) ** 2).sum(axis=2).ravel(), bins)
    e_ref = np.bincount(ring.ravel(), (np.abs(ref) ** 2).sum(axis=2).ravel(), bins)
    gain = np.clip(np.sqrt(e_ref / np.maximum(e_img, 1e-12)), 1 / max_gain, max_gain)
    gain[0] = 1.0  # the ring holding the mean (DC): brightness unchanged
    out = np.fft.irfft2(f * gain[ring][..., None], s=(h, w), axes=(0, 1))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# RGB -> YCbCr (ITU-R BT.601): luma's detail matched apart from the colours'
_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def match_local_spectrum(
    image: np.ndarray, reference: np.ndarray, tile: int = 32, bins: int = 8, max_gain: float = 6.0
) -> np.ndarray:
    """``image`` with, tile by tile, the radial amplitude spectrum of ``reference`` (same-size
    uint8 RGB): sharpness matched where it is, not on average over the crop.

    The two are cut into ``tile``-pixel tiles half a tile apart, each under a square-root Hann
    window; in each tile, luma and the two chroma channels (YCbCr) apart, every ring of
    frequencies (``bins`` by radius) is scaled, phases kept, so its energy equals the
    reference's tile's, the gain clipped to ``[1/max_gain, max_gain]`` (the lowest ring, which
    holds the tile's mean, unchanged; the mean itself is taken out before the window and put
    back after, or the window's leak of it would swamp a flat tile's detail); the tiles are
    windowed again and added up (the windows' squares sum to one, so a gain of one everywhere
    gives ``image`` back). A global ring match (:func:`match_spectrum`) leaves a crop's soft
    middle soft when its background is sharp."""
    if image.shape != reference.shape or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"need two RGB images of one size, got {image.shape}, {reference.shape}")
    if tile < 4 or tile % 2 or bins < 1:
        raise InputError(f"tile must be an even number >= 4 and bins >= 1, got {tile}, {bins}")
    if max_gain < 1:
        raise InputError(f"max_gain must be >= 1, got {max_gain}")
    h, w = image.shape[:2]
    hop = tile // 2
    pad = ((hop, hop + -(h + 2 * hop) % hop), (hop, hop + -(w + 2 * hop) % hop), (0, 0))
    n = np.arange(tile)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / tile)  # periodic: sums to one half a tile apart
    win = np.sqrt(np.outer(hann, hann))
    f = np.fft.fftfreq(tile)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    ring = np.minimum((radius / radius.max() * bins).astype(int), bins - 1).ravel()
    onehot = np.eye(bins)[ring]  # (tile * tile, bins)

    def tiles_of(img: np.ndarray):
        """The padded YCbCr image, its tiles' means, spectra and ring energies."""
        padded = np.pad(img.astype(np.float64) @ _YCC.T, pad, mode="symmetric")
        t = np.lib.stride_tricks.sliding_window_view(padded, (tile, tile), (0, 1))
        t = t[::hop, ::hop]  # (rows, cols, 3, tile, tile): corners half a tile apart
        mean = t.mean(axis=(-2, -1), keepdims=True)  # left out: the window would leak it
        spectra = np.fft.fft2((t - mean) * win, axes=(-2, -1))
        return padded, mean, spectra, (np.abs(spectra) ** 2).reshape(*t.shape[:3], -1) @ onehot

    a, mean, fa, ea = tiles_of(image)
    eb = tiles_of(reference)[3]
    gain = np.clip(np.sqrt((eb + 1e-6) / (ea + 1e-6)), 1 / max_gain, max_gain)
    gain[..., 0] = 1.0
    tiles = np.fft.ifft2(fa * gain[..., ring].reshape(fa.shape), axes=(-2, -1)).real
    tiles = (tiles + mean * win) * win
    out = np.zeros_like(a)
    for py in (0, 1):  # the tiles of one parity do not overlap: laid side by side, then added
        for px in (0, 1):
            t = tiles[py::2, px::2].transpose(0, 3, 1, 4, 2)
            t = t.reshape(t.shape[0] * tile, t.shape[2] * tile, 3)
            out[py * hop : py * hop + t.shape[0], px * hop : px * hop + t.shape[1]] += t
    rgb = out[hop : hop + h, hop : hop + w] @ np.linalg.inv(_YCC).T
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class ResynthConfig:
    """Settings of the ``resynth`` maker.

    Attributes:
        weights: the autoencoder's ``.safetensors`` (default: the shipped one).
        match_spectrum: match the reconstruction's radial spectrum to its real's (see the
            module docstring), so the fake is not simply softer than its real.
        max_gain: the largest gain (and 1/smallest) of a ring of the spectrum.
        face_blend: probability that the reconstruction replaces the real only inside a soft
            face mask (from the landmarks; a centred ellipse without them) instead of whole.
    """

    weights: str | None = None
    match_spectrum: bool = True
    max_gain: float = 6.0
    face_blend: float = 0.0

    def __post_init__(self) -> None:
        if self.weights is not None and not Path(self.weights).is_file():
            raise InputError(f"resynth weights not found: {self.weights}")
        if not self.max_gain >= 1:
            raise InputError(f"max_gain must be >= 1, got {self.max_gain}")
        if not 0 <= self.face_blend <= 1:
            raise InputError(f"face_blend must be in [0, 1], got {self.face_blend}")


@functools.lru_cache(maxsize=8)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def weights_digest(path: str | Path) -> str:
    """The first 16 hex digits of the sha256 of a weights file (cached while it is unchanged)."""
    st = Path(path).stat()
    return _digest(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


@register_pseudo_fake
class Resynth(PseudoFakeMaker):
    """A real re-made whole by the trained autoencoder; settings: :class:`ResynthConfig`.

    Its ``repr`` names the weights by their digest as well as the settings, so whatever keys a
    cache of fakes by the makers' ``repr`` (``facetrust fuse --pseudo``'s twin features,
    benchmarks/pseudo_loso.py) does not reuse fakes of retrained weights."""

    name = "resynth"
    config_class = ResynthConfig

    def __repr__(self) -> str:
        digest = weights_digest(self.cfg.weights or DEFAULT_RESYNTH)
        return f"{super().__repr__()[:-1]}, weights sha256 {digest})"

    def make(
        self,
        image: np.ndarray,
        landmarks: np.ndarray | None,
        rng: np.random.Generator,
        donor: np.ndarray | None,
        donor_landmarks: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        net = load_resynth_net(self.cfg.weights or DEFAULT_RESYNTH)
        fake = resynthesise(image, net)
        if self.cfg.match_spectrum and min(image.shape[:2]) > 1:
            fake = match_spectrum(fake, image, max_gain=self.cfg.max_gain)
        if self.cfg.face_blend and rng.random() < self.cfg.face_blend:
            m = landmark_hull_mask(landmarks, image.shape[:2], rng)[..., None]
            fake = np.clip(np.rint(fake * m + image * (1 - m)), 0, 255).astype(np.uint8)
        mask = np.abs(fake.astype(np.float32) - image.astype(np.float32)).mean(axis=2) / 255.0
        return fake, mask.astype(np.float32)

    def control(self, image: np.ndarray, fake: np.ndarray) -> np.ndarray:
        """``image`` (the real) softened tile by tile to its twin ``fake``'s spectrum
        (:func:`match_local_spectrum`): as soft as the fake, none of the decoder's traces."""
        return match_local_spectrum(image, fake)
