"""Square crops of box proposals, resized to the model input (ROS-free).

The model's input: :class:`CropSpec` (size, resampling filter, mean/std, fill colour,
all from the model's open_clip preprocess config) and :class:`CropMaker` (boxes of a frame
-> normalised ``(N, 3, Sh, Sw)`` model input with the chosen backend).

Geometry (:func:`square_regions`)
---------------------------------
For a box ``[x1, y1, x2, y2]`` (pixels, exclusive right/bottom edges) the crop is the
square of side ``L = round(max(w, h) * (1 + 2 * context_margin))`` centred on the box
centre, snapped to whole pixels.  The square is *padded*, never centre-cropped, so tall
and wide objects keep their ends; pixels of the square outside the image take a fill
colour (the encoder passes the model's mean colour quantised to uint8,
``floor(255 * mean + 0.5)``, e.g. (123, 117, 104) for the OpenAI mean).

Resizing: two backends
----------------------
open_clip's inference transform (``open_clip.transform.image_transform`` in open_clip
3.3.0, ``is_train=False``) is torchvision's ``Resize`` on a *PIL* image, i.e. Pillow's
``Image.resize`` (``libImaging/Resample.c``: antialiased by stretching the kernel by the
downscale factor, bicubic a = -0.5 or bilinear, horizontal then vertical pass, a uint8
result after each pass).  So:

* :func:`pil_square_crops` (the CPU backend) *is* that: Pillow resizes each square on a
  small thread pool (Pillow releases the GIL), giving open_clip's values exactly.
* :func:`torch_square_crops` (the CUDA backend: the frame is uploaded once and stays on
  the device) resizes with ``torchvision.transforms.v2.functional.resize(...,
  antialias=True)``, as two 1-D passes (horizontal, then vertical), each rounded half up
  to uint8 and clamped like Pillow's.  A single 2-D torchvision resize keeps a float
  intermediate without the clamp, which differs from Pillow by up to 11/255 next to
  sharp saturated edges with bicubic overshoot (measured on MuJoCo renders), so the
  two-pass form is used.

Measured difference of :func:`torch_square_crops` from Pillow (max abs per value, uint8
levels; torch 2.14.1, torchvision 0.29.1, Pillow 13.0.0, float32 on the CPU; 2.5e8 values per
filter): 25 real colour frames (``shared/data/real/*``: ucn, posecnn, OSD, uoais) and 3
MuJoCo renders (``sim.scene.make_scene``), all 640x480; square sides 1, 3, 7, 16, 32, 56, 100,
150, 223 (upscales to 224), 224, 225, 300, 480, 640, 900 (downscales), 4 random positions
each, partly outside the frame included:

=========  ==================================  ==================================  =========
filter     upscales                            downscales                          side 224
=========  ==================================  ==================================  =========
bicubic    max 2/255 (1.1e-7 of values > 1)    max 1/255 (6.0e-5 of values > 0)    identical
bilinear   max 2/255 (6.6e-8 of values > 1)    max 2/255 (1.2e-8 of values > 1)    identical
=========  ==================================  ==================================  =========

A single 2-D torchvision resize (float intermediate, no clamp) differed by up to 11/255
(bicubic, MuJoCo renders), hence the two rounded passes.  The tests assert the 2/255 bound
(:data:`TORCH_MAX_DIFF_FROM_PILLOW`, ``test/test_crops.py``).

Speed on this 2-core CPU (``scripts/measure_crop_speed.py 5``: 100 crops of a 640x480 MuJoCo
render to 224x224, median of 5 runs in one process, 2 torch threads, load average 0.6): Pillow
backend 145 ms, torch backend 171 ms (on a machine loaded to about 8: 0.90 s and 8.0 s, the removed
hand-written fixed-point matrix products 7.1 s).  So the CPU keeps Pillow (which is also what
open_clip's ``preprocess`` runs); the torch backend is for CUDA, where the frame stays on the device.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import threading
from typing import Optional, Sequence

import numpy as np
import torch

#: Below this many crops the Pillow backend resizes inline (a thread hand-off costs more).
_PIL_POOL_MIN_CROPS = 8
_PIL_POOL: Optional[concurrent.futures.ThreadPoolExecutor] = None
_PIL_POOL_LOCK = threading.Lock()

#: Resampling backends of :class:`CropMaker` ("auto": pillow on the CPU, torch on CUDA).
CROP_BACKENDS: tuple[str, ...] = ("auto", "pillow", "torch")

#: Largest difference from Pillow (uint8 levels) of :func:`torch_square_crops`, measured
#: as stated in the module docstring.
TORCH_MAX_DIFF_FROM_PILLOW = 2


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


def letterbox_region(height: int, width: int) -> np.ndarray:
    """The square around a whole ``height`` x ``width`` frame, centred (letterbox), as a region.

    Returns:
        (1, 3) int64 ``[x0, y0, side]`` with ``side = max(H, W)`` and
        ``x0 = floor((W - side) / 2 + 0.5)`` (<= 0), ``y0`` likewise.
    """
    side = max(int(height), int(width))
    x0 = int(np.floor((int(width) - side) / 2.0 + 0.5))
    y0 = int(np.floor((int(height) - side) / 2.0 + 0.5))
    return np.array([[x0, y0, side]], np.int64)


def square_crop(rgb: np.ndarray, region: Sequence[int], fill_u8: Sequence[int]) -> np.ndarray:
    """The square ``region`` of an image, padded with ``fill_u8`` where it leaves the image.

    Args:
        rgb: (H, W, C) uint8 NumPy image.
        region: ``[x0, y0, side]`` (pixels, from :func:`square_regions`).
        fill_u8: C ints, colour of the pixels outside the image.

    Returns:
        (side, side, C) uint8: a view of ``rgb`` when the square lies inside the image,
        else a padded copy.
    """
    x0, y0, side = (int(v) for v in region)
    H, W = int(rgb.shape[0]), int(rgb.shape[1])
    ya, yb = max(0, y0), min(H, y0 + side)
    xa, xb = max(0, x0), min(W, x0 + side)
    if ya == y0 and xa == x0 and yb == y0 + side and xb == x0 + side:
        return rgb[ya:yb, xa:xb]
    sq = np.empty((side, side) + tuple(rgb.shape[2:]), np.uint8)
    sq[...] = np.asarray([int(v) for v in fill_u8], np.uint8)
    if yb > ya and xb > xa:
        sq[ya - y0:yb - y0, xa - x0:xb - x0] = rgb[ya:yb, xa:xb]
    return sq


def _pil_pool() -> concurrent.futures.ThreadPoolExecutor:
    """Process-wide thread pool for Pillow resizes (Pillow releases the GIL while resampling)."""
    global _PIL_POOL
    with _PIL_POOL_LOCK:
        if _PIL_POOL is None:
            workers = max(1, min(8, torch.get_num_threads(), os.cpu_count() or 1))
            _PIL_POOL = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="clip_crop")
        return _PIL_POOL


def pil_square_crops(rgb: np.ndarray, regions: np.ndarray, out_hw: tuple[int, int],
                     fill_u8: Sequence[int], interpolation: str = "bicubic") -> torch.Tensor:
    """Cut square regions out of a frame and resize each with Pillow (CPU backend).

    The same values as open_clip's ``preprocess`` on the square-padded crop, because it
    *is* Pillow's ``Image.resize`` (``libImaging/Resample.c``, no ``reducing_gap``) on
    :func:`square_crop`.  Crops are spread over a small thread pool; Pillow releases the
    GIL while it resamples, so the pool uses every core.

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

    Sh, Sw = int(out_hw[0]), int(out_hw[1])
    reg = np.asarray(regions, dtype=np.int64).reshape(-1, 3)
    resample = Image.BILINEAR if interpolation == "bilinear" else Image.BICUBIC
    out = np.empty((len(reg), Sh, Sw, 3), np.uint8)

    def one(i: int) -> None:
        img = Image.fromarray(np.ascontiguousarray(square_crop(rgb, reg[i], fill_u8)), "RGB")
        out[i] = np.asarray(img.resize((Sw, Sh), resample))

    if len(reg) < _PIL_POOL_MIN_CROPS:
        for i in range(len(reg)):
            one(i)
    else:
        list(_pil_pool().map(one, range(len(reg))))
    return torch.from_numpy(out).permute(0, 3, 1, 2).float()


