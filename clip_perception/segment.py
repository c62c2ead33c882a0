"""Instance masks and the object's own 3D geometry: centre, oriented extent, yaw (ROS-free).

With depth + K the object is segmented from its support surface (:class:`placement.SupportPlane`):
the pixels of the box, grown by :data:`BOX_GROWTH` of its size on each side, whose points stand
more than :data:`placement.OBJECT_MIN_HEIGHT` above the plane, cut along depth discontinuities
(neighbouring depths more than :data:`EDGE_JUMP` apart, relative to the depth), and the
8-connected component that covers most of the box's central half (a component that reaches
the side of that window is searched again in a larger window, :data:`MAX_REGROW`, so a small
proposal on a large object yields the whole object).  Without depth the mask is
OpenCV's GrabCut (Rother, Kolmogorov & Blake, SIGGRAPH 2004) seeded with the box, run on the
box's crop downscaled to at most :data:`GRABCUT_MAX_SIDE` pixels (its cost follows that size,
not the image's).

The object's geometry from its mask points and the plane: the feet of the points on the plane
give the footprint, whose minimum-area rectangle (``cv2.minAreaRect``, rotating calipers)
gives the horizontal centre, the length and width, and the yaw of the long axis about the
plane normal; the height is the 98th percentile of the points' heights above the plane, and the
centre lies half that height above the plane.  The visible points of an object seen from
one side cover only part of its footprint (the far half of a ball, the back of a box), so the
rectangle is found on the visible feet and the centre is the rectangle's centre.  Without a
plane the visible-surface point is all there is (``position_is_centre`` false).

:func:`locate_object` is the 3D step of :class:`pipeline.Detector` for one reported detection:
mask, tight box, centre / extent / orientation, or the visible-surface fallback
(:func:`geometry.box_position`) with a note.

All points are in the camera optical frame (REP 103: x right, y down, z forward), metres.
Back-projection goes through :mod:`clip_perception.camera`, so a :class:`camera.CameraModel`
with lens distortion is undistorted per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from .boxes import pixel_ranges
from .camera import backproject_depth, crop_camera, valid_intrinsics
from .geometry import box_position
from .placement import OBJECT_MIN_HEIGHT, SupportPlane

#: Each side of the box is grown by this fraction of its size before segmenting (a proposal
#: that covers half of the object still yields the whole connected object).
BOX_GROWTH = 1.0
#: Depth discontinuity that separates two objects: |dz| > EDGE_JUMP * z between neighbours.
EDGE_JUMP = 0.03
#: GrabCut's context around the box (fraction of its size per side).
GRABCUT_GROWTH = 0.15
#: A GrabCut mask covering less than this share of its box is no object (the box is kept).
GRABCUT_MIN_FILL = 0.03
#: GrabCut iterations without depth.
GRABCUT_ITERATIONS = 2
#: GrabCut runs on the crop downscaled so that its longest side is at most this [pixels].
GRABCUT_MAX_SIDE = 64
#: A depth mask cut by its window is searched again in a larger window at most this often.
MAX_REGROW = 3
#: Fewest mask points with valid depth for a centre / extent estimate.
MIN_POINTS = 10

NOTE_NO_PLANE = ("no support plane in the depth image: positions are visible-surface points, "
                 "not object centres (position_is_centre false)")
NOTE_NOT_ABOVE = ("no depth points above the support plane in a detection's box: its position is the visible "
                  "surface (position_is_centre false)")


@dataclass(frozen=True)
class ObjectGeometry:
    """The 3D estimate of one segmented object.

    Attributes:
        centre: (3,) float64 metres, optical frame: the object's centre (between its top and
            the support plane) when ``is_centre``, else the visible-surface point.
        extent: (3,) float64 metres ``[length, width, height]`` (long and short horizontal
            axes of the footprint rectangle, height above the plane); with no plane: the
            visible points' spread along the optical axes.
        yaw: radians, rotation of the long axis about the plane normal, measured from the
            optical x axis projected onto the plane, in (-pi/2, pi/2]; 0 with no plane.
        rotation: (3, 3) float64 columns = the object's axes in the optical frame (x = long
            axis, z = plane normal); identity with no plane.
        is_centre: whether ``centre`` is the volumetric centre (a plane was available).
        num_points: mask points used.
    """

    centre: np.ndarray
    extent: np.ndarray
    yaw: float
    rotation: np.ndarray
    is_centre: bool
    num_points: int


@dataclass(frozen=True)
class InstanceMask:
    """The mask of one object, stored as its crop (full-size masks only on demand).

    Attributes:
        offset: ``(x, y)`` pixel of the crop's top-left corner in the image.
        crop: (h, w) bool, True on the object.
        image_size: ``(H, W)`` of the image the mask belongs to.
        method: ``"depth"`` (support plane + depth edges) or ``"grabcut"`` (colour).
        points: (M, 3) float32 optical-frame points [m] of the mask pixels with valid depth
            (row-major order), or None without depth.
        pixels: (M, 2) int32 ``(u, v)`` image pixels of ``points`` (for their colours), or None.
    """

    offset: Tuple[int, int]
    crop: np.ndarray
    image_size: Tuple[int, int]
    method: str
    points: Optional[np.ndarray] = None
    pixels: Optional[np.ndarray] = None

    @property
    def area(self) -> int:
        """Mask pixels."""
        return int(np.count_nonzero(self.crop))

    @property
    def box(self) -> Optional[np.ndarray]:
        """(4,) float32 tight ``[x1, y1, x2, y2]`` (exclusive x2/y2) in image pixels; None if empty."""
        b = mask_box(self.crop)
        return None if b is None else b + np.array([*self.offset, *self.offset], np.float32)

    def full(self) -> np.ndarray:
        """(H, W) bool full-size mask."""
        out = np.zeros(self.image_size, bool)
        x, y = self.offset
        h, w = self.crop.shape
        out[y:y + h, x:x + w] = self.crop
        return out


@dataclass(frozen=True)
class ObjectEstimate:
    """What :func:`locate_object` found for one detection.

    Attributes:
        mask: the object's :class:`InstanceMask`, or None (no usable mask: keep the box).
        box: (4,) float32 tight box of the mask (image pixels), or None.
        position: (3,) float64 metres, optical frame: the centre when ``is_centre``, else the
            visible-surface point (:func:`geometry.box_position`); None without depth / K.
        size: (3,) float64 metres: ``[length, width, height]`` of the oriented box when
            ``is_centre``, else ``box_position``'s optical-axis extent; None when unknown.
        orientation: (4,) float64 quaternion ``[x, y, z, w]`` of the object's axes in the
            optical frame (x = long horizontal axis, z = plane normal), None when unknown.
        is_centre: ``position`` is the object's centre (mask + support plane).
        note: why the centre is not available ("" when it is, or without depth).
    """

    mask: Optional[InstanceMask]
    box: Optional[np.ndarray]
    position: Optional[np.ndarray] = None
    size: Optional[np.ndarray] = None
    orientation: Optional[np.ndarray] = None
    is_centre: bool = False
    note: str = ""


def crop_points(depth: np.ndarray, K, xa: int, ya: int, xb: int, yb: int) -> np.ndarray:
    """(yb - ya, xb - xa, 3) float32 points [m] of ``depth[ya:yb, xa:xb]``, NaN where invalid.

    Args:
        depth: (H, W) float metres (non-finite / <= 0 invalid).
        K: (3, 3) intrinsics of the full image or a :class:`camera.CameraModel` (distortion
            removed per pixel); the crop's camera is :func:`camera.crop_camera`.
    """
    return backproject_depth(np.asarray(depth)[ya:yb, xa:xb], crop_camera(K, xa, ya))


def grown_box(box, width: int, height: int, growth: float = BOX_GROWTH) -> np.ndarray:
    """(4,) int64 ``[xa, ya, xb, yb]`` pixel ranges of ``box`` grown by ``growth`` of its size per side."""
    b = np.asarray(box, np.float64).reshape(4)
    gw, gh = growth * (b[2] - b[0]), growth * (b[3] - b[1])
    return pixel_ranges(b + np.array([-gw, -gh, gw, gh]), width, height)[0]


def _depth_edges(depth: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels next to a depth jump larger than EDGE_JUMP * z (or next to invalid depth)."""
    d = np.asarray(depth, np.float32)
    d = np.where(np.isfinite(d) & (d > 0), d, np.nan)
    edges = np.zeros(d.shape, bool)
    with np.errstate(invalid="ignore"):
        for a, b in (((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                     ((slice(None), slice(None, -1)), (slice(None), slice(1, None)))):
            jump = ~(np.abs(d[a] - d[b]) <= EDGE_JUMP * np.fmin(d[a], d[b]))  # NaN counts as a jump
            edges[a] |= jump
            edges[b] |= jump
    return edges


def _component(d: np.ndarray, K, box, plane: SupportPlane, growth: float):
    """The above-plane component voted by the box's central half, in the box grown by ``growth``:
    ``(window (xa, ya, xb, yb), crop (h, w) bool, points (h, w, 3))`` or None."""
    h, w = d.shape
    xa, ya, xb, yb = (int(v) for v in grown_box(box, w, h, growth))
    if xb <= xa or yb <= ya:
        return None
    pts = crop_points(d, K, xa, ya, xb, yb)
    with np.errstate(invalid="ignore"):
        heights = pts.astype(np.float64) @ plane.normal + plane.offset
        above = np.isfinite(heights) & (heights > OBJECT_MIN_HEIGHT) & ~_depth_edges(d[ya:yb, xa:xb])
    count, labels = cv2.connectedComponents(above.astype(np.uint8), connectivity=8)
    if count <= 1:
        return None
    bx = np.asarray(box, np.float64).reshape(4) - np.array([xa, ya, xa, ya])
    cx, cy, qw, qh = (bx[0] + bx[2]) / 2, (bx[1] + bx[3]) / 2, (bx[2] - bx[0]) / 4, (bx[3] - bx[1]) / 4
    core = labels[max(0, int(cy - qh)):max(1, int(np.ceil(cy + qh))), max(0, int(cx - qw)):max(1, int(np.ceil(cx + qw)))]
    votes = np.bincount(core.ravel(), minlength=count)
    votes[0] = 0
    if votes.max() == 0:
        return None
    return (xa, ya, xb, yb), labels == int(np.argmax(votes)), pts


def _cut_by_window(window, crop: np.ndarray, width: int, height: int) -> bool:
    """Whether the component reaches a side of its window that is not the image's border."""
    xa, ya, xb, yb = window
    return bool((xa > 0 and crop[:, 0].any()) or (ya > 0 and crop[0].any())
                or (xb < width and crop[:, -1].any()) or (yb < height and crop[-1].any()))


def _depth_crop(depth: np.ndarray, K, box, plane: SupportPlane) -> Optional[InstanceMask]:
    """:func:`depth_mask` as an :class:`InstanceMask` with its points; None when empty.

    A component cut by its window (a proposal on a small part of a large object) is found
    again in a window grown twice as much, up to :data:`MAX_REGROW` times."""
    d = np.asarray(depth)
    h, w = d.shape
    growth = BOX_GROWTH
    found = _component(d, K, box, plane, growth)
    for _ in range(MAX_REGROW):
        if found is None or not _cut_by_window(found[0], found[1], w, h):
            break
        growth = 2.0 * growth + 0.5
        found = _component(d, K, box, plane, growth)
    if found is None:
        return None
    (xa, ya, _, _), crop, pts = found
    vs, us = np.nonzero(crop)  # every mask pixel stands above the plane: its depth is valid
    return InstanceMask((xa, ya), crop, (h, w), "depth", points=pts[vs, us].astype(np.float32),
                        pixels=np.stack([us + xa, vs + ya], axis=1).astype(np.int32))


def depth_mask(depth: np.ndarray, K, box, plane: SupportPlane) -> np.ndarray:
    """(H, W) bool mask of the object in ``box`` from depth and the support plane (module doc).

    Args:
        depth: (H, W) float metres (NaN / <= 0 invalid); K: (3, 3) or a
            :class:`camera.CameraModel`; box: (4,) xyxy pixels.

    Returns:
        The mask (all False when no pixel of the box stands above the plane).
    """
    m = _depth_crop(depth, K, box, plane)
    return np.zeros(np.shape(depth), bool) if m is None else m.full()


def _grabcut_crop(rgb: np.ndarray, box, iterations: int = GRABCUT_ITERATIONS) -> Optional[InstanceMask]:
    """:func:`grabcut_mask` as an :class:`InstanceMask` (no points); None when empty."""
    h, w = rgb.shape[:2]
    xa, ya, xb, yb = (int(v) for v in grown_box(box, w, h, GRABCUT_GROWTH))
    bx = pixel_ranges(box, w, h)[0] - np.array([xa, ya, xa, ya])
    if bx[2] - bx[0] < 2 or bx[3] - bx[1] < 2:
        return None
    crop = np.ascontiguousarray(rgb[ya:yb, xa:xb, ::-1])  # GrabCut's colour model is BGR-agnostic
    ch, cw = crop.shape[:2]
    scale = min(1.0, GRABCUT_MAX_SIDE / float(max(ch, cw)))
    if scale < 1.0:
        crop = cv2.resize(crop, (max(2, round(cw * scale)), max(2, round(ch * scale))), interpolation=cv2.INTER_AREA)
    sh, sw = crop.shape[:2]
    x1, y1 = int(np.floor(bx[0] * sw / cw)), int(np.floor(bx[1] * sh / ch))
    x2, y2 = int(np.ceil(bx[2] * sw / cw)), int(np.ceil(bx[3] * sh / ch))
    if x1 == 0 and y1 == 0 and x2 >= sw and y2 >= sh:  # GrabCut needs some background
        x1, y1, x2, y2 = 1, 1, sw - 1, sh - 1
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    gc = np.zeros((sh, sw), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means draws from OpenCV's RNG: the same mask for the same input
    try:
        cv2.grabCut(crop, gc, (x1, y1, x2 - x1, y2 - y1), bgd, fgd, int(iterations), cv2.GC_INIT_WITH_RECT)
    except cv2.error:  # too few background / foreground samples for the colour models
        return None
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if count <= 1:
        return None
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[biggest, cv2.CC_STAT_AREA] < GRABCUT_MIN_FILL * (x2 - x1) * (y2 - y1):
        return None  # a speck: GrabCut found no object in the box (the ranked box is kept)
    fg = (labels == biggest).astype(np.uint8)
    if scale < 1.0:
        fg = cv2.resize(fg, (cw, ch), interpolation=cv2.INTER_NEAREST)
    if not fg.any():
        return None
    return InstanceMask((xa, ya), fg.astype(bool), (h, w), "grabcut")


def grabcut_mask(rgb: np.ndarray, box, iterations: int = GRABCUT_ITERATIONS) -> np.ndarray:
    """(H, W) bool mask of the object in ``box`` by GrabCut on the colour image (no depth).

    Runs on the grown box's crop, downscaled to at most :data:`GRABCUT_MAX_SIDE` pixels (so its
    cost follows that size, not the image), with OpenCV's RNG seeded (deterministic).

    Args:
        rgb: (H, W, 3) uint8 RGB; box: (4,) xyxy pixels.
    """
    m = _grabcut_crop(rgb, box, iterations)
    return np.zeros(rgb.shape[:2], bool) if m is None else m.full()


def mask_box(mask: np.ndarray) -> Optional[np.ndarray]:
    """(4,) float32 tight ``[x1, y1, x2, y2]`` (exclusive x2/y2) of a bool mask, None if empty."""
    rows, cols = np.flatnonzero(np.any(mask, axis=1)), np.flatnonzero(np.any(mask, axis=0))
    if cols.size == 0:
        return None
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def mask_points(depth: np.ndarray, K, mask: np.ndarray) -> np.ndarray:
    """(M, 3) float64 optical-frame points [m] of the valid depth pixels under ``mask``
    (K: (3, 3) or a :class:`camera.CameraModel`)."""
    pts = backproject_depth(np.where(mask, depth, np.nan), K).reshape(-1, 3).astype(np.float64)
    return pts[np.isfinite(pts).all(axis=1)]


def _with_points(mask: InstanceMask, depth: np.ndarray, K) -> InstanceMask:
    """``mask`` with the points / pixels of its valid depth pixels (for a GrabCut mask)."""
    x, y = mask.offset
    h, w = mask.crop.shape
    pts = crop_points(depth, K, x, y, x + w, y + h)
    vs, us = np.nonzero(mask.crop & np.isfinite(pts[..., 2]))
    return InstanceMask(mask.offset, mask.crop, mask.image_size, mask.method, points=pts[vs, us].astype(np.float32),
                        pixels=np.stack([us + x, vs + y], axis=1).astype(np.int32))


def object_geometry(points: np.ndarray, plane: Optional[SupportPlane]) -> Optional[ObjectGeometry]:
    """Centre, oriented extent and yaw of an object from its (M, 3) points (module doc).

    Returns:
        :class:`ObjectGeometry`, or None for fewer than 3 points.  With ``plane`` None: the
        visible-surface point (median of the points), the points' spread, ``is_centre`` False.
    """
    p = np.asarray(points, np.float64).reshape(-1, 3)
    if len(p) < 3:
        return None
    if plane is None:
        lo, hi = np.percentile(p, [2, 98], axis=0)
        return ObjectGeometry(np.median(p, axis=0), hi - lo, 0.0, np.eye(3), False, len(p))
    right, towards = plane.axes()
    feet = plane.project(p)
    coords = np.stack([feet @ right, feet @ towards], axis=1).astype(np.float32)
    (ca, cb), (sa, sb), angle = cv2.minAreaRect(coords)
    theta = np.deg2rad(angle)
    if sb > sa:  # make the first axis the long one
        sa, sb, theta = sb, sa, theta + np.pi / 2
    theta = float(np.arctan2(np.sin(theta), np.cos(theta)))
    if theta <= -np.pi / 2:
        theta += np.pi
    elif theta > np.pi / 2:
        theta -= np.pi
    height = float(np.percentile(plane.height(p), 98))
    origin = plane.project(np.zeros((1, 3)))[0]
    base = origin - (origin @ right) * right - (origin @ towards) * towards
    centre = base + ca * right + cb * towards + 0.5 * height * plane.normal
    long_axis = np.cos(theta) * right + np.sin(theta) * towards
    rotation = np.stack([long_axis, np.cross(plane.normal, long_axis), plane.normal], axis=1)
    return ObjectGeometry(centre, np.array([sa, sb, height], np.float64), theta, rotation, True, len(p))


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """(4,) float64 unit quaternion ``[x, y, z, w]`` (geometry_msgs order) of a 3x3 rotation.

    Shepperd's method (J. Guidance and Control 1(3), 1978): the largest of the four
    candidates' diagonals is used, so it is stable for every rotation.
    """
    m = np.asarray(R, np.float64)
    t = np.trace(m)
    if t > 0:
        s = 2.0 * np.sqrt(t + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q, np.float64)
    return q / np.linalg.norm(q)


def quaternion_to_rotation(q) -> np.ndarray:
    """(3, 3) float64 rotation of a quaternion ``[x, y, z, w]`` (normalised first; the
    standard formula, e.g. Shoemake, SIGGRAPH 1985)."""
    x, y, z, w = np.asarray(q, np.float64).reshape(4) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _usable(depth, K, plane) -> bool:
    return depth is not None and plane is not None and K is not None and valid_intrinsics(K)


def segment(rgb: np.ndarray, box, depth: Optional[np.ndarray] = None, K=None,
            plane: Optional[SupportPlane] = None) -> np.ndarray:
    """The object's mask: :func:`depth_mask` when depth, a valid K and a plane are given and it
    finds the object, else :func:`grabcut_mask`.  (H, W) bool."""
    if _usable(depth, K, plane):
        mask = depth_mask(depth, K, box, plane)
        if mask.any():
            return mask
    return grabcut_mask(rgb, box)


def locate_object(rgb: np.ndarray, box, depth: Optional[np.ndarray] = None, K=None,
                  plane: Optional[SupportPlane] = None) -> ObjectEstimate:
    """Mask, tight box and 3D of the object in ``box`` (the 3D step of one detection).

    1. With depth, a valid K and a support plane: the depth mask (:func:`depth_mask`); the
       object's centre, oriented extent and orientation from its points and the plane
       (:func:`object_geometry`, at least :data:`MIN_POINTS` points), ``is_centre`` True.
    2. Otherwise (or when no point of the box stands above the plane): GrabCut on the colour
       crop (:func:`grabcut_mask`), and with depth + K the visible-surface point and extent of
       :func:`geometry.box_position` on the mask's tight box (the box when there is no
       mask), no orientation, ``is_centre`` False, with a note (:data:`NOTE_NO_PLANE`,
       :data:`NOTE_NOT_ABOVE`).

    Args:
        rgb: (H, W, 3) uint8 RGB; box: (4,) xyxy pixels (the ranked proposal).
        depth: (H, W) float32 metres aligned to ``rgb``, or None.
        K: (3, 3) intrinsics or a :class:`camera.CameraModel`, or None.
        plane: the frame's support plane, or None.

    Returns:
        :class:`ObjectEstimate` (``mask`` None when neither method finds the object: keep the box).
    """
    has_3d = depth is not None and K is not None and valid_intrinsics(K)
    note = ""
    if has_3d and plane is not None:
        mask = _depth_crop(depth, K, box, plane)
        if mask is not None and len(mask.points) >= MIN_POINTS:
            geo = object_geometry(mask.points, plane)
            return ObjectEstimate(mask, mask.box, geo.centre, geo.extent, rotation_to_quaternion(geo.rotation),
                                  True)
        note = NOTE_NOT_ABOVE
    elif has_3d:
        note = NOTE_NO_PLANE
    mask = _grabcut_crop(rgb, box)
    tight = None if mask is None else mask.box
    if not has_3d:
        return ObjectEstimate(mask, tight)
    if mask is not None:
        mask = _with_points(mask, depth, K)
    geo = box_position(depth, tight if tight is not None else box, K)
    if geo is None:
        return ObjectEstimate(mask, tight, note=note)
    return ObjectEstimate(mask, tight, geo.position, geo.size, None, False, note)
