"""ROS 2 node that publishes a simulated RGB-D camera (MuJoCo scene).

It behaves like a Gazebo camera bridged with ``ros_gz_bridge``:

* ``image`` (sensor_msgs/Image, ``rgb8``),
* ``depth`` (sensor_msgs/Image, ``32FC1`` metres, NaN = no return),
* ``camera_info`` (sensor_msgs/CameraInfo: true K, P = [K | 0], R = I,
  ``plumb_bob`` with zero D),

published through the one camera-feed publisher
(:class:`clip_perception.tools.feed.CameraFeed`: depth, camera_info, then image),
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
(1000.0 s), ``rerender`` (false), ``relayout_every`` (0), ``orbit_deg_per_frame`` (0.0: a
static camera; else the camera circles the table centre by that azimuth per frame,
:func:`clip_perception.sim.trajectory.orbit_poses`), ``depth_noise`` (false; true: structured-light
depth noise, :class:`clip_perception.sim.depth_noise.StructuredLightNoise` defaults).  A moving or
noisy camera renders every frame; ``ground_truth`` describes the layout's first frame.

The timer runs on the steady (wall) clock, so the node works whether or not
it is itself given ``use_sim_time``.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rcl_interfaces.msg import ParameterDescriptor
from rosgraph_msgs.msg import Clock as ClockMsg
from std_msgs.msg import String

from ..messages import ns_to_stamp
from ..tools.executables import run_single_threaded, spin_while
from ..tools.feed import CLOCK_QOS, LATCHED_QOS, CameraFeed, qos_from_name

__all__ = ["SimCameraNode", "main"]


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
        self.orbit_deg_per_frame = float(p("orbit_deg_per_frame", 0.0,
                                           "camera azimuth step per frame round the table centre (deg; 0 = static)"))
        self.depth_noise = bool(p("depth_noise", False, "structured-light depth noise (sigma_z = 1.5e-3 z^2 ...)"))
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

        self.feed = CameraFeed(self, qos=qos)  # image, depth, camera_info
        self.image_pub, self.depth_pub, self.info_pub = self.feed.image_pub, self.feed.depth_pub, self.feed.info_pub
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
        from .depth_noise import StructuredLightNoise
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
            depth_noise=StructuredLightNoise() if self.depth_noise else None,
            noise_seed=seed,
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
        pose = None
        if self.orbit_deg_per_frame != 0.0:
            from .trajectory import orbit_poses

            yaw = self.orbit_deg_per_frame * self._frame_count
            pose = orbit_poses(1, self._scene.target, self.camera_distance, self.camera_pitch_deg, yaw, yaw)[0]
        self._frame = self._scene.render(camera_pose=pose)
        self._feed_frame = self.feed.make_frame(self._frame.rgb, self._frame.depth, self._frame.K, frame_id=self.frame_id)

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
        """Publish one frame (clock, then depth, camera_info and image through the
        :class:`~clip_perception.tools.feed.CameraFeed`, one header) at the current
        simulated time, then advance it by ``1 / rate_hz``."""
        if self.relayout_every > 0 and self._frame_count > 0 and self._frame_count % self.relayout_every == 0:
            self._layout += 1
            self._new_layout(self.seed + self._layout)
        elif (self.rerender or self.depth_noise or self.orbit_deg_per_frame != 0.0) and self._frame_count > 0:
            self._render()
        if self.clock_pub is not None:
            self.clock_pub.publish(ClockMsg(clock=ns_to_stamp(self._sim_ns)))
        self.feed.publish(self._feed_frame, self._sim_ns, self.frame_id)
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
