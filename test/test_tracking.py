"""Tests for clip_perception.tracking (ROS-free): association, track ids, referent lock,
found / lost hysteresis and smoothing; unit cases on hand-made detections, then sequences
rendered by the MuJoCo simulator (moving camera, depth noise, an object leaving the view)
run through ``Detector`` (explicit test encoder) + ``Tracker``."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "osmesa")

from clip_perception.boxes import box_iou  # noqa: E402
from clip_perception.command import parse_command  # noqa: E402
from clip_perception.params import make_config  # noqa: E402
from clip_perception.pipeline import Detector, FrameResult  # noqa: E402
from clip_perception.tracking import (  # noqa: E402
    GATE_DISTANCE_M,
    MAX_TRACK_ID,
    SMOOTHING_RESET_M,
    Tracker,
    TrackerConfig,
    affinity,
    associate,
    has_qualifier,
    Track,
)
from clip_perception.types import Detection  # noqa: E402
from fake_encoders import ColorTestEncoder  # noqa: E402


# ------------------------------------------------------------------ helpers
def _det(box, score=0.9, position=None, label="red ball", size=None):
    return Detection(label=label, score=score, confidence=score, box=np.asarray(box, np.float32),
                     position=None if position is None else np.asarray(position, np.float64),
                     size=None if size is None else np.asarray(size, np.float64))


def _result(text, dets):
    parse = parse_command(text)
    return FrameResult(command=parse.first, parse=parse, detections=list(dets), notes=[])


LEFT = (10, 10, 40, 40)
RIGHT = (100, 10, 130, 40)


# ------------------------------------------------------------------ unit cases
def test_ids_are_positive_stable_and_new_objects_get_new_ids():
    """Case: the same two boxes over frames keep their ids (1, 2); a third object gets 3; ids are > 0."""
    tr = Tracker()
    r = tr.update(_result("the red ball", [_det(LEFT), _det(RIGHT, 0.8)]))
    assert [d.track_id for d in r.detections] == [1, 2]
    r = tr.update(_result("the red ball", [_det((11, 10, 41, 40)), _det((101, 11, 131, 41), 0.8)]))
    assert [d.track_id for d in r.detections] == [1, 2]
    r = tr.update(_result("the red ball", [_det(LEFT), _det(RIGHT, 0.8), _det((200, 10, 230, 40), 0.7)]))
    assert [d.track_id for d in r.detections] == [1, 2, 3]


def test_track_ids_wrap_round_to_one_never_zero():
    """Case: after the uint32 maximum the next id is 1 (0 means "not tracked")."""
    tr = Tracker()
    tr._next_id = MAX_TRACK_ID
    r = tr.update(_result("the red ball", [_det(LEFT), _det(RIGHT, 0.8)]))
    assert [d.track_id for d in r.detections] == [MAX_TRACK_ID, 1]


def test_affinity_gates_far_3d_points_even_with_overlapping_boxes():
    """Case: two detections with the same box but 3D points 0.3 m apart are not the same object;
    within the gate the distance term counts: a = (iou + (1 - d / gate)) / 2."""
    t = Track(track_id=1, box=np.array(LEFT, np.float32), raw_position=np.array([0.0, 0.0, 0.8]))
    far = _det(LEFT, position=(0.0, 0.0, 1.1))
    near = _det(LEFT, position=(0.0, 0.0, 0.82))
    a = affinity([t], [far, near])
    assert a[0, 0] == -np.inf
    assert a[0, 1] == pytest.approx((1.0 + (1.0 - 0.02 / GATE_DISTANCE_M)) / 2.0)
    assert associate(a) == [(0, 1)]


def test_defaults_keep_the_single_frame_answer():
    """Case: found_frames = lost_frames = 1: a frame with detections is found at once, one without
    is not found at once (no coasting), with the ranking's order kept."""
    tr = Tracker(TrackerConfig())
    r = tr.update(_result("the red ball", [_det(LEFT), _det(RIGHT, 0.8)]))
    assert r.found and r.best.track_id == 1
    assert not tr.update(_result("the red ball", [])).found
    r = tr.update(_result("the red ball", [_det(RIGHT, 0.8)]))
    assert r.found and r.best.track_id == 2


