"""CLIP image/text encoder for box proposals (ROS-free).

:class:`ClipEncoder` wraps an open_clip model (Cherti et al., "Reproducible
scaling laws for contrastive language-image learning", CVPR 2023;
https://github.com/mlfoundations/open_clip) and turns

* phrases into unit-norm text embeddings, prompt-ensembled over templates
  (Radford et al., "Learning Transferable Visual Models From Natural Language
  Supervision", ICML 2021, section 3.1.4), and
* box proposals of an RGB frame into unit-norm image embeddings, either

  - ``mode="crop"``: every box is cut out as a square around its centre (plus a
    context margin), resized to the model input and encoded in one batched
    forward pass, or
  - ``mode="dense"``: one forward pass over the whole frame; patch features
    are read out MaskCLIP-style (Zhou, Loy, Dai, "Extract Free Dense Labels
    from CLIP", ECCV 2022) and averaged inside each box.

Crop preprocessing (the batched path, :meth:`ClipEncoder.crop_batch`)
------------------------------------------------------------------------
For a box ``[x1, y1, x2, y2]`` (pixels, exclusive right/bottom edges) the
crop is the square of side ``L = round(max(w, h) * (1 + 2 * context_margin))``
centred on the box centre (a margin of ``context_margin * max(w, h)`` on each
side), snapped to whole pixels (see :func:`square_regions`).  The square is
*padded*, never centre-cropped, so tall and wide objects keep their ends;
pixels of the square outside the image take the model's mean colour quantised
to uint8 (``floor(255 * mean + 0.5)``, e.g. (123, 117, 104) for the OpenAI
mean), which normalises to within 0.5/255/std (< 0.01) of zero.

The square is then resized to the model input size with the *same* filter as
open_clip's own inference transform (PIL ``Image.resize`` with the model's
``interpolation``, bicubic a = -0.5 or bilinear, antialiased by stretching the
kernel by the downscale factor, two separable passes with a uint8 result after
each pass; Pillow ``libImaging/Resample.c``).  Two backends give the same
uint8 values (``crop_backend``; "auto" picks by device):

* ``pillow`` (CPU default, :func:`pil_square_crops`): Pillow itself resizes
  each square on a small thread pool (Pillow releases the GIL), then one
  batched normalisation.  O(filter taps) per output sample: ~20-50 ms for
  100 VGA proposals on 2 cores, where the matrix products below take
  0.2-3 s (they cost O(band) per output sample).
* ``matmul`` (CUDA default, :func:`batched_square_crops`): all crops of a
  frame are resampled at once on the device as batched matrix products
  ``Wy @ band @ Wx^T`` (``band``: the image rows/columns the crop covers)
  whose per-crop resampling matrices are built on the device from the crop
  geometry, so the frame is uploaded once and there is no per-crop Python
  loop.  It reproduces Pillow's 22-bit fixed-point coefficients and rounding
  (exact integer arithmetic in float32, see :func:`batched_square_crops`).

Either way the result matches ``preprocess(PIL square crop)``
(:meth:`ClipEncoder.reference_crop_tensor`) exactly: the same uint8 values;
what is left is float rounding in the normalisation (< 1e-4/255).  Normalisation uses the model's own mean/std from
``open_clip.get_model_preprocess_cfg(model)``; nothing is hard-coded.

Dense mode (:meth:`ClipEncoder.dense_patch_features`)
------------------------------------------------------
The frame is letterboxed (square-padded with the mean colour, aspect ratio
kept, same resampling as above) to ``dense_size`` (default: the model input
size; larger sizes interpolate the positional embeddings bicubically as
open_clip's ``resize_pos_embed`` does).  For open_clip's ``VisionTransformer``
the last transformer block's query-key attention is skipped: each patch token
``x`` gives ``out_proj(W_v ln_1(x) + b_v)`` (the attention output if every
token attended only to itself), followed by ``ln_post`` and ``proj``; no
residual, no MLP (MaskCLIP, section 3.2).  Per box, the L2-normalised patch
features are averaged with weights equal to the box/patch overlap area, then
re-normalised.  Other vision towers raise :class:`NotImplementedError`.
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import logging
import math
import os
import socket
import threading
import time
from typing import Callable, Optional, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from .params import PARAMETERS

log = logging.getLogger(__name__)

#: Prompt templates averaged for every phrase: the parameter table's default (params.py).
DEFAULT_PROMPT_TEMPLATES: tuple[str, ...] = tuple(PARAMETERS["prompt_templates"].default)

#: Batch sizes that image batches are padded up to (when bucketing is on).
DEFAULT_BATCH_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)

#: Suffixes that make a ``pretrained`` string a checkpoint path.
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")

#: Environment variables that forbid downloads (any of them set to 1/true/yes).
OFFLINE_ENV_VARS: tuple[str, ...] = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "CLIP_PERCEPTION_OFFLINE")

#: Default most images per model forward on CPU (see ``ClipEncoder(max_batch=...)``).
CPU_MAX_BATCH = 32

_TEXT_CACHE_SIZE = 256
_PIL_PRECISION_BITS = 22  # Pillow libImaging/Resample.c: PRECISION_BITS = 32 - 8 - 2
_NETWORK_PROBE_TIMEOUT_S = 3.0


class WeightsUnavailableError(RuntimeError):
    """The requested CLIP weights cannot be loaded (not cached, offline, bad file)."""


class CheckpointError(WeightsUnavailableError):
    """A checkpoint file exists but is malformed, truncated or of another architecture."""


@runtime_checkable
class Encoder(Protocol):
    """What ranking/pipeline code needs from an encoder (tests plug in their own).

    ``encode_texts(phrases)`` -> (M, D) float32 unit rows;
    ``encode_boxes(rgb (H, W, 3) uint8, boxes (N, 4) float32 xyxy px, mode)`` ->
    (N, D) float32 unit rows; ``logit_scale``: CLIP temperature (float, <= 100).
    """

    logit_scale: float

    def encode_texts(self, phrases: list[str]) -> np.ndarray: ...

    def encode_boxes(self, rgb: np.ndarray, boxes: np.ndarray, mode: str = "crop") -> np.ndarray: ...


# --------------------------------------------------------------------------------------
# Device / precision
# --------------------------------------------------------------------------------------

def resolve_device_precision(device: str | torch.device = "auto",
                             precision: str = "auto") -> tuple[torch.device, str]:
    """Resolve ``device`` and ``precision`` requests to what will actually run.

    Args:
        device: "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:N"
            or a ``torch.device``.  CUDA requested but unavailable -> CPU with
            a warning.
        precision: "auto" (fp16 on CUDA, fp32 on CPU), "fp32", "fp16", "bf16".
            fp16/bf16 on CPU fall back to fp32 with a warning (half-precision
            CPU kernels are slow or missing).

    Returns:
        (torch.device, precision string among "fp32"/"fp16"/"bf16").

    Raises:
        ValueError: unknown precision string.
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        d = str(device).strip().lower()
        if d in ("", "auto"):
            dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            dev = torch.device(d)
    if dev.type == "cuda" and not torch.cuda.is_available():
        log.warning("device %r requested but CUDA is not available; using CPU", str(device))
        dev = torch.device("cpu")
    p = str(precision).strip().lower()
    aliases = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "amp": "fp16"}
    p = aliases.get(p, p)
    if p not in ("auto", "fp32", "fp16", "bf16"):
        raise ValueError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")
    if p == "auto":
        p = "fp16" if dev.type == "cuda" else "fp32"
    if dev.type == "cpu" and p != "fp32":
        log.warning("precision %s requested on CPU; falling back to fp32", p)
        p = "fp32"
    return dev, p


# --------------------------------------------------------------------------------------
# Weights resolution (offline-first)
# --------------------------------------------------------------------------------------

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
    """
    n = resolve_cpu_threads(requested)
    torch.set_num_threads(n)
    return n


def _env_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_ENV_VARS)


def _host_reachable(host: str, port: int = 443, timeout: float = _NETWORK_PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to ``host:port`` opens within ``timeout`` seconds.

    Runs in a daemon thread so a hanging DNS lookup cannot block longer than
    ``timeout``.
    """
    result = {"ok": False}

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result["ok"] = True
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return result["ok"]


