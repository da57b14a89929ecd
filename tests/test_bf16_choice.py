"""Where bfloat16 runs: only on CPUs that compute it (AVX-512 BF16, AMX, Arm BF16), never where
oneDNN would emulate it (plain AVX-512, where the CLIP tower took 3x float32's time)."""

from __future__ import annotations

import builtins
import io

import pytest
import torch

import facetrust.config as config


def _cpuinfo(monkeypatch, text: str | None) -> None:
    real_open = builtins.open

    def fake_open(path, *a, **k):
        if str(path) == "/proc/cpuinfo":
            if text is None:
                raise FileNotFoundError(path)
            return io.StringIO(text)
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", fake_open)


SAPPHIRE = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw amx_bf16 amx_tile\n"
CASCADE = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw avx512dq avx512vl\n"
ZEN4 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [(SAPPHIRE, True), (ZEN4, True), (GRAVITON3, True), (CASCADE, False), (None, False)],
)
def test_native_bf16_read_from_the_cpu_flags(monkeypatch, cpuinfo, native):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    _cpuinfo(monkeypatch, cpuinfo)
    assert config.cpu_bf16_native() is native


def test_an_onednn_isa_cap_below_bf16_turns_it_off(monkeypatch):
    _cpuinfo(monkeypatch, SAPPHIRE)
    for cap, native in [
        ("AVX512_CORE", False),
        ("avx2", False),
        ("AVX512_CORE_BF16", True),
        ("AVX512_CORE_AMX", True),
        ("ALL", True),
    ]:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert config.cpu_bf16_native() is native, cap


def test_auto_precision_is_float32_on_an_avx512_cpu_without_bf16(monkeypatch):
    """oneDNN calls bfloat16 supported on any AVX-512 CPU; the CPU's flags decide."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    _cpuinfo(monkeypatch, CASCADE)
    assert config.resolve_dtype("auto", "cpu") == torch.float32
    _cpuinfo(monkeypatch, SAPPHIRE)
    assert config.resolve_dtype("auto", "cpu") == torch.bfloat16
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert config.resolve_dtype("auto", "cpu") == torch.float32  # a torch built without it
    assert config.resolve_dtype("bfloat16", "cpu") == torch.bfloat16  # asked for: kept
