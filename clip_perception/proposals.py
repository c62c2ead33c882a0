"""Class-agnostic region proposals for CLIP ranking (ROS-free).

Every method returns boxes ``[x1, y1, x2, y2]`` (float32, source-image pixels,
``x2``/``y2`` exclusive, see ``types.py``) with an *objectness* in [0, 1].
Each image method runs on a copy downscaled so that its longest side is
``max_side`` pixels (never upscaled), so cost is bounded for any input size
(an 8K frame costs one ``cv2.resize`` more than a VGA frame); boxes are scaled
back to source pixels.

Methods and their objectness ranges (fixed bands, so that after merging the
methods a more reliable method's box wins the NMS against a near-duplicate):

==================  ==========  ====================================================
method              objectness  idea
==================  ==========  ====================================================
``depth``           0.80..1.00  tabletop segmentation: RANSAC support plane, objects
                                = connected components above it. Only with depth+K.
``contours``        0.40..0.80  colour-difference-from-table blobs and closed Canny
                                edge contours.
``selective_search`` 0.20..0.70 OpenCV selective search (Uijlings et al., IJCV 2013),
                                rank based: earlier (higher-ranked) boxes higher.
``grid``            0.05..0.10  multi-scale sliding windows (fallback recall).
==================  ==========  ====================================================

Within a band the score grows with the fill ratio (region area / box area) for
``depth``/``contours``, with rank for ``selective_search`` and with window size
for ``grid``.
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
from typing import Callable, Optional, Sequence, Tuple

import cv2
import numpy as np

from .boxes import clamp_boxes, nms, usable_boxes
from .camera import backproject_depth, depth_aligned, subsample_camera, valid_intrinsics
from .types import Timings, check_rgb

try:  # the C library whose rand() OpenCV's selective search uses
    _LIBC: Optional[ctypes.CDLL] = ctypes.CDLL(None)
except OSError:  # pragma: no cover - no dlopen(NULL): proposals stay valid, order may vary
    _LIBC = None
_SS_RAND_LOCK = threading.Lock()

__all__ = [
    "METHODS",
    "DEFAULT_METHODS",
    "propose",
    "selective_search",
    "contour_proposals",
    "grid_proposals",
    "depth_proposals",
    "fit_plane_ransac",
    "support_plane",
]

DEFAULT_METHODS: Tuple[str, ...] = ("selective_search", "contours", "grid", "depth")

_EMPTY_BOXES = np.zeros((0, 4), dtype=np.float32)
_EMPTY_SCORES = np.zeros((0,), dtype=np.float32)


def _empty() -> Tuple[np.ndarray, np.ndarray]:
    return _EMPTY_BOXES.copy(), _EMPTY_SCORES.copy()


# --------------------------------------------------------------------------- box conversion


def _rects_to_boxes(rects: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """(N, 4) x, y, w, h (working pixels) -> (N, 4) float32 xyxy source pixels."""
    r = np.asarray(rects, dtype=np.float32).reshape(-1, 4)
    out = np.empty_like(r)
    out[:, 0] = r[:, 0] * sx
    out[:, 1] = r[:, 1] * sy
    out[:, 2] = (r[:, 0] + r[:, 2]) * sx
    out[:, 3] = (r[:, 1] + r[:, 3]) * sy
    return out


# --------------------------------------------------------------------------- image preparation


class _Work:
    """Downscaled working copy of the colour image, shared by the image methods."""

    def __init__(self, rgb: np.ndarray, max_side: int):
        h, w = rgb.shape[:2]
        self.src_w, self.src_h = w, h
        scale = min(1.0, float(max_side) / float(max(h, w)))
        ww = max(1, int(round(w * scale)))
        wh = max(1, int(round(h * scale)))
        if (ww, wh) != (w, h):
            small = cv2.resize(rgb, (ww, wh), interpolation=cv2.INTER_AREA)
        else:
            small = np.ascontiguousarray(rgb)
        self.rgb = small
        self.bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        self.w, self.h = ww, wh
        # source pixels per working pixel
        self.sx = w / float(ww)
        self.sy = h / float(wh)


# --------------------------------------------------------------------------- methods


def selective_search(
    work_bgr: np.ndarray,
    mode: str = "single",
    k: int = 100,
    max_boxes: int = 400,
) -> Tuple[np.ndarray, np.ndarray]:
    """OpenCV selective search on an (already downscaled) BGR image.

    Uses ``cv2.ximgproc.segmentation.createSelectiveSearchSegmentation``
    (Uijlings et al., "Selective Search for Object Recognition", IJCV 2013).

    Args:
        work_bgr: (h, w, 3) uint8 BGR working image.
        mode: ``"single"`` (default; OpenCV ``switchToSingleStrategy(k)``:
            HSV image, one Felzenszwalb graph segmentation, colour+fill+size+
            texture similarity — ~45 ms at 320x240 on 1 core),
            ``"fast"`` (``switchToSelectiveSearchFast``: HSV+Lab, k=50,100,
            two strategies — ~250 ms at 320x240, too slow for the 100 ms
            frame budget) or ``"quality"`` (``switchToSelectiveSearchQuality``).
        k: graph-segmentation scale for ``"single"`` (smaller = more, smaller
            initial regions = more boxes).
        max_boxes: keep the first ``max_boxes`` boxes of OpenCV's ranked output.

    Returns:
        ``(rects, objectness)``: (N, 4) int32 ``x, y, w, h`` in working pixels
        and (N,) float32 objectness ``0.2 + 0.5 * (1 - rank / N)`` (OpenCV
        returns the boxes ordered by its hierarchical rank, best first).

    Raises:
        ValueError: unknown ``mode``.
    """
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(work_bgr)
    if mode == "single":
        ss.switchToSingleStrategy(int(k))
    elif mode == "fast":
        ss.switchToSelectiveSearchFast()
    elif mode == "quality":
        ss.switchToSelectiveSearchQuality()
    else:
        raise ValueError(f"unknown selective search mode {mode!r}; valid: single, fast, quality")
    with _SS_RAND_LOCK:
        # OpenCV ranks the merged regions with C rand() (ximgproc selectivesearchsegmentation.cpp:
        # rank = rand() * level); seeding it makes the proposals of one frame reproducible.
        if _LIBC is not None:
            _LIBC.srand(0)
        rects = np.asarray(ss.process(), dtype=np.int32).reshape(-1, 4)[: int(max_boxes)]
    n = len(rects)
    if n == 0:
        return np.zeros((0, 4), np.int32), _EMPTY_SCORES.copy()
    obj = 0.2 + 0.5 * (1.0 - np.arange(n, dtype=np.float32) / float(n))
    return rects, obj.astype(np.float32)


def _mask_rects(mask: np.ndarray, min_area: float, mode: int) -> Tuple[np.ndarray, np.ndarray]:
    """Bounding rects (x, y, w, h) and fill ratios of the contours of a binary mask."""
    contours, _ = cv2.findContours(mask, mode, cv2.CHAIN_APPROX_SIMPLE)
    rects, fills = [], []
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        if w * h < min_area:
            continue
        area = cv2.contourArea(c)
        rects.append((x, y, w, h))
        fills.append(min(1.0, area / float(w * h)))
    if not rects:
        return np.zeros((0, 4), np.int32), np.zeros((0,), np.float32)
    return np.asarray(rects, np.int32), np.asarray(fills, np.float32)


def contour_proposals(work_rgb: np.ndarray, min_side: float = 4.0) -> Tuple[np.ndarray, np.ndarray]:
    """Colour-blob and edge-contour proposals on an (already downscaled) RGB image.

    Two cues (OpenCV only):
      * *difference from the table*: CIE Lab distance of each (blurred) pixel
        to the image's median colour — the dominant surface — thresholded at
        ``max(Otsu, 12)``; opened/closed with a 3x3 ellipse; external
        contours. Objectness ``0.5 + 0.3 * fill``.
      * *edges*: Canny on the blurred grey image (high threshold = Otsu level,
        low = half of it), closed with a 5x5 ellipse so outlines become
        closed rings; all contours (``RETR_LIST``, so objects inside a table
        border are kept). Objectness ``0.4 + 0.3 * fill``.
    ``fill`` = contour area / bounding-box area.

    Args:
        work_rgb: (h, w, 3) uint8 RGB working image.
        min_side: minimum box side in working pixels (smaller blobs are noise).

    Returns:
        ``(rects, objectness)``: (N, 4) int32 ``x, y, w, h`` working pixels,
        (N,) float32.
    """
    min_area = float(min_side) ** 2
    blur = cv2.GaussianBlur(work_rgb, (5, 5), 0)
    out_r, out_s = [], []

    # colour difference from the dominant (median) colour
    lab = cv2.cvtColor(blur, cv2.COLOR_RGB2Lab).astype(np.float32)
    med = np.median(lab.reshape(-1, 3), axis=0)
    dist = np.sqrt(((lab - med) ** 2).sum(axis=2))
    dist8 = np.clip(dist, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(dist8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    thr = max(float(otsu), 12.0)
    mask = (dist8 > thr).astype(np.uint8) * 255
    k3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, k3)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, k3)
    r, f = _mask_rects(mask, min_area, cv2.RETR_EXTERNAL)
    out_r.append(r)
    out_s.append(0.5 + 0.3 * f)

    # closed edge contours
    gray = cv2.cvtColor(blur, cv2.COLOR_RGB2GRAY)
    hi, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    hi = max(float(hi), 20.0)
    edges = cv2.Canny(gray, 0.5 * hi, hi)
    k5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    edges = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, k5)
    r, f = _mask_rects(edges, min_area, cv2.RETR_LIST)
    out_r.append(r)
    out_s.append(0.4 + 0.3 * f)

    rects = np.concatenate(out_r, axis=0)
    scores = np.concatenate(out_s, axis=0).astype(np.float32)
    return rects, scores


def grid_proposals(
    width: int,
    height: int,
    scales: Sequence[float] = (0.2, 0.35, 0.55),
    aspects: Sequence[float] = (1.0, 2.0, 0.5),
    overlap: float = 0.5,
) -> Tuple[np.ndarray, np.ndarray]:
    """Multi-scale sliding-window boxes covering the image (recall fallback).

    For each ``scale`` (window area = (scale * min(width, height))^2) and
    ``aspect`` (w / h) the windows tile the image with a stride of
    ``(1 - overlap)`` times the window side, the last window flush with the
    right/bottom edge.

    Args:
        width, height: source image size, pixels (the grid needs no pixels, so
            it is computed directly in source coordinates).

    Returns:
        ``(boxes, objectness)``: (N, 4) float32 xyxy source pixels, (N,) float32
        ``0.05 + 0.05 * scale / max(scales)``.
    """
    if width <= 0 or height <= 0:
        return _empty()
    base = float(min(width, height))
    max_scale = max(scales)
    boxes, scores = [], []
    for s in scales:
        for a in aspects:
            bw = min(float(width), base * s * math.sqrt(a))
            bh = min(float(height), base * s / math.sqrt(a))
            xs = _starts(width, bw, overlap)
            ys = _starts(height, bh, overlap)
            gx, gy = np.meshgrid(xs, ys)
            b = np.stack([gx.ravel(), gy.ravel(), gx.ravel() + bw, gy.ravel() + bh], axis=1)
            boxes.append(b)
            scores.append(np.full(len(b), 0.05 + 0.05 * s / max_scale))
    return (
        np.concatenate(boxes).astype(np.float32),
        np.concatenate(scores).astype(np.float32),
    )


def _starts(length: int, win: float, overlap: float) -> np.ndarray:
    span = float(length) - win
    if span <= 0:
        return np.zeros(1)
    stride = max(1.0, win * (1.0 - overlap))
    n = int(math.ceil(span / stride)) + 1
    return np.linspace(0.0, span, n)


def fit_plane_ransac(
    points: np.ndarray,
    threshold: float = 0.01,
    iterations: int = 100,
    sample_size: int = 3000,
    seed: int = 0,
) -> Optional[Tuple[np.ndarray, float, int]]:
    """Dominant plane of a point set by RANSAC + least-squares refit.

    RANSAC (Fischler & Bolles, CACM 1981): ``iterations`` random 3-point
    hypotheses, scored by the inlier count (``|distance| < threshold``) on a
    random subset of ``sample_size`` points; the best is refit to all its
    inliers by SVD (total least squares) and the inliers recounted. The RNG is
    ``np.random.default_rng(seed)``, so results are deterministic.

    Args:
        points: (M, 3) float metres, all finite.

    Returns:
        ``(n, d, inliers)`` with unit normal ``n`` (3,) float64 oriented so
        that the origin (the camera) has positive signed distance ``d``
        (plane: ``n . p + d = 0``; ``n . p + d > 0`` on the camera side), and
        the inlier count among all points; None when fewer than 3 points or no
        non-degenerate hypothesis.
    """
    pts = np.asarray(points, dtype=np.float64)
    m = len(pts)
    if m < 3:
        return None
    rng = np.random.default_rng(seed)
    sub = pts if m <= sample_size else pts[rng.choice(m, sample_size, replace=False)]
    idx = rng.integers(0, m, size=(iterations, 3))
    p0, p1, p2 = pts[idx[:, 0]], pts[idx[:, 1]], pts[idx[:, 2]]
    n = np.cross(p1 - p0, p2 - p0)
    norm = np.linalg.norm(n, axis=1)
    ok = norm > 1e-9
    if not ok.any():
        return None
    n = n[ok] / norm[ok, None]
    d = -(n * p0[ok]).sum(axis=1)
    counts = (np.abs(sub @ n.T + d) < threshold).sum(axis=0)
    best = int(np.argmax(counts))
    nb, db = n[best], d[best]
    inl = np.abs(pts @ nb + db) < threshold
    if inl.sum() >= 3:
        q = pts[inl]
        c = q.mean(axis=0)
        _, _, vt = np.linalg.svd(q - c, full_matrices=False)
        nb = vt[-1]
        db = -float(nb @ c)
        inl = np.abs(pts @ nb + db) < threshold
    if db < 0:
        nb, db = -nb, -db
    return nb, float(db), int(inl.sum())


def _subsampled_points(depth, K, max_side: int):
    """``(depth float32, depth[::s, ::s], s, points (h, w, 3) float32, valid (h, w) bool)`` of
    step 1 of :func:`depth_proposals`, or None for a non-2-D / empty depth or an invalid K."""
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim != 2 or d.size == 0 or not valid_intrinsics(K):
        return None
    step = max(1, int(math.ceil(max(d.shape) / float(max_side))))
    ds = d[::step, ::step]
    pts = backproject_depth(ds, subsample_camera(K, step))  # a CameraModel keeps its distortion
    return d, ds, step, pts, np.isfinite(pts[..., 2])


def _fit_table_plane(pts, valid, threshold, min_valid_fraction, min_plane_fraction, seed):
    """Step 2 of :func:`depth_proposals`: ``(n, d)`` or None (too few valid points / plane inliers)."""
    nvalid = int(valid.sum())
    if nvalid < max(3, min_valid_fraction * valid.size):
        return None
    fit = fit_plane_ransac(pts[valid], threshold=threshold, seed=seed)
    if fit is None or fit[2] < min_plane_fraction * nvalid:
        return None
    return fit[0], fit[1]


def support_plane(depth: np.ndarray, K, max_side: int = 320, plane_threshold: float = 0.01,
                  min_valid_fraction: float = 0.1, min_plane_fraction: float = 0.2,
                  seed: int = 0) -> Optional[Tuple[np.ndarray, float]]:
    """The support plane exactly as :func:`depth_proposals` fits it (steps 1-2, same arguments),
    so that one fit per frame serves the depth proposals (``plane=``) and the instance masks.

    Returns:
        ``(n, d)`` of ``n . p + d = 0`` (optical frame; unit ``n`` (3,) float64 towards the
        camera, ``d`` metres), or None (invalid K, too little valid depth, too few inliers).
    """
    sub = _subsampled_points(depth, K, max_side)
    if sub is None:
        return None
    return _fit_table_plane(sub[3], sub[4], plane_threshold, min_valid_fraction, min_plane_fraction, seed)


def depth_proposals(
    depth: np.ndarray,
    K: np.ndarray,
    max_side: int = 320,
    plane_threshold: float = 0.01,
    min_height: float = 0.015,
    max_height: float = 0.6,
    min_valid_fraction: float = 0.1,
    min_plane_fraction: float = 0.2,
    jump: float = 0.03,
    seed: int = 0,
    plane: Optional[Tuple[np.ndarray, float]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Tabletop segmentation proposals from a depth image.

    1. Subsample ``depth[::s, ::s]`` (``s`` so the longest side is <=
       ``max_side``; exact pixel mapping, intrinsics ``fx/s``, ``cx/s``) and
       back-project valid pixels with ``K`` (REP 103 optical frame).
    2. Fit the dominant support plane with :func:`fit_plane_ransac`
       (seeded, deterministic).
    3. Object mask = valid pixels on the camera side of the plane with height
       in ``(min_height, max_height]`` metres (this removes the plane, within
       its noise band, and everything below it, e.g. the floor).
    4. Split touching objects at depth discontinuities: between two
       neighbouring mask pixels whose depths differ by more than
       ``max(jump, 0.03 * z)`` the farther pixel is removed.
    5. 3x3 morphological opening, then ``cv2.connectedComponentsWithStats``
       (8-connectivity); one box per component, scaled back by ``s``.

    Skips (returns no boxes) when ``K`` is invalid, fewer than
    ``min_valid_fraction`` of the pixels have valid depth, or the plane holds
    fewer than ``min_plane_fraction`` of the valid points.
    Limitation: if the largest plane is not the support surface (e.g. a wall
    or the floor), the table itself becomes one large component.

    Args:
        depth: (H, W) float metres, NaN/Inf/<=0 invalid.
        K: (3, 3) intrinsics of ``depth``, or a :class:`camera.CameraModel` (lens
            distortion removed in the back-projection).
        plane: the frame's support plane ``(n, d)`` already fitted by :func:`support_plane`
            (steps 1-2 are then not repeated); None = fit it here.

    Returns:
        ``(boxes, objectness)``: (N, 4) float32 xyxy source pixels, (N,) float32
        ``0.8 + 0.2 * fill`` (component area / box area).
    """
    sub = _subsampled_points(depth, K, max_side)
    if sub is None:
        return _empty()
    d, ds, step, pts, valid = sub
    h, w = d.shape
    if plane is None:
        plane = _fit_table_plane(pts, valid, plane_threshold, min_valid_fraction, min_plane_fraction, seed)
    if plane is None:
        return _empty()
    n, dd = plane
    with np.errstate(invalid="ignore"):
        height = pts @ n.astype(np.float32) + np.float32(dd)
        obj = valid & (height > min_height) & (height <= max_height)
    z = np.where(obj, ds, np.nan)
    zz = np.nan_to_num(z, nan=0.0)
    # depth discontinuities between two object pixels: drop the farther one
    for axis in (0, 1):
        a = [slice(None), slice(None)]
        b = [slice(None), slice(None)]
        a[axis], b[axis] = slice(0, -1), slice(1, None)
        za, zb = zz[tuple(a)], zz[tuple(b)]
        both = obj[tuple(a)] & obj[tuple(b)]
        thr = np.maximum(jump, 0.03 * np.minimum(za, zb))
        cut = both & (np.abs(za - zb) > thr)
        far_a = cut & (za > zb)
        far_b = cut & (zb > za)
        obj[tuple(a)] &= ~far_a
        obj[tuple(b)] &= ~far_b
    mask = obj.astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
    num, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if num <= 1:
        return _empty()
    st = stats[1:]
    keep = st[:, cv2.CC_STAT_AREA] >= 9
    st = st[keep]
    if len(st) == 0:
        return _empty()
    x, y = st[:, cv2.CC_STAT_LEFT], st[:, cv2.CC_STAT_TOP]
    bw, bh = st[:, cv2.CC_STAT_WIDTH], st[:, cv2.CC_STAT_HEIGHT]
    boxes = np.stack([x, y, x + bw, y + bh], axis=1).astype(np.float32) * float(step)
    boxes = clamp_boxes(boxes, w, h)
    fill = st[:, cv2.CC_STAT_AREA] / (bw * bh).astype(np.float64)
    return boxes, (0.8 + 0.2 * fill).astype(np.float32)


