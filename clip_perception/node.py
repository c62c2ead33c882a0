"""The ROS 2 node ``clip_perception`` (executable ``clip_perception_node``): a thin wrapper
over :class:`clip_perception.pipeline.Detector`.

Topics and services (relative names: remappable, under the node's namespace; with
``cameras: [left, right]`` every camera topic and output is under ``left/``, ``right/``):

=====================  =================================  =========================================
name                   type                               notes
=====================  =================================  =========================================
``image``              sensor_msgs/Image (sub)            ``image_transport: raw``
``image/compressed``   sensor_msgs/CompressedImage (sub)  ``image_transport: compressed``
``depth``              sensor_msgs/Image (sub)            16UC1 mm / 32FC1 m, registered to colour;
                                                          only with ``use_depth``
``camera_info``        sensor_msgs/CameraInfo (sub)       colour intrinsics; only with ``use_depth``
``command``            std_msgs/String (sub)              voice / text command (node level)
``detections``         clip_perception/TargetDetection-   every processed frame, best first
                       Array (pub)
``target_pose``        geometry_msgs/PoseStamped (pub)    best target with a 3D position only
``markers``            visualization_msgs/MarkerArray     DELETEALL, SPHERE, TEXT_VIEW_FACING
``debug_image``        sensor_msgs/Image rgb8 (pub)       only built while subscribed or with
                                                          ``publish_debug_image``
``detections_2d``      vision_msgs/Detection2DArray       only when ``vision_msgs`` is importable
``status``             std_msgs/String (pub)              node level, on changes only
``set_command``        clip_perception/SetCommand (srv)   node level
``locate``             clip_perception/Locate (srv)       node level, waits for the next frame
=====================  =================================  =========================================

Every output carries the source image's header (stamp and optical ``frame_id``) unchanged.
Parameters: :data:`clip_perception.params.PARAMETERS` (``config/clip_perception.yaml``).

Threads: camera callbacks only store the newest message (slot of depth 1, see
:mod:`clip_perception.runtime`); one worker thread (not an executor thread) decodes, pairs
depth/camera_info by stamp, runs the detector and publishes; the command topic, services,
parameter changes and the no-image watchdog run on a ``MultiThreadedExecutor`` and stay
responsive during inference.  Multi-camera: the frames of all cameras that are ready are
processed in the same worker iteration, their proposals encoded in one batch
(``Detector.detect_many`` -> ``encode_boxes_multi``), and the best of them answers
``locate`` and drives ``status``.

Behaviour (policies in :mod:`clip_perception.runtime`):

* commands (topic, ``set_command``, parameter ``command``) that parse to ``no_command``
  (``""``, ``"Thank you."``, ``"[BLANK_AUDIO]"`` ...) or ``unsupported`` are ignored, the
  target is kept and ``status`` says so; "A and then B": A is looked for now, B is named in
  the status line and not queued (send it when A is done);
* ``status``: one line per command (accepted or ignored), per found / not-found change of
  the current command, and per model change; never one per frame;
* ``locate``: answers from the next processed frame (or after ``timeout`` s: not found, "no
  frame processed within ..."); a request command is ranked on that frame without changing
  the current command;
* depth / camera_info pair with the colour image by nearest stamp within ``sync_slop``;
  no pair or zero stamps -> 2D only (``has_position`` false), warned once per
  ``no_image_warn_s``;
* parameters (``runtime`` in the table) change at run time; invalid values are rejected with
  the reason; ``model_name`` / ``pretrained`` / ``device`` / ``precision`` (and
  ``prompt_templates`` of a node-built encoder) rebuild the encoder on the worker, and a
  failed build keeps the old one and rejects the change with the loader's message.
"""

from __future__ import annotations

import os
import signal
import sys


def _quiet_exit_on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
    """SIGINT / SIGTERM while the executable starts (imports, model load): exit 0 at once,
    no traceback.

    The process ends with ``os._exit(0)`` after flushing Python's stdout / stderr, not with
    ``SystemExit``: an exception raised in the middle of a third-party import or of the model
    build can be caught by a broad ``except`` there (the node would then start and spin as if
    no signal had come), and interpreter finalisation with half-initialised extension modules
    and their threads is not guaranteed to finish.  Nothing of ours needs cleaning up before the
    node spins; the operating system releases the rest.
    """
    if _QUIET_EXIT_ON_SIGNAL:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # pragma: no cover - a closed pipe must not stop the exit
                pass
        os._exit(0)


