"""Tests for the MuJoCo scene (clip_perception.sim.scene) and the simulated
camera node (clip_perception.sim.camera_node)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "osmesa")

from clip_perception.sim.scene import (  # noqa: E402
    COLORS,
    SHAPES,
    TABLE_CENTER_XY,
    TABLE_HALF,
    TABLE_HEIGHT,
    ZFAR,
    ObjectSpec,
    default_object_specs,
    intrinsics_from_fovy,
    make_scene,
    project_points,
)

REPO = Path(__file__).resolve().parents[1]


def _render(seed, **kw):
    scene = make_scene(seed, **kw)
    try:
        return scene, scene.render()
    finally:
        scene.close()


@pytest.fixture(scope="module")
def frames():
    """Renders of seeds 0..3 (default 6 objects, 640x480)."""
    return {s: _render(s)[1] for s in range(4)}


# ------------------------------------------------------------------ layout
def test_same_seed_gives_identical_layout_and_images(frames):
    """Case: determinism - the same seed reproduces layout, RGB and depth bit for bit."""
    _, again = _render(0)
    first = frames[0]
    assert [o.name for o in again.objects] == [o.name for o in first.objects]
    for a, b in zip(again.objects, first.objects):
        np.testing.assert_array_equal(a.center_optical, b.center_optical)
        np.testing.assert_array_equal(a.box, b.box)
    np.testing.assert_array_equal(again.rgb, first.rgb)
    np.testing.assert_array_equal(again.depth, first.depth)  # NaN positions equal too


def test_different_seeds_give_different_layouts(frames):
    """Case: different seeds change objects/positions and the image."""
    a, b = frames[0], frames[1]
    assert not np.array_equal(a.rgb, b.rgb)
    ca = sorted((o.name, tuple(np.round(o.center_optical, 4))) for o in a.objects)
    cb = sorted((o.name, tuple(np.round(o.center_optical, 4))) for o in b.objects)
    assert ca != cb


def test_default_object_set_shares_shapes_and_colours():
    """Case: default object sets (several seeds) always contain two objects
    of one shape and two of one colour, never the same colour+shape twice."""
    for seed in range(20):
        specs = default_object_specs(seed, 6)
        shapes = [s.shape for s in specs]
        colors = [s.color for s in specs]
        assert len(set(shapes)) < len(shapes), seed
        assert len(set(colors)) < len(colors), seed
        assert len({(s.shape, s.color) for s in specs}) == len(specs)
        assert all(s.shape in SHAPES and s.color in COLORS for s in specs)


def test_objects_rest_on_table_without_overlap(frames):
    """Case: every object's bottom touches the table top and footprints do not overlap."""
    for fr in frames.values():
        objs = fr.objects + fr.hidden
        for o in objs:
            bottom = o.center_world[2] - o.size[2] / 2
            assert bottom == pytest.approx(TABLE_HEIGHT, abs=1e-6)
        for i, a in enumerate(objs):
            for b in objs[i + 1:]:
                ra = math.hypot(a.size[0], a.size[1]) / 2 if a.shape in ("cube", "box") else a.size[0] / 2
                rb = math.hypot(b.size[0], b.size[1]) / 2 if b.shape in ("cube", "box") else b.size[0] / 2
                assert np.linalg.norm(a.center_world[:2] - b.center_world[:2]) >= ra + rb


# --------------------------------------------------------------- geometry
def test_intrinsics_follow_fovy_and_pixel_centre_convention():
    """Case: K from fovy: fy = (H/2)/tan(fovy/2), fx = fy, cx = (W-1)/2, cy = (H-1)/2."""
    K = intrinsics_from_fovy(45.0, 640, 480)
    assert K[1, 1] == pytest.approx(240.0 / math.tan(math.radians(22.5)))
    assert K[0, 0] == K[1, 1]
    assert (K[0, 2], K[1, 2]) == (319.5, 239.5)
    with pytest.raises(ValueError):
        intrinsics_from_fovy(0.0, 640, 480)