def test_found_after_found_frames_and_lost_after_lost_frames():
    """Case: found_frames = 3: frames 1-2 report nothing (note), frame 3 reports the target;
    lost_frames = 2: the first miss repeats the last detection (note), the second is not found."""
    tr2 = Tracker(TrackerConfig(found_frames=3, lost_frames=2))
    results = [tr2.update(_result("the red ball", [_det(LEFT)])) for _ in range(3)]
    assert [r.found for r in results] == [False, False, True]
    assert any("seen in 1 of found_frames=3" in n for n in results[0].notes)
    r = tr2.update(_result("the red ball", []))
    assert r.found and r.best.track_id == 1 and np.array_equal(r.best.box, np.float32(LEFT))
    assert any("not seen for 1 frame" in n for n in r.notes)
    assert not tr2.update(_result("the red ball", [])).found
    # back in view: found_frames consecutive frames again
    assert [tr2.update(_result("the red ball", [_det(LEFT)])).found for _ in range(3)] == [False, False, True]


def test_unqualified_command_switches_only_beyond_the_margin():
    """Case: "the red ball": the locked ball stays target while the other scores at most
    switch_margin (0.1) more; a lead of 0.2 takes over."""
    tr = Tracker(TrackerConfig(switch_margin=0.1))
    r = tr.update(_result("the red ball", [_det(LEFT, 0.8), _det(RIGHT, 0.7)]))
    assert r.best.track_id == 1
    r = tr.update(_result("the red ball", [_det(RIGHT, 0.85), _det(LEFT, 0.8)]))  # ranking flips by 0.05
    assert r.best.track_id == 1 and [d.track_id for d in r.detections] == [1, 2]
    r = tr.update(_result("the red ball", [_det(RIGHT, 0.95), _det(LEFT, 0.75)]))  # lead 0.2
    assert r.best.track_id == 2 and tr.switches == 1


def test_qualified_command_never_switches_while_the_referent_is_visible():
    """Case: "the red ball on the left": once resolved, the ball stays the target even when the
    ranking puts the other one first with a large lead; a new generation re-resolves."""
    assert has_qualifier(parse_command("the red ball on the left").first)
    assert has_qualifier(parse_command("the cup next to the plate").first)
    assert not has_qualifier(parse_command("the red ball").first)
    tr = Tracker(TrackerConfig(switch_margin=0.1))
    r = tr.update(_result("the red ball on the left", [_det(LEFT, 0.5), _det(RIGHT, 0.6)]), generation=1)
    assert r.best.track_id == 1
    r = tr.update(_result("the red ball on the left", [_det(RIGHT, 1.0), _det(LEFT, 0.5)]), generation=1)
    assert r.best.track_id == 1 and tr.switches == 0
    r = tr.update(_result("the red ball on the left", [_det(RIGHT, 1.0), _det(LEFT, 0.5)]), generation=2)
    assert r.best.track_id != 1 and np.array_equal(r.best.box, np.float32(RIGHT))


def test_smoothing_is_exponential_and_restarts_on_a_jump():
    """Case: smoothing s = 0.8: p_hat = 0.8 p_hat + 0.2 p (position and size); a point more than
    SMOOTHING_RESET_M away restarts the filter at the raw point; s = 0 gives raw values."""
    tr = Tracker(TrackerConfig(smoothing=0.8))
    zs = [0.800, 0.810, 0.790]
    got = [tr.update(_result("the red ball", [_det(LEFT, position=(0, 0, z), size=(0.05, 0.05, z / 10))])).best
           for z in zs]
    want = 0.8
    for d, z in zip(got, zs):
        want = z if d is got[0] else 0.8 * want + 0.2 * z
        assert d.position[2] == pytest.approx(want, abs=1e-12)
        assert d.size[2] == pytest.approx(want / 10, abs=1e-12)
    jump = 0.79 + 2 * SMOOTHING_RESET_M
    d = tr.update(_result("the red ball", [_det(LEFT, position=(0, 0, jump))])).best
    assert d.position[2] == pytest.approx(jump, abs=1e-12)
    raw = Tracker(TrackerConfig(smoothing=0.0))
    for z in zs:
        assert raw.update(_result("the red ball", [_det(LEFT, position=(0, 0, z))])).best.position[2] == z


