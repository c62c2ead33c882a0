"""Tests for clip_perception.device: device/precision resolution, CPU threads, frame upload."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from clip_perception import device as device_mod
from clip_perception.device import (PRECISION_DTYPES, HostUploader, cpu_has_native_bf16, resolve_cpu_threads,
                                    resolve_device_precision, set_cpu_threads, usable_cpus)

ZEN4_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
SKYLAKE_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


def test_resolve_device_precision():
    """auto -> cuda/fp16 when CUDA exists, else cpu/bf16 on a native-bf16 CPU, else cpu/fp32;
    unknown precision is a ValueError."""
    dev, prec = resolve_device_precision("auto", "auto")
    if torch.cuda.is_available():
        assert (dev.type, prec) == ("cuda", "fp16")
    else:
        assert (dev.type, prec) == ("cpu", "bf16" if cpu_has_native_bf16() else "fp32")
    with pytest.raises(ValueError):
        resolve_device_precision("cpu", "int4")


def test_cpu_native_bf16_flags():
    """AVX512-BF16 (Zen 4), AMX-BF16 and Arm bf16 count; AVX-512 without BF16 does not."""
    assert cpu_has_native_bf16(ZEN4_FLAGS) is True
    assert cpu_has_native_bf16(ARM_BF16) is True
    assert cpu_has_native_bf16(SKYLAKE_FLAGS.replace("avx512_vnni", "amx_bf16 amx_tile")) is True
    assert cpu_has_native_bf16(SKYLAKE_FLAGS) is False
    assert cpu_has_native_bf16("") is False
    assert cpu_has_native_bf16("model name\t: bf16 in a name avx512_bf16\n") is False  # only flags lines


@pytest.mark.parametrize("flags,auto,bf16", [(ZEN4_FLAGS, "bf16", "bf16"), (SKYLAKE_FLAGS, "fp32", "fp32")])
def test_cpu_precision_follows_native_bf16(monkeypatch, caplog, flags, auto, bf16):
    """On the CPU auto is bf16 only with native bf16; bf16 asked without it falls back to fp32 with a warning."""
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda cpuinfo=None: cpu_has_native_bf16(flags))
    with caplog.at_level(logging.WARNING, logger="clip_perception.device"):
        assert resolve_device_precision("cpu", "auto") == (torch.device("cpu"), auto)
        assert resolve_device_precision("cpu", "bf16") == (torch.device("cpu"), bf16)
        assert resolve_device_precision("cpu", "fp32") == (torch.device("cpu"), "fp32")
    warned = [r.getMessage() for r in caplog.records if "no native bf16" in r.getMessage()]
    assert len(warned) == (0 if bf16 == "bf16" else 1)


def test_precision_aliases_and_cpu_fallback_warning(caplog):
    """'float32' is fp32; 'half' on the CPU falls back to fp32 with a warning; dtypes match."""
    assert resolve_device_precision(torch.device("cpu"), "float32") == (torch.device("cpu"), "fp32")
    with caplog.at_level(logging.WARNING, logger="clip_perception.device"):
        assert resolve_device_precision("cpu", "half")[1] == "fp32"
    assert any("precision fp16 requested on CPU" in r.getMessage() for r in caplog.records)
    assert PRECISION_DTYPES == {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA fallback")
def test_cuda_requested_without_cuda_falls_back_to_cpu(caplog):
    with caplog.at_level(logging.WARNING, logger="clip_perception.device"):
        assert resolve_device_precision("cuda", "auto") == (torch.device("cpu"),
                                                            "bf16" if cpu_has_native_bf16() else "fp32")
    assert any("CUDA is not available" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("requested,cpus,expected", [(0, 2, 1), (0, 1, 1), (0, 16, 15), (3, 2, 3), (1, 64, 1)])
def test_resolve_cpu_threads_auto_leaves_one_core(requested, cpus, expected):
    """cpu_threads: 0 = usable CPUs - 1 (at least 1); a positive value is used as given."""
    assert resolve_cpu_threads(requested, cpus=cpus) == expected


def test_resolve_cpu_threads_rejects_negative():
    with pytest.raises(ValueError, match="cpu_threads must be >= 0"):
        resolve_cpu_threads(-1, cpus=4)


def test_set_cpu_threads_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        assert set_cpu_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_cpu_threads(0) == max(1, usable_cpus() - 1) == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_host_uploader_on_cpu_is_a_zero_copy_view():
    """On the CPU the uploaded tensor shares the (contiguous) frame's memory and has its values."""
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    t = HostUploader().upload(rgb, torch.device("cpu"))
    assert t.dtype == torch.uint8 and tuple(t.shape) == (4, 5, 3)
    assert np.shares_memory(t.numpy(), rgb) and np.array_equal(t.numpy(), rgb)
    strided = rgb[:, ::2]  # not contiguous: one copy, same values
    assert np.array_equal(HostUploader().upload(strided, torch.device("cpu")).numpy(), strided)
