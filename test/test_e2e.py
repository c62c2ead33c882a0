"""End to end: separate processes talking over real ROS 2 topics, plus real data and ``make demo``.

Cases (one test each):

* sim camera process -> node process (wall time): the test sends "pick up the red ball" on ``command`` like a voice node and checks the
  detections against the sim's latched ``ground_truth``;
* the same with ``use_sim_time`` (node ``-p use_sim_time:=true``, sim ``/clock``);
* rosbag2 replay (``clip_perception_replay`` of a bag the test writes with
  :func:`replay.write_test_bag`: rgb8 + 16UC1 depth + camera_info) -> node;
* every RGB-D folder of ``../shared/data/real`` through ``clip-perception detect``;
* ``make demo`` exits 0 and prints a detection line.

The node runs in its own process through ``test/node_with_test_encoder.py``: the product's
``ClipPerceptionNode`` with ``fake_encoders.ColorTestEncoder`` (it sees only colour), so
the answer is known without CLIP weights.  Node parameters used by the graph tests:
``proposal_methods:=[contours,depth]``.  Reason: with selective search the colour prior
ranks a tight box inside the ball (its brightly lit red core) above the whole ball
(IoU ~0.4 with the ball's box; see the report of this change), so the whole-object
proposal methods are used to make the known answer "the ball's box".

Scene: sim seed 43 with 6 objects holds a red ball (radius 3.6 cm) and no other red
object (found by scanning ``sim.scene.default_object_specs``).

3D reference point: with a support plane the node reports the object's *centre* (instance
mask + table plane, ``position_is_centre``; checked within 2 cm of the GT centre).  Without
one it reports the *visible surface* of the object (median depth
in the box, back-projected through the box centre; ``geometry.box_position``).  The
ground truth gives the ball's centre ``c`` and radius ``r``; the reference is the point
of the sphere nearest the camera on the line of sight to its centre,
``c - r * c / |c|``.  The median visible depth of a sphere lies between that point and
``0.3 r`` (about 1.1 cm here) behind it, so "within 2 cm of the visible-surface point" is
the requirement checked.  Comparing with the centre would need a tolerance of ``r + 2 cm``;
that weaker check is made too, as a sanity check that the point is on the ball.

Camera QoS: the graph tests run the camera topics RELIABLE (``qos:=reliable`` on the sim and
the node).  With the default best-effort QoS, 1-2 MB images between processes on a loaded
2-core machine were mostly lost (the node saw no image for over 20 s at a time, and depth
rarely paired), which would make these tests depend on the machine's load.

No assertion is about timing; timeouts only guard against hangs.  Every child process
is stopped (SIGINT, then SIGKILL) in ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import clip_perception.pipeline  # noqa: F401  torch/triton before MuJoCo: see evaluate._scene_module

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import String

from clip_perception import cli
from clip_perception.msg import TargetDetectionArray
from clip_perception.tools.replay import load_intrinsics, write_test_bag

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
LAUNCHER = REPO / "test" / "node_with_test_encoder.py"
SEED, NUM_OBJECTS = 43, 6
COMMAND, TARGET = "pick up the red ball", "red ball"
NODE_PARAMS = ("proposal_methods:=[contours,depth]",)
SIM_START_S, SIM_RATE_HZ = 1000.0, 2.0
POSITION_TOL_M = 0.02
WAIT_S = 120.0  # hang guard only

LATCHED = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


# ----------------------------------------------------------------------------- helpers
def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)  # ROS_DOMAIN_ID / discovery range from conftest.py
    env["PYTHONUNBUFFERED"] = "1"
    env["ROS_LOG_DIR"] = str(tmp_path / "roslog")
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("MUJOCO_GL", "osmesa")
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


class Proc:
    """A child process whose stdout + stderr go to ``tmp_path/<name>.log``."""

    def __init__(self, name: str, argv: list, tmp_path: Path):
        self.name = name
        self.log = tmp_path / f"{name}.log"
        self._f = open(self.log, "w")
        self.p = subprocess.Popen(argv, cwd=REPO, env=_env(tmp_path), stdout=self._f, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.p.poll() is None

    def tail(self, n: int = 25) -> str:
        return f"--- {self.name} (exit {self.p.poll()}) ---\n" + "\n".join(
            self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self._f.close()
        return self.p.returncode


class RosTester:
    """The test's own rclpy node: command publisher, subscribers, spun in a thread."""

    def __init__(self, ns: str):
        self.ns = ns
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, args=[])
        self.node = rclpy.create_node(f"e2e_tester_{uuid.uuid4().hex[:8]}", context=self.ctx)
        self.dets: list = []
        self.status: list = []
        self.images: dict = {}  # stamp ns -> frame_id
        self.clock: set = set()
        self.gt = None
        n = self.node
        n.create_subscription(TargetDetectionArray, f"{ns}/detections", self.dets.append, RELIABLE)
        n.create_subscription(String, f"{ns}/status", lambda m: self.status.append(m.data), LATCHED)
        n.create_subscription(String, f"{ns}/ground_truth", self._on_gt, LATCHED)
        # RELIABLE like the cameras in these tests: a best-effort reader of ~1 MB frames on a
        # loaded machine can lose every frame, and the header checks need the images' stamps.
        n.create_subscription(Image, f"{ns}/image", self._on_image, RELIABLE)
        n.create_subscription(Clock, "/clock", lambda m: self.clock.add(_ns(m.clock)), RELIABLE)
        self.cmd_pub = n.create_publisher(String, f"{ns}/command", RELIABLE)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.ctx)
        self.executor.add_node(n)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_gt(self, msg: String) -> None:
        self.gt = json.loads(msg.data)

    def _on_image(self, msg: Image) -> None:
        self.images[_ns(msg.header.stamp)] = msg.header.frame_id

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)
        self.thread.join(5.0)


