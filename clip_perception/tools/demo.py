"""``clip-perception demo`` (``make demo``): the main job end to end over ROS 2.

What it does, in order:

1. decides the CLIP weights: the requested ones (default ``ViT-B-32``/``openai``) when
   they can be loaded here (local cache, or a download when the network answers).  When
   the *default* weights cannot be had (offline machine) it says so and runs the node with
   ``pretrained:=none`` (random CLIP weights) and ``color_prior_weight:=1.0``, and every
   output line is labelled ``[random CLIP + colour prior]``: the detections then come
   from the colour prior and the geometry, not from CLIP.  Weights asked for explicitly
   (``--pretrained``/``--checkpoint``) that cannot be loaded are an error (exit 3);
2. starts two child processes on a private ROS 2 graph (``ROS_DOMAIN_ID`` drawn at
   random in 1..100, ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, a namespace of its
   own; camera topics reliable, so that no depth image is dropped under CPU load): the
   simulated RGB-D camera (``python -m clip_perception.sim.camera_node``; a
   seeded MuJoCo table top) or, with ``--data``, the replay publisher
   (``python -m clip_perception.tools.replay``: an RGB-D folder or a rosbag2), and the node
   (``python -m clip_perception.node``, i.e. ``clip_perception_node``).  Their output
   goes to ``OUT/demo_camera.log`` and ``OUT/demo_node.log``;
3. sends the command on the node's ``command`` topic (``std_msgs/String``, as a voice
   node would) once the node subscribes, and again every 2 s until the node's ``status``
   acknowledges it ("looking for: red ball");
4. prints every ``TargetDetectionArray`` for that command as one line: target,
   confidence, box, 3D position (metres, camera optical frame) and -- in simulation --
   the ground-truth object under the box (best IoU with the sim's latched
   ``ground_truth`` boxes), the IoU and the 3D distance to that object's centre (the node
   reports the object centre from its mask and the table plane when it can, else the
   visible surface; the line says which);
5. after ``--frames`` results (default 3) or ``--timeout`` seconds, saves
   ``OUT/demo.png`` (the camera image of the last result, drawn with
   :func:`clip_perception.visualize.draw_result`; the ground-truth box in magenta),
   sends SIGINT to both children, waits for them and exits: 0 when at least one result
   was printed, 1 otherwise (the logs say why), 2 on bad arguments, 3 when requested
   weights are unavailable.

rclpy is imported only inside :func:`main` (this module is imported by ROS-free code
for :func:`pick_seed` and :func:`format_result`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .. import boxes
from ..command import parse_command

DEFAULT_COMMAND = "pick up the red ball"
DEFAULT_FRAMES = 3
DEFAULT_TIMEOUT_S = 90.0
#: Objects on the simulated table.
NUM_OBJECTS = 6
#: Camera frame rate and the node's processing limit (frames per second).
CAMERA_RATE_HZ = 2.0
NODE_MAX_RATE_HZ = 2.0
#: Seconds between re-sent commands until the node acknowledges.
RESEND_S = 2.0
#: Seconds a child gets to exit after SIGINT before it is killed.
STOP_WAIT_S = 30.0
RANDOM_LABEL = "[random CLIP + colour prior]"
_GT_COLOR = (255, 0, 255)


# ----------------------------------------------------------------------------- pure helpers
def pick_seed(command_text: str, num_objects: int = NUM_OBJECTS, limit: int = 1000) -> Optional[int]:
    """First sim layout seed in ``[0, limit)`` whose objects answer the command unambiguously.

    The layout must hold exactly one object matching the command's colour words and
    noun (a shape word of the sim), and when colours are named, no other object of those
    colours (so that the colour prior alone can find it when CLIP weights are random).

    Returns:
        the seed, or ``None`` when the command names nothing the sim can build.
    """
    from .evaluate import _scene_module

    scene = _scene_module()
    parse = parse_command(command_text)
    if not parse.ok or not parse.commands:
        return None
    cmd = parse.commands[0]
    colors = [c for c in cmd.colors if c in scene.COLORS]
    if len(colors) != len(cmd.colors):
        return None
    shape = cmd.noun if cmd.noun in scene.SHAPES else None
    if shape is None and not colors:
        return None
    for seed in range(limit):
        specs = scene.default_object_specs(seed, num_objects)
        match = [s for s in specs if (not colors or s.color in colors) and (shape is None or s.shape == shape)]
        if len(match) != 1:
            continue
        if colors and sum(s.color in colors for s in specs) != 1:
            continue
        return seed
    return None


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``[x1, y1, x2, y2]`` boxes (pixels, exclusive x2/y2; ``boxes.box_iou``)."""
    return float(boxes.box_iou(a, b)[0, 0])


