"""Faults the node must survive without going down or publishing something false.

Each node test runs the real ``ClipPerceptionNode`` in-process over real rclpy with an injected
test encoder (``fake_encoders.ColorTestEncoder``: it "sees" colours, so the red ball is known to
win), using the graph helpers of ``test_node.py`` (own context, namespaced topics, everything shut
down in ``finally``).  The CUDA out-of-memory case uses the real ``ClipEncoder`` (ViT-B-32, random
weights, CPU) with its injected ``torch.OutOfMemoryError``.  The safe-loading tests check that a
checkpoint can never run code, that a path never reaches a shell, and that nothing evaluates text.

No assertion is about timing: waits have generous timeouts and only guard against hangs.
"""

from __future__ import annotations

import ast
import logging
import os
import shlex
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
import torch
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

import clip_perception.worker as worker_module
from clip_perception import geometry, messages
from clip_perception.command import MAX_COMMANDS, parse_command
from clip_perception.encoder import ClipEncoder
from clip_perception.weights import CheckpointError, WeightsUnavailableError
from clip_perception.node import ClipPerceptionNode
from clip_perception.params import make_config
from clip_perception.pipeline import Detector
from clip_perception.pipeline import rank_boxes as rank

from fake_encoders import ColorTestEncoder
from test_node import (BALL_BOX, FRAME, STAMP, WAIT, H, K, W, depth_msg, graph, image_msg, info_msg, iou,
                       roi_box, scene, stamp_plus, wait_for)

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "clip_perception"
RELIABLE = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


def ns(stamp: Time) -> int:
    return messages.stamp_to_ns(stamp)


def result_after(g, stamp: Time, publish, pred=lambda m: True, every_s: float = 0.25, timeout: float = WAIT):
    """Call ``publish()`` every ``every_s`` seconds until a detections message with ``stamp``
    that satisfies ``pred`` arrives (best-effort camera topics may drop a message)."""
    want = ns(stamp)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        publish()
        t_next = time.monotonic() + every_s
        while time.monotonic() < t_next:
            for msg in g.detections():
                if ns(msg.header.stamp) == want and pred(msg):
                    return msg
            time.sleep(0.02)
    raise AssertionError(f"no detections for stamp {want}")


def camera_info(stamp: Time, k: np.ndarray, width: int, height: int) -> CameraInfo:
    msg = CameraInfo(header=Header(stamp=stamp, frame_id=FRAME), width=width, height=height)
    msg.k = [float(v) for v in np.asarray(k, dtype=np.float64).ravel()]
    return msg


def position(det) -> np.ndarray:
    return np.array([det.position.x, det.position.y, det.position.z])


def has_3d(msg) -> bool:
    return bool(msg.detections) and msg.detections[0].has_position


