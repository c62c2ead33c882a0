"""Rigid transforms between frames: detections in the planner's frame (``target_frame``), ROS-free.

Conventions:

* Frames follow REP 103 (https://www.ros.org/reps/rep-0103.html): metres, right-handed;
  a camera's optical frame is x right, y down, z forward; a robot base is x forward, y left,
  z up.
* A :class:`RigidTransform` ``T`` named "target <- source" maps a point given in the source
  frame to the target frame: ``p_target = R @ p_source + t`` — the transform that
  ``tf2_ros.Buffer.lookup_transform(target, source, time)`` returns, and what
  ``static_transform_publisher x y z qx qy qz qw target source`` publishes (its translation is
  the source frame's origin in the target frame, its rotation the source axes in the target
  frame).
* Quaternions are ``(x, y, z, w)`` (``geometry_msgs/Quaternion`` order), Hamilton product,
  unit length; the rotation matrix of a unit quaternion is the standard one (Shoemake,
  "Animating rotation with quaternion curves", SIGGRAPH 1985; also
  https://en.wikipedia.org/wiki/Quaternions_and_spatial_rotation#Quaternion-derived_rotation_matrix).

Sources of a transform (the :class:`TransformLookup` protocol,
``lookup(target_frame, source_frame, stamp_ns) -> (RigidTransform or None, reason)``):

* :class:`StaticTransform` — fixed camera extrinsics (the ``camera_extrinsics`` parameter,
  :func:`parse_extrinsics`); valid at every stamp;
* :class:`Tf2Lookup` — a thin adapter over ``tf2_ros.Buffer`` + ``TransformListener``,
  imported lazily (tf2_ros is not on PyPI): looked up at the *image* stamp (never "latest":
  a zero stamp is refused) with a short timeout; a missing, late or extrapolated transform
  is ``None`` with tf2's message.

:func:`express_result` turns a frame's camera-frame positions (detections, destination
detections, place point, the best detection's orientation) into the target frame.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence, Tuple

import numpy as np

__all__ = [
    "UNIT_TOLERANCE",
    "RigidTransform",
    "quaternion_to_matrix",
    "quaternion_multiply",
    "unit_quaternion",
    "parse_extrinsics",
    "TransformLookup",
    "StaticTransform",
    "Tf2Lookup",
    "make_lookup",
    "FramedPositions",
    "express_result",
]

#: A quaternion whose norm differs from 1 by more than this is refused (not silently normalised):
#: it is a typo more often than rounding; within it the quaternion is normalised.
UNIT_TOLERANCE = 1e-3


def unit_quaternion(q, tolerance: float = UNIT_TOLERANCE) -> np.ndarray:
    """``q`` (4 numbers, ``x, y, z, w``) as a unit (4,) float64 quaternion.

    Raises:
        ValueError: not 4 finite numbers, or ``| |q| - 1 | > tolerance``.
    """
    try:
        v = np.asarray(q, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"quaternion must be 4 numbers (x, y, z, w), got {q!r}") from exc
    if v.size != 4 or not np.all(np.isfinite(v)):
        raise ValueError(f"quaternion must be 4 finite numbers (x, y, z, w), got {q!r}")
    norm = float(np.linalg.norm(v))
    if abs(norm - 1.0) > tolerance:
        raise ValueError(f"quaternion (x, y, z, w) = {v.tolist()} is not unit length (norm {norm:.6g})")
    return v / norm


def quaternion_to_matrix(q) -> np.ndarray:
    """(3, 3) float64 rotation matrix of a unit quaternion ``(x, y, z, w)`` (module docstring).

    Raises:
        ValueError: see :func:`unit_quaternion`.
    """
    x, y, z, w = unit_quaternion(q)
    return np.array([
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - z * w), 2.0 * (x * z + y * w)],
        [2.0 * (x * y + z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - x * w)],
        [2.0 * (x * z - y * w), 2.0 * (y * z + x * w), 1.0 - 2.0 * (x * x + y * y)],
    ])


def quaternion_multiply(a, b) -> np.ndarray:
    """Hamilton product ``a * b`` of ``(x, y, z, w)`` quaternions, (4,) float64: the rotation
    ``b`` followed by ``a`` (``R(a * b) = R(a) @ R(b)``)."""
    ax, ay, az, aw = (float(v) for v in np.asarray(a, dtype=np.float64).reshape(4))
    bx, by, bz, bw = (float(v) for v in np.asarray(b, dtype=np.float64).reshape(4))
    return np.array([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ])


@dataclass(frozen=True)
class RigidTransform:
    """Rotation + translation "target <- source": ``p_target = R @ p_source + t`` (module docstring).

    Attributes:
        translation: (3,) float64 metres, the source origin in the target frame.
        rotation: (4,) float64 unit quaternion ``(x, y, z, w)``, the source axes in the target frame.
        target_frame, source_frame: frame names ("" = not named).

    Raises:
        ValueError: (at construction) a non-finite translation or a non-unit quaternion.
    """

    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    rotation: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 0.0, 1.0]))
    target_frame: str = ""
    source_frame: str = ""

    def __post_init__(self) -> None:
        t = np.asarray(self.translation, dtype=np.float64).reshape(-1).copy()
        if t.size != 3 or not np.all(np.isfinite(t)):
            raise ValueError(f"translation must be 3 finite numbers (metres), got {self.translation!r}")
        object.__setattr__(self, "translation", t)
        object.__setattr__(self, "rotation", unit_quaternion(self.rotation))

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) float64 rotation matrix ``R``."""
        return quaternion_to_matrix(self.rotation)

    def apply(self, points) -> np.ndarray:
        """``R @ p + t`` for (3,) or (..., 3) points in metres; float64, same shape."""
        p = np.asarray(points, dtype=np.float64)
        return p @ self.matrix.T + self.translation

    def rotate(self, quaternion) -> np.ndarray:
        """An orientation ``(x, y, z, w)`` given in the source frame, expressed in the target frame
        (``rotation * quaternion``), (4,) float64 unit."""
        q = quaternion_multiply(self.rotation, unit_quaternion(quaternion))
        return q / np.linalg.norm(q)

    def compose(self, other: "RigidTransform") -> "RigidTransform":
        """``self`` (A <- B) after ``other`` (B <- C): the transform A <- C."""
        return RigidTransform(self.apply(other.translation), quaternion_multiply(self.rotation, other.rotation),
                              self.target_frame, other.source_frame)

    def inverse(self) -> "RigidTransform":
        """The transform source <- target: ``R^T (p - t)``."""
        conj = self.rotation * np.array([-1.0, -1.0, -1.0, 1.0])
        return RigidTransform(-(quaternion_to_matrix(conj) @ self.translation), conj,
                              self.source_frame, self.target_frame)