def test_table_depth_matches_ray_plane_intersection():
    """Case: K and depth are consistent with the geometry - the depth of the
    bare table at every pixel equals the optical-axis distance of the
    ray/table-plane intersection computed with K and the camera pose (< 1 mm).
    A half-pixel error in cx/cy would show up as ~0.6 mm mean error."""
    scene, fr = _render(0, objects=[], width=320, height=240, fovy=50.0)
    assert not fr.objects
    T = fr.T_world_optical
    H, W = fr.depth.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    K = fr.K
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1) @ T[:3, :3].T
    t = (TABLE_HEIGHT - T[2, 3]) / rays[..., 2]  # z_optical of the intersection (ray has z_opt = 1)
    hit = T[:3, 3] + rays * t[..., None]
    on_table = (
        (np.abs(hit[..., 0] - TABLE_CENTER_XY[0]) < TABLE_HALF[0] - 0.01)
        & (np.abs(hit[..., 1] - TABLE_CENTER_XY[1]) < TABLE_HALF[1] - 0.01)
    )
    assert on_table.mean() > 0.5
    err = (fr.depth - t)[on_table]
    assert np.isfinite(err).all()
    assert np.abs(err).max() < 1e-3
    assert abs(err.mean()) < 1e-4


def test_camera_looks_down_at_table_like_head_camera():
    """Case: camera 0.6-0.9 m from the table centre, pitched 45-60 deg down."""
    scene = make_scene(0)
    try:
        T = scene.T_world_optical
        z_axis = T[:3, 2]
        pitch = math.degrees(math.asin(-z_axis[2]))
        dist = np.linalg.norm(T[:3, 3] - np.array([0.0, 0.0, TABLE_HEIGHT]))
        assert 45.0 <= pitch <= 60.0
        assert 0.6 <= dist <= 0.9
        # optical y points down in the world (image rows go down the table)
        assert T[2, 1] < 0
    finally:
        scene.close()


def test_projected_centres_lie_in_boxes(frames):
    """Case: each visible object's ground-truth 3-D centre projects (with K)
    inside its segmentation box."""
    n = 0
    for fr in frames.values():
        for o in fr.objects:
            u, v = project_points(o.center_optical, fr.K)[0]
            x1, y1, x2, y2 = o.box
            assert x1 <= u < x2 and y1 <= v < y2, (o.name, (u, v), o.box)
            assert o.box.dtype == np.float32 and o.visible_pixels > 0
            n += 1
    assert n >= 20


def test_ball_depth_at_projected_centre(frames):
    """Case: depth at the projected centre pixel of each visible ball equals
    the ray/sphere hit (within 1 cm) and is about centre z minus radius
    (within 2 cm); back-projecting that pixel lands on the sphere surface (1 cm)."""
    balls = 0
    for seed in range(8):
        fr = frames[seed] if seed in frames else _render(seed)[1]
        for o in fr.objects:
            if o.shape != "ball":
                continue
            K = fr.K
            u, v = project_points(o.center_optical, K)[0]
            ui, vi = int(round(u)), int(round(v))
            z = float(fr.depth[vi, ui])
            r = o.size[0] / 2
            c = o.center_optical
            ray = np.array([(ui - K[0, 2]) / K[0, 0], (vi - K[1, 2]) / K[1, 1], 1.0])
            rn = ray / np.linalg.norm(ray)
            b = rn @ c
            hit = (b - math.sqrt(b * b - (c @ c - r * r))) * rn[2]
            assert z == pytest.approx(hit, abs=0.01)
            assert z == pytest.approx(c[2] - r, abs=0.02)
            p = ray * z
            assert abs(np.linalg.norm(p - c) - r) < 0.01
            balls += 1
    assert balls >= 2


def test_box_centre_pixel_has_object_colour(frames):
    """Case: the rendered RGB at an object's box centre has the dominant colour
    of the object (HSV naming: hue for chromatic colours, V/S for white/black)."""
    import cv2

    def name_of(rgb):
        h, s, v = (int(x) for x in cv2.cvtColor(rgb.reshape(1, 1, 3), cv2.COLOR_RGB2HSV)[0, 0])
        if v < 60:
            return "black"
        if s < 50:
            return "white" if v > 120 else "grey"
        if h < 8 or h >= 170:
            return "red"
        if h < 20:
            return "orange"
        if h < 36:
            return "yellow"
        if h < 86:
            return "green"
        if h < 131:
            return "blue"
        return "purple"

    checked = 0
    for fr in frames.values():
        for o in fr.objects:
            cx, cy = int((o.box[0] + o.box[2]) / 2), int((o.box[1] + o.box[3]) / 2)
            if fr.segmentation[cy, cx] != o.index:
                continue  # box centre falls on another object / the table
            patch = fr.rgb[cy - 2: cy + 3, cx - 2: cx + 3].reshape(-1, 3)
            med = np.median(patch, axis=0).astype(np.uint8)
            assert name_of(med) == o.color, (o.name, med)
            checked += 1
    assert checked >= 18


