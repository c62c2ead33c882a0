"""ROS 2 messages of the target's instance mask, point cloud and oriented 3D boxes (for planners).

Every builder copies the *source image's* ``std_msgs/Header`` (stamp and optical ``frame_id``,
:func:`messages.copy_header`); points and poses are in that camera optical frame (REP 103:
x right, y down, z forward; metres).

* :func:`to_target_mask` — ``sensor_msgs/Image`` ``mono8``, full image size: 255 on the best
  detection's instance mask (:class:`segment.InstanceMask`), 0 elsewhere; all 0 when nothing
  is found or the target has no mask;
* :func:`to_target_cloud` — ``sensor_msgs/PointCloud2`` of the best detection's mask points
  with valid depth: fields ``x``, ``y``, ``z`` (FLOAT32, metres) and ``rgb`` (FLOAT32 holding
  the bits of ``uint32 0x00RRGGBB``, the packing of PCL's ``PointXYZRGB`` and of RViz's
  "RGB8" colour transformer), little-endian, ``height`` 1, ``point_step`` 16, ``is_dense``
  true; ``width`` 0 when there is no target or no depth;
* :func:`to_detection3d_array` — ``vision_msgs/Detection3DArray`` (Humble+ layout:
  ``bbox.center`` pose, ``bbox.size``, ``results[].hypothesis.class_id/score``,
  ``results[].pose.pose``, ``id`` = track id) of the detections with a 3D position, when
  ``vision_msgs`` is importable (:data:`messages.HAVE_VISION_MSGS`), else ``None``; the
  message classes can be passed in (tests use stand-ins where vision_msgs is absent).
"""

from __future__ import annotations

import array
from types import SimpleNamespace
from typing import Optional

import numpy as np
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from sensor_msgs.msg import Image, PointCloud2, PointField

from . import messages
from .messages import copy_header

__all__ = ["CLOUD_FIELDS", "pack_rgb", "to_target_mask", "to_target_cloud", "to_detection3d_array",
           "vision_msgs_types"]

#: ``(name, byte offset)`` of the FLOAT32 fields of :func:`to_target_cloud`'s points.
CLOUD_FIELDS = (("x", 0), ("y", 4), ("z", 8), ("rgb", 12))
_POINT = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(M, 3) uint8 RGB -> (M,) uint32 ``0x00RRGGBB`` (PCL's packing; stored as the bits of a float32)."""
    c = np.asarray(rgb, np.uint32).reshape(-1, 3)
    return (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]


def to_target_mask(result, header, image_size) -> Image:
    """``mono8`` mask of the best detection, full size (module docstring).

    Args:
        result: the frame's ``pipeline.FrameResult``.
        header: the source image's header (copied).
        image_size: ``(H, W)`` of the source image (pixels).
    """
    h, w = int(image_size[0]), int(image_size[1])
    best = result.best
    mask = getattr(best, "mask", None) if best is not None else None
    out = np.zeros((h, w), np.uint8)
    if mask is not None and tuple(mask.image_size) == (h, w):
        x, y = mask.offset
        ch, cw = mask.crop.shape
        out[y:y + ch, x:x + cw][mask.crop] = 255
    msg = Image(header=copy_header(header), height=h, width=w, encoding="mono8", is_bigendian=0, step=w)
    msg.data = array.array("B", out.tobytes())
    return msg


def to_target_cloud(result, header, rgb: np.ndarray) -> PointCloud2:
    """``PointCloud2`` (x, y, z, rgb) of the best detection's mask points (module docstring).

    Args:
        result: the frame's ``pipeline.FrameResult`` (points from ``best.mask.points``).
        header: the source image's header (copied).
        rgb: (H, W, 3) uint8 source image (the points' colours, at ``best.mask.pixels``).
    """
    best = result.best
    mask = getattr(best, "mask", None) if best is not None else None
    pts = None if mask is None else mask.points
    n = 0 if pts is None else int(len(pts))
    data = np.zeros(n, _POINT)
    if n:
        data["x"], data["y"], data["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
        u, v = mask.pixels[:, 0], mask.pixels[:, 1]
        data["rgb"] = pack_rgb(np.asarray(rgb)[v, u])
    msg = PointCloud2(header=copy_header(header), height=1, width=n, is_bigendian=False,
                      point_step=_POINT.itemsize, row_step=_POINT.itemsize * n, is_dense=True)
    msg.fields = [PointField(name=name, offset=off, datatype=PointField.FLOAT32, count=1) for name, off in CLOUD_FIELDS]
    msg.data = array.array("B", data.tobytes())
    return msg


def vision_msgs_types() -> Optional[SimpleNamespace]:
    """``Detection3DArray``, ``Detection3D`` and ``ObjectHypothesisWithPose`` of vision_msgs,
    or None when it is not importable."""
    if not messages.HAVE_VISION_MSGS:
        return None
    from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

    return SimpleNamespace(Detection3DArray=Detection3DArray, Detection3D=Detection3D,
                           ObjectHypothesisWithPose=ObjectHypothesisWithPose)


def _pose(det) -> Pose:
    px, py, pz = (float(v) for v in np.asarray(det.position, np.float64).reshape(3))
    q = getattr(det, "orientation", None)
    qx, qy, qz, qw = (0.0, 0.0, 0.0, 1.0) if q is None else (float(v) for v in np.asarray(q, np.float64).reshape(4))
    return Pose(position=Point(x=px, y=py, z=pz), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def to_detection3d_array(result, header, types: Optional[SimpleNamespace] = None):
    """``vision_msgs/Detection3DArray`` of the detections with a 3D position (best first).

    Per detection: ``bbox.center`` = position + orientation (identity when unknown),
    ``bbox.size`` = ``size`` [m] (zeros when unknown; ``[length, width, height]`` along the
    box axes when ``position_is_centre``), one hypothesis (``class_id`` = label, ``score`` =
    confidence, ``pose.pose`` = the bbox centre), ``id`` = the track id ("" when untracked).

    Args:
        result: the frame's ``pipeline.FrameResult``.
        header: the source image's header (copied to the array and every detection).
        types: the message classes (:func:`vision_msgs_types`; None = those of vision_msgs).

    Returns:
        The array, or None when ``types`` is None and vision_msgs is not importable.
    """
    types = types if types is not None else vision_msgs_types()
    if types is None:
        return None
    out = types.Detection3DArray()
    out.header = copy_header(header)
    for det in result.detections:
        if det.position is None:
            continue
        d = types.Detection3D()
        d.header = copy_header(header)
        d.bbox.center = _pose(det)
        sx, sy, sz = (0.0, 0.0, 0.0) if det.size is None else (float(v) for v in np.asarray(det.size).reshape(3))
        d.bbox.size = Vector3(x=sx, y=sy, z=sz)
        hyp = types.ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(det.label)
        hyp.hypothesis.score = float(det.confidence)
        hyp.pose.pose = _pose(det)
        d.results.append(hyp)
        d.id = str(int(det.track_id)) if getattr(det, "track_id", 0) else ""
        out.detections.append(d)
    return out