def test_bad_config_raises_and_node_parameters_reach_the_worker_tracker():
    """Case: out-of-range values raise ValueError; the node's parameters (found_frames, lost_frames,
    switch_margin, smoothing) configure the worker's per-camera tracker."""
    with pytest.raises(ValueError):
        TrackerConfig(found_frames=0)
    with pytest.raises(ValueError):
        TrackerConfig(smoothing=1.0)
    from clip_perception.runtime import CommandState
    from clip_perception.worker import FrameWorker, Hooks

    cfg = make_config({"found_frames": 3, "lost_frames": 4, "switch_margin": 0.25, "smoothing": 0.5})
    worker = FrameWorker(cfg, CommandState(), Hooks(None, None, None, None, None))
    tr = worker.tracker("left", cfg)
    assert tr.config == TrackerConfig(found_frames=3, lost_frames=4, switch_margin=0.25, smoothing=0.5)
    assert worker.tracker("left", cfg) is tr and worker.tracker("right", cfg) is not tr


# ------------------------------------------------------------------ rendered sequences
W, H = 320, 240
#: two red balls (indices 0, 1) and two distractors; the balls swap image sides during the orbit
TWO_RED_BALLS = [
    {"shape": "ball", "color": "red", "xy": (-0.1, 0.1)},
    {"shape": "ball", "color": "red", "xy": (0.1, -0.1)},
    {"shape": "cube", "color": "blue", "xy": (0.12, 0.1)},
    {"shape": "ball", "color": "green", "xy": (-0.1, -0.12)},
]


@pytest.fixture(scope="module")
def detector():
    cfg = make_config({"color_prior_weight": 0.5, "proposal_methods": ["contours", "depth"]})
    return Detector(cfg.detector, encoder=ColorTestEncoder())


def _gt_index(frame, det):
    """Scene index of the visible object whose ground-truth box overlaps ``det`` most (-1: none)."""
    if det is None or not frame.objects:
        return -1
    ious = box_iou(det.box[None], np.stack([o.box for o in frame.objects]))[0]
    return frame.objects[int(np.argmax(ious))].index if ious.max() > 0.3 else -1


def test_orbit_two_red_balls_on_the_left_keeps_the_same_ball(detector):
    """Case: wrist camera orbiting 120 deg round the table (yaw 30 -> -90, 60 frames, 320x240),
    two identical red balls, "the red ball on the left": the ball resolved in frame 0 (scene index 0)
    stays the target in all 60 frames (0 identity switches, one track id; its projected ground-truth
    centre lies in the target box), while the per-frame ranking switches to the other ball once
    they have swapped sides."""
    from clip_perception.sim.scene import make_scene, project_points
    from clip_perception.sim.trajectory import orbit_poses

    scene = make_scene(0, objects=TWO_RED_BALLS, width=W, height=H)
    tracker = Tracker(TrackerConfig())
    raw, tracked, ids = [], [], []
    try:
        for pose in orbit_poses(60, scene.target, 0.75, 50.0, 30.0, -90.0):
            frame = scene.render(camera_pose=pose)
            result = detector.detect(frame.rgb, "the red ball on the left", depth=frame.depth, K=frame.K)
            raw.append(_gt_index(frame, result.best))
            tracker.update(result, generation=1)
            assert result.found
            tracked.append(_gt_index(frame, result.best))
            ids.append(result.best.track_id)
            uv = project_points(frame.objects[0].center_optical[None], frame.K)[0]
            x1, y1, x2, y2 = result.best.box
            assert x1 <= uv[0] <= x2 and y1 <= uv[1] <= y2
    finally:
        scene.close()
    assert raw[0] == 0 and 1 in raw  # the sequence does test the lock: per frame, the left ball changes
    assert tracked == [0] * 60
    assert set(ids) == {ids[0]} and ids[0] > 0


