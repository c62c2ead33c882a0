"""Instance masks and the object's own 3D geometry: centre, oriented extent, yaw (ROS-free).

With depth + K the object is segmented from its support surface (:class:`placement.SupportPlane`):
the pixels of the box, grown by :data:`BOX_GROWTH` of its size on each side, whose points stand
more than :data:`placement.OBJECT_MIN_HEIGHT` above the plane, cut along depth discontinuities
(neighbouring depths more than :data:`EDGE_JUMP` apart, relative to the depth), and the
8-connected component that covers most of the box's central half.  Without depth the mask is
OpenCV's GrabCut (Rother, Kolmogorov & Blake, SIGGRAPH 2004) seeded with the box.

The object's geometry from its mask points and the plane: the feet of the points on the plane
give the footprint, whose minimum-area rectangle (``cv2.minAreaRect``, rotating calipers)
gives the horizontal centre, the length and width, and the yaw of the long axis about the
plane normal; the height is the 98th percentile of the points' heights above the plane, and the
centre lies half that height above the plane.  The visible points of an object seen from
one side cover only part of its footprint (the far half of a ball, the back of a box), so the
rectangle is found on the visible feet and the centre is the rectangle's centre.  Without a
plane the visible-surface point is all there is (``position_is_centre`` false).

All points are in the camera optical frame (REP 103: x right, y down, z forward), metres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from .boxes import pixel_ranges
from .camera import backproject_depth, valid_intrinsics
from .placement import OBJECT_MIN_HEIGHT, SupportPlane

#: Each side of the box is grown by this fraction of its size before segmenting (a proposal
#: that covers half of the object still yields the whole connected object).
BOX_GROWTH = 1.0
#: Depth discontinuity that separates two objects: |dz| > EDGE_JUMP * z between neighbours.
EDGE_JUMP = 0.03
#: GrabCut's context around the box (fraction of its size per side).
GRABCUT_GROWTH = 0.15
#: GrabCut iterations without depth.
GRABCUT_ITERATIONS = 3


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


def grown_box(box, width: int, height: int, growth: float = BOX_GROWTH) -> np.ndarray:
    """(4,) int64 ``[xa, ya, xb, yb]`` pixel ranges of ``box`` grown by ``growth`` of its size per side."""
    b = np.asarray(box, np.float64).reshape(4)
    gw, gh = growth * (b[2] - b[0]), growth * (b[3] - b[1])
    return pixel_ranges(b + np.array([-gw, -gh, gw, gh]), width, height)[0]


def _depth_edges(depth: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels next to a depth jump larger than EDGE_JUMP * z."""
    d = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
    edges = np.zeros(d.shape, bool)
    for axis in (0, 1):
        diff = np.abs(np.diff(d, axis=axis))
        ref = np.fmin(np.delete(d, -1, axis=axis), np.delete(d, 0, axis=axis))
        jump = ~(diff <= EDGE_JUMP * ref)  # NaN counts as a jump
        if axis == 0:
            edges[:-1] |= jump
            edges[1:] |= jump
        else:
            edges[:, :-1] |= jump
            edges[:, 1:] |= jump
    return edges


def depth_mask(depth: np.ndarray, K: np.ndarray, box, plane: SupportPlane) -> np.ndarray:
    """(H, W) bool mask of the object in ``box`` from depth and the support plane (module doc).

    Args:
        depth: (H, W) float metres (NaN / <= 0 invalid); K: (3, 3); box: (4,) xyxy pixels.

    Returns:
        The mask (all False when no pixel of the box stands above the plane).
    """
    d = np.asarray(depth, np.float64)
    h, w = d.shape
    xa, ya, xb, yb = (int(v) for v in grown_box(box, w, h))
    mask = np.zeros((h, w), bool)
    if xb <= xa or yb <= ya:
        return mask
    k = np.asarray(K, np.float64).reshape(3, 3).copy()
    k[0, 2] -= xa
    k[1, 2] -= ya
    crop = d[ya:yb, xa:xb]
    pts = backproject_depth(crop, k).astype(np.float64)
    heights = pts @ plane.normal + plane.offset
    above = np.isfinite(heights) & (heights > OBJECT_MIN_HEIGHT) & ~_depth_edges(crop)
    count, labels = cv2.connectedComponents(above.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    bx = np.asarray(box, np.float64).reshape(4) - np.array([xa, ya, xa, ya])
    cx, cy, qw, qh = (bx[0] + bx[2]) / 2, (bx[1] + bx[3]) / 2, (bx[2] - bx[0]) / 4, (bx[3] - bx[1]) / 4
    core = labels[max(0, int(cy - qh)):max(1, int(np.ceil(cy + qh))), max(0, int(cx - qw)):max(1, int(np.ceil(cx + qw)))]
    votes = np.bincount(core.ravel(), minlength=count)
    votes[0] = 0
    if votes.max() == 0:
        return mask
    mask[ya:yb, xa:xb] = labels == int(np.argmax(votes))
    return mask


def grabcut_mask(rgb: np.ndarray, box, iterations: int = GRABCUT_ITERATIONS) -> np.ndarray:
    """(H, W) bool mask of the object in ``box`` by GrabCut on the colour image (no depth).

    Runs on the grown box's crop (so its cost follows the box, not the image).

    Args:
        rgb: (H, W, 3) uint8 RGB; box: (4,) xyxy pixels.
    """
    h, w = rgb.shape[:2]
    xa, ya, xb, yb = (int(v) for v in grown_box(box, w, h, GRABCUT_GROWTH))
    mask = np.zeros((h, w), bool)
    bx = pixel_ranges(box, w, h)[0] - np.array([xa, ya, xa, ya])
    rect = (int(bx[0]), int(bx[1]), int(bx[2] - bx[0]), int(bx[3] - bx[1]))
    if rect[2] < 2 or rect[3] < 2:
        return mask
    crop = np.ascontiguousarray(rgb[ya:yb, xa:xb, ::-1])  # GrabCut's colour model is BGR-agnostic
    gc = np.zeros(crop.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(crop, gc, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    mask[ya:yb, xa:xb] = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    return mask


def mask_box(mask: np.ndarray) -> Optional[np.ndarray]:
    """(4,) float32 tight ``[x1, y1, x2, y2]`` (exclusive x2/y2) of a bool mask, None if empty."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def mask_points(depth: np.ndarray, K: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(M, 3) float64 optical-frame points [m] of the valid depth pixels under ``mask``."""
    pts = backproject_depth(np.where(mask, depth, np.nan), K).reshape(-1, 3).astype(np.float64)
    return pts[np.isfinite(pts).all(axis=1)]


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


def segment(rgb: np.ndarray, box, depth: Optional[np.ndarray] = None, K: Optional[np.ndarray] = None,
            plane: Optional[SupportPlane] = None) -> np.ndarray:
    """The object's mask: :func:`depth_mask` when depth, a valid K and a plane are given and it
    finds the object, else :func:`grabcut_mask`.  (H, W) bool."""
    if depth is not None and plane is not None and K is not None and valid_intrinsics(K):
        mask = depth_mask(depth, K, box, plane)
        if mask.any():
            return mask
    return grabcut_mask(rgb, box)
