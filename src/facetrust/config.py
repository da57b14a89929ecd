"""One typed settings object, read from arguments or ``FACETRUST_*`` environment variables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    import torch

DeviceName = Literal["auto", "cpu", "cuda", "mps"]


class Settings(BaseSettings):
    """facetrust settings. Each field can be set as ``FACETRUST_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="FACETRUST_", extra="ignore")

    device: str = Field(
        "auto", description="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"
    )
    model: str | None = Field(None, description="model name in the zoo or path to a checkpoint")
    max_image_pixels: int = Field(50_000_000, gt=0, description="largest decoded image, in pixels")
    max_file_bytes: int = Field(200 * 1024 * 1024, gt=0, description="largest image file, in bytes")
    max_video_bytes: int = Field(2 * 1024**3, gt=0, description="largest video file, in bytes")
    max_video_seconds: float = Field(3 * 3600.0, gt=0, description="longest video accepted")
    video_frames: int = Field(16, gt=0, le=10_000, description="frames sampled per video")
    face_margin: float = Field(0.2, ge=0.0, le=2.0, description="margin added around each face box")
    face_min_score: float = Field(0.5, gt=0.0, lt=1.0, description="face detector score threshold")
    threads: int | None = Field(None, gt=0, description="CPU threads for torch and the face models")
    runtime: Literal["auto", "torch", "onnx"] = Field(
        "auto",
        description="where the networks run: torch, onnx (ONNX Runtime, CPU), or auto (onnx "
        "when the model's export is in the cache, `facetrust export`, else torch)",
    )
    # work budgets (facetrust.media.budget): decided from the header, before decoding
    max_aspect_ratio: float | None = Field(
        1000.0, ge=1.0, description="thinnest image accepted (long side / short side)"
    )
    max_windows: int = Field(
        256, gt=0, description="most face-detector windows per image (finer tiles dropped first)"
    )
    analysis_max_pixels: int | None = Field(
        None, gt=0, description="images above this many pixels are analysed at a reduced size"
    )
    max_video_decoded_bytes: int = Field(
        768 * 1024**2, gt=0, description="RGB bytes of the sampled video frames, all together"
    )
    max_video_decode_pixels: int = Field(
        60_000_000_000, gt=0, description="frames decoded x pixels per frame, per video"
    )


def resolve_device(name: str = "auto") -> str:
    """Turn a device preference into a concrete torch device string.

    ``auto`` picks cuda, then mps, then cpu. An explicit device that is not available is an error.
    """
    import torch

    from facetrust.errors import InputError

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name == "cpu":
        return "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} requested but CUDA is not available")
        return name
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError("device 'mps' requested but MPS is not available")
        return name
    raise InputError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")


def resolve_dtype(precision: str, device: str | torch.device = "cpu") -> torch.dtype:
    """``"float32"``, ``"bfloat16"`` or ``"auto"`` (bf16 where the hardware runs it natively:
    CUDA with bf16 support, or a CPU with AVX512-BF16/AMX, :func:`cpu_bf16_native`; else
    float32)."""
    import torch

    from facetrust.errors import InputError

    if precision == "float32":
        return torch.float32
    if precision == "bfloat16":
        return torch.bfloat16
    if precision != "auto":
        raise InputError(f"precision must be auto, float32 or bfloat16, got {precision!r}")
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if dev.type == "cpu":
        try:  # oneDNN's check is true on any AVX-512 CPU, bfloat16 emulated or not
            onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            onednn = False
        return torch.bfloat16 if onednn and cpu_bf16_native() else torch.float32
    return torch.float32


# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that still allow its bfloat16 instructions
_BF16_ISA_WORDS = ("ALL", "BF16", "FP16", "AMX", "AVX10")


def cpu_bf16_native() -> bool:
    """True where the CPU has bfloat16 arithmetic (AVX-512 BF16 or AMX on x86, BF16 on Arm), as
    ``/proc/cpuinfo`` lists it, and oneDNN may use it (no ``ONEDNN_MAX_CPU_ISA`` cap below it).
    Elsewhere bfloat16 is emulated: the CLIP tower under bfloat16 autocast took 3x float32's
    time (552 against 180 ms) with oneDNN capped at plain AVX-512, which PyTorch's own check
    calls supported (benchmarks/bf16_speed.py). False where it cannot be read (float32 is always
    right). Does not import torch."""
    import os

    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    if cap and not any(w in cap.upper() for w in _BF16_ISA_WORDS):
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    except OSError:
        pass
    return False


def apply_threads(n: int | None) -> int:
    """Set the CPU threads torch and OpenCV use to ``n``; return torch's thread count.

    Process-wide: call it from entry points (the CLI, the server start, the trainer's ``run``),
    never from a constructor. ``None`` leaves the current settings.
    """
    import os
    import sys

    import cv2

    from facetrust.errors import InputError

    if n is not None:
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise InputError(f"threads must be a whole number >= 1, got {n!r}")
        cv2.setNumThreads(int(n))
        if "torch" not in sys.modules:
            # torch is not imported yet (the ONNX Runtime path may never import it; importing it
            # costs seconds): its thread pool reads OMP_NUM_THREADS when it starts
            os.environ["OMP_NUM_THREADS"] = str(int(n))
            return int(n)
    import torch

    if n is not None:
        torch.set_num_threads(int(n))
    return torch.get_num_threads()


def default_threads() -> int:
    """The CPU threads a command uses when none is asked for: the cores this process may run
    on (its affinity, e.g. a container's CPU set), less the cores other processes keep busy
    (the 1-minute load average, rounded), at least one. torch, OpenCV and the face models
    (LiteRT) run one after another, each with this many, so together they do not oversubscribe
    the cores; and on a busy machine torch does not spread over cores it cannot get (there,
    two threads made `protect` 4-6x slower than one: docs/benchmarks.md, Threads)."""
    import os

    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except (AttributeError, OSError):  # no load average on this system
        busy = 0
    return max(1, min(cores, cores - busy))
