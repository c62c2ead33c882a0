"""ROS 2 node that publishes a simulated RGB-D camera (MuJoCo scene).

It behaves like a Gazebo camera bridged with ``ros_gz_bridge``:

* ``image`` (sensor_msgs/Image, ``rgb8``),
* ``depth`` (sensor_msgs/Image, ``32FC1`` metres, NaN = no return),
* ``camera_info`` (sensor_msgs/CameraInfo: true K, P = [K | 0], R = I,
  ``plumb_bob`` with zero D),

all with the same ``header.frame_id`` (parameter ``frame_id``) and the same
``header.stamp`` per frame, taken from simulated time that starts at
``start_time`` seconds and advances ``1 / rate_hz`` per frame.  ``/clock``
(rosgraph_msgs/Clock) carries that simulated time for ``use_sim_time``
consumers, and ``ground_truth`` (std_msgs/String, JSON, transient-local
"latched") carries the object list of :mod:`clip_perception.sim.scene`.

The scene is static: it is rendered once and the same pixels are republished,
unless ``rerender`` is true (render every frame) or ``relayout_every`` > 0
(a new seeded layout, ``seed + k``, every that many frames).

Parameters: ``rate_hz`` (5.0), ``width`` (640), ``height`` (480), ``seed`` (0),
``num_objects`` (6), ``publish_clock`` (true), ``qos`` (``sensor_data`` =
best effort, keep last 5 | ``reliable`` = reliable, keep last 10),
``frame_id`` (``sim_camera_color_optical_frame``), ``fovy`` (45.0 deg),
``camera_distance`` (0.75 m), ``camera_pitch_deg`` (50.0), ``start_time``
(1000.0 s), ``rerender`` (false), ``relayout_every`` (0).

The timer runs on the steady (wall) clock, so the node works whether or not
it is itself given ``use_sim_time``.
"""

from __future__ import annotations

import array
import json
import sys
from typing import Optional

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from builtin_interfaces.msg import Time
from rcl_interfaces.msg import ParameterDescriptor
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from ..tools.executables import run_single_threaded, spin_while

__all__ = [
    "SimCameraNode",
    "main",
    "make_image_msg",
    "make_depth_msg",
    "make_camera_info_msg",
    "stamp_from_ns",
    "qos_from_name",
]


# ----------------------------------------------------------------- messages
def stamp_from_ns(ns: int) -> Time:
    """builtin_interfaces/Time from integer nanoseconds."""
    ns = int(ns)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def make_image_msg(rgb: np.ndarray, header: Optional[Header] = None) -> Image:
    """sensor_msgs/Image ``rgb8`` from an (H, W, 3) uint8 RGB array.

    Raises:
        ValueError: wrong shape or dtype.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = array.array("B", np.ascontiguousarray(rgb).tobytes())
    return msg


def make_depth_msg(depth_m: np.ndarray, header: Optional[Header] = None, encoding: str = "32FC1") -> Image:
    """sensor_msgs/Image depth from an (H, W) float array in metres.

    ``32FC1``: little-endian float32 metres, NaN kept (REP 118).  ``16UC1``:
    uint16 millimetres, NaN / non-positive / out of range written as 0.

    Raises:
        ValueError: wrong shape or unsupported encoding.
    """
    depth_m = np.asarray(depth_m)
    if depth_m.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth_m.shape}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(depth_m.shape[0]), int(depth_m.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    if encoding == "32FC1":
        data = depth_m.astype("<f4")
        msg.step = msg.width * 4
    elif encoding == "16UC1":
        mm = np.where(np.isfinite(depth_m), np.round(depth_m.astype(np.float64) * 1000.0), 0.0)
        mm[(mm <= 0) | (mm > 65535)] = 0
        data = mm.astype("<u2")
        msg.step = msg.width * 2
    else:
        raise ValueError(f"unsupported depth encoding {encoding!r} (32FC1 or 16UC1)")
    msg.data = array.array("B", np.ascontiguousarray(data).tobytes())
    return msg


def make_camera_info_msg(K: np.ndarray, width: int, height: int, header: Optional[Header] = None) -> CameraInfo:
    """sensor_msgs/CameraInfo for an ideal pinhole: K, R = I, P = [K | 0],
    ``plumb_bob`` with D = 0 (what a Gazebo camera reports)."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = K.ravel().copy()
    msg.r = np.eye(3).ravel()
    P = np.zeros((3, 4))
    P[:, :3] = K
    msg.p = P.ravel()
    return msg


def qos_from_name(name: str) -> QoSProfile:
    """``sensor_data`` / ``best_effort`` -> rclpy's sensor-data profile (best
    effort, keep last 5); ``reliable`` -> reliable, keep last 10, volatile.

    Raises:
        ValueError: unknown name.
    """
    key = str(name).strip().lower()
    if key in ("sensor_data", "best_effort", "sensor"):
        return qos_profile_sensor_data
    if key in ("reliable", "default"):
        return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    raise ValueError(f"unknown qos {name!r}: use 'sensor_data' or 'reliable'")


LATCHED_QOS = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)
CLOCK_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)


