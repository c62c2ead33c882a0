"""One camera's ROS 2 interfaces: subscriptions that fill a :class:`runtime.CameraInputs`,
and the publishers of its outputs.

Relative topic names (``name/`` prefix with ``cameras: [name, ...]``): ``image`` or
``image/compressed`` (``image_transport``), ``depth`` or ``depth/compressedDepth``
(``depth_transport``) and ``camera_info`` (only with ``use_depth``) in;
``detections``, ``target_pose``, ``place_pose``, ``markers``, ``debug_image``, ``detections_2d``,
``target_mask``, ``target_cloud`` and ``detections_3d`` (:mod:`clip_perception.messages_3d`) out.
Callbacks only store messages (with their stamp in nanoseconds); decoding and inference
happen on the worker (:mod:`clip_perception.worker`).
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from clip_perception.msg import TargetDetectionArray

from . import messages, messages_3d
from .node_params import camera_qos, reliable_qos
from .transforms import RigidTransform, express_result
from .runtime import CameraInputs

__all__ = ["CameraIO"]


class CameraIO(CameraInputs):
    """Subscriptions and publishers of one camera (``name`` = namespace or "").

    Args:
        node: the rclpy node that owns the interfaces.
        name: camera namespace ("" for a single camera).
        cfg: validated parameters (``qos``, ``image_transport``, ``use_depth``,
            ``depth_transport``).
        group: callback group of the subscriptions.
        wake: the worker's wake-up event (set on every colour message).
    """

    def __init__(self, node, name: str, cfg, group, wake) -> None:
        super().__init__(name, compressed=cfg.image_transport == "compressed",
                         depth_compressed=cfg.depth_transport == "compressedDepth", wake=wake)
        self._node = node
        prefix = f"{name}/" if name else ""
        self.qos_name = cfg.qos
        self.qos_description = ("BEST_EFFORT (qos: sensor_data)" if cfg.qos == "sensor_data"
                                else "RELIABLE (qos: reliable; it does not receive from best-effort publishers)")
        qos = camera_qos(cfg.qos)
        if self.compressed:
            self.image_sub = node.create_subscription(CompressedImage, prefix + "image/compressed", self._on_image,
                                                      qos, callback_group=group)
        else:
            self.image_sub = node.create_subscription(Image, prefix + "image", self._on_image, qos,
                                                      callback_group=group)
        self.image_topic = self.image_sub.topic_name
        self.depth_sub = self.info_sub = None
        if cfg.use_depth:
            if self.depth_compressed:
                self.depth_sub = node.create_subscription(CompressedImage, prefix + "depth/compressedDepth",
                                                          self._on_depth, qos, callback_group=group)
            else:
                self.depth_sub = node.create_subscription(Image, prefix + "depth", self._on_depth, qos,
                                                          callback_group=group)
            self.info_sub = node.create_subscription(CameraInfo, prefix + "camera_info", self._on_info, qos,
                                                     callback_group=group)
        out = reliable_qos(10)
        self.det_pub = node.create_publisher(TargetDetectionArray, prefix + "detections", out)
        self.pose_pub = node.create_publisher(PoseStamped, prefix + "target_pose", out)
        self.place_pub = node.create_publisher(PoseStamped, prefix + "place_pose", out)
        self.marker_pub = node.create_publisher(MarkerArray, prefix + "markers", out)
        self.debug_pub = node.create_publisher(Image, prefix + "debug_image", out)
        self.det2d_pub = None
        if messages.HAVE_VISION_MSGS:
            self.det2d_pub = node.create_publisher(messages.Detection2DArray, prefix + "detections_2d", out)
        self.mask_pub = node.create_publisher(Image, prefix + "target_mask", out)
        self.cloud_pub = node.create_publisher(PointCloud2, prefix + "target_cloud", out)
        self.vision3d = messages_3d.vision_msgs_types()
        self.det3d_pub = None
        if self.vision3d is not None:
            self.det3d_pub = node.create_publisher(self.vision3d.Detection3DArray, prefix + "detections_3d", out)

    # Callbacks only store messages: decoding and inference happen on the worker.
    def _on_image(self, msg) -> None:
        self.put_image(msg, messages.stamp_to_ns(msg.header.stamp))

    def _on_depth(self, msg) -> None:
        self.put_depth(msg, messages.stamp_to_ns(msg.header.stamp))

    def _on_info(self, msg: CameraInfo) -> None:
        self.put_info(msg, messages.stamp_to_ns(msg.header.stamp))

    #: ``(lookup or None, description or the reason there is none, warn(key, text))`` of the node's
    #: ``target_frame`` (:meth:`set_transforms`); ``None`` = not set.
    transforms = None

    def set_transforms(self, lookup, about: str, warn) -> None:
        """Use ``lookup`` (:class:`transforms.TransformLookup`, or ``None`` with ``about`` saying
        why) for ``target_frame`` outputs; ``warn(key, text)`` is the node's throttled warning."""
        self.transforms = (lookup, about, warn)

    def framed(self, header, result, cfg):
        """The result's positions in ``cfg.target_frame`` (:class:`transforms.FramedPositions`),
        transformed at the image stamp, or ``None`` (off, nothing in 3D, or no transform: warned,
        throttled).  An image already in ``target_frame`` needs no lookup (identity)."""
        if not cfg.target_frame or self.transforms is None:
            return None
        dets = list(result.detections) + list(getattr(result, "destination_detections", []) or [])
        place = getattr(result, "place", None)
        if all(d.position is None for d in dets) and getattr(place, "position", None) is None:
            return None  # nothing to transform: no lookup (a tf2 lookup may wait transform_timeout)
        lookup, about, warn = self.transforms
        source = str(header.frame_id)
        if source == cfg.target_frame:
            return express_result(result, RigidTransform(target_frame=source, source_frame=source))
        if lookup is None:
            warn(f"tf:{self.image_topic}", f"no {cfg.target_frame} positions for {self.image_topic}: {about}")
            return None
        transform, why = lookup.lookup(cfg.target_frame, source, messages.stamp_to_ns(header.stamp))
        if transform is None:
            warn(f"tf:{self.image_topic}", f"no transform {cfg.target_frame} <- {source} at the image stamp "
                 f"{messages.stamp_to_ns(header.stamp) * 1e-9:.3f} on {self.image_topic} ({why}): no target_pose, "
                 "has_target_position false")
            return None
        return express_result(result, transform)

    def publish(self, header, result, text: str, rgb: np.ndarray, cfg) -> None:
        """Publish one frame's outputs, each with the colour image's ``header``; with
        ``target_frame`` set, ``target_pose`` is in that frame (:meth:`framed`) or not published.

        ``debug_image`` is built only with ``publish_debug_image`` or while subscribed.
        """
        array = messages.to_detection_array(result, header, text)
        framed = None
        if cfg.target_frame:
            framed = self.framed(header, result, cfg)
            messages.add_target_frame(array, cfg.target_frame, framed)
            pose = messages.to_target_pose(result, header, framed)
        else:
            pose = messages.to_pose(result, header)
        self.det_pub.publish(array)
        if pose is not None:
            self.pose_pub.publish(pose)
        place = messages.to_place_pose(result, header, framed, cfg.target_frame)
        if place is not None:
            self.place_pub.publish(place)
        self.marker_pub.publish(messages.to_markers(result, header))
        if cfg.publish_debug_image or self.debug_pub.get_subscription_count() > 0:
            self.debug_pub.publish(messages.to_debug_image(rgb, result, header))
        if self.det2d_pub is not None:
            self.det2d_pub.publish(messages.to_detection2d_array(result, header))
        self._publish_objects(header, result, rgb, cfg)

    def _publish_objects(self, header, result, rgb: np.ndarray, cfg) -> None:
        """``target_mask`` / ``target_cloud`` (built only with ``publish_target_mask`` /
        ``publish_target_cloud`` or while subscribed) and ``detections_3d`` (with vision_msgs)."""
        if cfg.publish_target_mask or self.mask_pub.get_subscription_count() > 0:
            self.mask_pub.publish(messages_3d.to_target_mask(result, header, rgb.shape[:2]))
        if cfg.publish_target_cloud or self.cloud_pub.get_subscription_count() > 0:
            self.cloud_pub.publish(messages_3d.to_target_cloud(result, header, rgb))
        if self.det3d_pub is not None:
            self.det3d_pub.publish(messages_3d.to_detection3d_array(result, header, self.vision3d))

    def destroy(self) -> None:
        """Destroy every subscription and publisher of this camera."""
        node = self._node
        for sub in (self.image_sub, self.depth_sub, self.info_sub):
            if sub is not None:
                node.destroy_subscription(sub)
        for pub in (self.det_pub, self.pose_pub, self.place_pub, self.marker_pub, self.debug_pub, self.det2d_pub,
                    self.mask_pub, self.cloud_pub, self.det3d_pub):
            if pub is not None:
                node.destroy_publisher(pub)
        self.image_sub = self.depth_sub = self.info_sub = self.det2d_pub = self.det3d_pub = None
