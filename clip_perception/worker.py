"""The node's inference worker, without ROS: newest frames in, detector results out.

One thread (:meth:`FrameWorker.start`) takes the newest colour message of every camera
(:class:`runtime.CameraInputs`), decodes it (:mod:`clip_perception.decode`), pairs depth
and camera_info with it by stamp, runs :meth:`pipeline.Detector.detect_many` on all
cameras that are ready (one batched encoder call) and hands each result to the adapter's
``publish`` hook; it also answers pending ``locate`` requests (:class:`runtime.Waiter`)
and rebuilds the encoder when a model parameter changes (:meth:`FrameWorker.reload`).

The ROS adapter (``node.py``) gives it, as :class:`Hooks`: the publish and status
callbacks, a logger and throttled warnings (:class:`runtime.WarningLog`).  Messages are
opaque to the worker except for the fields that :mod:`clip_perception.decode`,
:mod:`clip_perception.compressed` and :func:`camera.camera_info_to_model` read duck-typed
and ``header.frame_id``.

Stopping (:meth:`FrameWorker.stop`): the frame in progress finishes (a torch forward
cannot be interrupted), at most :data:`JOIN_TIMEOUT_S`; with ``publish_pending=False``
(lifecycle deactivate) its result is dropped, so nothing is published once ``stop``
returns.  Waits (rate limit, depth pairing) end at once.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from .camera import CameraModel, camera_info_to_model
from .dialogue import TargetRef, prefer_current
from .decode import ImageDecodeError, decode_compressed, decode_compressed_depth, decode_depth, decode_image
from .pipeline import Detector
from .runtime import CameraInputs, CommandSnapshot, CommandState, WarningLog, Waiter
from .tracking import Tracker, TrackerConfig

__all__ = ["FrameWorker", "Hooks", "Outcome", "Answer", "release_cuda_cache", "PAIR_WAIT_S", "JOIN_TIMEOUT_S",
           "RELOAD_TIMEOUT_S"]

#: Wall-clock seconds the worker waits for the depth / camera_info of a frame when that stream
#: is alive but has not reached the frame's stamp yet (depth is published after colour).
PAIR_WAIT_S = 1.0
#: how long a parameter change waits for the worker to rebuild the encoder [s].
RELOAD_TIMEOUT_S = 600.0
#: how long stopping waits for the worker to finish its current frame [s].
JOIN_TIMEOUT_S = 60.0


def release_cuda_cache() -> None:
    """``torch.cuda.empty_cache()`` when torch is loaded and CUDA is available (best effort)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort
        pass


@dataclass
class Hooks:
    """What the ROS adapter gives the worker.

    Attributes:
        publish: ``publish(camera, header, result, command_text, rgb (H, W, 3) uint8, config)``
            publishes one frame's outputs (``header`` is the colour message's header).
        status: publishes one status line.
        warnings: throttled warnings (the node's :class:`runtime.WarningLog`).
        info, error: log one line at that level.
        alive: False once the middleware is shut down (the loop then ends quietly).
    """

    publish: Callable[..., None]
    status: Callable[[str], None]
    warnings: WarningLog
    info: Callable[[str], None]
    error: Callable[[str], None]
    alive: Callable[[], bool] = lambda: True


@dataclass
class Outcome:
    """One camera's processed frame."""

    camera: CameraInputs
    header: Any
    result: Any
    rgb: np.ndarray
    depth: Optional[np.ndarray]
    K: Optional[CameraModel]


@dataclass
class Answer:
    """The worker's answer to one ``locate`` request (the adapter builds the response).

    Attributes:
        found: the target was found.
        result: the :class:`pipeline.FrameResult` answered with.
        header: its colour image's header.
        text: the command text to put in the result message.
        message: the response's one-line message.
    """

    found: bool
    result: Any
    header: Any
    text: str
    message: str


@dataclass
class _Reload:
    """A request to rebuild the encoder on the worker thread."""

    config: Any
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    reason: str = ""


