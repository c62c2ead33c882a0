"""Issue 12: the package as a ROS 2 workspace package, built by colcon and run from the install space.

One build for the module: the package is copied into ``<tmp>/ws/src/clip_perception`` (what a
clone holds: no ``.venv``, ``build``, ``install``), and ``colcon build`` runs in ``<tmp>/ws`` in a
shell that only did ``source .venv/bin/activate`` (README's venv path: the ROS 2 wheels, colcon and
the colcon defaults file that ``scripts/setup_env.sh`` gives the venv; no extra arguments).

Then every check runs in a fresh shell (``env -i`` style: HOME, PATH, ROS_DOMAIN_ID, localhost
discovery) that only sources ``install/setup.bash``.  Its ``python3`` is a throw-away venv that sees
the project venv's packages (rclpy and the message wheels, torch, open_clip, OpenCV) through one
path line, but none of that venv's ``.pth`` files: neither the editable install of this source tree
nor the repository's own ``install/`` is on ``sys.path``.  ``LD_LIBRARY_PATH`` names the wheels'
shared libraries, as the wheels' bootstrapper does in the project venv, less this repository's.

- The messages and services import; ``clip_perception``, its modules and ``msg``/``srv`` all
  resolve to the workspace's install space; the ament index (what ``ros2 run`` / ``ros2 launch``
  use) gives its prefix and share, with the three executables, the launch file and the config.
- ``lib/clip_perception/clip_perception_node`` (random ViT-B-32 weights, CPU; the colour prior
  decides and every best candidate is reported) gets "pick up the red ball" on ``command`` and a
  synthetic frame with a red ball on ``image``, publishes a detection of the ball on ``detections``
  (the frame's stamp and frame_id, box IoU >= 0.5), and exits with code 0 on SIGINT.

The launch file itself is checked by test_package.py's harness; here the installed copy must be
that file, byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"
NOT_CLONED = {".venv", "build", "install", "log", "out", ".git", ".pytest_cache", ".hypothesis", ".benchmarks"}
EXECUTABLES = ("clip_perception_node", "clip_perception_sim_camera", "clip_perception_replay")
PYVER = f"python{sys.version_info[0]}.{sys.version_info[1]}"
BUILD_TIMEOUT_S = 600.0  # hang guards only
WAIT_S = 150.0

FRAME = "colcon_cam_optical_frame"
W, H = 640, 480
BALL_CENTER, BALL_R = (240, 250), 50
BALL_BOX = (BALL_CENTER[0] - BALL_R, BALL_CENTER[1] - BALL_R, BALL_CENTER[0] + BALL_R + 1, BALL_CENTER[1] + BALL_R + 1)
COMMAND = "pick up the red ball"
# Random CLIP weights rank nothing: the colour prior decides, and every best candidate is reported.
NODE_PARAMS = ("device:=cpu", "pretrained:=none", "warmup:=false", "use_depth:=false", "qos:=reliable",
               "mode:=crop", "proposal_methods:=[contours]", "max_proposals:=16", "color_prior_weight:=0.9",
               "score_threshold:=0.0")


def _copy_package(dest: Path) -> None:
    """The files a clone of this repository holds (the working tree, less what set-up and the tests make)."""
    def ignore(folder, names):
        skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        if Path(folder) == REPO:
            skip |= NOT_CLONED & set(names)
        return skip

    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)


def _clean_python(root: Path) -> tuple[Path, str]:
    """A venv at ``root`` whose site-packages holds one line naming the project venv's site-packages.

    Returns (its bin folder, the LD_LIBRARY_PATH the ROS 2 wheels need).  Python adds a path line of
    a ``.pth`` file to ``sys.path`` without processing the ``.pth`` files found there, so the project
    venv's ``__editable__.clip_perception*.pth`` (the source tree), ``clip_perception_interfaces.pth``
    (the repository's install/) and ``ros_wheels_bootstrapper.pth`` are not applied.  The library
    path is what that bootstrapper computes (``<venv>/lib`` and every ``site-packages/ros_*.libs``),
    less ``ros_clip_perception.libs`` (the repository's install/lib)."""
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site = Path(sysconfig.get_paths(vars={"base": str(root), "platbase": str(root)})["purelib"])
    venv_site = Path(sysconfig.get_paths()["purelib"])
    (site / "clip_perception_test_ros_wheels.pth").write_text(f"{venv_site}\n")
    libs = [VENV / "lib"] + sorted(p for p in venv_site.glob("ros_*.libs") if p.name != "ros_clip_perception.libs")
    return root / "bin", os.pathsep.join(str(p.resolve()) for p in libs)


def _fresh_env(home: Path, python_bin: Path, ld_path: str) -> dict:
    return {"HOME": str(home), "PATH": f"{python_bin}:/usr/bin:/bin", "LANG": "C.UTF-8",
            "LD_LIBRARY_PATH": ld_path, "ROS_DOMAIN_ID": os.environ["ROS_DOMAIN_ID"],
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_LOG_DIR": str(home / "roslog"),
            "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}


def _in_fresh_shell(ws: Path, *argv: str) -> list:
    """bash that sources only ``<ws>/install/setup.bash``, then runs ``argv`` (exec: signals reach it)."""
    return ["bash", "--noprofile", "--norc", "-c", 'source install/setup.bash && exec "$@"', "bash", *argv]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """(workspace, fresh-shell environment): the package built by ``colcon build`` in the venv."""
    activate = VENV / "bin" / "activate"
    assert "COLCON_DEFAULTS_FILE" in activate.read_text(), f"{activate} is not set up: run make setup"
    root = tmp_path_factory.mktemp("colcon")
    ws = root / "ws"
    _copy_package(ws / "src" / "clip_perception")
    log = root / "colcon_build.log"
    with open(log, "w") as out:
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", 'source "$1" && colcon build', "bash", str(activate)],
            cwd=ws, env={"HOME": str(root), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=BUILD_TIMEOUT_S)
    assert proc.returncode == 0, "colcon build failed:\n" + "\n".join(log.read_text().splitlines()[-60:])
    python_bin, ld_path = _clean_python(root / "python")
    return ws, _fresh_env(root, python_bin, ld_path)


INSTALL_CHECK = """
import importlib.util, json, sys
import clip_perception, clip_perception.msg, clip_perception.srv
from clip_perception.msg import TargetDetection, TargetDetectionArray
from clip_perception.srv import Locate, SetCommand
from ament_index_python.packages import get_package_prefix, get_package_share_directory
print(json.dumps({
    "init": clip_perception.__file__, "package_path": list(clip_perception.__path__),
    "modules": [importlib.util.find_spec(f"clip_perception.{m}").origin for m in ("node", "pipeline")],
    "msg": clip_perception.msg.__file__, "srv": clip_perception.srv.__file__,
    "fields": TargetDetectionArray.get_fields_and_field_types(),
    "detection_fields": TargetDetection.get_fields_and_field_types(),
    "locate": Locate.Response.get_fields_and_field_types(),
    "prefix": get_package_prefix("clip_perception"), "share": get_package_share_directory("clip_perception"),
    "sys_path": sys.path,
}))
"""


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_install_space_holds_the_merged_package_executables_launch_and_config(workspace):
    """In the fresh shell, clip_perception (our modules + generated msg/srv) comes from
    ``install/clip_perception/lib/pythonX.Y/site-packages/clip_perception`` only."""
    from clip_perception.msg import TargetDetection, TargetDetectionArray
    from clip_perception.srv import Locate

    ws, env = workspace
    proc = subprocess.run(_in_fresh_shell(ws, "python3", "-c", INSTALL_CHECK), cwd=ws, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    prefix = ws / "install" / "clip_perception"
    package = prefix / "lib" / PYVER / "site-packages" / "clip_perception"
    assert got["init"] == str(package / "__init__.py")
    assert got["package_path"] == [str(package)]
    assert got["modules"] == [str(package / "node.py"), str(package / "pipeline.py")]
    src = ws / "src" / "clip_perception"  # the copy that was built (other edits may go on in REPO)
    sources = {p.relative_to(src / "clip_perception") for p in (src / "clip_perception").rglob("*.py")}
    installed = {p.relative_to(package) for p in package.rglob("*.py")}
    assert sources <= installed, f"sources not installed: {sorted(map(str, sources - installed))}"
    assert {Path("msg/__init__.py"), Path("msg/_target_detection_array.py"), Path("srv/_locate.py")} <= installed
    assert got["msg"] == str(package / "msg" / "__init__.py") and got["srv"] == str(package / "srv" / "__init__.py")
    assert not [p for p in got["sys_path"] if p == str(REPO) or p.startswith(str(REPO / "install"))]
    # The same interface definitions as the source tree's msg/ and srv/.
    assert got["fields"] == TargetDetectionArray.get_fields_and_field_types()
    assert got["detection_fields"] == TargetDetection.get_fields_and_field_types()
    assert got["locate"] == Locate.Response.get_fields_and_field_types()
    # ros2 run / ros2 launch look the package up in the ament index.
    assert got["prefix"] == str(prefix) and got["share"] == str(prefix / "share" / "clip_perception")
    for name in EXECUTABLES:
        exe = prefix / "lib" / "clip_perception" / name
        assert exe.is_file() and os.access(exe, os.X_OK), exe
        assert exe.read_bytes() == (src / "scripts" / name).read_bytes()
    share = prefix / "share" / "clip_perception"
    for rel in ("launch/clip_perception.launch.py", "config/clip_perception.yaml"):
        assert (share / rel).read_bytes() == (src / rel).read_bytes(), rel
    for rel in sources:  # ours, not the generated empty __init__.py
        assert (package / rel).read_bytes() == (src / "clip_perception" / rel).read_bytes(), rel


def _scene() -> np.ndarray:
    """(480, 640, 3) uint8 RGB: grey table, one red ball (centre (240, 250), radius 50 px)."""
    rgb = np.full((H, W, 3), 128, np.uint8)
    cv2.circle(rgb, BALL_CENTER, BALL_R, (220, 30, 30), -1)
    return rgb


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


class _Tester:
    """The test's rclpy node: frames on ``image`` (RELIABLE, a new stamp every 0.5 s), the command
    on ``command`` until ``status`` acknowledges it, ``detections`` collected; spun in a thread."""

    def __init__(self, ns: str):
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import Header, String

        from clip_perception.decode import image_fields_from_rgb
        from clip_perception.msg import TargetDetectionArray

        reliable = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, args=[])
        self.node = rclpy.create_node(f"colcon_tester_{uuid.uuid4().hex[:8]}", context=self.ctx)
        self.dets, self.status, self.sent = [], [], set()
        self.node.create_subscription(TargetDetectionArray, f"{ns}/detections", self.dets.append, reliable)
        self.node.create_subscription(String, f"{ns}/status", lambda m: self.status.append(m.data), latched)
        self.cmd = self.node.create_publisher(String, f"{ns}/command", reliable)
        self.img = self.node.create_publisher(Image, f"{ns}/image", QoSProfile(
            depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE))
        self.frame = Image(header=Header(frame_id=FRAME), **image_fields_from_rgb(_scene()))
        self.String = String
        self.count = 0
        self.node.create_timer(0.5, self._tick)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.ctx)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _tick(self) -> None:
        if not any(s.startswith("looking for") for s in self.status):
            if self.cmd.get_subscription_count() > 0 and self.count % 4 == 0:
                self.cmd.publish(self.String(data=COMMAND))
        elif self.img.get_subscription_count() > 0:
            self.frame.header.stamp.sec = 1_700_000_000 + self.count
            self.sent.add(self.frame.header.stamp.sec)
            self.img.publish(self.frame)
        self.count += 1

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)
        self.thread.join(5.0)


def _wait_for(pred, proc, log: Path, what: str):
    end = time.monotonic() + WAIT_S
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        assert proc.poll() is None, f"node exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {WAIT_S:g} s:\n{log.read_text()[-3000:]}")


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_installed_node_detects_red_ball_over_topics_and_exits_zero_on_sigint(workspace):
    ws, env = workspace
    ns = f"/colcon_{uuid.uuid4().hex[:8]}"
    exe = ws / "install" / "clip_perception" / "lib" / "clip_perception" / "clip_perception_node"
    argv = [str(exe), "--ros-args", "-r", f"__ns:={ns}"]
    for p in NODE_PARAMS:
        argv += ["-p", p]
    log = ws / f"node{ns.replace('/', '_')}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(_in_fresh_shell(ws, *argv), cwd=ws, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    tester = None
    try:
        tester = _Tester(ns)
        _wait_for(lambda: any(s == "looking for: red ball" for s in tester.status), proc, log,
                  "status 'looking for: red ball'")
        msg = _wait_for(lambda: next((m for m in list(tester.dets) if m.detections), None), proc, log,
                        "a detection on detections")
        assert (msg.command, msg.action, msg.target) == (COMMAND, "pick up", "red ball")
        assert msg.header.frame_id == FRAME and msg.header.stamp.sec in tester.sent and msg.header.stamp.nanosec == 0
        best = msg.detections[0]
        box = (best.roi.x_offset, best.roi.y_offset, best.roi.x_offset + best.roi.width,
               best.roi.y_offset + best.roi.height)
        assert best.label == "red ball"
        assert _iou(box, BALL_BOX) >= 0.5, f"best box {box} vs the ball {BALL_BOX}"
        assert not best.has_position  # no depth
    finally:
        if tester is not None:
            tester.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert str(REPO / "clip_perception") not in text