def _torch_square(chw: torch.Tensor, region: Sequence[int], fill: torch.Tensor) -> torch.Tensor:
    """(3, side, side) float32 square of a (3, H, W) uint8 frame, padded with ``fill`` (3, 1, 1)."""
    x0, y0, side = (int(v) for v in region)
    H, W = int(chw.shape[1]), int(chw.shape[2])
    ya, yb = max(0, y0), min(H, y0 + side)
    xa, xb = max(0, x0), min(W, x0 + side)
    if ya == y0 and xa == x0 and yb == y0 + side and xb == x0 + side:
        return chw[:, ya:yb, xa:xb].float()
    sq = fill.expand(3, side, side).clone()
    if yb > ya and xb > xa:
        sq[:, ya - y0:yb - y0, xa - x0:xb - x0] = chw[:, ya:yb, xa:xb]
    return sq


def _resize_like_pillow(x: torch.Tensor, out_hw: tuple[int, int], interpolation: str) -> torch.Tensor:
    """torchvision antialiased resize of (m, 3, h, w) float32 0..255, horizontal then vertical
    pass, each rounded half up and clamped to uint8 levels as Pillow's ``clip8`` does."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2.functional import resize

    mode = InterpolationMode.BILINEAR if interpolation == "bilinear" else InterpolationMode.BICUBIC
    h = resize(x, [int(x.shape[-2]), int(out_hw[1])], interpolation=mode, antialias=True)
    h = h.add(0.5).floor_().clamp_(0.0, 255.0)
    v = resize(h, [int(out_hw[0]), int(out_hw[1])], interpolation=mode, antialias=True)
    return v.add(0.5).floor_().clamp_(0.0, 255.0)


def torch_square_crops(frame: torch.Tensor, regions: np.ndarray, out_hw: tuple[int, int],
                       fill_u8: Sequence[int], interpolation: str = "bicubic") -> torch.Tensor:
    """Cut square regions out of a frame and resize them on the frame's device (CUDA backend).

    Each square (:func:`square_crop`'s geometry, padded with ``fill_u8``) is resized with
    ``torchvision.transforms.v2.functional.resize(antialias=True)`` in two rounded passes
    (see the module docstring); crops of equal side share one resize call.  Within
    :data:`TORCH_MAX_DIFF_FROM_PILLOW` uint8 levels of :func:`pil_square_crops` (measured,
    module docstring).

    Args:
        frame: (H, W, 3) uint8 tensor on the target device.
        regions: (N, 3) int64 ``[x0, y0, side]`` from :func:`square_regions`.
        out_hw: (Sh, Sw) output size in pixels.
        fill_u8: 3 ints, colour of the square's pixels outside the image.
        interpolation: "bicubic" (a = -0.5) or "bilinear".

    Returns:
        (N, 3, Sh, Sw) float32 on ``frame.device`` with integer values 0..255.
    """
    dev = frame.device
    Sh, Sw = int(out_hw[0]), int(out_hw[1])
    reg = np.asarray(regions, dtype=np.int64).reshape(-1, 3)
    out = torch.empty(len(reg), 3, Sh, Sw, device=dev, dtype=torch.float32)
    chw = frame.permute(2, 0, 1)
    fill = torch.tensor([float(v) for v in fill_u8], device=dev, dtype=torch.float32).view(3, 1, 1)
    for side in np.unique(reg[:, 2]):
        idx = np.nonzero(reg[:, 2] == side)[0]
        squares = torch.stack([_torch_square(chw, reg[i], fill) for i in idx])
        out[torch.as_tensor(idx, device=dev)] = _resize_like_pillow(squares, (Sh, Sw), interpolation)
    return out


@dataclasses.dataclass(frozen=True)
class CropSpec:
    """The input a model wants, from its open_clip preprocess config.

    Attributes:
        input_size: (Sh, Sw) pixels.
        interpolation: "bicubic" or "bilinear" (open_clip maps every other name to bicubic).
        mean, std: 3 floats each, per RGB channel of ``pixel / 255``.
    """

    input_size: tuple[int, int] = (224, 224)
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP (open_clip.constants)
    std: tuple[float, ...] = (0.26862954, 0.26130258, 0.27577711)

    @classmethod
    def from_preprocess_cfg(cls, cfg: dict) -> "CropSpec":
        """From ``open_clip.get_model_preprocess_cfg(model)`` (missing keys: OpenAI CLIP's values)."""
        size = cfg.get("size", 224)
        mean = tuple(float(v) for v in cfg.get("mean", cls.mean))
        std = tuple(float(v) for v in cfg.get("std", cls.std))
        return cls((int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1])),
                   "bilinear" if str(cfg.get("interpolation", "bicubic")) == "bilinear" else "bicubic",
                   mean * 3 if len(mean) == 1 else mean, std * 3 if len(std) == 1 else std)

    @property
    def fill_u8(self) -> tuple[int, int, int]:
        """Padding colour: the mean quantised to uint8, ``floor(255 * mean + 0.5)`` (normalises to ~0)."""
        return tuple(int(min(255, max(0, np.floor(255.0 * m + 0.5)))) for m in self.mean)