# --------------------------------------------------------------------- node
class SimCameraNode(Node):
    """Publishes a MuJoCo table-top scene as an RGB-D camera (see module doc).

    Args:
        node_name: ROS node name.
        autostart: start the publishing timer (tests pass False and call
            :meth:`step` themselves).
        **node_kwargs: passed to ``rclpy.node.Node`` (``context``,
            ``parameter_overrides``, ``namespace`` ...).

    Raises:
        ValueError: invalid parameter values (rate <= 0, unknown qos ...).
    """

    def __init__(self, node_name: str = "sim_camera", *, autostart: bool = True, **node_kwargs) -> None:
        super().__init__(node_name, **node_kwargs)

        def p(name, default, desc):
            return self.declare_parameter(name, default, ParameterDescriptor(description=desc)).value

        self.rate_hz = float(p("rate_hz", 5.0, "frames per second of simulated (and wall) time"))
        self.width = int(p("width", 640, "image width (pixels)"))
        self.height = int(p("height", 480, "image height (pixels)"))
        self.seed = int(p("seed", 0, "layout seed"))
        self.num_objects = int(p("num_objects", 6, "number of objects on the table"))
        self.publish_clock = bool(p("publish_clock", True, "publish /clock with simulated time"))
        qos_name = str(p("qos", "sensor_data", "sensor_data (best effort) | reliable"))
        self.frame_id = str(p("frame_id", "sim_camera_color_optical_frame", "header.frame_id of all camera topics"))
        self.fovy = float(p("fovy", 45.0, "vertical field of view (degrees)"))
        self.camera_distance = float(p("camera_distance", 0.75, "camera to table centre (metres)"))
        self.camera_pitch_deg = float(p("camera_pitch_deg", 50.0, "camera pitch below horizontal (degrees)"))
        start_time = float(p("start_time", 1000.0, "simulated time of the first frame (seconds)"))
        self.rerender = bool(p("rerender", False, "render every frame instead of republishing"))
        self.relayout_every = int(p("relayout_every", 0, "new seeded layout every N frames (0 = never)"))
        if self.rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"width/height must be > 0, got {self.width}x{self.height}")
        qos = qos_from_name(qos_name)

        self._period_ns = int(round(1e9 / self.rate_hz))
        self._sim_ns = int(round(start_time * 1e9))
        self._frame_count = 0
        self._layout = 0
        self._scene = None
        self._frame = None

        self.image_pub = self.create_publisher(Image, "image", qos)
        self.depth_pub = self.create_publisher(Image, "depth", qos)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
        self.gt_pub = self.create_publisher(String, "ground_truth", LATCHED_QOS)
        self.clock_pub = self.create_publisher(ClockMsg, "/clock", CLOCK_QOS) if self.publish_clock else None

        self._new_layout(self.seed)
        self._timer = None
        if autostart:
            self._timer = self.create_timer(1.0 / self.rate_hz, self.step, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f"sim camera {self.width}x{self.height} @ {self.rate_hz:g} Hz, seed {self.seed}, "
            f"{len(self._frame.objects)} objects visible: {', '.join(o.name for o in self._frame.objects)}"
        )

    # ------------------------------------------------------------ internals
    def _new_layout(self, seed: int) -> None:
        from .scene import make_scene  # lazy: MuJoCo only when the node is built

        if self._scene is not None:
            self._scene.close()
        self._scene = make_scene(
            seed=seed,
            num_objects=self.num_objects,
            width=self.width,
            height=self.height,
            fovy=self.fovy,
            camera_distance=self.camera_distance,
            camera_pitch_deg=self.camera_pitch_deg,
            frame_id=self.frame_id,
        )
        self._layout_seed = seed
        self._render()
        gt = self._frame.to_json_dict()
        gt.update(
            {
                "seed": seed,
                "layout": self._layout,
                "first_stamp": {"sec": self._sim_ns // 1_000_000_000, "nanosec": self._sim_ns % 1_000_000_000},
                "camera": {
                    "fovy_deg": self.fovy,
                    "distance_m": self.camera_distance,
                    "pitch_deg": self.camera_pitch_deg,
                },
            }
        )
        self.gt_pub.publish(String(data=json.dumps(gt)))

    def _render(self) -> None:
        self._frame = self._scene.render()
        self._image_msg = make_image_msg(self._frame.rgb, Header(frame_id=self.frame_id))
        self._depth_msg = make_depth_msg(self._frame.depth, Header(frame_id=self.frame_id))
        self._info_msg = make_camera_info_msg(self._frame.K, self.width, self.height, Header(frame_id=self.frame_id))

    # --------------------------------------------------------------- public
    @property
    def frame(self):
        """The current :class:`clip_perception.sim.scene.Frame` (ground truth)."""
        return self._frame

    @property
    def sim_time_ns(self) -> int:
        """Simulated time (ns) of the next frame to be published."""
        return self._sim_ns

    def step(self) -> None:
        """Publish one frame (clock, image, depth, camera_info) at the current
        simulated time, then advance it by ``1 / rate_hz``."""
        if self.relayout_every > 0 and self._frame_count > 0 and self._frame_count % self.relayout_every == 0:
            self._layout += 1
            self._new_layout(self.seed + self._layout)
        elif self.rerender and self._frame_count > 0:
            self._render()
        stamp = stamp_from_ns(self._sim_ns)
        if self.clock_pub is not None:
            self.clock_pub.publish(ClockMsg(clock=stamp))
        for msg, pub in ((self._image_msg, self.image_pub), (self._depth_msg, self.depth_pub), (self._info_msg, self.info_pub)):
            msg.header.stamp = stamp
            pub.publish(msg)
        self._frame_count += 1
        self._sim_ns += self._period_ns

    def destroy_node(self) -> None:
        if self._scene is not None:
            self._scene.close()
            self._scene = None
        super().destroy_node()


def main(args: Optional[list] = None) -> int:
    """Console entry point ``clip_perception_sim_camera``.

    Exits with code 0 on SIGINT / SIGTERM (no traceback).
    """
    return run_single_threaded("clip_perception_sim_camera", args, SimCameraNode, spin_while)


if __name__ == "__main__":
    sys.exit(main())