#: True while a signal should end the process at once (start-up); False while spinning
#: (rclpy's own handlers shut the context down and the executor returns) and during clean-up.
_QUIET_EXIT_ON_SIGNAL = True
if __name__ == "__main__" or os.path.basename(sys.argv[0] if sys.argv else "") == "clip_perception_node":
    # Installed before the heavy imports below (rclpy, OpenCV, torch via the pipeline) so that
    # Ctrl-C during start-up prints no KeyboardInterrupt traceback.  Only in the executable:
    # importing this module elsewhere (tests, other programs) changes no signal handler.
    for _sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_sig, _quiet_exit_on_signal)

# The imports below follow the handler on purpose (flake8 E402).
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
import torch
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from clip_perception.msg import TargetDetectionArray
from clip_perception.srv import Locate, SetCommand

from . import messages, params
from .command import parse_command
from .decode import ImageDecodeError, decode_compressed, decode_depth, decode_image
from .encoder import set_cpu_threads
from .pipeline import Detector
from .runtime import CommandState, LatestSlot, StampBuffer, Throttle, Waiter, describe_ignored

__all__ = ["ClipPerceptionNode", "main"]

#: depth / camera_info messages kept per camera for stamp pairing.
PAIR_BUFFER = 10
#: Wall-clock seconds the worker waits for the depth / camera_info of a frame when that stream
#: is alive but has not reached the frame's stamp yet (depth is published after colour).
PAIR_WAIT_S = 1.0
#: ``locate`` timeout used when the request's timeout is not a positive number [s].
DEFAULT_LOCATE_TIMEOUT_S = 5.0
#: how long a parameter change waits for the worker to rebuild the encoder [s].
RELOAD_TIMEOUT_S = 600.0
#: how long shutdown waits for the worker to finish its current frame [s].
JOIN_TIMEOUT_S = 60.0
#: executor threads: camera callbacks, command, services (each blocked ``locate`` holds one).
EXECUTOR_THREADS = 8

_RELOAD_PARAMS = tuple(name for name, spec in params.PARAMETERS.items() if spec.reload_model)
# Prompt templates are baked into a ClipEncoder: a change rebuilds an encoder the node built.
_RELOAD_OWNED = _RELOAD_PARAMS + ("prompt_templates",)


def _reliable(depth: int = 10, latched: bool = False) -> QoSProfile:
    return QoSProfile(
        depth=depth,
        history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def camera_qos(name: str) -> QoSProfile:
    """``sensor_data`` -> ``rclpy.qos.qos_profile_sensor_data`` (best effort, keep last 5);
    ``reliable`` -> reliable, keep last 5 (the callback keeps only the newest anyway)."""
    return qos_profile_sensor_data if name == "sensor_data" else _reliable(depth=5)


def _descriptor(spec: params.ParamSpec) -> ParameterDescriptor:
    """ParameterDescriptor for one :class:`params.ParamSpec` (ranges, read-only, typing)."""
    desc = spec.description
    if spec.choices and spec.type is not list:
        desc += f" (one of: {', '.join(spec.choices)})"
    d = ParameterDescriptor(name=spec.name, description=desc, read_only=not spec.runtime)
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.type is int and spec.min is not None and spec.max is not None:
        d.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=0)]
    if spec.type is float:
        # Dynamic typing: a YAML / command-line integer (``score_threshold: 1``) is accepted and
        # coerced to a double (pre-set callback); the value check is params.validate.
        d.dynamic_typing = True
        if spec.min is not None and spec.max is not None:
            d.floating_point_range = [FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max), step=0.0)]
    if spec.type is list:
        # Dynamic typing so that an empty list (typed BYTE_ARRAY by rcl) is accepted.
        d.dynamic_typing = True
    return d


@dataclass
class _Reload:
    """A request to rebuild the encoder on the worker thread."""

    config: params.DetectorConfig
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    reason: str = ""