# ---------------------------------------------------------------------------- camera / depth / K faults
@pytest.mark.ros
@pytest.mark.timeout(120)
def test_camera_stops_5_s_warns_naming_topic_then_recovers_without_restart():
    """Case: the camera stops for 5 s and restarts.  While silent the watchdog warns, naming the
    image topic; after the restart the same node publishes new detections of the ball."""
    with graph(no_image_warn_s=1.0, command="pick up the red ball") as g:
        topic = f"{g.ns}/image"
        before = g.result_for(stamp_plus(STAMP, 1.0))
        assert before.detections and iou(roi_box(before.detections[0].roi), BALL_BOX) > 0.8
        node_before = g.node
        frames_before = g.node.frames_processed
        start = len(g.node.warnings)
        time.sleep(5.0)  # the camera is silent
        silent = [w for w in list(g.node.warnings)[start:] if w.startswith("no image on")]
        assert silent, f"no 'no image' warning during the 5 s gap: {g.node.warnings[-5:]}"
        assert all(topic in w for w in silent)
        seconds = float(silent[-1].split(" for ", 1)[1].split(" s;", 1)[0])
        assert seconds >= 1.0  # it reports how long the topic has been silent
        after = g.result_for(stamp_plus(STAMP, 10.0))  # the camera restarts
        assert g.node is node_before and g.node.frames_processed > frames_before
        assert after.target == "red ball" and after.detections
        assert iou(roi_box(after.detections[0].roi), BALL_BOX) > 0.8


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_depth_disappears_2d_continues_without_stale_3d():
    """Case: depth stops arriving (camera_info continues).  Detections continue in 2D with
    has_position false; the depth image still buffered from before is never paired with the
    newer frames (no stale 3D, no target_pose for them); a throttled warning says why."""
    with graph(use_depth=True, sync_slop=0.05, command="pick up the red ball") as g:
        depth = np.full((H, W), 1.5, np.float32)
        s0 = stamp_plus(STAMP, 1.0)
        first = g.result_for(s0, pred=has_3d, depth=depth, info_stamp=s0)
        assert first.detections[0].position.z == pytest.approx(1.5, abs=0.01)
        for i in range(3):  # depth gone: only colour + camera_info
            s = stamp_plus(STAMP, 2.0 + i)
            msg = g.result_for(s, info_stamp=s)
            best = msg.detections[0]
            assert iou(roi_box(best.roi), BALL_BOX) > 0.8
            assert not best.has_position
            assert (best.position.x, best.position.y, best.position.z) == (0.0, 0.0, 0.0)
        time.sleep(0.3)  # let any pose of those frames arrive before checking there is none
        late = [p for p in g.cam()["poses"] if ns(p.header.stamp) >= ns(stamp_plus(STAMP, 2.0))]
        assert not late
        # one throttled key for every "no depth" case (no_image_warn_s = 60 s): a first frame that beat
        # its depth and camera_info ("no depth / camera_info within ...") takes the one warning
        warned = [w for w in g.node.warnings if w.startswith("no depth")]
        assert len(warned) == 1
        # depth comes back: 3D again, from the new depth (2.0 m), not the old 1.5 m
        s = stamp_plus(STAMP, 6.0)
        back = g.result_for(s, pred=has_3d, depth=np.full((H, W), 2.0, np.float32), info_stamp=s)
        assert back.detections[0].position.z == pytest.approx(2.0, abs=0.01)


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_camera_info_resolution_change_uses_new_k_or_gives_honest_2d():
    """Case: the camera switches from 640x480 to 320x240 mid-run (new CameraInfo, new K).
    New image + depth + CameraInfo -> 3D from the new K (within 1 cm); depth still at the old
    size -> 2D only with a warning; CameraInfo still for the old size (its K does not apply to
    the new image) -> 2D only with a warning.  No index errors, the node keeps publishing."""
    with graph(use_depth=True, sync_slop=0.05, command="pick up the red ball") as g:
        s0 = stamp_plus(STAMP, 1.0)
        old = g.result_for(s0, pred=has_3d, depth=np.full((H, W), 1.5, np.float32), info_stamp=s0)
        u, v = geometry.box_center(roi_box(old.detections[0].roi))
        np.testing.assert_allclose(position(old.detections[0]), geometry.pixel_to_point(u, v, 1.5, K), atol=0.01)

        w2, h2 = W // 2, H // 2
        k2 = np.array([[250.0, 0.0, 159.5], [0.0, 250.0, 119.5], [0.0, 0.0, 1.0]])
        small = cv2.resize(scene(), (w2, h2), interpolation=cv2.INTER_NEAREST)
        ball2 = tuple(c / 2 for c in BALL_BOX)
        cam = g.cam()

        def publish(stamp, depth_shape, info_k, info_size):
            cam["depth"].publish(depth_msg(np.full(depth_shape, 2.0, np.float32), stamp))
            cam["info"].publish(camera_info(stamp, info_k, *info_size))
            cam["image"].publish(image_msg(small, stamp))

        s1 = stamp_plus(STAMP, 2.0)  # everything switched
        new = result_after(g, s1, lambda: publish(s1, (h2, w2), k2, (w2, h2)), pred=has_3d)
        best = new.detections[0]
        assert iou(roi_box(best.roi), ball2) > 0.8
        u, v = geometry.box_center(roi_box(best.roi))
        np.testing.assert_allclose(position(best), geometry.pixel_to_point(u, v, 2.0, k2), atol=0.01)

        s2 = stamp_plus(STAMP, 3.0)  # depth still at the old size
        msg = result_after(g, s2, lambda: publish(s2, (H, W), k2, (w2, h2)))
        assert msg.detections and not msg.detections[0].has_position
        assert any("not aligned" in w for w in g.node.warnings)

        s3 = stamp_plus(STAMP, 4.0)  # camera_info still describes the old 640x480 camera
        msg = result_after(g, s3, lambda: publish(s3, (h2, w2), K, (W, H)))
        assert msg.detections and iou(roi_box(msg.detections[0].roi), ball2) > 0.8
        assert not msg.detections[0].has_position
        assert any("camera_info" in w and "640x480" in w and "320x240" in w for w in g.node.warnings)