def roi_box(roi) -> list:
    """``sensor_msgs/RegionOfInterest`` (or an object with its fields) -> ``[x1, y1, x2, y2]``."""
    return [float(roi.x_offset), float(roi.y_offset), float(roi.x_offset + roi.width),
            float(roi.y_offset + roi.height)]


def match_ground_truth(box: Sequence[float], objects: Sequence[dict]) -> tuple[Optional[dict], float]:
    """The ground-truth object (sim ``ground_truth`` JSON entry) with the best IoU with ``box``."""
    best, best_iou = None, 0.0
    for obj in objects:
        if not obj.get("box"):
            continue
        iou = box_iou(box, obj["box"])
        if iou > best_iou:
            best, best_iou = obj, iou
    return best, best_iou


def format_result(label: str, index: int, total: int, msg, target: str, gt: Optional[dict]) -> str:
    """One printed line for a ``TargetDetectionArray`` (``msg``).

    Args:
        label: prefix naming the weights, e.g. ``[random CLIP + colour prior]``.
        index, total: result number and how many are wanted.
        msg: the TargetDetectionArray (or an object with its fields).
        target: the parsed object phrase ("red ball").
        gt: the sim's ground-truth dict (``objects`` list), or ``None`` for real data.
    """
    stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
    head = f"{label} result {index}/{total}  stamp {stamp:.3f} s  frame {msg.header.frame_id}  \"{target}\" -> "
    if not msg.detections:
        return head + f"NOT FOUND (no {target} above the confidence threshold)"
    d = msg.detections[0]
    box = roi_box(d.roi)
    line = (head + f"{d.label}  confidence {d.confidence:.2f}  box x={d.roi.x_offset} y={d.roi.y_offset} "
            f"w={d.roi.width} h={d.roi.height}")
    if d.has_position:
        line += f"  position ({d.position.x:.3f}, {d.position.y:.3f}, {d.position.z:.3f}) m"
    else:
        line += "  no 3D position"
    if len(msg.detections) > 1:
        line += f"  (+{len(msg.detections) - 1} more)"
    if gt is None:
        return line + "  | real data: no ground truth"
    obj, iou = match_ground_truth(box, gt.get("objects", []))
    if obj is None:
        return line + "  | ground truth: no object under this box (WRONG)"
    verdict = "correct" if obj["name"] == target and iou >= 0.5 else (
        "right object, box IoU < 0.5" if obj["name"] == target else f"WRONG object (wanted {target})")
    line += f"  | ground truth: {obj['name']} IoU {iou:.2f} ({verdict})"
    if d.has_position:
        c = np.asarray(obj["center_optical"], dtype=np.float64)
        p = np.array([d.position.x, d.position.y, d.position.z])
        kind = "object centre" if d.position_is_centre else "visible surface"
        line += f", 3D error {100 * float(np.linalg.norm(p - c)):.1f} cm to its centre (the position is the {kind})"
    return line


# ----------------------------------------------------------------------------- processes
@dataclass
class Child:
    """A child process with its log file."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    log_file: object

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, wait_s: float = STOP_WAIT_S) -> Optional[int]:
        """SIGINT, wait up to ``wait_s``, then SIGKILL.  Returns the exit code."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        try:
            self.log_file.close()
        except Exception:  # noqa: BLE001
            pass
        return self.proc.returncode