def test_static_camera_noisy_depth_jitter_below_2mm_with_smoothing(detector):
    """Case: static camera 1.2 m from the table, structured-light depth noise (k = 1.5e-3 /m,
    1/8 px disparity steps, edge dropout 0.5, noise correlated over 3 px) and colour noise
    (std 4 levels), 40 frames: with smoothing = 0.8 the target position's std per axis over
    frames 10-39 is <= 2 mm, and below the raw (smoothing 0) std."""
    from clip_perception.sim.depth_noise import StructuredLightNoise
    from clip_perception.sim.scene import make_scene

    scene = make_scene(0, objects=TWO_RED_BALLS, width=W, height=H, camera_distance=1.2,
                       depth_noise=StructuredLightNoise(correlation_px=3.0), noise_seed=1, image_noise_std=4.0)
    try:
        frames = [scene.render() for _ in range(40)]
    finally:
        scene.close()
    results = [detector.detect(f.rgb, "the red ball on the left", depth=f.depth, K=f.K) for f in frames]
    stds = {}
    for s in (0.0, 0.8):
        tracker = Tracker(TrackerConfig(smoothing=s))
        points = []
        for r in results:
            r = tracker.update(copy.deepcopy(r), generation=1)
            assert r.found and r.best.position is not None
            points.append(r.best.position)
        stds[s] = np.std(np.array(points)[10:], axis=0)
    assert np.all(stds[0.8] <= 0.002), stds
    assert np.all(stds[0.8] < stds[0.0]), stds


def test_found_changes_only_when_the_ball_leaves_and_reenters_the_view(detector):
    """Case: the camera moves in (1.0 -> 0.3 m, 30 frames) and back out (30 frames); the red ball
    off to the side leaves the view and comes back.  With found_frames = lost_frames = 3 the
    reported found state changes exactly three times: found at frame found_frames - 1, lost between
    the first frame the ball is cut by the border and lost_frames after it is out of view, found
    again between its first visible frame and found_frames after it is whole again."""
    from clip_perception.sim.scene import make_scene
    from clip_perception.sim.trajectory import approach_poses

    scene = make_scene(0, objects=[{"shape": "ball", "color": "red", "xy": (0.0, 0.2)},
                                   {"shape": "cube", "color": "blue", "xy": (0.0, -0.05)}],
                       width=W, height=H, image_noise_std=4.0, noise_seed=2)
    poses = approach_poses(30, scene.target, 1.0, 0.3)
    poses = np.concatenate([poses, poses[::-1]])
    tracker = Tracker(TrackerConfig(found_frames=3, lost_frames=3))
    found, visible, cut = [], [], []
    try:
        for pose in poses:
            frame = scene.render(camera_pose=pose)
            ball = [o for o in frame.objects if o.name == "red ball"]
            visible.append(bool(ball))
            cut.append(bool(ball) and ball[0].truncated)
            found.append(tracker.update(detector.detect(frame.rgb, "the red ball", depth=frame.depth, K=frame.K),
                                        generation=1).found)
    finally:
        scene.close()
    changes = [k for k in range(1, len(found)) if found[k] != found[k - 1]]
    assert found[0] is False and len(changes) == 3, (found, visible, cut)
    first_cut = cut.index(True)
    first_gone = visible.index(False)
    back = first_gone + visible[first_gone:].index(True)
    whole = back + [c for c in cut[back:]].index(False)
    assert changes[0] == 2
    assert first_cut <= changes[1] <= first_gone + 3 and found[changes[1]] is False
    assert back <= changes[2] <= whole + 3 and found[changes[2]] is True
