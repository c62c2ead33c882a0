"""Where to put the picked object: the place point of a pick-and-place command (ROS-free).

Given the destination's box, the depth image (metres) and the colour camera's K, the
support surface (the table) is fitted as a plane and the destination's own 3D points are
the points in its box that stand above that plane.  Every point is in the camera optical
frame (REP 103: x right, y down, z forward), in metres.

Place point per relation (``command.PLACE_RELATIONS``):

* ``on`` — the centre of the destination's top: the middle of its footprint on the plane
  (the mid-range, 2nd to 98th percentile, of its points projected onto the plane along two
  in-plane axes), lifted along the plane normal to its top height (98th percentile of the
  points' heights above the plane);
* ``in`` — the centre of its opening: the same footprint centre at the rim height (the
  98th percentile height; for an open container the rim is its highest part);
* ``next_to``, ``left_of``, ``right_of``, ``in_front_of``, ``behind`` — a point on the
  support surface (height 0) beside the destination, at a clearance from its footprint
  centre of the destination's half extent in that direction + half the picked object's
  extent + ``margin``.  Directions are taken in the plane: left/right along the camera's
  x axis projected onto the plane, in front of = towards the camera, behind = away from
  it; ``next_to`` goes to the side of the picked object when its position is known (the
  shortest move), to the right otherwise.

Without depth, K, a support plane or enough destination points above it there is no place
point (``None`` with a reason), never a guessed one.

Sources: plane fit by RANSAC + total least squares (:func:`proposals.fit_plane_ransac`,
Fischler & Bolles 1981); point-to-plane height ``n . p + d`` with unit ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from .boxes import pixel_ranges
from .camera import backproject_depth, crop_camera, subsample_camera, valid_intrinsics
from .proposals import fit_plane_ransac

#: Relations with a place point, as parsed by ``command.py`` (normalised names).
PLACE_RELATIONS = ("in", "on", "next_to", "left_of", "right_of", "in_front_of", "behind")
#: Points closer than this to the support plane belong to the plane, not the object [m].
OBJECT_MIN_HEIGHT = 0.005
#: RANSAC inlier distance of the support plane [m] (a depth camera's noise at ~1 m).
PLANE_THRESHOLD = 0.01
#: Fewest destination points above the plane for a place point.
MIN_OBJECT_POINTS = 20
#: Subsampling stride of the depth image for the plane fit [pixels].
PLANE_STRIDE = 4


@dataclass(frozen=True)
class SupportPlane:
    """A plane ``n . p + d = 0`` in the optical frame; ``n`` (3,) float64 unit, pointing to
    the camera side (up, for a table seen from above); heights ``n . p + d`` in metres."""

    normal: np.ndarray
    offset: float

    def height(self, points: np.ndarray) -> np.ndarray:
        """(M,) float64 signed heights [m] of (M, 3) points above the plane."""
        return np.asarray(points, np.float64) @ self.normal + self.offset

    def project(self, points: np.ndarray) -> np.ndarray:
        """(M, 3) float64 feet of the (M, 3) points on the plane."""
        p = np.asarray(points, np.float64)
        return p - self.height(p)[:, None] * self.normal[None, :]

    def axes(self) -> Tuple[np.ndarray, np.ndarray]:
        """Two unit in-plane axes: ``right`` (the optical x axis projected onto the plane)
        and ``towards`` the camera's foot on the plane (right x normal, sign chosen so)."""
        right = _unit(np.array([1.0, 0.0, 0.0]) - self.normal[0] * self.normal)
        away = np.cross(self.normal, right)  # in-plane, orthogonal to right
        if float(away @ np.array([0.0, 0.0, 1.0])) < 0:  # make it point away from the camera
            away = -away
        return right, -away


@dataclass(frozen=True)
class PlaceResult:
    """The answer for the place part of a command.

    Attributes:
        position: (3,) float64 metres in the optical frame, or ``None`` with ``reason``.
        relation: the relation it answers (one of :data:`PLACE_RELATIONS`).
        reason: why there is no position ("" when there is one).
    """

    position: Optional[np.ndarray]
    relation: str
    reason: str = ""


def fit_support_plane(depth: np.ndarray, K: np.ndarray, stride: int = PLANE_STRIDE) -> Optional[SupportPlane]:
    """The dominant plane of the depth image (the table the objects stand on).

    Args:
        depth: (H, W) float metres along the optical axis, NaN / <= 0 invalid.
        K: (3, 3) intrinsics of ``depth`` or a :class:`camera.CameraModel` (distortion removed).
        stride: pixel subsampling of the fit.

    Returns:
        :class:`SupportPlane` with its normal towards the camera, or ``None`` when K is
        invalid or fewer than 3 valid pixels remain.
    """
    if not valid_intrinsics(K):
        return None
    sub = np.asarray(depth, np.float64)[::stride, ::stride]
    points = backproject_depth(sub, subsample_camera(K, stride)).reshape(-1, 3).astype(np.float64)
    points = points[np.isfinite(points).all(axis=1)]
    fit = fit_plane_ransac(points, threshold=PLANE_THRESHOLD)
    if fit is None:
        return None
    normal, offset, _ = fit
    return SupportPlane(normal=np.asarray(normal, np.float64), offset=float(offset))