class CropMaker:
    """Normalised model input from boxes of a frame: square regions, resize, ``(x/255 - mean)/std``.

    Args:
        spec: the model's :class:`CropSpec`.
        context_margin: margin per side for :func:`square_regions`.
        backend: "pillow" (:func:`pil_square_crops`), "torch" (:func:`torch_square_crops`)
            or "auto" (pillow on the CPU, torch on CUDA).

    Raises:
        ValueError: unknown backend.
    """

    def __init__(self, spec: CropSpec, context_margin: float, backend: str = "auto"):
        if backend not in CROP_BACKENDS:
            raise ValueError(f"crop_backend must be one of {', '.join(CROP_BACKENDS)}, got {backend!r}")
        self.spec, self.context_margin, self.backend_request = spec, float(context_margin), backend
        self._norm: dict = {}

    def backend(self, device: torch.device) -> str:
        """The backend used for frames on ``device``: "pillow" or "torch"."""
        if self.backend_request != "auto":
            return self.backend_request
        return "torch" if device.type == "cuda" else "pillow"

    def resized(self, frame: torch.Tensor, regions: np.ndarray, out_hw: tuple[int, int]) -> torch.Tensor:
        """(N, 3, Sh, Sw) float32 0..255 on ``frame.device`` ((H, W, 3) uint8) of ``regions``."""
        s = self.spec
        if self.backend(frame.device) == "torch":
            return torch_square_crops(frame, regions, out_hw, s.fill_u8, s.interpolation)
        x = pil_square_crops(frame.cpu().numpy(), regions, out_hw, s.fill_u8, s.interpolation)
        return x.to(frame.device, non_blocking=True) if frame.device.type != "cpu" else x

    def normalise(self, x255: torch.Tensor) -> torch.Tensor:
        """``(x255 / 255 - mean) / std`` in place (``x255``: a fresh (N, 3, h, w) float32 batch)."""
        key = str(x255.device)
        if key not in self._norm:
            mean, std = np.asarray(self.spec.mean, np.float64), np.asarray(self.spec.std, np.float64)
            self._norm[key] = (torch.tensor(1.0 / (std * 255.0), dtype=torch.float32, device=x255.device),
                               torch.tensor(mean / std, dtype=torch.float32, device=x255.device))
        scale, shift = self._norm[key]
        return x255.mul_(scale.view(1, 3, 1, 1)).sub_(shift.view(1, 3, 1, 1))

    def boxes(self, frame: torch.Tensor, boxes: np.ndarray, size: Optional[tuple] = None) -> torch.Tensor:
        """(N, 3, Sh, Sw) normalised crops of (N, 4) xyxy pixel ``boxes`` of ``frame``;
        ``(Sh, Sw)`` = ``size`` (pixels), default the model's input size."""
        regions = square_regions(boxes, self.context_margin)
        return self.normalise(self.resized(frame, regions, tuple(size) if size else self.spec.input_size))

    def letterbox(self, frame: torch.Tensor, side: int) -> torch.Tensor:
        """(1, 3, side, side) normalised letterbox of the whole ``frame`` (:func:`letterbox_region`)."""
        region = letterbox_region(int(frame.shape[0]), int(frame.shape[1]))
        return self.normalise(self.resized(frame, region, (int(side), int(side))))

    def reference(self, rgb: np.ndarray, box: Sequence[float], preprocess) -> torch.Tensor:
        """(3, Sh, Sw) float32 CPU: ``preprocess`` (open_clip's transform of PIL images) of the
        square-padded crop of one xyxy pixel ``box`` of the (H, W, 3) uint8 ``rgb``."""
        from PIL import Image

        region = square_regions(np.asarray(box, np.float32).reshape(1, 4), self.context_margin)[0]
        sq = np.ascontiguousarray(square_crop(rgb, region, self.spec.fill_u8))
        return preprocess(Image.fromarray(sq, "RGB")).float()
