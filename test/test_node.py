"""The ROS 2 node (clip_perception.node) with real rclpy, in one process.

Each graph test builds its own ``rclpy.Context``, the node with an injected test encoder
(``fake_encoders.ColorTestEncoder``: it "sees" colours, so the red ball is known to win),
a tester node with publishers / subscribers, and a ``MultiThreadedExecutor`` spinning both
in a background thread; everything is shut down in ``finally``.  Topic namespaces are unique
per test and ``ROS_DOMAIN_ID`` is per pytest process (conftest.py).  The life-cycle tests
start ``clip_perception_node`` as a subprocess with ``pretrained:=none`` (random ViT-B-32).

No assertion is about timing: waits have generous timeouts and only guard against hangs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import Marker, MarkerArray

from clip_perception import geometry, messages
from clip_perception.decode import image_fields_from_depth as depth_to_image_fields, image_fields_from_rgb as rgb_to_image_fields
from clip_perception.msg import TargetDetectionArray
from clip_perception.node import ClipPerceptionNode
from clip_perception.srv import Locate, SetCommand

from fake_encoders import ColorTestEncoder, SlowEncoder

REPO = Path(__file__).resolve().parents[1]
NODE_EXE = REPO / ".venv" / "bin" / "clip_perception_node"

STAMP = Time(sec=1_700_000_000, nanosec=123)
FRAME = "cam_color_optical_frame"
W, H = 640, 480
K = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])
BALL_CENTER, BALL_R = (200, 260), 45
BALL_BOX = (BALL_CENTER[0] - BALL_R, BALL_CENTER[1] - BALL_R, BALL_CENTER[0] + BALL_R + 1, BALL_CENTER[1] + BALL_R + 1)
BLUE_BOX = (400, 200, 500, 300)  # x1, y1, x2 (exclusive), y2 (exclusive)
VOICE_NOISE = ["", "   ", "Thank you.", "[BLANK_AUDIO]", "!"]
WAIT = 30.0  # seconds: hang guard only


def scene() -> np.ndarray:
    """(480, 640, 3) uint8 RGB: grey table, red ball (centre (200, 260), r 45), blue box."""
    rgb = np.full((H, W, 3), 128, np.uint8)
    cv2.circle(rgb, BALL_CENTER, BALL_R, (220, 30, 30), -1)
    cv2.rectangle(rgb, BLUE_BOX[:2], (BLUE_BOX[2] - 1, BLUE_BOX[3] - 1), (40, 60, 210), -1)
    return rgb


def stamp_plus(stamp: Time, seconds: float) -> Time:
    return messages.ns_to_stamp(messages.stamp_to_ns(stamp) + int(round(seconds * 1e9)))


def image_msg(rgb: np.ndarray, stamp: Time, frame: str = FRAME) -> Image:
    return Image(header=Header(stamp=stamp, frame_id=frame), **rgb_to_image_fields(rgb))


def depth_msg(depth: np.ndarray, stamp: Time, encoding: str = "32FC1", frame: str = FRAME) -> Image:
    return Image(header=Header(stamp=stamp, frame_id=frame), **depth_to_image_fields(depth, encoding))


def info_msg(stamp: Time, k: np.ndarray = K, frame: str = FRAME) -> CameraInfo:
    msg = CameraInfo(header=Header(stamp=stamp, frame_id=frame), width=W, height=H)
    msg.k = [float(v) for v in np.asarray(k).ravel()]
    return msg


def iou(a, b) -> float:
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    return inter / ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter)


def roi_box(roi) -> tuple:
    return (roi.x_offset, roi.y_offset, roi.x_offset + roi.width, roi.y_offset + roi.height)


def wait_for(pred, timeout: float = WAIT, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class GateEncoder:
    """Wraps an encoder; while ``gate_on``, ``encode_boxes`` signals ``entered`` and blocks until
    ``release`` — a deterministic "inference in progress" for the command-during-inference test."""

    def __init__(self, inner):
        self.inner = inner
        self.gate_on = False
        self.entered = threading.Event()
        self.release = threading.Event()

    @property
    def logit_scale(self):
        return self.inner.logit_scale

    device = "cpu"

    def encode_texts(self, texts):
        return self.inner.encode_texts(texts)

    def encode_boxes(self, rgb, boxes, mode="crop", size=None):
        if self.gate_on:
            self.entered.set()
            self.release.wait(WAIT)
        return self.inner.encode_boxes(rgb, boxes, mode=mode, size=size)


class Graph:
    """A node under test + tester node in one fresh context (use :func:`graph`)."""

    def __init__(self):
        self.ns = f"/t{uuid.uuid4().hex[:10]}"
        self.ctx = rclpy.Context()
        self.node = None
        self.tester = None
        self.executor = None
        self.thread = None

    def setup(self, encoder, overrides: dict, cameras=("",), camera_qos=None, cli_args=None) -> None:
        rclpy.init(context=self.ctx)
        params = [Parameter(name, value=value) for name, value in overrides.items()]
        kwargs = dict(context=self.ctx, namespace=self.ns, parameter_overrides=params)
        if cli_args:
            kwargs["cli_args"] = cli_args
        self.node = ClipPerceptionNode(encoder=encoder, **kwargs)
        self.tester = rclpy.create_node(f"tester_{uuid.uuid4().hex[:6]}", context=self.ctx)
        qos = camera_qos or qos_profile_sensor_data
        reliable = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        self.lock = threading.Lock()
        self.cams = {}
        for cam in cameras:
            prefix = f"{self.ns}/{cam}/" if cam else f"{self.ns}/"
            entry = {
                "image": self.tester.create_publisher(Image, prefix + "image", qos),
                "depth": self.tester.create_publisher(Image, prefix + "depth", qos),
                "info": self.tester.create_publisher(CameraInfo, prefix + "camera_info", qos),
                "detections": [],
                "poses": [],
                "markers": [],
            }
            self.tester.create_subscription(TargetDetectionArray, prefix + "detections",
                                            self._collector(entry["detections"]), reliable)
            self.tester.create_subscription(PoseStamped, prefix + "target_pose", self._collector(entry["poses"]),
                                            reliable)
            self.tester.create_subscription(MarkerArray, prefix + "markers", self._collector(entry["markers"]),
                                            reliable)
            self.cams[cam] = entry
        self.status = []
        self.tester.create_subscription(String, f"{self.ns}/status", self._collector(self.status, lambda m: m.data),
                                        reliable)
        self.command_pub = self.tester.create_publisher(String, f"{self.ns}/command", reliable)
        self.set_command = self.tester.create_client(SetCommand, f"{self.ns}/set_command")
        self.locate = self.tester.create_client(Locate, f"{self.ns}/locate")
        self.executor = MultiThreadedExecutor(num_threads=8, context=self.ctx)
        self.executor.add_node(self.node)
        self.executor.add_node(self.tester)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        if overrides.get("image_transport", "raw") == "raw":
            for entry in self.cams.values():
                wait_for(lambda: entry["image"].get_subscription_count() > 0, what="image subscription")
        wait_for(lambda: self.command_pub.get_subscription_count() > 0, what="command subscription")
        wait_for(lambda: all(self.tester.count_publishers(f"{self.ns}/{c + '/' if c else ''}detections") > 0
                             for c in self.cams), what="detections publisher")

    def _collector(self, sink, convert=lambda m: m):
        def callback(msg):
            with self.lock:
                sink.append(convert(msg))
        return callback

    def cam(self, name: str = "") -> dict:
        return self.cams[name]

    def detections(self, cam: str = "") -> list:
        with self.lock:
            return list(self.cams[cam]["detections"])

    def statuses(self) -> list:
        with self.lock:
            return list(self.status)

    def send_command(self, text: str) -> None:
        self.command_pub.publish(String(data=text))

    def wait_status(self, text: str, start: int = 0) -> str:
        return wait_for(lambda: next((s for s in self.statuses()[start:] if text in s), None),
                        what=f"status containing {text!r} (have {self.statuses()})")

    def publish(self, rgb, stamp, cam: str = "", frame: str = FRAME, depth=None, depth_stamp=None,
                info_stamp=None, depth_encoding="32FC1") -> None:
        entry = self.cams[cam]
        if depth is not None:
            entry["depth"].publish(depth_msg(depth, depth_stamp or stamp, depth_encoding, frame))
        if info_stamp is not None:
            entry["info"].publish(info_msg(info_stamp, frame=frame))
        entry["image"].publish(image_msg(rgb, stamp, frame))

    def result_for(self, stamp, cam: str = "", pred=lambda m: True, **publish_kwargs) -> TargetDetectionArray:
        """Publish the frame every 0.25 s (best effort may drop) until its result arrives."""
        want = messages.stamp_to_ns(stamp)
        end = time.monotonic() + WAIT
        rgb = publish_kwargs.pop("rgb", None)
        rgb = scene() if rgb is None else rgb
        while time.monotonic() < end:
            self.publish(rgb, stamp, cam=cam, **publish_kwargs)
            t_next = time.monotonic() + 0.25
            while time.monotonic() < t_next:
                for msg in self.detections(cam):
                    if messages.stamp_to_ns(msg.header.stamp) == want and pred(msg):
                        return msg
                time.sleep(0.02)
        raise AssertionError(f"no detections for stamp {want} on camera {cam!r}")

    def call(self, client, request, timeout: float = WAIT):
        assert client.wait_for_service(timeout_sec=WAIT)
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        assert done.wait(timeout), "service call timed out"
        return future.result()

    def close(self) -> None:
        try:
            if self.node is not None:
                self.node.stop()
            if self.executor is not None:
                self.executor.shutdown(timeout_sec=5.0)
            if self.thread is not None:
                self.thread.join(5.0)
            if self.node is not None:
                self.node.destroy_node()
            if self.tester is not None:
                self.tester.destroy_node()
        finally:
            rclpy.try_shutdown(context=self.ctx)


@contextlib.contextmanager
def graph(encoder=None, cams=("",), camera_qos=None, cli_args=None, **overrides):
    overrides.setdefault("use_depth", False)
    overrides.setdefault("mode", "crop")
    overrides.setdefault("no_image_warn_s", 60.0)
    g = Graph()
    try:
        g.setup(encoder if encoder is not None else ColorTestEncoder(), overrides, cameras=cams,
                camera_qos=camera_qos, cli_args=cli_args)
        yield g
    finally:
        g.close()


# ---------------------------------------------------------------------------- node in-process
@pytest.mark.ros
@pytest.mark.timeout(120)
def test_red_ball_detection_carries_image_header_and_command():
    """Best-effort rgb8 frames + "pick up the red ball" -> TargetDetectionArray with the image's
    exact header, action/target parsed, best ROI on the ball, 2D only (use_depth false)."""
    with graph() as g:
        debug = []
        g.tester.create_subscription(Image, f"{g.ns}/debug_image", g._collector(debug), 10)
        wait_for(lambda: g.node.cameras[0].debug_pub.get_subscription_count() > 0, what="debug subscriber")
        g.send_command("pick up the red ball")
        g.wait_status("looking for: red ball")
        msg = g.result_for(STAMP, pred=lambda m: m.target == "red ball")
        assert msg.header.stamp.sec == 1_700_000_000 and msg.header.stamp.nanosec == 123
        assert msg.header.frame_id == FRAME
        assert (msg.command, msg.action, msg.target) == ("pick up the red ball", "pick up", "red ball")
        assert msg.detections, "the red ball must be found"
        best = msg.detections[0]
        assert best.label == "red ball"
        assert iou(roi_box(best.roi), BALL_BOX) > 0.8
        assert not best.has_position
        status = g.wait_status("found red ball")
        assert status == "found red ball (no 3D position)"
        # debug_image (built because someone subscribes): rgb8, same header, target box in green
        img = wait_for(lambda: next((m for m in list(debug) if m.header.stamp == STAMP), None), what="debug image")
        assert (img.encoding, img.width, img.height, img.header.frame_id) == ("rgb8", W, H, FRAME)
        pixels = np.frombuffer(bytes(img.data), np.uint8).reshape(H, W, 3)
        r = best.roi
        assert tuple(pixels[r.y_offset + r.height // 2, r.x_offset]) == (0, 220, 0)


@pytest.mark.ros
@pytest.mark.timeout(120)
@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_depth_and_camera_info_paired_by_stamp_give_target_pose(encoding):
    """Depth (+10 ms) and CameraInfo (-10 ms) within sync_slop 50 ms -> 3D position from K and
    a 1.5 m plane, within 1 cm of pixel_to_point at the detection's box centre."""
    with graph(use_depth=True, sync_slop=0.05, command="pick up the red ball", use_sim_time=True) as g:
        depth = np.full((H, W), 1.5, np.float32)
        msg = g.result_for(STAMP, pred=lambda m: bool(m.detections) and m.detections[0].has_position,
                           depth=depth, depth_stamp=stamp_plus(STAMP, 0.010), info_stamp=stamp_plus(STAMP, -0.010),
                           depth_encoding=encoding)
        best = msg.detections[0]
        u, v = geometry.box_center(roi_box(best.roi))
        expected = geometry.pixel_to_point(u, v, 1.5, K)
        got = np.array([best.position.x, best.position.y, best.position.z])
        np.testing.assert_allclose(got, expected, atol=0.01)
        assert best.size.x > 0 and best.size.y > 0
        pose = wait_for(lambda: next((p for p in g.cam()["poses"]
                                      if messages.stamp_to_ns(p.header.stamp) == messages.stamp_to_ns(STAMP)), None),
                        what="target_pose")
        assert pose.header.frame_id == FRAME
        np.testing.assert_allclose([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z], expected,
                                   atol=0.01)
        assert pose.pose.orientation.w == 1.0
        markers = wait_for(lambda: next((m for m in g.cam()["markers"]
                                         if len(m.markers) == 3 and m.markers[0].header.stamp == STAMP), None),
                           what="markers")
        assert markers.markers[0].action == Marker.DELETEALL
        assert markers.markers[1].header.frame_id == FRAME
        np.testing.assert_allclose([markers.markers[1].pose.position.z], [expected[2]], atol=0.01)


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_missing_depth_or_zero_stamps_give_2d_with_one_warning_per_period():
    """No depth within the slop, or zero image stamps -> 2D detections (has_position false)
    and each warning logged once per period (no_image_warn_s = 60 s)."""
    with graph(use_depth=True, sync_slop=0.05, command="pick up the red ball") as g:
        depth = np.full((H, W), 1.5, np.float32)
        # depth 200 ms away from the image: outside the slop
        for i in range(3):
            stamp = stamp_plus(STAMP, i)
            msg = g.result_for(stamp, depth=depth, depth_stamp=stamp_plus(stamp, 0.2), info_stamp=stamp)
            assert msg.detections and not msg.detections[0].has_position
        zero = Time(sec=0, nanosec=0)

        def zero_results():
            return [m for m in g.detections() if m.header.stamp == zero]

        rgb = scene()
        while len(zero_results()) < 3:
            g.publish(rgb, zero, depth=depth, depth_stamp=zero, info_stamp=zero)
            time.sleep(0.1)
            assert len(g.node.warnings) < 50
        for msg in zero_results():
            assert msg.header.frame_id == FRAME
            assert msg.detections and not msg.detections[0].has_position
        no_depth = [w for w in g.node.warnings if "no depth" in w]
        zero_warn = [w for w in g.node.warnings if "stamps" in w and "are zero" in w]
        assert len(no_depth) == 1 and "sync_slop=0.05" in no_depth[0]
        assert len(zero_warn) == 1 and "2D detections only" in zero_warn[0]
        assert not g.cam()["poses"]


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_backlog_processes_newest_frames_not_all_in_order():
    """10 frames at 30 Hz while each inference takes 300 ms -> fewer than 10 processed, in stamp
    order, and the last processed frame is the last one published."""
    slow = SlowEncoder(ColorTestEncoder(), 0.3)
    reliable = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
    with graph(encoder=slow, qos="reliable", camera_qos=reliable, command="pick up the red ball") as g:
        g.result_for(stamp_plus(STAMP, -10.0))  # warm: the graph is connected
        rgb = scene()
        stamps = [stamp_plus(STAMP, i / 30.0) for i in range(10)]
        for stamp in stamps:
            g.publish(rgb, stamp)
            time.sleep(1.0 / 30.0)
        last = messages.stamp_to_ns(stamps[-1])
        wait_for(lambda: any(messages.stamp_to_ns(m.header.stamp) == last for m in g.detections()),
                 what="the last frame's result")
        wanted = {messages.stamp_to_ns(s) for s in stamps}
        got = [messages.stamp_to_ns(m.header.stamp) for m in g.detections()
               if messages.stamp_to_ns(m.header.stamp) in wanted]
        assert len(got) < 10
        assert got == sorted(got) and got[-1] == last
        assert g.node.processed[-1] == ("", last)


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_command_during_inference_applies_to_next_frame():
    """A command sent while a frame is being inferred is acknowledged at once (status) and
    used from the next frame on; the frame in progress keeps its command."""
    gate = GateEncoder(ColorTestEncoder())
    with graph(encoder=gate, command="pick up the red ball") as g:
        g.result_for(stamp_plus(STAMP, -10.0), pred=lambda m: m.target == "red ball")
        gate.gate_on = True
        stamp_a, stamp_b = stamp_plus(STAMP, 1.0), stamp_plus(STAMP, 2.0)
        g.publish(scene(), stamp_a)
        assert gate.entered.wait(WAIT), "inference did not start"
        start = len(g.statuses())
        g.send_command("find the blue box")
        g.wait_status("looking for: blue box", start)  # answered while inference is blocked
        reply = g.call(g.set_command, SetCommand.Request(command="find the blue box"))
        assert reply.accepted and reply.target == "blue box"
        gate.gate_on = False
        gate.release.set()
        a = wait_for(lambda: next((m for m in g.detections() if m.header.stamp == stamp_a), None), what="frame A")
        assert a.target == "red ball"
        b = g.result_for(stamp_b)
        assert (b.target, b.action) == ("blue box", "find")
        assert iou(roi_box(b.detections[0].roi), BLUE_BOX) > 0.8


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_set_command_and_locate_services():
    """set_command accepts / rejects; locate: no frames -> not found with a reason; found; a
    request command ("the purple ball") -> honest not found, current command unchanged."""
    with graph() as g:
        reply = g.call(g.locate, Locate.Request(command="", timeout=0.5))
        assert not reply.found and "no frame processed within 0.5 s" in reply.message
        reply = g.call(g.set_command, SetCommand.Request(command="pick up the red ball"))
        assert reply.accepted and reply.target == "red ball" and reply.message == "looking for: red ball"
        reply = g.call(g.set_command, SetCommand.Request(command="[BLANK_AUDIO]"))
        assert not reply.accepted and reply.target == "red ball" and reply.message.startswith("ignored: no command")
        rgb = scene()
        counter = iter(range(10**6))
        timer = g.tester.create_timer(0.1, lambda: g.publish(rgb, stamp_plus(STAMP, next(counter) * 0.1)))
        try:
            reply = g.call(g.locate, Locate.Request(command="", timeout=10.0))
            assert reply.found and reply.message == "found red ball (no 3D position)"
            assert reply.result.target == "red ball" and reply.result.header.frame_id == FRAME
            assert iou(roi_box(reply.result.detections[0].roi), BALL_BOX) > 0.8
            reply = g.call(g.locate, Locate.Request(command="the purple ball", timeout=10.0))
            assert not reply.found and reply.message == "no purple ball in view"
            assert reply.result.target == "purple ball" and reply.result.command == "the purple ball"
            assert not reply.result.detections
            reply = g.call(g.locate, Locate.Request(command="find the blue box", timeout=10.0))
            assert reply.found and iou(roi_box(reply.result.detections[0].roi), BLUE_BOX) > 0.8
            reply = g.call(g.locate, Locate.Request(command="Thank you.", timeout=10.0))
            assert not reply.found and reply.message.startswith("ignored: no command")
            assert g.node.commands.snapshot().command.target == "red ball"
        finally:
            timer.cancel()
            g.tester.destroy_timer(timer)


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_voice_noise_does_not_replace_target():
    """"", "   ", "Thank you.", "[BLANK_AUDIO]", "!" on the command topic are ignored (status
    says so) and the red ball stays the target; non-English is reported as unsupported."""
    with graph() as g:
        g.send_command("pick up the red ball")
        g.wait_status("looking for: red ball")
        for text in VOICE_NOISE + ["拿起红色的球"]:
            start = len(g.statuses())
            g.send_command(text)
            line = g.wait_status("ignored: ", start)
            assert "still looking for: red ball" in line
            assert ("unsupported" in line) if text == "拿起红色的球" else line.startswith("ignored: no command")
        msg = g.result_for(STAMP)
        assert msg.target == "red ball" and msg.command == "pick up the red ball"
        assert msg.detections and iou(roi_box(msg.detections[0].roi), BALL_BOX) > 0.8


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_runtime_parameters_threshold_range_and_integer_for_float(tmp_path):
    """score_threshold 0.99 -> next result empty; 1.5 rejected with a reason, 0.99 kept; an
    integer for a float parameter (YAML ``score_threshold: 0``, run time ``0``) is accepted."""
    yaml = tmp_path / "params.yaml"
    yaml.write_text("/**/clip_perception:\n  ros__parameters:\n    score_threshold: 0\n    sync_slop: 1\n"
                    "    command: pick up the red ball\n")
    with graph(cli_args=["--ros-args", "--params-file", str(yaml)]) as g:
        node = g.node
        assert node.config.score_threshold == 0.0 and isinstance(node.config.score_threshold, float)
        assert node.get_parameter("sync_slop").type_ == Parameter.Type.DOUBLE
        assert node.get_parameter("sync_slop").value == 1.0
        assert g.result_for(stamp_plus(STAMP, 1.0)).detections
        [ok] = node.set_parameters([Parameter("score_threshold", value=0.99)])
        assert ok.successful
        assert not g.result_for(stamp_plus(STAMP, 2.0)).detections
        [bad] = node.set_parameters([Parameter("score_threshold", value=1.5)])
        assert not bad.successful and "score_threshold" in bad.reason and "1.5" in bad.reason
        assert node.get_parameter("score_threshold").value == 0.99 and node.config.score_threshold == 0.99
        [bad] = node.set_parameters([Parameter("score_threshold", value="high")])
        assert not bad.successful and "number" in bad.reason
        [bad] = node.set_parameters([Parameter("use_depth", value=True)])
        assert not bad.successful  # read-only (runtime=False)
        [ok] = node.set_parameters([Parameter("score_threshold", value=0)])
        assert ok.successful and node.get_parameter("score_threshold").value == 0.0
        assert node.get_parameter("score_threshold").type_ == Parameter.Type.DOUBLE
        assert g.result_for(stamp_plus(STAMP, 3.0)).detections
        [ok] = node.set_parameters([Parameter("command", value="find the blue box")])
        assert ok.successful
        b = g.result_for(stamp_plus(STAMP, 4.0), pred=lambda m: m.target == "blue box")
        assert iou(roi_box(b.detections[0].roi), BLUE_BOX) > 0.8


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_shipped_yaml_loads_into_the_node(repo_root, tmp_path):
    """Every value of config/clip_perception.yaml is accepted by the node (injected encoder).

    The file's top-level key is rewritten to ``/**/clip_perception`` so that it matches the
    test's namespaced node (rcl matches the key against the fully qualified node name)."""
    from clip_perception.params import load_params_file, make_config

    shipped = repo_root / "config" / "clip_perception.yaml"
    lines = shipped.read_text().splitlines()
    key = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    lines[key] = "/**/clip_perception:"
    yaml = tmp_path / "shipped.yaml"
    yaml.write_text("\n".join(lines) + "\n")
    expected = make_config(load_params_file(shipped))
    with graph(cli_args=["--ros-args", "--params-file", str(yaml)], mode=expected.mode,
               no_image_warn_s=expected.no_image_warn_s, use_depth=expected.use_depth) as g:
        assert g.node.config == expected
        assert g.node.get_parameter("cameras").value == []


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_no_image_and_undecodable_image_warn_and_the_node_keeps_running():
    """No image for no_image_warn_s -> a warning naming the topic and its QoS; an image with an
    unknown encoding -> a decode warning; the next good frame is still processed."""
    with graph(no_image_warn_s=0.5, command="pick up the red ball") as g:
        topic = f"{g.ns}/image"
        line = wait_for(lambda: next((w for w in list(g.node.warnings) if w.startswith("no image on")), None),
                        what="no-image warning")
        assert topic in line and "BEST_EFFORT" in line
        bad = image_msg(scene(), STAMP)
        bad.encoding = "not_an_encoding"
        g.cam()["image"].publish(bad)
        wait_for(lambda: any("cannot decode image" in w and topic in w for w in list(g.node.warnings)),
                 what="decode warning")
        msg = g.result_for(stamp_plus(STAMP, 1.0))
        assert msg.detections and msg.target == "red ball"


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_depth_from_another_frame_gives_2d_with_one_warning_unless_depth_registered():
    """Depth whose header.frame_id ("cam_depth_optical_frame") differs from the colour image's
    -> 2D only and one throttled warning naming both frames; depth_registered:=true (run time)
    -> 3D from the same depth (1.5 m plane, within 1 cm of pixel_to_point)."""
    other = "cam_depth_optical_frame"
    with graph(use_depth=True, sync_slop=0.05, command="pick up the red ball") as g:
        cam = g.cam()
        depth = np.full((H, W), 1.5, np.float32)

        def publish(stamp):
            cam["depth"].publish(depth_msg(depth, stamp, frame=other))
            cam["info"].publish(info_msg(stamp))
            time.sleep(0.05)  # depth / camera_info first: this case is about the pair's frame_id
            cam["image"].publish(image_msg(scene(), stamp))

        for i in range(3):
            stamp = stamp_plus(STAMP, 1.0 + i)
            want = messages.stamp_to_ns(stamp)
            msg = wait_for(lambda: (publish(stamp), next((m for m in g.detections()
                                                         if messages.stamp_to_ns(m.header.stamp) == want), None))[1],
                           what=f"frame {i}")
            assert msg.detections and iou(roi_box(msg.detections[0].roi), BALL_BOX) > 0.8
            assert not any(d.has_position for d in msg.detections)
        frame_warnings = [w for w in g.node.warnings if "frame_id" in w]
        assert len(frame_warnings) == 1
        assert other in frame_warnings[0] and FRAME in frame_warnings[0] and "depth_registered" in frame_warnings[0]
        assert not g.cam()["poses"]
        [ok] = g.node.set_parameters([Parameter("depth_registered", value=True)])
        assert ok.successful and g.node.config.depth_registered
        stamp = stamp_plus(STAMP, 10.0)
        want = messages.stamp_to_ns(stamp)
        msg = wait_for(lambda: (publish(stamp), next((m for m in g.detections()
                                                     if messages.stamp_to_ns(m.header.stamp) == want), None))[1],
                       what="the registered frame")
        best = msg.detections[0]
        assert best.has_position
        u, v = geometry.box_center(roi_box(best.roi))
        np.testing.assert_allclose([best.position.x, best.position.y, best.position.z],
                                   geometry.pixel_to_point(u, v, 1.5, K), atol=0.01)


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_compressed_depth_transport_subscribes_depth_compressed_depth():
    """depth_transport: compressedDepth -> CompressedImage on depth/compressedDepth
    (compressed_depth_image_transport 16UC1: 12-byte header + 16-bit PNG, 1500 mm) gives
    3D positions at 1.5 m within 1 cm; nothing is subscribed on the raw depth topic."""
    import struct

    from sensor_msgs.msg import CompressedImage

    with graph(use_depth=True, depth_transport="compressedDepth", sync_slop=0.05,
               command="pick up the red ball") as g:
        assert g.node.get_parameter("depth_transport").value == "compressedDepth"
        pub = g.tester.create_publisher(CompressedImage, f"{g.ns}/depth/compressedDepth", qos_profile_sensor_data)
        wait_for(lambda: pub.get_subscription_count() > 0, what="compressedDepth subscription")
        assert g.cam()["depth"].get_subscription_count() == 0
        ok, png = cv2.imencode(".png", np.full((H, W), 1500, np.uint16))
        assert ok
        cam = g.cam()

        def publish(stamp):
            msg = CompressedImage(header=Header(stamp=stamp, frame_id=FRAME), format="16UC1; compressedDepth png")
            msg.data = struct.pack("<iff", 0, 0.0, 0.0) + png.tobytes()
            pub.publish(msg)
            cam["info"].publish(info_msg(stamp))
            time.sleep(0.05)
            cam["image"].publish(image_msg(scene(), stamp))

        want = messages.stamp_to_ns(STAMP)
        msg = wait_for(lambda: (publish(STAMP), next((m for m in g.detections()
                                                     if messages.stamp_to_ns(m.header.stamp) == want
                                                     and m.detections and m.detections[0].has_position), None))[1],
                       what="a 3D result from compressedDepth")
        best = msg.detections[0]
        assert iou(roi_box(best.roi), BALL_BOX) > 0.8
        u, v = geometry.box_center(roi_box(best.roi))
        np.testing.assert_allclose([best.position.x, best.position.y, best.position.z],
                                   geometry.pixel_to_point(u, v, 1.5, K), atol=0.01)


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_compressed_transport_subscribes_image_compressed():
    """image_transport: compressed -> CompressedImage on image/compressed (PNG, lossless)."""
    from sensor_msgs.msg import CompressedImage

    with graph(image_transport="compressed", command="pick up the red ball") as g:
        pub = g.tester.create_publisher(CompressedImage, f"{g.ns}/image/compressed", qos_profile_sensor_data)
        wait_for(lambda: pub.get_subscription_count() > 0, what="compressed subscription")
        ok, png = cv2.imencode(".png", cv2.cvtColor(scene(), cv2.COLOR_RGB2BGR))
        assert ok
        msg = CompressedImage(header=Header(stamp=STAMP, frame_id=FRAME), format="rgb8; png compressed bgr8")
        msg.data = png.tobytes()
        end = time.monotonic() + WAIT
        while time.monotonic() < end and not g.detections():
            pub.publish(msg)
            time.sleep(0.25)
        out = g.detections()[0]
        assert out.header.stamp == STAMP and out.header.frame_id == FRAME
        assert iou(roi_box(out.detections[0].roi), BALL_BOX) > 0.8


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_model_parameter_change_rebuilds_encoder_or_keeps_the_old_one(tmp_path):
    """pretrained:=<missing file> -> rejected with the loader's reason, old encoder kept (still
    finds the ball); pretrained:=none -> a ClipEncoder (random ViT-B-32) is built on the worker."""
    fake = ColorTestEncoder()
    with graph(encoder=fake, warmup=False, device="cpu", command="pick up the red ball") as g:
        missing = str(tmp_path / "missing_weights.pt")
        [res] = g.node.set_parameters([Parameter("pretrained", value=missing)])
        assert not res.successful
        assert "could not load model ViT-B-32" in res.reason and "keeping the current model" in res.reason
        assert g.node.get_parameter("pretrained").value == "openai"
        assert g.node.detector.encoder is fake
        assert g.result_for(STAMP).detections
        [res] = g.node.set_parameters([Parameter("pretrained", value="none")])
        assert res.successful, res.reason
        assert type(g.node.detector.encoder).__name__ == "ClipEncoder"
        assert g.node.config.pretrained == "none"
        g.wait_status("model: ViT-B-32 (none)")


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_two_cameras_publish_in_their_own_namespace_with_their_own_header():
    """cameras: [left, right] -> left/detections carries the left image header, right/... the right."""
    with graph(cams=("left", "right"), cameras=["left", "right"], command="pick up the red ball") as g:
        left_stamp, right_stamp = stamp_plus(STAMP, 1.0), stamp_plus(STAMP, 1.5)
        left = g.result_for(left_stamp, cam="left", frame="left_optical")
        right_rgb = scene()[:, ::-1].copy()  # mirrored: ball on the right
        right = g.result_for(right_stamp, cam="right", frame="right_optical", rgb=right_rgb)
        assert left.header.frame_id == "left_optical" and left.header.stamp == left_stamp
        assert right.header.frame_id == "right_optical" and right.header.stamp == right_stamp
        assert all(m.header.frame_id == "left_optical" for m in g.detections("left"))
        assert all(m.header.frame_id == "right_optical" for m in g.detections("right"))
        mirrored = (W - BALL_BOX[2], BALL_BOX[1], W - BALL_BOX[0], BALL_BOX[3])
        assert iou(roi_box(left.detections[0].roi), BALL_BOX) > 0.8
        assert iou(roi_box(right.detections[0].roi), mirrored) > 0.8


