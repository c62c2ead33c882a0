"""The ROS 2 managed node ``clip_perception`` (executable ``clip_perception_node``): a thin
rclpy adapter over :class:`clip_perception.worker.FrameWorker` and
:class:`clip_perception.pipeline.Detector`.

Topics and services (relative names: remappable, under the node's namespace; with
``cameras: [left, right]`` every camera topic and output is under ``left/``, ``right/``):

=====================  =================================  =========================================
name                   type                               notes
=====================  =================================  =========================================
``image``              sensor_msgs/Image (sub)            ``image_transport: raw``
``image/compressed``   sensor_msgs/CompressedImage (sub)  ``image_transport: compressed``
``depth``              sensor_msgs/Image (sub)            16UC1 mm / 32FC1 m, registered to colour;
                                                          only with ``use_depth``; with
                                                          ``depth_transport: compressedDepth``
                                                          sensor_msgs/CompressedImage on
                                                          ``depth/compressedDepth`` instead
``camera_info``        sensor_msgs/CameraInfo (sub)       colour intrinsics; only with ``use_depth``
``command``            std_msgs/String (sub)              voice / text command (node level)
``detections``         clip_perception/TargetDetection-   every processed frame, best first
                       Array (pub)
``target_pose``        geometry_msgs/PoseStamped (pub)    best target with a 3D position only; in
                                                          ``target_frame`` when set (transform at
                                                          the image stamp, else not published)
``place_pose``         geometry_msgs/PoseStamped (pub)    pick-and-place: the place point (as
                                                          ``target_pose`` for ``target_frame``)
``markers``            visualization_msgs/MarkerArray     DELETEALL, CUBE (oriented box),
                                                          TEXT_VIEW_FACING
``target_mask``        sensor_msgs/Image mono8 (pub)      while subscribed or ``publish_target_mask``
``target_cloud``       sensor_msgs/PointCloud2 (pub)      while subscribed or ``publish_target_cloud``
``debug_image``        sensor_msgs/Image rgb8 (pub)       only built while subscribed or with
                                                          ``publish_debug_image``
``detections_2d``      vision_msgs/Detection2DArray       only when ``vision_msgs`` is importable
``detections_3d``      vision_msgs/Detection3DArray       only when ``vision_msgs`` is importable
``status``             std_msgs/String (pub)              node level, on changes only
``set_command``        clip_perception/SetCommand (srv)   node level
``locate``             clip_perception/Locate (srv)       node level, waits for the next frame
=====================  =================================  =========================================

Every output carries the source image's header (stamp and optical ``frame_id``) unchanged, but
``target_pose`` with ``target_frame`` set: ``frame_id = target_frame``, the image's stamp.

Lifecycle (``rclpy.lifecycle``; services ``<node>/change_state``, ``<node>/get_state`` ...):
``autostart`` (default true) configures and activates in the constructor, as a plain
``ros2 run`` expects; with ``autostart:=false`` the node waits unconfigured.

* configure: builds the model (injected encoder or ``ClipEncoder`` from the parameters) and
  the ``set_command`` / ``locate`` services; missing or bad weights -> the transition fails,
  the node stays unconfigured, the loader's message is logged (:attr:`configure_error`),
  and configure can be tried again (e.g. after setting ``pretrained``);
* activate: creates the camera subscriptions, every publisher (``status`` re-publishes its
  last line, latched), the command subscription and the watchdog, and starts the worker;
* deactivate: the frame in progress finishes unpublished (at most one frame), the worker
  stops, subscriptions and publishers are destroyed: nothing is published any more;
  ``set_command`` still sets the command, ``locate`` answers "not active" at once;
* cleanup: destroys the services and frees the model and cached CUDA memory;
  shutdown: all of the above from any state.
Parameters: :data:`clip_perception.params.PARAMETERS` (``config/clip_perception.yaml``).

Threads: camera callbacks only store the newest message (slot of depth 1, see
:mod:`clip_perception.runtime`); one worker thread (not an executor thread,
:mod:`clip_perception.worker`) decodes, pairs depth/camera_info by stamp, runs the detector
and publishes; the command topic, services,
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
  ``no_image_warn_s``; a depth ``header.frame_id`` other than the colour image's -> 2D only
  with a (throttled) warning, unless ``depth_registered`` says the depth is registered;
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
import time
from typing import Optional

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from std_msgs.msg import String

from clip_perception.msg import TargetDetectionArray
from clip_perception.srv import Locate, SetCommand

from . import messages, params, transforms
from .command import parse_command
from .device import set_cpu_threads
from .node_camera import CameraIO
from .node_params import coerce_parameters, declare_parameters, reliable_qos
from .runtime import CommandState, WarningLog, Waiter, describe_ignored
from .worker import FrameWorker, Hooks

__all__ = ["ClipPerceptionNode", "main"]

#: ``locate`` timeout used when the request's timeout is not a positive number [s].
DEFAULT_LOCATE_TIMEOUT_S = 5.0
#: executor threads: camera callbacks, command, services (each blocked ``locate`` holds one).
EXECUTOR_THREADS = 8

_RELOAD_PARAMS = tuple(name for name, spec in params.PARAMETERS.items() if spec.reload_model)
# Prompt templates are baked into a ClipEncoder: a change rebuilds an encoder the node built.
_RELOAD_OWNED = _RELOAD_PARAMS + ("prompt_templates",)
_SUCCESS, _FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class ClipPerceptionNode(LifecycleNode):
    """CLIP object finder, a managed node (see the module docstring for topics, services,
    threads and the lifecycle).

    Args:
        encoder: an object with ``encode_texts`` / ``encode_boxes`` / ``logit_scale``
            (``encoder.Encoder`` protocol) to use instead of building a ``ClipEncoder`` from
            the parameters at configure (tests inject ``test/fake_encoders.py`` encoders); it
            belongs to the caller and is kept across cleanup.
        node_name: ROS node name (default ``clip_perception``).
        start_worker: start the inference thread on activate (tests of the wiring pass False).
        owns_process: apply the process-wide ``cpu_threads`` parameter (torch intra-op
            threads, :func:`device.set_cpu_threads`) before the model is built; the
            ``clip_perception_node`` executable passes True, a node embedded in another
            program (tests, ``bench``) leaves its process's setting alone by default.
        **node_kwargs: passed to ``rclpy.lifecycle.LifecycleNode`` (``context``,
            ``namespace``, ``parameter_overrides``, ``cli_args`` ...).

    Raises:
        params.ParameterError: a parameter value is invalid (message names it).
        weights.WeightsUnavailableError, weights.CheckpointError: with ``autostart`` true,
            the CLIP weights cannot be loaded (with ``autostart`` false configure fails
            instead and the node stays unconfigured, :attr:`configure_error`).
    """

    def __init__(self, encoder=None, *, node_name: str = params.NODE_NAME, start_worker: bool = True,
                 owns_process: bool = False, **node_kwargs) -> None:
        super().__init__(node_name, **node_kwargs)
        self._encoder = encoder
        self._start_worker = start_worker
        self._owns_process = owns_process
        self._active = False
        self._autostarting = False
        self._configure_exc: Optional[BaseException] = None
        #: the loader's message of the last failed configure ("" after a successful one).
        self.configure_error = ""
        self.commands = CommandState()
        self.cameras: list = []
        self.status_pub = self._command_sub = self._watchdog = None
        self._set_command_srv = self._locate_srv = None
        self._last_status: Optional[str] = None
        self._start_time = time.monotonic()
        self.worker: Optional[FrameWorker] = None
        self._transforms = None  # target_frame: transforms.StaticTransform / Tf2Lookup while active
        try:
            config = params.make_config(declare_parameters(self))  # raises ParameterError with the reason
            self._warnings = WarningLog(self._log_warning, lambda: self.config.no_image_warn_s)
            hooks = Hooks(publish=self._publish_frame, status=self._publish_status, warnings=self._warnings,
                          info=self.get_logger().info, error=self.get_logger().error, alive=self.context.ok)
            self.worker = FrameWorker(config, self.commands, hooks)
            self.add_pre_set_parameters_callback(coerce_parameters)
            self.add_on_set_parameters_callback(self._on_set_parameters)
            if config.autostart:
                self._autostart()
        except BaseException:  # also KeyboardInterrupt / SystemExit in library use: leave nothing running
            self.destroy_node()
            raise

    # ------------------------------------------------------------------ state seen by callers and tests
    @property
    def config(self) -> params.Config:
        """The validated parameters in force (next frame)."""
        return self.worker.config

    @config.setter
    def config(self, value: params.Config) -> None:
        self.worker.config = value

    @property
    def detector(self):
        """The :class:`pipeline.Detector`; ``None`` while unconfigured."""
        return self.worker.detector if self.worker is not None else None

    @property
    def warnings(self) -> list:
        """Warnings logged (most recent last, at most 200)."""
        return self._warnings.recent

    @property
    def processed(self) -> list:
        """``(camera name, stamp ns)`` of every processed frame, most recent last (at most 1000)."""
        return self.worker.processed

    @property
    def frames_processed(self) -> int:
        return self.worker.frames_processed if self.worker is not None else 0

    @property
    def lifecycle_state(self) -> str:
        """``unconfigured``, ``inactive``, ``active``, ``finalized`` (or a transition state)."""
        return self._state_machine.current_state[1]

    # ------------------------------------------------------------------ lifecycle
    def _autostart(self) -> None:
        """``autostart``: configure (raising the loader's error on failure), then activate."""
        self._autostarting = True
        try:
            if self.trigger_configure() != _SUCCESS:
                raise self._configure_exc or RuntimeError("configure failed")
            if self.trigger_activate() != _SUCCESS:
                raise RuntimeError("activate failed")
        finally:
            self._autostarting = False

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Build the model (an injected encoder, or a ``ClipEncoder`` from the parameters) and
        the services; a failed build leaves the node unconfigured with the loader's message."""
        cfg = self.config
        try:
            if self._owns_process:
                set_cpu_threads(cfg.cpu_threads)
            self.worker.build(self._encoder)
        except Exception as exc:
            self._configure_exc = exc
            self.configure_error = f"cannot load the CLIP model: {exc}"
            if not self._autostarting:  # at start-up the executable logs it as fatal
                self.get_logger().error(f"configure failed: {self.configure_error}")
            return _FAILURE
        self._configure_exc, self.configure_error = None, ""
        control = ReentrantCallbackGroup()
        self._set_command_srv = self.create_service(SetCommand, "set_command", self._on_set_command,
                                                    callback_group=control)
        self._locate_srv = self.create_service(Locate, "locate", self._on_locate, callback_group=control)
        if cfg.command and self.commands.snapshot().command is None:
            self._submit_command(cfg.command, source="parameter command")
        return _SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Create the subscriptions and publishers, the watchdog, and start the worker."""
        cfg = self.config
        sensors = ReentrantCallbackGroup()
        names = [c.strip("/") for c in cfg.cameras if c.strip("/")] or [""]
        self.cameras = [CameraIO(self, name, cfg, sensors, self.worker.wake) for name in names]
        if cfg.target_frame:  # positions in the planner's frame (README, 3D convention)
            self._transforms, about = transforms.make_lookup(self, cfg.target_frame, cfg.camera_extrinsics,
                                                             cfg.transform_timeout, len(names))
            log = self.get_logger().info if self._transforms is not None else self.get_logger().warning
            log(f"target_frame {cfg.target_frame}: {about}")
            for cam in self.cameras:
                cam.set_transforms(self._transforms, about, self._warnings.warn)
        self.status_pub = self.create_publisher(String, "status", reliable_qos(10, latched=True))
        self._command_sub = self.create_subscription(String, "command", self._on_command, reliable_qos(10),
                                                     callback_group=ReentrantCallbackGroup())
        self._start_time = time.monotonic()
        self._watchdog = self.create_timer(1.0, self._check_inputs, callback_group=MutuallyExclusiveCallbackGroup(),
                                           clock=Clock(clock_type=ClockType.STEADY_TIME))
        if not messages.HAVE_VISION_MSGS:
            self.get_logger().info("vision_msgs is not installed: detections_2d (Detection2DArray) is not published")
        self._active = True
        if self._last_status is not None:
            self._publish_status(self._last_status)  # the latched line of the previous activation
        if self._start_worker:
            self.worker.start(self.cameras)
        self.get_logger().info(self._ready_line())
        return _SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop inference (the frame in progress finishes unpublished) and drop the topics."""
        self._deactivate()
        return _SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy the services and free the model (and cached CUDA memory)."""
        self._unconfigure()
        return _SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything (from any primary state)."""
        self._teardown()
        return _SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: stop everything and go back to unconfigured."""
        self.get_logger().error(f"lifecycle transition from {state.label} failed; back to unconfigured")
        self._teardown()
        return _SUCCESS

    def _deactivate(self, publish_pending: bool = False) -> None:
        self._active = False
        if self.worker is not None:
            self.worker.stop(publish_pending=publish_pending)
        for cam in self.cameras:
            cam.destroy()
        self.cameras = []
        if self._transforms is not None:
            self._transforms.close()
            self._transforms = None
        for name, destroy in (("_watchdog", self.destroy_timer), ("_command_sub", self.destroy_subscription),
                              ("status_pub", self.destroy_publisher)):
            entity = getattr(self, name)
            if entity is not None:
                destroy(entity)
                setattr(self, name, None)

    def _unconfigure(self) -> None:
        for name in ("_set_command_srv", "_locate_srv"):
            srv = getattr(self, name)
            if srv is not None:
                self.destroy_service(srv)
                setattr(self, name, None)
        if self.worker is not None:
            self.worker.free()

    def _teardown(self) -> None:
        self._deactivate(publish_pending=True)
        self._unconfigure()

    def stop(self) -> None:
        """Stop the worker: the frame in progress finishes and is published (at most
        ``worker.JOIN_TIMEOUT_S``); pending ``locate`` calls are released."""
        if self.worker is not None:
            self.worker.stop(publish_pending=True)

    def destroy_node(self) -> None:
        """Stop the worker, destroy every interface, free the model, destroy the node."""
        self._teardown()
        super().destroy_node()

    def _ready_line(self) -> str:
        import torch

        det = self.detector
        enc = det.encoder
        return (f"ready: model {getattr(enc, 'model_name', type(enc).__name__)} "
                f"({getattr(enc, 'weights_source', self.config.pretrained)}) on {det.device} "
                f"({torch.get_num_threads()} CPU threads), mode {det.mode}; listening on "
                + ", ".join(c.image_topic for c in self.cameras)
                + f" ({self.cameras[0].qos_description}), commands on {self._command_sub.topic_name}")

    # ------------------------------------------------------------------ hooks of the worker
    def _log_warning(self, text: str) -> None:
        self.get_logger().warning(text)

    def _publish_frame(self, cam: CameraIO, header, result, text: str, rgb, cfg) -> None:
        cam.publish(header, result, text, rgb, cfg)

    def _publish_status(self, line: str) -> None:
        self._last_status = line
        self.get_logger().info(f"status: {line}")
        pub = self.status_pub
        if pub is None:
            return  # not active: the line is published (latched) on activation
        try:
            pub.publish(String(data=line))
        except Exception:  # context already shut down, or deactivated meanwhile
            if self._active and self.context.ok():
                raise

    def _check_inputs(self) -> None:
        self.worker.check_inputs(self._start_time)

    # ------------------------------------------------------------------ parameters
    def _on_set_parameters(self, parameters: list) -> SetParametersResult:
        changes = {}
        for p in parameters:
            if p.name not in params.PARAMETERS:
                continue  # use_sim_time and others: not ours
            try:
                changes[p.name] = params.validate(p.name, p.value)
            except params.ParameterError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        if not changes:
            return SetParametersResult(successful=True)
        old = self.config
        new = old.replace(**changes)
        if self.detector is not None:  # configured: a model parameter rebuilds the encoder now
            reload_names = _RELOAD_OWNED if self.worker.owns_encoder else _RELOAD_PARAMS
            if any(getattr(new, n) != getattr(old, n) for n in reload_names if n in changes):
                ok, reason = self.worker.reload(new)
                if not ok:
                    return SetParametersResult(successful=False, reason=reason)
                self._encoder = None  # the node's own model from now on (also after cleanup)
        self.config = new  # thresholds, weights, proposal methods ...: next frame
        if "command" in changes:
            self._submit_command(new.command, source="parameter command")
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ commands / services
    def _submit_command(self, text: str, source: str):
        self.get_logger().debug(f"command from {source}: {text!r}")
        update = self.commands.submit(text)
        self._publish_status(update.status)
        return update

    def _on_command(self, msg: String) -> None:
        self._submit_command(msg.data, source=self._command_sub.topic_name if self._command_sub else "command")

    def _on_set_command(self, request, response):
        update = self._submit_command(request.command, source="set_command")
        response.accepted = update.accepted
        response.target = update.target
        response.message = update.status
        return response

    def _on_locate(self, request, response):
        text = request.command
        timeout = float(request.timeout)
        if not math.isfinite(timeout) or timeout <= 0.0:
            timeout = DEFAULT_LOCATE_TIMEOUT_S
        response.found = False
        response.result = TargetDetectionArray(command=text)
        waiter = Waiter()
        if text.strip():
            parse = parse_command(text)
            if not parse.ok:
                response.message = f"ignored: {describe_ignored(text, parse)}"
                return response
            waiter.command, waiter.text = parse.commands[0], text
        if not self._active:
            response.message = f"the node is {self.lifecycle_state}, not active: activate it to process frames"
            return response
        self.worker.add_waiter(waiter)
        if not waiter.done.wait(timeout):
            self.worker.drop_waiter(waiter)
        answer = waiter.answer
        if answer is None:
            topics = ", ".join(c.image_topic for c in self.cameras) or "its image topics"
            response.message = (f"no frame processed within {timeout:g} s "
                                f"(is anything publishing on {topics}?)")
            return response
        response.found, response.message = answer.found, answer.message
        response.result = messages.to_detection_array(answer.result, answer.header, answer.text)
        return response


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
    ends at once; never a traceback); 1 when the CLIP weights are unavailable at an
    ``autostart`` configure (the fatal log names the model, tag and cache path) or on another
    start-up error; 2 on an invalid parameter.  With ``autostart:=false`` the node spins
    unconfigured and a failed configure is answered over the lifecycle service instead.
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
                node.destroy_node()  # stops the worker, frees the model and cached CUDA memory
            node = None
        finally:
            rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
