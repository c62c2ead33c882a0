"""Tests for clip_perception.tools.replay: rosbag2 read/write, folder loaders and
the replay publisher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from clip_perception.camera import camera_info_to_K
from clip_perception.decode import decode_depth, decode_image
from clip_perception.tools.replay_io import (
    COLOR_TOPIC,
    DEPTH_TOPIC,
    INFO_TOPIC,
    RgbdFrame,
    is_bag,
    iter_bag,
    iter_bag_frames,
    load_image_folder,
    load_rgbd_folder,
    parse_remaps,
    write_test_bag,
)

REPO = Path(__file__).resolve().parents[1]
REAL = (REPO / ".." / "shared" / "data" / "real").resolve()
K_TEST = np.array([[500.0, 0.0, 31.5], [0.0, 500.0, 23.5], [0.0, 0.0, 1.0]])
STAMPS = [1_700_000_000_000_000_000, 1_700_000_000_250_000_000, 1_700_000_001_123_456_789]


def _frames(n=3, h=48, w=64):
    """Seeded random RGB and depth (whole millimetres, some invalid)."""
    rng = np.random.default_rng(7)
    out = []
    for _ in range(n):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mm = rng.integers(200, 3000, (h, w)).astype(np.float64)
        depth = mm / 1000.0
        depth[rng.random((h, w)) < 0.1] = np.nan
        out.append((rgb, depth))
    return out


def _expected_depth(depth):
    """What a 16UC1 round trip must give: mm * 0.001 (float64, as decode_depth) in float32, NaN kept."""
    mm = np.where(np.isfinite(depth), np.round(depth * 1000.0), 0).astype(np.uint16)
    d = (mm.astype(np.float64) * 0.001).astype(np.float32)
    d[mm == 0] = np.nan
    return d


@pytest.fixture(params=["sqlite3", "mcap"])
def bag(request, tmp_path):
    frames = _frames()
    path = write_test_bag(tmp_path / f"bag_{request.param}", frames, K_TEST, fmt=request.param, stamps_ns=STAMPS)
    return request.param, path, frames


# ------------------------------------------------------------------- bags
def test_write_then_iter_bag_gives_exact_stamps_and_pixels(bag):
    """Case: write_test_bag (.db3 and .mcap) -> iter_bag returns every message
    with the exact header stamps, pixels, depth (mm) and K."""
    fmt, path, frames = bag
    assert is_bag(path)
    assert list(path.glob("*.mcap" if fmt == "mcap" else "*.db3"))
    msgs = list(iter_bag(path))
    assert len(msgs) == 9
    by_topic = {}
    for m in msgs:
        by_topic.setdefault(m.topic, []).append(m)
    assert set(by_topic) == {COLOR_TOPIC, DEPTH_TOPIC, INFO_TOPIC}
    for topic, lst in by_topic.items():
        assert [m.stamp_ns for m in lst] == STAMPS, topic
        assert [m.log_time_ns for m in lst] == STAMPS
    for (rgb, depth), cm, dm, im in zip(frames, by_topic[COLOR_TOPIC], by_topic[DEPTH_TOPIC], by_topic[INFO_TOPIC]):
        assert cm.msg.encoding == "rgb8" and dm.msg.encoding == "16UC1"
        np.testing.assert_array_equal(decode_image(cm.msg), rgb)
        np.testing.assert_array_equal(decode_depth(dm.msg), _expected_depth(depth))
        np.testing.assert_array_equal(camera_info_to_K(im.msg), K_TEST)
        assert cm.msg.header.frame_id == "camera_color_optical_frame"


def test_iter_bag_remaps_and_filters_topics(bag):
    """Case: --map style remapping renames topics (source_topic kept) and the
    topics filter selects recorded topics."""
    _, path, _ = bag
    remap = parse_remaps([f"{COLOR_TOPIC}:=image", f"{DEPTH_TOPIC}:=depth"])
    msgs = list(iter_bag(path, topics=[COLOR_TOPIC, DEPTH_TOPIC], remap=remap))
    assert sorted({m.topic for m in msgs}) == ["depth", "image"]
    assert {m.source_topic for m in msgs if m.topic == "image"} == {COLOR_TOPIC}
    assert len(msgs) == 6


def test_iter_bag_frames_pairs_colour_depth_and_K(bag):
    """Case: iter_bag_frames groups colour + depth by stamp with the camera_info K."""
    _, path, frames = bag
    out = list(iter_bag_frames(path))
    assert [f.stamp_ns for f in out] == STAMPS
    for f, (rgb, depth) in zip(out, frames):
        np.testing.assert_array_equal(f.rgb, rgb)
        np.testing.assert_array_equal(f.depth_m, _expected_depth(depth))
        np.testing.assert_array_equal(f.K, K_TEST)


def test_parse_remaps_rejects_bad_items():
    """Case: remap syntax old:=new; malformed items raise ValueError."""
    assert parse_remaps(["/a:=b", " /c := /d "]) == {"/a": "b", "/c": "/d"}
    for bad in ("/a=b", ":=b", "/a:="):
        with pytest.raises(ValueError):
            parse_remaps([bad])


def test_write_test_bag_rejects_unknown_format(tmp_path):
    """Case: fmt other than sqlite3/mcap raises ValueError."""
    with pytest.raises(ValueError):
        write_test_bag(tmp_path / "x", _frames(1), K_TEST, fmt="zip")


# ---------------------------------------------------------------- folders
def test_load_rgbd_folder_synthetic_pairs_and_intrinsics(tmp_path):
    """Case: <stem>-color.png + <stem>-depth.png (uint16 mm) + camera_params.json
    load as RGB (BGR swapped), metres (0 -> NaN) and K; .npy float depth is metres."""
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    mm = np.full((4, 5), 812, np.uint16)
    mm[0, 0] = 0
    cv2.imwrite(str(tmp_path / "000000-color.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "000000-depth.png"), mm)
    cv2.imwrite(str(tmp_path / "000001-color.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.save(tmp_path / "000001-depth.npy", np.full((4, 5), 1.25, np.float32))
    (tmp_path / "camera_params.json").write_text(json.dumps({"fx": 600.0, "fy": 601.0, "x_offset": 2.0, "y_offset": 1.5}))
    frames = load_rgbd_folder(tmp_path)
    assert [f.name for f in frames] == ["000000", "000001"]
    np.testing.assert_array_equal(frames[0].rgb, rgb)
    assert np.isnan(frames[0].depth_m[0, 0])
    assert frames[0].depth_m[1, 1] == pytest.approx(0.812, abs=1e-6)
    assert frames[0].depth_m.dtype == np.float32
    np.testing.assert_array_equal(frames[1].depth_m, np.full((4, 5), 1.25, np.float32))
    np.testing.assert_array_equal(frames[0].K, [[600, 0, 2], [0, 601, 1.5], [0, 0, 1]])


def test_load_rgbd_folder_rejects_unregistered_depth(tmp_path):
    """Case: depth of a different size than colour raises ValueError."""
    cv2.imwrite(str(tmp_path / "a-color.png"), np.zeros((4, 5, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "a-depth.png"), np.ones((3, 5), np.uint16))
    with pytest.raises(ValueError):
        load_rgbd_folder(tmp_path)


def _real(name):
    p = REAL / name
    if not p.is_dir():
        pytest.skip(f"shared real data not present: {p}")
    return p


@pytest.mark.parametrize(
    "folder, n, fx, median_range",
    [
        ("ucn_demo_rgbd", 9, 612.937, (0.60, 1.20)),  # PROVENANCE: median 684-1114 mm
        ("posecnn_ycb_demo_rgbd", 5, 618.0172729492188, (0.65, 0.80)),  # 688-772 mm
        ("osd_uoais_sample", 5, None, (0.75, 0.90)),  # 784-858 mm, no intrinsics
    ],
)
def test_load_rgbd_folder_real_data(folder, n, fx, median_range):
    """Case: each real RGB-D folder loads as RGB uint8 (480, 640, 3), depth
    float32 metres with the per-frame medians PROVENANCE.md reports, and K
    (fx as in camera_params.json / meta.yml; None for OSD which has none)."""
    frames = load_rgbd_folder(_real(folder))
    assert len(frames) == n
    for f in frames:
        assert f.rgb.shape == (480, 640, 3) and f.rgb.dtype == np.uint8
        assert f.depth_m.shape == (480, 640) and f.depth_m.dtype == np.float32
        med = float(np.nanmedian(f.depth_m))
        assert 0.2 < med < 3.0
        assert median_range[0] <= med <= median_range[1], (f.name, med)
        if fx is None:
            assert f.K is None
        else:
            assert f.K[0, 0] == pytest.approx(fx)
            assert 300 < f.K[0, 2] < 340 and 220 < f.K[1, 2] < 260


def test_load_real_rgbd_folder_known_pixels():
    """Case: exact values - posecnn frame 0 depth median 731 mm (PROVENANCE: 688-772 mm
    over frames) and colour channel order RGB (the red bowl region is red)."""
    frames = load_rgbd_folder(_real("posecnn_ycb_demo_rgbd"))
    f = frames[0]
    raw = cv2.imread(str(REAL / "posecnn_ycb_demo_rgbd" / "000000-depth.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(np.isnan(f.depth_m), raw == 0)
    np.testing.assert_allclose(f.depth_m[raw > 0], (raw[raw > 0].astype(np.float64) * 0.001).astype(np.float32))
    # red bowl box (PROVENANCE): x 141-311, y 295-440
    patch = f.rgb[330:400, 180:270].reshape(-1, 3).astype(int)
    r, g, b = np.median(patch, axis=0)
    assert r > g + 40 and r > b + 40


def test_load_image_folder_real_rgb_only():
    """Case: an RGB-only folder (uoais_tabletop_rgb) loads 6 frames in
    numeric order with no depth and no K, via both loaders."""
    folder = _real("uoais_tabletop_rgb")
    frames = load_image_folder(folder)
    assert [f.name for f in frames] == [f"rgb_{i}" for i in range(1, 7)]
    assert all(f.depth_m is None and f.K is None and f.rgb.shape == (480, 640, 3) for f in frames)
    assert [f.name for f in load_rgbd_folder(folder)] == [f.name for f in frames]


def test_real_derived_bag_matches_source_frames():
    """Case: the shared rosbag2 built from the PoseCNN frames reads back with
    iter_bag_frames bit-identical to the folder loader, stamps 1700000000 + i s."""
    bagdir = _real("rosbag2_posecnn_demo_DERIVED") / "posecnn_demo_rgbd_bag"
    bf = list(iter_bag_frames(bagdir))
    ff = load_rgbd_folder(_real("posecnn_ycb_demo_rgbd"))
    assert [f.stamp_ns for f in bf] == [(1_700_000_000 + i) * 10**9 for i in range(5)]
    for b, f in zip(bf, ff):
        np.testing.assert_array_equal(b.rgb, f.rgb)
        np.testing.assert_array_equal(b.depth_m, f.depth_m)
        np.testing.assert_allclose(b.K, f.K)


# -------------------------------------------------------------- publisher
def _ros_env():
    dom = os.getpid() % 100 + 100
    os.environ["ROS_DOMAIN_ID"] = str(dom)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return dom


def _run_replay(path, n_groups, **kw):
    """Publish every group of ``path`` with a ReplayPublisher in-process and
    collect what a reliable subscriber receives on image/depth/camera_info."""
    dom = _ros_env()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CameraInfo, Image

    from clip_perception.tools.replay import ReplayPublisher

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=dom)
    ex = SingleThreadedExecutor(context=ctx)
    pub = sub = None
    got = {"image": [], "depth": [], "camera_info": []}
    try:
        pub = ReplayPublisher(path, autostart=False, context=ctx, **kw)
        sub = rclpy.create_node("replay_sub", context=ctx)
        sub.create_subscription(Image, "image", got["image"].append, 10)
        sub.create_subscription(Image, "depth", got["depth"].append, 10)
        sub.create_subscription(CameraInfo, "camera_info", got["camera_info"].append, 10)
        ex.add_node(pub)
        ex.add_node(sub)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
            p.get_subscription_count() for p in pub.topic_publishers.values()
        ):
            ex.spin_once(timeout_sec=0.05)
        assert sorted(pub.topic_publishers) == ["camera_info", "depth", "image"]
        for _ in range(n_groups):
            assert pub.step()
            ex.spin_once(timeout_sec=0.05)
        assert not pub.step() and pub.done
        while time.monotonic() < deadline and min(len(v) for v in got.values()) < n_groups:
            ex.spin_once(timeout_sec=0.05)
        return got
    finally:
        ex.shutdown()
        for n in (pub, sub):
            if n is not None:
                n.destroy_node()
        rclpy.try_shutdown(context=ctx)


@pytest.mark.timeout(60)
def test_replay_publisher_uses_bag_stamps_and_remaps(tmp_path):
    """Case: ReplayPublisher replays a bag on remapped topics with the
    recorded stamps and exact pixels."""
    frames = _frames()
    path = write_test_bag(tmp_path / "b", frames, K_TEST, fmt="mcap", stamps_ns=STAMPS)
    remap = parse_remaps([f"{COLOR_TOPIC}:=image", f"{DEPTH_TOPIC}:=depth", f"{INFO_TOPIC}:=camera_info"])
    got = _run_replay(path, 3, remap=remap, frame_id="replayed_frame")
    for k in got:
        assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in got[k]] == STAMPS, k
        assert all(m.header.frame_id == "replayed_frame" for m in got[k])
    for (rgb, depth), im, dm, info in zip(frames, got["image"], got["depth"], got["camera_info"]):
        np.testing.assert_array_equal(decode_image(im), rgb)
        np.testing.assert_array_equal(decode_depth(dm), _expected_depth(depth))
        np.testing.assert_array_equal(np.asarray(info.k).reshape(3, 3), K_TEST)


@pytest.mark.timeout(60)
def test_replay_publisher_fresh_stamps(tmp_path):
    """Case: --fresh-stamps replaces the recorded stamps by the current time,
    identical for the messages of one frame."""
    frames = _frames()
    path = write_test_bag(tmp_path / "b", frames, K_TEST, fmt="sqlite3", stamps_ns=STAMPS)
    remap = parse_remaps([f"{COLOR_TOPIC}:=image", f"{DEPTH_TOPIC}:=depth", f"{INFO_TOPIC}:=camera_info"])
    t0 = time.time_ns()
    got = _run_replay(path, 3, remap=remap, fresh_stamps=True)
    stamps = {k: [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in v] for k, v in got.items()}
    assert stamps["image"] == stamps["depth"] == stamps["camera_info"]
    assert all(s >= t0 for s in stamps["image"]) and not set(stamps["image"]) & set(STAMPS)
    assert stamps["image"] == sorted(stamps["image"])
    assert all(m.header.frame_id == "camera_color_optical_frame" for m in got["image"])


@pytest.mark.timeout(60)
def test_replay_publisher_rgbd_folder(tmp_path):
    """Case: an RGB-D folder is published as image (rgb8), depth (32FC1 metres)
    and camera_info (K) with one stamp per frame."""
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 2] = 255
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i:06d}-color.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(tmp_path / f"{i:06d}-depth.png"), np.full((6, 8), 700 + i, np.uint16))
    (tmp_path / "meta.yml").write_text("INTRINSICS: [100.0, 0.0, 3.5, 0.0, 100.0, 2.5, 0.0, 0.0, 1.0]\n")
    got = _run_replay(tmp_path, 2)
    assert [m.encoding for m in got["image"]] == ["rgb8", "rgb8"]
    assert [m.encoding for m in got["depth"]] == ["32FC1", "32FC1"]
    for i, (im, dm, info) in enumerate(zip(got["image"], got["depth"], got["camera_info"])):
        np.testing.assert_array_equal(decode_image(im), rgb)
        np.testing.assert_allclose(decode_depth(dm), np.float32((700 + i) * 0.001))
        np.testing.assert_array_equal(np.asarray(info.k).reshape(3, 3), [[100, 0, 3.5], [0, 100, 2.5], [0, 0, 1]])
        assert im.header.stamp == dm.header.stamp == info.header.stamp


@pytest.mark.timeout(60)
def test_replay_main_plays_bag_and_exits_zero(tmp_path):
    """Case: the console entry point plays a bag to the end with --map and
    --rate, a subscriber receives all 3 frames with the recorded stamps, exit code 0."""
    frames = _frames()
    path = write_test_bag(tmp_path / "b", frames, K_TEST, fmt="sqlite3", stamps_ns=STAMPS)
    dom = _ros_env()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=dom)
    ex = SingleThreadedExecutor(context=ctx)
    sub = rclpy.create_node("cli_sub", context=ctx)
    got = []
    sub.create_subscription(Image, "cam/image", got.append, 10)
    ex.add_node(sub)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "clip_perception.tools.replay", str(path), "--rate", "10", "--start-delay", "3",
         "--map", f"{COLOR_TOPIC}:=cam/image", "--topics", COLOR_TOPIC],
        env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None:
            ex.spin_once(timeout_sec=0.05)
        end = time.monotonic() + 1.0
        while time.monotonic() < end and len(got) < 3:
            ex.spin_once(timeout_sec=0.05)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        ex.shutdown()
        sub.destroy_node()
        rclpy.try_shutdown(context=ctx)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in got] == STAMPS


def test_bag_without_depth_gives_frames_without_depth(tmp_path):
    """Case: RgbdFrame input without depth -> the bag has no depth topic and
    iter_bag_frames yields depth_m None with K and stamps intact."""
    rgb = np.full((6, 8, 3), 17, np.uint8)
    frames = [RgbdFrame(rgb=rgb, depth_m=None, K=None, name=str(i)) for i in range(2)]
    path = write_test_bag(tmp_path / "nodepth", frames, K_TEST, fmt="mcap", stamps_ns=STAMPS[:2])
    assert {m.topic for m in iter_bag(path)} == {COLOR_TOPIC, INFO_TOPIC}
    out = list(iter_bag_frames(path))
    assert [f.stamp_ns for f in out] == STAMPS[:2]
    assert all(f.depth_m is None for f in out)
    np.testing.assert_array_equal(out[1].K, K_TEST)
    np.testing.assert_array_equal(out[0].rgb, rgb)


def test_rgbd_folder_accepts_h_w_1_npy_depth(tmp_path):
    """Case (issue 12): an RGB-D folder whose depth is a (H, W, 1) float .npy replays in metres."""
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = 200
    cv2.imwrite(str(tmp_path / "000000-color.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    d = np.full((6, 8, 1), 1.25, np.float32)
    d[0, 0, 0] = 0.0
    np.save(tmp_path / "000000-depth.npy", d)
    (f,) = load_rgbd_folder(tmp_path)
    np.testing.assert_array_equal(f.rgb, rgb)
    assert f.depth_m.shape == (6, 8) and np.isnan(f.depth_m[0, 0])
    assert np.all(f.depth_m.ravel()[1:] == np.float32(1.25))