def test_table_is_neutral_colour(frames):
    """Case: table pixels have low HSV saturation so they are not named as a colour."""
    import cv2

    fr = frames[0]
    table = fr.segmentation < 0
    hsv = cv2.cvtColor(fr.rgb, cv2.COLOR_RGB2HSV)
    assert np.median(hsv[..., 1][table]) < 60


def test_explicit_specs_two_identical_red_balls_left_and_right():
    """Case: explicit object specs are honoured - two identical red balls,
    the one at +y (world left) appears left in the image, same size."""
    specs = [
        {"shape": "ball", "color": "red", "xy": (0.05, 0.15)},
        ObjectSpec(shape="ball", color="red", xy=(0.05, -0.15)),
        {"shape": "cube", "color": "blue", "xy": (0.2, 0.0), "size": (0.03, 0.03, 0.03)},
    ]
    scene, fr = _render(123, objects=specs)
    names = [o.name for o in fr.objects]
    assert names == ["red ball", "red ball", "blue cube"]
    left, right, cube = fr.objects
    assert left.box[2] < right.box[0]  # disjoint, left one first
    np.testing.assert_allclose(left.size, right.size)
    np.testing.assert_allclose(left.center_world[:2], (0.05, 0.15))
    np.testing.assert_allclose(cube.size, (0.06, 0.06, 0.06))
    # mirror-symmetric about the image centre column: same width, same depth
    assert (left.box[2] - left.box[0]) == pytest.approx(right.box[2] - right.box[0], abs=1)
    assert left.center_optical[2] == pytest.approx(right.center_optical[2], abs=1e-9)
    assert left.center_optical[0] == pytest.approx(-right.center_optical[0], abs=1e-9)


def test_out_of_view_object_is_flagged_hidden():
    """Case: an object placed outside the field of view is reported in
    ``hidden`` with 0 visible pixels and a NaN box, not in ``objects``."""
    specs = [{"shape": "ball", "color": "green", "xy": (0.0, 0.0)}, {"shape": "ball", "color": "red", "xy": (0.6, 0.7)}]
    scene, fr = _render(0, objects=specs)
    assert [o.name for o in fr.objects] == ["green ball"]
    assert [o.name for o in fr.hidden] == ["red ball"]
    assert fr.hidden[0].visible_pixels == 0 and np.isnan(fr.hidden[0].box).all()


def test_background_beyond_far_plane_is_nan():
    """Case: with a shallow camera the far floor/sky is beyond the far plane:
    those pixels are NaN, all other depths are finite and below the far plane."""
    scene, fr = _render(0, objects=[], width=160, height=120, camera_pitch_deg=15.0, camera_distance=0.9)
    nan = np.isnan(fr.depth)
    assert nan.any() and (~nan).any()
    assert nan[0].all()  # the top row looks over the far floor
    assert np.nanmax(fr.depth) < ZFAR
    assert fr.depth.dtype == np.float32 and fr.rgb.dtype == np.uint8


def test_bad_spec_raises():
    """Case: unknown shape / colour and wrong size length raise ValueError."""
    with pytest.raises(ValueError):
        ObjectSpec(shape="banana", color="red")
    with pytest.raises(ValueError):
        ObjectSpec(shape="ball", color="pink")
    with pytest.raises(ValueError):
        ObjectSpec(shape="box", color="red", size=(0.1,))


def test_render_after_close_raises():
    """Case: render() after close() raises RuntimeError; close() twice is fine."""
    scene = make_scene(0, num_objects=2, width=64, height=48)
    scene.close()
    scene.close()
    with pytest.raises(RuntimeError):
        scene.render()


# --------------------------------------------------------------- ROS node
def _ros_env(offset: int = 0) -> int:
    dom = os.getpid() % 100 + 100 + offset
    os.environ["ROS_DOMAIN_ID"] = str(dom)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return dom