_SEPARATORS = re.compile(r"[\s,;]+")


def parse_extrinsics(text: str, target_frame: str = "", source_frame: str = "") -> RigidTransform:
    """The ``camera_extrinsics`` parameter: ``"x y z qx qy qz qw"`` (spaces or commas; metres and a
    unit quaternion, the order of ``static_transform_publisher``), the camera optical frame's pose
    in ``target_frame``, as a :class:`RigidTransform` target <- camera.

    Raises:
        ValueError: not 7 finite numbers, or the quaternion is not unit length within
            :data:`UNIT_TOLERANCE` (the message says which).
    """
    items = [item for item in _SEPARATORS.split(str(text).strip()) if item]
    try:
        values = [float(item) for item in items]
    except ValueError:
        values = []
    if len(values) != 7 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"camera_extrinsics must be 7 numbers 'x y z qx qy qz qw' (metres, unit quaternion), "
                         f"got {text!r}")
    return RigidTransform(values[:3], values[3:], target_frame, source_frame)


class TransformLookup(Protocol):
    """Where transforms come from (:class:`StaticTransform`, :class:`Tf2Lookup`)."""

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int) -> Tuple[Optional[RigidTransform], str]:
        """The transform target <- source valid at ``stamp_ns`` (ns since the epoch of the image
        clock), or ``(None, reason)``."""

    def close(self) -> None:
        """Release what the lookup holds (subscriptions)."""


class StaticTransform:
    """Fixed extrinsics: one :class:`RigidTransform` target <- camera, valid at every stamp.

    Args:
        transform: the transform; its ``target_frame`` is the only target it answers for.
        source_frame: the one camera frame it describes; "" = whatever frame the image has
            (a node with one camera).
    """

    def __init__(self, transform: RigidTransform, source_frame: str = "") -> None:
        self.transform = transform
        self.source_frame = str(source_frame)

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int) -> Tuple[Optional[RigidTransform], str]:
        """``(transform, "")`` for ``target_frame`` <- the camera; ``None`` with the reason for
        another target or camera frame (the stamp is not used: the extrinsics are fixed)."""
        if target_frame != self.transform.target_frame:
            return None, (f"camera_extrinsics give {self.transform.target_frame or '(unnamed)'}, "
                          f"not {target_frame}")
        if self.source_frame and source_frame != self.source_frame:
            return None, f"camera_extrinsics describe frame {self.source_frame}, not {source_frame}"
        t = self.transform
        return RigidTransform(t.translation, t.rotation, target_frame, source_frame), ""

    def close(self) -> None:
        """Nothing to release."""


def _from_transform_msg(msg, target_frame: str, source_frame: str) -> RigidTransform:
    """``geometry_msgs/TransformStamped``-like (duck-typed ``transform.translation`` /
    ``transform.rotation``) -> :class:`RigidTransform`."""
    tr, rot = msg.transform.translation, msg.transform.rotation
    return RigidTransform([tr.x, tr.y, tr.z], [rot.x, rot.y, rot.z, rot.w], target_frame, source_frame)