@dataclass
class _Answer:
    found: bool
    result: TargetDetectionArray
    message: str


@dataclass
class _Outcome:
    camera: "_Camera"
    header: Any
    result: Any
    rgb: np.ndarray
    depth: Optional[np.ndarray]
    K: Optional[np.ndarray]


class _Camera:
    """Subscriptions, pairing buffers and publishers of one camera (``name`` = namespace or "")."""

    def __init__(self, node: "ClipPerceptionNode", name: str, cfg: params.DetectorConfig, group) -> None:
        self.name = name
        prefix = f"{name}/" if name else ""
        self.slot = LatestSlot()
        self.depth = StampBuffer(PAIR_BUFFER)
        self.info = StampBuffer(PAIR_BUFFER)
        self.last_image_time: Optional[float] = None  # time.monotonic() of the last colour message
        self.qos_name = cfg.qos
        qos = camera_qos(cfg.qos)
        self.compressed = cfg.image_transport == "compressed"
        if self.compressed:
            self.image_sub = node.create_subscription(CompressedImage, prefix + "image/compressed", self._on_image,
                                                      qos, callback_group=group)
        else:
            self.image_sub = node.create_subscription(Image, prefix + "image", self._on_image, qos,
                                                      callback_group=group)
        self.image_topic = self.image_sub.topic_name
        self.depth_sub = self.info_sub = None
        if cfg.use_depth:
            self.depth_sub = node.create_subscription(Image, prefix + "depth", self._on_depth, qos,
                                                      callback_group=group)
            self.info_sub = node.create_subscription(CameraInfo, prefix + "camera_info", self._on_info, qos,
                                                     callback_group=group)
        out = _reliable(10)
        self.det_pub = node.create_publisher(TargetDetectionArray, prefix + "detections", out)
        self.pose_pub = node.create_publisher(PoseStamped, prefix + "target_pose", out)
        self.marker_pub = node.create_publisher(MarkerArray, prefix + "markers", out)
        self.debug_pub = node.create_publisher(Image, prefix + "debug_image", out)
        self.det2d_pub = None
        if messages.HAVE_VISION_MSGS:
            self.det2d_pub = node.create_publisher(messages.Detection2DArray, prefix + "detections_2d", out)
        self._wake = node._wake

    # Callbacks only store messages: decoding and inference happen on the worker.
    def _on_image(self, msg) -> None:
        self.last_image_time = time.monotonic()
        self.slot.put(msg)
        self._wake.set()

    def _on_depth(self, msg: Image) -> None:
        self.depth.add(messages.stamp_to_ns(msg.header.stamp), msg)

    def _on_info(self, msg: CameraInfo) -> None:
        self.info.add(messages.stamp_to_ns(msg.header.stamp), msg)

    def describe_qos(self) -> str:
        return ("BEST_EFFORT (qos: sensor_data)" if self.qos_name == "sensor_data"
                else "RELIABLE (qos: reliable; it does not receive from best-effort publishers)")