def _ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def wait_for(pred, what: str, procs=(), timeout: float = WAIT_S):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        for p in procs:
            if not p.alive():
                raise AssertionError(f"{p.name} exited while waiting for {what}\n{p.tail()}")
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout:g} s\n" + "\n".join(p.tail() for p in procs))


def send_command(t: RosTester, text: str, target: str, procs) -> None:
    """Publish ``text`` on ``command`` (as a voice node would) until ``status`` acknowledges it."""
    last = [0.0]

    def acked():
        if any(s.startswith("looking for") and target in s for s in t.status):
            return True
        if t.cmd_pub.get_subscription_count() > 0 and time.monotonic() - last[0] > 2.0:
            t.cmd_pub.publish(String(data=text))
            last[0] = time.monotonic()
        return False

    wait_for(acked, f"status 'looking for: {target}'", procs)


def roi_box(roi) -> np.ndarray:
    return np.array([roi.x_offset, roi.y_offset, roi.x_offset + roi.width, roi.y_offset + roi.height], float)


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def front_point(center, radius: float) -> np.ndarray:
    """Point of a sphere (centre ``center`` in the optical frame, metres) nearest the camera:
    ``c - r c / |c|`` (on the line of sight to the centre)."""
    c = np.asarray(center, dtype=np.float64)
    return c - radius * c / np.linalg.norm(c)


def check_red_ball(msg, ball: dict) -> None:
    """Best detection = the red ball: IoU >= 0.5 with its GT box, 3D within 2 cm of its
    visible-surface point (module docstring), and on the ball (within r + 2 cm of its centre)."""
    assert msg.target == TARGET and msg.command == COMMAND
    best = msg.detections[0]
    box_iou = iou(roi_box(best.roi), ball["box"])
    assert box_iou >= 0.5, f"best box {roi_box(best.roi)} vs GT red ball {ball['box']}: IoU {box_iou:.2f}"
    assert best.has_position
    p = np.array([best.position.x, best.position.y, best.position.z])
    r = ball["size"][0] / 2.0
    if best.position_is_centre:  # the ball's centre from its mask and the table plane (segment.py)
        err = float(np.linalg.norm(p - np.asarray(ball["center_optical"])))
        assert err <= POSITION_TOL_M, f"position {p} is {100 * err:.1f} cm from the GT centre"
        return
    err = float(np.linalg.norm(p - front_point(ball["center_optical"], r)))
    assert err <= POSITION_TOL_M, f"position {p} is {100 * err:.1f} cm from the GT visible-surface point"
    assert float(np.linalg.norm(p - np.asarray(ball["center_optical"]))) <= r + POSITION_TOL_M
    assert p[2] < ball["center_optical"][2]  # the surface is in front of the centre