class Tf2Lookup:
    """``tf2_ros.Buffer`` + ``TransformListener`` on ``node``, looked up at the image stamp.

    Args:
        node: the rclpy node the listener subscribes ``/tf``, ``/tf_static`` with.
        timeout_s: how long one lookup may wait for a transform that has not arrived yet [s].

    Raises:
        ImportError: ``tf2_ros`` is not installed (:func:`make_lookup` checks first).
    """

    def __init__(self, node, timeout_s: float) -> None:
        import tf2_ros  # lazy: not on PyPI, absent from the pip wheels
        from rclpy.duration import Duration

        self._buffer = tf2_ros.Buffer()
        self._listener = tf2_ros.TransformListener(self._buffer, node)
        self._timeout = Duration(nanoseconds=int(round(float(timeout_s) * 1e9)))

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int) -> Tuple[Optional[RigidTransform], str]:
        """The transform at ``stamp_ns``; ``None`` with tf2's message when it is missing, late or
        would need extrapolation, and for a zero stamp (tf2 would answer "latest")."""
        if int(stamp_ns) <= 0:
            return None, "the image stamp is zero: no transform at the image time"
        from rclpy.time import Time

        try:
            msg = self._buffer.lookup_transform(target_frame, source_frame, Time(nanoseconds=int(stamp_ns)),
                                                timeout=self._timeout)
        except Exception as exc:  # tf2 LookupException / ConnectivityException / ExtrapolationException
            return None, f"tf2: {type(exc).__name__}: {exc}"
        try:
            return _from_transform_msg(msg, target_frame, source_frame), ""
        except ValueError as exc:
            return None, f"tf2 gave an invalid transform: {exc}"

    def close(self) -> None:
        """Unsubscribe the listener."""
        listener, self._listener = self._listener, None
        if listener is not None and hasattr(listener, "unregister"):
            listener.unregister()


def make_lookup(node, target_frame: str, extrinsics: str, timeout_s: float, cameras: int = 1
                ) -> Tuple[Optional[TransformLookup], str]:
    """The transform source for ``target_frame``: :class:`StaticTransform` from ``extrinsics``
    (the ``camera_extrinsics`` parameter) when given, else :class:`Tf2Lookup` when ``tf2_ros``
    is importable, else none.

    Args:
        node: the rclpy node (for tf2 only).
        target_frame: the planner's frame ("" = off: ``(None, "")``).
        extrinsics: ``"x y z qx qy qz qw"`` or "" (:func:`parse_extrinsics`).
        timeout_s: tf2 lookup timeout [s].
        cameras: cameras served by the node; static extrinsics describe one camera, so with
            more than one they are refused.

    Returns:
        ``(lookup, description)`` or ``(None, reason)``.

    Raises:
        ValueError: invalid ``extrinsics`` (validated earlier by the parameter table).
    """
    if not target_frame:
        return None, ""
    if extrinsics.strip():
        if cameras > 1:
            return None, (f"camera_extrinsics describe one camera but the node serves {cameras}: "
                          "publish their transforms on /tf (tf2) instead")
        transform = parse_extrinsics(extrinsics, target_frame)
        return StaticTransform(transform), f"static camera_extrinsics to {target_frame}"
    try:
        return Tf2Lookup(node, timeout_s), f"tf2 ({target_frame} <- image frame at the image stamp)"
    except ImportError:
        return None, "tf2_ros is not installed and camera_extrinsics is empty: no transform source"


@dataclass
class FramedPositions:
    """One frame's positions in the target frame (``None`` where the camera-frame value is ``None``).

    Attributes:
        frame: the target frame.
        detections: (3,) float64 metres per ``result.detections`` entry, in order.
        destinations: (3,) per ``result.destination_detections`` entry.
        place: (3,) the place point (``result.place.position``), or ``None``.
        orientation: (4,) ``(x, y, z, w)`` of the best detection in the target frame (its
            ``orientation`` when it has one, else the camera frame's identity), or ``None``
            when the best detection has no position.
    """

    frame: str
    detections: list
    destinations: list
    place: Optional[np.ndarray]
    orientation: Optional[np.ndarray]


def _moved(transform: RigidTransform, position) -> Optional[np.ndarray]:
    return None if position is None else transform.apply(np.asarray(position, dtype=np.float64).reshape(3))


def express_result(result, transform: RigidTransform) -> FramedPositions:
    """The camera-frame positions of ``result`` (a :class:`pipeline.FrameResult`; duck-typed
    ``detections``, optional ``destination_detections``, ``place``, per-detection optional
    ``orientation``) in ``transform.target_frame``."""
    dets: Sequence = list(getattr(result, "detections", []) or [])
    dests: Sequence = list(getattr(result, "destination_detections", []) or [])
    place = getattr(result, "place", None)
    orientation = None
    best = dets[0] if dets else None
    if best is not None and best.position is not None:
        own = getattr(best, "orientation", None)
        orientation = transform.rotate(own if own is not None else (0.0, 0.0, 0.0, 1.0))
    return FramedPositions(
        frame=transform.target_frame,
        detections=[_moved(transform, d.position) for d in dets],
        destinations=[_moved(transform, d.position) for d in dests],
        place=_moved(transform, getattr(place, "position", None)),
        orientation=orientation,
    )
