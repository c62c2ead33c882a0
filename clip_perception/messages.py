"""ROS 2 message conversions for the clip_perception node (the only module besides ``node.py``
that imports ROS message types).

Every builder takes the *source image's* ``std_msgs/Header`` and copies it unchanged
(stamp and ``frame_id``): positions are in that camera optical frame (REP 103: x right,
y down, z forward; metres) and stamps are the capture time, so consumers can look up
TF at the right time (REP 105).  Nothing here reads a clock.

Conversions:

* :func:`to_detection_array` — ``FrameResult`` -> ``clip_perception/TargetDetectionArray``;
* :func:`add_target_frame`, :func:`to_target_pose` — the same positions in the node's
  ``target_frame`` (:mod:`clip_perception.transforms`); the only outputs whose header is not
  the image's (frame_id = ``target_frame``, the image's stamp);
* :func:`to_pose` — best detection with a 3D position -> ``geometry_msgs/PoseStamped``
  (the detection's orientation, identity when unknown; ``None`` when there is no 3D position);
* :func:`to_markers` — ``visualization_msgs/MarkerArray``: ``DELETEALL`` first, then a
  ``CUBE`` (the target's oriented box) and a ``TEXT_VIEW_FACING`` label;
* the target's mask, point cloud and ``vision_msgs/Detection3DArray``: :mod:`clip_perception.messages_3d`;
* :func:`to_debug_image` — ``sensor_msgs/Image`` ``rgb8`` drawn by
  :func:`clip_perception.visualize.draw_result`;
* :func:`to_detection2d_array` — ``vision_msgs/Detection2DArray`` (Humble+ layout) when
  ``vision_msgs`` is importable (:data:`HAVE_VISION_MSGS`), else ``None``;
* builders of the camera-side messages (the one copy; used by the sim camera, replay and
  :mod:`clip_perception.tools.feed`): :func:`rgb_to_image_msg`, :func:`depth_to_image_msg`,
  :func:`rgb_to_compressed_msg`, :func:`camera_info_msg`;
* stamps: :func:`stamp_to_ns`, :func:`ns_to_stamp`, :func:`stamp_is_zero`;
* CameraInfo -> K / camera model: :func:`camera_info_to_K`, :func:`camera_info_K_for_image` and
  :func:`camera_info_to_model`, defined ROS-free in :mod:`clip_perception.camera` (duck-typed
  fields) and re-exported here.
"""

from __future__ import annotations

import array
from typing import Optional

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Vector3
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from clip_perception.msg import TargetDetection, TargetDetectionArray

from .camera import camera_info_K_for_image, camera_info_to_K, camera_info_to_model  # re-exported (ROS-free)
from .decode import image_fields_from_depth, image_fields_from_rgb, stamp_to_ns  # stamp_to_ns: the one copy
from .types import Detection

try:  # optional: vision_msgs is not a dependency (absent from the pip wheels)
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    HAVE_VISION_MSGS = True
except ImportError:  # pragma: no cover - depends on the installation
    Detection2D = Detection2DArray = ObjectHypothesisWithPose = None
    HAVE_VISION_MSGS = False

__all__ = [
    "HAVE_VISION_MSGS",
    "stamp_to_ns",
    "ns_to_stamp",
    "stamp_is_zero",
    "copy_header",
    "camera_info_to_K",
    "camera_info_K_for_image",
    "camera_info_to_model",
    "detection_to_msg",
    "to_detection_array",
    "to_pose",
    "add_target_frame",
    "to_target_pose",
    "to_markers",
    "rgb_to_image_msg",
    "depth_to_image_msg",
    "rgb_to_compressed_msg",
    "camera_info_msg",
    "to_debug_image",
    "to_detection2d_array",
]

#: Marker size used for the target when its size is unknown (metres).
DEFAULT_MARKER_SIZE = 0.05
#: Minimum marker extent per axis so that a flat surface estimate stays visible (metres).
MIN_MARKER_EXTENT = 0.01


