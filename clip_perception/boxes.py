"""Axis-aligned boxes: IoU, NMS, clamping, degenerate boxes and the one rounding rule (ROS-free).

Box convention (the whole library, see ``types.py``): a NumPy array of shape (N, 4),
float32, rows ``[x1, y1, x2, y2]`` in source-image pixel *edges*: ``(x1, y1)`` is the
top-left edge and ``(x2, y2)`` the bottom-right edge, exclusive, so ``width = x2 - x1`` and
``area = (x2 - x1) * (y2 - y1)`` (torchvision's convention, ``torchvision.ops.box_iou``).

**The rounding rule** (every conversion of a float box to whole pixels uses it):
each coordinate is rounded to the nearest whole pixel edge, halves to even
(:func:`numpy.rint`, IEEE 754 round-half-to-even, the same as Python's ``round``:
``10.5 -> 10``, ``11.5 -> 12``, ``-0.5 -> 0``).  Then

* ``sensor_msgs/RegionOfInterest`` (:func:`boxes_to_rois`, ``Detection.roi``):
  ``x_offset = X1``, ``y_offset = Y1``, ``width = max(0, X2 - X1)``,
  ``height = max(0, Y2 - Y1)`` with the rounded edges ``X1 .. Y2``;
* pixel index ranges (:func:`pixel_ranges`): columns ``X1 .. X2 - 1`` and rows
  ``Y1 .. Y2 - 1``, i.e. the half-open ranges ``[X1, X2)`` and ``[Y1, Y2)``, clamped to
  the image (``0 .. width`` / ``0 .. height``); a pixel belongs to the box when its centre
  lies inside the box, up to halves.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torchvision.ops

__all__ = [
    "as_boxes",
    "box_iou",
    "nms",
    "clamp_boxes",
    "usable_boxes",
    "round_edges",
    "boxes_to_rois",
    "box_to_roi",
    "pixel_ranges",
    "pixel_range",
]


def as_boxes(boxes) -> np.ndarray:
    """``boxes`` as an (N, 4) float32 array; one (4,) box becomes (1, 4); empty -> (0, 4).

    Raises:
        ValueError: the shape is not (N, 4) or (4,).
    """
    b = np.asarray(boxes, dtype=np.float32)
    if b.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if b.ndim == 1 and b.shape[0] == 4:
        b = b[None, :]
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {b.shape}")
    return b


def box_iou(a, b) -> np.ndarray:
    """Pairwise intersection over union (``torchvision.ops.box_iou``).

    Args:
        a: (N, 4) (or one (4,)) boxes ``[x1, y1, x2, y2]``, pixels, exclusive x2/y2.
        b: (M, 4) (or one (4,)) boxes, same convention.

    Returns:
        (N, M) float32 IoU in [0, 1]; 0 where both boxes have zero area (0 / 0).

    Raises:
        ValueError: a shape is not (N, 4).
    """
    a = as_boxes(a)
    b = as_boxes(b)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    iou = torchvision.ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    return np.nan_to_num(iou, nan=0.0).astype(np.float32)


def nms(boxes, scores, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression (``torchvision.ops.nms``).

    Args:
        boxes: (N, 4) ``[x1, y1, x2, y2]`` pixels.
        scores: (N,) scores (higher kept first).
        iou_threshold: boxes with IoU > this against a kept, higher-scored box are dropped.

    Returns:
        (K,) int64 indices into ``boxes`` of the kept boxes, by decreasing score.

    Raises:
        ValueError: shapes do not match.
    """
    b = as_boxes(boxes)
    s = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(s) != len(b):
        raise ValueError(f"{len(b)} boxes but {len(s)} scores")
    if len(b) == 0:
        return np.zeros((0,), dtype=np.int64)
    keep = torchvision.ops.nms(torch.from_numpy(b), torch.from_numpy(s), float(iou_threshold))
    return keep.numpy().astype(np.int64)


def clamp_boxes(boxes, width: int, height: int) -> np.ndarray:
    """Clip boxes to the image: x to [0, width], y to [0, height] (edges, x2/y2 exclusive).

    Returns:
        (N, 4) float32 copy (NaN stays NaN).
    """
    b = as_boxes(boxes).copy()
    np.clip(b[:, 0::2], 0.0, float(width), out=b[:, 0::2])
    np.clip(b[:, 1::2], 0.0, float(height), out=b[:, 1::2])
    return b


def usable_boxes(boxes, min_size: float = 1.0) -> np.ndarray:
    """Which boxes are not degenerate: all four edges finite and ``width, height >= min_size``.

    Args:
        boxes: (N, 4) boxes, pixels.
        min_size: smallest accepted width and height, pixels.

    Returns:
        (N,) bool.
    """
    b = as_boxes(boxes)
    finite = np.all(np.isfinite(b), axis=1)
    with np.errstate(invalid="ignore"):
        return finite & (b[:, 2] - b[:, 0] >= min_size) & (b[:, 3] - b[:, 1] >= min_size)


def round_edges(values) -> np.ndarray:
    """The rounding rule (module docstring): nearest whole pixel edge, halves to even.

    Args:
        values: float coordinates (any shape), pixels; must be finite.

    Returns:
        int64 array of the same shape.
    """
    return np.rint(np.asarray(values, dtype=np.float64)).astype(np.int64)


def boxes_to_rois(boxes) -> np.ndarray:
    """Boxes to ``sensor_msgs/RegionOfInterest`` fields with the rounding rule.

    Returns:
        (N, 4) int32 ``[x_offset, y_offset, width, height]``, ``width = max(0, X2 - X1)``.
    """
    b = round_edges(as_boxes(boxes))
    out = np.empty((len(b), 4), dtype=np.int32)
    out[:, 0] = b[:, 0]
    out[:, 1] = b[:, 1]
    out[:, 2] = np.maximum(0, b[:, 2] - b[:, 0])
    out[:, 3] = np.maximum(0, b[:, 3] - b[:, 1])
    return out


def box_to_roi(box) -> Tuple[int, int, int, int]:
    """One (4,) box -> ``(x_offset, y_offset, width, height)`` Python ints (:func:`boxes_to_rois`)."""
    x, y, w, h = (int(v) for v in boxes_to_rois(box)[0])
    return x, y, w, h


def pixel_ranges(boxes, width: int, height: int) -> np.ndarray:
    """Half-open pixel index ranges covered by boxes, with the rounding rule, clamped to the image.

    Args:
        boxes: (N, 4) ``[x1, y1, x2, y2]`` pixel edges (non-finite edges count as 0).
        width, height: image size, pixels.

    Returns:
        (N, 4) int64 ``[xa, ya, xb, yb]``: the box covers ``image[ya:yb, xa:xb]``;
        ``0 <= xa, xb <= width`` and ``0 <= ya, yb <= height`` (empty when ``xb <= xa``).
    """
    b = np.rint(np.nan_to_num(as_boxes(boxes).astype(np.float64)))
    limit = np.array([width, height, width, height], dtype=np.float64)
    return np.clip(b, 0.0, limit).astype(np.int64)


def pixel_range(lo: float, hi: float, n: int) -> Tuple[int, int]:
    """One axis of :func:`pixel_ranges`: ``[a, b)`` for edges ``lo .. hi``, clamped to ``[0, n]``."""
    a, b = (int(v) for v in np.clip(round_edges([lo, hi]), 0, int(n)))
    return a, b