def _start(name: str, argv: list, env: dict, log_path: Path) -> Child:
    log_file = open(log_path, "w", buffering=1)  # noqa: SIM115 - closed in Child.stop
    proc = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Child(name, proc, log_path, log_file)


def _bag_remaps(path: Path) -> tuple[list, list]:
    """``--map`` items and ``--topics`` for a bag: colour Image -> image, depth Image -> depth,
    the colour camera's CameraInfo -> camera_info."""
    from rosbags.rosbag2 import Reader

    image = depth = info = None
    with Reader(path) as reader:
        conns = list(reader.connections)
    for c in conns:
        t = c.topic
        if c.msgtype == "sensor_msgs/msg/Image" and "depth" in t.lower():
            depth = depth or t
        elif c.msgtype in ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage") and "depth" not in t.lower():
            image = image or t
        elif c.msgtype == "sensor_msgs/msg/CameraInfo" and "depth" not in t.lower():
            info = info or t
    maps, topics = [], []
    for old, new in ((image, "image"), (depth, "depth"), (info, "camera_info")):
        if old:
            maps += ["--map", f"{old}:={new}"]
            topics.append(old)
    if image is None:
        raise ValueError(f"no colour image topic in bag {path}")
    return maps, topics


def _private_domain() -> int:
    current = os.environ.get("ROS_DOMAIN_ID")
    rnd = random.SystemRandom()
    while True:
        d = rnd.randint(1, 100)
        if str(d) != current:
            return d


# ----------------------------------------------------------------------------- main
def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clip-perception demo",
                                description="The main job end to end over ROS 2: simulated (or replayed) RGB-D "
                                            "camera -> clip_perception_node -> detections.")
    p.add_argument("--command", default=DEFAULT_COMMAND, help=f'what to find (default "{DEFAULT_COMMAND}")')
    p.add_argument("--seed", type=int, default=None,
                   help="sim layout seed (default: the first layout with exactly one object matching the command)")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="results to print before exiting")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for the results")
    p.add_argument("--data", help="real data instead of the sim: an RGB-D folder or a rosbag2 (no ground truth)")
    p.add_argument("--model", default=None, help="open_clip model name (default ViT-B-32)")
    p.add_argument("--pretrained", default=None, help="open_clip tag, hf-hub:NAME, checkpoint path or none")
    p.add_argument("--checkpoint", default=None, help="local checkpoint file; same as --pretrained PATH")
    p.add_argument("--out", default="out", help="folder for demo.png and the children's logs (default out/)")
    return p