# ------------------------------------------------------------------ stamps / headers
def ns_to_stamp(ns: int) -> Time:
    """Integer nanoseconds (>= 0) -> ``builtin_interfaces/Time`` (``sec = ns // 1e9``,
    ``nanosec = ns % 1e9``, so ``nanosec`` is always in [0, 1e9))."""
    ns = int(ns)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def stamp_is_zero(stamp) -> bool:
    """True for the all-zero stamp (a driver that does not stamp its images)."""
    return int(stamp.sec) == 0 and int(stamp.nanosec) == 0


def copy_header(header: Header) -> Header:
    """An independent copy of ``header`` (stamp and frame_id unchanged)."""
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id)


# ------------------------------------------------------------------ detections
def detection_to_msg(det: Detection) -> TargetDetection:
    """One :class:`types.Detection` -> ``TargetDetection``.

    ROI = ``Detection.roi`` (whole pixels, x2/y2 exclusive -> width = x2 - x1).
    ``has_position`` False leaves ``position`` and ``size`` all zero (never a made-up
    point; consumers must check the flag).  ``color_score`` is -1 when the phrase named
    no colour.  ``proposal_roi`` = ``Detection.proposal_roi`` (the ranked proposal; ``roi`` is the
    instance mask's tight box), ``position_is_centre`` as in the detection, ``orientation`` =
    ``Detection.orientation`` (identity, w = 1, when unknown).
    """
    x, y, w, h = det.roi
    msg = TargetDetection()
    msg.label = str(det.label)
    msg.score = float(det.score)
    msg.confidence = float(det.confidence)
    msg.roi = RegionOfInterest(x_offset=max(0, x), y_offset=max(0, y), width=max(0, w), height=max(0, h),
                               do_rectify=False)
    msg.has_position = det.position is not None
    if det.position is not None:
        px, py, pz = (float(v) for v in np.asarray(det.position, dtype=np.float64).reshape(3))
        msg.position = Point(x=px, y=py, z=pz)
        if det.size is not None:
            sx, sy, sz = (float(v) for v in np.asarray(det.size, dtype=np.float64).reshape(3))
            msg.size = Vector3(x=sx, y=sy, z=sz)
    msg.clip_score = float(det.clip_score)
    msg.color_score = -1.0 if det.color_score is None else float(det.color_score)
    msg.track_id = int(det.track_id) & 0xFFFFFFFF  # tracking.py: uint32, 0 = not tracked
    px, py, pw, ph = det.proposal_roi
    msg.proposal_roi = RegionOfInterest(x_offset=max(0, px), y_offset=max(0, py), width=max(0, pw),
                                        height=max(0, ph), do_rectify=False)
    msg.position_is_centre = bool(det.position_is_centre and det.position is not None)
    msg.orientation = _quaternion(det.orientation)
    return msg


def _quaternion(q) -> Quaternion:
    """(4,) ``[x, y, z, w]`` -> ``geometry_msgs/Quaternion``; None -> identity."""
    if q is None:
        return Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)
    x, y, z, w = (float(v) for v in np.asarray(q, dtype=np.float64).reshape(4))
    return Quaternion(x=x, y=y, z=z, w=w)


def to_detection_array(result, header: Header, command_text: str) -> TargetDetectionArray:
    """``pipeline.FrameResult`` -> ``TargetDetectionArray``.

    Args:
        result: the frame's result (``command`` may be ``None``: action/target empty).
        header: the source image's header (copied).
        command_text: the raw command text as received.
    """
    msg = TargetDetectionArray()
    msg.header = copy_header(header)
    msg.command = str(command_text)
    msg.intent = str(result.intent)
    if result.command is not None:
        msg.action = str(result.command.action or "")
        msg.target = str(result.command.target or "")
    elif msg.intent == "stop":
        msg.action = "stop"
    msg.detections = [detection_to_msg(det) for det in result.detections]
    dest = result.command.destination if result.command is not None else None
    if dest is not None:
        msg.destination = str(dest.target)
        msg.destination_relation = str(result.command.destination_relation or "")
        msg.destination_detections = [detection_to_msg(det) for det in result.destination_detections]
        place = result.place
        if place is not None and place.position is not None:
            msg.has_place_position = True
            msg.place_position = _point(place.position)
    return msg