@pytest.mark.ros
@pytest.mark.timeout(120)
@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_nan_or_inf_in_k_gives_no_3d_a_warning_and_the_node_keeps_running(bad):
    """Case: CameraInfo.k with NaN (or +Inf) in fx and cx -> detections without 3D, a warning
    that K is invalid; the next frame with a valid K gets its 3D position again."""
    with graph(use_depth=True, sync_slop=0.05, command="pick up the red ball") as g:
        cam = g.cam()
        depth = np.full((H, W), 1.5, np.float32)
        k_bad = K.copy()
        k_bad[0, 0] = k_bad[0, 2] = float(bad)

        def publish(stamp, k):
            cam["depth"].publish(depth_msg(depth, stamp))
            cam["info"].publish(info_msg(stamp, k=k))
            # let depth / camera_info land first: with none received yet the node does not wait for
            # them, and this case is about the K that comes with them
            time.sleep(0.1)
            cam["image"].publish(image_msg(scene(), stamp))

        s1 = stamp_plus(STAMP, 1.0)
        msg = result_after(g, s1, lambda: publish(s1, k_bad))
        assert msg.detections and iou(roi_box(msg.detections[0].roi), BALL_BOX) > 0.8
        assert not any(d.has_position for d in msg.detections)
        assert all(np.all(np.isfinite(position(d))) for d in msg.detections)
        assert any("no valid K" in w for w in g.node.warnings)
        s2 = stamp_plus(STAMP, 2.0)
        ok = result_after(g, s2, lambda: publish(s2, K), pred=has_3d)
        assert ok.detections[0].position.z == pytest.approx(1.5, abs=0.01)


# ---------------------------------------------------------------------------- big and degenerate input
@pytest.fixture(scope="module")
def clip_encoder():
    """Real ClipEncoder, ViT-B-32 with random weights on the CPU (seeded)."""
    torch.manual_seed(0)
    enc = ClipEncoder("ViT-B-32", pretrained="none", device="cpu")
    yield enc
    enc.fault_hook = None


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_8k_frame_proposals_downscaled_and_boxes_in_source_pixels():
    """Case: a 7680x4320 rgb8 frame (99.5 MB) with a red ball (centre (5200, 2600), radius 500)
    drawn at known 8K pixels.  Proposals run on a copy downscaled to proposal_max_side = 320,
    yet the published ROI is in source pixels around the ball (IoU > 0.8)."""
    w8, h8 = 7680, 4320
    center, radius = (5200, 2600), 500
    ball = (center[0] - radius, center[1] - radius, center[0] + radius + 1, center[1] + radius + 1)
    rgb = np.full((h8, w8, 3), 128, np.uint8)
    cv2.circle(rgb, center, radius, (220, 30, 30), -1)
    big = image_msg(rgb, STAMP)
    del rgb
    with graph(qos="reliable", camera_qos=RELIABLE, command="pick up the red ball",
               proposal_methods=["contours"], proposal_max_side=320) as g:
        msg = result_after(g, STAMP, lambda: g.cam()["image"].publish(big), every_s=20.0, timeout=100.0)
        assert msg.header.frame_id == FRAME
        best = msg.detections[0]
        assert best.roi.x_offset + best.roi.width <= w8 and best.roi.y_offset + best.roi.height <= h8
        assert iou(roi_box(best.roi), ball) > 0.8, roi_box(best.roi)


#: (box, has pixels in the 640x480 image) -- degenerate proposals a buggy source could produce.
DEGENERATE_BOXES = np.array([
    [10, 10, 10, 10],            # zero area
    [50, 50, 50, 90],            # zero width
    [200, 300, 100, 200],        # reversed corners
    [np.nan, 0, 20, 20],         # NaN
    [-50, -50, -10, -10],        # wholly outside (top-left)
    [700, 500, 800, 600],        # wholly outside (bottom-right)
    [640, 100, 700, 200],        # touching the right edge from outside
    [100, 200, 200, 300],        # the red patch
    [-1e6, -1e6, 1e6, 1e6],      # absurdly large
    [600, 400, 1000, 900],       # partly outside
], np.float32)
USABLE = 7  # DEGENERATE_BOXES[USABLE:] have pixels in the image