@pytest.mark.timeout(60)
def test_camera_node_publishes_consistent_image_depth_info_clock():
    """Case: the sim camera node publishes image (rgb8), depth (32FC1),
    camera_info and /clock with identical stamps and frame_id, correct step /
    data length / K, sim time advancing 1/rate per frame, a latched JSON
    ground truth, and drives a use_sim_time node's clock."""
    dom = _ros_env(0)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock as ClockMsg
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import String

    from clip_perception.sim.camera_node import SimCameraNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=dom)
    cam = sub = None
    ex = SingleThreadedExecutor(context=ctx)
    try:
        cam = SimCameraNode(
            autostart=False,
            context=ctx,
            parameter_overrides=[
                Parameter("width", value=160),
                Parameter("height", value=120),
                Parameter("rate_hz", value=4.0),
                Parameter("seed", value=3),
                Parameter("frame_id", value="test_optical"),
            ],
        )
        sub = rclpy.create_node("sim_sub", context=ctx, parameter_overrides=[Parameter("use_sim_time", value=True)])
        got = {"image": [], "depth": [], "camera_info": [], "clock": [], "gt": []}
        sub.create_subscription(Image, "image", got["image"].append, qos_profile_sensor_data)
        sub.create_subscription(Image, "depth", got["depth"].append, qos_profile_sensor_data)
        sub.create_subscription(CameraInfo, "camera_info", got["camera_info"].append, qos_profile_sensor_data)
        sub.create_subscription(ClockMsg, "/clock", got["clock"].append, 10)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        sub.create_subscription(String, "ground_truth", got["gt"].append, latched)
        ex.add_node(cam)
        ex.add_node(sub)

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
            cam.image_pub.get_subscription_count() and p.get_subscription_count() for p in (cam.depth_pub, cam.info_pub, cam.clock_pub)
        ):
            ex.spin_once(timeout_sec=0.05)
        # publish frames until every topic received 3 (best effort may drop early ones)
        while time.monotonic() < deadline and min(len(got[k]) for k in ("image", "depth", "camera_info", "clock")) < 3:
            cam.step()
            for _ in range(5):
                ex.spin_once(timeout_sec=0.02)
        while time.monotonic() < deadline and not got["gt"]:
            ex.spin_once(timeout_sec=0.05)

        for k in ("image", "depth", "camera_info", "clock"):
            assert len(got[k]) >= 3, k
        K_true = cam.frame.K
        stamps = {}
        for k in ("image", "depth", "camera_info"):
            stamps[k] = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in got[k]}
            assert all(m.header.frame_id == "test_optical" for m in got[k])
        clock_stamps = {(m.clock.sec, m.clock.nanosec) for m in got["clock"]}
        common = stamps["image"] & stamps["depth"] & stamps["camera_info"] & clock_stamps
        assert len(common) >= 2
        # simulated time: starts at 1000 s, advances 1/4 s per frame
        ns = sorted(s * 10**9 + n for s, n in common)
        assert ns[0] >= 1000 * 10**9
        assert all((b - a) % 250_000_000 == 0 and b > a for a, b in zip(ns, ns[1:]))

        img, dep, info = got["image"][-1], got["depth"][-1], got["camera_info"][-1]
        assert (img.width, img.height, img.encoding, img.step) == (160, 120, "rgb8", 160 * 3)
        assert len(img.data) == 160 * 120 * 3
        np.testing.assert_array_equal(np.frombuffer(bytes(img.data), np.uint8).reshape(120, 160, 3), cam.frame.rgb)
        assert (dep.encoding, dep.step, dep.is_bigendian) == ("32FC1", 160 * 4, 0)
        assert len(dep.data) == 160 * 120 * 4
        depth = np.frombuffer(bytes(dep.data), "<f4").reshape(120, 160)
        np.testing.assert_array_equal(depth, cam.frame.depth)
        assert (info.width, info.height, info.distortion_model) == (160, 120, "plumb_bob")
        np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), K_true)
        np.testing.assert_allclose(np.asarray(info.p).reshape(3, 4)[:, :3], K_true)
        assert list(info.d) == [0.0] * 5
        assert K_true[0, 0] == pytest.approx(60.0 / math.tan(math.radians(22.5)))

        gt = json.loads(got["gt"][0].data)
        assert gt["frame_id"] == "test_optical" and gt["seed"] == 3
        assert [o["name"] for o in gt["objects"]] == [o.name for o in cam.frame.objects]
        np.testing.assert_allclose(gt["K"], K_true.ravel())

        # a use_sim_time consumer follows /clock
        for _ in range(5):
            ex.spin_once(timeout_sec=0.02)
        assert sub.get_clock().now().nanoseconds >= 1000 * 10**9
    finally:
        ex.shutdown()
        for n in (cam, sub):
            if n is not None:
                n.destroy_node()
        rclpy.try_shutdown(context=ctx)