@contextlib.contextmanager
def _hf_offline():
    """Temporarily force huggingface_hub offline (cache only, no HTTP)."""
    try:
        import huggingface_hub.constants as hfc
    except ImportError:  # pragma: no cover - huggingface_hub is an open_clip dependency
        yield
        return
    old_const, old_env = hfc.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")
    hfc.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        hfc.HF_HUB_OFFLINE = old_const
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


def _hf_cache_dir(cache_dir: Optional[str]) -> str:
    if cache_dir:
        return str(cache_dir)
    try:
        import huggingface_hub.constants as hfc
        return str(hfc.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return os.path.expanduser("~/.cache/huggingface/hub")


def _hf_cached_file(repo_id: str, filenames: Sequence[str], cache_dir: Optional[str]) -> Optional[str]:
    """First of ``filenames`` present in the local HF cache of ``repo_id`` (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    for fn in filenames:
        try:
            p = try_to_load_from_cache(repo_id, fn, cache_dir=cache_dir)
        except Exception:  # malformed repo id etc.
            p = None
        if isinstance(p, str) and os.path.isfile(p):
            return p
    return None


def _looks_like_path(s: str) -> bool:
    return (
        os.sep in s
        or (os.altsep is not None and os.altsep in s)
        or s.startswith((".", "~"))
        or s.lower().endswith(CHECKPOINT_SUFFIXES)
        or os.path.exists(s)
    )


def _weights_help(model_name: str, tag: Optional[str] = None) -> str:
    pre = f", pretrained='{tag}'" if tag else ""
    return (
        "Provide a local checkpoint for this architecture (a .pt/.pth/.bin state_dict or a .safetensors "
        "file) as the pretrained value (node: -p pretrained:=/path/to/file; CLI: --checkpoint PATH), "
        "or pre-download them into the cache on a connected machine, e.g. "
        f"python -c \"import open_clip; open_clip.create_model('{model_name}'{pre})\" "
        "and copy the cache directory to this machine (or pass cache_dir=...)."
    )


def _check_model_name(model_name: str) -> None:
    import open_clip

    if model_name.startswith(("hf-hub:", "local-dir:")):
        return
    names = open_clip.list_models()
    if model_name.replace("/", "-") in names:
        return
    close = difflib.get_close_matches(model_name, names, n=5, cutoff=0.5)
    examples = close or [n for n in ("ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-B-16-SigLIP", "RN50") if n in names]
    raise ValueError(
        f"unknown open_clip model {model_name!r}; valid names include {examples} "
        f"({len(names)} in total, see open_clip.list_models())"
    )


class _WeightsPlan:
    """Where the weights come from, resolved without network access."""

    def __init__(self, kind: str, *, path: Optional[str] = None, tag: Optional[str] = None,
                 tag_cfg: Optional[dict] = None, hub_id: Optional[str] = None, local_dir: Optional[str] = None):
        self.kind = kind  # "none" | "file" | "tag_download" | "hub" | "hub_download" | "local_dir"
        self.path = path
        self.tag = tag
        self.tag_cfg = tag_cfg or {}
        self.hub_id = hub_id
        self.local_dir = local_dir


def _resolve_weights(model_name: str, pretrained: Optional[str], cache_dir: Optional[str],
                     allow_download: bool) -> _WeightsPlan:
    """Decide how to load weights; raise fast when they are not available offline."""
    import open_clip

    pre = "" if pretrained is None else str(pretrained).strip()
    if model_name.startswith("local-dir:"):
        d = model_name[len("local-dir:"):]
        if not os.path.isdir(d):
            raise WeightsUnavailableError(
                f"model {model_name!r}: directory {d!r} not found. " + _weights_help(model_name))
        return _WeightsPlan("local_dir", local_dir=d)

    hub_id = None
    if model_name.startswith("hf-hub:"):
        hub_id = model_name[len("hf-hub:"):]
    elif pre.startswith("hf-hub:"):
        hub_id = pre[len("hf-hub:"):]
    if hub_id is not None:
        if not hub_id:
            raise ValueError("empty Hugging Face Hub id after 'hf-hub:'")
        cfg = _hf_cached_file(hub_id, ["open_clip_config.json"], cache_dir)
        wts = _hf_cached_file(hub_id, ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"], cache_dir)
        if cfg and wts:
            return _WeightsPlan("hub", hub_id=hub_id, path=wts)
        if allow_download and not _env_offline() and _host_reachable(_hf_host()):
            return _WeightsPlan("hub_download", hub_id=hub_id)
        raise WeightsUnavailableError(
            f"weights for model 'hf-hub:{hub_id}' are not in the Hugging Face cache "
            f"{_hf_cache_dir(cache_dir)!r} (need open_clip_config.json and open_clip_model.safetensors or "
            f"open_clip_pytorch_model.bin) and cannot be downloaded now ({_why_no_download(allow_download)}). "
            + _weights_help(f"hf-hub:{hub_id}"))

    if pre == "" or pre.lower() == "none":
        return _WeightsPlan("none")

    if _looks_like_path(pre):
        p = os.path.expanduser(pre)
        if not os.path.isfile(p):
            raise WeightsUnavailableError(
                f"checkpoint file {p!r} for model {model_name!r} not found (or not a regular file). "
                + _weights_help(model_name))
        return _WeightsPlan("file", path=p)

    name = model_name.replace("/", "-")
    tag_cfg = open_clip.get_pretrained_cfg(name, pre)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ValueError(
            f"pretrained={pre!r} is neither a known open_clip tag for {model_name!r} nor an existing "
            f"checkpoint path; known tags: {tags or 'none'} (or use 'none' for random weights)")

    checked = []
    hub = tag_cfg.get("hf_hub", "")
    if hub:
        repo_id, fn = os.path.split(hub)
        fn = fn or "open_clip_pytorch_model.bin"
        names = []
        if fn.endswith((".bin", ".pth")):
            safe = "open_clip_model.safetensors" if fn == "open_clip_pytorch_model.bin" else fn[:-4] + ".safetensors"
            names.append(safe)
        names.append(fn)
        found = _hf_cached_file(repo_id, names, cache_dir)
        checked.append(f"Hugging Face cache {_hf_cache_dir(cache_dir)!r} (repo {repo_id}, files {names})")
        if found:
            return _WeightsPlan("file", path=found, tag=pre, tag_cfg=tag_cfg)
    url = tag_cfg.get("url", "")
    if url:
        url_cache = str(cache_dir) if cache_dir else os.path.expanduser("~/.cache/clip")
        target = os.path.join(url_cache, os.path.basename(url))
        checked.append(f"URL cache {target!r}")
        if os.path.isfile(target):
            return _WeightsPlan("file", path=target, tag=pre, tag_cfg=tag_cfg)
    if allow_download and not _env_offline():
        host = _hf_host() if hub else _url_host(url)
        if host and _host_reachable(host):
            return _WeightsPlan("tag_download", tag=pre, tag_cfg=tag_cfg)
    raise WeightsUnavailableError(
        f"weights for model {model_name!r} pretrained={pre!r} are not cached (checked: {'; '.join(checked)}) "
        f"and cannot be downloaded now ({_why_no_download(allow_download)}). " + _weights_help(model_name, pre))


def _hf_host() -> str:
    from urllib.parse import urlparse

    ep = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return urlparse(ep).hostname or "huggingface.co"


def _url_host(url: str) -> str:
    from urllib.parse import urlparse

    return urlparse(url).hostname or ""


def _why_no_download(allow_download: bool) -> str:
    if not allow_download:
        return "allow_download=False"
    if _env_offline():
        return "offline mode set by " + "/".join(OFFLINE_ENV_VARS)
    return f"network unreachable within {_NETWORK_PROBE_TIMEOUT_S:.0f} s"


# --------------------------------------------------------------------------------------
# Crop geometry and PIL-matching batched resampling
# --------------------------------------------------------------------------------------

def square_regions(boxes: np.ndarray, context_margin: float = 0.1) -> np.ndarray:
    """Square crop regions around boxes, snapped to whole pixels.

    Args:
        boxes: (N, 4) float ``[x1, y1, x2, y2]`` pixels (exclusive x2/y2).
        context_margin: margin on each side as a fraction of the longer box
            side (0.1 -> the square side is 1.2 x the longer side).

    Returns:
        (N, 3) int64 ``[x0, y0, side]``: the square covers pixel columns
        ``x0 .. x0 + side - 1`` and rows ``y0 .. y0 + side - 1`` (may extend
        past the image; those pixels are padding).  ``side >= 1``;
        ``side = floor(max(w, h) * (1 + 2 * margin) + 0.5)``,
        ``x0 = floor(cx - side / 2 + 0.5)`` with ``cx = (x1 + x2) / 2``.

    Raises:
        ValueError: wrong shape or non-finite coordinates.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if np.size(boxes) else np.zeros((0, 4))
    if not np.all(np.isfinite(b)):
        raise ValueError("boxes contain NaN/Inf")
    w = np.abs(b[:, 2] - b[:, 0])
    h = np.abs(b[:, 3] - b[:, 1])
    side = np.maximum(np.floor(np.maximum(w, h) * (1.0 + 2.0 * float(context_margin)) + 0.5), 1.0)
    cx = 0.5 * (b[:, 0] + b[:, 2])
    cy = 0.5 * (b[:, 1] + b[:, 3])
    x0 = np.floor(cx - side / 2.0 + 0.5)
    y0 = np.floor(cy - side / 2.0 + 0.5)
    return np.stack([x0, y0, side], axis=1).astype(np.int64)


def _filter_support(interpolation: str) -> float:
    return 1.0 if interpolation == "bilinear" else 2.0


def _filter(x: torch.Tensor, interpolation: str) -> torch.Tensor:
    """Pillow's resampling kernels (libImaging/Resample.c): bicubic a=-0.5, bilinear triangle."""
    x = x.abs()
    if interpolation == "bilinear":
        return torch.clamp(1.0 - x, min=0.0)
    a = -0.5
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


def _resample_coeffs(start: torch.Tensor, side: torch.Tensor, valid_len: torch.Tensor, band: int,
                     out_size: int, ksize: int, interpolation: str
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-crop 1-D resampling matrices with Pillow's coefficients.

    Pillow (``libImaging/Resample.c``: ``precompute_coeffs`` and
    ``normalize_coeffs_8bpc``): output sample ``s`` of a region of length
    ``side`` resized to ``out_size`` has centre ``(s + 0.5) * scale``
    (``scale = side / out_size``), taps ``floor(centre -+ support + 0.5)``
    clipped to the region, kernel stretched by ``max(scale, 1)`` (antialias),
    weights normalised to sum 1 and stored as 22-bit fixed-point integers.

    Args:
        start: (n,) int64 region start relative to the band origin (may be < 0).
        side: (n,) int64 region length in pixels.
        valid_len: (n,) int64 number of band pixels that are real image pixels
            (band pixels ``0 .. valid_len - 1``); other taps are padding.
        band: band length (matrix width).
        out_size: output length.
        ksize: taps per output sample (>= 2 * ceil(support) + 1).
        interpolation: "bicubic" or "bilinear".

    Returns:
        (k_hi, k_lo, k_sum): (n, out_size, band) float32 integer-valued
        matrices with ``k = 2048 * k_hi + k_lo`` the fixed-point weight of each
        in-image band pixel (|k_hi| <= 2048, |k_lo| <= 1024, so float32 matrix
        products with 8-bit pixels are exact), and (n, out_size) int64, the
        sum of *all* fixed-point taps (padding taps included).
    """
    dev = start.device
    side_f = side.to(torch.float64)
    scale = side_f / float(out_size)
    fs = torch.clamp(scale, min=1.0)
    support = _filter_support(interpolation) * fs
    s = torch.arange(out_size, device=dev, dtype=torch.float64)
    center = (s[None, :] + 0.5) * scale[:, None]
    xmin = torch.clamp(torch.floor(center - support[:, None] + 0.5), min=0.0)
    xmax = torch.minimum(torch.floor(center + support[:, None] + 0.5), side_f[:, None])
    k = torch.arange(ksize, device=dev, dtype=torch.float64)
    j = xmin[..., None] + k  # (n, S, K) tap index inside the region
    valid = j < xmax[..., None]
    w = _filter((j - center[..., None] + 0.5) / fs[:, None, None], interpolation) * valid
    ww = w.sum(-1, keepdim=True)
    w = torch.where(ww != 0, w / torch.where(ww != 0, ww, torch.ones_like(ww)), w)
    q = w * float(1 << _PIL_PRECISION_BITS)
    q = torch.where(q < 0, torch.ceil(q - 0.5), torch.floor(q + 0.5))  # C (int)(x -+ 0.5)
    q = torch.where(valid, q, torch.zeros_like(q))
    k_sum = q.sum(-1).to(torch.int64)
    x = start.to(torch.float64)[:, None, None] + j  # band coordinate
    inimg = valid & (x >= 0) & (x < valid_len.to(torch.float64)[:, None, None])
    q = torch.where(inimg, q, torch.zeros_like(q))
    hi = torch.round(q / 2048.0)
    lo = q - hi * 2048.0
    xi = x.clamp(0, band - 1).to(torch.int64)
    shape = (start.shape[0], out_size, band)
    k_hi = torch.zeros(shape, device=dev, dtype=torch.float32).scatter_add_(2, xi, hi.to(torch.float32))
    k_lo = torch.zeros(shape, device=dev, dtype=torch.float32).scatter_add_(2, xi, lo.to(torch.float32))
    return k_hi, k_lo, k_sum


def _split_fill(fill: torch.Tensor, k_sum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``fill * k_sum + 2**21`` (Pillow's rounding offset) as ``2048 * hi + lo``, 0 <= lo < 2048, float32."""
    f = fill * k_sum + (1 << (_PIL_PRECISION_BITS - 1))
    return torch.div(f, 2048, rounding_mode="floor").to(torch.float32), torch.remainder(f, 2048).to(torch.float32)


def _fixed_point_round(p_hi: torch.Tensor, p_lo: torch.Tensor,
                       f_hi: torch.Tensor, f_lo: torch.Tensor) -> torch.Tensor:
    """Pillow's ``clip8(acc) = clamp(acc >> 22, 0, 255)`` with ``acc = 2048 (p_hi + f_hi) + p_lo + f_lo``.

    All operands are integer-valued float32 below 2**24, so with
    ``floor((2048 X + Y) / 2**22) = floor((X + floor(Y / 2048)) / 2048)`` every
    step is exact in float32 (no int64 temporaries).
    """
    q = torch.floor((p_lo + f_lo) * (1.0 / 2048.0))
    return torch.floor((p_hi + f_hi + q) * (1.0 / 2048.0)).clamp_(0.0, 255.0)


@contextlib.contextmanager
def _exact_fp32_matmul(device: torch.device):
    """Disable TF32 for the integer-exact float32 products (CUDA only)."""
    if device.type != "cuda":
        yield
        return
    old = torch.get_float32_matmul_precision()
    if old != "highest":
        torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        if old != "highest":
            torch.set_float32_matmul_precision(old)


def batched_square_crops(frame: torch.Tensor, regions: np.ndarray, out_hw: tuple[int, int],
                         fill_u8: Sequence[int], interpolation: str = "bicubic",
                         max_chunk_bytes: int = 1 << 27) -> torch.Tensor:
    """Cut square regions out of a frame and resize them, all crops at once.

    Bit-exact emulation (up to float32 exactness, see :func:`_resample_coeffs`)
    of ``PIL.Image.resize(square_crop, out_hw, interpolation)`` on the
    square-padded crop: horizontal pass, uint8 intermediate, vertical pass,
    with Pillow's 22-bit fixed-point coefficients and half-up rounding.
    Each pass is a batched matrix product; only the band of image rows and
    columns a crop covers takes part (crops are grouped by band size, so the
    Python loop runs over a few size groups / memory chunks, never per crop).

    Args:
        frame: (H, W, 3) uint8 tensor on the target device.
        regions: (N, 3) int64 ``[x0, y0, side]`` from :func:`square_regions`.
        out_hw: (Sh, Sw) output size in pixels.
        fill_u8: 3 ints, colour of the square's pixels outside the image.
        interpolation: "bicubic" (a = -0.5) or "bilinear" (Pillow kernels).
        max_chunk_bytes: bound on the temporaries of one batched product.

    Returns:
        (N, 3, Sh, Sw) float32 on ``frame.device`` with integer values 0..255.
    """
    dev = frame.device
    H, W = int(frame.shape[0]), int(frame.shape[1])
    Sh, Sw = int(out_hw[0]), int(out_hw[1])
    reg = np.asarray(regions, dtype=np.int64).reshape(-1, 3)
    n = int(reg.shape[0])
    out = torch.empty(n, 3, Sh, Sw, device=dev, dtype=torch.float32)
    if n == 0:
        return out
    fill = torch.tensor([int(v) for v in fill_u8], device=dev, dtype=torch.int64)
    fp = frame.permute(2, 0, 1).to(torch.float32) - fill.to(torch.float32)[:, None, None]  # (3, H, W)
    x0, y0, side = reg[:, 0], reg[:, 1], reg[:, 2]
    xa, xb = np.clip(x0, 0, W), np.clip(x0 + side, 0, W)
    ya, yb = np.clip(y0, 0, H), np.clip(y0 + side, 0, H)
    wv, hv = np.maximum(xb - xa, 0), np.maximum(yb - ya, 0)  # in-image extent
    xa = np.minimum(xa, W - 1)
    ya = np.minimum(ya, H - 1)
    supp = _filter_support(interpolation)
    # Group crops of similar band size (factor sqrt(2) apart) so each group is one dense product.
    key = np.ceil(2.0 * np.log2(np.maximum(np.maximum(hv, wv), 1))).astype(np.int64)
    fill_f = fill.to(torch.float32)
    with _exact_fp32_matmul(dev):
        for g in np.unique(key):
            idx_all = np.nonzero(key == g)[0]
            hb = int(max(1, hv[idx_all].max()))
            wb = int(max(1, wv[idx_all].max()))
            per_crop = 4 * (3 * hb * wb + 2 * Sw * wb + 2 * Sh * hb + 6 * hb * Sw + 6 * Sh * Sw)
            chunk = max(1, int(max_chunk_bytes // per_crop))
            for c0 in range(0, len(idx_all), chunk):
                idx = idx_all[c0:c0 + chunk]
                t = lambda a: torch.as_tensor(a[idx], device=dev)  # noqa: E731
                rows = (t(ya)[:, None] + torch.arange(hb, device=dev)[None]).clamp_(max=H - 1)
                cols = (t(xa)[:, None] + torch.arange(wb, device=dev)[None]).clamp_(max=W - 1)
                patch = fp[:, rows[:, :, None], cols[:, None, :]].transpose(0, 1)  # (m, 3, hb, wb)
                smax = float(side[idx].max())
                kw = 2 * int(math.ceil(supp * max(smax / Sw, 1.0))) + 3
                kh = 2 * int(math.ceil(supp * max(smax / Sh, 1.0))) + 3
                xh, xl, xs = _resample_coeffs(t(x0 - xa), t(side), t(wv), wb, Sw, kw, interpolation)
                yh, yl, ys = _resample_coeffs(t(y0 - ya), t(side), t(hv), hb, Sh, kh, interpolation)
                m = len(idx)
                # horizontal pass -> uint8 intermediate, (m, 3 * hb, Sw)
                patch = patch.reshape(m, 3 * hb, wb)
                fh, fl = _split_fill(fill[None, :, None, None], xs[:, None, None, :])  # (m, 3, 1, Sw)
                tmp = _fixed_point_round(torch.bmm(patch, xh.transpose(1, 2)).view(m, 3, hb, Sw),
                                         torch.bmm(patch, xl.transpose(1, 2)).view(m, 3, hb, Sw), fh, fl)
                tmp = (tmp - fill_f[None, :, None, None]).permute(0, 2, 1, 3).reshape(m, hb, 3 * Sw)
                # vertical pass -> (m, Sh, 3, Sw)
                fh, fl = _split_fill(fill[None, None, :, None], ys[:, :, None, None])  # (m, Sh, 3, 1)
                res = _fixed_point_round(torch.bmm(yh, tmp).view(m, Sh, 3, Sw),
                                         torch.bmm(yl, tmp).view(m, Sh, 3, Sw), fh, fl)
                out[torch.as_tensor(idx, device=dev)] = res.permute(0, 2, 1, 3)
    return out



_PIL_POOL: Optional["concurrent.futures.ThreadPoolExecutor"] = None
_PIL_POOL_LOCK = threading.Lock()
#: Below this many crops the Pillow backend resizes inline (a thread hand-off costs more).
_PIL_POOL_MIN_CROPS = 8


def _pil_pool():
    """Process-wide thread pool for Pillow resizes (Pillow releases the GIL while resampling)."""
    global _PIL_POOL
    with _PIL_POOL_LOCK:
        if _PIL_POOL is None:
            import concurrent.futures

            workers = max(1, min(8, torch.get_num_threads(), os.cpu_count() or 1))
            _PIL_POOL = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="clip_crop")
        return _PIL_POOL


def pil_square_crops(rgb: np.ndarray, regions: np.ndarray, out_hw: tuple[int, int],
                     fill_u8: Sequence[int], interpolation: str = "bicubic") -> torch.Tensor:
    """Cut square regions out of a frame and resize each with Pillow (CPU backend).

    The same result as :func:`batched_square_crops` -- and as open_clip's
    ``preprocess`` on the square-padded crop -- because it *is* Pillow's
    ``Image.resize`` (``libImaging/Resample.c``, no ``reducing_gap``) on the
    square crop: the square is sliced out of the frame (a view when it lies
    inside the image, else a padded copy filled with ``fill_u8``) and resized.
    Crops are spread over a small thread pool; Pillow releases the GIL while it
    resamples, so the pool uses every core.  On a CPU this costs O(taps) per
    output sample instead of the O(band) of the matrix products, i.e. about
    20-50 ms instead of 0.2-3 s for 100 VGA proposals (2 cores).

    Args:
        rgb: (H, W, 3) uint8 RGB NumPy array.
        regions: (N, 3) int64 ``[x0, y0, side]`` from :func:`square_regions`.
        out_hw: (Sh, Sw) output size in pixels.
        fill_u8: 3 ints, colour of the square's pixels outside the image.
        interpolation: "bicubic" (a = -0.5) or "bilinear" (Pillow kernels).

    Returns:
        (N, 3, Sh, Sw) float32 CPU tensor with integer values 0..255.
    """
    from PIL import Image

    H, W = int(rgb.shape[0]), int(rgb.shape[1])
    Sh, Sw = int(out_hw[0]), int(out_hw[1])
    reg = np.asarray(regions, dtype=np.int64).reshape(-1, 3)
    resample = Image.BILINEAR if interpolation == "bilinear" else Image.BICUBIC
    fill = np.asarray([int(v) for v in fill_u8], np.uint8)
    out = np.empty((len(reg), Sh, Sw, 3), np.uint8)

    def one(i: int) -> None:
        x0, y0, side = (int(v) for v in reg[i])
        ya, yb = max(0, y0), min(H, y0 + side)
        xa, xb = max(0, x0), min(W, x0 + side)
        if ya == y0 and xa == x0 and yb == y0 + side and xb == x0 + side:
            sq = rgb[ya:yb, xa:xb]
        else:
            sq = np.empty((side, side, 3), np.uint8)
            sq[...] = fill
            if yb > ya and xb > xa:
                sq[ya - y0:yb - y0, xa - x0:xb - x0] = rgb[ya:yb, xa:xb]
        img = Image.fromarray(np.ascontiguousarray(sq), "RGB")
        out[i] = np.asarray(img.resize((Sw, Sh), resample))

    if len(reg) < _PIL_POOL_MIN_CROPS:
        for i in range(len(reg)):
            one(i)
    else:
        list(_pil_pool().map(one, range(len(reg))))
    return torch.from_numpy(out).permute(0, 3, 1, 2).float()


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {a.shape} dtype {a.dtype}")
    return a


def _check_boxes(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float32)
    if b.size == 0:
        return np.zeros((0, 4), np.float32)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"expected boxes of shape (N, 4), got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError("boxes contain NaN/Inf")
    return b


# --------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------

class ClipEncoder:
    """open_clip model + tokenizer + batched crop/dense image encoding.

    Construct once; a different model is a new instance (the model is never
    swapped inside an instance).  Public methods are serialised with a lock, so
    an instance may be shared between threads.

    Args:
        model_name: open_clip architecture ("ViT-B-32", "ViT-B-16-SigLIP", ...),
            or "hf-hub:org/name" / "local-dir:/path".
        pretrained: open_clip tag ("openai", "laion2b_s34b_b79k", ...),
            "hf-hub:org/name", a local checkpoint file (.pt/.pth/.bin read with
            ``torch.load(weights_only=True)``; .safetensors via safetensors),
            or "none" (random weights; a loud WARNING is logged).  Tags are
            looked up in the local caches first and loaded with the network
            off; with ``quick_gelu`` taken from the tag (e.g. OpenAI weights).
            A local file for a QuickGELU model needs the "-quickgelu" model name.
        device: "auto" | "cpu" | "cuda[:N]" (see :func:`resolve_device_precision`).
        precision: "auto" | "fp32" | "fp16" | "bf16" (open_clip mixed
            precision: half weights, fp32 LayerNorm).
        prompt_templates: templates containing "{}" (default
            :data:`DEFAULT_PROMPT_TEMPLATES`).
        cache_dir: download cache for open_clip / huggingface_hub (None =
            their defaults: ~/.cache/huggingface/hub and ~/.cache/clip).
        batch_buckets: sizes image batches are padded to (when bucketing).
        context_margin: crop margin per side as a fraction of the longer box side.
        dense_size: input side for dense mode (None -> model input size);
            rounded down to a multiple of the patch size.
        bucket_batches: pad image batches to ``batch_buckets`` sizes (repeated
            shapes for cuDNN autotuning / torch.compile).  None -> on for CUDA
            or ``compile=True``, off on CPU (padding would only waste compute).
        compile: wrap the vision tower in ``torch.compile``.
        allow_download: if weights are not cached, try downloading (only when
            no offline env var is set and the host answers within 3 s).
        crop_backend: how crops (and the dense letterbox) are resampled:
            "pillow" (:func:`pil_square_crops`, Pillow per crop on a thread
            pool: fastest on a CPU), "matmul" (:func:`batched_square_crops`,
            batched products on the model's device: fastest on a GPU, no
            per-crop work on the host) or "auto" (pillow on CPU, matmul on
            CUDA).  Both give Pillow's uint8 values exactly.
        max_batch: most images per model forward (larger inputs are chunked).
            None -> the largest ``batch_buckets`` size on CUDA,
            :data:`CPU_MAX_BATCH` on CPU (bigger CPU batches are no faster --
            the matrix products are already large -- but cost resident
            memory: about 4 MiB of activations per ViT-B/32 image).

    Attributes:
        model, tokenizer, preprocess (open_clip's inference transform),
        preprocess_cfg (dict), device (torch.device), dtype (torch.dtype),
        embed_dim (int D), context_length (int, tokens), logit_scale (float),
        input_size ((Sh, Sw) pixels), fell_back_to_cpu (bool),
        fault_hook (testing: callable(batch) run before every model forward,
        may raise e.g. ``torch.OutOfMemoryError``),
        stage_timings (``types.Timings`` or None: when set, image/text calls
        add their stage wall-clock milliseconds to it -- ``encoder.crop``
        (crop + resize + normalise), ``encoder.image`` (crop forward to a
        NumPy result), ``encoder.dense_input``, ``encoder.dense_forward``,
        ``encoder.pool``, ``encoder.text`` -- synchronising CUDA at each
        stage boundary; None (default) adds no synchronisation).

    Raises:
        ValueError: unknown model name, unknown tag, bad templates/precision.
        WeightsUnavailableError: weights not cached and not downloadable now
            (raised within seconds); CheckpointError for a bad checkpoint file.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: Optional[str] = "openai",
        device: str | torch.device = "auto",
        precision: str = "auto",
        prompt_templates: Optional[Sequence[str]] = None,
        cache_dir: Optional[str] = None,
        batch_buckets: Sequence[int] = DEFAULT_BATCH_BUCKETS,
        context_margin: float = 0.1,
        dense_size: Optional[int] = None,
        bucket_batches: Optional[bool] = None,
        compile: bool = False,
        allow_download: bool = True,
        crop_backend: str = "auto",
        max_batch: Optional[int] = None,
    ):
        import open_clip
        from open_clip.transform import PreprocessCfg, image_transform_v2

        self._lock = threading.RLock()
        self.model_name = str(model_name)
        self.pretrained = pretrained
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        _check_model_name(self.model_name)
        templates = tuple(prompt_templates) if prompt_templates is not None else DEFAULT_PROMPT_TEMPLATES
        if not templates:
            templates = ("{}",)
        bad = [t for t in templates if not isinstance(t, str) or "{}" not in t]
        if bad:
            raise ValueError(f"prompt templates must contain '{{}}': {bad}")
        self.prompt_templates = templates
        buckets = sorted({int(b) for b in batch_buckets if int(b) >= 1})
        if not buckets:
            raise ValueError("batch_buckets must contain positive sizes")
        self.batch_buckets = tuple(buckets)
        if not (0.0 <= float(context_margin) <= 2.0):
            raise ValueError("context_margin must be in [0, 2]")
        self.context_margin = float(context_margin)

        self.device, self.precision = resolve_device_precision(device, precision)
        if crop_backend not in ("auto", "pillow", "matmul"):
            raise ValueError(f"crop_backend must be auto, pillow or matmul, got {crop_backend!r}")
        self.crop_backend_request = crop_backend
        if max_batch is not None and int(max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch_request = None if max_batch is None else int(max_batch)
        self.stage_timings = None
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.precision]
        if bucket_batches is None:
            bucket_batches = self.device.type == "cuda" or compile
        self.bucket_batches = bool(bucket_batches)

        t0 = time.monotonic()
        plan = _resolve_weights(self.model_name, pretrained, self.cache_dir, allow_download)
        self.model, self.tokenizer = self._load(plan)
        self.weights_source = plan.path or plan.hub_id or plan.tag or plan.local_dir or "none"
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        log.info("loaded %s (%s) on %s/%s in %.1f s", self.model_name, self.weights_source,
                 self.device, self.precision, time.monotonic() - t0)

        self.preprocess_cfg = dict(open_clip.get_model_preprocess_cfg(self.model))
        pcfg = PreprocessCfg(**{k: v for k, v in self.preprocess_cfg.items()
                                if k in PreprocessCfg.__dataclass_fields__})
        self.preprocess = image_transform_v2(pcfg, is_train=False)
        size = self.preprocess_cfg.get("size", 224)
        self.input_size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        interp = str(self.preprocess_cfg.get("interpolation", "bicubic"))
        self.interpolation = "bilinear" if interp == "bilinear" else "bicubic"  # open_clip maps others to bicubic
        mean = self.preprocess_cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))
        std = self.preprocess_cfg.get("std", (0.26862954, 0.26130258, 0.27577711))
        mean = tuple(mean) * 3 if len(tuple(mean)) == 1 else tuple(mean)
        std = tuple(std) * 3 if len(tuple(std)) == 1 else tuple(std)
        self.mean = np.asarray(mean, np.float64)
        self.std = np.asarray(std, np.float64)
        self.fill_u8 = tuple(int(v) for v in np.floor(self.mean * 255.0 + 0.5).clip(0, 255))
        self._set_norm_tensors()

        self.context_length = int(getattr(self.tokenizer, "context_length", None)
                                  or getattr(self.model, "context_length", 77))
        self.logit_scale = float(torch.clamp(self.model.logit_scale.detach().float().exp(), max=100.0).reshape(-1)[0])
        self.embed_dim = int(self._infer_embed_dim())

        vis = getattr(self.model, "visual", None)
        ps = getattr(vis, "patch_size", None)
        if ps is not None:
            ps = (int(ps), int(ps)) if isinstance(ps, int) else (int(ps[0]), int(ps[1]))
        self.patch_size = ps
        ds = int(dense_size) if dense_size else max(self.input_size)
        if self.patch_size is not None:
            ds = max(self.patch_size[0], ds - ds % self.patch_size[0])
        self.dense_size = ds
        self._pos_cache: dict = {}

        self._text_cache: "collections.OrderedDict[str, np.ndarray]" = collections.OrderedDict()
        self.text_cache_size = _TEXT_CACHE_SIZE
        self._pinned: dict = {}
        self.fell_back_to_cpu = False
        self.fault_hook: Optional[Callable[[torch.Tensor], None]] = None
        self._visual = self.model.visual
        self.compiled = False
        if compile:
            try:
                self._visual = torch.compile(self.model.visual, dynamic=False)
                self.compiled = True
            except Exception as e:  # pragma: no cover - depends on toolchain
                log.warning("torch.compile failed (%s); running eagerly", e)

    # ---------------------------------------------------------------- loading
    def _load(self, plan: _WeightsPlan):
        import open_clip

        kw = dict(precision=self.precision, device=self.device, cache_dir=self.cache_dir)
        name = self.model_name
        if plan.tag_cfg:
            kw["force_quick_gelu"] = bool(plan.tag_cfg.get("quick_gelu", False))
            kw["force_preprocess_cfg"] = {k: plan.tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode")
                                          if k in plan.tag_cfg}
        offline = contextlib.nullcontext()
        if plan.kind == "none":
            log.warning("=" * 72)
            log.warning("CLIP model %s created with RANDOM weights (pretrained=%r): random weights — "
                        "rankings are meaningless. Use for tests only.", name, self.pretrained)
            log.warning("=" * 72)
            pre = None
        elif plan.kind == "file":
            pre = plan.path
        elif plan.kind == "tag_download":
            pre = plan.tag
        elif plan.kind in ("hub", "hub_download"):
            name, pre = "hf-hub:" + str(plan.hub_id), None
            if plan.kind == "hub":
                offline = _hf_offline()
        else:  # local_dir
            pre = None
            offline = _hf_offline()
        try:
            with offline, _quiet_root_logger():
                model = open_clip.create_model(name, pretrained=pre, weights_only=True, **kw)
        except WeightsUnavailableError:
            raise
        except Exception as e:
            if plan.kind == "file":
                raise CheckpointError(
                    f"cannot load checkpoint {plan.path!r} for model {self.model_name!r}: the file is malformed, "
                    f"truncated or for another architecture ({type(e).__name__}: {e}). "
                    + _weights_help(self.model_name)) from e
            raise WeightsUnavailableError(
                f"loading model {name!r} pretrained={self.pretrained!r} failed "
                f"({type(e).__name__}: {e}). " + _weights_help(self.model_name)) from e
        try:
            with (_hf_offline() if plan.kind in ("hub", "local_dir") or _env_offline() else contextlib.nullcontext()):
                tok = open_clip.get_tokenizer(name, cache_dir=self.cache_dir)
        except Exception as e:
            raise WeightsUnavailableError(
                f"tokenizer for model {name!r} is unavailable ({type(e).__name__}: {e}); models with Hugging Face "
                f"tokenizers need the 'transformers' package and the tokenizer files in the cache "
                f"{_hf_cache_dir(self.cache_dir)!r}.") from e
        return model, tok

    def _set_norm_tensors(self) -> None:
        std255 = torch.tensor(self.std * 255.0, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._scale = 1.0 / std255
        self._shift = torch.tensor(self.mean / self.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def _infer_embed_dim(self) -> int:
        vis = getattr(self.model, "visual", None)
        for attr in ("output_dim",):
            v = getattr(vis, attr, None)
            if isinstance(v, int):
                return v
        proj = getattr(self.model, "text_projection", None)
        if isinstance(proj, torch.Tensor) and proj.ndim == 2:
            return int(proj.shape[1])
        with torch.inference_mode():
            return int(self._encode_text_tokens(self.tokenizer(["x"])).shape[1])

    # ---------------------------------------------------------------- text
    def encode_texts(self, phrases: list[str]) -> np.ndarray:
        """Prompt-ensembled text embeddings.

        Each phrase is inserted into every template, the template embeddings
        are L2-normalised, averaged and re-normalised (Radford et al. 2021,
        section 3.1.4).  Results are cached per phrase (LRU, 256 phrases).
        Text longer than ``context_length`` tokens is truncated with a warning.

        Args:
            phrases: M strings.

        Returns:
            (M, D) float32, unit L2 norm rows (a fresh array each call).
        """
        if isinstance(phrases, str):
            phrases = [phrases]
        phrases = [str(p) for p in phrases]
        with self._lock:
            t0 = time.perf_counter()
            missing = list(dict.fromkeys(p for p in phrases if p not in self._text_cache))
            if missing:
                emb = self._encode_phrases(missing)
                for p, e in zip(missing, emb):
                    e.setflags(write=False)
                    self._text_cache[p] = e
            for p in phrases:
                self._text_cache.move_to_end(p)
            out = (np.stack([self._text_cache[p] for p in phrases]) if phrases
                   else np.zeros((0, self.embed_dim), np.float32))
            while len(self._text_cache) > self.text_cache_size:
                self._text_cache.popitem(last=False)
            self._mark("encoder.text", t0)
        return out

    def _token_count(self, text: str) -> Optional[int]:
        tok = self.tokenizer
        try:
            if hasattr(tok, "encode") and hasattr(tok, "sot_token_id"):  # open_clip SimpleTokenizer
                return len(tok.encode(text)) + 2
            inner = getattr(tok, "tokenizer", None)
            if inner is not None:
                return len(inner(text)["input_ids"])
        except Exception:
            return None
        return None

    @torch.inference_mode()
    def _encode_phrases(self, phrases: list[str]) -> list[np.ndarray]:
        texts = [t.replace("{}", p) for p in phrases for t in self.prompt_templates]
        for p in phrases:
            n = max((self._token_count(t.replace("{}", p)) or 0) for t in self.prompt_templates)
            if n > self.context_length:
                log.warning("text %r is %d tokens long with its prompt template; truncated to the "
                            "tokenizer context length %d", p[:80], n, self.context_length)
        tokens = self.tokenizer(texts)
        feats = self._run_batched(tokens, self._encode_text_tokens, bucketed=False)
        feats = F.normalize(feats.float(), dim=-1).view(len(phrases), len(self.prompt_templates), -1)
        emb = F.normalize(feats.mean(dim=1), dim=-1).cpu().numpy().astype(np.float32)
        return [emb[i].copy() for i in range(len(phrases))]

    def _encode_text_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.to(self.device)
        if self.fault_hook is not None:
            self.fault_hook(tokens)
        return self.model.encode_text(tokens).float()

    # ---------------------------------------------------------------- crops
    @property
    def max_batch(self) -> int:
        """Most images per model forward (see the ``max_batch`` argument)."""
        if self.max_batch_request is not None:
            return self.max_batch_request
        return max(self.batch_buckets) if self.device.type == "cuda" else min(CPU_MAX_BATCH, max(self.batch_buckets))

    @property
    def crop_backend(self) -> str:
        """Resampling backend in use: "pillow" or "matmul" (see the ``crop_backend`` argument)."""
        if self.crop_backend_request != "auto":
            return self.crop_backend_request
        return "matmul" if self.device.type == "cuda" else "pillow"

    def _mark(self, stage: str, t0: float) -> float:
        """Add ``now - t0`` to ``stage_timings[stage]`` (ms; CUDA synchronised); return now."""
        if self.stage_timings is None:
            return t0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t = time.perf_counter()
        self.stage_timings.add(stage, (t - t0) * 1e3)
        return t

    def _square_crops(self, frame: torch.Tensor, regions: np.ndarray, out_hw: tuple[int, int]) -> torch.Tensor:
        """(N, 3, Sh, Sw) float32 0..255 on ``self.device`` with the selected backend."""
        if self.crop_backend == "pillow":
            x = pil_square_crops(frame.cpu().numpy(), regions, out_hw, self.fill_u8, self.interpolation)
            return x.to(self.device, non_blocking=True) if self.device.type != "cpu" else x
        return batched_square_crops(frame, regions, out_hw, self.fill_u8, self.interpolation)

    def _upload(self, rgb: np.ndarray, slot: int = 0) -> torch.Tensor:
        """(H, W, 3) uint8 -> device tensor; one copy, pinned + non_blocking on CUDA."""
        t = torch.from_numpy(np.ascontiguousarray(rgb))
        if self.device.type != "cuda":
            return t
        key = (slot, tuple(t.shape))
        buf = self._pinned.get(key)
        if buf is None:
            if len(self._pinned) > 8:
                self._pinned.clear()
            buf = torch.empty(t.shape, dtype=torch.uint8).pin_memory()
            self._pinned[key] = buf
        buf.copy_(t)
        return buf.to(self.device, non_blocking=True)

    def _normalise(self, x255: torch.Tensor) -> torch.Tensor:
        """``(x255 / 255 - mean) / std`` in place (``x255``: a fresh float32 crop batch we own)."""
        return x255.mul_(self._scale).sub_(self._shift)

    def _crops_on_device(self, frame: torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
        regions = square_regions(boxes, self.context_margin)
        return self._normalise(self._square_crops(frame, regions, self.input_size))

    @torch.inference_mode()
    def crop_batch(self, rgb: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
        """The normalised model input for every box (batched path).

        Args:
            rgb: (H, W, 3) uint8 RGB.
            boxes: (N, 4) float32 xyxy pixels.

        Returns:
            (N, 3, Sh, Sw) float32 on ``self.device``: ``(pixel/255 - mean)/std``
            of the square-padded, resized crop (see module docstring; the
            resampling backend is :attr:`crop_backend`, uint8-exact with
            Pillow either way).
        """
        rgb = _check_rgb(rgb)
        boxes = _check_boxes(boxes)
        with self._lock:
            return self._crops_on_device(self._upload(rgb), boxes)

    def reference_crop_tensor(self, rgb: np.ndarray, box: Sequence[float]) -> torch.Tensor:
        """Per-crop reference: square-pad with NumPy, then open_clip's own ``preprocess``.

        Args:
            rgb: (H, W, 3) uint8 RGB.
            box: 4 floats xyxy pixels.

        Returns:
            (3, Sh, Sw) float32 CPU tensor, normalised like :meth:`crop_batch`.
        """
        from PIL import Image

        rgb = _check_rgb(rgb)
        x0, y0, side = (int(v) for v in square_regions(np.asarray(box, np.float32).reshape(1, 4),
                                                        self.context_margin)[0])
        H, W = rgb.shape[:2]
        sq = np.empty((side, side, 3), np.uint8)
        sq[...] = np.asarray(self.fill_u8, np.uint8)
        ya, yb = max(0, y0), min(H, y0 + side)
        xa, xb = max(0, x0), min(W, x0 + side)
        if yb > ya and xb > xa:
            sq[ya - y0:yb - y0, xa - x0:xb - x0] = rgb[ya:yb, xa:xb]
        return self.preprocess(Image.fromarray(sq, "RGB")).float()

    def encode_boxes(self, rgb: np.ndarray, boxes: np.ndarray, mode: str = "crop") -> np.ndarray:
        """Image embeddings of box proposals.

        Args:
            rgb: (H, W, 3) uint8 RGB.
            boxes: (N, 4) float32 ``[x1, y1, x2, y2]`` pixels.
            mode: "crop" (square crop per box, one batched forward) or
                "dense" (one forward over the frame, MaskCLIP patch features
                pooled per box).

        Returns:
            (N, D) float32 unit-norm rows ((0, D) for no boxes).

        Raises:
            ValueError: bad image/boxes/mode.
            NotImplementedError: dense mode on a non-ViT vision tower.
        """
        return self.encode_boxes_multi([rgb], [boxes], mode=mode)[0]

    def encode_boxes_multi(self, frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray],
                           mode: str = "crop") -> list[np.ndarray]:
        """Embeddings of boxes of several frames (e.g. cameras) in one batch.

        Args:
            frames: F images (Hi, Wi, 3) uint8 RGB (sizes may differ).
            boxes: F arrays (Ni, 4) float32 xyxy pixels of the matching frame.
            mode: "crop" or "dense".

        Returns:
            F arrays (Ni, D) float32 unit rows.
        """
        if len(frames) != len(boxes):
            raise ValueError("frames and boxes must have the same length")
        if mode not in ("crop", "dense"):
            raise ValueError(f"mode must be 'crop' or 'dense', got {mode!r}")
        frames = [_check_rgb(f) for f in frames]
        boxes = [_check_boxes(b) for b in boxes]
        counts = [len(b) for b in boxes]
        if sum(counts) == 0:
            return [np.zeros((0, self.embed_dim), np.float32) for _ in frames]
        with self._lock, torch.inference_mode():
            t0 = time.perf_counter()
            if mode == "crop":
                crops = [self._crops_on_device(self._upload(f, i), b)
                         for i, (f, b) in enumerate(zip(frames, boxes)) if len(b)]
                x = crops[0] if len(crops) == 1 else torch.cat(crops, 0)
                t0 = self._mark("encoder.crop", t0)
                feats = self._run_batched(x, self._encode_image_batch, bucketed=self.bucket_batches)
                feats = F.normalize(feats.float(), dim=-1).cpu().numpy()
                self._mark("encoder.image", t0)
            else:
                self._require_dense()
                idx = [i for i, b in enumerate(boxes) if len(b)]
                x = torch.cat([self._dense_input(self._upload(frames[i], i), frames[i].shape) for i in idx], 0)
                t0 = self._mark("encoder.dense_input", t0)
                patches = self._run_batched(x, self._dense_forward, bucketed=False)  # (F', gh, gw, D)
                t0 = self._mark("encoder.dense_forward", t0)
                pooled = [self._pool_boxes(patches[k], boxes[i], frames[i].shape) for k, i in enumerate(idx)]
                feats = torch.cat(pooled, 0).cpu().numpy()
                self._mark("encoder.pool", t0)
        out, k = [], 0
        for n in counts:
            out.append(np.ascontiguousarray(feats[k:k + n], dtype=np.float32))
            k += n
        return out

    def _encode_image_batch(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype, non_blocking=True)
        if self.fault_hook is not None:
            self.fault_hook(x)
        return self._visual(x).float()

    # ---------------------------------------------------------------- batching / OOM
    def _plan(self, n: int, limit: int, bucketed: bool) -> list[tuple[int, int, int]]:
        """(start, end, padded_size) chunks covering n items, chunk <= limit."""
        if bucketed:
            fitting = [b for b in self.batch_buckets if b <= limit]
            cap = fitting[-1] if fitting else max(1, limit)
        else:
            cap = max(1, limit)
        plan = []
        for s in range(0, n, cap):
            e = min(n, s + cap)
            m = e - s
            pad = m
            if bucketed:
                pad = next((b for b in self.batch_buckets if b >= m), m)
            plan.append((s, e, pad))
        return plan

    def _run_batched(self, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor],
                     bucketed: bool) -> torch.Tensor:
        """Apply ``fn`` over x in chunks; on CUDA OOM halve the chunk, then fall back to CPU."""
        n = int(x.shape[0])
        limit = self.max_batch
        while True:
            try:
                outs = []
                for s, e, pad in self._plan(n, limit, bucketed):
                    xb = x[s:e]
                    if pad > e - s:
                        xb = torch.cat([xb, xb.new_zeros((pad - (e - s),) + tuple(xb.shape[1:]))], 0)
                    outs.append(fn(xb)[: e - s])
                return outs[0] if len(outs) == 1 else torch.cat(outs, 0)
            except torch.OutOfMemoryError as err:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                cur = min(limit, n)
                if cur > 1:
                    limit = cur // 2
                    log.warning("out of memory encoding %d items (%s); retrying with batches of %d",
                                n, str(err).splitlines()[0][:120] if str(err) else "OOM", limit)
                    continue
                if not self.fell_back_to_cpu:
                    log.warning("out of memory even at batch size 1 on %s; falling back to CPU (fp32) "
                                "for the rest of this encoder's life", self.device)
                    self._fallback_to_cpu()
                    x = x.cpu().float() if x.is_floating_point() else x.cpu()
                    limit = self.max_batch
                    continue
                raise

    def _fallback_to_cpu(self) -> None:
        self.model.float().to("cpu")
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.dtype = torch.float32
        self._visual = self.model.visual
        self.compiled = False
        self._pos_cache.clear()
        self._pinned.clear()
        self._set_norm_tensors()
        self.fell_back_to_cpu = True

    def inject_oom(self, times: int) -> None:
        """Testing hook: the next ``times`` model forwards raise ``torch.OutOfMemoryError``."""
        left = {"n": int(times)}

        def hook(_x: torch.Tensor) -> None:
            if left["n"] > 0:
                left["n"] -= 1
                raise torch.OutOfMemoryError("injected CUDA out of memory (test hook)")

        self.fault_hook = hook

    # ---------------------------------------------------------------- dense (MaskCLIP)
    def _require_dense(self) -> None:
        from open_clip.transformer import VisionTransformer

        vis = getattr(self.model, "visual", None)
        if not isinstance(vis, VisionTransformer) or getattr(vis, "attn_pool", None) is not None:
            raise NotImplementedError(
                f"dense mode needs an open_clip VisionTransformer without attentional pooling; "
                f"{self.model_name!r} has {type(vis).__name__}. Use mode='crop'.")

    def _dense_input(self, frame: torch.Tensor, shape: tuple) -> torch.Tensor:
        H, W = int(shape[0]), int(shape[1])
        L = max(H, W)
        region = np.array([[math.floor((W - L) / 2.0 + 0.5), math.floor((H - L) / 2.0 + 0.5), L]], np.int64)
        return self._normalise(self._square_crops(frame, region, (self.dense_size, self.dense_size)))

    def _pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        vis = self.model.visual
        key = (gh, gw, str(self.device))
        pe = self._pos_cache.get(key)
        if pe is None:
            pos = vis.positional_embedding
            g0h, g0w = vis.grid_size
            if (gh, gw) == (g0h, g0w):
                pe = pos
            else:  # bicubic, as open_clip.model.resize_pos_embed
                grid = pos[1:].float().reshape(1, g0h, g0w, -1).permute(0, 3, 1, 2)
                grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
                grid = grid.permute(0, 2, 3, 1).reshape(gh * gw, -1).to(pos.dtype)
                pe = torch.cat([pos[:1], grid], 0)
            self._pos_cache[key] = pe
        return pe

    def _dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised -> (B, gh, gw, D) float32 MaskCLIP patch features."""
        vis = self.model.visual
        x = x.to(self.device, self.dtype)
        if self.fault_hook is not None:
            self.fault_hook(x)
        x = vis.conv1(x)
        B, C, gh, gw = x.shape
        x = x.reshape(B, C, gh * gw).permute(0, 2, 1)
        cls = vis.class_embedding.to(x.dtype).view(1, 1, -1).expand(B, -1, -1)
        x = torch.cat([cls, x], 1) + self._pos_embed(gh, gw).to(x.dtype)
        x = vis.patch_dropout(x)
        x = vis.ln_pre(x)
        tr = vis.transformer
        bf = getattr(tr, "batch_first", True)
        if not bf:
            x = x.transpose(0, 1)
        for blk in tr.resblocks[:-1]:
            x = blk(x)
        if not bf:
            x = x.transpose(0, 1)
        last = tr.resblocks[-1]
        y = _value_path(last, last.ln_1(x))[:, 1:]
        y = vis.ln_post(y)
        if vis.proj is not None:
            y = y @ vis.proj
        return y.float().reshape(B, gh, gw, -1)

    @torch.inference_mode()
    def dense_patch_features(self, rgb: np.ndarray) -> tuple[np.ndarray, dict]:
        """MaskCLIP patch features of a whole frame.

        Args:
            rgb: (H, W, 3) uint8 RGB.

        Returns:
            (features (gh, gw, D) float32, not normalised; geometry dict with
            ``x0``, ``y0`` (letterbox square origin in frame pixels, may be
            negative), ``side`` (square side, frame pixels) and ``cell``
            (frame pixels per patch)).  Patch (i, j) covers frame pixels
            ``x0 + j*cell .. x0 + (j+1)*cell`` horizontally, rows likewise.

        Raises:
            NotImplementedError: non-ViT vision tower.
        """
        rgb = _check_rgb(rgb)
        with self._lock:
            self._require_dense()
            x = self._dense_input(self._upload(rgb), rgb.shape)
            f = self._run_batched(x, self._dense_forward, bucketed=False)[0]
            geo = self._dense_geometry(rgb.shape, f.shape[0], f.shape[1])
            return f.cpu().numpy(), geo

    def _dense_geometry(self, shape: tuple, gh: int, gw: int) -> dict:
        H, W = int(shape[0]), int(shape[1])
        L = max(H, W)
        return {"x0": math.floor((W - L) / 2.0 + 0.5), "y0": math.floor((H - L) / 2.0 + 0.5),
                "side": L, "cell": L / float(gw), "grid": (gh, gw)}

    def _pool_boxes(self, patches: torch.Tensor, boxes: np.ndarray, shape: tuple) -> torch.Tensor:
        """Overlap-area-weighted mean of unit patch features inside each box -> (N, D) unit rows."""
        gh, gw, D = patches.shape
        geo = self._dense_geometry(shape, gh, gw)
        b = torch.as_tensor(boxes, dtype=torch.float64, device=patches.device)
        x1 = torch.minimum(b[:, 0], b[:, 2]); x2 = torch.maximum(b[:, 0], b[:, 2])
        y1 = torch.minimum(b[:, 1], b[:, 3]); y2 = torch.maximum(b[:, 1], b[:, 3])
        x2 = torch.maximum(x2, x1 + 1.0); y2 = torch.maximum(y2, y1 + 1.0)  # at least one pixel
        cell = geo["cell"]
        gx1, gx2 = (x1 - geo["x0"]) / cell, (x2 - geo["x0"]) / cell
        gy1, gy2 = (y1 - geo["y0"]) / cell, (y2 - geo["y0"]) / cell
        jx = torch.arange(gw, device=patches.device, dtype=torch.float64)
        jy = torch.arange(gh, device=patches.device, dtype=torch.float64)
        ox = (torch.minimum(gx2[:, None], jx + 1) - torch.maximum(gx1[:, None], jx)).clamp(min=0)
        oy = (torch.minimum(gy2[:, None], jy + 1) - torch.maximum(gy1[:, None], jy)).clamp(min=0)
        w = (oy[:, :, None] * ox[:, None, :]).reshape(len(b), -1)
        empty = w.sum(1) <= 0
        if bool(empty.any()):  # box outside the letterbox square: use the nearest patch
            cx = ((gx1 + gx2) / 2).floor().clamp(0, gw - 1).long()
            cy = ((gy1 + gy2) / 2).floor().clamp(0, gh - 1).long()
            onehot = torch.zeros_like(w)
            onehot[torch.arange(len(b), device=w.device), cy * gw + cx] = 1.0
            w = torch.where(empty[:, None], onehot, w)
        w = w / w.sum(1, keepdim=True)
        pf = F.normalize(patches.reshape(-1, D).double(), dim=-1)
        return F.normalize((w @ pf).float(), dim=-1)

    # ---------------------------------------------------------------- warm-up
    def warmup(self, max_batch: Optional[int] = None, dense: bool = False) -> None:
        """Run text and dummy image batches once (kernel selection, allocator, compile).

        Args:
            max_batch: largest bucket to run; None -> all buckets when
                bucketing is on (CUDA), else just the smallest (CPU).
            dense: also run one dense forward.
        """
        with self._lock, torch.inference_mode():
            self._encode_phrases(["object"])
            if max_batch is None:
                max_batch = max(self.batch_buckets) if self.bucket_batches else min(self.batch_buckets)
            frame = np.full((64, 64, 3), 127, np.uint8)
            sizes = [b for b in self.batch_buckets if b <= max_batch] or [min(self.batch_buckets)]
            for b in sizes:
                boxes = np.tile(np.array([[8, 8, 40, 56]], np.float32), (b, 1))
                x = self._crops_on_device(self._upload(frame), boxes)
                self._run_batched(x, self._encode_image_batch, bucketed=self.bucket_batches)
            if dense:
                self._require_dense()
                self._run_batched(self._dense_input(self._upload(frame), frame.shape), self._dense_forward, False)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)


def _value_path(block: torch.nn.Module, y: torch.Tensor) -> torch.Tensor:
    """MaskCLIP value path of an open_clip residual block: ``ls_1(out_proj(v(y)))`` per token.

    Equals the block's attention branch when each token attends only to itself.
    """
    attn = block.attn
    if isinstance(attn, torch.nn.MultiheadAttention):
        D = attn.embed_dim
        if attn._qkv_same_embed_dim:
            wv = attn.in_proj_weight[2 * D:]
        else:
            wv = attn.v_proj_weight
        bv = attn.in_proj_bias[2 * D:] if attn.in_proj_bias is not None else None
        out = attn.out_proj(F.linear(y, wv, bv))
    else:  # open_clip.transformer.Attention (CustomResidualAttentionBlock)
        D = attn.in_proj_weight.shape[1]
        bias = attn.in_proj_bias[2 * D:] if attn.in_proj_bias is not None else None
        v = F.linear(y, attn.in_proj_weight[2 * D:], bias)
        if getattr(attn, "head_scale", None) is not None:
            B, L, _ = v.shape
            v = (v.view(B, L, attn.num_heads, -1).transpose(1, 2) * attn.head_scale).transpose(1, 2).reshape(B, L, D)
        v = attn.ln_inner(v)
        out = attn.out_proj(v)
        if hasattr(block, "ln_attn"):
            out = block.ln_attn(out)
    return block.ls_1(out)


@contextlib.contextmanager
def _quiet_root_logger():
    """open_clip logs 'initialized randomly' through the root logger; we log our own warning."""
    root = logging.getLogger()
    class _F(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "initialized randomly" not in record.getMessage()
    f = _F()
    root.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(f)
