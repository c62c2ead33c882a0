"""3D geometry of a detection from a depth image and the camera model (ROS-free).

The camera model (K, distortion, back-projection) lives in :mod:`clip_perception.camera`;
every function here takes a (3, 3) ``K`` or a :class:`camera.CameraModel` and turns pixels
into rays only through it, so lens distortion (``CameraInfo.d``) is removed the same way
everywhere.  A K, or a model with an all-zero D, gives the pinhole results bit for bit.

Conventions (shared with the rest of the library, see ``types.py``):

* Frame: camera optical frame, REP 103 (https://www.ros.org/reps/rep-0103.html):
  x right, y down, z forward; metres.
* Intrinsics ``K``: (3, 3) float64, ``sensor_msgs/CameraInfo.k`` reshaped,
  ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
* Pixels: ``u`` = column index, ``v`` = row index; the *centre* of pixel
  ``(u, v)`` is at the integer coordinates ``(u, v)``, as in camera_info
  (the same convention as OpenCV's ``projectPoints``). Pinhole
  back-projection (Hartley & Zisserman, *Multiple View Geometry*, eq. 6.1):
  ``X = (u - cx) * Z / fx``, ``Y = (v - cy) * Z / fy`` (of the undistorted pixel).
* Boxes: ``[x1, y1, x2, y2]`` in pixel *edges*, ``x2``/``y2`` exclusive, so
  the box covers pixel columns ``x1 .. x2 - 1`` and its centre, in the
  pixel-centre convention above, is ``((x1 + x2 - 1) / 2, (y1 + y2 - 1) / 2)``.
* Depth: (H, W) float32 metres; NaN (and any non-finite or <= 0 value) is
  invalid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import numpy as np

from .boxes import pixel_ranges
from .camera import CameraModel, _as_K, pixel_to_point, valid_intrinsics

__all__ = [
    "BoxGeometry",
    "box_center",
    "box_position",
]


@dataclass
class BoxGeometry:
    """3D estimate of the object inside a box.

    Attributes:
        position: (3,) float64 metres, camera optical frame (REP 103). The
            back-projection of the box centre pixel at the median depth of the
            used pixels (the visible front surface, not the volumetric centre).
            Never (0, 0, 0): it always has z > 0.
        size: (3,) float64 metres ``[width (x), height (y), depth extent (z)]``:
            box width/height in pixels scaled by ``median_depth / fx`` and
            ``median_depth / fy``; depth extent = 95th - 5th percentile of the
            used pixels' depths (the visible surface's spread, so it
            underestimates the extent of an object seen face-on).
        num_valid: number of depth pixels used for the estimate.

    Iterating yields ``(position, size)`` so ``position, size = geom`` works.
    """

    position: np.ndarray
    size: np.ndarray
    num_valid: int

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.position
        yield self.size


def box_center(box) -> Tuple[float, float]:
    """Centre ``(u, v)`` of an exclusive-edge ``[x1, y1, x2, y2]`` box in the
    pixel-centre-at-integer convention: ``((x1 + x2 - 1) / 2, (y1 + y2 - 1) / 2)``."""
    x1, y1, x2, y2 = (float(c) for c in np.asarray(box, dtype=np.float64).reshape(4))
    return (x1 + x2 - 1.0) / 2.0, (y1 + y2 - 1.0) / 2.0


def box_position(
    depth: np.ndarray,
    box,
    K,
    mask: Optional[np.ndarray] = None,
    inner_fraction: float = 0.5,
    depth_band: Optional[float] = None,
    min_band: float = 0.03,
) -> Optional[BoxGeometry]:
    """Robust 3D position and size of the object in ``box``.

    Method:
      1. Round the box to whole pixels with the rounding rule of ``boxes.py``
         (columns ``round(x1) .. round(x2) - 1``, halves to even;
         ``boxes.pixel_ranges``), clamped to the image.
      2. Without ``mask``: seed depth = median of the valid depths in the
         central ``inner_fraction`` (per axis) of the box — the part least
         likely to be background; if that part has no valid depth, the whole
         box is used. The *used* pixels are the box's valid pixels within
         ``band`` metres of the seed (a simple depth segmentation that drops
         table/background behind, or occluders in front of, the object).
         ``band = depth_band`` if given, else
         ``max(min_band, 0.5 * max(box_width_m, box_height_m))`` with the box
         size in metres at the seed depth (an object is about as deep as it
         is wide).
         With ``mask``: the used pixels are the valid pixels where ``mask``
         is true inside the box (no band).
      3. ``z`` = median depth of the used pixels; ``position`` =
         :func:`pixel_to_point` of the box centre
         ``((x1 + x2 - 1) / 2, (y1 + y2 - 1) / 2)`` at ``z`` (the box centre,
         not the median pixel, so the ray stays the detection's centre).
         A box partly outside the image is first clipped to it (float edges).
      4. ``size`` = ``[w_px * z / fx, h_px * z / fy, p95(z_used) - p5(z_used)]``
         with ``w_px``, ``h_px`` the clipped box width/height.  With a distorted
         :class:`camera.CameraModel` the width / height are instead the distances between
         the back-projections (at ``z``) of the midpoints of the box's left / right (top /
         bottom) edges, so a box near a corner of a wide-angle image is not mis-sized.

    Args:
        depth: (H, W) float metres, aligned with the image the box refers to;
            NaN / Inf / <= 0 are invalid.
        box: (4,) ``[x1, y1, x2, y2]`` pixels, exclusive x2/y2.
        K: (3, 3) intrinsics of ``depth``, or a :class:`camera.CameraModel` (distortion
            removed, ``camera.pixel_to_point``).
        mask: optional (H, W) bool foreground mask (same shape as ``depth``).
        inner_fraction: (0, 1] central fraction of the box width/height that
            seeds the median.
        depth_band: half-width of the depth band around the seed, metres
            (None = automatic, see above).
        min_band: lower bound of the automatic band, metres.

    Returns:
        :class:`BoxGeometry`, or None when ``K`` is invalid, the box is
        zero-area / outside the image, or no used pixel has valid depth.

    Raises:
        ValueError: ``depth`` is not 2-D, ``mask`` shape differs from
            ``depth``, or ``inner_fraction`` not in (0, 1].
    """
    if not valid_intrinsics(K):
        return None
    k = _as_K(K)
    d = np.asarray(depth)
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {d.shape}")
    if not (0.0 < inner_fraction <= 1.0):
        raise ValueError(f"inner_fraction must be in (0, 1], got {inner_fraction}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != d.shape:
            raise ValueError(f"mask shape {mask.shape} differs from depth shape {d.shape}")
    b = np.asarray(box, dtype=np.float64).reshape(4)
    if not np.all(np.isfinite(b)):
        return None
    h, w = d.shape
    xa, ya, xb, yb = (int(v) for v in pixel_ranges(b, w, h)[0])
    if xb <= xa or yb <= ya:
        return None

    crop = d[ya:yb, xa:xb].astype(np.float64)
    valid = np.isfinite(crop) & (crop > 0)
    if not valid.any():
        return None
    fx, fy = k[0, 0], k[1, 1]

    if mask is not None:
        used = valid & mask[ya:yb, xa:xb]
        if not used.any():
            return None
        z_used = crop[used]
    else:
        bh, bw = crop.shape
        ih = max(1, int(round(bh * inner_fraction)))
        iw = max(1, int(round(bw * inner_fraction)))
        oy, ox = (bh - ih) // 2, (bw - iw) // 2
        inner = crop[oy:oy + ih, ox:ox + iw]
        inner_valid = valid[oy:oy + ih, ox:ox + iw]
        seed_vals = inner[inner_valid] if inner_valid.any() else crop[valid]
        seed = float(np.median(seed_vals))
        if depth_band is None:
            extent = max((xb - xa) * seed / fx, (yb - ya) * seed / fy)
            band = max(float(min_band), 0.5 * extent)
        else:
            band = float(depth_band)
        z_all = crop[valid]
        z_used = z_all[np.abs(z_all - seed) <= band]
        if z_used.size == 0:  # only possible with a tiny explicit band
            z_used = seed_vals

    z = float(np.median(z_used))
    if not (np.isfinite(z) and z > 0):
        return None
    # Visible part of the box (float edges clipped to the image) gives centre and size.
    vis = np.array([max(b[0], 0.0), max(b[1], 0.0), min(b[2], float(w)), min(b[3], float(h))])
    uc, vc = box_center(vis)
    position = pixel_to_point(uc, vc, z, K)
    p5, p95 = np.percentile(z_used, [5.0, 95.0])
    if isinstance(K, CameraModel) and K.family is not None:
        # pixel edges are at x1 - 0.5 .. x2 - 0.5 in the pixel-centre convention
        edges = pixel_to_point([vis[0] - 0.5, vis[2] - 0.5, uc, uc], [vc, vc, vis[1] - 0.5, vis[3] - 0.5], z, K)
        extent = (float(np.linalg.norm(edges[1] - edges[0])), float(np.linalg.norm(edges[3] - edges[2])))
    else:
        extent = ((vis[2] - vis[0]) * z / fx, (vis[3] - vis[1]) * z / fy)
    size = np.array([extent[0], extent[1], float(p95 - p5)], dtype=np.float64)
    return BoxGeometry(position=position, size=size, num_valid=int(z_used.size))
