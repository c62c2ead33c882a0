"""One camera-feed publisher: the RGB-D topics a camera driver publishes (rclpy).

Every tool that plays the role of a camera (the MuJoCo sim camera, replay of folders, the
bench and soak drivers) publishes through :class:`CameraFeed`, so the topics, QoS, header
and publication order are the same everywhere:

* ``image`` — ``sensor_msgs/Image`` (``rgb8`` unless a pre-built message says otherwise);
* ``depth`` — ``sensor_msgs/Image`` ``32FC1`` metres, NaN = no return (REP 118), or
  ``16UC1`` millimetres;
* ``camera_info`` — ``sensor_msgs/CameraInfo`` (K, R = I, P = [K | 0], D and
  ``distortion_model``, default ``plumb_bob`` with D = 0);
* optionally ``image/compressed`` — ``sensor_msgs/CompressedImage`` (JPEG or PNG, format
  string as ``compressed_image_transport`` writes it: ``"rgb8; jpeg compressed bgr8"``).

One frame = one ``std_msgs/Header`` (the same ``stamp`` and ``frame_id`` on every topic),
published in the order depth, camera_info, compressed, image: a consumer that pairs on
the colour image (as ``clip_perception_node`` does) then finds the depth and K of that
stamp already there.

Usage::

    feed = CameraFeed(node, qos="sensor_data")             # topics relative to the node
    frame = feed.make_frame(rgb, depth_m, K, frame_id="camera_color_optical_frame")
    feed.wait_for_subscribers(timeout_s=15.0)               # optional
    feed.publish(frame, stamp_ns=time.time_ns())            # returns the Header used

``make_frame`` builds the messages once; ``publish`` only re-stamps and publishes them,
so a feed can republish a static scene at a high rate without copying pixels.

QoS names (:func:`qos_from_name`): ``sensor_data`` (best effort, keep last 5; rclpy's
``qos_profile_sensor_data``, what camera drivers use) or ``reliable`` (reliable, keep
last 10, volatile).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from .. import messages

__all__ = ["CameraFeed", "FeedFrame", "qos_from_name", "LATCHED_QOS", "CLOCK_QOS"]


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


#: Reliable, transient-local ("latched"), keep last 1: ground truth and other one-off data.
LATCHED_QOS = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)
#: ``/clock``: reliable, keep last 10 (as ``ros2 bag play --clock`` publishes it).
CLOCK_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)


@dataclass
class FeedFrame:
    """The messages of one camera frame (any of them may be ``None`` = not published).

    Attributes:
        image: ``sensor_msgs/Image`` colour image.
        depth: ``sensor_msgs/Image`` depth registered to ``image``.
        info: ``sensor_msgs/CameraInfo`` of ``image``.
        compressed: ``sensor_msgs/CompressedImage`` of ``image``.
    """

    image: Optional[Image] = None
    depth: Optional[Image] = None
    info: Optional[CameraInfo] = None
    compressed: Optional[CompressedImage] = None


class CameraFeed:
    """The image / depth / camera_info (+ compressed) publishers of one camera.

    Args:
        node: the rclpy node that owns the publishers.
        qos: a QoS name (see :func:`qos_from_name`) or a ``QoSProfile``; the same for
            every topic of the feed.
        image_topic, depth_topic, info_topic: topic names (relative names resolve in the
            node's namespace); ``None`` = that topic is not published.
        compressed_topic: ``CompressedImage`` topic, ``None`` (default) = none.

    Raises:
        ValueError: unknown QoS name.
    """

    def __init__(
        self,
        node,
        *,
        qos: Union[str, QoSProfile] = "sensor_data",
        image_topic: Optional[str] = "image",
        depth_topic: Optional[str] = "depth",
        info_topic: Optional[str] = "camera_info",
        compressed_topic: Optional[str] = None,
    ) -> None:
        self.node = node
        self.qos = qos_from_name(qos) if isinstance(qos, str) else qos

        def pub(cls, topic):
            return None if not topic else node.create_publisher(cls, topic, self.qos)

        self.image_pub = pub(Image, image_topic)
        self.depth_pub = pub(Image, depth_topic)
        self.info_pub = pub(CameraInfo, info_topic)
        self.compressed_pub = pub(CompressedImage, compressed_topic)
        self.published = 0

    @staticmethod
    def make_frame(
        rgb: Optional[np.ndarray] = None,
        depth_m: Optional[np.ndarray] = None,
        K: Optional[np.ndarray] = None,
        *,
        frame_id: str = "",
        depth_encoding: str = "32FC1",
        D: Optional[np.ndarray] = None,
        distortion_model: str = "plumb_bob",
        compressed_format: Optional[str] = None,
    ) -> FeedFrame:
        """Build the messages of one frame (stamp zero until :meth:`publish`).

        Args:
            rgb: (H, W, 3) uint8 RGB -> ``rgb8`` Image; ``None`` = no image.
            depth_m: (H, W) float metres registered to ``rgb`` (NaN / <= 0 = invalid);
                ``None`` = no depth.
            K: (3, 3) intrinsics in pixels of ``rgb`` -> CameraInfo sized like ``rgb``
                (or like ``depth_m`` without ``rgb``); ``None`` = no camera_info.
            frame_id: optical frame of the camera (REP 103), on every message.
            depth_encoding: ``"32FC1"`` (metres) or ``"16UC1"`` (millimetres).
            D, distortion_model: CameraInfo distortion (default ``plumb_bob``, D = 0).
            compressed_format: ``"jpeg"`` or ``"png"`` -> also a CompressedImage of ``rgb``.

        Raises:
            ValueError: bad array shapes / dtypes, unknown encodings or formats, K given
                without an image size.
        """
        header = Header(frame_id=str(frame_id))
        frame = FeedFrame()
        if rgb is not None:
            frame.image = messages.rgb_to_image_msg(rgb, header)
            if compressed_format:
                frame.compressed = messages.rgb_to_compressed_msg(rgb, header, compressed_format)
        if depth_m is not None:
            frame.depth = messages.depth_to_image_msg(depth_m, header, depth_encoding)
        if K is not None:
            sized = rgb if rgb is not None else depth_m
            if sized is None:
                raise ValueError("K needs rgb or depth_m for the CameraInfo width/height")
            h, w = np.asarray(sized).shape[:2]
            frame.info = messages.camera_info_msg(K, w, h, header, D=D, distortion_model=distortion_model)
        return frame

    def subscription_count(self) -> int:
        """Subscribers matched on the image topic (or depth when there is no image topic)."""
        pub = self.image_pub or self.depth_pub or self.info_pub
        return 0 if pub is None else int(pub.get_subscription_count())

    def wait_for_subscribers(self, timeout_s: float = 15.0, poll_s: float = 0.02) -> bool:
        """Block (sleeping, without spinning) until every created topic of the feed has a
        subscriber, at most ``timeout_s`` seconds.  Returns True when all are matched."""
        import time

        pubs = [p for p in (self.image_pub, self.depth_pub, self.info_pub) if p is not None]
        end = time.monotonic() + float(timeout_s)
        while True:
            if all(p.get_subscription_count() > 0 for p in pubs):
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(poll_s)

    def publish(self, frame: FeedFrame, stamp_ns: int, frame_id: Optional[str] = None) -> Header:
        """Publish one frame with one header on every topic.

        Args:
            frame: messages from :meth:`make_frame` (or any Image / CameraInfo /
                CompressedImage messages); their headers are overwritten.
            stamp_ns: capture time in integer nanoseconds (``>= 0``; the node clock's
                ``now().nanoseconds``, simulated time, or a recorded stamp).
            frame_id: optical frame id; ``None`` keeps the one in ``frame.image`` (or the
                first message present).

        Returns:
            the ``std_msgs/Header`` published (stamp from ``stamp_ns``).

        Order: depth, camera_info, compressed, image.  A message whose topic the feed does
        not publish is skipped.
        """
        present = [m for m in (frame.image, frame.depth, frame.info, frame.compressed) if m is not None]
        if frame_id is None:
            frame_id = present[0].header.frame_id if present else ""
        stamp = messages.ns_to_stamp(stamp_ns)
        for msg, pub in ((frame.depth, self.depth_pub), (frame.info, self.info_pub),
                         (frame.compressed, self.compressed_pub), (frame.image, self.image_pub)):
            if msg is None or pub is None:
                continue
            msg.header = Header(stamp=stamp, frame_id=str(frame_id))
            pub.publish(msg)
        self.published += 1
        return Header(stamp=stamp, frame_id=str(frame_id))

    def publish_rgbd(self, rgb, depth_m, K, stamp_ns: int, frame_id: str, **frame_kwargs) -> Header:
        """:meth:`make_frame` then :meth:`publish` (one call per frame, builds the messages
        every time).  ``frame_kwargs`` go to :meth:`make_frame`."""
        return self.publish(self.make_frame(rgb, depth_m, K, frame_id=frame_id, **frame_kwargs), stamp_ns)

    def destroy(self) -> None:
        """Destroy the feed's publishers (the node stays)."""
        for pub in (self.image_pub, self.depth_pub, self.info_pub, self.compressed_pub):
            if pub is not None:
                self.node.destroy_publisher(pub)
        self.image_pub = self.depth_pub = self.info_pub = self.compressed_pub = None
