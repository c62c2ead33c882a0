"""Talking to a manipulator over real rclpy topics: pick-and-place, stop, "no, the other one".

The node runs in-process with the colour test encoder (``fake_encoders.ColorTestEncoder``)
on a MuJoCo scene (depth + CameraInfo with the scene's K, reliable QoS), through the same
``Graph`` harness as ``test_node.py``.  Waits only guard against hangs.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

import clip_perception.pipeline  # noqa: F401  torch/triton before MuJoCo (see sim/scene.py)
from clip_perception import messages
from clip_perception.sim.scene import TABLE_HEIGHT, make_scene
from test_node import depth_msg, graph, image_msg, iou, roi_box, wait_for

BOX = dict(shape="box", color="blue", xy=(0.05, 0.10), size=(0.06, 0.05, 0.02), name="blue box")
BALL_A = dict(shape="ball", color="red", xy=(-0.10, -0.02), size=(0.03,), name="red ball")
BALL_B = dict(shape="ball", color="red", xy=(0.02, -0.22), size=(0.03,), name="red ball 2")
CUP = dict(shape="cup", color="green", xy=(0.20, -0.05), size=(0.04, 0.045), name="green cup")
RELIABLE = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
T0 = 1_700_000_100


@pytest.fixture(scope="module")
def frame():
    scene = make_scene(objects=[BOX, BALL_A, BALL_B, CUP])
    try:
        yield scene.render()
    finally:
        scene.close()


def _optical(frame, p_world):
    T = np.asarray(frame.T_world_optical)
    return T[:3, :3].T @ (np.asarray(p_world, np.float64) - T[:3, 3])


class Feeder:
    """Publishes the rendered frame (depth, camera_info, image: one stamp) with increasing stamps."""

    def __init__(self, g, frame):
        self.g, self.frame, self.n = g, frame, 0
        self.depth = frame.depth.astype(np.float32)

    def stamp(self, n: int) -> Time:
        return Time(sec=T0 + n, nanosec=0)

    def publish(self) -> int:
        entry, stamp = self.g.cam(), self.stamp(self.n)
        fid = self.frame.frame_id
        entry["depth"].publish(depth_msg(self.depth, stamp, "32FC1", fid))
        entry["info"].publish(messages.camera_info_msg(self.frame.K, self.frame.width, self.frame.height,
                                                       messages.Header(stamp=stamp, frame_id=fid)))
        entry["image"].publish(image_msg(self.frame.rgb, stamp, fid))
        self.n += 1
        return self.n - 1

    def result(self, pred=lambda m: True, after: int = 0):
        """Keep publishing until a result for a frame numbered >= ``after`` satisfies ``pred``."""
        end = time.monotonic() + 60.0
        while time.monotonic() < end:
            self.publish()
            t_next = time.monotonic() + 0.3
            while time.monotonic() < t_next:
                for msg in self.g.detections():
                    if msg.header.stamp.sec - T0 >= after and pred(msg):
                        return msg
                time.sleep(0.02)
        raise AssertionError("no matching result")


def _graph():
    return graph(camera_qos=RELIABLE, use_depth=True, qos="reliable", sync_slop=0.05, color_prior_weight=0.5,
                 no_image_warn_s=60.0)


def _expected_place(relation, picked):
    """World point the place point must be at (2 cm): on = the box's top centre, in = the cup's rim
    centre, left_of = on the table beside the box at its half width + the ball's radius + the 3 cm
    place_margin (image left is world +y)."""
    if relation == "on":
        return [BOX["xy"][0], BOX["xy"][1], TABLE_HEIGHT + 2 * BOX["size"][2]]
    if relation == "in":
        return [CUP["xy"][0], CUP["xy"][1], TABLE_HEIGHT + 2 * CUP["size"][1]]
    half_picked = 0.5 * max(picked.size.x, picked.size.y)
    return [BOX["xy"][0], BOX["xy"][1] + BOX["size"][1] + half_picked + 0.03, TABLE_HEIGHT]


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("text, destination, relation, status", [
    ("put the red ball on the blue box", "blue box", "on", "; place: on the blue box"),
    ("put the red ball in the green cup", "green cup", "in", "; place: in the green cup"),
    ("place the red ball to the left of the blue box", "blue box", "left_of", "; place: left of the blue box"),
])
def test_pick_and_place_over_topics_gives_both_targets_and_the_place_point(frame, text, destination, relation,
                                                                           status):
    with _graph() as g:
        places = []
        g.tester.create_subscription(PoseStamped, f"{g.ns}/place_pose", g._collector(places), RELIABLE)
        feed = Feeder(g, frame)
        g.send_command(text)
        g.wait_status(f"looking for: red ball; place: {relation.replace('_', ' ')} {destination}")
        msg = feed.result(lambda m: m.intent == "pick_place" and m.has_place_position)
        assert (msg.action, msg.target, msg.destination, msg.destination_relation) == (
            "place", "red ball", destination, relation)
        assert msg.detections[0].has_position and msg.destination_detections[0].has_position
        (dest,) = frame.find(destination)
        assert iou(roi_box(msg.destination_detections[0].roi), dest.box) >= 0.5
        expected = _optical(frame, _expected_place(relation, msg.detections[0]))
        got = np.array([msg.place_position.x, msg.place_position.y, msg.place_position.z])
        assert np.linalg.norm(got - expected) < 0.02
        pose = wait_for(lambda: next((p for p in list(places) if p.header.stamp == msg.header.stamp), None),
                        what="place_pose")
        assert pose.header.frame_id == frame.frame_id
        assert np.allclose([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z], got)
        # status changes when the found state does (the very first frame may still lack depth)
        assert g.wait_status(status).startswith("found red ball")


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_stop_publishes_empty_results_and_no_target_pose_for_5_s(frame):
    with _graph() as g:
        feed = Feeder(g, frame)
        g.send_command("pick up the red ball")
        feed.result(lambda m: bool(m.detections) and m.detections[0].has_position)
        g.send_command("stop")
        g.wait_status("stopped")
        first = feed.n
        stopped = feed.result(lambda m: m.action == "stop", after=first)
        assert stopped.intent == "stop" and stopped.target == "" and list(stopped.detections) == []
        begin = stopped.header.stamp.sec - T0
        end = time.monotonic() + 5.0
        while time.monotonic() < end:
            feed.publish()
            time.sleep(0.1)
        later = [m for m in g.detections() if m.header.stamp.sec - T0 >= begin]
        assert len(later) >= 3
        assert all(m.action == "stop" and not m.detections for m in later)
        assert not [p for p in g.cam()["poses"] if p.header.stamp.sec - T0 >= begin]
        assert g.statuses()[-1] == "stopped"
        g.send_command("pick up the red ball")  # a later command starts again
        feed.result(lambda m: m.target == "red ball" and bool(m.detections), after=feed.n)


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_no_the_other_one_moves_to_the_other_red_ball_and_stays_for_5_frames(frame):
    balls = [o.box for o in frame.objects if o.color == "red"]
    assert len(balls) == 2
    with _graph() as g:
        feed = Feeder(g, frame)
        g.send_command("pick up the red ball")
        first = feed.result(lambda m: bool(m.detections))
        which = int(np.argmax([iou(roi_box(first.detections[0].roi), b) for b in balls]))
        assert iou(roi_box(first.detections[0].roi), balls[which]) >= 0.5
        g.send_command("no, the other one")
        g.wait_status("(not that one)")
        start = feed.n
        feed.result(lambda m: True, after=start)
        seen = []
        while len(seen) < 5:
            msg = feed.result(lambda m: m.header.stamp.sec - T0 > (seen[-1] if seen else start - 1), after=start)
            seen.append(msg.header.stamp.sec - T0)
            assert msg.detections, "the other red ball must be found"
            assert iou(roi_box(msg.detections[0].roi), balls[1 - which]) >= 0.5


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_place_point_in_the_planners_frame_with_static_extrinsics(frame):
    """target_frame + camera_extrinsics: place_target_position and place_pose are T * place_position
    (within 1 mm), with frame_id = target_frame and the image stamp."""
    from clip_perception.transforms import parse_extrinsics

    extrinsics = "0.1 -0.2 0.9 0.0 0.7071068 0.0 0.7071068"
    T = parse_extrinsics(extrinsics)
    with graph(camera_qos=RELIABLE, use_depth=True, qos="reliable", sync_slop=0.05, color_prior_weight=0.5,
               no_image_warn_s=60.0, target_frame="base_link", camera_extrinsics=extrinsics) as g:
        places = []
        g.tester.create_subscription(PoseStamped, f"{g.ns}/place_pose", g._collector(places), RELIABLE)
        feed = Feeder(g, frame)
        g.send_command("put the red ball on the blue box")
        msg = feed.result(lambda m: m.has_place_position and m.has_place_target_position)
        assert msg.target_frame == "base_link"
        optical = np.array([msg.place_position.x, msg.place_position.y, msg.place_position.z])
        framed = np.array([msg.place_target_position.x, msg.place_target_position.y, msg.place_target_position.z])
        assert np.linalg.norm(framed - T.apply(optical[None])[0]) < 1e-3
        pose = wait_for(lambda: next((p for p in list(places) if p.header.stamp == msg.header.stamp), None),
                        what="place_pose")
        assert pose.header.frame_id == "base_link"
        got = np.array([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z])
        assert np.linalg.norm(got - framed) < 1e-6