def first_3d_result(t: RosTester):
    for m in list(t.dets):
        if m.command == COMMAND and m.detections and m.detections[0].has_position and _ns(m.header.stamp) in t.images:
            return m
    return None


def sim_argv(ns: str, *params: str) -> list:
    argv = [PY, "-m", "clip_perception.sim.camera_node", "--ros-args", "-r", f"__ns:={ns}",
            "-p", f"seed:={SEED}", "-p", f"num_objects:={NUM_OBJECTS}", "-p", f"rate_hz:={SIM_RATE_HZ}"]
    for p in params:
        argv += ["-p", p]
    return argv


def node_argv(ns: str, *params: str) -> list:
    argv = [PY, str(LAUNCHER), "--ros-args", "-r", f"__ns:={ns}"]
    for p in NODE_PARAMS + params:
        argv += ["-p", p]
    return argv


def _run_sim_case(tmp_path: Path, node_params: tuple, sim_params: tuple, sim_clock: bool = False):
    """Start sim + node, send the command, return (GT, the first 3D result, all results,
    image stamps -> frame_id, /clock times).  With ``sim_clock``, also wait until the
    result's stamp has arrived on ``/clock``: the sim publishes it before the image, but
    callbacks of different topics run in no guaranteed order in the tester."""
    ns = f"/e2e_{uuid.uuid4().hex[:8]}"
    procs = []
    t = None
    try:
        procs.append(Proc("sim_camera", sim_argv(ns, *sim_params), tmp_path))
        procs.append(Proc("node", node_argv(ns, *node_params), tmp_path))
        t = RosTester(ns)
        wait_for(lambda: t.gt is not None, "ground_truth", procs)
        send_command(t, COMMAND, TARGET, procs)
        msg = wait_for(lambda: first_3d_result(t), "detections with a 3D position", procs)
        if sim_clock:
            stamp = _ns(msg.header.stamp)
            wait_for(lambda: stamp in t.clock, f"/clock message at the result's stamp {stamp} ns", procs)
        time.sleep(0.5)  # a few more results for the all-results checks below
        return t.gt, msg, list(t.dets), dict(t.images), set(t.clock)
    finally:
        if t is not None:
            t.close()
        for p in procs:
            p.stop()


def _check_sim_results(gt: dict, msg, dets: list, images: dict) -> None:
    balls = [o for o in gt["objects"] if o["name"] == TARGET]
    assert len(balls) == 1 and not [o for o in gt["objects"] if o["color"] == "red" and o["name"] != TARGET]
    ball = balls[0]
    check_red_ball(msg, ball)
    # header: the source image's stamp and optical frame, unchanged
    assert msg.header.frame_id == gt["frame_id"] == images[_ns(msg.header.stamp)]
    period = int(round(1e9 / SIM_RATE_HZ))
    for m in dets:
        if m.command != COMMAND:
            continue
        stamp = _ns(m.header.stamp)
        assert (stamp - int(SIM_START_S * 1e9)) % period == 0, f"stamp {stamp} is not a sim frame stamp"
        assert m.header.frame_id == gt["frame_id"]
        if stamp in images:
            assert images[stamp] == m.header.frame_id
        assert m.detections and iou(roi_box(m.detections[0].roi), ball["box"]) >= 0.5