def object_points(depth: np.ndarray, K: np.ndarray, box, plane: SupportPlane,
                  min_height: float = OBJECT_MIN_HEIGHT) -> np.ndarray:
    """(M, 3) float64 optical-frame points [m] inside ``box`` standing above ``plane``.

    Args:
        depth: (H, W) float metres; K: (3, 3) intrinsics or a ``CameraModel``; box: (4,) xyxy pixels (exclusive
        x2/y2, rounded with :func:`boxes.pixel_ranges`).
        min_height: points lower than this above the plane are the support, not the object.
    """
    d = np.asarray(depth, np.float64)
    xa, ya, xb, yb = (int(v) for v in pixel_ranges(box, d.shape[1], d.shape[0])[0])
    if xb <= xa or yb <= ya:
        return np.zeros((0, 3))
    k = crop_camera(K, xa, ya)  # the crop's own principal point (distortion kept)
    pts = backproject_depth(d[ya:yb, xa:xb], k).reshape(-1, 3).astype(np.float64)
    pts = pts[np.isfinite(pts).all(axis=1)]
    return pts[plane.height(pts) > min_height]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def footprint(points: np.ndarray, plane: SupportPlane) -> Tuple[np.ndarray, np.ndarray, float]:
    """Footprint centre (3,) on the plane, its half extents (2,) along ``plane.axes()``
    (right, towards the camera) [m], and the top height [m] (98th percentile)."""
    right, towards = plane.axes()
    feet = plane.project(points)
    a, b = feet @ right, feet @ towards
    (a_lo, a_hi), (b_lo, b_hi) = np.percentile(a, [2, 98]), np.percentile(b, [2, 98])
    origin = plane.project(np.zeros((1, 3)))[0]
    base = origin - (origin @ right) * right - (origin @ towards) * towards
    centre = base + 0.5 * (a_lo + a_hi) * right + 0.5 * (b_lo + b_hi) * towards
    top = float(np.percentile(plane.height(points), 98))
    return centre, np.array([0.5 * (a_hi - a_lo), 0.5 * (b_hi - b_lo)]), top


def place_point(relation: str, dest_points: np.ndarray, plane: SupportPlane,
                picked_half_extent: float = 0.0, margin: float = 0.03,
                picked_position: Optional[np.ndarray] = None) -> PlaceResult:
    """The place point for ``relation`` relative to the destination (module docstring).

    Args:
        relation: one of :data:`PLACE_RELATIONS`.
        dest_points: (M, 3) destination points above the plane (:func:`object_points`).
        plane: the support plane.
        picked_half_extent: half the picked object's horizontal extent [m] (side relations).
        margin: extra clearance [m] (side relations).
        picked_position: (3,) the picked object's position, for ``next_to``'s side.

    Returns:
        :class:`PlaceResult`; ``position`` is None (with a reason) for too few points.

    Raises:
        ValueError: unknown relation.
    """
    if relation not in PLACE_RELATIONS:
        raise ValueError(f"unknown place relation {relation!r}; expected one of {PLACE_RELATIONS}")
    if len(dest_points) < MIN_OBJECT_POINTS:
        return PlaceResult(None, relation, "the destination has too few depth points above the table")
    centre, half, top = footprint(dest_points, plane)
    if relation in ("on", "in"):
        return PlaceResult(centre + top * plane.normal, relation)
    right, towards = plane.axes()
    if relation == "next_to":
        side = 1.0
        if picked_position is not None:
            side = 1.0 if float((np.asarray(picked_position, np.float64) - centre) @ right) >= 0 else -1.0
        direction, reach = side * right, half[0]
    else:
        direction, reach = {"left_of": (-right, half[0]), "right_of": (right, half[0]),
                            "in_front_of": (towards, half[1]), "behind": (-towards, half[1])}[relation]
    clearance = reach + max(0.0, float(picked_half_extent)) + max(0.0, float(margin))
    return PlaceResult(centre + clearance * direction, relation)


def locate_place(relation: str, depth: Optional[np.ndarray], K: Optional[np.ndarray], dest_box,
                 picked_half_extent: float = 0.0, margin: float = 0.03,
                 picked_position: Optional[np.ndarray] = None,
                 plane: Optional[SupportPlane] = None) -> PlaceResult:
    """:func:`place_point` from the depth image: fits the plane (unless given) and takes the
    destination's points in ``dest_box``.  No depth / K / plane -> ``position`` None."""
    if depth is None or K is None or not valid_intrinsics(K):
        return PlaceResult(None, relation, "no depth or camera intrinsics: no place point")
    plane = plane if plane is not None else fit_support_plane(depth, K)
    if plane is None:
        return PlaceResult(None, relation, "no support surface found in the depth image")
    points = object_points(depth, K, dest_box, plane)
    return place_point(relation, points, plane, picked_half_extent, margin, picked_position)