@pytest.mark.timeout(60)
def test_camera_node_main_exits_cleanly_on_sigterm_and_sigint():
    """Case: the console entry point exits with code 0 and no traceback on SIGTERM and SIGINT."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(os.getpid() % 100 + 100), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               MUJOCO_GL=os.environ.get("MUJOCO_GL", "osmesa"), PYTHONPATH=str(REPO))
    code = ("import sys; from clip_perception.sim.camera_node import main; "
            "sys.exit(main(['x', '--ros-args', '-p', 'width:=64', '-p', 'height:=48']))")
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=str(REPO),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            # wait for the startup log line, then signal
            deadline = time.monotonic() + 40
            line = ""
            while time.monotonic() < deadline and "sim camera" not in line:
                line = proc.stdout.readline()
                if proc.poll() is not None:
                    break
            assert proc.poll() is None, "node exited early"
            proc.send_signal(sig)
            out, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, (sig, out)
        assert "Traceback" not in out


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_camera_executable_exits_zero_when_signalled_while_streaming_to_a_reliable_subscriber():
    """Case: ``clip_perception_sim_camera`` at 30 Hz, 640x480, reliable QoS, streaming to a
    reliable subscriber, gets SIGINT / SIGTERM at a random moment after 10 frames, 6 times:
    every run exits with code 0, no traceback, no crash.  (With rclpy's default signal
    handlers this crashed with SIGSEGV in MuJoCo's OSMesa release in 2 of 20 runs; see
    ``clip_perception.tools.executables.run_single_threaded``.)"""
    import random
    import threading
    import uuid

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "osmesa"), PYTHONFAULTHANDLER="1")
    ns = f"/sig_{uuid.uuid4().hex[:8]}"
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node(f"sig_sub_{uuid.uuid4().hex[:6]}", context=ctx)
    frames = [0]
    node.create_subscription(Image, f"{ns}/image", lambda m: frames.__setitem__(0, frames[0] + 1), reliable)
    node.create_subscription(Image, f"{ns}/depth", lambda m: None, reliable)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    rng = random.Random(0)
    results = []
    try:
        for i in range(6):
            frames[0] = 0
            proc = subprocess.Popen(
                [sys.executable, "-m", "clip_perception.sim.camera_node", "--ros-args", "-r", f"__ns:={ns}",
                 "-p", "rate_hz:=30.0", "-p", "qos:=reliable", "-p", "publish_clock:=false"],
                cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                deadline = time.monotonic() + 60
                while frames[0] < 10 and time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(0.01)
                assert frames[0] >= 10, f"run {i}: only {frames[0]} frames arrived"
                time.sleep(rng.uniform(0.0, 0.1))
                proc.send_signal(signal.SIGINT if i % 2 == 0 else signal.SIGTERM)
                out, _ = proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
            results.append((i, proc.returncode, out[-2000:]))
    finally:
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        spin.join(5.0)
    assert all(code == 0 for _, code, _ in results), [(i, code, out) for i, code, out in results if code != 0]
    assert not any("Traceback" in out for _, _, out in results)


# ------------------------------------------------------------------ moving camera, sensor noise
def test_set_camera_to_the_start_pose_keeps_the_view():
    """Case: moving the camera to the look-at pose it already has (orbit at yaw 0) keeps the
    pose within 1e-5 (the MJCF holds 6 significant digits) and the image (mean |difference| < 0.05 levels)."""
    from clip_perception.sim.trajectory import orbit_poses

    scene = make_scene(0, num_objects=3, width=160, height=120)
    try:
        before = scene.render()
        pose = orbit_poses(1, scene.target, 0.75, 50.0, 0.0, 0.0)[0]
        np.testing.assert_allclose(pose, scene.T_world_optical, atol=1e-5)
        after = scene.render(camera_pose=pose)
        assert np.abs(after.rgb.astype(int) - before.rgb.astype(int)).mean() < 0.05
        with pytest.raises(ValueError):
            scene.set_camera(np.diag([1.0, 1.0, -1.0, 1.0]))  # a reflection, not a rotation
    finally:
        scene.close()


def test_orbit_pose_moves_camera_and_ground_truth_follows():
    """Case: render(camera_pose=orbit at yaw 90 deg): the frame's T_world_optical is that pose,
    the camera is 0.75 m from the look-at point, which projects to the principal point, and
    every visible object's projected centre lies in its box."""
    from clip_perception.sim.trajectory import approach_poses, orbit_poses

    scene = make_scene(1, num_objects=3, width=160, height=120)
    try:
        pose = orbit_poses(3, scene.target, 0.75, 50.0, 0.0, 90.0)[2]
        fr = scene.render(camera_pose=pose)
        np.testing.assert_allclose(fr.T_world_optical, pose, atol=1e-6)
        assert np.linalg.norm(pose[:3, 3] - scene.target) == pytest.approx(0.75, abs=1e-9)
        assert pose[1, 3] == pytest.approx(-0.75 * math.cos(math.radians(50.0)), abs=1e-9)  # camera on the -y side
        uv = project_points(scene.world_to_optical(scene.target[None]), fr.K)[0]
        np.testing.assert_allclose(uv, [fr.K[0, 2], fr.K[1, 2]], atol=1e-6)
        for o in fr.objects:
            u, v = project_points(o.center_optical[None], fr.K)[0]
            assert o.box[0] <= u <= o.box[2] and o.box[1] <= v <= o.box[3]
        dists = [np.linalg.norm(p[:3, 3] - scene.target) for p in approach_poses(5, scene.target, 0.9, 0.5)]
        np.testing.assert_allclose(dists, [0.9, 0.8, 0.7, 0.6, 0.5], atol=1e-9)
    finally:
        scene.close()