# ----------------------------------------------------------------------------- graph tests
@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sim_camera_to_node_finds_red_ball_box_3d_and_image_header(tmp_path):
    """Sim camera process -> node process over ROS 2 (wall time): the command sent on
    ``command`` gives the red ball (IoU >= 0.5), 3D within 2 cm of its visible-surface
    point, and the detections carry the image's stamp and frame_id."""
    gt, msg, dets, images, _ = _run_sim_case(tmp_path, ("qos:=reliable",), ("publish_clock:=false", "qos:=reliable"))
    _check_sim_results(gt, msg, dets, images)


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sim_time_node_with_sim_clock_stamps_results_with_sim_time(tmp_path):
    """Node with ``use_sim_time:=true`` fed by the sim camera and its ``/clock``: same answer,
    and every output stamp is simulated time (the image stamp, published on /clock), not
    wall-clock time."""
    gt, msg, dets, images, clock = _run_sim_case(tmp_path, ("use_sim_time:=true", "qos:=reliable"),
                                                 ("publish_clock:=true", "qos:=reliable"), sim_clock=True)
    _check_sim_results(gt, msg, dets, images)
    stamp = _ns(msg.header.stamp)
    assert stamp in clock, "the sim published this frame's time on /clock"
    assert stamp < 10_000 * 1_000_000_000, "stamp is simulated time (starts at 1000 s), not wall time"


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_rosbag2_replay_into_node_gives_detections_with_bag_stamps(tmp_path):
    """A rosbag2 written by the test (rgb8 + 16UC1 depth + camera_info rendered from the sim),
    replayed by ``clip_perception.tools.replay`` with ``--map`` onto image/depth/camera_info:
    the node finds the red ball with 3D and stamps every result with a bag stamp."""
    from clip_perception.sim.scene import make_scene

    with make_scene(seed=SEED, num_objects=NUM_OBJECTS) as scene:
        frame = scene.render()
    ball = frame.find(TARGET)[0]
    ball_gt = {"box": [float(v) for v in ball.box], "center_optical": list(ball.center_optical),
               "size": list(ball.size)}
    stamps = [1_700_000_000 * 1_000_000_000 + i * 250_000_000 for i in range(4)]
    bag = write_test_bag(tmp_path / "bag", [(frame.rgb, frame.depth)] * len(stamps), frame.K, stamps_ns=stamps,
                         frame_id="bag_camera_color_optical_frame")
    ns = f"/e2e_{uuid.uuid4().hex[:8]}"
    procs = []
    t = None
    try:
        procs.append(Proc("node", node_argv(ns, "qos:=reliable", f"command:={COMMAND}"), tmp_path))
        t = RosTester(ns)
        wait_for(lambda: any(s.startswith("looking for") and TARGET in s for s in t.status),
                 "the node (status 'looking for: red ball')", procs)
        procs.append(Proc("replay", [PY, "-m", "clip_perception.tools.replay", str(bag), "--rate", "2", "--loop",
                                     "--start-delay", "1.5",
                                     "--map", "/camera/color/image_raw:=image",
                                     "--map", "/camera/aligned_depth_to_color/image_raw:=depth",
                                     "--map", "/camera/color/camera_info:=camera_info",
                                     "--ros-args", "-r", f"__ns:={ns}"], tmp_path))
        msg = wait_for(lambda: first_3d_result(t), "detections with a 3D position from the bag", procs)
        dets = [m for m in list(t.dets) if m.command == COMMAND]
    finally:
        if t is not None:
            t.close()
        for p in procs:
            p.stop()
    check_red_ball(msg, ball_gt)  # 16UC1 millimetres: quantisation 0.5 mm, far below 2 cm
    for m in dets:
        assert _ns(m.header.stamp) in stamps
        assert m.header.frame_id == "bag_camera_color_optical_frame"