# ---------------------------------------------------------------------------- subprocess life cycle
def _node_env(tmp_path) -> dict:
    env = dict(os.environ)
    env["HOME"] = str(tmp_path)  # empty CLIP / Hugging Face caches, ROS logs in tmp
    env["HF_HOME"] = str(tmp_path / "hf")
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["ROS_LOG_DIR"] = str(tmp_path / "roslog")
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def _start_node(tmp_path, ns: str, *params: str) -> subprocess.Popen:
    assert NODE_EXE.exists(), f"{NODE_EXE} missing: run bash scripts/setup_env.sh"
    args = [str(NODE_EXE), "--ros-args", "-r", f"__ns:={ns}", "-p", "device:=cpu", "-p", "use_depth:=false"]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, env=_node_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("value,expected", [("1", 1), ("3", 3), ("0", None)])
def test_executable_sets_cpu_threads(tmp_path, value, expected):
    """The executable applies ``cpu_threads`` (process-wide torch threads) and names the count
    in its ready line; 0 = auto = usable CPUs - 1 (at least 1)."""
    from clip_perception.device import resolve_cpu_threads

    want = resolve_cpu_threads(0) if expected is None else expected
    proc = _start_node(tmp_path, f"/c{uuid.uuid4().hex[:8]}", "pretrained:=none", "warmup:=false",
                       f"cpu_threads:={value}")
    lines: list = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        ready = wait_for(lambda: next((ln for ln in list(lines) if "ready: model" in ln), None), timeout=90,
                         what="the ready line")
        assert f"({want} CPU threads)" in ready, ready
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)
    assert proc.returncode == 0


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_inference_exits_zero_without_traceback(tmp_path, sig):
    """clip_perception_node (random ViT-B-32, CPU) is fed frames continuously with a standing
    command, so after its first result it is always inferring; a signal then -> the node says
    it waits for the frame in progress, exits with code 0 and prints no traceback."""
    ns = f"/sig{uuid.uuid4().hex[:8]}"
    # reliable camera QoS: under load best effort loses whole frames and the node may sit idle
    proc = _start_node(tmp_path, ns, "pretrained:=none", "warmup:=false", "mode:=crop", "max_proposals:=16",
                       "proposal_methods:=[grid]", "command:=pick up the red ball", "qos:=reliable")
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    tester = rclpy.create_node(f"sig_tester_{uuid.uuid4().hex[:6]}", context=ctx)
    executor = MultiThreadedExecutor(num_threads=2, context=ctx)
    thread = None
    try:
        got = []
        reliable = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        tester.create_subscription(TargetDetectionArray, f"{ns}/detections", got.append, reliable)
        pub = tester.create_publisher(Image, f"{ns}/image", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        frame = image_msg(scene(), STAMP)
        count = iter(range(10**6))

        def feed():
            frame.header.stamp = stamp_plus(STAMP, next(count) * 0.1)
            pub.publish(frame)

        tester.create_timer(0.1, feed)
        executor.add_node(tester)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        wait_for(lambda: got or proc.poll() is not None, timeout=180, what="the node's first result")
        assert got, f"node exited early (rc {proc.poll()}): {proc.communicate()[1][-3000:]}"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
        assert "waiting for the frame in progress" in err + out  # the signal came during inference
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        executor.shutdown(timeout_sec=5.0)
        tester.destroy_node()
        rclpy.try_shutdown(context=ctx)
        if thread is not None:
            thread.join(5.0)


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("delay_s", [0.3, 2.5])
def test_signal_during_start_up_exits_zero_without_traceback(tmp_path, sig, delay_s):
    """A signal while the executable imports its modules or builds the model -> exit code 0,
    no traceback (the start-up handler installed before the heavy imports)."""
    proc = _start_node(tmp_path, f"/s{uuid.uuid4().hex[:8]}", "pretrained:=none")
    try:
        time.sleep(delay_s)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in out + err


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_missing_weights_offline_exit_nonzero_naming_model_and_tag(tmp_path):
    """pretrained:=openai with empty caches and no network -> non-zero exit within ~20 s (plus
    interpreter start), a fatal message naming the model, the tag and the cache; no traceback."""
    proc = _start_node(tmp_path, f"/w{uuid.uuid4().hex[:8]}", "pretrained:=openai", "model_name:=ViT-B-32")
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = out + err
    assert proc.returncode not in (0, None)
    assert "ViT-B-32" in text and "openai" in text
    assert "cache" in text.lower()
    assert "Traceback" not in text
