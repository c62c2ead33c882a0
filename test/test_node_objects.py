"""The node over real topics (in-process rclpy, colour test encoder; helpers of test_node.py) on a rendered
MuJoCo RGB-D frame: ``target_mask``, ``target_cloud`` and the ``target_pose`` orientation match the
simulator's ground truth (mask IoU >= 0.8, centre within 1 cm, yaw within 10 degrees for a box)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

import clip_perception.pipeline  # noqa: F401  torch/triton before MuJoCo (see sim/scene.py)
from clip_perception import messages
from clip_perception.segment import quaternion_to_rotation
from test_node import FRAME, STAMP, depth_msg, graph, image_msg, wait_for

OBJECTS = [
    dict(shape="box", color="blue", xy=(0.05, 0.08), size=(0.07, 0.04, 0.02), yaw=0.5, name="blue box"),
    dict(shape="ball", color="red", xy=(-0.10, -0.05), size=(0.035,), name="red ball"),
    dict(shape="cup", color="green", xy=(0.12, -0.15), size=(0.04, 0.045), name="green cup"),
]


@pytest.fixture(scope="module")
def frame():
    from clip_perception.sim.scene import make_scene

    scene = make_scene(objects=OBJECTS)
    try:
        return scene.render()
    finally:
        scene.close()


def _info(fr) -> CameraInfo:
    h, w = fr.rgb.shape[:2]
    msg = CameraInfo(header=Header(stamp=STAMP, frame_id=FRAME), width=w, height=h)
    msg.k = [float(v) for v in np.asarray(fr.K).ravel()]
    return msg


def _first(g, sink, pred, what):
    want = messages.stamp_to_ns(STAMP)
    return wait_for(lambda: next((m for m in list(sink) if messages.stamp_to_ns(m.header.stamp) == want and pred(m)),
                                 None), what=what)


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_target_mask_cloud_and_pose_orientation_match_the_simulator(frame):
    fr = frame
    (obj,) = fr.find("blue box")
    overrides = dict(use_depth=True, command="pick up the blue box", color_prior_weight=1.0,
                     proposal_methods=["contours", "depth"], publish_target_mask=True)
    with graph(**overrides) as g:
        masks, clouds = [], []
        g.tester.create_subscription(Image, f"{g.ns}/target_mask", g._collector(masks), 10)
        g.tester.create_subscription(PointCloud2, f"{g.ns}/target_cloud", g._collector(clouds), 10)
        wait_for(lambda: g.node.cameras[0].cloud_pub.get_subscription_count() > 0, what="cloud subscriber")
        cam = g.cam()
        want = messages.stamp_to_ns(STAMP)
        result = None
        end = time.monotonic() + 60.0
        while result is None and time.monotonic() < end:
            cam["depth"].publish(depth_msg(fr.depth, STAMP))
            cam["info"].publish(_info(fr))
            cam["image"].publish(image_msg(fr.rgb, STAMP))
            time.sleep(0.25)
            result = next((m for m in g.detections() if messages.stamp_to_ns(m.header.stamp) == want
                           and m.detections and m.detections[0].has_position), None)
        assert result is not None, "no 3D result for the rendered frame"
        best = result.detections[0]
        assert best.label == "blue box" and best.position_is_centre
        centre = np.array([best.position.x, best.position.y, best.position.z])
        assert np.linalg.norm(centre - obj.center_optical) < 0.01

        mask_msg = _first(g, masks, lambda m: True, "target_mask")
        h, w = fr.rgb.shape[:2]
        assert (mask_msg.encoding, mask_msg.width, mask_msg.height, mask_msg.header.frame_id) == ("mono8", w, h, FRAME)
        mask = np.frombuffer(bytes(mask_msg.data), np.uint8).reshape(h, w) == 255
        truth = fr.segmentation == obj.index
        assert (mask & truth).sum() / (mask | truth).sum() >= 0.8
        ys, xs = np.nonzero(mask)
        assert (best.roi.x_offset, best.roi.y_offset) == (xs.min(), ys.min())  # roi = the mask's tight box

        cloud = _first(g, clouds, lambda m: m.width > 0, "target_cloud")
        assert cloud.header.frame_id == FRAME and [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]
        pts = np.frombuffer(bytes(cloud.data), np.float32).reshape(-1, 4)[:, :3]
        assert len(pts) == int(mask.sum())  # every mask pixel has rendered depth
        # every point lies on the box: within its half diagonal of the GT centre
        assert np.linalg.norm(pts - obj.center_optical, axis=1).max() <= 0.5 * np.linalg.norm(obj.size) + 0.005

        pose = _first(g, g.cam()["poses"], lambda m: True, "target_pose")
        q = pose.pose.orientation
        R = quaternion_to_rotation([q.x, q.y, q.z, q.w])
        world_long = np.asarray(fr.T_world_optical)[:3, :3] @ R[:, 0]
        measured = math.atan2(world_long[1], world_long[0])
        err = (measured - OBJECTS[0]["yaw"] + math.pi / 2) % math.pi - math.pi / 2  # a box is symmetric under 180
        assert abs(math.degrees(err)) < 10.0
        np.testing.assert_allclose([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z], centre)