def _point(p) -> Point:
    """(3,) metres -> ``geometry_msgs/Point``."""
    x, y, z = (float(v) for v in np.asarray(p, dtype=np.float64).reshape(3))
    return Point(x=x, y=y, z=z)


def to_place_pose(result, header: Header, framed=None, target_frame: str = "") -> Optional[PoseStamped]:
    """The place point of a pick-and-place result as a ``PoseStamped`` (identity orientation:
    only the point is defined), or ``None`` when there is none.

    Without ``target_frame``: in the image's optical frame (``header`` copied).  With it: in
    ``target_frame`` from ``framed`` (:class:`transforms.FramedPositions`; stamp = the image's),
    and ``None`` when the transform is unknown for this frame (never a point in the wrong frame).
    """
    place = getattr(result, "place", None)
    if place is None or place.position is None:
        return None
    identity = Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)
    if not target_frame:
        return PoseStamped(header=copy_header(header), pose=Pose(position=_point(place.position), orientation=identity))
    if framed is None or framed.place is None:
        return None
    out_header = Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=str(framed.frame))
    return PoseStamped(header=out_header, pose=Pose(position=_point(framed.place), orientation=identity))


def to_pose(result, header: Header) -> Optional[PoseStamped]:
    """Best detection's 3D position and orientation as a ``PoseStamped`` (its ``orientation``:
    x = long axis, z = support-plane normal; identity when unknown), or ``None`` when nothing
    was found or the best detection has no position."""
    best = result.best
    if best is None or best.position is None:
        return None
    px, py, pz = (float(v) for v in np.asarray(best.position, dtype=np.float64).reshape(3))
    return PoseStamped(
        header=copy_header(header),
        pose=Pose(position=Point(x=px, y=py, z=pz), orientation=_quaternion(best.orientation)),
    )


def add_target_frame(msg: TargetDetectionArray, target_frame: str, framed) -> TargetDetectionArray:
    """Fill the ``target_frame`` fields of a :func:`to_detection_array` message (in place).

    Args:
        msg: the array built from the same result (detections in the result's order).
        target_frame: the node's ``target_frame`` parameter (copied to ``msg.target_frame``).
        framed: :class:`transforms.FramedPositions` of the result, or ``None`` when the
            transform is not known for this frame: every ``has_*target_position`` stays false.

    Returns:
        ``msg``.
    """
    msg.target_frame = str(target_frame)
    if framed is None:
        return msg
    for det_msg, pos in list(zip(msg.detections, framed.detections)) + list(
            zip(msg.destination_detections, framed.destinations)):
        if pos is not None and det_msg.has_position:
            det_msg.has_target_position = True
            det_msg.target_position = _point(pos)
    if framed.place is not None and msg.has_place_position:
        msg.has_place_target_position = True
        msg.place_target_position = _point(framed.place)
    return msg


def to_target_pose(result, header: Header, framed) -> Optional[PoseStamped]:
    """Best detection's pose in the target frame: ``header.frame_id = framed.frame``, stamp =
    the image's (``header.stamp``), position and orientation from ``framed``
    (:class:`transforms.FramedPositions`); ``None`` without a best 3D detection or without
    ``framed`` (transform unknown: never a pose in the wrong frame)."""
    best = result.best
    if framed is None or best is None or best.position is None or not framed.detections:
        return None
    pos, q = framed.detections[0], framed.orientation
    if pos is None or q is None:
        return None
    qx, qy, qz, qw = (float(v) for v in np.asarray(q, dtype=np.float64).reshape(4))
    out_header = Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=str(framed.frame))
    return PoseStamped(header=out_header, pose=Pose(position=_point(pos),
                                                    orientation=Quaternion(x=qx, y=qy, z=qz, w=qw)))