class ClipPerceptionNode(Node):
    """CLIP object finder node (see the module docstring for topics, services and threads).

    Args:
        encoder: an object with ``encode_texts`` / ``encode_boxes`` / ``logit_scale``
            (``encoder.Encoder`` protocol) to use instead of building a ``ClipEncoder`` from
            the parameters (tests inject ``test/fake_encoders.py`` encoders).
        node_name: ROS node name (default ``clip_perception``).
        start_worker: start the inference thread (tests of the wiring may pass False).
        owns_process: apply the process-wide ``cpu_threads`` parameter (torch intra-op
            threads, :func:`encoder.set_cpu_threads`) before the model is built; the
            ``clip_perception_node`` executable passes True, a node embedded in another
            program (tests, ``bench``) leaves its process's setting alone by default.
        **node_kwargs: passed to ``rclpy.node.Node`` (``context``, ``namespace``,
            ``parameter_overrides``, ``cli_args`` ...).

    Raises:
        params.ParameterError: a parameter value is invalid (message names it).
        encoder.WeightsUnavailableError: the CLIP weights cannot be loaded (offline, not cached).
    """

    def __init__(self, encoder=None, *, node_name: str = params.NODE_NAME, start_worker: bool = True,
                 owns_process: bool = False, **node_kwargs) -> None:
        super().__init__(node_name, **node_kwargs)
        self._ready = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._throttle = Throttle()
        self._lock = threading.Lock()
        self._waiters: list = []
        self._reloads: list = []
        self._worker: Optional[threading.Thread] = None
        self._busy = False  # the worker is processing frames
        #: warnings logged (most recent last); tests assert on them.
        self.warnings: list = []
        #: (camera name, stamp ns) of every processed frame, most recent last (bounded).
        self.processed: list = []
        self.frames_processed = 0
        self.commands = CommandState()
        self.detector = None
        try:
            self.config = self._declare_parameters()
            if owns_process:
                set_cpu_threads(self.config.cpu_threads)
            self._owns_encoder = encoder is None
            self.detector = Detector(self.config, encoder=encoder)
            self._setup_interfaces()
            self._ready = True
            if self.config.command:
                self._submit_command(self.config.command, source="parameter command")
            if start_worker:
                self._worker = threading.Thread(target=self._worker_loop, name="clip_perception_worker",
                                                daemon=True)
                self._worker.start()
        except BaseException:  # also KeyboardInterrupt / SystemExit in library use: leave nothing running
            self.destroy_node()
            raise
        enc = self.detector.encoder
        self.get_logger().info(
            f"ready: model {getattr(enc, 'model_name', type(enc).__name__)} "
            f"({getattr(enc, 'weights_source', self.config.pretrained)}) on {self.detector.device} "
            f"({torch.get_num_threads()} CPU threads), "
            f"mode {self.detector.mode}; listening on "
            + ", ".join(c.image_topic for c in self.cameras)
            + f" ({self.cameras[0].describe_qos()}), commands on {self._command_sub.topic_name}")

    # ------------------------------------------------------------------ set-up
    def _declare_parameters(self) -> params.DetectorConfig:
        values = {}
        for name, spec in params.PARAMETERS.items():
            default = list(spec.default) if spec.type is list else spec.default
            values[name] = self.declare_parameter(name, default, _descriptor(spec)).value
        # A YAML integer for a float parameter: store it as a double (ros2 param get shows 1.0).
        for name, spec in params.PARAMETERS.items():
            v = values[name]
            if spec.type is float and isinstance(v, int) and not isinstance(v, bool):
                self.set_parameters([Parameter(name, Parameter.Type.DOUBLE, float(v))])
                values[name] = float(v)
        config = params.make_config(values)  # raises ParameterError with the reason
        self.add_pre_set_parameters_callback(self._coerce_parameters)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        return config

    def _setup_interfaces(self) -> None:
        cfg = self.config
        sensors = ReentrantCallbackGroup()
        control = ReentrantCallbackGroup()
        names = [c.strip("/") for c in cfg.cameras if c.strip("/")] or [""]
        self.cameras = [_Camera(self, name, cfg, sensors) for name in names]
        self.status_pub = self.create_publisher(String, "status", _reliable(10, latched=True))
        self._command_sub = self.create_subscription(String, "command", self._on_command, _reliable(10),
                                                     callback_group=control)
        self._set_command_srv = self.create_service(SetCommand, "set_command", self._on_set_command,
                                                    callback_group=control)
        self._locate_srv = self.create_service(Locate, "locate", self._on_locate, callback_group=control)
        self._start_time = time.monotonic()
        self._watchdog = self.create_timer(1.0, self._check_inputs, callback_group=MutuallyExclusiveCallbackGroup(),
                                           clock=Clock(clock_type=ClockType.STEADY_TIME))
        if not messages.HAVE_VISION_MSGS:
            self.get_logger().info("vision_msgs is not installed: detections_2d (Detection2DArray) is not published")

    # ------------------------------------------------------------------ helpers
    def _warn(self, key: str, text: str) -> None:
        """Log ``text`` at most once per ``no_image_warn_s`` seconds per ``key``."""
        if self._throttle.allow(key, self.config.no_image_warn_s):
            self.get_logger().warning(text)
            self.warnings.append(text)
            del self.warnings[:-200]

    def _publish_status(self, line: str) -> None:
        self.get_logger().info(f"status: {line}")
        try:
            self.status_pub.publish(String(data=line))
        except Exception:  # context already shut down
            if not self._stop.is_set() and self.context.ok():
                raise

    def _submit_command(self, text: str, source: str):
        self.get_logger().debug(f"command from {source}: {text!r}")
        update = self.commands.submit(text)
        self._publish_status(update.status)
        return update

    # ------------------------------------------------------------------ parameters
    def _coerce_parameters(self, parameters: list) -> list:
        out = []
        for p in parameters:
            spec = params.PARAMETERS.get(p.name)
            if spec is not None and spec.type is float and p.type_ == Parameter.Type.INTEGER:
                p = Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
            out.append(p)
        return out

    def _on_set_parameters(self, parameters: list) -> SetParametersResult:
        changes = {}
        for p in parameters:
            if p.name not in params.PARAMETERS:
                continue  # use_sim_time and others: not ours
            try:
                changes[p.name] = params.validate(p.name, p.value)
            except params.ParameterError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        if not self._ready or not changes:
            return SetParametersResult(successful=True)
        old = self.config
        new = old.replace(**changes)
        reload_names = _RELOAD_OWNED if self._owns_encoder else _RELOAD_PARAMS
        if any(getattr(new, n) != getattr(old, n) for n in reload_names if n in changes):
            ok, reason = self._request_reload(new)
            if not ok:
                return SetParametersResult(successful=False, reason=reason)
        self.config = new  # thresholds, weights, proposal methods ...: next frame
        if "command" in changes:
            self._submit_command(new.command, source="parameter command")
        return SetParametersResult(successful=True)

    def _request_reload(self, config: params.DetectorConfig) -> tuple:
        if self._worker is None or not self._worker.is_alive():
            return False, "the inference worker is not running"
        req = _Reload(config)
        with self._lock:
            self._reloads.append(req)
        self._wake.set()
        if not req.done.wait(RELOAD_TIMEOUT_S):
            return False, f"model reload did not finish within {RELOAD_TIMEOUT_S:g} s"
        return req.ok, req.reason

    def _do_reloads(self) -> None:
        with self._lock:
            reloads, self._reloads = self._reloads, []
        for req in reloads:
            cfg = req.config
            try:
                new = Detector(cfg, encoder=None)
            except Exception as exc:  # keep the old model
                req.ok = False
                req.reason = (f"could not load model {cfg.model_name} (pretrained {cfg.pretrained}, device "
                              f"{cfg.device}, precision {cfg.precision}): {exc}; keeping the current model")
                self.get_logger().error(req.reason)
                self._publish_status(f"model change failed: {cfg.model_name} ({cfg.pretrained})")
            else:
                old, self.detector, self._owns_encoder = self.detector, new, True
                del old
                _release_cuda_cache()
                req.ok = True
                self._publish_status(f"model: {cfg.model_name} ({cfg.pretrained}) on {new.device}")
            req.done.set()

    # ------------------------------------------------------------------ commands / services
    def _on_command(self, msg: String) -> None:
        self._submit_command(msg.data, source=self._command_sub.topic_name)

    def _on_set_command(self, request, response):
        update = self._submit_command(request.command, source="set_command")
        response.accepted = update.accepted
        response.target = update.target
        response.message = update.status
        return response

    def _on_locate(self, request, response):
        timeout = float(request.timeout)
        if not math.isfinite(timeout) or timeout <= 0.0:
            timeout = DEFAULT_LOCATE_TIMEOUT_S
        waiter = Waiter()
        text = request.command
        if text.strip():
            parse = parse_command(text)
            if not parse.ok:
                response.found = False
                response.result = TargetDetectionArray(command=text)
                response.message = f"ignored: {describe_ignored(text, parse)}"
                return response
            waiter.command, waiter.text = parse.commands[0], text
        with self._lock:
            self._waiters.append(waiter)
        if not waiter.done.wait(timeout):
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        answer = waiter.answer
        if answer is None:
            response.found = False
            response.result = TargetDetectionArray(command=text)
            topics = ", ".join(c.image_topic for c in self.cameras)
            response.message = (f"no frame processed within {timeout:g} s "
                                f"(is anything publishing on {topics}?)")
            return response
        response.found, response.result, response.message = answer.found, answer.result, answer.message
        return response

    # ------------------------------------------------------------------ watchdog
    def _check_inputs(self) -> None:
        period = self.config.no_image_warn_s
        now = time.monotonic()
        for cam in self.cameras:
            last = cam.last_image_time if cam.last_image_time is not None else self._start_time
            if now - last >= period:
                self._warn(f"no_image:{cam.image_topic}",
                           f"no image on {cam.image_topic} for {now - last:.1f} s; subscribed with "
                           f"{cam.describe_qos()} — check `ros2 topic info -v {cam.image_topic}` and the remappings")

    # ------------------------------------------------------------------ worker
    def _worker_loop(self) -> None:
        last_start = -math.inf
        while not self._stop.is_set() and self.context.ok():
            self._wake.wait(0.2)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._do_reloads()
                rate = self.config.max_rate_hz
                if rate > 0.0:
                    wait = last_start + 1.0 / rate - time.monotonic()
                    if wait > 0.0:
                        self._stop.wait(wait)  # the newest frame after the wait is processed
                        if self._stop.is_set():
                            break
                frames = [(cam, cam.slot.take()) for cam in self.cameras]
                frames = [(cam, msg) for cam, msg in frames if msg is not None]
                if not frames:
                    continue
                last_start = time.monotonic()
                self._busy = True
                try:
                    self._process(frames)
                finally:
                    self._busy = False
            except Exception as exc:
                if self._stop.is_set() or not self.context.ok():
                    break
                if self._throttle.allow(f"error:{type(exc).__name__}", self.config.no_image_warn_s):
                    self.get_logger().error(f"frame processing failed: {type(exc).__name__}: {exc}")
        with self._lock:  # answer nobody: pending locate calls time out / see no answer
            for req in self._reloads:
                req.reason = "the node is shutting down"
                req.done.set()
            self._reloads = []

    def _prepare(self, cam: _Camera, msg, cfg: params.DetectorConfig):
        """Decode one colour message and pair depth / camera_info with it -> (rgb, depth, K)."""
        try:
            rgb = decode_compressed(msg) if cam.compressed else decode_image(msg)
        except ImageDecodeError as exc:
            self._warn(f"decode:{cam.image_topic}", f"cannot decode image on {cam.image_topic}: {exc}")
            return None
        if not cfg.use_depth:
            return rgb, None, None
        stamp = messages.stamp_to_ns(msg.header.stamp)
        if stamp == 0:
            self._warn(f"zero_stamp:{cam.image_topic}",
                       f"image stamps on {cam.image_topic} are zero: depth and camera_info cannot be paired by "
                       "time, publishing 2D detections only (has_position false)")
            return rgb, None, None
        depth_pair = cam.depth.nearest(stamp, cfg.sync_slop)
        info_pair = cam.info.nearest(stamp, cfg.sync_slop)
        deadline = time.monotonic() + PAIR_WAIT_S
        while ((depth_pair is None and cam.depth.may_still_pair(stamp))
               or (info_pair is None and cam.info.may_still_pair(stamp))) and time.monotonic() < deadline:
            self._stop.wait(0.005)  # the partner of this frame is on its way: wait for it a little
            depth_pair = depth_pair or cam.depth.nearest(stamp, cfg.sync_slop)
            info_pair = info_pair or cam.info.nearest(stamp, cfg.sync_slop)
        if depth_pair is None or info_pair is None:
            missing = [name for name, pair in (("depth", depth_pair), ("camera_info", info_pair)) if pair is None]
            details = []
            for name, buf in (("depth", cam.depth), ("camera_info", cam.info)):
                newest = buf.newest_stamp_ns
                details.append(f"newest {name} stamp " + ("none" if newest is None else f"{newest * 1e-9:.3f}"))
            self._warn(f"no_depth:{cam.image_topic}",
                       f"no {' / '.join(missing)} within sync_slop={cfg.sync_slop:g} s of image stamp "
                       f"{stamp * 1e-9:.3f} on {cam.image_topic} ({', '.join(details)}): 2D detections only")
            return rgb, None, None
        try:
            depth = decode_depth(depth_pair[0], depth_scale=cfg.depth_scale or None)
        except ImageDecodeError as exc:
            self._warn(f"decode_depth:{cam.image_topic}", f"cannot decode depth for {cam.image_topic}: {exc}")
            return rgb, None, None
        K, why = messages.camera_info_K_for_image(info_pair[0], rgb.shape[1], rgb.shape[0])
        if K is None:  # invalid K, or a CameraInfo for another resolution: never 3D from a wrong K
            kind = "bad_k" if "valid K" in why else "k_size"
            self._warn(f"{kind}:{cam.image_topic}", f"camera_info for {cam.image_topic} {why}: 2D detections only")
            return rgb, None, None
        return rgb, depth, K

    def _process(self, frames: list) -> None:
        cfg = self.config
        detector = self.detector
        detector.config = cfg  # run-time parameter changes apply from this frame on
        snap = self.commands.snapshot()
        with self._lock:
            waiters, self._waiters = self._waiters, []
        try:
            self._process_frames(frames, cfg, detector, snap, waiters)
        finally:  # a failed frame leaves unanswered locate requests for the next one
            pending = [w for w in waiters if not w.done.is_set()]
            if pending:
                with self._lock:
                    self._waiters[:0] = pending

    def _process_frames(self, frames: list, cfg, detector: Detector, snap, waiters: list) -> None:
        outcomes = []
        command = snap.command if snap.command is not None else snap.text
        ready = []
        for cam, msg in frames:
            prepared = self._prepare(cam, msg, cfg)
            if prepared is not None:
                ready.append((cam, msg, prepared))
        # all cameras that are ready are ranked with one batched encoder call
        results = detector.detect_many([(rgb, command, depth, K) for _, _, (rgb, depth, K) in ready])
        for (cam, msg, (rgb, depth, K)), result in zip(ready, results):
            for note in result.notes:
                self._warn(f"note:{cam.image_topic}:{note}", f"{cam.image_topic}: {note}")
            self._publish(cam, msg.header, result, snap.text, rgb, cfg)
            outcomes.append(_Outcome(cam, msg.header, result, rgb, depth, K))
            self.frames_processed += 1
            self.processed.append((cam.name, messages.stamp_to_ns(msg.header.stamp)))
            del self.processed[:-1000]
        if not outcomes:
            return
        best = self._best(outcomes)
        if snap.command is not None:
            line = self._summary(best)
            changed = self.commands.observe(snap.generation, best.result.found, line)
            if changed:
                self._publish_status(changed)
        for waiter in waiters:
            waiter.answer = self._answer(waiter, snap, outcomes, best, detector)
            waiter.done.set()

    def _publish(self, cam: _Camera, header, result, text: str, rgb: np.ndarray, cfg) -> None:
        cam.det_pub.publish(messages.to_detection_array(result, header, text))
        pose = messages.to_pose(result, header)
        if pose is not None:
            cam.pose_pub.publish(pose)
        cam.marker_pub.publish(messages.to_markers(result, header))
        if cfg.publish_debug_image or cam.debug_pub.get_subscription_count() > 0:
            cam.debug_pub.publish(messages.to_debug_image(rgb, result, header))
        if cam.det2d_pub is not None:
            cam.det2d_pub.publish(messages.to_detection2d_array(result, header))

    @staticmethod
    def _best(outcomes: list) -> _Outcome:
        found = [o for o in outcomes if o.result.found]
        if not found:
            return outcomes[0]
        return max(found, key=lambda o: float(o.result.best.confidence))

    def _summary(self, outcome: _Outcome) -> str:
        line = outcome.result.summary()
        if len(self.cameras) > 1 and outcome.result.found:
            line += f" ({outcome.camera.name})"
        return line

    def _answer(self, waiter: Waiter, snap, outcomes: list, best: _Outcome, detector: Detector) -> _Answer:
        if waiter.command is None:
            if snap.command is None:
                return _Answer(False, messages.to_detection_array(best.result, best.header, snap.text),
                               "no command: send one on the command topic, set_command, or in the request")
            return _Answer(best.result.found, messages.to_detection_array(best.result, best.header, snap.text),
                           self._summary(best))
        own = []
        for o in outcomes:  # the request's own command, on the same frames (not published)
            result = detector.detect(o.rgb, waiter.command, depth=o.depth, K=o.K)
            own.append(_Outcome(o.camera, o.header, result, o.rgb, o.depth, o.K))
        pick = self._best(own)
        return _Answer(pick.result.found, messages.to_detection_array(pick.result, pick.header, waiter.text),
                       self._summary(pick))

    # ------------------------------------------------------------------ life cycle
    def stop(self) -> None:
        """Stop the worker (waits for the frame in progress, at most ``JOIN_TIMEOUT_S``)."""
        self._stop.set()
        self._wake.set()
        worker = self._worker
        if worker is not None and worker.is_alive() and worker is not threading.current_thread():
            if self._busy:
                self.get_logger().info("stopping: waiting for the frame in progress to finish")
            worker.join(JOIN_TIMEOUT_S)
            if worker.is_alive():
                self.get_logger().warning(f"inference worker still busy after {JOIN_TIMEOUT_S:g} s; exiting anyway")
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.done.set()

    def destroy_node(self) -> None:
        self.stop()
        super().destroy_node()
        self.detector = None