# --------------------------------------------------------------------------- merge


METHODS: Tuple[str, ...] = ("selective_search", "contours", "grid", "depth")


def propose(
    rgb: np.ndarray,
    depth: Optional[np.ndarray] = None,
    K: Optional[np.ndarray] = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    max_proposals: int = 100,
    nms_iou: float = 0.7,
    min_box_size: float = 16,
    max_side: int = 320,
    timings: Optional[Timings] = None,
    max_area_fraction: float = 0.9,
    ss_mode: str = "single",
    plane: Optional[Tuple[np.ndarray, float]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Class-agnostic object proposals for one frame.

    Runs each requested method (see the module docstring for their objectness
    bands), merges the boxes, clamps them to the image, drops boxes narrower or
    shorter than ``min_box_size`` pixels and boxes covering more than
    ``max_area_fraction`` of the image (whole-frame boxes, e.g. selective
    search's root region, are useless for object finding), runs NMS
    (``torchvision.ops.nms``) across all methods at ``nms_iou`` — a more
    reliable method's box absorbs the near-duplicates of the others — and
    keeps the ``max_proposals`` best.

    Args:
        rgb: (H, W, 3) uint8 RGB image (any size; methods work on a copy whose
            longest side is ``max_side``).
        depth: optional (H, W) float32 metres (NaN invalid), aligned with
            ``rgb``; the ``depth`` method is skipped (no boxes, no error) when
            it is None, its shape differs from ``rgb``'s, it is mostly
            invalid, or ``K`` is None/invalid.
        K: optional (3, 3) float64 intrinsics of ``depth``.
        methods: subset of :data:`METHODS`.
        max_proposals: maximum number of boxes returned.
        nms_iou: IoU above which the lower-objectness box is suppressed.
        min_box_size: minimum width and height, source pixels.
        max_side: longest side of the working copy, pixels.
        timings: if given, ``timings.add("proposals.<method>", ms)`` for each
            method run, plus ``"proposals.prepare"`` (downscale) and
            ``"proposals.merge"`` (clamp/filter/NMS).
        max_area_fraction: boxes with area > this fraction of the image are dropped.
        ss_mode: selective search mode, see :func:`selective_search`.
        plane: the frame's support plane ``(n, d)`` from :func:`support_plane`, reused by the
            ``depth`` method (None = it fits its own).

    Returns:
        ``(boxes, objectness)``: (N, 4) float32 ``[x1, y1, x2, y2]`` source
        pixels (x2/y2 exclusive, inside the image) and (N,) float32 in [0, 1],
        sorted by objectness descending, N <= ``max_proposals``. Empty
        ((0, 4), (0,)) for a 0-size image.

    Raises:
        ValueError: unknown method name (the message lists the valid ones),
            or ``rgb`` not (H, W, 3) uint8.
    """
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown proposal method(s) {unknown}; valid: {list(METHODS)}")
    img = check_rgb(rgb)
    h, w = img.shape[:2]
    if h == 0 or w == 0 or max_proposals <= 0:
        return _empty()

    def timed(name: str, fn: Callable[[], Tuple[np.ndarray, np.ndarray]]):
        t0 = time.perf_counter()
        out = fn()
        if timings is not None:
            timings.add(name, (time.perf_counter() - t0) * 1000.0)
        return out

    work: Optional[_Work] = None
    if "selective_search" in methods or "contours" in methods:
        t0 = time.perf_counter()
        work = _Work(img, max_side)
        if timings is not None:
            timings.add("proposals.prepare", (time.perf_counter() - t0) * 1000.0)

    all_boxes = []
    all_scores = []
    for m in dict.fromkeys(methods):  # de-duplicated, order kept
        if m == "selective_search":
            r, s = timed("proposals." + m, lambda: selective_search(work.bgr, mode=ss_mode))
            b = _rects_to_boxes(r, work.sx, work.sy)
        elif m == "contours":
            min_side = max(2.0, min_box_size / max(work.sx, work.sy))
            r, s = timed("proposals." + m, lambda: contour_proposals(work.rgb, min_side=min_side))
            b = _rects_to_boxes(r, work.sx, work.sy)
        elif m == "grid":
            b, s = timed("proposals." + m, lambda: grid_proposals(w, h))
        else:  # depth
            if depth is None or K is None or np.ndim(depth) != 2 or not depth_aligned(img.shape, np.shape(depth)):
                continue
            b, s = timed("proposals." + m, lambda: depth_proposals(depth, K, max_side=max_side, plane=plane))
        all_boxes.append(b)
        all_scores.append(s)

    t0 = time.perf_counter()
    if not all_boxes:
        return _empty()
    boxes = clamp_boxes(np.concatenate(all_boxes, axis=0), w, h)
    scores = np.clip(np.concatenate(all_scores, axis=0).astype(np.float32), 0.0, 1.0)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    ok = usable_boxes(boxes, min_box_size) & (area <= max_area_fraction * w * h)
    boxes, scores = boxes[ok], scores[ok]
    keep = nms(boxes, scores, nms_iou)[: int(max_proposals)]
    boxes, scores = boxes[keep], scores[keep]
    if timings is not None:
        timings.add("proposals.merge", (time.perf_counter() - t0) * 1000.0)
    return boxes.astype(np.float32), scores.astype(np.float32)