# ----------------------------------------------------------------------------- real data
REAL = {
    # folder: (colour, depth, command); 1 frame each.  Commands name things in the scenes
    # (PROVENANCE.md); with random CLIP weights only well-formedness is checked.
    "ucn_demo_rgbd": ("000000-color.png", "000000-depth.png", "pick up the red bowl"),
    "posecnn_ycb_demo_rgbd": ("000000-color.png", "000000-depth.png", "pick up the red can"),
    "osd_uoais_sample": ("image_color/learn6.png", "disparity/learn6.png", "pick up the red cereal box"),
}


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("folder", sorted(REAL))
def test_real_rgbd_folder_through_detect_gives_well_formed_detections(folder, shared_real, capsys):
    """One real RGB-D frame per folder of ../shared/data/real through ``clip-perception detect``
    (random CLIP weights, ``score_threshold=0`` so that the top 5 are always reported):
    exit 0, ROIs inside the image, confidences in [0, 1], 3D positions (where the folder has
    intrinsics) whose depth lies within the image's depth range and which project into
    their box; the OSD folder has no intrinsics, so no 3D."""
    color_name, depth_name, command = REAL[folder]
    path = shared_real / folder
    color, depth_file = path / color_name, path / depth_name
    K, scale = load_intrinsics(path)
    argv = ["detect", str(color), "--command", command, "--depth", str(depth_file), "--pretrained", "none",
            "--json", "--top-k", "5", "--set", "warmup=false", "--set", "score_threshold=0.0"]
    if K is not None:
        argv += ["--intrinsics", f"{K[0, 0]},{K[1, 1]},{K[0, 2]},{K[1, 2]}"]
    if scale:
        argv += ["--set", f"depth_scale={scale}"]
    rc = cli.main(argv)
    out = capsys.readouterr().out
    assert rc == 0
    payload = json.loads(out[out.index("{"):])
    assert payload["status"] == "ok" and payload["random_weights"] is True
    dets = payload["detections"]
    assert 1 <= len(dets) <= 5

    rgb = cv2.imread(str(color), cv2.IMREAD_COLOR)
    h, w = rgb.shape[:2]
    raw = cv2.imread(str(depth_file), cv2.IMREAD_UNCHANGED)
    depth_m = raw.astype(np.float64) * (scale or 0.001)
    valid = depth_m[raw > 0]
    for d in dets:
        roi = d["roi"]
        assert roi["x_offset"] >= 0 and roi["y_offset"] >= 0 and roi["width"] > 0 and roi["height"] > 0
        assert roi["x_offset"] + roi["width"] <= w and roi["y_offset"] + roi["height"] <= h
        assert 0.0 <= d["confidence"] <= 1.0
        if K is None:
            assert d["position"] is None
            continue
        if d["position"] is None:  # allowed only when the box holds no valid depth
            box = raw[roi["y_offset"]:roi["y_offset"] + roi["height"], roi["x_offset"]:roi["x_offset"] + roi["width"]]
            assert not (box > 0).any()
            continue
        x, y, z = d["position"]
        assert valid.min() - 1e-6 <= z <= valid.max() + 1e-6
        u, v = K[0, 0] * x / z + K[0, 2], K[1, 1] * y / z + K[1, 2]
        assert roi["x_offset"] - 1 <= u <= roi["x_offset"] + roi["width"]
        assert roi["y_offset"] - 1 <= v <= roi["y_offset"] + roi["height"]
    if K is not None:
        assert any(d["position"] is not None for d in dets)


# ----------------------------------------------------------------------------- make demo
@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_make_demo_exits_zero_and_prints_detection_lines(repo_root, tmp_path):
    """``make demo`` (the README's first command): sim camera + node processes on a private
    ROS 2 graph, offline fallback to random CLIP weights + colour prior, labelled lines;
    exit 0, at least one detection line, out/demo.png written."""
    env = _env(tmp_path)
    start = time.time()
    proc = subprocess.run(["make", "demo"], cwd=repo_root, env=env, capture_output=True, text=True, timeout=170)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    lines = [ln for ln in proc.stdout.splitlines() if " result " in ln and " -> " in ln]
    assert lines, text[-4000:]
    assert all(ln.startswith("[") for ln in lines)
    if "RANDOM CLIP weights" in proc.stdout:
        assert all(ln.startswith("[random CLIP + colour prior]") for ln in lines)
    assert any("NOT FOUND" not in ln and "box x=" in ln for ln in lines), "\n".join(lines)
    png = repo_root / "out" / "demo.png"
    assert png.exists() and png.stat().st_mtime >= start - 1
    assert "stopped camera (exit 0), node (exit 0)" in proc.stdout