def to_markers(result, header: Header, ns: str = "clip_perception") -> MarkerArray:
    """RViz markers for the best 3D target.

    Always starts with a ``DELETEALL`` marker so the previous frame's markers vanish (also
    when nothing is found now).  With a 3D target: a translucent green ``CUBE``, the oriented box
    (pose = position + orientation, identity when unknown; scale = its size: ``[length, width,
    height]`` along the box axes for an object centre; :data:`DEFAULT_MARKER_SIZE` when unknown,
    each axis at least :data:`MIN_MARKER_EXTENT`), and a ``TEXT_VIEW_FACING`` label "red ball 0.87" above it.
    All markers carry ``header`` (the image's stamp and optical frame).
    """
    out = MarkerArray()
    clear = Marker(header=copy_header(header), ns=ns, id=0, action=Marker.DELETEALL)
    out.markers.append(clear)
    best = result.best
    if best is None or best.position is None:
        return out
    px, py, pz = (float(v) for v in np.asarray(best.position, dtype=np.float64).reshape(3))
    if best.size is not None:
        sx, sy, sz = (max(MIN_MARKER_EXTENT, float(v)) for v in np.asarray(best.size, dtype=np.float64).reshape(3))
    else:
        sx = sy = sz = DEFAULT_MARKER_SIZE
    identity = Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)
    shape = Marker(header=copy_header(header), ns=ns, id=1, type=Marker.CUBE, action=Marker.ADD)
    shape.pose = Pose(position=Point(x=px, y=py, z=pz), orientation=_quaternion(best.orientation))
    shape.scale = Vector3(x=sx, y=sy, z=sz)
    shape.color = ColorRGBA(r=0.0, g=0.9, b=0.0, a=0.6)
    shape.lifetime = Duration(sec=0, nanosec=0)
    text = Marker(header=copy_header(header), ns=ns, id=2, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
    # Optical frame: -y is up, so the label floats above the object.
    text.pose = Pose(position=Point(x=px, y=py - 0.5 * max(sx, sy, sz) - 0.03, z=pz), orientation=identity)
    text.scale = Vector3(x=0.0, y=0.0, z=0.04)  # text height (metres); x/y unused for text
    text.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    text.text = f"{best.label} {float(best.confidence):.2f}"
    out.markers.extend([shape, text])
    return out


# ------------------------------------------------------------------ images
def _image_msg(fields: dict, header: Optional[Header]) -> Image:
    """``sensor_msgs/Image`` from :mod:`clip_perception.decode` field dicts (data as ``array('B')``,
    which the generated setter takes without a per-byte check)."""
    data = fields.pop("data")
    msg = Image(header=copy_header(header) if header is not None else Header(), **fields)
    msg.data = array.array("B", data)
    return msg


def rgb_to_image_msg(rgb: np.ndarray, header: Optional[Header] = None, encoding: str = "rgb8") -> Image:
    """(H, W, 3) uint8 RGB -> ``sensor_msgs/Image`` (default ``rgb8``; also ``bgr8``, ``rgba8``,
    ``bgra8``, ``mono8``), step = bytes per row without padding, header copied.

    Raises:
        ValueError: wrong shape / dtype or unsupported encoding
            (:func:`clip_perception.decode.image_fields_from_rgb`).
    """
    return _image_msg(image_fields_from_rgb(rgb, encoding), header)


def depth_to_image_msg(depth_m: np.ndarray, header: Optional[Header] = None, encoding: str = "32FC1") -> Image:
    """(H, W) float depth in metres -> ``sensor_msgs/Image`` (REP 118), header copied.

    ``32FC1``: little-endian float32 metres, invalid (NaN / Inf / <= 0) written as NaN.
    ``16UC1``: uint16 millimetres (rounded), invalid and > 65.535 m written as 0.

    Raises:
        ValueError: wrong shape or unsupported encoding
            (:func:`clip_perception.decode.image_fields_from_depth`).
    """
    return _image_msg(image_fields_from_depth(depth_m, encoding), header)


def rgb_to_compressed_msg(rgb: np.ndarray, header: Optional[Header] = None, fmt: str = "jpeg",
                          jpeg_quality: int = 95) -> CompressedImage:
    """(H, W, 3) uint8 RGB -> ``sensor_msgs/CompressedImage`` as ``compressed_image_transport``
    writes it: format ``"rgb8; jpeg compressed bgr8"`` or ``"rgb8; png compressed bgr8"``
    (OpenCV ``imencode`` of the BGR image), header copied.

    Raises:
        ValueError: wrong shape / dtype, ``fmt`` not jpeg / png, encoder failure.
    """
    import cv2

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    codec = str(fmt).lower()
    if codec not in ("jpeg", "jpg", "png"):
        raise ValueError(f"fmt must be 'jpeg' or 'png', got {fmt!r}")
    codec = "jpeg" if codec == "jpg" else codec
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if codec == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if codec == "jpeg" else ".png", np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode the image as {codec}")
    msg = CompressedImage(header=copy_header(header) if header is not None else Header(),
                          format=f"rgb8; {codec} compressed bgr8")
    msg.data = array.array("B", buf.tobytes())
    return msg


def camera_info_msg(K: np.ndarray, width: int, height: int, header: Optional[Header] = None, *,
                    D: Optional[np.ndarray] = None, distortion_model: str = "plumb_bob") -> CameraInfo:
    """``sensor_msgs/CameraInfo`` for a camera with intrinsics ``K`` (3, 3) pixels:
    ``width`` x ``height`` pixels, R = I, P = [K | 0] (monocular, REP 104), ``d`` = ``D``
    (default five zeros: an ideal pinhole, what a Gazebo camera reports), no ROI, no
    binning; header copied.

    Raises:
        ValueError: K not 9 numbers.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.size != 9:
        raise ValueError(f"K must be (3, 3), got shape {K.shape}")
    K = K.reshape(3, 3)
    P = np.zeros((3, 4))
    P[:, :3] = K
    msg = CameraInfo(header=copy_header(header) if header is not None else Header(),
                     width=int(width), height=int(height), distortion_model=str(distortion_model))
    msg.d = [float(v) for v in (np.zeros(5) if D is None else np.asarray(D, dtype=np.float64).ravel())]
    msg.k = K.ravel().copy()
    msg.r = np.eye(3).ravel()
    msg.p = P.ravel()
    return msg


def to_debug_image(rgb: np.ndarray, result, header: Header) -> Image:
    """Debug view: proposals thin grey, the chosen target green, the others orange, and the
    command (or "no command") as title; ``rgb8`` with the source header."""
    from .visualize import draw_result

    if result.command is not None:
        title = f"{result.command.action} {result.command.target}".strip() + f": {result.summary()}"
    else:
        title = result.summary()
    drawn = draw_result(rgb, result.detections, proposals=result.proposals, title=title)
    return rgb_to_image_msg(drawn, header)


def to_detection2d_array(result, header: Header):
    """``vision_msgs/Detection2DArray`` (Humble+ layout: ``bbox.center.position.x/y``,
    ``bbox.size_x/size_y``, ``results[].hypothesis.class_id/score``), or ``None`` when
    ``vision_msgs`` is not importable.  Box centre in the edge convention
    ``((x1 + x2) / 2, (y1 + y2) / 2)`` pixels (the vision_msgs BoundingBox2D convention)."""
    if not HAVE_VISION_MSGS:
        return None
    out = Detection2DArray()
    out.header = copy_header(header)
    for det in result.detections:
        x1, y1, x2, y2 = (float(v) for v in np.asarray(det.box, dtype=np.float64).reshape(4))
        d = Detection2D()
        d.header = copy_header(header)
        d.bbox.center.position.x = (x1 + x2) / 2.0
        d.bbox.center.position.y = (y1 + y2) / 2.0
        d.bbox.size_x = x2 - x1
        d.bbox.size_y = y2 - y1
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(det.label)
        hyp.hypothesis.score = float(det.confidence)
        if det.position is not None:
            px, py, pz = (float(v) for v in np.asarray(det.position, dtype=np.float64).reshape(3))
            hyp.pose.pose.position = Point(x=px, y=py, z=pz)
            hyp.pose.pose.orientation.w = 1.0
        d.results.append(hyp)
        out.detections.append(d)
    return out
