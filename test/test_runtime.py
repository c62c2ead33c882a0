"""The ROS-free run-time state of the node (clip_perception.runtime) and its inference worker
(clip_perception.worker): newest-frame slot, stamp pairing, command state, throttled warnings,
and one worker iteration over duck-typed messages.

Importable and runnable without rclpy: nothing here (nor the modules it imports) imports ROS.
Messages are ``types.SimpleNamespace`` objects with the fields of sensor_msgs Image /
CompressedImage / CameraInfo; images are built with :mod:`clip_perception.decode`'s field helpers.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from clip_perception.decode import image_fields_from_depth, image_fields_from_rgb
from clip_perception.params import make_config
from clip_perception.runtime import CameraInputs, CommandState, LatestSlot, StampBuffer, Throttle, WarningLog
from clip_perception.worker import FrameWorker, Hooks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_encoders import ColorTestEncoder  # noqa: E402

VOICE_NOISE = ["", "   ", "Thank you.", "[BLANK_AUDIO]", "!"]
W, H = 160, 120
K = np.array([[100.0, 0.0, 79.5], [0.0, 100.0, 59.5], [0.0, 0.0, 1.0]])
STAMP_NS = 1_700_000_000_000_000_123
FRAME = "cam_color_optical_frame"


def test_this_module_imports_without_rclpy():
    """Importing this test module (and so runtime, worker, decode, params, fake_encoders) in a
    fresh interpreter loads no ROS 2 Python module (rclpy, message packages)."""
    here = Path(__file__).resolve().parent
    code = ("import sys; sys.path.insert(0, %r); import test_runtime; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('rclpy', 'sensor_msgs', 'std_msgs', 'builtin_interfaces', 'rcl_interfaces')))" % str(here))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=here.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_stamp_buffer_pairs_nearest_within_slop_and_never_zero_stamps():
    """Pairing rule: nearest stamp within the slop (inclusive); zero stamps never pair."""
    buf = StampBuffer(maxlen=10)
    base = 1_700_000_000_000_000_123
    for i, dt_ms in enumerate((-30, 10, 60)):
        buf.add(base + dt_ms * 1_000_000, i)
    item, diff = buf.nearest(base, 0.05)
    assert item == 1 and diff == pytest.approx(0.010)
    assert buf.nearest(base + 200_000_000, 0.05) is None
    assert buf.nearest(0, 10.0) is None
    buf.add(0, "unstamped")
    assert buf.nearest(1, 1.0) is None


def test_stamp_buffer_says_when_a_partner_may_still_arrive():
    """Pairing case: depth lagging colour by a few ms is waited for; a stale or absent stream is not."""
    buf = StampBuffer()
    assert not buf.may_still_pair(5_000_000_000)  # nothing received yet
    buf.add(4_990_000_000, "depth")
    assert buf.may_still_pair(5_000_000_000)  # newest 10 ms before the image: its partner is coming
    assert not buf.may_still_pair(4_990_000_000)  # already there
    assert not buf.may_still_pair(8_000_000_000)  # newest 3 s old: the stream stopped
    assert not buf.may_still_pair(0)  # unstamped images never pair


def test_latest_slot_keeps_only_the_newest_frame():
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take() == 4 and slot.take() is None
    assert slot.received == 5 and slot.dropped == 4


def test_command_state_ignores_voice_noise_and_reports_state_changes_only():
    """Voice noise keeps the target; status lines only on command / found-state changes."""
    state = CommandState()
    up = state.submit("pick up the red ball and then the blue cup")
    assert up.accepted and up.target == "red ball"
    assert up.status.startswith("looking for: red ball") and "blue cup" in up.status
    gen = state.snapshot().generation
    for text in VOICE_NOISE:
        up = state.submit(text)
        assert not up.accepted and up.target == "red ball"
        assert up.status.startswith("ignored: no command") and "still looking for: red ball" in up.status
    assert state.submit("[BLANK_AUDIO]").status.startswith("ignored: no command ([BLANK_AUDIO])")
    assert state.submit("拿起红色的球").status.startswith("ignored: unsupported")
    assert state.snapshot().command.target == "red ball"
    assert state.observe(gen, True, "found red ball") == "found red ball"
    assert state.observe(gen, True, "found red ball") is None
    assert state.observe(gen, False, "no red ball in view") == "no red ball in view"
    assert state.observe(gen - 1, True, "stale") is None




def test_throttle_and_warning_log_let_a_key_through_once_per_period():
    """Throttle: a key passes once per period (injected clock); WarningLog logs and keeps only those."""
    now = [100.0]
    throttle = Throttle(clock=lambda: now[0])
    assert throttle.allow("a", 5.0) and not throttle.allow("a", 5.0) and throttle.allow("b", 5.0)
    now[0] = 104.9
    assert not throttle.allow("a", 5.0)
    now[0] = 105.0
    assert throttle.allow("a", 5.0)
    logged = []
    log = WarningLog(logged.append, lambda: 60.0, keep=2)
    assert log.warn("k1", "one") and not log.warn("k1", "one again") and log.warn("k2", "two")
    assert log.warn("k3", "three")
    assert logged == ["one", "two", "three"] and log.recent == ["two", "three"]


def test_camera_inputs_keep_the_newest_frame_and_pair_by_stamp():
    """put_image overwrites and wakes; nearest_pair pairs within the slop and never waits for a
    stream whose newest stamp is already past the frame (returns at once)."""
    wake = threading.Event()
    cam = CameraInputs("left", "/ns/left/image", wake=wake)
    cam.put_image("old", STAMP_NS - 1)
    cam.put_image("new", STAMP_NS)
    assert wake.is_set() and cam.take() == ("new", STAMP_NS) and cam.take() is None
    assert cam.slot.dropped == 1 and cam.last_image_time is not None
    cam.put_depth("depth+10ms", STAMP_NS + 10_000_000)
    cam.put_info("info-60ms", STAMP_NS - 60_000_000)
    depth, info = cam.nearest_pair(STAMP_NS, 0.05, wait_s=0.0, stop=threading.Event())
    assert depth == ("depth+10ms", pytest.approx(0.010)) and info is None
    missing, details = cam.describe_missing(depth, info)
    assert missing == ["camera_info"]
    assert details == ["newest depth stamp 1700000000.010", "newest camera_info stamp 1699999999.940"]


# ---------------------------------------------------------------------------- one worker iteration
def header(stamp_ns: int = STAMP_NS, frame: str = FRAME) -> SimpleNamespace:
    return SimpleNamespace(stamp=SimpleNamespace(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame)


def scene() -> np.ndarray:
    """(120, 160, 3) uint8: grey, a red square at x 60..99, y 40..79."""
    rgb = np.full((H, W, 3), 128, np.uint8)
    rgb[40:80, 60:100] = (220, 20, 20)
    return rgb


def image(frame: str = FRAME) -> SimpleNamespace:
    return SimpleNamespace(header=header(frame=frame), **image_fields_from_rgb(scene()))


def depth_image(frame: str = FRAME, metres: float = 1.0) -> SimpleNamespace:
    return SimpleNamespace(header=header(frame=frame),
                           **image_fields_from_depth(np.full((H, W), metres, np.float32), "32FC1"))


def compressed_depth(frame: str = FRAME, millimetres: int = 1000) -> SimpleNamespace:
    """compressed_depth_image_transport 16UC1: 12-byte ConfigHeader (int32 format, 2 float32) + 16-bit PNG."""
    ok, png = cv2.imencode(".png", np.full((H, W), millimetres, np.uint16))
    assert ok
    return SimpleNamespace(header=header(frame=frame), format="16UC1; compressedDepth png",
                           data=struct.pack("<iff", 0, 0.0, 0.0) + png.tobytes())


def make_worker(**overrides):
    published, statuses, logged = [], [], []
    values = {"use_depth": True, "mode": "crop", "proposal_methods": ["contours"], "color_prior_weight": 1.0,
              "command": "", "no_image_warn_s": 60.0}
    values.update(overrides)
    cfg = make_config(values)
    warnings = WarningLog(logged.append, lambda: cfg.no_image_warn_s)
    hooks = Hooks(publish=lambda cam, hdr, result, text, rgb, c: published.append((cam.name, hdr, result, text)),
                  status=statuses.append, warnings=warnings, info=logged.append, error=logged.append)
    commands = CommandState()
    worker = FrameWorker(cfg, commands, hooks)
    worker.build(ColorTestEncoder())
    return worker, commands, published, statuses, warnings


def run_frame(worker, cam: CameraInputs, msg, depth=None) -> None:
    if depth is not None:
        cam.put_depth(depth, STAMP_NS)
        info = SimpleNamespace(header=header(), k=K.ravel().tolist(), width=W, height=H, binning_x=0, binning_y=0,
                               roi=SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0))
        cam.put_info(info, STAMP_NS)
    cam.put_image(msg, STAMP_NS)
    worker.cameras = [cam]
    worker._publishing = True
    worker.process([(cam, cam.take())])


@pytest.mark.parametrize("depth_frame,registered,has_3d", [
    (FRAME, False, True),                       # same frame_id: registered by construction
    ("cam_depth_optical_frame", False, False),  # another frame: warned, 2D only
    ("cam_depth_optical_frame", True, True),    # depth_registered: true says it is registered
])
def test_depth_from_another_frame_gives_no_3d_unless_registered(depth_frame, registered, has_3d):
    """A depth image whose frame_id differs from the colour image's -> 2D only with one
    throttled warning naming both frames, unless depth_registered; 3D at 1.0 m otherwise."""
    worker, commands, published, statuses, warnings = make_worker(depth_registered=registered)
    commands.submit("pick up the red block")
    cam = CameraInputs("", "/t/image")
    for _ in range(2):
        run_frame(worker, cam, image(), depth=depth_image(depth_frame))
    assert len(published) == 2
    best = published[-1][2].best
    assert best is not None and abs(best.box[0] - 60) <= 2 and abs(best.box[2] - 100) <= 2
    assert (best.position is not None) == has_3d
    if has_3d:
        assert best.position[2] == pytest.approx(1.0, abs=0.01)
    frame_warnings = [w for w in warnings.recent if "frame_id" in w]
    if has_3d:
        assert not frame_warnings
    else:
        assert len(frame_warnings) == 1 and depth_frame in frame_warnings[0] and FRAME in frame_warnings[0]
        assert "depth_registered" in frame_warnings[0] and "2D detections only" in frame_warnings[0]
    assert statuses == ["found red block at 1.00 m" if has_3d else "found red block (no 3D position)"]


def test_compressed_depth_inputs_are_decoded_as_compressed_depth():
    """depth_compressed cameras decode compressedDepth PNG (16UC1 millimetres) -> 3D at 1.25 m."""
    worker, commands, published, _, warnings = make_worker()
    commands.submit("pick up the red block")
    cam = CameraInputs("", "/t/image", depth_compressed=True)
    run_frame(worker, cam, image(), depth=compressed_depth(millimetres=1250))
    best = published[-1][2].best
    assert best.position is not None and best.position[2] == pytest.approx(1.25, abs=0.01), warnings.recent


def test_stopped_worker_publishes_nothing_of_the_frame_in_progress():
    """After stop(publish_pending=False) (lifecycle deactivate) a frame is processed but nothing
    of it is published, and pending locate requests are released."""
    worker, commands, published, _, _ = make_worker(use_depth=False)
    commands.submit("pick up the red block")
    cam = CameraInputs("", "/t/image")
    run_frame(worker, cam, image())
    assert len(published) == 1
    worker.stop(publish_pending=False)
    cam.put_image(image(), STAMP_NS + 1)
    worker.process([(cam, cam.take())])
    assert len(published) == 1 and worker.frames_processed == 1