def degenerate_scene() -> np.ndarray:
    rgb = np.full((480, 640, 3), 128, np.uint8)
    rgb[200:300, 100:200] = (220, 30, 30)
    return rgb


def test_zero_area_and_out_of_image_boxes_are_never_reported():
    """Case (unit level): proposals that are zero-area, reversed, NaN, wholly outside the image,
    partly outside, or absurdly large reach the ranking and the 3D step.  Only the real box
    around the red patch is reported; boxes are clipped to the image; box_position returns
    None for boxes with no pixels and a finite point otherwise."""
    rgb = degenerate_scene()
    boxes = DEGENERATE_BOXES
    objectness = np.linspace(1.0, 0.1, len(boxes)).astype(np.float32)
    cfg = make_config({"mode": "crop", "score_threshold": 0.5, "color_prior_weight": 0.5})
    command = parse_command("pick up the red ball").first
    res = rank(rgb, boxes, objectness, command, ColorTestEncoder(), cfg)
    assert [d.box.tolist() for d in res.detections] == [[100.0, 200.0, 200.0, 300.0]]
    # with every threshold off, no box without pixels in the image is ever a candidate
    res = rank(rgb, boxes, objectness, command, ColorTestEncoder(), cfg.replace(score_threshold=0.0, top_k=100))
    for det in res.detections:
        x1, y1, x2, y2 = det.box
        assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480, det.box
    # the whole pipeline with these proposals, depth and K
    depth = np.full((480, 640), 1.5, np.float32)
    result = Detector(cfg, encoder=ColorTestEncoder()).detect(rgb, "pick up the red ball", depth=depth, K=K,
                                                            proposals=(boxes, objectness))
    assert len(result.detections) == 1
    best = result.detections[0]
    # flat depth: nothing stands above the support plane, so the box is GrabCut's mask of the red
    # patch (within 1 px of it) and the position the visible surface at that box's centre
    np.testing.assert_allclose(best.box, [100.0, 200.0, 200.0, 300.0], atol=1.0)
    assert not best.position_is_centre
    u, v = geometry.box_center(best.box)
    np.testing.assert_allclose(best.position, geometry.pixel_to_point(u, v, 1.5, K), atol=1e-6)
    for box in boxes[:USABLE]:
        assert geometry.box_position(depth, box, K) is None
    for box in boxes[USABLE:]:
        geo = geometry.box_position(depth, box, K)
        assert geo is not None and np.all(np.isfinite(geo.position)) and geo.position[2] == pytest.approx(1.5)


@pytest.mark.parametrize("mode", ["crop", "dense"])
def test_degenerate_boxes_through_the_real_clip_encoder(clip_encoder, mode):
    """Case: the same degenerate proposals ranked with the real ClipEncoder (ViT-B-32, random
    weights) in crop and dense mode: no exception (before the fix the 2e6-pixel box asked
    NumPy for a 15.7 TiB crop and the NaN box raised), finite scores in [0, 1], and with the
    threshold at 0 only boxes with pixels in the image are reported, clipped to it."""
    cfg = make_config({"mode": mode, "score_threshold": 0.0, "top_k": 100})
    command = parse_command("pick up the red ball").first
    res = rank(degenerate_scene(), DEGENERATE_BOXES, None, command, clip_encoder, cfg)
    assert res.fused.shape == (len(DEGENERATE_BOXES),)
    assert np.all(np.isfinite(res.fused)) and np.all((res.fused >= 0) & (res.fused <= 1))
    assert res.detections
    for det in res.detections:
        x1, y1, x2, y2 = det.box
        assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480, det.box