def test_structured_light_noise_std_quantisation_and_edge_dropout():
    """Case: a flat 1 m depth: noise std = sqrt((k z^2)^2 + q^2 / 12) with q = z^2 step / (f b)
    (1.71 mm for the defaults) within 10 %, every value on the disparity grid f b / (n step);
    a depth step 1.0 | 1.5 m: dropout only next to the step, about edge_dropout of those pixels."""
    from clip_perception.sim.depth_noise import StructuredLightNoise

    noise = StructuredLightNoise()
    z = np.full((200, 200), 1.0, np.float32)
    out = noise.apply(z, np.random.default_rng(0))
    q = noise.resolution(1.0)
    assert q == pytest.approx(0.125 / (580 * 0.075))
    assert np.nanstd(out) == pytest.approx(math.hypot(noise.sigma(1.0), q / math.sqrt(12)), rel=0.1)
    fb = noise.focal_px * noise.baseline_m
    n = fb / (out.astype(np.float64) * noise.disparity_step_px)
    np.testing.assert_allclose(n, np.rint(n), atol=1e-3)
    step = np.where(np.arange(200)[None, :] < 100, 1.0, 1.5).astype(np.float32).repeat(200, axis=0)
    out = StructuredLightNoise(k=0.0, disparity_step_px=0.0).apply(step, np.random.default_rng(1))
    dropped = np.isnan(out)
    assert not dropped[:, :99].any() and not dropped[:, 101:].any()
    assert dropped[:, 99:101].mean() == pytest.approx(0.5, abs=0.08)


def test_scene_with_depth_noise_keeps_true_depth_and_look_alikes_match_one_command():
    """Case: look_alike_specs gives two identical red balls and distractors that are not red
    balls; rendered with depth noise, Frame.depth is noisy (NaN where the truth is NaN) and
    Frame.depth_true is the noise-free render."""
    from clip_perception.sim.depth_noise import StructuredLightNoise
    from clip_perception.sim.scene import look_alike_specs

    specs = look_alike_specs(3, count=2, num_distractors=2)
    assert [s.name for s in specs[:2]] == ["red ball", "red ball"] and specs[0].size == specs[1].size
    assert all(s.name != "red ball" for s in specs[2:])
    scene = make_scene(3, objects=specs, width=160, height=120, depth_noise=StructuredLightNoise(), noise_seed=4)
    try:
        fr = scene.render()
    finally:
        scene.close()
    assert len(fr.find("red ball")) == 2
    both = np.isfinite(fr.depth) & np.isfinite(fr.depth_true)
    assert not np.isfinite(fr.depth[~np.isfinite(fr.depth_true)]).any()
    diff = (fr.depth - fr.depth_true)[both]
    assert 0.0005 < float(np.std(diff)) < 0.01 and abs(float(np.mean(diff))) < 0.001
