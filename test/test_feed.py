"""Tests for clip_perception.tools.feed: the one camera-feed publisher (rclpy, in process)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from clip_perception.decode import decode_compressed, decode_depth, decode_image
from clip_perception.tools.feed import CameraFeed, qos_from_name

K = np.array([[300.0, 0.0, 3.5], [0.0, 300.0, 2.5], [0.0, 0.0, 1.0]])


@pytest.mark.ros
@pytest.mark.timeout(60)
def test_feed_publishes_one_frame_with_one_header_in_order():
    """One publish -> image, depth, camera_info and compressed arrive with the same stamp and
    frame_id; pixels, metres and K survive; depth and camera_info are published before the image."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("feed_test_pub", context=ctx, namespace="/feed_test")
    sub = rclpy.create_node("feed_test_sub", context=ctx, namespace="/feed_test")
    got = {}

    def keep(name):
        def cb(msg):
            got.setdefault(name, msg)
        return cb

    try:
        feed = CameraFeed(node, qos="reliable", compressed_topic="image/compressed")
        qos = qos_from_name("reliable")
        for cls, topic, name in ((Image, "image", "image"), (Image, "depth", "depth"),
                                 (CameraInfo, "camera_info", "info"), (CompressedImage, "image/compressed", "comp")):
            sub.create_subscription(cls, topic, keep(name), qos)
        rgb = np.random.default_rng(3).integers(0, 256, (6, 8, 3), dtype=np.uint8)
        depth = np.full((6, 8), 0.75)
        frame = feed.make_frame(rgb, depth, K, frame_id="cam_optical", compressed_format="png")
        assert feed.wait_for_subscribers(10.0)
        time.sleep(0.3)
        sent = []
        for name, pub in (("image", feed.image_pub), ("depth", feed.depth_pub), ("info", feed.info_pub),
                          ("comp", feed.compressed_pub)):
            def recorded(msg, _publish=pub.publish, _name=name):
                sent.append(_name)
                _publish(msg)
            pub.publish = recorded
        header = feed.publish(frame, 1_700_000_000_123_456_789)
        assert sent == ["depth", "info", "comp", "image"]
        assert (header.stamp.sec, header.stamp.nanosec, header.frame_id) == (1_700_000_000, 123_456_789, "cam_optical")
        end = time.monotonic() + 10.0
        while len(got) < 4 and time.monotonic() < end:
            _spin(sub, ctx)
        assert set(got) == {"image", "depth", "info", "comp"}
        assert all(m.header == header for m in got.values())
        np.testing.assert_array_equal(decode_image(got["image"]), rgb)
        np.testing.assert_array_equal(decode_compressed(got["comp"]), rgb)
        np.testing.assert_array_equal(decode_depth(got["depth"]), depth.astype(np.float32))
        np.testing.assert_array_equal(np.asarray(got["info"].k).reshape(3, 3), K)
        assert (got["info"].width, got["info"].height) == (8, 6)
    finally:
        node.destroy_node()
        sub.destroy_node()
        rclpy.shutdown(context=ctx)


def _spin(node, ctx):
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.spin_once(timeout_sec=0.05)
    ex.remove_node(node)


def test_make_frame_needs_a_size_for_K_and_qos_names():
    """K without rgb/depth -> ValueError; unknown QoS name -> ValueError; sensor_data is best effort."""
    with pytest.raises(ValueError, match="K needs"):
        CameraFeed.make_frame(K=K)
    with pytest.raises(ValueError, match="unknown qos"):
        qos_from_name("fast")
    assert qos_from_name("sensor_data").reliability.name == "BEST_EFFORT"