def _release_cuda_cache() -> None:
    """``torch.cuda.empty_cache()`` when torch is loaded and CUDA is available."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort at exit
        pass


class _RosLogHandler(logging.Handler):
    """Forwards Python ``logging`` records of the library (``clip_perception.*``) to rclpy logging."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logger = rclpy.logging.get_logger(record.name)
            text = record.getMessage()
            if record.levelno >= logging.ERROR:
                logger.error(text)
            elif record.levelno >= logging.WARNING:
                logger.warning(text)
            elif record.levelno >= logging.INFO:
                logger.info(text)
            else:
                logger.debug(text)
        except Exception:  # pragma: no cover - logging must never raise
            pass


def _is_weights_error(exc: BaseException) -> bool:
    mod = sys.modules.get("clip_perception.encoder")
    cls = getattr(mod, "WeightsUnavailableError", None) if mod is not None else None
    return cls is not None and isinstance(exc, cls)


def main(args: Optional[list] = None) -> int:
    """Console entry point ``clip_perception_node``.

    Exit codes: 0 after SIGINT / SIGTERM (while spinning, rclpy's signal handlers shut the
    context down, the worker finishes its frame and is joined; during start-up the process
    ends at once; never a traceback); 1 when the CLIP weights are unavailable (the fatal log
    names the model, tag and cache path) or on another start-up error; 2 on an invalid
    parameter.
    """
    global _QUIET_EXIT_ON_SIGNAL
    _QUIET_EXIT_ON_SIGNAL = True
    for sig in (signal.SIGINT, signal.SIGTERM):
        # rclpy.init (default SignalHandlerOptions.ALL) installs its handlers for both signals
        # and chains to this one.
        signal.signal(sig, _quiet_exit_on_signal)
    rclpy.init(args=args)
    logger = rclpy.logging.get_logger(params.NODE_NAME)
    lib_log = logging.getLogger("clip_perception")
    lib_log.setLevel(logging.INFO)
    lib_log.addHandler(_RosLogHandler())
    lib_log.propagate = False
    node = None
    executor = None
    code = 0
    try:
        node = ClipPerceptionNode(owns_process=True)
        executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS, context=node.context)
        executor.add_node(node)
        _QUIET_EXIT_ON_SIGNAL = False  # from now on a signal shuts the context down: spin returns
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (params.ParameterError, InvalidParameterTypeException, InvalidParameterValueException) as exc:
        logger.fatal(f"invalid parameter: {exc}")
        code = 2
    except Exception as exc:
        if _is_weights_error(exc):
            logger.fatal(f"cannot load the CLIP model: {exc}")
            code = 1
        elif rclpy.ok():
            logger.fatal(f"start-up failed: {type(exc).__name__}: {exc}")
            code = 1
        # else: a signal arrived during start-up: quiet exit 0
    finally:
        _QUIET_EXIT_ON_SIGNAL = False  # a second signal must not interrupt the clean-up
        try:
            if executor is not None:
                executor.shutdown(timeout_sec=5.0)
            if node is not None:
                node.destroy_node()
            node = None
            _release_cuda_cache()
        finally:
            rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
