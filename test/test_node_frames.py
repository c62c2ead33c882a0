"""The node over real topics (in-process rclpy, colour test encoder; helpers of test_node.py): a CameraInfo
with lens distortion gives corner positions within 1 cm, and ``target_frame`` with static
``camera_extrinsics`` gives target_position / target_pose in the base frame within 1 mm, with
header.frame_id = target_frame and the image stamp; a failing transform lookup gives a warning and no
target-frame pose (never a wrong one)."""

from __future__ import annotations

import sys
import time
import types

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from clip_perception import messages
from clip_perception.transforms import parse_extrinsics
from test_distortion import CAMERAS, known_points, render
from test_node import FRAME, STAMP, depth_msg, graph, image_msg, stamp_plus, wait_for

#: the README example: camera 0.6 m above the base origin, 0.3 m forward, looking straight down
DOWN = "0.3 0.0 0.6 0.7071068 -0.7071068 0.0 0.0"


def _point(p) -> np.ndarray:
    return np.array([p.x, p.y, p.z])


def _info(K, D, model, width, height, stamp) -> CameraInfo:
    msg = CameraInfo(header=Header(stamp=stamp, frame_id=FRAME), width=width, height=height, distortion_model=model)
    msg.k = [float(v) for v in np.asarray(K).ravel()]
    msg.d = [float(v) for v in D]
    return msg


def _result(g, stamp, rgb, depth, info, pred, wait: float = 30.0):
    """Publish depth, camera_info and the image every 0.25 s until a matching result for ``stamp`` arrives."""
    want = messages.stamp_to_ns(stamp)
    cam = g.cam()
    end = time.monotonic() + wait
    while time.monotonic() < end:
        cam["depth"].publish(depth_msg(depth, stamp))
        cam["info"].publish(info)
        cam["image"].publish(image_msg(rgb, stamp))
        t_next = time.monotonic() + 0.25
        while time.monotonic() < t_next:
            for msg in g.detections():
                if messages.stamp_to_ns(msg.header.stamp) == want and pred(msg):
                    return msg
            time.sleep(0.02)
    raise AssertionError(f"no result for stamp {want}")


def _pose_for(g, stamp, timeout: float = 30.0):
    want = messages.stamp_to_ns(stamp)
    return wait_for(lambda: next((p for p in list(g.cam()["poses"]) if messages.stamp_to_ns(p.header.stamp) == want),
                                 None), timeout=timeout, what="target_pose")


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_camera_info_distortion_over_topics_gives_corner_positions_within_1cm():
    """A plumb_bob (k1 = -0.3) CameraInfo and a rendered frame with a red square near the top-left corner:
    the published position is the known 3D point within 1 cm (K alone would be > 3 cm off)."""
    model, K, D, _, _ = CAMERAS["plumb_bob"]
    rgb, depth, _ = render("plumb_bob")
    info = _info(K, D, model, rgb.shape[1], rgb.shape[0], STAMP)
    overrides = dict(use_depth=True, command="pick up the red block", color_prior_weight=1.0,
                     proposal_methods=["contours"])
    with graph(**overrides) as g:
        msg = _result(g, STAMP, rgb, depth, info, lambda m: bool(m.detections) and m.detections[0].has_position)
        np.testing.assert_allclose(_point(msg.detections[0].position), known_points("plumb_bob")[0], atol=0.01)
        assert msg.target_frame == "" and not msg.detections[0].has_target_position


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_static_extrinsics_give_base_frame_positions_and_pose():
    """target_frame base_link + camera_extrinsics: every detection's target_position is T * position
    within 1 mm (checked against the axes of the looking-down camera too), target_frame is named in the array, and
    target_pose has frame_id base_link, the image stamp, the transformed position and R_T * orientation."""
    model, K, _, _, _ = CAMERAS["plumb_bob"]
    rgb, depth, _ = render("plumb_bob")
    info = _info(K, [0.0] * 5, model, rgb.shape[1], rgb.shape[0], stamp_plus(STAMP, -0.01))
    transform = parse_extrinsics(DOWN, "base_link")
    overrides = dict(use_depth=True, command="pick up the red block", color_prior_weight=1.0,
                     proposal_methods=["contours"], target_frame="base_link", camera_extrinsics=DOWN)
    with graph(**overrides) as g:
        msg = _result(g, STAMP, rgb, depth, info, lambda m: bool(m.detections) and m.detections[0].has_position)
        assert msg.target_frame == "base_link" and msg.header.frame_id == FRAME
        for det in msg.detections:
            assert det.has_target_position == det.has_position
            if det.has_position:
                np.testing.assert_allclose(_point(det.target_position), transform.apply(_point(det.position)),
                                           atol=1e-3)
        best = msg.detections[0]
        # an optical-frame point (x, y, z) is base (0.3 - y, -x, 0.6 - z)
        x, y, z = _point(best.position)
        np.testing.assert_allclose(_point(best.target_position), [0.3 - y, -x, 0.6 - z], atol=1e-3)
        pose = _pose_for(g, STAMP)
        assert pose.header.frame_id == "base_link"
        assert (pose.header.stamp.sec, pose.header.stamp.nanosec) == (STAMP.sec, STAMP.nanosec)
        np.testing.assert_allclose(_point(pose.pose.position), _point(best.target_position), atol=1e-9)
        o = best.orientation
        q = pose.pose.orientation
        np.testing.assert_allclose([q.x, q.y, q.z, q.w], transform.rotate([o.x, o.y, o.z, o.w]), atol=1e-9)


class _LateBuffer:
    """tf2_ros.Buffer stand-in whose lookups fail as a late transform does."""

    asked: list = []

    def lookup_transform(self, target, source, time, timeout=None):
        self.asked.append((target, source, time.nanoseconds))
        raise RuntimeError("Lookup would require extrapolation into the future")


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_failing_lookup_gives_a_warning_and_no_target_frame_pose(monkeypatch):
    """target_frame without extrinsics (tf2; a stand-in tf2_ros whose lookups fail): the detections keep
    their optical-frame position, has_target_position is false, no target_pose is published for the
    frame, a warning names the frames; the lookup was asked at the image stamp."""
    fake = types.ModuleType("tf2_ros")
    fake.Buffer = _LateBuffer
    fake.TransformListener = lambda buffer, node: types.SimpleNamespace(unregister=lambda: None)
    monkeypatch.setitem(sys.modules, "tf2_ros", fake)
    _LateBuffer.asked = []
    model, K, _, _, _ = CAMERAS["plumb_bob"]
    rgb, depth, _ = render("plumb_bob")
    info = _info(K, [0.0] * 5, model, rgb.shape[1], rgb.shape[0], STAMP)
    overrides = dict(use_depth=True, command="pick up the red block", color_prior_weight=1.0,
                     proposal_methods=["contours"], target_frame="base_link", transform_timeout=0.05)
    with graph(**overrides) as g:
        msg = _result(g, STAMP, rgb, depth, info, lambda m: bool(m.detections) and m.detections[0].has_position)
        assert msg.target_frame == "base_link"
        assert not any(d.has_target_position for d in msg.detections) and not msg.has_place_target_position
        assert ("base_link", FRAME, messages.stamp_to_ns(STAMP)) in _LateBuffer.asked
        warning = wait_for(lambda: next((w for w in g.node.warnings if "no transform base_link" in w), None),
                           what="transform warning")
        assert FRAME in warning and "extrapolation" in warning
        time.sleep(0.5)  # target_pose would have been published right after the detections
        assert not [p for p in list(g.cam()["poses"]) if p.header.stamp == STAMP]
