"""Where the CLIP model runs: device, numeric precision and CPU threads (ROS-free).

* :func:`resolve_device_precision` turns the ``device`` / ``precision`` parameters into
  what will actually run (CUDA when asked and present, else the CPU; fp16 only on CUDA,
  bf16 on CUDA and on CPUs with native bf16 instructions, :func:`cpu_has_native_bf16`).
* :func:`usable_cpus`, :func:`resolve_cpu_threads`, :func:`set_cpu_threads`: the torch
  intra-op thread count of the ``cpu_threads`` parameter (0 = auto: one core left to ROS 2).
* :class:`HostUploader`: frames to the device through reused pinned buffers.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import numpy as np
import torch

log = logging.getLogger(__name__)

#: Precision spellings accepted besides "auto", "fp32", "fp16" and "bf16".
_PRECISION_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "amp": "fp16"}

#: torch dtype of each resolved precision.
PRECISION_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        dev = device
    else:
        d = str(device).strip().lower()
        dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if d in ("", "auto") else d)
    if dev.type == "cuda" and not torch.cuda.is_available():
        log.warning("device %r requested but CUDA is not available; using CPU", str(device))
        dev = torch.device("cpu")
    return dev


#: CPU feature flags (``/proc/cpuinfo``) of native bf16 arithmetic: x86 AVX512-BF16 (``vdpbf16ps``,
#: AMD Zen 4, Intel Cooper Lake and later), Intel AMX-BF16 (Sapphire Rapids), Arm ``bf16``
#: (Armv8.6-A BFDOT / BFMMLA).  oneDNN (torch's CPU matmul) uses them for bf16 linear layers.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_native_bf16(cpuinfo: Optional[str] = None) -> bool:
    """Whether this CPU does bf16 arithmetic natively (one of :data:`NATIVE_BF16_FLAGS`).

    Why it matters: on such a CPU the ViT-B/32 image tower runs about 2x faster in bf16 than
    in fp32 (this project's 2-core AMD EPYC Zen 4, open_clip's mixed bf16, 224 px crops, batch
    1 / 5 / 10: 58 / 151 / 296 ms against 125 / 338 / 632 ms, ``scripts/measure_cpu_precision.py
    5``), embeddings within cosine 0.9999 of fp32 (random weights); without the instructions
    bf16 is emulated and slower than fp32.

    Args:
        cpuinfo: text of ``/proc/cpuinfo`` (default: read it; an unreadable file -> False).

    Returns:
        True when a ``flags`` / ``Features`` line names a native bf16 flag.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features") and NATIVE_BF16_FLAGS & set(value.split()):
            return True
    return False


def resolve_device_precision(device: str | torch.device = "auto",
                             precision: str = "auto") -> tuple[torch.device, str]:
    """Resolve ``device`` and ``precision`` requests to what will actually run.

    Args:
        device: "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:N"
            or a ``torch.device``.  CUDA requested but unavailable -> CPU with
            a warning.
        precision: "auto" (fp16 on CUDA; on the CPU bf16 when :func:`cpu_has_native_bf16`,
            else fp32), "fp32", "fp16", "bf16" (also "float32", "float16", "half",
            "bfloat16", "amp").  On the CPU fp16 falls back to fp32 with a warning (its CPU
            kernels are slow or missing), and so does bf16 without native bf16 instructions.

    Returns:
        (torch.device, precision string among "fp32"/"fp16"/"bf16"); the matching
        torch dtype is ``PRECISION_DTYPES[precision]``.

    Raises:
        ValueError: unknown precision string.
    """
    dev = _resolve_device(device)
    p = str(precision).strip().lower()
    p = _PRECISION_ALIASES.get(p, p)
    if p not in ("auto", "fp32", "fp16", "bf16"):
        raise ValueError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")
    native_bf16 = dev.type == "cpu" and cpu_has_native_bf16()
    if p == "auto":
        p = "fp16" if dev.type == "cuda" else ("bf16" if native_bf16 else "fp32")
    if dev.type == "cpu" and p != "fp32" and not (p == "bf16" and native_bf16):
        why = "this CPU has no native bf16 instructions" if p == "bf16" else "no fast fp16 kernels on CPU"
        log.warning("precision %s requested on CPU (%s); falling back to fp32", p, why)
        p = "fp32"
    return dev, p


def usable_cpus() -> int:
    """CPUs this process may run on (``os.sched_getaffinity``; ``os.cpu_count()`` elsewhere), >= 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_cpu_threads(requested: int, cpus: Optional[int] = None) -> int:
    """Torch intra-op thread count for the ``cpu_threads`` parameter.

    Args:
        requested: the parameter: >= 1 is used as given; 0 = auto.
        cpus: usable CPUs (default :func:`usable_cpus`).

    Returns:
        ``requested`` when >= 1, else ``max(1, cpus - 1)``: one core is left to the ROS 2
        middleware threads, the camera callbacks and the camera driver.  Reason: torch's
        OpenMP workers wait for each other at every parallel region, so when one of them is
        descheduled the whole forward pass stalls; measured here (2 cores, ViT-B-32 on CPU,
        cascade mode, a 30 Hz 640x480 RGB-D camera in another process, ``bench --age-run 30``),
        2 threads answered 8 frames in 30 s with output ages p90 10.9 s / max 19.3 s; 1 thread
        answered 22 frames, p90 2.2 s / max 6.0 s.

    Raises:
        ValueError: ``requested`` < 0.
    """
    if requested < 0:
        raise ValueError(f"cpu_threads must be >= 0 (0 = auto), got {requested}")
    if requested >= 1:
        return int(requested)
    return max(1, (usable_cpus() if cpus is None else int(cpus)) - 1)


def set_cpu_threads(requested: int) -> int:
    """``torch.set_num_threads(resolve_cpu_threads(requested))`` (process-wide); returns the count.

    Called by the ``clip_perception_node`` executable (it owns its process); a node or
    :class:`~clip_perception.pipeline.Detector` embedded in another program leaves the
    process's thread setting alone.

    Raises:
        ValueError: ``requested`` < 0.
    """
    n = resolve_cpu_threads(requested)
    torch.set_num_threads(n)
    return n


class HostUploader:
    """Copies (H, W, 3) uint8 frames to a device: one copy, through reused pinned buffers on CUDA.

    A buffer is kept per (slot, shape) -- at most 9, the set is cleared beyond that -- so
    frames of several cameras (one slot each) can be in flight at once (``non_blocking``).
    """

    def __init__(self) -> None:
        self._pinned: dict = {}

    def upload(self, rgb: np.ndarray, device: torch.device, slot: int = 0) -> torch.Tensor:
        """``rgb`` as a uint8 tensor on ``device`` (a zero-copy view of ``rgb`` on the CPU)."""
        t = torch.from_numpy(np.ascontiguousarray(rgb))
        if device.type != "cuda":
            return t
        key = (slot, tuple(t.shape))
        buf = self._pinned.get(key)
        if buf is None:
            if len(self._pinned) > 8:
                self._pinned.clear()
            buf = torch.empty(t.shape, dtype=torch.uint8).pin_memory()
            self._pinned[key] = buf
        buf.copy_(t)
        return buf.to(device, non_blocking=True)

    def clear(self) -> None:
        """Free the pinned buffers."""
        self._pinned.clear()