class _Exit(Exception):
    """Stop the demo with ``code``; the message goes to stderr after ``clip-perception demo: ``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def _check_args(args) -> tuple[str, Path, Optional[Path]]:
    """(the command's target phrase, output folder (created), data path or None).  Raises _Exit (2)."""
    if args.frames < 1 or args.timeout <= 0:
        raise _Exit("error: --frames must be >= 1 and --timeout > 0")
    parse = parse_command(args.command)
    if not parse.ok or not parse.commands:
        raise _Exit(f"error: '{args.command}' holds no command ({parse.reason})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else None
    if data is not None and not data.exists():
        raise _Exit(f"error: no such folder or bag: {data}")
    return parse.commands[0].target, out, data


def _choose_weights(args) -> tuple[str, str, bool]:
    """(model, pretrained, random weights?) the node runs with (step 1 of the module docstring).

    Raises:
        _Exit: 2 for an unknown model or tag, 3 when weights asked for explicitly are unavailable.
    """
    from ..params import PARAMETERS
    from ..weights import weights_caches, weights_problem

    model = args.model or PARAMETERS["model_name"].default
    explicit = args.checkpoint or args.pretrained
    pretrained = explicit or PARAMETERS["pretrained"].default
    try:
        problem = weights_problem(model, pretrained)
    except ValueError as exc:
        raise _Exit(f"error: {exc}") from None
    if problem is not None and explicit:
        raise _Exit(problem, code=3)
    random_weights = problem is not None or pretrained.strip().lower() in ("", "none")
    if problem is not None:
        print(f"CLIP weights for {model}/{pretrained} are not available offline (cache: {weights_caches()}); "
              "running with RANDOM CLIP weights + colour prior: detections come from the colour prior, not CLIP")
        pretrained = "none"
    elif random_weights:
        print("pretrained none: RANDOM CLIP weights + colour prior: detections come from the colour prior, not CLIP")
    return model, pretrained, random_weights


def _private_graph() -> tuple[int, str, dict]:
    """(ROS_DOMAIN_ID, namespace, children's environment); this process joins the same graph."""
    domain = _private_domain()
    ns = f"/clip_demo_{os.getpid()}"
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    env.setdefault("MUJOCO_GL", "osmesa")
    env.setdefault("PYTHONFAULTHANDLER", "1")  # a crash of a child leaves its Python stack in its log
    os.environ["ROS_DOMAIN_ID"] = str(domain)  # this process's own rclpy context joins the same graph
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return domain, ns, env


def _camera_argv(args, data: Optional[Path], ns: str, target: str) -> tuple[list, str]:
    """(argv of the camera child, a description of the source): the sim camera, or the replay
    publisher of ``data``.  Raises _Exit (2) for a bag without a colour image topic."""
    py = sys.executable
    if data is None:
        seed = args.seed if args.seed is not None else pick_seed(args.command)
        if seed is None:
            seed = 0
            print(f"demo: no sim layout holds exactly one '{target}'; using seed 0 (expect 'not found')")
        argv = [py, "-m", "clip_perception.sim.camera_node", "--ros-args", "-r", f"__ns:={ns}",
                "-p", f"seed:={seed}", "-p", f"num_objects:={NUM_OBJECTS}", "-p", f"rate_hz:={CAMERA_RATE_HZ}",
                "-p", "publish_clock:=false", "-p", "qos:=reliable"]
        return argv, f"simulated camera (MuJoCo, seed {seed}, {NUM_OBJECTS} objects)"
    from .replay import is_bag

    extra = []
    if is_bag(data):
        try:
            maps, topics = _bag_remaps(data)
        except (ValueError, OSError) as exc:
            raise _Exit(f"error: {exc}") from None
        extra = maps + ["--topics", *topics]
    argv = [py, "-m", "clip_perception.tools.replay", str(data), "--rate", "1.0", "--loop", "--start-delay", "2.0",
            *extra, "--ros-args", "-r", f"__ns:={ns}"]
    return argv, f"replay of {data} (real data: no ground truth)"


def _node_argv(ns: str, model: str, pretrained: str, random_weights: bool) -> list:
    """argv of the node child (``python -m clip_perception.node``)."""
    argv = [sys.executable, "-m", "clip_perception.node", "--ros-args", "-r", f"__ns:={ns}",
            "-p", f"model_name:={model}", "-p", f"pretrained:={pretrained}", "-p", "warmup:=false",
            "-p", f"max_rate_hz:={NODE_MAX_RATE_HZ}", "-p", "qos:=reliable"]
    if random_weights:
        argv += ["-p", "color_prior_weight:=1.0"]
    return argv


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``clip-perception demo`` (see the module docstring for the steps and exit codes)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # ``clip-perception demo -- --frames 5``
        argv = argv[1:]
    args = make_parser().parse_args(argv)
    try:
        target, out, data = _check_args(args)
        model, pretrained, random_weights = _choose_weights(args)  # 1. weights
        label = RANDOM_LABEL if random_weights else f"[CLIP {model}/{pretrained}]"
        domain, ns, env = _private_graph()  # 2. private graph and children
        cam_argv, source = _camera_argv(args, data, ns, target)
    except _Exit as exc:
        print(f"clip-perception demo: {exc}", file=sys.stderr)
        return exc.code
    node_argv = _node_argv(ns, model, pretrained, random_weights)
    cam_log, node_log = out / "demo_camera.log", out / "demo_node.log"
    print(f"demo: {source}; node {model} ({'random weights' if random_weights else pretrained}); "
          f"ROS_DOMAIN_ID={domain}, namespace {ns}")
    print(f"demo: logs of the children: {node_log} (node), {cam_log} (camera)")
    children = []
    try:
        children.append(_start("camera", cam_argv, env, cam_log))
        children.append(_start("node", node_argv, env, node_log))
        results = _run_client(args, ns, target, label, children, out, data is None)
    except KeyboardInterrupt:
        print("demo: interrupted")
        results = None
    finally:
        codes = {c.name: c.stop() for c in children}
    if codes:
        print("demo: stopped " + ", ".join(f"{n} (exit {rc})" for n, rc in codes.items()))
        for child in children:
            if child.proc.returncode not in (0, None):
                print(f"demo: {child.name} exited with {child.proc.returncode}; the end of its log "
                      f"({child.log_path}):\n{child.tail(15)}")
    if not results:
        print(f"demo: no result; see {node_log} and {cam_log}")
        errors = _error_lines(node_log)
        if errors:
            print("demo: the node reported:\n  " + "\n  ".join(errors))
        return 1
    return 0


def _error_lines(log: Path, most: int = 5) -> list:
    """The last ``most`` distinct ERROR / FATAL lines of a child's log (for a failed demo)."""
    try:
        lines = Path(log).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    found = [line for line in lines if "[ERROR]" in line or "[FATAL]" in line]
    return list(dict.fromkeys(found))[-most:]


class _Client:
    """The demo's own ROS 2 node on the private graph: sends the command until the node takes
    it, and collects the node's ``status``, the sim's latched ``ground_truth``, the last
    camera images and the ``detections`` (printed as they come)."""

    def __init__(self, ctx, args, ns: str, target: str, label: str, sim: bool):
        import rclpy
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        from clip_perception.msg import TargetDetectionArray

        self.args, self.ns, self.target, self.label, self.sim = args, ns, target, label, sim
        latched = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        reliable = QoSProfile(depth=20, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        self.node = node = rclpy.create_node(f"clip_perception_demo_{os.getpid()}", context=ctx)
        self.state = {"gt": None, "status": [], "dets": [], "images": {}}
        node.create_subscription(TargetDetectionArray, f"{ns}/detections", self.state["dets"].append, reliable)
        node.create_subscription(String, f"{ns}/status", lambda m: self.state["status"].append(m.data), latched)
        node.create_subscription(String, f"{ns}/ground_truth",
                                 lambda m: self.state.__setitem__("gt", json.loads(m.data)),
                                 QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                                            reliability=ReliabilityPolicy.RELIABLE,
                                            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        # the demo's camera / replay publish reliably: a best-effort reader loses large frames under load
        node.create_subscription(Image, f"{ns}/image", self._on_image,
                                 QoSProfile(depth=2, history=HistoryPolicy.KEEP_LAST,
                                            reliability=ReliabilityPolicy.RELIABLE))
        self._string = String
        self.cmd_pub = node.create_publisher(String, f"{ns}/command", reliable)
        self.printed: list = []
        self.last_msg = None
        self.acked = False
        self.last_sent = -1e9
        self.seen_status = 0
        self.told_wait = False
        self.t0 = time.monotonic()

    def _on_image(self, msg) -> None:
        """Keep the 20 newest camera images by stamp (ns) for the annotated picture."""
        ns_stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        imgs = self.state["images"]
        imgs[ns_stamp] = msg
        for k in sorted(imgs)[:-20]:
            del imgs[k]

    def send_command(self, now: float) -> None:
        """(Re-)send the command every :data:`RESEND_S` seconds until the node acknowledges it."""
        if self.acked:
            return
        subscribed = self.cmd_pub.get_subscription_count() > 0
        if subscribed and now - self.last_sent >= RESEND_S:
            self.cmd_pub.publish(self._string(data=self.args.command))
            if self.last_sent < 0:
                print(f"demo: node is up after {now - self.t0:.1f} s; sent command \"{self.args.command}\" "
                      f"on {self.ns}/command")
            self.last_sent = now
        elif not self.told_wait and now - self.t0 > 5.0 and not subscribed:
            print("demo: waiting for the node to start (loading the CLIP model)...")
            self.told_wait = True

    def read_status(self) -> None:
        """Print the node's new status lines; "looking for <target>" acknowledges the command."""
        for line in self.state["status"][self.seen_status:]:
            print(f"demo: node status: {line}")
            if line.startswith("looking for") and self.target in line:
                self.acked = True
            elif line.startswith("ignored") and self.last_sent > 0:
                print(f"demo: the node did not take the command: {line}")
        self.seen_status = len(self.state["status"])

    def take_results(self) -> None:
        """Print the detections received for our command (one line each, see :func:`format_result`)."""
        frames = self.args.frames
        while self.state["dets"]:
            msg = self.state["dets"].pop(0)
            if msg.command != self.args.command:
                continue
            self.acked = True
            self.printed.append(msg)
            self.last_msg = msg
            gt = self.state["gt"] if self.sim else None
            print(format_result(self.label, len(self.printed), frames, msg, self.target, gt), flush=True)
            if len(self.printed) >= frames:
                break


def _run_client(args, ns: str, target: str, label: str, children: list, out: Path, sim: bool) -> int:
    """Talk to the node over ROS 2; returns the number of results printed."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])
    client = _Client(ctx, args, ns, target, label, sim)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(client.node)
    deadline = client.t0 + args.timeout
    try:
        while time.monotonic() < deadline and len(client.printed) < args.frames:
            executor.spin_once(timeout_sec=0.1)
            dead = [c for c in children if not c.alive()]
            if dead:
                for c in dead:
                    print(f"demo: the {c.name} exited early (code {c.proc.returncode}); last lines of {c.log_path}:\n"
                          f"{c.tail()}")
                break
            client.send_command(time.monotonic())
            client.read_status()
            client.take_results()
        if len(client.printed) < args.frames:
            print(f"demo: {len(client.printed)} of {args.frames} results within {args.timeout:g} s")
        if client.last_msg is not None:
            path = out / "demo.png"
            if _save_annotated(path, client.last_msg, client.state, label, args.command, target, sim):
                print(f"demo: annotated image: {path}")
            else:
                print("demo: no camera image reached the demo client: no annotated image")
    finally:
        executor.shutdown(timeout_sec=2.0)
        client.node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    return len(client.printed)


def _save_annotated(path: Path, msg, state: dict, label: str, command: str, target: str, sim: bool) -> bool:
    """Draw the result on the camera image with the same stamp (else the newest image)."""
    import cv2

    from ..decode import ImageDecodeError, decode_image
    from ..types import Detection
    from ..visualize import draw_result, save_rgb

    images = state["images"]
    if not images:
        return False
    stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
    img_msg = images.get(stamp) or images[max(images)]
    try:
        rgb = decode_image(img_msg)
    except ImageDecodeError:
        return False
    dets = []
    for d in msg.detections:
        pos = np.array([d.position.x, d.position.y, d.position.z]) if d.has_position else None
        dets.append(Detection(label=d.label, score=float(d.score), confidence=float(d.confidence),
                              box=np.asarray(roi_box(d.roi), np.float32), position=pos))
    out = draw_result(rgb, dets, title=f"{label} {command}")
    gt = state["gt"] if sim else None
    if gt:
        for obj in gt.get("objects", []):
            if obj["name"] == target and obj.get("box"):
                x1, y1, x2, y2 = (int(round(v)) for v in obj["box"])
                cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), _GT_COLOR, 1)
    save_rgb(path, out)
    return True


if __name__ == "__main__":
    sys.exit(main())