# ---------------------------------------------------------------------------- commands and parameters
@pytest.mark.ros
@pytest.mark.timeout(120)
def test_flood_of_1000_commands_per_second_newest_wins_state_bounded():
    """Case: 2,000 commands in about 2 s (1,000 per second) while frames are processed.
    After the flood the current target is the last command sent, the next frame's result looks
    for it, and the node's command state and bookkeeping did not grow."""
    colours = ["red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "white", "black"]
    nouns = ["ball", "cup", "box", "bottle", "bowl", "mug", "can", "block", "plate", "toy"]
    texts = [f"pick up the {colours[i % 10]} {nouns[(i // 10) % 10]}" for i in range(1999)]
    texts.append("find the grey sponge")  # the last one: a target no earlier command named
    with graph(command="pick up the red ball") as g:
        node = g.node
        g.result_for(stamp_plus(STAMP, 1.0))
        sizes_before = (len(node._warnings.throttle._last), len(node.worker._waiters), len(node.worker._reloads),
                        len(node.warnings))
        stop = threading.Event()

        def frames():
            i = 0
            while not stop.is_set():
                g.publish(scene(), stamp_plus(STAMP, 2.0 + 0.1 * i))
                i += 1
                stop.wait(0.1)

        feeder = threading.Thread(target=frames, daemon=True)
        feeder.start()
        try:
            t0 = time.monotonic()
            for i, text in enumerate(texts):
                g.send_command(text)
                ahead = t0 + (i + 1) / 1000.0 - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        finally:
            stop.set()
            feeder.join(5.0)
        wait_for(lambda: node.commands.snapshot().command.target == "grey sponge", what="the last command")
        snap = node.commands.snapshot()
        assert snap.text == texts[-1] and 1 <= snap.generation <= len(texts) + 1
        g.wait_status("looking for: grey sponge")
        msg = g.result_for(stamp_plus(STAMP, 1000.0), pred=lambda m: m.target == "grey sponge")
        assert msg.command == texts[-1] and not msg.detections  # no grey sponge in view
        sizes_after = (len(node._warnings.throttle._last), len(node.worker._waiters), len(node.worker._reloads),
                       len(node.warnings))
        assert sizes_after == sizes_before
        assert len(node.commands.later) <= MAX_COMMANDS and len(node.processed) <= 1000


INVALID_PARAMETERS = [
    ("max_proposals", -5, "max_proposals"),
    ("nms_iou", 2.0, "nms_iou"),
    ("proposal_methods", ["selective_search", "magic"], "magic"),
    ("device", "tpu", "tpu"),
    ("prompt_templates", [], "prompt_templates"),
    ("prompt_templates", ["a photo of a thing"], "{}"),
    ("score_threshold", float("nan"), "score_threshold"),
    ("mode", "fastest", "fastest"),
]


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_invalid_parameter_values_rejected_with_reason_old_value_kept(tmp_path):
    """Case: negative max_proposals, nms_iou 2.0, an unknown proposal method, device "tpu", empty
    prompt_templates, a template without {}, a NaN threshold, an unknown mode, and a pretrained
    path with shell syntax: each set_parameters call is rejected with a reason, the parameter
    and the detector config keep their old values, and the node still finds the ball."""
    with graph(command="pick up the red ball") as g:
        node = g.node
        for name, value, reason in INVALID_PARAMETERS:
            old_param, old_config = node.get_parameter(name).value, getattr(node.config, name)
            [res] = node.set_parameters([Parameter(name, value=value)])
            assert not res.successful, (name, value)
            assert reason in res.reason, (name, value, res.reason)
            assert node.get_parameter(name).value == old_param and getattr(node.config, name) == old_config
        marker = tmp_path / "pwned"
        evil = f"{tmp_path}/x.pt; touch {marker}"
        [res] = node.set_parameters([Parameter("pretrained", value=evil)])
        assert not res.successful and "not found" in res.reason and evil in res.reason
        assert not marker.exists()
        assert node.get_parameter("pretrained").value == "openai"
        msg = g.result_for(stamp_plus(STAMP, 1.0))
        assert msg.detections and iou(roi_box(msg.detections[0].roi), BALL_BOX) > 0.8


# ---------------------------------------------------------------------------- encoder faults
@pytest.mark.ros
@pytest.mark.timeout(120)
def test_cuda_oom_during_encoding_retries_smaller_then_cpu_fallback_through_the_node(clip_encoder, caplog):
    """Case: torch.OutOfMemoryError from the model forward during a frame (injected 3 times,
    as a GPU out of memory would raise it): the encoder retries with batches of 2 then 1, then
    falls back to the CPU with a warning; the frame is still published, and so is the next."""
    enc = clip_encoder
    seen = []
    enc.inject_oom(3)
    inject = enc.fault_hook

    def hook(x):  # image batches only (texts are (N, context) token ids): OOM while encoding the crops
        if x.ndim == 4:
            seen.append(int(x.shape[0]))
            inject(x)

    enc.fault_hook = hook
    small = cv2.resize(scene(), (160, 120), interpolation=cv2.INTER_AREA)
    try:
        with caplog.at_level(logging.WARNING, logger="clip_perception.encoder"), \
                graph(encoder=enc, command="pick up the red ball", proposal_methods=["grid"], max_proposals=4,
                      score_threshold=0.0) as g:
            first = g.result_for(stamp_plus(STAMP, 1.0), rgb=small)
            assert seen[:4] == [4, 2, 1, 4]  # OOM at 4, 2, 1; the CPU fallback runs the whole batch
            assert enc.fell_back_to_cpu and enc.device.type == "cpu"
            assert first.target == "red ball" and len(first.detections) == 4
            second = g.result_for(stamp_plus(STAMP, 2.0), rgb=small)
            assert len(second.detections) == 4
        text = [r.getMessage() for r in caplog.records]
        assert any("retrying with batches of 2" in t for t in text)
        assert any("retrying with batches of 1" in t for t in text)
        assert any("falling back to CPU" in t for t in text)
    finally:
        enc.fault_hook = None
        enc.fell_back_to_cpu = False


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_corrupt_images_between_good_ones_throttled_warning_good_frames_published(monkeypatch):
    """Case: data-length mismatch, unknown encoding, step too small and an empty image between
    good frames (reliable QoS, each one decoded): one throttled warning naming the topic, no
    output for the bad frames, a result for every good frame."""
    calls = {"ok": 0, "failed": 0}
    real_decode = worker_module.decode_image

    def counting_decode(msg):
        try:
            out = real_decode(msg)
        except Exception:
            calls["failed"] += 1
            raise
        calls["ok"] += 1
        return out

    monkeypatch.setattr(worker_module, "decode_image", counting_decode)

    def corrupt(kind: str, stamp: Time) -> Image:
        msg = image_msg(scene(), stamp)
        if kind == "short_data":
            msg.data = msg.data[: len(msg.data) - 7]
        elif kind == "unknown_encoding":
            msg.encoding = "rgb9"
        elif kind == "step_too_small":
            msg.step = msg.width * 3 - 3
        else:  # empty
            msg.height = msg.width = msg.step = 0
            msg.data = []
        return msg

    kinds = ["short_data", "unknown_encoding", "step_too_small", "empty"]
    with graph(qos="reliable", camera_qos=RELIABLE, command="pick up the red ball") as g:
        topic = f"{g.ns}/image"
        pub = g.cam()["image"]
        good_stamps, bad_stamps = [], []
        for i, kind in enumerate(kinds + kinds):
            good = stamp_plus(STAMP, 2.0 * i)
            good_stamps.append(ns(good))
            pub.publish(image_msg(scene(), good))
            wait_for(lambda: any(ns(m.header.stamp) == ns(good) for m in g.detections()), what="good frame")
            bad = stamp_plus(STAMP, 2.0 * i + 1.0)
            bad_stamps.append(ns(bad))
            failed = calls["failed"]
            pub.publish(corrupt(kind, bad))
            wait_for(lambda: calls["failed"] > failed, what=f"decode of the {kind} frame")
        published = {ns(m.header.stamp) for m in g.detections()}
        assert set(good_stamps) <= published and not published & set(bad_stamps)
        assert calls["failed"] == 8
        decode_warnings = [w for w in g.node.warnings if w.startswith("cannot decode image")]
        assert len(decode_warnings) == 1 and topic in decode_warnings[0]
        last = g.result_for(stamp_plus(STAMP, 100.0))
        assert last.detections and iou(roi_box(last.detections[0].roi), BALL_BOX) > 0.8


# ---------------------------------------------------------------------------- safe model loading
class _RunsCode:
    """Pickles as a call of os.system: loading it with plain pickle runs a shell command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"visual.proj": torch.zeros(2, 2), "payload": _RunsCode(f"touch {shlex.quote(str(marker))}")}, path)
    return path


def test_pickle_checkpoint_with_code_is_rejected_and_never_executed(tmp_path):
    """Case: a .pt checkpoint whose pickle runs ``touch MARKER`` when unpickled.  The control
    (plain ``torch.load(weights_only=False)``) shows the payload is live; ClipEncoder refuses
    the file with CheckpointError naming it, and the marker is not created."""
    control_marker = tmp_path / "control_ran"
    control = _evil_checkpoint(tmp_path / "control.pt", control_marker)
    torch.load(control, weights_only=False)  # unsafe on purpose: proves the payload runs
    assert control_marker.exists()

    marker = tmp_path / "code_ran"
    evil = _evil_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError) as err:
        ClipEncoder("ViT-B-32", pretrained=str(evil), device="cpu")
    assert str(evil) in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("template", [
    "{d}/x; touch {m}",
    "{d}/x.pt && touch {m}",
    "$(touch {m})",
    "`touch {m}`.pt",
    "{d}/x.pt | touch {m}",
])
def test_pretrained_path_with_shell_syntax_is_a_missing_file_never_a_command(tmp_path, template):
    """Case: pretrained strings with shell syntax (;, &&, $(), backticks, |) -> a clear
    WeightsUnavailableError naming the string as a missing checkpoint file; nothing runs."""
    marker = tmp_path / "pwned"
    value = template.format(d=tmp_path, m=marker)
    with pytest.raises(WeightsUnavailableError) as err:
        ClipEncoder("ViT-B-32", pretrained=value, device="cpu")
    assert "not found" in str(err.value) and value in str(err.value)
    assert not marker.exists()


def _package_trees():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(REPO), ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _call_name(call: ast.Call) -> str:
    f = call.func
    parts = []
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if isinstance(f, ast.Name):
        parts.append(f.id)
    return ".".join(reversed(parts))


def test_package_has_no_eval_exec_shell_or_unsafe_load():
    """Case (static, ast over every clip_perception/*.py): no eval / exec / compile of text,
    no os.system / os.popen / os.exec* / os.spawn*, no subprocess with shell=True and
    subprocess only in demo.py (fixed argv lists); no pickle loads; every torch.load and
    open_clip.create_model call passes weights_only=True."""
    forbidden = {"eval", "exec", "compile", "builtins.eval", "builtins.exec", "os.system", "os.popen",
                 "pickle.load", "pickle.loads", "marshal.loads", "__import__"}
    problems = []
    subprocess_modules = set()
    for rel, tree in _package_trees():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            keywords = {k.arg: k.value for k in node.keywords}
            if name in forbidden or name.startswith(("os.exec", "os.spawn", "os.posix_spawn")):
                problems.append(f"{rel}:{node.lineno} calls {name}")
            if name.startswith("subprocess."):
                subprocess_modules.add(str(rel))
                shell = keywords.get("shell")
                if shell is not None and not (isinstance(shell, ast.Constant) and shell.value is False):
                    problems.append(f"{rel}:{node.lineno} {name} with shell=")
            if name in ("torch.load", "open_clip.create_model", "create_model"):
                wo = keywords.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    problems.append(f"{rel}:{node.lineno} {name} without weights_only=True")
    assert not problems, problems
    assert subprocess_modules <= {"clip_perception/tools/demo.py"}, subprocess_modules


@pytest.mark.ros
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["truncated", "wrong_tensors", "not_a_checkpoint"])
def test_malformed_checkpoint_fails_node_start_up_naming_the_file(tmp_path, kind):
    """Case: pretrained:=<bad checkpoint> at node start-up -> the node constructor raises
    CheckpointError (the executable exits 1 with it as the fatal log) naming the file."""
    if kind == "truncated":
        path = tmp_path / "truncated.pt"
        torch.save({"visual.proj": torch.randn(768, 512)}, path)
        path.write_bytes(path.read_bytes()[:4096])
    elif kind == "wrong_tensors":
        path = tmp_path / "other_model.pt"
        torch.save({"fc.weight": torch.randn(4, 4)}, path)
    else:
        path = tmp_path / "notes.safetensors"
        path.write_bytes(b"these are not weights\n" * 50)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        overrides = [Parameter("pretrained", value=str(path)), Parameter("device", value="cpu"),
                     Parameter("use_depth", value=False), Parameter("warmup", value=False)]
        with pytest.raises(CheckpointError) as err:
            ClipPerceptionNode(context=ctx, namespace=f"/ckpt_{kind}", parameter_overrides=overrides)
        assert str(path) in str(err.value)
        assert "malformed, truncated or for another architecture" in str(err.value)
    finally:
        rclpy.try_shutdown(context=ctx)