class FrameWorker:
    """The inference loop and the state it owns (see the module docstring).

    Args:
        config: validated parameters (:class:`params.Config`); replaced by the adapter on
            parameter changes (:attr:`config`), read once per frame.
        commands: the node's command state (the worker only takes snapshots).
        hooks: :class:`Hooks`.

    Attributes:
        detector: the :class:`pipeline.Detector` (``None`` until :meth:`build`).
        frames_processed: frames published since construction.
        processed: ``(camera name, stamp ns)`` of every processed frame, most recent last
            (at most 1000).
    """

    def __init__(self, config, commands: CommandState, hooks: Hooks) -> None:
        self._config = config
        self.commands = commands
        self.hooks = hooks
        self.detector: Optional[Detector] = None
        self.owns_encoder = False
        self.cameras: list = []
        self.frames_processed = 0
        self.processed: list = []
        self.busy = False
        self._publishing = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list = []
        self._reloads: list = []
        self._thread: Optional[threading.Thread] = None
        self.trackers: dict = {}  # camera name -> tracking.Tracker (identity across frames)

    @property
    def config(self):
        """The parameters in force (:class:`params.Config`), read once per frame."""
        return self._config

    @config.setter
    def config(self, value) -> None:
        """New parameters: the detector's proposal / ranking stages change from the next frame
        (:meth:`pipeline.Detector.reconfigure`); a model change needs :meth:`reload`."""
        self._config = value
        detector = self.detector
        if detector is not None:
            detector.reconfigure(value)

    # ------------------------------------------------------------------ model
    def build(self, encoder=None) -> None:
        """Build the detector from :attr:`config` (``encoder`` injected, or a ``ClipEncoder``).

        Raises:
            weights.WeightsUnavailableError, weights.CheckpointError: weights cannot be loaded.
        """
        self.owns_encoder = encoder is None
        self.detector = Detector(self.config, encoder=encoder)

    def free(self) -> None:
        """Drop the detector (and its encoder) and release cached CUDA memory."""
        self.detector = None
        release_cuda_cache()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def wake(self) -> threading.Event:
        """Set by camera callbacks (:class:`runtime.CameraInputs`) when a frame arrives."""
        return self._wake

    def reload(self, config) -> tuple:
        """Rebuild the encoder for ``config``: on the worker thread when it runs (waits at most
        :data:`RELOAD_TIMEOUT_S`), else here.  A failed build keeps the old model.

        Returns:
            ``(ok, reason)``; the reason carries the loader's message.
        """
        req = _Reload(config)
        if not self.running:
            self._do_reload(req)
            return req.ok, req.reason
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
            self._do_reload(req)

    def _do_reload(self, req: _Reload) -> None:
        cfg = req.config
        try:
            new = Detector(cfg, encoder=None)
        except Exception as exc:  # keep the old model
            req.ok = False
            req.reason = (f"could not load model {cfg.model_name} (pretrained {cfg.pretrained}, device "
                          f"{cfg.device}, precision {cfg.precision}): {exc}; keeping the current model")
            self.hooks.error(req.reason)
            self.hooks.status(f"model change failed: {cfg.model_name} ({cfg.pretrained})")
        else:
            old, self.detector, self.owns_encoder = self.detector, new, True
            del old
            release_cuda_cache()
            req.ok = True
            self.hooks.status(f"model: {cfg.model_name} ({cfg.pretrained}) on {new.device}")
        req.done.set()

    # ------------------------------------------------------------------ locate requests
    def add_waiter(self, waiter: Waiter) -> None:
        with self._lock:
            self._waiters.append(waiter)

    def drop_waiter(self, waiter: Waiter) -> None:
        with self._lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    # ------------------------------------------------------------------ thread
    def start(self, cameras: list) -> None:
        """Start the inference thread over ``cameras`` (:class:`runtime.CameraInputs`)."""
        if self.running:
            return
        self.cameras = list(cameras)
        self.trackers = {}
        self._stop.clear()
        self._publishing = True
        self._thread = threading.Thread(target=self._loop, name="clip_perception_worker", daemon=True)
        self._thread.start()

    def stop(self, publish_pending: bool = True) -> None:
        """Stop the thread; waits for the frame in progress (at most :data:`JOIN_TIMEOUT_S`).

        Args:
            publish_pending: let the frame in progress publish its result; False drops it
                (nothing is published once this returns).
        """
        if not publish_pending:
            self._publishing = False
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            if self.busy:
                self.hooks.info("stopping: waiting for the frame in progress to finish")
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                self.hooks.info(f"inference worker still busy after {JOIN_TIMEOUT_S:g} s; going on anyway")
        self._publishing = False
        self._thread = None
        with self._lock:
            waiters, self._waiters = self._waiters, []
            reloads, self._reloads = self._reloads, []
        for req in reloads:
            req.reason = "the inference worker stopped"
            req.done.set()
        for waiter in waiters:
            waiter.done.set()

    def _loop(self) -> None:
        last_start = -math.inf
        while not self._stop.is_set() and self.hooks.alive():
            self._wake.wait(0.2)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._do_reloads()
                rate = self.config.max_rate_hz
                if rate > 0.0:
                    wait = last_start + 1.0 / rate - time.monotonic()
                    if wait > 0.0 and self._stop.wait(wait):  # the newest frame after the wait is processed
                        break
                frames = [(cam, cam.take()) for cam in self.cameras]
                frames = [(cam, item) for cam, item in frames if item is not None]
                if not frames:
                    continue
                last_start = time.monotonic()
                self.busy = True
                try:
                    self.process(frames)
                finally:
                    self.busy = False
            except Exception as exc:
                if self._stop.is_set() or not self.hooks.alive():
                    break
                if self.hooks.warnings.throttle.allow(f"error:{type(exc).__name__}", self.config.no_image_warn_s):
                    self.hooks.error(f"frame processing failed: {type(exc).__name__}: {exc}")

    def check_inputs(self, since: float) -> None:
        """Watchdog: warn (throttled) for every camera without a colour message for
        ``no_image_warn_s`` seconds (counted from ``since``, ``time.monotonic()``, before the first)."""
        period = self.config.no_image_warn_s
        now = time.monotonic()
        for cam in self.cameras:
            last = cam.last_image_time if cam.last_image_time is not None else since
            if now - last >= period:
                self.hooks.warnings.warn(
                    f"no_image:{cam.image_topic}",
                    f"no image on {cam.image_topic} for {now - last:.1f} s; subscribed with {cam.qos_description} "
                    f"— check `ros2 topic info -v {cam.image_topic}` and the remappings")

    # ------------------------------------------------------------------ one iteration
    def prepare(self, cam: CameraInputs, msg, stamp_ns: int, cfg) -> Optional[tuple]:
        """Decode one colour message and pair depth / camera_info with it.

        Returns:
            ``(rgb (H, W, 3) uint8, depth (H, W) float32 metres or None, camera or None)`` with
            the camera a :class:`camera.CameraModel` (K, ``d``, ``distortion_model`` of the paired
            CameraInfo), or ``None`` when the image cannot be decoded (warned).
        """
        warn = self.hooks.warnings.warn
        topic = cam.image_topic
        try:
            rgb = decode_compressed(msg) if cam.compressed else decode_image(msg)
        except ImageDecodeError as exc:
            warn(f"decode:{topic}", f"cannot decode image on {topic}: {exc}")
            return None
        if not cfg.use_depth:
            return rgb, None, None
        if stamp_ns == 0:
            warn(f"zero_stamp:{topic}", f"image stamps on {topic} are zero: depth and camera_info cannot be paired "
                 "by time, publishing 2D detections only (has_position false)")
            return rgb, None, None
        depth_pair, info_pair = cam.nearest_pair(stamp_ns, cfg.sync_slop, PAIR_WAIT_S, self._stop)
        if depth_pair is None or info_pair is None:
            missing, details = cam.describe_missing(depth_pair, info_pair)
            warn(f"no_depth:{topic}", f"no {' / '.join(missing)} within sync_slop={cfg.sync_slop:g} s of image stamp "
                 f"{stamp_ns * 1e-9:.3f} on {topic} ({', '.join(details)}): 2D detections only")
            return rgb, None, None
        depth_msg = depth_pair[0]
        depth_frame, image_frame = str(depth_msg.header.frame_id), str(msg.header.frame_id)
        if depth_frame != image_frame and not cfg.depth_registered:
            warn(f"depth_frame:{topic}", f"depth frame_id '{depth_frame}' differs from the image's '{image_frame}' on "
                 f"{topic}: depth not registered to the colour camera, 2D detections only (set depth_registered: "
                 "true if it is registered)")
            return rgb, None, None
        try:
            scale = cfg.depth_scale or None
            depth = decode_compressed_depth(depth_msg, scale) if cam.depth_compressed else decode_depth(depth_msg, scale)
        except ImageDecodeError as exc:
            warn(f"decode_depth:{topic}", f"cannot decode depth for {topic}: {exc}")
            return rgb, None, None
        K, why = camera_info_to_model(info_pair[0], rgb.shape)  # K + lens distortion (camera.py)
        if K is None:  # invalid K / D, or a CameraInfo for another resolution: never 3D from a wrong K
            kind = "bad_k" if "valid K" in why or "distortion" in why else "k_size"
            warn(f"{kind}:{topic}", f"camera_info for {topic} {why}: 2D detections only")
            return rgb, None, None
        return rgb, depth, K

    def process(self, frames: list) -> None:
        """Process ``[(camera, (colour message, stamp ns)), ...]``: detect, publish, answer."""
        cfg = self.config
        detector = self.detector
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

    def _process_frames(self, frames: list, cfg, detector: Detector, snap: CommandSnapshot, waiters: list) -> None:
        command = snap.command if snap.command is not None else snap.text
        ready = []
        for cam, (msg, stamp_ns) in frames:
            prepared = self.prepare(cam, msg, stamp_ns, cfg)
            if prepared is not None:
                ready.append((cam, msg, stamp_ns, prepared))
        # all cameras that are ready are ranked with one batched encoder call
        exclude = self.commands.exclusion_mask if snap.excluded else None  # "no, the other one"
        results = detector.detect_many([(rgb, command, depth, K) for _, _, _, (rgb, depth, K) in ready],
                                       exclude=exclude)
        if snap.command is not None and snap.command.refers_to_current and snap.current is not None:
            for result in results:  # "put it in the box": the object reported so far stays the pick
                result.detections = prefer_current(result.detections, snap.current)
        for (cam, _, _, _), result in zip(ready, results):  # identity, lock, hysteresis (tracking.py)
            self.tracker(cam.name, cfg).update(result, snap.generation)
        outcomes = []
        for (cam, msg, stamp_ns, (rgb, depth, K)), result in zip(ready, results):
            if not self._publishing:
                return  # deactivated during this frame: publish nothing, answer nobody
            for note in result.notes:
                self.hooks.warnings.warn(f"note:{cam.image_topic}:{note}", f"{cam.image_topic}: {note}")
            self.hooks.publish(cam, msg.header, result, snap.text, rgb, cfg)
            outcomes.append(Outcome(cam, msg.header, result, rgb, depth, K))
            self.frames_processed += 1
            self.processed.append((cam.name, stamp_ns))
            del self.processed[:-1000]
        if not outcomes:
            return
        best = self.best(outcomes)
        if snap.command is not None:
            target = None
            if best.result.found:
                pick = best.result.best
                target = TargetRef.of(pick.box, pick.position, pick.label)
            changed = self.commands.observe(snap.generation, best.result.found, self.summary(best), target)
            if changed:
                self.hooks.status(changed)
        for waiter in waiters:
            waiter.answer = self._answer(waiter, snap, outcomes, best, detector)
            waiter.done.set()

    def tracker(self, name: str, cfg) -> Tracker:
        """Camera ``name``'s :class:`tracking.Tracker`, set to the tracking parameters of ``cfg``."""
        tracker = self.trackers.get(name)
        if tracker is None:
            tracker = self.trackers[name] = Tracker()
        tracker.configure(TrackerConfig.of(cfg))
        return tracker

    @staticmethod
    def best(outcomes: list) -> Outcome:
        """The most confident found outcome, else the first."""
        found = [o for o in outcomes if o.result.found]
        if not found:
            return outcomes[0]
        return max(found, key=lambda o: float(o.result.best.confidence))

    def summary(self, outcome: Outcome) -> str:
        """The result's one-line summary, naming the camera when there are several."""
        line = outcome.result.summary()
        if len(self.cameras) > 1 and outcome.result.found:
            line += f" ({outcome.camera.name})"
        return line

    def _answer(self, waiter: Waiter, snap: CommandSnapshot, outcomes: list, best: Outcome, detector) -> Answer:
        if waiter.command is None:
            if snap.command is None:
                return Answer(False, best.result, best.header, snap.text,
                              "no command: send one on the command topic, set_command, or in the request")
            return Answer(best.result.found, best.result, best.header, snap.text, self.summary(best))
        own = []
        for o in outcomes:  # the request's own command, on the same frames (not published)
            result = detector.detect(o.rgb, waiter.command, depth=o.depth, K=o.K)
            own.append(Outcome(o.camera, o.header, result, o.rgb, o.depth, o.K))
        pick = self.best(own)
        return Answer(pick.result.found, pick.result, pick.header, waiter.text, self.summary(pick))
